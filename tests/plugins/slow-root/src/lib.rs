// slow-root: a wasmcol trace analyser. A trace whose root span took longer than
// `threshold_ms` gets a `slow_root` finding on its root, of magnitude the root's
// milliseconds, with the threshold written on the root span.

use serde::Deserialize;
use wasmcol_plugin_sdk::PluginConfig;
use wasmcol_plugin_sdk::analyser::{Analyser, Finding, Trace};

/// The analyser, made from its `config`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowRoot {
    /// A root span longer than this is slow, in milliseconds.
    threshold_ms: u64,
}

impl Analyser for SlowRoot {
    fn new(config: PluginConfig) -> Result<Self, String> {
        config.parse()
    }

    fn analyse(&mut self, trace: &Trace<'_>) -> Result<Vec<Finding>, String> {
        let mut found = Vec::new();
        // Spans are numbered as `spans()` yields them; findings name them by number.
        for (number, (_, _, span)) in trace.spans().enumerate() {
            let nanos = span
                .end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano);
            let ms = nanos / 1_000_000;
            if span.parent_span_id.is_empty() && ms > self.threshold_ms {
                let finding = Finding::new("slow_root", number as u32)
                    .magnitude(u32::try_from(ms).unwrap_or(u32::MAX))
                    .attribute("slow_root.threshold_ms", self.threshold_ms as i64);
                found.push(finding);
            }
        }
        Ok(found)
    }
}

wasmcol_plugin_sdk::export_analyser!(SlowRoot);

#[cfg(test)]
mod tests {
    use wasmcol_plugin_sdk::analyser::Finding;
    use wasmcol_plugin_sdk::testing::{AnalyserHarness, resource_spans, span};

    use super::SlowRoot;

    #[test]
    fn a_root_longer_than_the_threshold_is_a_finding() {
        let mut h = AnalyserHarness::<SlowRoot>::new(serde_json::json!({ "threshold_ms": 100 }))
            .expect("a valid config");
        let mut root = span("GET /checkout", &[]);
        root.end_time_unix_nano = root.start_time_unix_nano + 250_000_000;
        let mut child = span("SELECT cart", &[]);
        child.parent_span_id = root.span_id.clone();
        let slow = vec![resource_spans("checkout", vec![child, root])];
        let quick = vec![resource_spans("checkout", vec![span("GET /", &[])])];

        let found = h.analyse(&[quick, slow]).expect("valid findings");

        let expected = Finding::new("slow_root", 1)
            .magnitude(250)
            .attribute("slow_root.threshold_ms", 100i64);
        assert_eq!(found, vec![(1, expected)]);
    }

    #[test]
    fn a_config_without_a_threshold_is_refused() {
        let err = AnalyserHarness::<SlowRoot>::new(serde_json::json!({})).err();
        assert_eq!(err.as_deref(), Some("config: missing field `threshold_ms`"));
    }
}
