//! OTLP decode and encode of one realistic 512-span request (see
//! `wasmcol_benches::realistic_request`): protobuf with prost, as the gRPC and HTTP receivers
//! and the `file`/`otlp` exporters do, and OTLP/JSON with wasmcol's own codec.
//!
//! Throughput is in spans, so criterion reports spans per second (one core).
//!
//! `cargo bench -p wasmcol-benches --bench otlp_codec`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use wasmcol::otlp::ExportTraceServiceRequest;
use wasmcol::otlp::json::{decode_traces, encode_traces};
use wasmcol_benches::realistic_request;

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
}

criterion_group!(benches, codec);
criterion_main!(benches);
