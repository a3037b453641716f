//! Logs and metrics end to end: the Python OTel SDK's `LoggerProvider` (through `logging`) and
//! `MeterProvider` send over gRPC and HTTP to a sidecar whose one `otlp` receiver feeds a
//! traces, a logs and a metrics pipeline, each with its own processors. The sidecar writes
//! every signal to its one `file` exporter and forwards logs over `otlp` (gRPC) and metrics
//! over `otlphttp` to a gateway, which writes them to its own file. Every record and data
//! point must arrive in both files with its fields.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric, number_data_point};
use serde_json::Value;
use wasmcol_tests::{
    Collector, all_spans, free_port, python, read_json_lines, wait_until, workspace_root,
};

const RECORDS: usize = 20;

fn gateway(grpc: u16, http: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
    metrics:
      receivers: [otlp]
      exporters: [file]
  telemetry:
    metrics:
      address: none
"#
    )
}

fn sidecar(grpc: u16, http: u16, gateway_grpc: u16, gateway_http: u16) -> String {
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
  memory_limiter:
    check_interval: 1s
    limit_mib: 2048
  batch:
    timeout: 100ms
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
  otlp:
    endpoint: 127.0.0.1:{gateway_grpc}
    tls:
      insecure: true
  otlphttp:
    endpoint: http://127.0.0.1:{gateway_http}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file, otlp]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [file, otlphttp]
  telemetry:
    metrics:
      address: none
"#
    )
}

/// The logs and metrics in a file exporter's JSON lines (a line per batch, of any signal).
fn read_output(path: &Path) -> (Vec<ResourceLogs>, Vec<ResourceMetrics>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut logs, mut metrics) = (Vec::new(), Vec::new());
    // Only complete lines: the writer may be half-way through the last one.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        if line.starts_with(r#"{"resourceLogs""#) {
            logs.extend(
                wasmcol::otlp::json::decode_logs(line.as_bytes())
                    .unwrap()
                    .resource_logs,
            );
        } else if line.starts_with(r#"{"resourceMetrics""#) {
            metrics.extend(
                wasmcol::otlp::json::decode_metrics(line.as_bytes())
                    .unwrap()
                    .resource_metrics,
            );
        }
    }
    (logs, metrics)
}

fn attribute<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn string(v: Option<&any_value::Value>) -> Option<&str> {
    match v {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Every log record, keyed by its body, with its service name.
fn records_by_body(
    logs: &[ResourceLogs],
) -> BTreeMap<String, (String, &opentelemetry_proto::tonic::logs::v1::LogRecord)> {
    let mut out = BTreeMap::new();
    for rl in logs {
        let service = rl
            .resource
            .as_ref()
            .and_then(|r| string(attribute(&r.attributes, "service.name")))
            .unwrap_or_default()
            .to_string();
        for r in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            let body = match r.body.as_ref().and_then(|b: &AnyValue| b.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("body {other:?}"),
            };
            out.insert(body, (service.clone(), r));
        }
    }
    out
}

/// Checks that every record the SDK sent for `service` is in `logs`, field by field.
fn check_logs(logs: &[ResourceLogs], expected: &Value, service: &str) -> Result<(), String> {
    let found = records_by_body(logs);
    for e in expected["logs"].as_array().unwrap() {
        let body = e["body"].as_str().unwrap();
        let (svc, r) = found.get(body).ok_or(format!("record {body:?} missing"))?;
        let checks = [
            (svc.as_str() == service, "service.name"),
            (
                r.severity_text == e["severity_text"].as_str().unwrap(),
                "severity_text",
            ),
            (
                i64::from(r.severity_number) == e["severity_number"].as_i64().unwrap(),
                "severity_number",
            ),
            (
                hex::encode(&r.trace_id) == e["trace_id"].as_str().unwrap(),
                "trace_id",
            ),
            (
                hex::encode(&r.span_id) == e["span_id"].as_str().unwrap(),
                "span_id",
            ),
            (
                matches!(attribute(&r.attributes, "order.id"),
                    Some(any_value::Value::IntValue(i)) if Some(*i) == e["attributes"]["order.id"].as_i64()),
                "attributes.order.id",
            ),
            (
                string(attribute(&r.attributes, "customer"))
                    == e["attributes"]["customer"].as_str(),
                "attributes.customer",
            ),
        ];
        if let Some((_, field)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(format!("record {body:?}: {field} differs: {r:?}"));
        }
    }
    Ok(())
}

/// Checks that every metric the SDK sent for `service` is in `metrics` with its kind and
/// values (one cumulative export: one point per attribute set).
fn check_metrics(
    metrics: &[ResourceMetrics],
    expected: &Value,
    service: &str,
) -> Result<(), String> {
    let mut by_name = BTreeMap::new();
    for rm in metrics {
        let svc = rm
            .resource
            .as_ref()
            .and_then(|r| string(attribute(&r.attributes, "service.name")));
        if svc != Some(service) {
            continue;
        }
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            by_name.insert(m.name.clone(), m);
        }
    }
    let number = |v: &Option<number_data_point::Value>| match v {
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        Some(number_data_point::Value::AsDouble(d)) => *d,
        None => f64::NAN,
    };
    for (name, e) in expected["metrics"].as_object().unwrap() {
        let m = by_name.get(name).ok_or(format!("metric {name} missing"))?;
        let points = e["points"].as_object().unwrap();
        let key = |attrs: &[KeyValue]| {
            string(attribute(attrs, "route"))
                .or(string(attribute(attrs, "room")))
                .unwrap_or_default()
                .to_string()
        };
        match (&m.data, e["kind"].as_str().unwrap()) {
            (Some(metric::Data::Sum(s)), "sum") => {
                if s.is_monotonic != e["monotonic"].as_bool().unwrap() {
                    return Err(format!("{name}: is_monotonic {}", s.is_monotonic));
                }
                for p in &s.data_points {
                    let want = points[&key(&p.attributes)].as_f64();
                    if Some(number(&p.value)) != want {
                        return Err(format!("{name}: {p:?} != {want:?}"));
                    }
                }
                if s.data_points.len() != points.len() {
                    return Err(format!("{name}: {} points", s.data_points.len()));
                }
            }
            (Some(metric::Data::Gauge(g)), "gauge") => {
                let p = g.data_points.last().ok_or(format!("{name}: no point"))?;
                let want = points[&key(&p.attributes)].as_f64();
                if Some(number(&p.value)) != want {
                    return Err(format!("{name}: {p:?} != {want:?}"));
                }
            }
            (Some(metric::Data::Histogram(h)), "histogram") => {
                for p in &h.data_points {
                    let want = &points[&key(&p.attributes)];
                    if Some(p.count) != want["count"].as_u64() || p.sum != want["sum"].as_f64() {
                        return Err(format!("{name}: {p:?} != {want}"));
                    }
                }
                if h.data_points.len() != points.len() {
                    return Err(format!("{name}: {} points", h.data_points.len()));
                }
            }
            (data, kind) => return Err(format!("{name}: expected {kind}, got {data:?}")),
        }
    }
    Ok(())
}

#[test]
fn sdk_logs_and_metrics_reach_file_otlp_and_otlphttp_beside_a_traces_pipeline() {
    let (g_grpc, g_http) = (free_port(), free_port());
    let gateway = Collector::start(&gateway(g_grpc, g_http), g_http);
    let (grpc, http) = (free_port(), free_port());
    let sidecar = Collector::start(&sidecar(grpc, http, g_grpc, g_http), http);

    let mut sent = Vec::new();
    for (protocol, port) in [("grpc", grpc), ("http", http)] {
        let service = format!("checkout-{protocol}");
        let expected = sidecar.path(&format!("expected-{protocol}.json"));
        let mut cmd = Command::new(python());
        cmd.arg(workspace_root().join("tests/python/send_logs_metrics.py"))
            .args(["--protocol", protocol, "--endpoint"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--records", &RECORDS.to_string(), "--service", &service])
            .arg("--expected")
            .arg(&expected);
        assert!(
            cmd.status().expect("run python").success(),
            "send_logs_metrics.py --protocol {protocol} failed:\n{}",
            sidecar.log()
        );
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
        assert_eq!(expected["logs"].as_array().unwrap().len(), RECORDS);
        sent.push((service, expected));
    }
    // The same receiver feeds the traces pipeline too.
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_traces.py"))
        .args(["--protocol", "grpc", "--endpoint"])
        .arg(format!("127.0.0.1:{grpc}"))
        .args(["--traces", "5", "--expected"])
        .arg(sidecar.path("traces.json"))
        .status()
        .expect("run python");
    assert!(
        status.success(),
        "send_traces.py failed:\n{}",
        sidecar.log()
    );

    let outputs = [
        ("sidecar", sidecar.path("out.jsonl"), &sidecar),
        ("gateway", gateway.path("out.jsonl"), &gateway),
    ];
    for (name, path, collector) in &outputs {
        let mut last = Err(String::new());
        let arrived = wait_until(Duration::from_secs(30), || {
            let (logs, metrics) = read_output(path);
            last = sent.iter().try_for_each(|(service, expected)| {
                check_logs(&logs, expected, service)?;
                check_metrics(&metrics, expected, service)
            });
            last.is_ok()
        });
        assert!(
            arrived,
            "{name}: {}\n{}",
            last.unwrap_err(),
            collector.log()
        );
    }
    // Spans went to the sidecar's file only (its traces pipeline has no other exporter).
    let spans = all_spans(&read_json_lines(&outputs[0].1)).len();
    assert_eq!(spans, 3 * 5, "{}", sidecar.log());
    assert!(all_spans(&read_json_lines(&outputs[1].1)).is_empty());
}

/// The load generator's logs and metrics reach the collector over both transports, and the
/// collector counts each signal apart, under the OpenTelemetry Collector's names.
#[test]
fn loadgen_logs_and_metrics_are_received_and_counted_per_signal() {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  nop:
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [nop]
    metrics:
      receivers: [otlp]
      exporters: [nop]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    );
    let collector = Collector::start(&config, http);
    let grpc_endpoint = format!("127.0.0.1:{grpc}");
    let http_endpoint = format!("127.0.0.1:{http}");
    let runs = [
        ("logs", "grpc", grpc_endpoint.as_str(), "proto"),
        ("metrics", "http", http_endpoint.as_str(), "json"),
        ("metrics", "grpc", grpc_endpoint.as_str(), "proto"),
    ];
    for (signal, protocol, endpoint, encoding) in runs {
        let summary = wasmcol_tests::run_loadgen(&[
            "--signal",
            signal,
            "--protocol",
            protocol,
            "--endpoint",
            endpoint,
            "--http-encoding",
            encoding,
            "--traces",
            "200",
            "--spans-per-trace",
            "3",
            "--batch-traces",
            "20",
        ]);
        assert_eq!(
            summary["spans_accepted"], 600,
            "{signal} {protocol}: {summary}"
        );
    }
    // Traces are not taken here: the trace service answers UNIMPLEMENTED.
    let refused = Command::new(wasmcol_tests::binary("wasmcol-loadgen"))
        .args(["--json", "--quiet", "--endpoint", &grpc_endpoint])
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(summary["spans_accepted"], 0, "{summary}");

    let text = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(wasmcol_tests::scrape_metrics(metrics));
    let value = |series: &str| wasmcol_tests::metric_value(&text, series).unwrap_or(0.0);
    assert_eq!(
        value(r#"wasmcol_receiver_accepted_log_records_total{receiver="otlp",transport="grpc"}"#),
        600.0,
        "{text}"
    );
    assert_eq!(
        value(r#"wasmcol_receiver_accepted_metric_points_total{receiver="otlp",transport="http"}"#)
            + value(
                r#"wasmcol_receiver_accepted_metric_points_total{receiver="otlp",transport="grpc"}"#
            ),
        1200.0,
        "{text}"
    );
    assert_eq!(
        value(r#"wasmcol_exporter_sent_log_records_total{exporter="nop"}"#),
        600.0,
        "{text}"
    );
    assert_eq!(
        value(r#"wasmcol_exporter_sent_metric_points_total{exporter="nop"}"#),
        1200.0,
        "{text}"
    );
    assert_eq!(
        value(r#"wasmcol_receiver_accepted_spans_total{receiver="otlp",transport="grpc"}"#),
        0.0
    );
    drop(collector);
}
