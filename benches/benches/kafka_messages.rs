//! The `kafka` exporter cutting one batch into messages (`otlp_proto`, partition by trace id,
//! the default `max_message_bytes`): from the received protobuf bytes, against the decoded
//! path, which decodes the batch into prost structures first and re-encodes every message.
//!
//! The batch is 8192 realistic spans (see `wasmcol_benches::realistic_request`) as the batch
//! processor builds it from 16 SDK exports of 512 spans: each export holds the spans that
//! ended in its window, so traces (8 spans each) interleave and some are cut across exports.
//!
//! - `bytes`: `Splitter::split_batch` on the received bytes (what the exporter does).
//! - `decode_and_split`: decoding the batch, then `Splitter::split_for` (what it did).
//! - `split_decoded`: `split_for` alone, on spans already decoded (a stage decoded them).
//!
//! Throughput is in spans, so criterion reports spans per second (one core).
//!
//! `cargo bench -p wasmcol-benches --bench kafka_messages`

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message as _;
use wasmcol::exporters::kafka::Splitter;
use wasmcol::kafka::Encoding;
use wasmcol::otlp::ExportTraceServiceRequest;
use wasmcol::pipeline::TraceBatch;
use wasmcol_benches::{SplitMix64, realistic_request};

const SPANS: usize = 8192;
const EXPORTS: usize = 16;

/// The received exports: realistic spans, shuffled within windows of 64 (concurrent traces
/// ending interleaved), 512 to an export.
fn exports() -> Vec<(Bytes, usize)> {
    let request = realistic_request(SPANS);
    let rs = &request.resource_spans[0];
    let ss = &rs.scope_spans[0];
    let mut spans = ss.spans.clone();
    let mut rng = SplitMix64::new(0x6b61_666b);
    for window in spans.chunks_mut(64) {
        for i in (1..window.len()).rev() {
            window.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    spans
        .chunks(SPANS / EXPORTS)
        .map(|chunk| {
            let export = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: rs.resource.clone(),
                    scope_spans: vec![ScopeSpans {
                        scope: ss.scope.clone(),
                        spans: chunk.to_vec(),
                        schema_url: ss.schema_url.clone(),
                    }],
                    schema_url: rs.schema_url.clone(),
                }],
            };
            (Bytes::from(export.encode_to_vec()), chunk.len())
        })
        .collect()
}

fn kafka_messages(c: &mut Criterion) {
    let exports = exports();
    let batch = || TraceBatch::from_trusted_parts(exports.iter().cloned());
    let splitter = Splitter {
        encoding: Encoding::OtlpProto,
        topic: Arc::from("otlp_spans"),
        topic_from_attribute: String::new(),
        topic_from_metadata_key: String::new(),
        allowed_topics: Vec::new(),
        partition_traces_by_id: true,
        max_message_bytes: 1_000_000,
    };

    // Both paths give the same messages.
    let decoded = batch();
    let from_bytes = splitter.split_batch(&batch());
    let from_spans = splitter.split_for(decoded.resources(), &decoded.metadata);
    assert_eq!(from_bytes.messages, from_spans.messages);
    eprintln!(
        "kafka_messages: {SPANS} spans in {EXPORTS} exports, {} bytes -> {} messages, {} bytes",
        exports.iter().map(|(b, _)| b.len()).sum::<usize>(),
        from_bytes.messages.len(),
        from_bytes
            .messages
            .iter()
            .map(|m| m.value.len())
            .sum::<usize>()
    );

    let mut g = c.benchmark_group("kafka_messages");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("bytes", |b| {
        b.iter_batched(
            batch,
            |batch| splitter.split_batch(black_box(&batch)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decode_and_split", |b| {
        b.iter_batched(
            batch,
            |batch| splitter.split_for(black_box(&batch).resources(), &batch.metadata),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("split_decoded", |b| {
        b.iter(|| splitter.split_for(black_box(decoded.resources()), &decoded.metadata))
    });
    g.finish();
}

criterion_group!(benches, kafka_messages);
criterion_main!(benches);
