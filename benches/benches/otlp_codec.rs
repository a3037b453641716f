//! OTLP decode and encode of one realistic 512-span request (see
//! `wasmcol_benches::realistic_request`): protobuf with prost, as the gRPC and HTTP receivers
//! and the `file`/`otlp` exporters do, and OTLP/JSON with wasmcol's own codec. `wire_validate`
//! and `wire_walk` are the no-decode alternative to `proto_decode` (`wasmcol::otlp::wire`):
//! checking the same bytes as strictly as prost does, and then reading every span's trace id
//! and times out of them. `plugin_edits` applies a plugin's edits (three per span) to the
//! request's bytes as the host does (`wire_edit_apply`), against decoding, editing (with the
//! decoded reference the SDK's edit tests use) and re-encoding it.
//!
//! Throughput is in spans, so criterion reports spans per second (one core).
//!
//! `cargo bench -p wasmcol-benches --bench otlp_codec`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use wasmcol::otlp::ExportTraceServiceRequest;
use wasmcol::otlp::json::{decode_traces, encode_traces};
use wasmcol::otlp::wire;
use wasmcol_benches::realistic_request;
use wasmcol_plugin_sdk::Value;
use wasmcol_plugin_sdk::edit::{self, Edit, Target};

/// The decoded reference the SDK's edit tests hold `wire::edit::apply` to, compiled from its
/// source file: the same edits checked and applied to a decoded batch.
#[path = "../../plugin-sdk/src/wire/edit_oracle.rs"]
mod edit_oracle;
use wasmcol_plugin_sdk::wire::edit as wire_edit;

const SPANS: usize = 512;

fn codec(c: &mut Criterion) {
    let request = realistic_request(SPANS);
    let proto = request.encode_to_vec();
    let mut json = Vec::new();
    encode_traces(&request.resource_spans, &mut json);
    assert_eq!(decode_traces(&json).expect("JSON round trip"), request);
    eprintln!(
        "otlp_codec: {SPANS} spans; protobuf {} bytes ({} per span), JSON {} bytes ({} per span)",
        proto.len(),
        proto.len() / SPANS,
        json.len(),
        json.len() / SPANS
    );

    let mut g = c.benchmark_group("otlp_codec");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("proto_decode", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(black_box(proto.as_slice())).expect("decode"))
    });
    let checked = wire::validate(&proto).expect("wire validate");
    assert_eq!(checked.spans, SPANS);
    eprintln!(
        "otlp_codec: decoded estimate {} bytes, {:.2} x the protobuf (the receivers' budget allows {})",
        checked.decoded_bytes,
        checked.decoded_bytes as f64 / proto.len() as f64,
        wasmcol::otlp::intake::DECODED_BYTES_PER_LIMIT_BYTE
    );
    g.bench_function("wire_validate", |b| {
        b.iter(|| wire::validate(black_box(proto.as_slice())).expect("validate"))
    });
    g.bench_function("wire_walk", |b| {
        b.iter(|| {
            // A checksum of what was read, so that none of it is optimised away.
            let mut sum = 0u64;
            for rs in wire::TracesView::new(black_box(proto.as_slice())).resource_spans() {
                for ss in rs.scope_spans() {
                    for span in ss.spans() {
                        sum = sum
                            .wrapping_add(u64::from(span.trace_id().first().copied().unwrap_or(0)))
                            .wrapping_add(span.start_time_unix_nano())
                            .wrapping_add(span.end_time_unix_nano());
                    }
                }
            }
            sum
        })
    });
    let mut out = Vec::with_capacity(proto.len());
    g.bench_function("proto_encode", |b| {
        b.iter(|| {
            out.clear();
            black_box(&request).encode(&mut out).expect("encode");
            black_box(out.len())
        })
    });
    g.bench_function("json_decode", |b| {
        b.iter(|| decode_traces(black_box(json.as_slice())).expect("decode"))
    });
    let mut out = Vec::with_capacity(json.len());
    g.bench_function("json_encode", |b| {
        b.iter(|| {
            out.clear();
            encode_traces(black_box(&request.resource_spans), &mut out);
            black_box(out.len())
        })
    });
    g.finish();

    // A plugin's edits (1 set of a new key, 1 overwrite, 1 remove per span) applied to the
    // batch's protobuf, as the host does, against decoding, editing and re-encoding it.
    let edits: Vec<Edit> = (0..SPANS as u32)
        .flat_map(|span| {
            let set = |key: &str, value: &str| Edit::SetAttribute {
                target: Target::Span(span),
                key: key.to_string(),
                value: Value::Str(value.to_string()),
            };
            [
                set("team", "payments"),
                set("url.full", "https://shop.example.com/[redacted]"),
                Edit::RemoveAttribute {
                    target: Target::Span(span),
                    key: "user_agent.original".to_string(),
                },
            ]
        })
        .collect();
    let mut g = c.benchmark_group("plugin_edits");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("wire_edit_apply", |b| {
        b.iter_batched(
            || edits.clone(),
            |e| wire_edit::apply(black_box(&proto), e).expect("edits apply"),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decode_apply_encode", |b| {
        b.iter_batched(
            || edits.clone(),
            |e| {
                let mut data = ExportTraceServiceRequest::decode(black_box(proto.as_slice()))
                    .expect("decode")
                    .resource_spans;
                let checked = edit_oracle::prepare(&data, e).expect("edits check");
                edit_oracle::apply(&mut data, checked);
                edit::encode_batch(&data)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
