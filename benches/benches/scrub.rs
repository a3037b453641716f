//! The built-in plugins `builtin:pii-scrub` and `builtin:enrich` on 8192-span batches of
//! [`realistic_request`] spans (10 attributes of realistic sizes), with secrets added so the
//! detectors fire (see [`with_secrets`]).
//!
//! - `scrub_stage_8192`: the processor stage alone, on spans already decoded (the input is
//!   cloned outside the timed section):
//!   - `wasm_scrub`, `wasm_enrich`: the `wasm` processor built from YAML as the collector
//!     builds it (copy in, call, edits back, applied);
//!   - `native_scrub`, `native_enrich`: the same plugin crates compiled natively and run
//!     in-process the way the host runs a plugin (the batch's protobuf in, edits applied to
//!     it): the "same redaction in native Rust" baseline.
//! - `scrub_pipeline_8192`: the same from the protobuf request the receiver gets (checked
//!   into a batch → processor → sink), with `no_plugin` (→ sink) as the baseline: the per-span
//!   cost a pipeline pays with and without each plugin.
//!
//! Every case ends in the same sink, which encodes the batch as protobuf like the `otlp`,
//! `file` and Kafka exporters (a copy when the batch still holds bytes, an encode when a stage
//! decoded it) and keeps it, so freeing outputs is not timed.
//!
//! Before measuring, the bench checks that the WASM and native runs give the same spans and
//! that the detectors fired (`scrub_fixture`). The WASM/native ratio is better read from
//! `--bench scrub_ratio`, which times the two in alternation.
//!
//! `cargo bench -p wasmcol-benches --bench scrub`

mod scrub_fixture;

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use scrub_fixture::{Fixture, SPANS, Sink, as_host_runs};
use wasmcol::pipeline::{Consumer, TraceBatch};

fn bench(c: &mut Criterion) {
    let Fixture {
        runtime,
        scrub: (scrub, scrub_sink),
        enrich: (enrich, enrich_sink),
        encoded,
        data,
        mut native_scrub,
        mut native_enrich,
    } = Fixture::new();

    let no_plugin_sink = Arc::new(Sink::default());
    let native_sink = Arc::new(Sink::default());
    // The native plugin as a pipeline stage: spans in, plugin, batch on to the sink.
    let native_stage = |out: TraceBatch| runtime.block_on(native_sink.consume(out)).unwrap();
    for (group, from_bytes) in [("scrub_stage_8192", false), ("scrub_pipeline_8192", true)] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(SPANS as u64));
        g.sample_size(20);
        // From bytes: checked, as the receivers do; stages that read spans decode them.
        let input = || {
            if from_bytes {
                TraceBatch::from_protobuf(encoded.clone()).unwrap()
            } else {
                TraceBatch::new(data.clone())
            }
        };
        // Untimed: freeing the last outputs, and the clone of already decoded spans. Decoding
        // (in the pipeline group) is timed.
        let setup = || {
            for sink in [&scrub_sink, &enrich_sink, &no_plugin_sink, &native_sink] {
                sink.clear();
            }
            if from_bytes { None } else { Some(data.clone()) }
        };
        let take = |pre: Option<Vec<ResourceSpans>>| pre.map_or_else(input, TraceBatch::new);
        if from_bytes {
            g.bench_function("no_plugin", |b| {
                b.iter_batched(
                    setup,
                    |pre| runtime.block_on(no_plugin_sink.consume(take(pre))).unwrap(),
                    BatchSize::LargeInput,
                )
            });
        }
        for (name, p) in [("wasm_scrub", &scrub), ("wasm_enrich", &enrich)] {
            g.bench_function(name, |b| {
                b.iter_batched(
                    setup,
                    |pre| runtime.block_on(p.consume(take(pre))).unwrap(),
                    BatchSize::LargeInput,
                )
            });
        }
        g.bench_function("native_scrub", |b| {
            b.iter_batched(
                setup,
                |pre| {
                    native_stage(as_host_runs(&mut native_scrub, take(pre)));
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function("native_enrich", |b| {
            b.iter_batched(
                setup,
                |pre| {
                    native_stage(as_host_runs(&mut native_enrich, take(pre)));
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
