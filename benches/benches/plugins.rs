//! The cost of running processing logic as a WASM plugin.
//!
//! - `call_overhead`: one call of a no-op plugin with a 1-span batch (encode, copy in, call,
//!   answer, thread hand-off): the fixed price per batch.
//! - `pipeline_8192`: one 8192-span batch (realistic spans, 10 attributes each) decoded from
//!   request bytes, as a receiver does, through one stage, then dropped:
//!   - `no_plugin`: no stage (the baseline);
//!   - `wasm_noop`: a plugin that looks at nothing and changes nothing;
//!   - `wasm_decode`: a plugin that decodes the batch and changes nothing;
//!   - `wasm_replace`: a plugin that decodes the batch, copies it and returns it as a full
//!     replacement (the escape hatch: encode in the guest, decode in the host);
//!   - `wasm_tagger`: the attribute-editing test plugin (`tests/plugins/tagger`: sets `team`
//!     by service, removes two attributes);
//!   - `native_tagger`: the same plugin code compiled natively and run in-process on the
//!     host's data through the SDK (no encoding, no sandbox): the "same logic in native
//!     Rust" baseline.
//! - `after_traps`: the hostile plugin in mode `panic` over 8192-span batches it does not
//!   fail on (it tags every span): `fresh`, then `after_1000_traps`, the same processor after
//!   1,000 batches that made it panic (each trap discards the instance and starts a new one).
//!   The two should match: a trap leaves nothing behind.
//!
//! `cargo bench -p wasmcol-benches --bench plugins`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use wasmcol::pipeline::{ConsumeError, Consumer, SharedConsumer, TraceBatch, Traces};
use wasmcol_benches::{Processors, realistic_request};
use wasmcol_plugin_sdk::{Batch, Plugin, PluginConfig};

const HOSTILE: &str = env!("WASMCOL_TEST_PLUGIN_HOSTILE");
const TAGGER: &str = env!("WASMCOL_TEST_PLUGIN_TAGGER");
const SPANS: usize = 8192;

/// Counts what reaches the end of the chain.
struct Sink(AtomicUsize);

#[async_trait]
impl Consumer<Traces> for Sink {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        self.0.fetch_add(batch.item_count(), Ordering::Relaxed);
        Ok(())
    }
}

fn tagger_config() -> serde_json::Value {
    serde_json::json!({
        "teams": { "checkout-service": "payments", "frontend": "web" },
        "remove": ["user_agent.original", "http.cache_hit"],
    })
}

fn processors() -> [SharedConsumer<Traces>; 5] {
    let tagger_yaml = serde_yaml_ng::to_string(&tagger_config()).unwrap();
    let tagger_yaml: String = tagger_yaml
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let section = format!(
        r#"  wasm/noop:
    plugin: {HOSTILE}
    config: {{ mode: noop }}
  wasm/decode:
    plugin: {HOSTILE}
    config: {{ mode: decode }}
  wasm/replace:
    plugin: {HOSTILE}
    config: {{ mode: replace }}
  wasm/tagger:
    plugin: {TAGGER}
    config:
{tagger_yaml}  wasm/panic:
    plugin: {HOSTILE}
    config: {{ mode: panic }}
"#
    );
    let ids = [
        "wasm/noop",
        "wasm/decode",
        "wasm/replace",
        "wasm/tagger",
        "wasm/panic",
    ];
    let built = Processors::parse(&section, &ids);
    ids.map(|id| -> SharedConsumer<Traces> { built.build(id, Arc::new(Sink(AtomicUsize::new(0)))) })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let [noop, decode_plugin, replace, tagger, panicky] = processors();
    let request = realistic_request(SPANS);
    let encoded = request.encode_to_vec();
    let one: Vec<ResourceSpans> = realistic_request(1).resource_spans;

    let mut g = c.benchmark_group("call_overhead");
    g.throughput(Throughput::Elements(1));
    g.bench_function("wasm_noop_1_span", |b| {
        b.iter_batched(
            || TraceBatch::new(one.clone()),
            |batch| runtime.block_on(noop.consume(batch)).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();

    // Every case starts from the request bytes, as a receiver does, and ends when the batch
    // has passed the stage (and been dropped), so the cases differ only by the stage.
    // Checked, not decoded, as the receivers do; stages that read spans decode them.
    let encoded = bytes::Bytes::from(encoded);
    let decode = || TraceBatch::from_protobuf(encoded.clone()).unwrap();
    let sink = Sink(AtomicUsize::new(0));
    let mut g = c.benchmark_group("pipeline_8192");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.sample_size(30);
    g.bench_function("no_plugin", |b| {
        b.iter(|| runtime.block_on(sink.consume(decode())).unwrap())
    });
    g.bench_function("wasm_noop", |b| {
        b.iter(|| runtime.block_on(noop.consume(decode())).unwrap())
    });
    g.bench_function("wasm_decode", |b| {
        b.iter(|| runtime.block_on(decode_plugin.consume(decode())).unwrap())
    });
    g.bench_function("wasm_replace", |b| {
        b.iter(|| runtime.block_on(replace.consume(decode())).unwrap())
    });
    g.bench_function("wasm_tagger", |b| {
        b.iter(|| runtime.block_on(tagger.consume(decode())).unwrap())
    });
    let mut native = tagger_plugin::Tagger::new(PluginConfig::new(tagger_config())).unwrap();
    g.bench_function("native_tagger", |b| {
        b.iter(|| {
            let mut batch = Batch::new(decode().into_resources());
            native.process(&mut batch).unwrap();
            runtime
                .block_on(sink.consume(TraceBatch::new(batch.into_resource_spans())))
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("after_traps");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.sample_size(30);
    g.bench_function("fresh", |b| {
        b.iter(|| runtime.block_on(panicky.consume(decode())).unwrap())
    });
    // A batch it panics on, then one it does not: failures never come three in a row, so
    // the plugin is called every time instead of being paused.
    let mut trigger = realistic_request(1).resource_spans;
    trigger[0].scope_spans[0].spans[0].name = "trigger".into();
    for _ in 0..1000 {
        runtime
            .block_on(panicky.consume(TraceBatch::new(trigger.clone())))
            .unwrap();
        runtime
            .block_on(panicky.consume(TraceBatch::new(one.clone())))
            .unwrap();
    }
    g.bench_function("after_1000_traps", |b| {
        b.iter(|| runtime.block_on(panicky.consume(decode())).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
