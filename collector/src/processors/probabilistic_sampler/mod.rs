//! `probabilistic_sampler`: keeps a fixed percentage of traces (decided by trace id) or of log
//! records (by their trace id, or by a record attribute).
//!
//! The decision hashes the trace id exactly as the OpenTelemetry Collector's
//! `probabilistic_sampler` does in `hash_seed` mode (FNV-1a 32 over the seed and the trace id,
//! 14-bit buckets), so every span of a trace gets the same decision on every collector that
//! uses the same seed, including Go collectors in the same fleet; a log record logged inside a
//! span gets its span's decision. Log records follow the Collector's rules too:
//! `attribute_source: record` hashes the `from_attribute` attribute's value instead of the
//! trace id; a record with nothing to hash is dropped (`fail_closed: true`, the default) or
//! kept; a numeric `sampling_priority` attribute raises the record's percentage to its value.

use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::Deserialize;

use wasmcol_plugin_sdk::edit::Edit;
use wasmcol_plugin_sdk::wire::edit as wire_edit;

use crate::component::{BuildContext, Lifecycle, Problem, Processor, ProcessorConfig, Validate};
use crate::otlp::wire;
use crate::pipeline::{
    Batch, ConsumeError, Consumer, Logs, SharedConsumer, SignalKind, Signals, TraceBatch, Traces,
};
use crate::telemetry::ProcessorMetrics;

const NUM_HASH_BUCKETS: u32 = 0x4000;
/// Span attribute that overrides the hash: > 0 keeps the span, 0 drops it.
const PRIORITY: &str = "sampling.priority";
const BUCKET_MASK: u32 = NUM_HASH_BUCKETS - 1;

/// `processors.probabilistic_sampler`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticSamplerConfig {
    /// Percentage of traces to keep, 0 to 100 (fractions allowed).
    pub sampling_percentage: f64,
    /// Seed mixed into the hash; collectors that must agree on decisions use the same seed,
    /// tiers that must sample independently use different ones.
    #[serde(default)]
    pub hash_seed: u32,
    /// Logs: what is hashed, `traceID` (the record's trace id, the default) or `record` (the
    /// attribute named by `from_attribute`).
    #[serde(default)]
    pub attribute_source: AttributeSource,
    /// Logs: the record attribute hashed with `attribute_source: record`.
    #[serde(default)]
    pub from_attribute: String,
    /// Logs: a record attribute whose numeric value (a percentage) raises that record's chance
    /// of being kept: `100` always keeps it.
    #[serde(default)]
    pub sampling_priority: String,
    /// Logs: drop (`true`, the default) or keep a record that has nothing to hash (no trace id,
    /// or no `from_attribute`).
    #[serde(default = "default_fail_closed")]
    pub fail_closed: bool,
}

fn default_fail_closed() -> bool {
    true
}

/// `attribute_source`: what a log record's decision hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum AttributeSource {
    /// The record's trace id.
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    /// The record attribute named by `from_attribute`.
    #[serde(rename = "record")]
    Record,
}

impl Validate for ProbabilisticSamplerConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !(0.0..=100.0).contains(&self.sampling_percentage) {
            problems.push(Problem::new(
                "sampling_percentage",
                format!(
                    "must be between 0 and 100, got {}",
                    self.sampling_percentage
                ),
            ));
        }
        if self.attribute_source == AttributeSource::Record && self.from_attribute.is_empty() {
            problems.push(Problem::new(
                "from_attribute",
                "required with attribute_source: record (the log record attribute to hash)",
            ));
        }
        problems
    }
}

impl ProcessorConfig for ProbabilisticSamplerConfig {
    fn signals(&self) -> Signals {
        Signals::of(&[SignalKind::Traces, SignalKind::Logs])
    }

    fn build_logs(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Logs>,
    ) -> anyhow::Result<Arc<dyn Processor<Logs>>> {
        Ok(Arc::new(LogSampler {
            threshold: threshold(self.sampling_percentage),
            seed: self.hash_seed,
            config: self.clone(),
            next,
            metrics: ctx.metrics.processor(
                &ctx.id.to_string(),
                ctx.pipeline.as_deref().unwrap_or(""),
                SignalKind::Logs,
            ),
        }))
    }

    fn build_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Processor<Traces>>> {
        Ok(Arc::new(Sampler {
            threshold: threshold(self.sampling_percentage),
            seed: self.hash_seed,
            next,
            metrics: ctx.metrics.processor(
                &ctx.id.to_string(),
                ctx.pipeline.as_deref().unwrap_or(""),
                SignalKind::Traces,
            ),
        }))
    }
}

/// The hash buckets below which an item is kept, for a percentage.
fn threshold(percentage: f64) -> u32 {
    (percentage * f64::from(NUM_HASH_BUCKETS) / 100.0) as u32
}

struct Sampler {
    threshold: u32,
    seed: u32,
    next: SharedConsumer<Traces>,
    metrics: ProcessorMetrics,
}

/// FNV-1a 32 over the seed's four little-endian bytes, then the trace id.
fn hash(seed: u32, trace_id: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in seed.to_le_bytes().iter().chain(trace_id) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

impl Sampler {
    fn keep(&self, span: &Span) -> bool {
        // `sampling.priority` on a span overrides the hash: > 0 keeps it, 0 drops it.
        for kv in &span.attributes {
            if kv.key == PRIORITY {
                match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::IntValue(p)) => return *p > 0,
                    Some(Value::DoubleValue(p)) => return *p > 0.0,
                    _ => {}
                }
            }
        }
        self.keep_trace(&span.trace_id)
    }

    /// [`Sampler::keep`] on a span read in place.
    fn keep_encoded(&self, span: &wire::SpanView<'_>) -> bool {
        match wire::numeric_attribute(span.encoded(), 9, PRIORITY) {
            Some(p) => p > 0.0,
            None => self.keep_trace(span.trace_id()),
        }
    }

    fn keep_trace(&self, trace_id: &[u8]) -> bool {
        hash(self.seed, trace_id) & BUCKET_MASK < self.threshold
    }

    /// Samples a batch still held as received bytes: each request's dropped spans are cut out
    /// of its bytes (untouched requests are kept as they are), never decoding the spans.
    fn sample_encoded(&self, batch: &mut TraceBatch) {
        let Some(parts) = batch.protobuf_parts() else {
            return;
        };
        let mut out = Vec::with_capacity(parts.len());
        for part in parts {
            let view = wire::TracesView::new(part);
            let mut drops = Vec::new();
            let mut total = 0usize;
            let all = view
                .resource_spans()
                .flat_map(|rs| rs.scope_spans())
                .flat_map(|ss| ss.spans());
            for (index, span) in (0u32..).zip(all) {
                if !self.keep_encoded(&span) {
                    drops.push(Edit::DropSpan { span: index });
                }
                total += 1;
            }
            if drops.is_empty() {
                out.push((part.clone(), total));
                continue;
            }
            // Indices come from the same bytes, so they are always in range.
            match wire_edit::apply(part, drops) {
                Ok(kept) => out.push((kept.bytes.into(), kept.spans)),
                Err(e) => tracing::error!(error = %e, "sampling checked bytes failed; part lost"),
            }
        }
        batch.set_payload_of(TraceBatch::from_trusted_parts(out));
    }

    /// Samples decoded spans in place.
    fn sample_decoded(&self, batch: &mut TraceBatch) {
        let all_kept = batch
            .resources()
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .all(|s| self.keep(s));
        if !all_kept {
            let rs = batch.resources_mut();
            for r in rs.iter_mut() {
                for ss in &mut r.scope_spans {
                    ss.spans.retain(|s| self.keep(s));
                }
                r.scope_spans.retain(|ss| !ss.spans.is_empty());
            }
            rs.retain(|r| !r.scope_spans.is_empty());
        }
    }
}

#[async_trait]
impl Consumer<Traces> for Sampler {
    async fn consume(&self, mut batch: TraceBatch) -> Result<(), ConsumeError> {
        let before = batch.item_count();
        self.metrics.incoming.inc_by(before as u64);
        if batch.protobuf_parts().is_some() {
            self.sample_encoded(&mut batch);
        } else {
            self.sample_decoded(&mut batch);
        }
        let after = batch.item_count();
        self.metrics.dropped.inc_by((before - after) as u64);
        if after == 0 {
            return Ok(());
        }
        self.metrics.outgoing.inc_by(after as u64);
        self.next.consume(batch).await
    }
}

impl Lifecycle for Sampler {}

/// The sampler of a logs pipeline.
struct LogSampler {
    threshold: u32,
    seed: u32,
    config: ProbabilisticSamplerConfig,
    next: SharedConsumer<Logs>,
    metrics: ProcessorMetrics,
}

fn attribute<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// An attribute value's bytes as the Collector hashes them: bytes as they are, anything else
/// as its string form.
fn value_bytes(value: &Value) -> std::borrow::Cow<'_, [u8]> {
    match value {
        Value::BytesValue(b) => b.as_slice().into(),
        Value::StringValue(s) => s.as_bytes().into(),
        Value::IntValue(i) => i.to_string().into_bytes().into(),
        Value::DoubleValue(d) => d.to_string().into_bytes().into(),
        Value::BoolValue(b) => b.to_string().into_bytes().into(),
        other => format!("{other:?}").into_bytes().into(),
    }
}

impl LogSampler {
    fn keep(&self, record: &LogRecord) -> bool {
        let source: Option<std::borrow::Cow<'_, [u8]>> = match self.config.attribute_source {
            AttributeSource::TraceId => {
                wire::valid_id(&record.trace_id, 16).then(|| record.trace_id.as_slice().into())
            }
            AttributeSource::Record => {
                attribute(&record.attributes, &self.config.from_attribute).map(value_bytes)
            }
        };
        let Some(source) = source else {
            return !self.config.fail_closed;
        };
        let bucket = hash(self.seed, &source) & BUCKET_MASK;
        let mut threshold = self.threshold;
        if !self.config.sampling_priority.is_empty() {
            let priority = match attribute(&record.attributes, &self.config.sampling_priority) {
                Some(Value::IntValue(p)) => *p as f64,
                Some(Value::DoubleValue(p)) => *p,
                _ => 0.0,
            };
            if priority >= 100.0 {
                return true;
            }
            threshold = threshold.max(self::threshold(priority.max(0.0)));
        }
        bucket < threshold
    }
}

#[async_trait]
impl Consumer<Logs> for LogSampler {
    async fn consume(&self, mut batch: Batch<Logs>) -> Result<(), ConsumeError> {
        let before = batch.item_count();
        self.metrics.incoming.inc_by(before as u64);
        let all_kept = batch
            .resources()
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .all(|r| self.keep(r));
        if !all_kept {
            let rl = batch.resources_mut();
            for r in rl.iter_mut() {
                for sl in &mut r.scope_logs {
                    sl.log_records.retain(|rec| self.keep(rec));
                }
                r.scope_logs.retain(|sl| !sl.log_records.is_empty());
            }
            rl.retain(|r| !r.scope_logs.is_empty());
        }
        let after = batch.item_count();
        self.metrics.dropped.inc_by((before - after) as u64);
        if after == 0 {
            return Ok(());
        }
        self.metrics.outgoing.inc_by(after as u64);
        self.next.consume(batch).await
    }
}

impl Lifecycle for LogSampler {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Recorder, context, spans};

    #[test]
    fn fnv1a_matches_reference_values() {
        // FNV-1a 32 of "" is the offset basis; of "a" is 0xe40c292c (published test vectors).
        let plain = |data: &[u8]| {
            let mut h: u32 = 0x811c_9dc5;
            for b in data {
                h ^= u32::from(*b);
                h = h.wrapping_mul(0x0100_0193);
            }
            h
        };
        assert_eq!(plain(b""), 0x811c_9dc5);
        assert_eq!(plain(b"a"), 0xe40c_292c);
        assert_eq!(hash(0, b"a"), plain(&[0, 0, 0, 0, b'a']));
    }

    fn config(pct: f64, seed: u32) -> ProbabilisticSamplerConfig {
        serde_yaml_ng::from_str(&format!(
            "{{sampling_percentage: {pct}, hash_seed: {seed}}}"
        ))
        .unwrap()
    }

    /// `n` log records: record `i` has trace id `i` when `i % 3 != 0`, attribute `id` = `i`,
    /// and `prio` = 100 when `i % 5 == 0`.
    fn records(n: usize) -> Batch<Logs> {
        use opentelemetry_proto::tonic::common::v1::AnyValue;
        use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
        let kv = |key: &str, value: Value| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        };
        let log_records = (0..n as u64)
            .map(|i| {
                let mut trace_id = vec![0; 16];
                trace_id[8..].copy_from_slice(&(i + 1).to_be_bytes());
                let mut attributes = vec![kv("id", Value::IntValue(i as i64))];
                if i % 5 == 0 {
                    attributes.push(kv("prio", Value::IntValue(100)));
                }
                LogRecord {
                    trace_id: if i % 3 == 0 { Vec::new() } else { trace_id },
                    time_unix_nano: i,
                    attributes,
                    ..Default::default()
                }
            })
            .collect();
        Batch::new(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    async fn kept_records(yaml: &str, n: usize) -> Vec<u64> {
        let rec = Recorder::<Logs>::new();
        let cfg: ProbabilisticSamplerConfig = serde_yaml_ng::from_str(yaml).unwrap();
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        let p = cfg
            .build_logs(&context("probabilistic_sampler"), rec.clone())
            .unwrap();
        p.consume(records(n)).await.unwrap();
        rec.batches()
            .iter()
            .flat_map(|b| b.resources().to_vec())
            .flat_map(|rl| rl.scope_logs)
            .flat_map(|sl| sl.log_records)
            .map(|r| r.time_unix_nano)
            .collect()
    }

    #[tokio::test]
    async fn log_records_are_sampled_by_trace_id_or_attribute_with_priority() {
        let n = 9000;
        // By trace id: records without one are dropped (fail_closed), the others sampled as
        // the spans of their trace are.
        let by_trace = kept_records("{sampling_percentage: 40, hash_seed: 5}", n).await;
        assert!(by_trace.iter().all(|i| i % 3 != 0));
        let share = by_trace.len() as f64 / (n as f64 * 2.0 / 3.0);
        assert!((share - 0.4).abs() < 0.03, "kept {share}");
        let sampler = Sampler {
            threshold: threshold(40.0),
            seed: 5,
            next: Recorder::new(),
            metrics: Default::default(),
        };
        for i in 0..n as u64 {
            let mut trace_id = vec![0; 16];
            trace_id[8..].copy_from_slice(&(i + 1).to_be_bytes());
            let span_kept = sampler.keep_trace(&trace_id);
            assert_eq!(span_kept && i % 3 != 0, by_trace.binary_search(&i).is_ok());
        }
        // fail_closed: false keeps the records with nothing to hash.
        let open = kept_records(
            "{sampling_percentage: 40, hash_seed: 5, fail_closed: false}",
            n,
        )
        .await;
        assert_eq!(open.iter().filter(|i| *i % 3 == 0).count(), n / 3);
        // By attribute, every record has one; with priority, every fifth is always kept.
        let by_attr = kept_records(
            "{sampling_percentage: 10, attribute_source: record, from_attribute: id, sampling_priority: prio}",
            n,
        )
        .await;
        assert!(
            (0..n as u64)
                .step_by(5)
                .all(|i| by_attr.binary_search(&i).is_ok())
        );
        let others = by_attr.iter().filter(|i| *i % 5 != 0).count() as f64 / (n as f64 * 0.8);
        assert!((others - 0.1).abs() < 0.02, "kept {others}");
        assert_eq!(
            kept_records(
                "{sampling_percentage: 0, attribute_source: record, from_attribute: id}",
                n
            )
            .await,
            Vec::<u64>::new()
        );
    }

    #[test]
    fn record_source_needs_an_attribute() {
        let cfg: ProbabilisticSamplerConfig =
            serde_yaml_ng::from_str("{sampling_percentage: 10, attribute_source: record}").unwrap();
        assert_eq!(cfg.validate()[0].path, "from_attribute");
        assert!(
            serde_yaml_ng::from_str::<ProbabilisticSamplerConfig>(
                "{sampling_percentage: 10, attribute_source: body}"
            )
            .is_err()
        );
    }

    async fn kept(pct: f64, seed: u32, n: usize) -> usize {
        let rec = Recorder::new();
        let cfg = config(pct, seed);
        let p = cfg
            .build_traces(&context("probabilistic_sampler"), rec.clone())
            .unwrap();
        p.consume(spans(n)).await.unwrap();
        rec.batch_sizes().iter().sum()
    }

    #[tokio::test]
    async fn keeps_about_the_percentage() {
        let n = 20_000;
        let k = kept(25.0, 7, n).await as f64 / n as f64;
        assert!((k - 0.25).abs() < 0.02, "kept {k}");
        assert_eq!(kept(0.0, 7, 1000).await, 0);
        assert_eq!(kept(100.0, 7, 1000).await, 1000);
    }

    #[tokio::test]
    async fn decision_is_consistent_per_trace_and_seed() {
        let a = kept(50.0, 1, 5000).await;
        assert_eq!(a, kept(50.0, 1, 5000).await);
        assert_ne!(a, kept(50.0, 2, 5000).await);
    }

    /// A batch of `n` spans in `parts` requests, some spans carrying `sampling.priority` (an
    /// int, a double, or a string, which does not count).
    fn with_priorities(n: usize) -> TraceBatch {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
        let mut rs = spans(n).into_resources();
        for (i, span) in rs[0].scope_spans[0].spans.iter_mut().enumerate() {
            let value = match i % 7 {
                0 => Value::IntValue(1),
                1 => Value::IntValue(0),
                2 => Value::DoubleValue(0.5),
                3 => Value::StringValue("1".into()),
                _ => continue,
            };
            span.attributes.push(KeyValue {
                key: PRIORITY.into(),
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            });
        }
        TraceBatch::new(rs)
    }

    /// The byte path keeps exactly the spans the decoded path keeps.
    #[tokio::test]
    async fn bytes_and_decoded_spans_are_sampled_alike() {
        let run = |batch: TraceBatch| async move {
            let rec = Recorder::new();
            let cfg = config(30.0, 3);
            let p = cfg
                .build_traces(&context("probabilistic_sampler"), rec.clone())
                .unwrap();
            p.consume(batch).await.unwrap();
            rec.span_ids()
        };
        let decoded = run(with_priorities(3000)).await;
        // The same spans as received bytes, in three requests.
        let mut encoded = TraceBatch::default();
        for chunk in with_priorities(3000).into_resources()[0].scope_spans[0]
            .spans
            .chunks(1000)
        {
            let mut part = spans(0).into_resources();
            part[0].scope_spans[0].spans = chunk.to_vec();
            let mut bytes = Vec::new();
            TraceBatch::new(part).encode_protobuf(&mut bytes);
            encoded.merge(TraceBatch::from_protobuf(bytes.into()).unwrap());
        }
        assert_eq!(encoded.protobuf_parts().map(|p| p.len()), Some(3));
        let from_bytes = run(encoded).await;
        assert!(
            decoded.len() > 700 && decoded.len() < 1500,
            "{}",
            decoded.len()
        );
        assert_eq!(from_bytes, decoded);
    }
}
