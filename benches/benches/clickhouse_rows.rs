//! The `clickhouse` exporter's RowBinary encoding of one 8192-span batch (the shape of
//! `wasmcol_benches::realistic_request`: an instrumented HTTP service's spans as its SDK sends
//! them), the two ways the exporter can take:
//!
//! - `decoded`: decode the received protobuf with prost, then `rows::encode` the structures
//!   (what every batch cost before `rows_wire`, and what a batch a stage has decoded still
//!   costs, minus the decoding);
//! - `decoded_rows_only`: `rows::encode` alone, on structures decoded beforehand;
//! - `wire`: `rows_wire::encode` straight from the protobuf bytes (the exporter's path for a
//!   batch still holding what was received).
//!
//! And `clickhouse_prepare/lz4`: the whole body of an insert of that batch as the sender
//! prepares it (rows from the received protobuf, lz4-compressed in the frame format).
//!
//! The rows are checked to be identical before anything is timed. Throughput is in spans, so
//! criterion reports spans per second (one core).
//!
//! `cargo bench -p wasmcol-benches --bench clickhouse_rows`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use wasmcol::exporters::clickhouse::sender::encode_body;
use wasmcol::exporters::clickhouse::{Compress, rows, rows_wire};
use wasmcol::otlp::ExportTraceServiceRequest;
use wasmcol::otlp::wire;
use wasmcol::pipeline::TraceBatch;
use wasmcol_benches::realistic_request;

const SPANS: usize = 8192;

fn clickhouse_rows(c: &mut Criterion) {
    let request = realistic_request(SPANS);
    let proto = request.encode_to_vec();
    assert_eq!(wire::validate(&proto).expect("valid").spans, SPANS);

    let mut decoded_rows = Vec::new();
    assert_eq!(
        rows::encode(&request.resource_spans, &mut decoded_rows),
        SPANS
    );
    let mut wire_rows = Vec::new();
    assert_eq!(rows_wire::encode([proto.as_slice()], &mut wire_rows), SPANS);
    assert!(
        decoded_rows == wire_rows,
        "the two paths write different rows"
    );
    eprintln!(
        "clickhouse_rows: {SPANS} spans; protobuf {} bytes, RowBinary {} bytes ({} per span)",
        proto.len(),
        wire_rows.len(),
        wire_rows.len() / SPANS
    );

    let mut g = c.benchmark_group("clickhouse_rows");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.sample_size(20);
    // As the sender does: a fresh body per insert, grown as needed.
    g.bench_function("decoded", |b| {
        b.iter(|| {
            let request =
                ExportTraceServiceRequest::decode(black_box(proto.as_slice())).expect("decode");
            let mut out = Vec::with_capacity(64 * 1024);
            rows::encode(&request.resource_spans, &mut out);
            out
        })
    });
    g.bench_function("decoded_rows_only", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(64 * 1024);
            rows::encode(black_box(&request.resource_spans), &mut out);
            out
        })
    });
    g.bench_function("wire", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(64 * 1024);
            rows_wire::encode([black_box(proto.as_slice())], &mut out);
            out
        })
    });
    g.finish();

    let batch = TraceBatch::from_trusted_protobuf(Bytes::from(proto.clone()), SPANS);
    let (lz4, rows) = encode_body(&batch, Compress::Lz4);
    assert_eq!(rows, SPANS);
    eprintln!(
        "clickhouse_prepare: lz4 body {} bytes ({:.2}x)",
        lz4.len(),
        wire_rows.len() as f64 / lz4.len() as f64
    );
    let mut g = c.benchmark_group("clickhouse_prepare");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.sample_size(20);
    g.bench_function("lz4", |b| {
        b.iter(|| encode_body(black_box(&batch), Compress::Lz4))
    });
    g.finish();
}

criterion_group!(benches, clickhouse_rows);
criterion_main!(benches);
