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
//!
//! Every kept span records the sampling threshold in its W3C `tracestate` (`ot=th:HEX`, the
//! OpenTelemetry probability-sampling encoding), so a connector or backend behind the sampler
//! counts each kept span as the `1 / p` spans it stands for. `mode` chooses the decision as the
//! Collector's does: `hash_seed` (the FNV hash above; the kept span also gets the hash as its
//! randomness, `rv`), `proportional` (OpenTelemetry consistent sampling on the trace id's low 56
//! bits or an explicit `rv`, multiplying any upstream probability by `sampling_percentage`) or
//! `equalizing` (the same randomness, lowering every span to `sampling_percentage` at most and
//! passing spans already sampled further).

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
use crate::otlp::wire::write_bytes_field;
use crate::pipeline::{
    Batch, ConsumeError, Consumer, Logs, SharedConsumer, SignalKind, Signals, TraceBatch, Traces,
};
use crate::sampling::tracestate;
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
    /// Traces: how the decision is made, `hash_seed` (the default), `proportional` or
    /// `equalizing`.
    #[serde(default)]
    pub mode: Mode,
    /// Traces: hex digits of the threshold written with `proportional` and `equalizing`,
    /// 1 to 14 (default 4).
    #[serde(default = "default_sampling_precision")]
    pub sampling_precision: u32,
}

fn default_fail_closed() -> bool {
    true
}

fn default_sampling_precision() -> u32 {
    4
}

/// `mode`: how a span's decision is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The FNV hash of the seed and the trace id, 14-bit buckets.
    #[default]
    HashSeed,
    /// OpenTelemetry consistent sampling; the probability multiplies an upstream one.
    Proportional,
    /// OpenTelemetry consistent sampling down to `sampling_percentage` at most.
    Equalizing,
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
        if !(1..=14).contains(&self.sampling_precision) {
            problems.push(Problem::new(
                "sampling_precision",
                format!("must be between 1 and 14, got {}", self.sampling_precision),
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
            mode: self.mode,
            ratio: ratio(self.sampling_percentage),
            precision: self.sampling_precision,
            fail_closed: self.fail_closed,
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

/// The configured probability as the Collector computes it (a 32-bit float percentage).
fn ratio(percentage: f64) -> f64 {
    f64::from(percentage as f32 / 100.0)
}

struct Sampler {
    /// `hash_seed`: the hash buckets kept.
    threshold: u32,
    seed: u32,
    mode: Mode,
    /// `proportional`, `equalizing`: the probability configured.
    ratio: f64,
    /// Hex digits of a written threshold.
    precision: u32,
    /// Drop (`true`) or pass a span that has no randomness or an inconsistent threshold.
    fail_closed: bool,
    next: SharedConsumer<Traces>,
    metrics: ProcessorMetrics,
}

/// What becomes of one span.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Drop,
    /// Kept as it is.
    Keep,
    /// Kept with this `tracestate`.
    KeepWith(String),
}

/// 2^56: the range of OpenTelemetry sampling randomness and thresholds.
const MAX_THRESHOLD: u64 = 1 << 56;

/// The rejection threshold for `probability`, rounded to `precision` hex digits as the
/// OpenTelemetry Go `sampling` package does (more digits for probabilities near 0 or 1);
/// `None` when it is below the smallest representable probability.
fn probability_to_threshold(probability: f64, precision: u32) -> Option<u64> {
    if probability >= 1.0 {
        return Some(0);
    }
    if probability.is_nan() || probability <= 1.0 / MAX_THRESHOLD as f64 {
        return None;
    }
    // The binary exponent `e` of `x = m * 2^e`, `m` in [0.5, 1) (`frexp`).
    let exponent = |x: f64| ((x.to_bits() >> 52) & 0x7ff) as i32 - 1022;
    let precision = precision as i32;
    let digits = (precision + exponent(probability) / -4)
        .max(precision + exponent(1.0 - probability) / -4)
        .min(14);
    let scaled = (probability * MAX_THRESHOLD as f64).round() as u64;
    let mut threshold = MAX_THRESHOLD - scaled.min(MAX_THRESHOLD);
    let shift = 4 * (14 - digits) as u32;
    if shift != 0 {
        threshold = (threshold + (1 << (shift - 1))) >> shift << shift;
    }
    (threshold < MAX_THRESHOLD).then_some(threshold)
}

/// The probability a threshold keeps.
fn threshold_probability(threshold: u64) -> f64 {
    (MAX_THRESHOLD - threshold.min(MAX_THRESHOLD)) as f64 / MAX_THRESHOLD as f64
}

/// An explicit randomness value `rv` (exactly 14 hex digits).
fn parse_randomness(rv: &str) -> Option<u64> {
    (rv.len() == 14 && rv.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(rv, 16).ok())
        .flatten()
}

/// A span's sampling randomness: its `rv`, else its trace id's last 7 bytes (W3C Trace
/// Context Level 2); `None` for an invalid (empty or zero) trace id.
fn randomness(trace_id: &[u8], trace_state: &str) -> Option<u64> {
    if let Some(rv) = tracestate::ot_sub_key(trace_state, "rv").and_then(parse_randomness) {
        return Some(rv);
    }
    if !wire::valid_id(trace_id, 16) {
        return None;
    }
    Some(
        trace_id[9..]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
    )
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

/// A span's `sampling.priority` if numeric.
fn priority(span: &Span) -> Option<f64> {
    span.attributes
        .iter()
        .filter(|kv| kv.key == PRIORITY)
        .find_map(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::IntValue(p)) => Some(*p as f64),
                Some(Value::DoubleValue(p)) => Some(*p),
                _ => None,
            },
        )
}

impl Sampler {
    /// The verdict on a span from its trace id, `tracestate` and `sampling.priority`.
    fn verdict(&self, trace_id: &[u8], trace_state: &str, priority: Option<f64>) -> Verdict {
        match self.mode {
            Mode::HashSeed => self.hash_seed(trace_id, trace_state, priority),
            Mode::Proportional | Mode::Equalizing => {
                self.consistent(trace_id, trace_state, priority)
            }
        }
    }

    /// `hash_seed`: kept when the hash falls in the kept buckets; `sampling.priority` > 0
    /// keeps, 0 drops. A kept span gets the threshold of the kept buckets and, as its
    /// randomness, the hash (so consistent samplers further on agree with this decision); a
    /// span sampled upstream (with `th` or `rv`) gets the product of both probabilities.
    fn hash_seed(&self, trace_id: &[u8], trace_state: &str, priority: Option<f64>) -> Verdict {
        if let Some(p) = priority {
            return if p > 0.0 {
                Verdict::Keep
            } else {
                Verdict::Drop
            };
        }
        let hashed = hash(self.seed, trace_id);
        let bucket = hashed & BUCKET_MASK;
        if bucket >= self.threshold {
            return Verdict::Drop;
        }
        let upstream = tracestate::ot_sub_key(trace_state, "th").is_some()
            || tracestate::ot_sub_key(trace_state, "rv").is_some();
        if upstream {
            let p = f64::from(self.threshold) / f64::from(NUM_HASH_BUCKETS);
            return Verdict::KeepWith(tracestate::with_threshold(trace_state, p));
        }
        // As the Collector writes it: rejection threshold (buckets - kept) << 42, and a
        // 56-bit randomness whose top 14 bits are (buckets - 1 - bucket), so that
        // randomness >= threshold exactly when bucket < kept.
        let reject = u64::from(NUM_HASH_BUCKETS - self.threshold) << 42;
        let unused = u64::from(hashed >> 14);
        let mixed = unused ^ (unused << 10);
        let rv = (u64::from(NUM_HASH_BUCKETS - 1 - bucket) << 42)
            | ((mixed & ((1 << 28) - 1)) << 14)
            | u64::from(bucket);
        Verdict::KeepWith(tracestate::with_sub_keys(
            trace_state,
            &[
                ("th", &tracestate::encode_threshold(reject)),
                ("rv", &format!("{rv:014x}")),
            ],
        ))
    }

    /// `proportional` and `equalizing`: kept when the span's randomness is at least the
    /// threshold; the kept span's `th` is raised to it.
    fn consistent(&self, trace_id: &[u8], trace_state: &str, priority: Option<f64>) -> Verdict {
        let failed = || {
            if self.fail_closed {
                Verdict::Drop
            } else {
                Verdict::Keep
            }
        };
        let Some(random) = randomness(trace_id, trace_state) else {
            return failed();
        };
        let incoming = tracestate::ot_sub_key(trace_state, "th").map(tracestate::parse_threshold);
        let incoming = match incoming {
            Some(None) => return failed(),
            Some(Some(th)) if random < th => return failed(),
            Some(Some(th)) => Some(th),
            None => None,
        };
        let threshold = match priority {
            Some(p) if p > 0.0 => Some(0),
            Some(_) => return Verdict::Drop,
            None if self.mode == Mode::Equalizing => {
                probability_to_threshold(self.ratio, self.precision)
            }
            None => {
                let upstream = incoming.map_or(1.0, threshold_probability);
                probability_to_threshold(upstream * self.ratio, self.precision)
            }
        };
        let Some(threshold) = threshold else {
            return Verdict::Drop;
        };
        if random < threshold {
            return Verdict::Drop;
        }
        match incoming {
            // Sampled more strictly upstream: the threshold stays.
            Some(th) if th >= threshold => Verdict::Keep,
            _ => Verdict::KeepWith(tracestate::with_sub_keys(
                trace_state,
                &[("th", &tracestate::encode_threshold(threshold))],
            )),
        }
    }

    /// [`Sampler::verdict`] on a decoded span.
    fn verdict_decoded(&self, span: &Span) -> Verdict {
        self.verdict(&span.trace_id, &span.trace_state, priority(span))
    }

    /// [`Sampler::verdict`] on a span read in place.
    fn verdict_encoded(&self, span: &wire::SpanView<'_>) -> Verdict {
        let priority = wire::numeric_attribute(span.encoded(), 9, PRIORITY);
        self.verdict(span.trace_id(), span.trace_state(), priority)
    }

    #[cfg(test)]
    fn keep_trace(&self, trace_id: &[u8]) -> bool {
        hash(self.seed, trace_id) & BUCKET_MASK < self.threshold
    }

    /// Samples a batch still held as received bytes, never decoding the spans: a request
    /// whose spans are all kept unchanged stays as it is; one with only drops has them cut out;
    /// one with new `tracestate`s is rewritten span by span.
    fn sample_encoded(&self, batch: &mut TraceBatch) {
        let Some(parts) = batch.protobuf_parts() else {
            return;
        };
        let mut out = Vec::with_capacity(parts.len());
        for part in parts {
            let view = wire::TracesView::new(part);
            let verdicts: Vec<Verdict> = view
                .resource_spans()
                .flat_map(|rs| rs.scope_spans())
                .flat_map(|ss| ss.spans())
                .map(|span| self.verdict_encoded(&span))
                .collect();
            if verdicts.iter().all(|v| *v == Verdict::Keep) {
                out.push((part.clone(), verdicts.len()));
                continue;
            }
            if verdicts.iter().any(|v| matches!(v, Verdict::KeepWith(_))) {
                let (bytes, kept) = rewrite_spans(part, &verdicts);
                out.push((bytes.into(), kept));
                continue;
            }
            let drops = (0u32..)
                .zip(&verdicts)
                .filter(|(_, v)| **v == Verdict::Drop)
                .map(|(span, _)| Edit::DropSpan { span })
                .collect();
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
        let verdicts: Vec<Verdict> = batch
            .resources()
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| self.verdict_decoded(s))
            .collect();
        if verdicts.iter().all(|v| *v == Verdict::Keep) {
            return;
        }
        let mut verdicts = verdicts.into_iter();
        let rs = batch.resources_mut();
        for r in rs.iter_mut() {
            for ss in &mut r.scope_spans {
                ss.spans.retain_mut(|span| match verdicts.next() {
                    Some(Verdict::Drop) => false,
                    Some(Verdict::KeepWith(state)) => {
                        span.trace_state = state;
                        true
                    }
                    _ => true,
                });
            }
            r.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        rs.retain(|r| !r.scope_spans.is_empty());
    }
}

/// An encoded `ExportTraceServiceRequest` with each span (in order) dropped, kept, or kept with
/// a new `tracestate` as `verdicts` say; scopes and resources left without spans are dropped.
/// Returns the bytes and the spans kept.
fn rewrite_spans(part: &[u8], verdicts: &[Verdict]) -> (Vec<u8>, usize) {
    let mut verdicts = verdicts.iter();
    let mut kept = 0;
    let mut out = Vec::with_capacity(part.len() + 64);
    let (mut resource, mut scope, mut span) = (Vec::new(), Vec::new(), Vec::new());
    for top in wire::raw_fields(part) {
        if top.number != 1 {
            out.extend_from_slice(top.bytes);
            continue;
        }
        resource.clear();
        let mut resource_spans = 0;
        for rf in wire::raw_fields(top.payload) {
            if rf.number != 2 {
                resource.extend_from_slice(rf.bytes);
                continue;
            }
            scope.clear();
            let mut scope_spans = 0;
            for sf in wire::raw_fields(rf.payload) {
                if sf.number != 2 {
                    scope.extend_from_slice(sf.bytes);
                    continue;
                }
                match verdicts.next() {
                    Some(Verdict::Drop) => continue,
                    Some(Verdict::KeepWith(state)) => {
                        span.clear();
                        for field in wire::raw_fields(sf.payload).filter(|f| f.number != 3) {
                            span.extend_from_slice(field.bytes);
                        }
                        write_bytes_field(3, state.as_bytes(), &mut span);
                        write_bytes_field(2, &span, &mut scope);
                    }
                    _ => scope.extend_from_slice(sf.bytes),
                }
                scope_spans += 1;
            }
            if scope_spans > 0 {
                write_bytes_field(2, &scope, &mut resource);
                resource_spans += scope_spans;
            }
        }
        if resource_spans > 0 {
            write_bytes_field(1, &resource, &mut out);
            kept += resource_spans;
        }
    }
    (out, kept)
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
            mode: Mode::HashSeed,
            ratio: 0.4,
            precision: 4,
            fail_closed: true,
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

    /// Spans kept by `yaml` from `batch`, decoded: (span id, tracestate).
    async fn kept_states(yaml: &str, batch: TraceBatch) -> Vec<(Vec<u8>, String)> {
        let rec = Recorder::new();
        let cfg: ProbabilisticSamplerConfig = serde_yaml_ng::from_str(yaml).unwrap();
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        let p = cfg
            .build_traces(&context("probabilistic_sampler"), rec.clone())
            .unwrap();
        p.consume(batch).await.unwrap();
        rec.batches()
            .iter()
            .flat_map(|b| b.resources().to_vec())
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .map(|s| (s.span_id, s.trace_state))
            .collect()
    }

    /// `spans(n)` with each span's `tracestate` set to `state`.
    fn spans_with_state(n: usize, state: &str) -> TraceBatch {
        let mut rs = spans(n).into_resources();
        for span in &mut rs[0].scope_spans[0].spans {
            span.trace_state = state.to_owned();
        }
        TraceBatch::new(rs)
    }

    /// The same batch as received bytes, in `parts` requests.
    fn encoded(batch: TraceBatch, parts: usize) -> TraceBatch {
        let all = batch.into_resources()[0].scope_spans[0].spans.clone();
        let mut out = TraceBatch::default();
        for chunk in all.chunks(all.len().div_ceil(parts)) {
            let mut part = spans(0).into_resources();
            part[0].scope_spans[0].spans = chunk.to_vec();
            let mut bytes = Vec::new();
            TraceBatch::new(part).encode_protobuf(&mut bytes);
            out.merge(TraceBatch::from_protobuf(bytes.into()).unwrap());
        }
        out
    }

    fn weighted(kept: &[(Vec<u8>, String)]) -> f64 {
        kept.iter()
            .map(|(_, state)| crate::sampling::adjusted::adjusted_count(state))
            .sum()
    }

    #[test]
    fn thresholds_follow_the_go_sampling_package() {
        let th = |p: f64, precision: u32| {
            tracestate::encode_threshold(probability_to_threshold(p, precision).unwrap())
        };
        assert_eq!(th(1.0, 4), "0");
        assert_eq!(th(0.5, 4), "8");
        assert_eq!(th(0.25, 4), "c");
        assert_eq!(th(0.1, 4), "e666");
        assert_eq!(th(ratio(10.0), 4), "e666");
        assert_eq!(th(0.1, 1), "e");
        assert_eq!(th(1.0 / 3.0, 4), "aaab");
        assert_eq!(th(0.01, 4), "fd70a");
        assert_eq!(th(0.000001, 4), "ffffef39");
        assert_eq!(probability_to_threshold(0.0, 4), None);
        assert_eq!(probability_to_threshold(1e-30, 4), None);
    }

    #[tokio::test]
    async fn every_mode_writes_thresholds_that_weigh_kept_spans_back_to_the_total() {
        let n = 40_000;
        for mode in ["hash_seed", "proportional", "equalizing"] {
            let kept = kept_states(
                &format!("{{sampling_percentage: 10, mode: {mode}}}"),
                spans(n),
            )
            .await;
            let share = kept.len() as f64 / n as f64;
            assert!((share - 0.1).abs() < 0.01, "{mode}: kept {share}");
            let total = weighted(&kept);
            assert!(
                (total / n as f64 - 1.0).abs() < 0.05,
                "{mode}: weighted {total}"
            );
        }
        // hash_seed: the bucket threshold (14 bits) and the hash as randomness, which a
        // consistent sampler further on reads: it keeps every span at the same 10%.
        let kept = kept_states("{sampling_percentage: 10, hash_seed: 3}", spans(2000)).await;
        for (_, state) in &kept {
            let th = tracestate::ot_sub_key(state, "th").unwrap();
            assert_eq!(th, "e668", "{state}");
            let rv = parse_randomness(tracestate::ot_sub_key(state, "rv").unwrap()).unwrap();
            assert!(rv >= tracestate::parse_threshold(th).unwrap());
        }
        let batch = TraceBatch::new(vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
            scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                spans: kept
                    .iter()
                    .map(|(id, state)| Span {
                        trace_id: vec![1; 16],
                        span_id: id.clone(),
                        trace_state: state.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let again = kept_states("{sampling_percentage: 10, mode: equalizing}", batch).await;
        assert_eq!(again, kept);
    }

    #[tokio::test]
    async fn proportional_multiplies_and_equalizing_passes_what_was_sampled_further() {
        let n = 40_000;
        // Spans sampled at 50% upstream (th:8): those whose trace-id randomness is at least
        // 0x80000000000000.
        let mut rs = spans(n).into_resources();
        rs[0].scope_spans[0]
            .spans
            .retain(|s| randomness(&s.trace_id, "").unwrap() >= 0x80_0000_0000_0000);
        let upstream = rs[0].scope_spans[0].spans.len();
        for span in &mut rs[0].scope_spans[0].spans {
            span.trace_state = "ot=th:8".into();
        }
        let batch = || TraceBatch::new(rs.clone());
        let kept = kept_states("{sampling_percentage: 10, mode: proportional}", batch()).await;
        assert!(
            kept.iter().all(|(_, s)| s == "ot=th:f3333"),
            "{:?}",
            kept[0]
        );
        let share = kept.len() as f64 / upstream as f64;
        assert!((share - 0.1).abs() < 0.015, "kept {share}");
        // Equalizing to 10%: 50% spans are sampled down to 10% in all.
        let kept = kept_states("{sampling_percentage: 10, mode: equalizing}", batch()).await;
        assert!(kept.iter().all(|(_, s)| s == "ot=th:e666"));
        let share = kept.len() as f64 / upstream as f64;
        assert!((share - 0.2).abs() < 0.02, "kept {share}");
        // Equalizing to 60%: spans already at 50% pass as they are.
        let kept = kept_states("{sampling_percentage: 60, mode: equalizing}", batch()).await;
        assert_eq!(kept.len(), upstream);
        assert!(kept.iter().all(|(_, s)| s == "ot=th:8"));
        // A span whose randomness is below its threshold is inconsistent: dropped, or passed
        // with fail_closed: false.
        let bad = spans_with_state(100, "ot=th:8;rv:00000000000001");
        assert!(
            kept_states("{sampling_percentage: 100, mode: proportional}", bad)
                .await
                .is_empty()
        );
        let bad = spans_with_state(100, "ot=th:8;rv:00000000000001");
        let passed = kept_states(
            "{sampling_percentage: 100, mode: proportional, fail_closed: false}",
            bad,
        )
        .await;
        assert_eq!(passed.len(), 100);
        // An explicit rv decides: all at ff..., none at 00... (for 50%).
        let high = spans_with_state(50, "a=1,ot=rv:ffffffffffffff");
        let kept = kept_states("{sampling_percentage: 50, mode: proportional}", high).await;
        assert_eq!(kept.len(), 50);
        assert_eq!(kept[0].1, "ot=th:8;rv:ffffffffffffff,a=1");
        let low = spans_with_state(50, "ot=rv:00000000000000");
        assert!(
            kept_states("{sampling_percentage: 50, mode: proportional}", low)
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn bytes_and_decoded_spans_get_the_same_thresholds() {
        for mode in ["hash_seed", "proportional", "equalizing"] {
            let yaml = format!("{{sampling_percentage: 30, mode: {mode}}}");
            let decoded = kept_states(&yaml, with_priorities(3000)).await;
            let from_bytes = kept_states(&yaml, encoded(with_priorities(3000), 3)).await;
            assert!(decoded.len() > 700, "{mode}: {}", decoded.len());
            assert_eq!(from_bytes, decoded, "{mode}");
        }
    }

    #[test]
    fn sampling_precision_is_checked() {
        let cfg: ProbabilisticSamplerConfig = serde_yaml_ng::from_str(
            "{sampling_percentage: 10, mode: proportional, sampling_precision: 15}",
        )
        .unwrap();
        assert_eq!(cfg.validate()[0].path, "sampling_precision");
        assert!(
            serde_yaml_ng::from_str::<ProbabilisticSamplerConfig>(
                "{sampling_percentage: 10, mode: fair}"
            )
            .is_err()
        );
    }
}
