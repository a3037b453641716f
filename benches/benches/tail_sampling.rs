//! Tail sampling: buffer + decide throughput, and memory per buffered span.
//!
//! Each iteration hands the `tail_sampling` processor a stream of requests (realistic spans,
//! re-grouped into traces of the case's shape, in 1000-span requests; protobuf bytes checked
//! into a batch as the OTLP receivers do, inside the measurement) and waits until every
//! span has been decided (kept spans reached the sink, the rest counted as dropped). Policies:
//! errors, slow (latency) and 10% probabilistic, through `builtin:tail-policies`; the
//! `_attribute` case adds a `string_attribute` policy, so the plugin reads spans too.
//!
//! The time reported is the **CPU time of the whole process** (all threads: ingest, the
//! decision thread, the plugin) per iteration, not wall time, so elements/s is spans per
//! CPU-second, i.e. per core. Shapes: `10_span` (every trace 10 spans) and `seed003`
//! (log-normal spans per trace, median 6, p99 50: the distribution of seed 003).
//!
//! Memory: before the benchmarks, 20,000 traces of each shape are buffered with a long
//! `decision_wait`; the buffer's own byte count (`wasmcol_tail_sampling_buffer_bytes`) is
//! printed per span and against the spans' OTLP-encoded size.
//!
//! `cargo bench -p wasmcol-benches --bench tail_sampling`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use wasmcol::component::Processor;
use wasmcol::pipeline::{ConsumeError, Consumer, TraceBatch, Traces};
use wasmcol::telemetry::Metrics;
use wasmcol::telemetry::process::read_sample;
use wasmcol_benches::{Processors, SplitMix64, realistic_request};

/// Spans per request.
const REQUEST_SPANS: usize = 1000;
/// Spans per iteration.
const ITERATION_SPANS: usize = 100_000;

/// Counts what reaches the end of the chain.
struct Sink(AtomicU64);

#[async_trait]
impl Consumer<Traces> for Sink {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        self.0
            .fetch_add(batch.item_count() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Trace sizes: every trace `n` spans, or seed 003's distribution.
#[derive(Clone, Copy)]
enum Shape {
    Fixed(usize),
    Seed003,
}

impl Shape {
    fn next(self, rng: &mut SplitMix64) -> usize {
        match self {
            Shape::Fixed(n) => n,
            Shape::Seed003 => {
                // Log-normal with median 6 and p99 50: sigma = ln(50/6) / 2.326.
                let u1 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let sigma = (50.0f64 / 6.0).ln() / 2.326;
                ((6.0f64.ln() + sigma * z).exp().round() as usize).clamp(1, 500)
            }
        }
    }
}

/// `total` spans in requests of [`REQUEST_SPANS`], re-grouped into traces of `shape` with
/// fresh trace IDs (seeded by `seed`, so every iteration's traces are new to the buffer).
fn requests(total: usize, shape: Shape, seed: u64) -> (Vec<Bytes>, usize) {
    let template = realistic_request(REQUEST_SPANS).resource_spans;
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    let mut encoded = 0;
    let mut left_in_trace = 0;
    let mut trace_id = Vec::new();
    let mut root = Vec::new();
    for _ in 0..total / REQUEST_SPANS {
        let mut rs = template.clone();
        for span in rs[0].scope_spans[0].spans.iter_mut() {
            if left_in_trace == 0 {
                left_in_trace = shape.next(&mut rng);
                trace_id = [rng.next_u64().to_be_bytes(), rng.next_u64().to_be_bytes()].concat();
                root = span.span_id.clone();
                span.parent_span_id.clear();
            } else {
                span.parent_span_id = root.clone();
            }
            span.trace_id = trace_id.clone();
            left_in_trace -= 1;
            encoded += span.encoded_len();
        }
        out.push(Bytes::from(
            TracesData { resource_spans: rs }.encode_to_vec(),
        ));
    }
    (out, encoded)
}

/// The processor (built inside the runtime: it starts its decision thread there), its sink and
/// its metrics registry.
fn processor(
    policies: &str,
    decision_wait: &str,
) -> (Arc<dyn Processor<Traces>>, Arc<Sink>, Arc<Metrics>) {
    let section = format!(
        r#"  tail_sampling:
    decision_wait: {decision_wait}
    num_traces: 200000
    max_buffer_bytes: 1GiB
    policies:
{policies}"#
    );
    let built = Processors::parse(&section, &["tail_sampling"]);
    let sink = Arc::new(Sink(AtomicU64::new(0)));
    (
        built.build("tail_sampling", sink.clone()),
        sink,
        built.metrics,
    )
}

const POLICIES: &str = r#"      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
      - { name: slow, type: latency, latency: { threshold_ms: 45 } }
      - { name: some, type: probabilistic, probabilistic: { sampling_percentage: 10 } }
"#;
const ATTRIBUTE_POLICY: &str = r#"      - { name: vip, type: string_attribute, string_attribute: { key: http.route, values: ["/api/v1/vip"] } }
"#;

fn cpu_seconds() -> f64 {
    read_sample("self").map_or(0.0, |s| s.cpu_seconds)
}

fn memory_per_span(runtime: &tokio::runtime::Runtime, shape: Shape, label: &str) {
    let (p, _sink, metrics) = runtime.block_on(async { processor(POLICIES, "1h") });
    let (reqs, encoded) = requests(200_000, shape, 7);
    let spans = reqs.len() * REQUEST_SPANS;
    for rs in reqs {
        let batch = TraceBatch::from_protobuf(rs).unwrap();
        runtime.block_on(p.consume(batch)).unwrap();
    }
    // The gauge is refreshed by the decision thread, once per tick (1 s at this wait).
    std::thread::sleep(Duration::from_millis(1500));
    let text = metrics.render();
    let bytes = text
        .lines()
        .find(|l| l.starts_with("wasmcol_tail_sampling_buffer_bytes{"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    eprintln!(
        "memory {label}: {spans} spans buffered, {:.0} B/span held vs {:.0} B/span encoded: {:.2}x",
        bytes / spans as f64,
        encoded as f64 / spans as f64,
        bytes / encoded as f64
    );
    runtime.block_on(p.shutdown());
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    memory_per_span(&runtime, Shape::Fixed(10), "10_span");
    memory_per_span(&runtime, Shape::Seed003, "seed003");

    let mut g = c.benchmark_group("tail_sampling");
    g.throughput(Throughput::Elements(ITERATION_SPANS as u64));
    g.sample_size(10);
    for (label, shape, policies) in [
        ("10_span", Shape::Fixed(10), POLICIES.to_string()),
        ("seed003", Shape::Seed003, POLICIES.to_string()),
        (
            "10_span_attribute",
            Shape::Fixed(10),
            format!("{POLICIES}{ATTRIBUTE_POLICY}"),
        ),
    ] {
        let (p, sink, metrics) = runtime.block_on(async { processor(&policies, "1ms") });
        let counters = metrics.processor("tail_sampling", "traces");
        let mut seed = 1;
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut cpu = 0.0;
                for _ in 0..iters {
                    seed += 1;
                    let (reqs, _) = requests(ITERATION_SPANS, shape, seed);
                    let before = sink.0.load(Ordering::Relaxed) + counters.dropped.get();
                    let started = cpu_seconds();
                    for rs in reqs {
                        let batch = TraceBatch::from_protobuf(rs).unwrap();
                        runtime.block_on(p.consume(batch)).unwrap();
                    }
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while sink.0.load(Ordering::Relaxed) + counters.dropped.get() - before
                        < ITERATION_SPANS as u64
                    {
                        assert!(Instant::now() < deadline, "decisions did not finish");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    cpu += cpu_seconds() - started;
                }
                Duration::from_secs_f64(cpu)
            })
        });
        runtime.block_on(p.shutdown());
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
