//! Queues bounded in bytes, end to end: a gateway-shaped pipeline (`otlp → batch →
//! clickhouse`, every size at its default) in front of a ClickHouse that accepts connections
//! and never answers. Saturating load fills the exporter's sending queue, its batch channel and
//! the batch processor's queue; from then on the collector must refuse (retryably) instead of
//! growing, and its peak resident memory must stay within what those defaults allow
//! (about 150 MiB of spans or log records) and under the 256 MiB a gateway is sized for.
//! Traces and logs each: what waits must be what the byte bounds count (the received
//! protobuf, or the insert's compressed rows), not a decoded copy of it.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use wasmcol_tests::{Collector, free_port, metric_value, run_loadgen, scrape_metrics};

const MIB: u64 = 1024 * 1024;

/// Accepts connections and reads a little from each, now and then, never answering: inserts
/// stall until the exporter's `timeout` and are retried.
fn stalled_clickhouse() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while conn.read(&mut buf).is_ok_and(|n| n > 0) {
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_back_end_fills_the_queues_and_memory_stays_within_their_budgets() {
    fill_the_queues("traces").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_fill_the_queues_within_their_budgets_too() {
    fill_the_queues("logs").await;
}

/// Saturates a `signal` pipeline in front of a stalled ClickHouse and checks the queues
/// filled and the peak resident memory.
async fn fill_the_queues(signal: &str) {
    let (grpc, metrics) = (free_port(), free_port());
    let ch = stalled_clickhouse();
    let config = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
processors:
  batch: {{}}
exporters:
  clickhouse:
    endpoint: http://127.0.0.1:{ch}
    create_schema: false
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    {signal}: {{ receivers: [otlp], processors: [batch], exporters: [clickhouse] }}
"#
    );
    let collector = Collector::start(&config, grpc);
    // About 1 KiB per span or record, as fast as the collector takes them, for 20 s: several
    // GiB offered, far more than the queues may hold.
    let summary = run_loadgen(&[
        "--signal",
        signal,
        "--workers",
        "4",
        "--duration",
        "20s",
        "--endpoint",
        &format!("127.0.0.1:{grpc}"),
        "--spans-per-trace",
        "10",
        "--attributes",
        "10",
        "--attribute-size",
        "64",
        "--batch-traces",
        "40",
    ]);
    let accepted = summary["spans_accepted"].as_u64().unwrap();
    let refused = summary["spans_refused"].as_u64().unwrap();
    let peak = collector.peak_rss_bytes();
    let text = scrape_metrics(metrics).await;
    let queued = metric_value(
        &text,
        r#"wasmcol_exporter_queue_size{exporter="clickhouse"}"#,
    )
    .unwrap_or(-1.0);
    let capacity = metric_value(
        &text,
        r#"wasmcol_exporter_queue_capacity{exporter="clickhouse"}"#,
    )
    .unwrap_or(-1.0);
    eprintln!(
        "{signal}: accepted {accepted} items, refused {refused}; peak RSS {} MiB; sending queue {queued} of {capacity} bytes",
        peak / MIB
    );
    assert!(accepted > 0, "nothing was accepted:\n{}", collector.log());
    assert!(
        refused > 0,
        "the queues never filled: {accepted} {signal} items accepted, none refused"
    );
    assert_eq!(capacity, (64 * MIB) as f64, "the default sending queue");
    assert!(
        queued > 0.0 && queued <= capacity,
        "sending queue {queued} of {capacity}"
    );
    assert!(
        peak < 256 * MIB,
        "{signal}: peak RSS {} MiB with default queues (budget: 256 MiB)",
        peak / MIB
    );
}
