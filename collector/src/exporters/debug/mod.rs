//! `debug`: prints what passes through to stderr, at three levels of detail.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use serde::Deserialize;

use crate::component::{BuildContext, Exporter, ExporterConfig, Lifecycle, Problem, Validate};
use crate::pipeline::{Batch, ConsumeError, Consumer, Logs, Metrics, Signal, Traces};
use crate::telemetry::ExporterMetrics;

/// How much the debug exporter prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One summary line per batch.
    #[default]
    Basic,
    /// One line per span.
    Normal,
    /// Every field of every span.
    Detailed,
}

/// `exporters.debug`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugExporterConfig {
    /// `basic`, `normal` or `detailed`.
    #[serde(default)]
    pub verbosity: Verbosity,
    /// Batches printed in full before sampling starts.
    #[serde(default = "default_initial")]
    pub sampling_initial: u64,
    /// After the initial batches, print one batch in this many.
    #[serde(default = "default_thereafter")]
    pub sampling_thereafter: u64,
}

fn default_initial() -> u64 {
    2
}
fn default_thereafter() -> u64 {
    1
}

impl Validate for DebugExporterConfig {
    fn validate(&self) -> Vec<Problem> {
        if self.sampling_thereafter == 0 {
            vec![Problem::new(
                "sampling_thereafter",
                "must be at least 1, got 0",
            )]
        } else {
            Vec::new()
        }
    }
}

impl ExporterConfig for DebugExporterConfig {
    crate::component::exports_every_signal!(build);
}

impl DebugExporterConfig {
    fn build<S: Render>(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<S>>> {
        Ok(Arc::new(DebugExporter {
            config: self.clone(),
            seen: AtomicU64::new(0),
            metrics: ctx.metrics.exporter(&ctx.id.to_string(), S::KIND),
        }))
    }
}

struct DebugExporter {
    config: DebugExporterConfig,
    seen: AtomicU64,
    metrics: ExporterMetrics,
}

#[async_trait]
impl<S: Render> Consumer<S> for DebugExporter {
    async fn consume(&self, batch: Batch<S>) -> Result<(), ConsumeError> {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        let spans = batch.item_count();
        let print = n < self.config.sampling_initial
            || (n - self.config.sampling_initial).is_multiple_of(self.config.sampling_thereafter);
        if print {
            let text = render(&batch, self.config.verbosity);
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
        self.metrics.sent.inc_by(spans as u64);
        Ok(())
    }
}

impl Lifecycle for DebugExporter {}

/// A signal the debug exporter can print.
pub trait Render: Signal {
    /// The name of the resource-level message, `ResourceSpans`.
    const RESOURCE: &'static str;
    /// What the count line calls those messages, `resource spans`.
    const RESOURCES: &'static str;

    /// The resource of one resource-level message.
    fn resource(resource: &Self::Resource) -> Option<&Resource>;

    /// Appends the items of one resource-level message at `verbosity` (normal or detailed).
    fn items(out: &mut String, resource: &Self::Resource, verbosity: Verbosity);
}

/// Renders a batch as text at the given verbosity: a count line, then (normal) a line per
/// item, or (detailed) every field, as the OpenTelemetry Collector's debug exporter does.
pub fn render<S: Render>(batch: &Batch<S>, verbosity: Verbosity) -> String {
    let mut out = format!(
        "{} {{\"{}\": {}, \"{}\": {}}}\n",
        capitalized(S::KIND.name()),
        S::RESOURCES,
        batch.resources().len(),
        S::KIND.items(),
        batch.item_count()
    );
    if verbosity == Verbosity::Basic {
        return out;
    }
    // Who sent it, when a receiver authenticated the request (never the credential).
    if verbosity == Verbosity::Detailed
        && let Some(subject) = batch.metadata.get(crate::auth::SUBJECT_KEY)
    {
        let groups: Vec<&str> = batch.metadata.get_all(crate::auth::GROUPS_KEY).collect();
        let _ = writeln!(
            out,
            "Authenticated subject: {subject} (groups: [{}])",
            groups.join(", ")
        );
    }
    for (ri, r) in batch.resources().iter().enumerate() {
        if verbosity == Verbosity::Detailed {
            let _ = writeln!(out, "{} #{ri}", S::RESOURCE);
            if let Some(r) = S::resource(r) {
                let _ = writeln!(out, "Resource attributes:");
                attributes(&mut out, &r.attributes, "     -> ");
            }
        }
        S::items(&mut out, r, verbosity);
    }
    out
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn scope_line(out: &mut String, kind: &str, i: usize, scope: Option<&InstrumentationScope>) {
    let (name, version) = scope
        .map(|s| (s.name.as_str(), s.version.as_str()))
        .unwrap_or_default();
    let _ = writeln!(out, "{kind} #{i}\nInstrumentationScope {name} {version}");
}

impl Render for Traces {
    const RESOURCES: &'static str = "resource spans";
    const RESOURCE: &'static str = "ResourceSpans";

    fn resource(rs: &ResourceSpans) -> Option<&Resource> {
        rs.resource.as_ref()
    }

    fn items(out: &mut String, rs: &ResourceSpans, verbosity: Verbosity) {
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            if verbosity == Verbosity::Detailed {
                scope_line(out, "ScopeSpans", si, ss.scope.as_ref());
            }
            for (i, span) in ss.spans.iter().enumerate() {
                if verbosity == Verbosity::Normal {
                    let _ = writeln!(
                        out,
                        "{} {} {}",
                        span.name,
                        hex::encode(&span.trace_id),
                        hex::encode(&span.span_id)
                    );
                } else {
                    detailed_span(out, i, span);
                }
            }
        }
    }
}

impl Render for Logs {
    const RESOURCES: &'static str = "resource logs";
    const RESOURCE: &'static str = "ResourceLog";

    fn resource(rl: &ResourceLogs) -> Option<&Resource> {
        rl.resource.as_ref()
    }

    fn items(out: &mut String, rl: &ResourceLogs, verbosity: Verbosity) {
        for (si, sl) in rl.scope_logs.iter().enumerate() {
            if verbosity == Verbosity::Detailed {
                scope_line(out, "ScopeLogs", si, sl.scope.as_ref());
            }
            for (i, record) in sl.log_records.iter().enumerate() {
                if verbosity == Verbosity::Normal {
                    let _ = writeln!(
                        out,
                        "{} {}",
                        record.severity_text,
                        value(record.body.as_ref())
                    );
                } else {
                    detailed_log_record(out, i, record);
                }
            }
        }
    }
}

impl Render for Metrics {
    const RESOURCES: &'static str = "resource metrics";
    const RESOURCE: &'static str = "ResourceMetrics";

    fn resource(rm: &ResourceMetrics) -> Option<&Resource> {
        rm.resource.as_ref()
    }

    fn items(out: &mut String, rm: &ResourceMetrics, verbosity: Verbosity) {
        for (si, sm) in rm.scope_metrics.iter().enumerate() {
            if verbosity == Verbosity::Detailed {
                scope_line(out, "ScopeMetrics", si, sm.scope.as_ref());
            }
            for (i, m) in sm.metrics.iter().enumerate() {
                let (kind, points) = metric_kind(m);
                if verbosity == Verbosity::Normal {
                    let _ = writeln!(out, "{} {kind} {points}", m.name);
                } else {
                    let _ = writeln!(out, "Metric #{i}");
                    let _ = writeln!(out, "Descriptor:");
                    let _ = writeln!(out, "     -> Name: {}", m.name);
                    let _ = writeln!(out, "     -> Description: {}", m.description);
                    let _ = writeln!(out, "     -> Unit: {}", m.unit);
                    let _ = writeln!(out, "     -> DataType: {kind}");
                    let _ = writeln!(out, "     -> DataPoints: {points}");
                }
            }
        }
    }
}

/// A metric's data type, as the Collector names it, and its number of data points.
fn metric_kind(m: &Metric) -> (&'static str, usize) {
    use crate::pipeline::Split;
    let kind = match &m.data {
        None => "Empty",
        Some(metric::Data::Gauge(_)) => "Gauge",
        Some(metric::Data::Sum(_)) => "Sum",
        Some(metric::Data::Histogram(_)) => "Histogram",
        Some(metric::Data::ExponentialHistogram(_)) => "ExponentialHistogram",
        Some(metric::Data::Summary(_)) => "Summary",
    };
    (kind, m.items())
}

fn detailed_log_record(out: &mut String, i: usize, r: &LogRecord) {
    let _ = writeln!(out, "LogRecord #{i}");
    let _ = writeln!(out, "ObservedTimestamp: {}", r.observed_time_unix_nano);
    let _ = writeln!(out, "Timestamp: {}", r.time_unix_nano);
    let _ = writeln!(out, "SeverityText: {}", r.severity_text);
    let _ = writeln!(out, "SeverityNumber: {}", r.severity_number);
    let _ = writeln!(out, "Body: {}", value(r.body.as_ref()));
    if !r.attributes.is_empty() {
        let _ = writeln!(out, "Attributes:");
        attributes(out, &r.attributes, "     -> ");
    }
    let _ = writeln!(out, "Trace ID: {}", hex::encode(&r.trace_id));
    let _ = writeln!(out, "Span ID: {}", hex::encode(&r.span_id));
    let _ = writeln!(out, "Flags: {}", r.flags);
}

fn detailed_span(out: &mut String, i: usize, s: &Span) {
    let _ = writeln!(out, "Span #{i}");
    let _ = writeln!(out, "    Trace ID       : {}", hex::encode(&s.trace_id));
    let _ = writeln!(
        out,
        "    Parent ID      : {}",
        hex::encode(&s.parent_span_id)
    );
    let _ = writeln!(out, "    ID             : {}", hex::encode(&s.span_id));
    let _ = writeln!(out, "    Name           : {}", s.name);
    let _ = writeln!(out, "    Kind           : {}", s.kind().as_str_name());
    let _ = writeln!(out, "    Start time     : {}", s.start_time_unix_nano);
    let _ = writeln!(out, "    End time       : {}", s.end_time_unix_nano);
    if let Some(st) = &s.status {
        let _ = writeln!(out, "    Status code    : {}", st.code().as_str_name());
        let _ = writeln!(out, "    Status message : {}", st.message);
    }
    if !s.attributes.is_empty() {
        let _ = writeln!(out, "Attributes:");
        attributes(out, &s.attributes, "     -> ");
    }
    for (ei, e) in s.events.iter().enumerate() {
        let _ = writeln!(
            out,
            "SpanEvent #{ei}\n     -> Name: {}\n     -> Timestamp: {}",
            e.name, e.time_unix_nano
        );
        attributes(out, &e.attributes, "         -> ");
    }
    for (li, l) in s.links.iter().enumerate() {
        let _ = writeln!(
            out,
            "SpanLink #{li}\n     -> Trace ID: {}\n     -> ID: {}",
            hex::encode(&l.trace_id),
            hex::encode(&l.span_id)
        );
        attributes(out, &l.attributes, "         -> ");
    }
}

fn attributes(out: &mut String, attrs: &[KeyValue], indent: &str) {
    for kv in attrs {
        let _ = writeln!(out, "{indent}{}: {}", kv.key, value(kv.value.as_ref()));
    }
}

fn value(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => "Empty()".into(),
        Some(any_value::Value::StringValue(s)) => format!("Str({s})"),
        Some(any_value::Value::StringValueStrindex(i)) => format!("StrIndex({i})"),
        Some(any_value::Value::BoolValue(b)) => format!("Bool({b})"),
        Some(any_value::Value::IntValue(i)) => format!("Int({i})"),
        Some(any_value::Value::DoubleValue(d)) => format!("Double({d})"),
        Some(any_value::Value::BytesValue(b)) => format!("Bytes({})", hex::encode(b)),
        Some(any_value::Value::ArrayValue(a)) => format!(
            "Slice([{}])",
            a.values
                .iter()
                .map(|v| value(Some(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(any_value::Value::KvlistValue(kv)) => format!(
            "Map({{{}}})",
            kv.values
                .iter()
                .map(|kv| format!("{}: {}", kv.key, value(kv.value.as_ref())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
