//! Sidecar → gateway: two wasmcol processes over OTLP/gRPC. The Python SDK sends to the
//! sidecar; every span arrives at the gateway's file exactly once, also when the gateway starts
//! after the sidecar has already queued data.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use wasmcol_tests::{
    Collector, all_spans, free_port, python, read_json_lines, wait_until, workspace_root,
};

fn sidecar_config(grpc: u16, http: u16, metrics: u16, gateway: u16) -> String {
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
  batch:
    timeout: 50ms
exporters:
  otlp/gateway:
    endpoint: 127.0.0.1:{gateway}
    tls:
      insecure: true
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp/gateway]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

fn gateway_config(grpc: u16, metrics: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
    timeout: 50ms
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

fn send(
    protocol: &str,
    endpoint: &str,
    traces: u32,
    expected: &std::path::Path,
) -> Vec<serde_json::Value> {
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_traces.py"))
        .args([
            "--protocol",
            protocol,
            "--endpoint",
            endpoint,
            "--traces",
            &traces.to_string(),
            "--expected",
        ])
        .arg(expected)
        .status()
        .expect("run python");
    assert!(status.success(), "the Python sender failed");
    serde_json::from_str(&std::fs::read_to_string(expected).unwrap()).unwrap()
}

#[test]
fn every_span_arrives_once_through_sidecar_and_gateway() {
    let gw_port = free_port();
    let (sc_grpc, sc_http) = (free_port(), free_port());
    // The sidecar starts first; the gateway is not there yet, so the first spans wait in the
    // sidecar's retrying sending queue.
    let mut sidecar = Collector::start(
        &sidecar_config(sc_grpc, sc_http, free_port(), gw_port),
        sc_grpc,
    );
    let early = send(
        "grpc",
        &format!("127.0.0.1:{sc_grpc}"),
        5,
        &sidecar.path("early.json"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut gateway = Collector::start(&gateway_config(gw_port, free_port()), gw_port);
    let late = send(
        "http",
        &format!("127.0.0.1:{sc_http}"),
        5,
        &sidecar.path("late.json"),
    );

    let want: Vec<String> = early
        .iter()
        .chain(&late)
        .map(|s| s["span_id"].as_str().unwrap().to_string())
        .collect();
    let out = gateway.path("out.jsonl");
    let arrived = wait_until(Duration::from_secs(15), || {
        out.exists() && all_spans(&read_json_lines(&out)).len() >= want.len()
    });
    assert!(
        arrived,
        "spans missing at the gateway\nsidecar:\n{}\ngateway:\n{}",
        sidecar.log(),
        gateway.log()
    );
    assert_eq!(sidecar.stop(), 0);
    assert_eq!(gateway.stop(), 0);

    let mut seen: HashMap<String, usize> = HashMap::new();
    for s in all_spans(&read_json_lines(&out)) {
        *seen.entry(hex::encode(&s.span_id)).or_default() += 1;
    }
    for id in &want {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "span {id} should arrive exactly once"
        );
    }
    assert_eq!(seen.len(), want.len(), "no span other than those sent");
}
