//! Logs and metrics across Kafka: a `wasmcol` sidecar takes the Python OTel SDK's logs and
//! metrics over OTLP and writes them with its `kafka` exporter to their own topics of a real
//! Kafka-protocol broker (tansu); a `wasmcol` gateway whose one `kafka` receiver feeds a logs
//! and a metrics pipeline reads both topics and writes a file. Every log record and data point
//! the sidecar received must reach the gateway's file unchanged, and a gateway killed
//! mid-stream must lose none that it acknowledged.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use wasmcol::exporters::kafka::RECORD_OVERHEAD;
use wasmcol::pipeline::Split;
use wasmcol_tests::kafka::{Broker, produce_stream, read_all};
use wasmcol_tests::{Collector, free_port, python, wait_until, workspace_root};

const RECORDS: usize = 20;
const SERVICES: [&str; 2] = ["checkout", "billing"];

fn gateway_config(brokers: &str, metrics_port: u16) -> String {
    format!(
        r#"
receivers:
  kafka:
    brokers: [{brokers}]
    logs:
      topics: [app_logs]
    metrics:
      encoding: otlp_json
    group_id: gateway
    initial_offset: earliest
    session_timeout: 6s
    heartbeat_interval: 1s
    commit_interval: 200ms
    # tansu answers a fetch only when this wait is over, even with data at hand.
    max_fetch_wait: 10ms
processors:
  batch:
    timeout: 300ms
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 500ms
service:
  pipelines:
    logs:
      receivers: [kafka]
      processors: [batch]
      exporters: [file]
    metrics:
      receivers: [kafka]
      processors: [batch]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
"#
    )
}

fn sidecar_config(brokers: &str, grpc: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
    timeout: 100ms
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
  kafka:
    brokers: [{brokers}]
    logs:
      topic: app_logs
    metrics:
      encoding: otlp_json
    partition_logs_by_resource_attributes: true
    partition_metrics_by_resource_attributes: true
    producer:
      # Small, so the SDK's batches are cut into several messages.
      max_message_bytes: 2000
service:
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [file, kafka]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [file, kafka]
  telemetry:
    metrics:
      address: none
"#
    )
}

/// The logs and metrics in a file exporter's JSON lines (complete lines only).
fn read_output(path: &Path) -> (Vec<ResourceLogs>, Vec<ResourceMetrics>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut logs, mut metrics) = (Vec::new(), Vec::new());
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

/// Each item (log record, data point) on its own, with its resource, scope (and metric), as
/// protobuf: two outputs hold the same data exactly when these sets are equal.
fn singles<T: Split + Message>(all: Vec<T>) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    for mut r in all {
        while r.items() > 1 {
            out.insert(r.split_front(1).encode_to_vec());
        }
        if r.items() == 1 {
            out.insert(r.encode_to_vec());
        }
    }
    out
}

fn sigkill(c: &Collector) {
    let status = Command::new("kill")
        .args(["-KILL", &c.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn sdk_logs_and_metrics_cross_kafka_with_every_field() {
    let broker = Broker::start();
    broker.create_topic("app_logs", 3);
    broker.create_topic("otlp_metrics", 2);
    let gw_metrics = free_port();
    let gateway = Collector::start(&gateway_config(&broker.address, gw_metrics), gw_metrics);
    let grpc = free_port();
    let sidecar = Collector::start(&sidecar_config(&broker.address, grpc), grpc);

    let mut sent = Vec::new();
    for service in SERVICES {
        let expected = sidecar.path(&format!("expected-{service}.json"));
        let status = Command::new(python())
            .arg(workspace_root().join("tests/python/send_logs_metrics.py"))
            .args(["--protocol", "grpc", "--endpoint"])
            .arg(format!("127.0.0.1:{grpc}"))
            .args(["--records", &RECORDS.to_string(), "--service", service])
            .arg("--expected")
            .arg(&expected)
            .status()
            .expect("run python");
        assert!(
            status.success(),
            "send_logs_metrics.py failed:\n{}",
            sidecar.log()
        );
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
        assert_eq!(expected["logs"].as_array().unwrap().len(), RECORDS);
        sent.push(expected);
    }

    // What the sidecar received (its own file), once it has all the SDK sent: every body
    // and metric name of each service under that service's resource.
    let service_of = |r: &Option<Resource>| -> String {
        r.iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let want: BTreeSet<(String, String)> = SERVICES
        .iter()
        .zip(&sent)
        .flat_map(|(service, e)| {
            let bodies = e["logs"].as_array().unwrap().iter();
            let names = e["metrics"].as_object().unwrap().keys();
            bodies
                .map(|r| format!("log {}", r["body"].as_str().unwrap()))
                .chain(names.map(|n| format!("metric {n}")))
                .map(|what| (service.to_string(), what))
                .collect::<Vec<_>>()
        })
        .collect();
    let holds_all = |logs: &[ResourceLogs], metrics: &[ResourceMetrics]| {
        let mut got: BTreeSet<(String, String)> = BTreeSet::new();
        for rl in logs {
            for r in rl.scope_logs.iter().flat_map(|sl| &sl.log_records) {
                if let Some(any_value::Value::StringValue(b)) =
                    r.body.as_ref().and_then(|b| b.value.as_ref())
                {
                    got.insert((service_of(&rl.resource), format!("log {b}")));
                }
            }
        }
        for rm in metrics {
            for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
                got.insert((service_of(&rm.resource), format!("metric {}", m.name)));
            }
        }
        want.is_subset(&got)
    };
    let sidecar_out = sidecar.path("out.jsonl");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let (logs, metrics) = read_output(&sidecar_out);
            holds_all(&logs, &metrics)
        }),
        "the sidecar's file lacks what the SDK sent\n{}",
        sidecar.log()
    );
    let (logs, metrics) = read_output(&sidecar_out);
    let want_logs = singles(logs);
    let want_points = singles(metrics);
    assert_eq!(want_logs.len(), 2 * RECORDS);

    // The gateway's file: the same records and points, every field unchanged.
    let gateway_out = gateway.path("out.jsonl");
    let mut last = (0, 0);
    let arrived = wait_until(Duration::from_secs(60), || {
        let (logs, metrics) = read_output(&gateway_out);
        let (got_logs, got_points) = (singles(logs), singles(metrics));
        last = (
            want_logs.difference(&got_logs).count(),
            want_points.difference(&got_points).count(),
        );
        last == (0, 0)
    });
    assert!(
        arrived,
        "{} of {} log records and {} of {} data points missing or changed at the gateway\n\
         sidecar:\n{}\ngateway:\n{}",
        last.0,
        want_logs.len(),
        last.1,
        want_points.len(),
        sidecar.log(),
        gateway.log()
    );
    let (logs, metrics) = read_output(&gateway_out);
    assert_eq!(singles(logs), want_logs, "records the sidecar never had");
    assert_eq!(
        singles(metrics),
        want_points,
        "points the sidecar never had"
    );

    // On the wire: log messages cut under max_message_bytes, keyed by resource (one key per
    // service); metrics as OTLP/JSON.
    let messages = read_all(&broker.address, "app_logs");
    assert!(
        messages.len() > SERVICES.len(),
        "{} log messages",
        messages.len()
    );
    let keys: BTreeSet<Vec<u8>> = messages
        .iter()
        .map(|m| {
            assert!(m.value.len() + RECORD_OVERHEAD <= 2000, "{}", m.value.len());
            m.key.clone().expect("keyed by resource")
        })
        .collect();
    assert_eq!(keys.len(), SERVICES.len());
    assert!(keys.iter().all(|k| k.len() == 16));
    let metric_messages = read_all(&broker.address, "otlp_metrics");
    assert!(!metric_messages.is_empty());
    for m in &metric_messages {
        wasmcol::otlp::json::decode_metrics(&m.value).expect("an OTLP/JSON metrics message");
    }
    eprintln!(
        "{} log records in {} messages and {} data points in {} messages crossed",
        want_logs.len(),
        messages.len(),
        want_points.len(),
        metric_messages.len()
    );
}

/// `n` log messages of `per` records each: record `i` has `time_unix_nano` `i` (1-based).
fn log_messages(range: std::ops::Range<u64>, per: u64) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    range
        .map(|k| {
            let records = (k * per + 1..=(k + 1) * per)
                .map(|i| LogRecord {
                    time_unix_nano: i,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(format!("record {i}"))),
                    }),
                    ..Default::default()
                })
                .collect();
            let req = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![KeyValue {
                            key: "service.name".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(format!(
                                    "svc-{}",
                                    k % 3
                                ))),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        log_records: records,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            (None, req.encode_to_vec())
        })
        .collect()
}

/// `n` OTLP/JSON metric messages of `per` points each: point `i` has `time_unix_nano` `i`.
fn metric_messages(range: std::ops::Range<u64>, per: u64) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    range
        .map(|k| {
            let points = (k * per + 1..=(k + 1) * per)
                .map(|i| NumberDataPoint {
                    time_unix_nano: i,
                    value: Some(number_data_point::Value::AsInt(i as i64)),
                    ..Default::default()
                })
                .collect();
            let resource_metrics = vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "requests".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: points,
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }];
            let mut json = Vec::new();
            wasmcol::otlp::json::encode_metrics(&resource_metrics, &mut json);
            let _: ExportMetricsServiceRequest =
                wasmcol::otlp::json::decode_metrics(&json).expect("round trip");
            (None, json)
        })
        .collect()
}

/// The `time_unix_nano` of every record and point in a gateway's file.
fn output_times(path: &Path) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let (logs, metrics) = read_output(path);
    let records = logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .map(|r| r.time_unix_nano)
        .collect();
    let points = metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .flat_map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.data_points.clone(),
            _ => Vec::new(),
        })
        .map(|p| p.time_unix_nano)
        .collect();
    (records, points)
}

#[test]
fn gateway_killed_mid_stream_loses_no_log_record_or_point() {
    let broker = Broker::start();
    broker.create_topic("app_logs", 2);
    broker.create_topic("otlp_metrics", 2);
    let (per, total) = (20u64, 300u64);
    // Streams still being written while the first gateway dies.
    let writers: Vec<_> = [
        ("app_logs", log_messages(0..total, per)),
        ("otlp_metrics", metric_messages(0..total / 3, per)),
    ]
    .into_iter()
    .map(|(topic, messages)| {
        let address = broker.address.clone();
        std::thread::spawn(move || {
            produce_stream(&address, topic, &messages, Duration::from_millis(15));
        })
    })
    .collect();

    let metrics = free_port();
    let first = Collector::start(&gateway_config(&broker.address, metrics), metrics);
    let first_out = first.path("out.jsonl");
    // Kill it once it has written some records, with more in its batch processor and file
    // buffer (committed-before-delivered would lose exactly those).
    assert!(
        wait_until(Duration::from_secs(30), || output_times(&first_out).0.len()
            >= 400),
        "the first gateway wrote nothing\n{}",
        first.log()
    );
    // Mid-way between two file flushes (every 500 ms), with offsets committed every 200 ms.
    std::thread::sleep(Duration::from_millis(250));
    sigkill(&first);
    let before_kill = output_times(&first_out).0.len();

    let metrics = free_port();
    let second = Collector::start(&gateway_config(&broker.address, metrics), metrics);
    let second_out = second.path("out.jsonl");
    let want_records: BTreeSet<u64> = (1..=total * per).collect();
    let want_points: BTreeSet<u64> = (1..=total / 3 * per).collect();
    let got = || {
        let (r1, p1) = output_times(&first_out);
        let (r2, p2) = output_times(&second_out);
        (
            r1.union(&r2).copied().collect::<BTreeSet<u64>>(),
            p1.union(&p2).copied().collect::<BTreeSet<u64>>(),
        )
    };
    let all_arrived = wait_until(Duration::from_secs(60), || {
        let (records, points) = got();
        want_records.is_subset(&records) && want_points.is_subset(&points)
    });
    for w in writers {
        w.join().unwrap();
    }
    let (records, points) = got();
    let missing: Vec<_> = want_records.difference(&records).take(10).collect();
    assert!(
        all_arrived,
        "{} log records (e.g. {missing:?}) and {} points missing after the restart; first \
         wrote {before_kill} records\nsecond:\n{}",
        want_records.difference(&records).count(),
        want_points.difference(&points).count(),
        second.log()
    );
    eprintln!(
        "{} log records, {before_kill} written before SIGKILL; {} points",
        want_records.len(),
        want_points.len()
    );
}
