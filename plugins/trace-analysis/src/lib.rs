//! `builtin:trace-analysis`: the `trace_analysis` connector's detectors (N+1 loops, duplicate
//! and serial calls, fan-out, error origins), as one crate linked two ways. The collector
//! links it natively and runs [`detect`] over the spans in its buffer, read in place
//! ([`spans`]); compiled to WebAssembly it is the trace analyser plugin
//! `builtin:trace-analysis`, whose configuration is the connector's detector sections
//! ([`config::Detectors`]) and whose findings are the native ones.
//!
//! ```yaml
//! connectors:
//!   trace_analysis:
//!     n_plus_one: { enabled: false }
//!     analysers:
//!       - plugin: builtin:trace-analysis
//!         config: { n_plus_one: { min_calls: 10 } }
//! ```

pub mod config;
pub mod detect;
pub mod spans;

use prost::Message;
use wasmcol_plugin_sdk::PluginConfig;
use wasmcol_plugin_sdk::Value;
use wasmcol_plugin_sdk::analyser::{Analyser, Finding, Trace};
use wasmcol_plugin_sdk::policy::service_name;
use wasmcol_plugin_sdk::proto::common::{AnyValue, ArrayValue, any_value};

use config::Detectors;
use detect::{Pattern, TraceSpan};

/// The span attribute of an error origin listing the services the error reached.
pub const PROPAGATED_ATTRIBUTE: &str = "trace_analysis.error.propagated_to";

/// The detectors as an analyser plugin.
pub struct BuiltinDetectors {
    detectors: Detectors,
}

impl Analyser for BuiltinDetectors {
    fn new(config: PluginConfig) -> Result<Self, String> {
        let detectors: Detectors = config.parse()?;
        let problems = detectors.problems();
        if !problems.is_empty() {
            let text: Vec<String> = problems
                .into_iter()
                .map(|(path, message)| format!("config.{path}: {message}"))
                .collect();
            return Err(text.join("; "));
        }
        Ok(Self { detectors })
    }

    fn analyse(&mut self, trace: &Trace<'_>) -> Result<Vec<Finding>, String> {
        // Each span re-encoded and read in place, as the collector reads its buffer.
        let mut bodies: Vec<(&str, Vec<u8>)> = Vec::new();
        for rs in trace.resource_spans {
            let service = service_name(rs.resource.as_ref()).unwrap_or("");
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                bodies.push((service, span.encode_to_vec()));
            }
        }
        let spans: Vec<TraceSpan<'_>> = bodies
            .iter()
            .map(|(service, body)| TraceSpan::read(body, service))
            .collect();
        Ok(detect::analyse(&spans, &self.detectors)
            .into_iter()
            .map(finding)
            .collect())
    }
}

/// A detector's finding as the plugin world carries it: an error origin's services go in
/// the attribute the collector writes for its own.
pub fn finding(f: detect::Finding) -> Finding {
    let mut attributes = Vec::new();
    if f.pattern == Pattern::ErrorOrigin && !f.propagated_to.is_empty() {
        let values = f
            .propagated_to
            .into_iter()
            .map(|s| AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            })
            .collect();
        let array = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
        };
        attributes.push((PROPAGATED_ATTRIBUTE.to_owned(), Value::from(array)));
    }
    Finding {
        pattern: f.pattern.name().to_owned(),
        anchor: f.anchor as u32,
        spans: f.spans.into_iter().map(|s| s as u32).collect(),
        magnitude: f.magnitude,
        attributes,
    }
}

wasmcol_plugin_sdk::export_analyser!(BuiltinDetectors);
