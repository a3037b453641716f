//! Run a plugin natively, in `cargo test`, through the same edit checks the collector applies.
//!
//! ```
//! use wasmcol_plugin_sdk::prelude::*;
//! use wasmcol_plugin_sdk::testing::{Harness, resource_spans, span};
//!
//! struct Upper;
//! impl Plugin for Upper {
//!     fn new(_: PluginConfig) -> Result<Self, String> { Ok(Upper) }
//!     fn process(&mut self, batch: &mut Batch) -> Result<(), String> {
//!         batch.for_each_span(|s| { let n = s.name().to_uppercase(); s.set_name(n) });
//!         Ok(())
//!     }
//! }
//!
//! let mut h = Harness::<Upper>::new(serde_json::json!({})).unwrap();
//! let out = h.process(vec![resource_spans("checkout", vec![span("get /cart", &[])])]).unwrap();
//! assert_eq!(out[0].scope_spans[0].spans[0].name, "GET /CART");
//! ```

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::edit::{self, Output};
use crate::host::{Level, Row};
use crate::policy::{Decision, Policy, Trace, TraceSummary};
use crate::value::Value;
use crate::{Batch, Plugin, PluginConfig};

/// A plugin instance running natively.
pub struct Harness<P: Plugin> {
    plugin: P,
}

impl<P: Plugin> Harness<P> {
    /// Builds the plugin from `config` (what the YAML `config:` section would hold), exactly
    /// as the collector does at start-up.
    pub fn new(config: serde_json::Value) -> Result<Self, String> {
        Ok(Self {
            plugin: P::new(PluginConfig::new(config))?,
        })
    }

    /// Runs the plugin over `input` and returns the batch as the collector would pass it on:
    /// the plugin's edits are checked and applied to `input` with the host's own code.
    pub fn process(&mut self, mut input: Vec<ResourceSpans>) -> Result<Vec<ResourceSpans>, String> {
        let mut batch = Batch::new(input.clone());
        self.plugin.process(&mut batch)?;
        match batch.into_output() {
            Output::Unchanged => {}
            Output::Edits(edits) => {
                let checked = edit::prepare(&input, edits)?;
                edit::apply(&mut input, checked);
            }
            Output::Replace(bytes) => input = edit::decode_replacement(&bytes)?,
        }
        Ok(input)
    }

    /// The plugin itself.
    pub fn plugin(&mut self) -> &mut P {
        &mut self.plugin
    }
}

/// Serves `rows` (key → row) as lookup table `table` to plugins on this thread.
pub fn set_table(table: &str, rows: impl IntoIterator<Item = (String, Row)>) {
    crate::host::imp::HOST.with_borrow_mut(|h| {
        h.tables
            .insert(table.to_string(), rows.into_iter().collect());
    })
}

/// Takes the log lines plugins wrote on this thread.
pub fn take_logs() -> Vec<(Level, String)> {
    crate::host::imp::HOST.with_borrow_mut(|h| std::mem::take(&mut h.logs))
}

/// The value of counter `name` on this thread.
pub fn counter(name: &str) -> u64 {
    crate::host::imp::HOST.with_borrow(|h| h.counters.get(name).copied().unwrap_or(0))
}

/// A span named `name` with string or other attributes, fresh ids and a 1 ms duration.
pub fn span(name: &str, attributes: &[(&str, Value)]) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.to_string(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_001_000_000,
        attributes: attributes.iter().map(|(k, v)| kv(k, v.clone())).collect(),
        ..Default::default()
    }
}

/// One resource (with `service.name`) holding `spans` in one scope.
pub fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", Value::from(service))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A key-value attribute.
pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value.into_any_value()),
        ..Default::default()
    }
}

/// A string [`AnyValue`].
pub fn string_value(s: &str) -> AnyValue {
    Value::from(s).into_any_value()
}

/// A tail-sampling policy running natively.
///
/// ```
/// use wasmcol_plugin_sdk::PluginConfig;
/// use wasmcol_plugin_sdk::policy::{Decision, Policy, Trace};
/// use wasmcol_plugin_sdk::testing::{PolicyHarness, resource_spans, span};
///
/// struct KeepLong;
/// impl Policy for KeepLong {
///     fn new(_: PluginConfig) -> Result<Self, String> { Ok(KeepLong) }
///     fn needs_spans(&self) -> bool { false }
///     fn decide(&mut self, t: &Trace<'_>) -> Decision {
///         if t.summary.duration_nanos() >= 1_000_000 { Decision::sample("long", 1.0) }
///         else { Decision::drop("long") }
///     }
/// }
///
/// let mut h = PolicyHarness::<KeepLong>::new(serde_json::json!({})).unwrap();
/// let d = h.decide(&[vec![resource_spans("checkout", vec![span("GET /cart", &[])])]]);
/// assert!(d[0].sample); // the test span lasts 1 ms
/// ```
pub struct PolicyHarness<P: Policy> {
    policy: P,
}

impl<P: Policy> PolicyHarness<P> {
    /// Builds the policy from `config`, as the collector does at start-up.
    pub fn new(config: serde_json::Value) -> Result<Self, String> {
        Ok(Self {
            policy: P::new(PluginConfig::new(config))?,
        })
    }

    /// Decides for `traces` (each the resource spans of one trace), summarised as the host
    /// summarises them and with spans withheld when the policy does not need them.
    pub fn decide(&mut self, traces: &[Vec<ResourceSpans>]) -> Vec<Decision> {
        let now = crate::host::now_unix_nano();
        let summaries: Vec<TraceSummary> =
            traces.iter().map(|t| TraceSummary::of(t, now)).collect();
        let needs_spans = self.policy.needs_spans();
        self.policy.begin(now);
        summaries
            .iter()
            .zip(traces)
            .map(|(summary, rs)| {
                let resource_spans: &[ResourceSpans] = if needs_spans { rs } else { &[] };
                self.policy.decide(&Trace {
                    summary,
                    resource_spans,
                })
            })
            .collect()
    }

    /// Decides for traces given only by their summaries (for policies that do not read spans).
    pub fn decide_summaries(&mut self, summaries: &[TraceSummary]) -> Vec<Decision> {
        self.policy.begin(crate::host::now_unix_nano());
        summaries
            .iter()
            .map(|summary| {
                self.policy.decide(&Trace {
                    summary,
                    resource_spans: &[],
                })
            })
            .collect()
    }

    /// The policy itself.
    pub fn policy(&mut self) -> &mut P {
        &mut self.policy
    }
}
