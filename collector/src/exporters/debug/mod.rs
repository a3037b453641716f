//! `debug`: prints what passes through to stderr, at three levels of detail.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::Deserialize;

use crate::component::{BuildContext, Exporter, ExporterConfig, Lifecycle, Problem, Validate};
use crate::pipeline::{ConsumeError, Consumer, TraceBatch, Traces};
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
    fn build_traces(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<Traces>>> {
        Ok(Arc::new(DebugExporter {
            config: self.clone(),
            seen: AtomicU64::new(0),
            metrics: ctx.metrics.exporter(&ctx.id.to_string()),
        }))
    }
}

struct DebugExporter {
    config: DebugExporterConfig,
    seen: AtomicU64,
    metrics: ExporterMetrics,
}

#[async_trait]
impl Consumer<Traces> for DebugExporter {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
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

/// Renders a batch as text at the given verbosity.
pub fn render(batch: &TraceBatch, verbosity: Verbosity) -> String {
    let mut out = format!(
        "Traces {{\"resource spans\": {}, \"spans\": {}}}\n",
        batch.resources().len(),
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
    for (ri, rs) in batch.resources().iter().enumerate() {
        if verbosity == Verbosity::Detailed {
            let _ = writeln!(out, "ResourceSpans #{ri}");
            if let Some(r) = &rs.resource {
                let _ = writeln!(out, "Resource attributes:");
                attributes(&mut out, &r.attributes, "     -> ");
            }
        }
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            if verbosity == Verbosity::Detailed {
                let (name, version) = ss
                    .scope
                    .as_ref()
                    .map(|s| (s.name.as_str(), s.version.as_str()))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "ScopeSpans #{si}\nInstrumentationScope {name} {version}"
                );
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
                    detailed_span(&mut out, i, span);
                }
            }
        }
    }
    out
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
