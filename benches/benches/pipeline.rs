//! Pipeline stages in-process: batches of realistic spans pushed through processors and
//! exporters built from YAML exactly as the collector builds them (`Config::parse`, then each
//! component's `build`), minus the network receiver.
//!
//! One iteration hands 16 requests of 512 spans (8192 spans, the batch processor's default
//! `send_batch_size`) to the head of the chain and waits until every one of them has been
//! delivered, i.e. until the delivery tracker attached to each request reports that the last
//! copy is gone (dropped by `nop`, or written into the `file` exporter's buffered writer). The
//! time therefore covers the whole chain, including the batch processor's task hop and the
//! file exporter's encoding and writer thread. Each request starts as protobuf bytes and is
//! checked into a batch (`TraceBatch::from_protobuf`, what the OTLP receivers do) inside the
//! timed section; stages that read spans decode them there too.
//!
//! `cargo bench -p wasmcol-benches --bench pipeline`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use wasmcol::Config;
use wasmcol::component::{BuildContext, ComponentId, Lifecycle};
use wasmcol::pipeline::{Delivery, DeliveryTracker, Outcome, SharedConsumer, TraceBatch, Traces};
use wasmcol::telemetry::Metrics;
use wasmcol_benches::realistic_request;

/// Spans per request handed to the chain.
const SPANS_PER_REQUEST: usize = 512;
/// Requests per iteration: 16 × 512 = 8192, the batch processor's default batch size, so each
/// iteration ends with exactly one full batch sent on (no timer involved).
const REQUESTS: usize = 16;

fn config_yaml(dir: &std::path::Path) -> String {
    let dir = dir.display();
    // Rotation keeps the disk bounded however many iterations criterion runs. The file
    // exporter reports data delivered once flushed: flushing at every write makes the time
    // the writing's, not the flush timer's.
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  batch: {{}}
  probabilistic_sampler:
    sampling_percentage: 10
exporters:
  nop: {{}}
  file/proto:
    path: {dir}/traces.pb
    format: proto
    flush_interval: 1ms
    rotation: {{ max_megabytes: 256, max_backups: 1 }}
  file/json:
    path: {dir}/traces.jsonl
    format: json
    flush_interval: 1ms
    rotation: {{ max_megabytes: 256, max_backups: 1 }}
service:
  telemetry:
    metrics:
      address: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch, probabilistic_sampler]
      exporters: [nop, file/proto, file/json]
"#
    )
}

/// A chain built from the config: `processors` in order, then `exporter`.
struct Chain {
    head: SharedConsumer<Traces>,
    /// Every component, exporter first, for start and shutdown.
    parts: Vec<Arc<dyn Lifecycle>>,
}

impl Chain {
    fn build(config: &Config, processors: &[&str], exporter: &str) -> Self {
        let metrics = Arc::new(Metrics::new());
        let ctx = |id: &ComponentId| BuildContext {
            id: id.clone(),
            pipeline: Some("traces".to_owned()),
            metrics: metrics.clone(),
            stores: Default::default(),
            authenticators: Default::default(),
            acknowledge_when_stored: false,
        };
        let id = ComponentId::parse(exporter).expect("exporter id");
        let exp = config.exporters[&id]
            .build_traces(&ctx(&id))
            .expect("exporter");
        let mut parts: Vec<Arc<dyn Lifecycle>> = vec![exp.clone()];
        let mut head: SharedConsumer<Traces> = exp;
        for name in processors.iter().rev() {
            let id = ComponentId::parse(name).expect("processor id");
            let p = config.processors[&id]
                .build_traces(&ctx(&id), head)
                .expect("processor");
            parts.push(p.clone());
            head = p;
        }
        Self { head, parts }
    }

    async fn start(&self) {
        for p in &self.parts {
            p.start().await.expect("start");
        }
    }

    async fn shutdown(&self) {
        for p in self.parts.iter().rev() {
            p.shutdown().await;
        }
    }

    /// Hands `inputs` to the chain and waits until all of them are delivered; returns the time
    /// that took.
    async fn push(&self, request: &Bytes) -> Duration {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let trackers: Vec<Delivery> = (0..REQUESTS)
            .map(|_| {
                let tx = tx.clone();
                Delivery::tracked(DeliveryTracker::new(move |o| {
                    let _ = tx.send(o);
                }))
            })
            .collect();
        drop(tx);
        let n = trackers.len();
        let start = Instant::now();
        for delivery in trackers {
            let batch = TraceBatch::from_protobuf(request.clone()).expect("valid request");
            self.head
                .consume(batch.with_delivery(delivery))
                .await
                .expect("consume");
        }
        for _ in 0..n {
            let outcome = rx.recv().await.expect("every batch reports");
            assert_eq!(outcome, Outcome::Delivered);
        }
        start.elapsed()
    }
}

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::parse("bench.yaml", &config_yaml(dir.path()), &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let request = Bytes::from(realistic_request(SPANS_PER_REQUEST).encode_to_vec());

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements((SPANS_PER_REQUEST * REQUESTS) as u64));
    let cases: &[(&str, &[&str], &str)] = &[
        ("batch_to_nop", &["batch"], "nop"),
        ("sampler_10pct_to_nop", &["probabilistic_sampler"], "nop"),
        (
            "batch_then_sampler_10pct_to_nop",
            &["batch", "probabilistic_sampler"],
            "nop",
        ),
        ("batch_to_file_proto", &["batch"], "file/proto"),
        ("batch_to_file_json", &["batch"], "file/json"),
    ];
    for &(name, processors, exporter) in cases {
        let chain = runtime.block_on(async {
            let chain = Chain::build(&config, processors, exporter);
            chain.start().await;
            chain
        });
        g.bench_function(name, |b| {
            b.iter_custom(|iters| run(&runtime, &chain, &request, iters))
        });
        runtime.block_on(chain.shutdown());
    }
    g.finish();
}

fn run(runtime: &Runtime, chain: &Chain, request: &Bytes, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        total += runtime.block_on(chain.push(request));
    }
    total
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = pipeline
}
criterion_main!(benches);
