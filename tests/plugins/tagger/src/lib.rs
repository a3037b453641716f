//! An attribute-editing plugin: sets `team` from a service → team table, removes listed
//! attributes, and counts what it did. Used by the end-to-end tests and the benchmarks.

use std::collections::HashMap;

use serde::Deserialize;
use wasmcol_plugin_sdk::prelude::*;

/// The plugin's `config:` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// `service.name` → value of the `team` attribute.
    #[serde(default)]
    teams: HashMap<String, String>,
    /// Span attributes to remove.
    #[serde(default)]
    remove: Vec<String>,
}

/// Tags spans with their owning team and strips unwanted attributes.
pub struct Tagger {
    config: Config,
}

impl Plugin for Tagger {
    fn new(config: PluginConfig) -> Result<Self, String> {
        Ok(Tagger {
            config: config.parse()?,
        })
    }

    fn process(&mut self, batch: &mut Batch) -> Result<(), String> {
        let (mut tagged, mut removed) = (0, 0);
        batch.for_each_span(|span| {
            if let Some(team) = span.service_name().and_then(|s| self.config.teams.get(s)) {
                span.set_attribute("team", team);
                tagged += 1;
            }
            for key in &self.config.remove {
                removed += u64::from(span.remove_attribute(key).is_some());
            }
        });
        host::add_counter("spans_tagged", tagged);
        host::add_counter("attributes_removed", removed);
        Ok(())
    }
}

export_plugin!(Tagger);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmcol_plugin_sdk::testing::{Harness, counter, resource_spans, span, string_value};

    #[test]
    fn tags_known_services_and_removes_keys() {
        let mut h = Harness::<Tagger>::new(serde_json::json!({
            "teams": {"checkout": "payments"},
            "remove": ["secret"],
        }))
        .unwrap();
        let out = h
            .process(vec![
                resource_spans("checkout", vec![span("a", &[("secret", "x".into())])]),
                resource_spans("search", vec![span("b", &[("keep", "y".into())])]),
            ])
            .unwrap();
        let a = &out[0].scope_spans[0].spans[0];
        assert_eq!(a.attributes.len(), 1);
        assert_eq!(a.attributes[0].key, "team");
        assert_eq!(a.attributes[0].value, Some(string_value("payments")));
        let b = &out[1].scope_spans[0].spans[0];
        assert_eq!(b.attributes.len(), 1);
        assert_eq!(b.attributes[0].key, "keep");
        assert_eq!(counter("spans_tagged"), 1);
        assert_eq!(counter("attributes_removed"), 1);
    }

    #[test]
    fn rejects_unknown_options() {
        let err = Harness::<Tagger>::new(serde_json::json!({"tems": {}}))
            .err()
            .unwrap();
        assert!(
            err.starts_with("config.tems: unknown field `tems`"),
            "{err}"
        );
    }
}
