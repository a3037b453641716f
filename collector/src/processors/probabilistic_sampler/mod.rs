//! `probabilistic_sampler`: keeps a fixed percentage of traces, decided by trace id.
//!
//! The decision hashes the trace id exactly as the OpenTelemetry Collector's
//! `probabilistic_sampler` does in `hash_seed` mode (FNV-1a 32 over the seed and the trace id,
//! 14-bit buckets), so every span of a trace gets the same decision on every collector that
//! uses the same seed, including Go collectors in the same fleet.

use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::Deserialize;

use wasmcol_plugin_sdk::edit::Edit;
use wasmcol_plugin_sdk::wire::edit as wire_edit;

use crate::component::{BuildContext, Lifecycle, Problem, Processor, ProcessorConfig, Validate};
use crate::otlp::wire;
use crate::pipeline::{ConsumeError, Consumer, SharedConsumer, TraceBatch, Traces};
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
}

impl Validate for ProbabilisticSamplerConfig {
    fn validate(&self) -> Vec<Problem> {
        if !(0.0..=100.0).contains(&self.sampling_percentage) {
            vec![Problem::new(
                "sampling_percentage",
                format!(
                    "must be between 0 and 100, got {}",
                    self.sampling_percentage
                ),
            )]
        } else {
            Vec::new()
        }
    }
}

impl ProcessorConfig for ProbabilisticSamplerConfig {
    fn build_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Processor<Traces>>> {
        Ok(Arc::new(Sampler {
            threshold: (self.sampling_percentage * f64::from(NUM_HASH_BUCKETS) / 100.0) as u32,
            seed: self.hash_seed,
            next,
            metrics: ctx
                .metrics
                .processor(&ctx.id.to_string(), ctx.pipeline.as_deref().unwrap_or("")),
        }))
    }
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

    async fn kept(pct: f64, seed: u32, n: usize) -> usize {
        let rec = Recorder::new();
        let cfg = ProbabilisticSamplerConfig {
            sampling_percentage: pct,
            hash_seed: seed,
        };
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
            let cfg = ProbabilisticSamplerConfig {
                sampling_percentage: 30.0,
                hash_seed: 3,
            };
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
