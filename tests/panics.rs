//! A panic in a worker is contained, end to end: a real `wasmcol` process runs otlp →
//! `test_panic` → file, where `test_panic` (a processor for tests, registered only with
//! `WASMCOL_TEST_COMPONENTS=1`) panics on its worker thread for the first batches. A real
//! client, `wasmcol-loadgen --retry`, sends spans one request at a time and retries refusals.
//!
//! Checked, over gRPC and over HTTP:
//! - the receiver answered a retryable refusal (gRPC `UNAVAILABLE`, HTTP 503) for exactly the
//!   batches that hit the panic, and the client's retries of them went through;
//! - the worker was restarted each time: the panic is logged at error with the component and
//!   the panic message, counted in `wasmcol_component_panics_total`, and later batches pass;
//! - every span the client got acknowledged is in the output, once, and nothing else is:
//!   nothing was reported delivered that was not.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;
use wasmcol_tests::{
    Collector, binary, free_port, metric_value, output_span_ids, run_loadgen, scrape_metrics,
    wait_until,
};

/// Batches that panic before the worker lets batches through: one more than the restarts
/// made at once, so the back-off between restarts is used too.
const PANIC_BATCHES: u64 = 4;
const TRACES: u64 = 30;
const SPANS_PER_TRACE: u64 = 3;

fn config(grpc: u16, http: u16, metrics: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  test_panic:
    panic_batches: {PANIC_BATCHES}
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [test_panic]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

/// Runs the loadgen to completion (at most 30 s, should the collector stop accepting): one
/// worker, one trace per request, retrying refusals.
fn loadgen(protocol: &str, port: u16) -> Json {
    run_loadgen(&[
        "--retry",
        "--workers",
        "1",
        "--protocol",
        protocol,
        "--endpoint",
        &format!("127.0.0.1:{port}"),
        "--traces",
        &TRACES.to_string(),
        "--spans-per-trace",
        &SPANS_PER_TRACE.to_string(),
        "--batch-traces",
        "1",
        "--duration",
        "30s",
    ])
}

fn count(summary: &Json, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in the loadgen summary: {summary}"))
}

async fn panics_are_contained(protocol: &str) {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let c = Collector::start_with_env(
        &config(grpc, http, metrics),
        grpc,
        &[("WASMCOL_TEST_COMPONENTS", "1")],
    );
    let summary = loadgen(protocol, if protocol == "grpc" { grpc } else { http });

    // The client: every trace acknowledged in the end, after one refusal per panic.
    let spans = TRACES * SPANS_PER_TRACE;
    assert_eq!(count(&summary, "spans_accepted"), spans, "{summary}");
    assert_eq!(count(&summary, "requests_failed"), 0, "{summary}");
    assert_eq!(
        count(&summary, "requests_refused"),
        PANIC_BATCHES,
        "one retryable refusal per batch that hit the panic: {summary}"
    );

    // The output: exactly the acknowledged spans, each once.
    let out = c.path("out.jsonl");
    assert!(
        wait_until(Duration::from_secs(10), || output_span_ids(&out).len()
            >= spans as usize),
        "{} of {spans} acknowledged spans in the output\n{}",
        output_span_ids(&out).len(),
        c.log()
    );
    std::thread::sleep(Duration::from_millis(200));
    let ids = output_span_ids(&out);
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), spans as usize, "no span written twice or extra");
    assert_eq!(
        unique.len(),
        spans as usize,
        "every acknowledged span, once"
    );

    // The collector: each panic logged with its component and message, then a restart.
    // The panics come in a row: the last restart waits (the back-off), the others do not.
    for n in 1..=PANIC_BATCHES {
        let message = format!("test_panic: batch {n} of the first {PANIC_BATCHES} panics");
        let restart = if n == PANIC_BATCHES {
            "restarting in 100ms"
        } else {
            "restarting now"
        };
        assert!(
            c.wait_for_log_line(
                &[
                    "ERROR",
                    "a worker panicked",
                    "component=\"test_panic\"",
                    &message,
                    restart
                ],
                Duration::from_secs(2)
            ),
            "no error line for panic {n}:\n{}",
            c.log()
        );
    }
    let text = scrape_metrics(metrics).await;
    let value = |series: &str| metric_value(&text, series).unwrap_or(0.0) as u64;
    assert_eq!(
        value(r#"wasmcol_component_panics_total{kind="processor",component="test_panic"}"#),
        PANIC_BATCHES,
        "{text}"
    );
    let transport = if protocol == "grpc" { "grpc" } else { "http" };
    assert_eq!(
        value(&format!(
            r#"wasmcol_receiver_refused_spans_total{{receiver="otlp",transport="{transport}"}}"#
        )),
        PANIC_BATCHES * SPANS_PER_TRACE,
        "{text}"
    );
    assert_eq!(
        value(
            r#"wasmcol_processor_outgoing_spans_total{processor="test_panic",pipeline="traces"}"#
        ),
        spans,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_worker_restarts_and_grpc_clients_retry_the_batch() {
    panics_are_contained("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_worker_restarts_and_http_clients_retry_the_batch() {
    panics_are_contained("http").await;
}

/// Without `WASMCOL_TEST_COMPONENTS=1` the test processor does not exist.
#[test]
fn the_test_processor_is_not_registered_by_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, config(free_port(), free_port(), free_port())).expect("write");
    let out = Command::new(binary("wasmcol"))
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .env_remove("WASMCOL_TEST_COMPONENTS")
        .output()
        .expect("run wasmcol validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "validate accepted test_panic:\n{stderr}"
    );
    assert!(
        stderr.contains("unknown processor type \"test_panic\""),
        "{stderr}"
    );
}
