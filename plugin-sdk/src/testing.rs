//! Run a plugin natively, in `cargo test`, with the collector's own edit applier.
//!
//! [`Harness::process`] hands the plugin the batch as protobuf, as the host does, and applies
//! the edits it returns to those bytes with [`crate::wire::edit::apply`], the function the
//! collector's plugin host runs: the result, and the error text for a bad edit, are the
//! collector's.
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

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    exponential_histogram_data_point, metric, number_data_point, summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::analyser::{Analyser, Finding};
use crate::edit::{self, Output};
use crate::host::{Level, Row};
use crate::policy::{Decision, Policy, Trace, TraceSummary};
use crate::value::Value;
use crate::wire;
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

    /// Runs the plugin over `input` and returns the batch as the collector would pass it on.
    ///
    /// `input` is encoded as the host hands a batch to a plugin (`TracesData`, which has the
    /// layout of the `ExportTraceServiceRequest` the host holds), the plugin's edits are checked
    /// and applied to those bytes with the host's own [`wire::edit::apply`], and the result is
    /// decoded. A replacement batch is decoded as the host decodes it. An error is the
    /// plugin's, or the host's text for a bad edit or replacement.
    pub fn process(&mut self, input: Vec<ResourceSpans>) -> Result<Vec<ResourceSpans>, String> {
        let bytes = edit::encode_batch(&input);
        let mut batch = Batch::from_encoded(bytes.clone());
        self.plugin.process(&mut batch)?;
        match batch.into_output() {
            Output::Unchanged => Ok(input),
            Output::Edits(edits) => {
                let edited = wire::edit::apply(&bytes, edits)?;
                let edited = ExportTraceServiceRequest::decode(edited.bytes.as_slice())
                    .expect("the edit applier writes what it was given: valid protobuf");
                Ok(edited.resource_spans)
            }
            Output::Replace(bytes) => edit::decode_replacement(&bytes),
        }
    }

    /// Runs the plugin's logs handler over `input` and returns the batch as the collector
    /// would pass it on: edits applied with the host's own [`wire::edit::apply_logs`] to the
    /// bytes the plugin was given, a replacement decoded as the host decodes it.
    pub fn process_logs(&mut self, input: Vec<ResourceLogs>) -> Result<Vec<ResourceLogs>, String> {
        let bytes = edit::encode_logs_batch(&input);
        let mut batch = crate::LogBatch::from_encoded(bytes.clone());
        self.plugin.process_logs(&mut batch)?;
        match batch.into_output() {
            Output::Unchanged => Ok(input),
            Output::Edits(edits) => {
                let edited = wire::edit::apply_logs(&bytes, edits)?;
                let edited = ExportLogsServiceRequest::decode(edited.bytes.as_slice())
                    .expect("the edit applier writes what it was given: valid protobuf");
                Ok(edited.resource_logs)
            }
            Output::Replace(bytes) => edit::decode_logs_replacement(&bytes),
        }
    }

    /// Runs the plugin's metrics handler over `input` and returns the batch as the collector
    /// would pass it on: edits applied with the host's own [`wire::edit::apply_metrics`] to
    /// the bytes the plugin was given, a replacement decoded as the host decodes it.
    pub fn process_metrics(
        &mut self,
        input: Vec<ResourceMetrics>,
    ) -> Result<Vec<ResourceMetrics>, String> {
        let bytes = edit::encode_metrics_batch(&input);
        let mut batch = crate::MetricBatch::from_encoded(bytes.clone());
        self.plugin.process_metrics(&mut batch)?;
        match batch.into_output() {
            Output::Unchanged => Ok(input),
            Output::Edits(edits) => {
                let edited = wire::edit::apply_metrics(&bytes, edits)?;
                let edited = ExportMetricsServiceRequest::decode(edited.bytes.as_slice())
                    .expect("the edit applier writes valid protobuf");
                Ok(edited.resource_metrics)
            }
            Output::Replace(bytes) => edit::decode_metrics_replacement(&bytes),
        }
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

/// A log record with `body` and attributes, ids of a span and a timestamp.
pub fn log_record(body: Option<Value>, attributes: &[(&str, Value)]) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        observed_time_unix_nano: 1_700_000_000_000_000_000,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: body.map(Value::into_any_value),
        attributes: attributes.iter().map(|(k, v)| kv(k, v.clone())).collect(),
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        ..Default::default()
    }
}

/// One resource (with `service.name`) holding `records` in one scope.
pub fn resource_logs(service: &str, records: Vec<LogRecord>) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv("service.name", Value::from(service))],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One resource (with `service.name`) holding `metrics` in one scope.
pub fn resource_metrics(service: &str, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv("service.name", Value::from(service))],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A metric of each type, each with one data point per attribute set in `points`: a gauge
/// (`"gauge"`), a monotonic sum (`"sum"`), a histogram (`"histogram"`), an exponential
/// histogram (`"exp_histogram"`) and a summary (`"summary"`).
pub fn every_metric_type(points: &[&[(&str, Value)]]) -> Vec<Metric> {
    let attrs = |a: &[(&str, Value)]| -> Vec<KeyValue> {
        a.iter().map(|(k, v)| kv(k, v.clone())).collect()
    };
    const T: u64 = 1_700_000_000_000_000_000;
    let metric = |name: &str, data: metric::Data| Metric {
        name: name.into(),
        description: format!("the {name}"),
        unit: "1".into(),
        data: Some(data),
        ..Default::default()
    };
    let number = |a: &[(&str, Value)]| NumberDataPoint {
        attributes: attrs(a),
        time_unix_nano: T,
        value: Some(number_data_point::Value::AsInt(3)),
        ..Default::default()
    };
    vec![
        metric(
            "gauge",
            metric::Data::Gauge(Gauge {
                data_points: points.iter().map(|a| number(a)).collect(),
            }),
        ),
        metric(
            "sum",
            metric::Data::Sum(Sum {
                data_points: points.iter().map(|a| number(a)).collect(),
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "histogram",
            metric::Data::Histogram(Histogram {
                data_points: points
                    .iter()
                    .map(|a| HistogramDataPoint {
                        attributes: attrs(a),
                        time_unix_nano: T,
                        count: 2,
                        sum: Some(5.0),
                        bucket_counts: vec![1, 1],
                        explicit_bounds: vec![2.5],
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "exp_histogram",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: points
                    .iter()
                    .map(|a| ExponentialHistogramDataPoint {
                        attributes: attrs(a),
                        time_unix_nano: T,
                        count: 2,
                        scale: 1,
                        positive: Some(exponential_histogram_data_point::Buckets {
                            offset: 0,
                            bucket_counts: vec![2],
                        }),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "summary",
            metric::Data::Summary(Summary {
                data_points: points
                    .iter()
                    .map(|a| SummaryDataPoint {
                        attributes: attrs(a),
                        time_unix_nano: T,
                        count: 2,
                        sum: 5.0,
                        quantile_values: vec![summary_data_point::ValueAtQuantile {
                            quantile: 0.5,
                            value: 2.0,
                        }],
                        ..Default::default()
                    })
                    .collect(),
            }),
        ),
    ]
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

/// A trace analyser running natively: it sees each trace as the `trace_analysis` connector
/// hands it over (summarised as the host summarises it), and its findings get the host's
/// checks.
///
/// ```
/// use wasmcol_plugin_sdk::PluginConfig;
/// use wasmcol_plugin_sdk::analyser::{Analyser, Finding, Trace};
/// use wasmcol_plugin_sdk::testing::{AnalyserHarness, resource_spans, span};
///
/// struct Roots;
/// impl Analyser for Roots {
///     fn new(_: PluginConfig) -> Result<Self, String> { Ok(Roots) }
///     fn analyse(&mut self, t: &Trace<'_>) -> Result<Vec<Finding>, String> {
///         Ok(t.root().map(|r| Finding::new("root", r)).into_iter().collect())
///     }
/// }
///
/// let mut h = AnalyserHarness::<Roots>::new(serde_json::json!({})).unwrap();
/// let found = h.analyse(&[vec![resource_spans("checkout", vec![span("GET /cart", &[])])]]);
/// assert_eq!(found.unwrap(), vec![(0, Finding::new("root", 0))]);
/// ```
pub struct AnalyserHarness<A: Analyser> {
    analyser: A,
}

impl<A: Analyser> AnalyserHarness<A> {
    /// Builds the analyser from `config`, as the collector does at start-up.
    pub fn new(config: serde_json::Value) -> Result<Self, String> {
        Ok(Self {
            analyser: A::new(PluginConfig::new(config))?,
        })
    }

    /// Analyses `traces` (each the resource spans of one trace) as one batch: the findings,
    /// each with its trace's index, or the error the host would count. A finding the host
    /// would refuse (a span number out of range, a pattern empty or too long) is an error
    /// here too.
    pub fn analyse(
        &mut self,
        traces: &[Vec<ResourceSpans>],
    ) -> Result<Vec<(u32, Finding)>, String> {
        let now = crate::host::now_unix_nano();
        let summaries: Vec<TraceSummary> =
            traces.iter().map(|t| TraceSummary::of(t, now)).collect();
        let counts: Vec<u32> = traces.iter().map(|t| t.len() as u32).collect();
        let flat: Vec<ResourceSpans> = traces.iter().flatten().cloned().collect();
        let found =
            crate::analyser::analyse_all(&flat, &summaries, &counts, |t| self.analyser.analyse(t))?;
        for (trace, f) in &found {
            let spans = summaries[*trace as usize].span_count;
            crate::analyser::check(f, spans)?;
        }
        Ok(found)
    }

    /// The analyser itself.
    pub fn analyser(&mut self) -> &mut A {
        &mut self.analyser
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    use prost::Message;

    use super::{Harness, kv, resource_spans, span};
    use crate::edit::Output;
    use crate::prelude::*;
    use crate::{Edit, Target, wire};

    /// Returns the edits it is given, as a plugin that computes its own would.
    struct Pusher {
        edits: Vec<Edit>,
    }

    impl Plugin for Pusher {
        fn new(_: PluginConfig) -> Result<Self, String> {
            Ok(Pusher { edits: Vec::new() })
        }

        fn process(&mut self, batch: &mut Batch) -> Result<(), String> {
            for edit in &self.edits {
                batch.push_edit(edit.clone());
            }
            Ok(())
        }
    }

    /// Tags, renames, sets a status and drops, through the mutable API.
    struct Mixed;

    impl Plugin for Mixed {
        fn new(_: PluginConfig) -> Result<Self, String> {
            Ok(Mixed)
        }

        fn process(&mut self, batch: &mut Batch) -> Result<(), String> {
            batch.for_each_resource(|r| r.set_attribute("deployment.environment", "prod"));
            batch.for_each_span(|s| {
                if s.name() == "drop me" {
                    s.drop_span();
                    return;
                }
                s.set_attribute("dup", "one");
                s.remove_attribute("secret");
                s.set_name(s.name().to_uppercase());
                s.set_status(StatusCode::Error, "boom");
                if !s.events().is_empty() {
                    s.set_event_attribute(0, "seen", true);
                }
            });
            Ok(())
        }
    }

    fn input() -> Vec<ResourceSpans> {
        let mut first = span(
            "get /cart",
            &[
                ("dup", Value::from("a")),
                ("dup", Value::from("b")),
                ("secret", Value::from("x")),
                ("secret", Value::from("y")),
            ],
        );
        first.events.push(Event {
            name: "retry".to_string(),
            attributes: vec![kv("attempt", Value::from(2i64))],
            ..Default::default()
        });
        vec![
            resource_spans("checkout", vec![first, span("post /pay", &[])]),
            // Its only span goes, and with it the scope and the resource.
            resource_spans("cart", vec![span("drop me", &[])]),
        ]
    }

    /// What the collector's plugin host makes of `edits` on `input`: the request as a receiver
    /// hands it on, the SDK's `wire::edit::apply` on it, the result as an exporter decodes it.
    fn host(input: &[ResourceSpans], edits: Vec<Edit>) -> Result<Vec<ResourceSpans>, String> {
        let request = ExportTraceServiceRequest {
            resource_spans: input.to_vec(),
        }
        .encode_to_vec();
        let edited = wire::edit::apply(&request, edits)?;
        Ok(ExportTraceServiceRequest::decode(edited.bytes.as_slice())
            .expect("valid")
            .resource_spans)
    }

    #[test]
    fn a_bad_edit_fails_with_the_hosts_text() {
        let mut h = Harness::<Pusher>::new(serde_json::json!({})).unwrap();
        let cases = [
            (
                vec![
                    Edit::SetSpanName {
                        span: 0,
                        name: "fine".to_string(),
                    },
                    Edit::DropSpan { span: 3 },
                ],
                "span index 3 is out of range (the batch has 3)",
            ),
            (
                vec![Edit::SetAttribute {
                    target: Target::Event(1, 0),
                    key: "k".to_string(),
                    value: Value::from("v"),
                }],
                "event index 0 of span 1 is out of range (the span has 0)",
            ),
            (
                vec![Edit::RemoveAttribute {
                    target: Target::Scope(2),
                    key: "k".to_string(),
                }],
                "scope index 2 is out of range (the batch has 2)",
            ),
        ];
        for (edits, text) in cases {
            h.plugin().edits = edits.clone();
            let got = h.process(input()).unwrap_err();
            assert_eq!(got, text);
            assert_eq!(Err(got), host(&input(), edits));
        }
    }

    #[test]
    fn edits_give_what_the_host_gives() {
        let mut h = Harness::<Mixed>::new(serde_json::json!({})).unwrap();
        let got = h.process(input()).unwrap();

        // The same plugin's edits, taken from a batch by hand and applied the host's way.
        let mut batch = Batch::new(input());
        Mixed.process(&mut batch).unwrap();
        let Output::Edits(edits) = batch.into_output() else {
            panic!("the plugin edits");
        };
        assert_eq!(Ok(got.clone()), host(&input(), edits.clone()));

        // And what that is: the first `dup` set, every `secret` gone, empty parents pruned.
        assert_eq!(got.len(), 1);
        let spans = &got[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].name, "GET /CART");
        assert_eq!(
            spans[0].attributes,
            vec![kv("dup", Value::from("one")), kv("dup", Value::from("b"))]
        );
        assert_eq!(spans[0].events[0].attributes.len(), 2);
        assert_eq!(spans[1].status.as_ref().unwrap().message, "boom");

        // A plugin that computes the same edits itself gets the same batch.
        let mut pusher = Harness::<Pusher>::new(serde_json::json!({})).unwrap();
        pusher.plugin().edits = edits;
        assert_eq!(pusher.process(input()).unwrap(), got);
    }

    #[test]
    fn a_bad_replacement_fails_as_the_host_decodes_it() {
        struct Garbage;
        impl Plugin for Garbage {
            fn new(_: PluginConfig) -> Result<Self, String> {
                Ok(Garbage)
            }
            fn process(&mut self, batch: &mut Batch) -> Result<(), String> {
                // A resource_spans field that claims five bytes and has one.
                batch.replace_encoded(vec![0x0a, 0x05, 0x00]);
                Ok(())
            }
        }
        let mut h = Harness::<Garbage>::new(serde_json::json!({})).unwrap();
        let got = h.process(input()).unwrap_err();
        assert_eq!(
            got,
            "the replacement batch is not valid OTLP protobuf: failed to decode Protobuf message: \
             ExportTraceServiceRequest.resource_spans: buffer underflow"
        );
    }
}
