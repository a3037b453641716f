//! Kafka between collection and storage: `wasmcol` sidecars write spans to a real
//! Kafka-protocol broker (tansu, in memory), a `wasmcol` gateway consumer group reads them.
//! What the exporter wrote is checked with an independent client (confluent-kafka); faults
//! (a broker down for 30 s) use librdkafka's mock cluster.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use prost::Message;
use rdkafka::mocking::MockCluster;
use wasmcol_tests::kafka::{Broker, produce, produce_stream, read_all};
use wasmcol_tests::{
    Collector, free_port, metric_value, output_span_ids, python, scrape_metrics, spans_request,
    wait_until, workspace_root,
};

fn gateway_config(brokers: &str, topic: &str, metrics: u16, extra: &str) -> String {
    format!(
        r#"
receivers:
  kafka:
    brokers: [{brokers}]
    topics: [{topic}]
    group_id: gateway
    initial_offset: earliest
    session_timeout: 6s
    heartbeat_interval: 1s
    commit_interval: 200ms
    # tansu answers a fetch only when this wait is over, even with data at hand.
    max_fetch_wait: 10ms
{extra}
processors:
  batch:
    timeout: 300ms
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 500ms
service:
  pipelines:
    traces:
      receivers: [kafka]
      processors: [batch]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

fn sigkill(c: &Collector) {
    let status = Command::new("kill")
        .args(["-KILL", &c.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// `n` OTLP messages of `per` spans each: message `k` holds span ids `k*per+1 ..= (k+1)*per`
/// under trace id `[k % 250 + 1; 16]`.
fn otlp_messages(range: std::ops::Range<u64>, per: usize) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    range
        .map(|k| {
            let req = spans_request((k % 250 + 1) as u8, k * per as u64 + 1, per, 20);
            (None, req.encode_to_vec())
        })
        .collect()
}

/// A shipped config with its environment defaults replaced (the test runs many collectors at
/// once, so every port is a free one).
fn shipped_config(name: &str, replacements: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(workspace_root().join("configs").join(name)).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{name} has no {from:?}");
        text = text.replace(from, to);
    }
    text
}

#[test]
fn sdk_spans_cross_kafka_and_each_trace_stays_in_one_partition() {
    let broker = Broker::start();
    broker.create_topic("otlp_spans", 4);
    let brokers = || broker.address.clone();
    let port = || format!("127.0.0.1:{}", free_port());
    // configs/gateway-kafka.yaml as shipped: Kafka in, zstd protobuf files out.
    let gw_metrics = free_port();
    let mut gateway = Collector::start(
        &shipped_config(
            "gateway-kafka.yaml",
            &[
                ("${env:WASMCOL_KAFKA_BROKERS:-localhost:9092}", brokers()),
                (
                    "${env:WASMCOL_OUTPUT:-./data/gateway/traces.pb}",
                    "{dir}/out.pb".into(),
                ),
                ("0.0.0.0:13134", port()),
                (
                    "${env:WASMCOL_METRICS_ADDRESS:-localhost:8889}",
                    format!("127.0.0.1:{gw_metrics}"),
                ),
            ],
        ),
        gw_metrics,
    );
    // configs/sidecar-kafka.yaml as shipped, with a small max_message_bytes so batches are
    // split.
    let grpc = free_port();
    let max_message_bytes = 3000;
    let mut sidecar = Collector::start(
        &shipped_config(
            "sidecar-kafka.yaml",
            &[
                ("${env:WASMCOL_KAFKA_BROKERS:-localhost:9092}", brokers()),
                (
                    "${env:WASMCOL_GRPC_ENDPOINT:-localhost:4317}",
                    format!("127.0.0.1:{grpc}"),
                ),
                ("${env:WASMCOL_HTTP_ENDPOINT:-localhost:4318}", port()),
                ("localhost:13133", port()),
                ("${env:WASMCOL_METRICS_ADDRESS:-localhost:8888}", port()),
                (
                    "max_message_bytes: 1000000",
                    format!("max_message_bytes: {max_message_bytes}"),
                ),
            ],
        ),
        grpc,
    );

    let expected_file = sidecar.path("expected.json");
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_traces.py"))
        .args([
            "--protocol",
            "grpc",
            "--endpoint",
            &format!("127.0.0.1:{grpc}"),
        ])
        .args(["--traces", "40", "--expected"])
        .arg(&expected_file)
        .status()
        .expect("run python");
    assert!(status.success(), "the Python sender failed");
    let expected: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&expected_file).unwrap()).unwrap();
    let want: BTreeSet<String> = expected
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(want.len(), 120);

    // Every span reaches the gateway's file.
    let out = gateway.path("out.pb");
    let arrived = wait_until(Duration::from_secs(30), || {
        let got: HashSet<String> = read_proto_span_ids_hex(&out);
        want.iter().all(|id| got.contains(id))
    });
    assert!(
        arrived,
        "spans missing at the gateway\nsidecar:\n{}\ngateway:\n{}",
        sidecar.log(),
        gateway.log()
    );

    // What the exporter wrote, read by an independent client.
    let report = sidecar.path("kafka.json");
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/kafka_check.py"))
        .args([
            "--brokers",
            &broker.address,
            "--topic",
            "otlp_spans",
            "--out",
        ])
        .arg(&report)
        .status()
        .expect("run kafka_check.py");
    assert!(status.success(), "kafka_check.py failed");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["undecodable"], 0, "every message must be OTLP");
    assert_eq!(report["complete"], true, "{report}");
    assert!(
        report["max_message_bytes"].as_u64().unwrap() <= max_message_bytes,
        "a message exceeds max_message_bytes: {}",
        report["max_message_bytes"]
    );
    let mut partitions_of: HashMap<String, BTreeSet<u64>> = HashMap::new();
    let mut written = BTreeSet::new();
    for s in report["spans"].as_array().unwrap() {
        let trace = s["trace_id"].as_str().unwrap();
        assert_eq!(
            s["key"].as_str().unwrap(),
            trace,
            "the message key must be the trace id"
        );
        partitions_of
            .entry(trace.to_string())
            .or_default()
            .insert(s["partition"].as_u64().unwrap());
        written.insert(s["span_id"].as_str().unwrap().to_string());
    }
    assert_eq!(written, want, "the topic holds exactly the spans sent");
    assert_eq!(partitions_of.len(), 40);
    for (trace, parts) in &partitions_of {
        assert_eq!(
            parts.len(),
            1,
            "trace {trace} was spread over partitions {parts:?}"
        );
    }
    let used: BTreeSet<u64> = partitions_of.values().flatten().copied().collect();
    assert!(
        used.len() > 1,
        "40 traces should spread over several partitions: {used:?}"
    );

    assert_eq!(sidecar.stop(), 0);
    assert_eq!(gateway.stop(), 0);
}

/// Span ids (hex) in a zstd-compressed protobuf file written by the file exporter; empty while
/// the last record is still being written.
fn read_proto_span_ids_hex(path: &std::path::Path) -> HashSet<String> {
    use wasmcol::exporters::file::{Compression, Format, read_length_prefixed};
    let Ok(bytes) = std::fs::read(path) else {
        return HashSet::new();
    };
    read_length_prefixed(&bytes, Format::Proto, Compression::Zstd)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .map(|s| hex::encode(s.span_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_for_30s_loses_nothing_acknowledged() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("otlp_spans", 2, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let grpc = free_port();
    let metrics = free_port();
    let sidecar = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
processors:
  batch:
    send_batch_size: 200
    timeout: 20ms
    queue_size: 4
exporters:
  kafka:
    brokers: [{brokers}]
    topic: otlp_spans
    timeout: 2s
    sending_queue: {{ queue_size: 8, num_consumers: 2 }}
    retry_on_failure:
      initial_interval: 200ms
      max_interval: 1s
      max_elapsed_time: 0s
service:
  shutdown_timeout: 30s
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [kafka]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
        ),
        grpc,
    );
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect gRPC");

    let mut acked: Vec<u64> = Vec::new();
    let mut refused_during_outage = 0u32;
    let mut acked_during_outage = 0u32;
    let mut next_id = 1u64;
    let start = Instant::now();
    let mut down_at = None;
    let mut up_at = None;
    loop {
        let t = start.elapsed();
        if down_at.is_none() && t > Duration::from_secs(2) {
            mock.broker_down(1).expect("broker down");
            down_at = Some(t);
        }
        if up_at.is_none() && t > Duration::from_secs(32) {
            mock.broker_up(1).expect("broker up");
            up_at = Some(t);
        }
        if t > Duration::from_secs(35) {
            break;
        }
        let outage = down_at.is_some() && up_at.is_none();
        let req = spans_request(7, next_id, 20, 50);
        match client.export(req).await {
            Ok(_) => {
                acked.extend(next_id..next_id + 20);
                if outage {
                    acked_during_outage += 1;
                }
            }
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
                if outage {
                    refused_during_outage += 1;
                }
            }
        }
        next_id += 20;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused_during_outage > 0,
        "the queue should fill and refusals reach the client during the outage\n{}",
        sidecar.log()
    );
    assert!(
        acked_during_outage > 0,
        "the queue takes data at the start of the outage"
    );

    // Everything acknowledged reaches the broker once it is back.
    let want: HashSet<u64> = acked.iter().copied().collect();
    let mut got: HashSet<u64> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        got = tokio::task::block_in_place(|| read_all(&brokers, "otlp_spans"))
            .iter()
            .flat_map(|r| {
                let req = wasmcol::otlp::ExportTraceServiceRequest::decode(r.value.as_slice())
                    .expect("OTLP message");
                wasmcol_tests::span_ids(&req.resource_spans)
            })
            .collect();
        if want.is_subset(&got) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let missing = want.difference(&got).count();
    let text = scrape_metrics(metrics).await;
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged spans never reached the broker\nmetrics:\n{text}\nlog:\n{}",
        want.len(),
        sidecar.log()
    );
    let refused = metric_value(
        &text,
        r#"wasmcol_receiver_refused_spans_total{receiver="otlp",transport="grpc"}"#,
    )
    .unwrap_or(0.0);
    assert!(refused > 0.0, "refusals are counted");
    eprintln!(
        "acked {} spans ({acked_during_outage} requests during the outage), {refused_during_outage} requests refused",
        want.len()
    );
}

#[test]
fn gateway_killed_mid_stream_rereads_and_loses_nothing() {
    let broker = Broker::start();
    broker.create_topic("spans", 2);
    let per = 20;
    let total = 300u64;
    // A stream that is still being written while the first gateway dies.
    let address = broker.address.clone();
    let writer = std::thread::spawn(move || {
        produce_stream(
            &address,
            "spans",
            &otlp_messages(0..total, per),
            Duration::from_millis(15),
        );
    });

    let metrics = free_port();
    let first = Collector::start(
        &gateway_config(&broker.address, "spans", metrics, ""),
        metrics,
    );
    let first_out = first.path("out.jsonl");
    // Kill it once it has written some spans, with more in its batch processor and file
    // buffer (committed-before-delivered would lose exactly those).
    assert!(
        wait_until(Duration::from_secs(30), || output_span_ids(&first_out)
            .len()
            >= 400),
        "the first gateway wrote nothing\n{}",
        first.log()
    );
    // Mid-way between two file flushes (every 500 ms), with offsets committed every 200 ms:
    // data the exporter has buffered but not written must not count as delivered.
    std::thread::sleep(Duration::from_millis(250));
    sigkill(&first);
    let before_kill = output_span_ids(&first_out).len();

    let metrics = free_port();
    let second = Collector::start(
        &gateway_config(&broker.address, "spans", metrics, ""),
        metrics,
    );
    let second_out = second.path("out.jsonl");
    let want: HashSet<u64> = (1..=total * per as u64).collect();
    let all_arrived = wait_until(Duration::from_secs(60), || {
        let got: HashSet<u64> = output_span_ids(&first_out)
            .into_iter()
            .chain(output_span_ids(&second_out))
            .collect();
        want.is_subset(&got)
    });
    writer.join().unwrap();
    let got: HashSet<u64> = output_span_ids(&first_out)
        .into_iter()
        .chain(output_span_ids(&second_out))
        .collect();
    let missing: Vec<_> = want.difference(&got).take(10).collect();
    assert!(
        all_arrived,
        "{} spans missing after the restart (e.g. {missing:?}); first wrote {before_kill}\nsecond:\n{}",
        want.difference(&got).count(),
        second.log()
    );
    let written = output_span_ids(&first_out).len() + output_span_ids(&second_out).len();
    eprintln!(
        "{} spans, {before_kill} written before SIGKILL, {} duplicates after the restart",
        want.len(),
        written - want.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_skipped_and_counted() {
    malformed_messages(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_go_to_the_dead_letter_topic() {
    malformed_messages(true).await;
}

async fn malformed_messages(dead_letter: bool) {
    let broker = tokio::task::block_in_place(Broker::start);
    let address = broker.address.clone();
    tokio::task::block_in_place(|| {
        broker.create_topic("spans", 1);
        broker.create_topic("spans_dlq", 1);
        let mut messages = otlp_messages(0..1, 10);
        messages.push((Some(b"k1".to_vec()), b"\x0a\xff\xff\xff garbage".to_vec()));
        messages.extend(otlp_messages(1..2, 10));
        messages.push((None, b"{\"resourceSpans\": [".to_vec()));
        messages.extend(otlp_messages(2..3, 10));
        produce(&address, "spans", &messages);
    });

    let metrics = free_port();
    let gateway = Collector::start(
        &gateway_config(
            &address,
            "spans",
            metrics,
            if dead_letter {
                "    dead_letter_topic: spans_dlq"
            } else {
                ""
            },
        ),
        metrics,
    );
    let out = gateway.path("out.jsonl");
    let arrived = wait_until(Duration::from_secs(30), || {
        output_span_ids(&out).len() >= 30
    });
    assert!(
        arrived,
        "valid messages after bad ones must flow\n{}",
        gateway.log()
    );
    let mut ids = output_span_ids(&out);
    ids.sort();
    ids.dedup();
    assert_eq!(ids, (1..=30).collect::<Vec<u64>>());

    let text = scrape_metrics(metrics).await;
    assert_eq!(
        metric_value(
            &text,
            r#"wasmcol_receiver_malformed_messages_total{receiver="kafka"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        gateway.wait_for_log_line(
            &[
                "cannot be decoded",
                "topic=spans",
                "partition=0",
                "offset=1"
            ],
            Duration::from_secs(5)
        ),
        "{}",
        gateway.log()
    );
    assert!(gateway.wait_for_log_line(&["offset=3"], Duration::from_secs(1)));
    // The partition kept flowing: a message written after the bad ones arrives too.
    tokio::task::block_in_place(|| produce(&address, "spans", &otlp_messages(3..4, 10)));
    assert!(
        wait_until(Duration::from_secs(30), || output_span_ids(&out).len()
            >= 40),
        "{}",
        gateway.log()
    );

    if !dead_letter {
        assert!(
            tokio::task::block_in_place(|| read_all(&address, "spans_dlq")).is_empty(),
            "nothing is dead-lettered without dead_letter_topic"
        );
        return;
    }
    // The dead-letter writes are asynchronous: wait for both.
    let mut dlq = Vec::new();
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(10), || {
            dlq = read_all(&address, "spans_dlq");
            dlq.len() >= 2
        })
    });
    assert_eq!(
        dlq.len(),
        2,
        "both bad messages go to the dead-letter topic"
    );
    // Written unchanged, key included; in either order (each is written by its own task).
    let mut written: Vec<(Option<Vec<u8>>, Vec<u8>)> =
        dlq.into_iter().map(|r| (r.key, r.value)).collect();
    written.sort();
    assert_eq!(
        written,
        vec![
            (None, b"{\"resourceSpans\": [".to_vec()),
            (Some(b"k1".to_vec()), b"\x0a\xff\xff\xff garbage".to_vec()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplifying_messages_are_skipped_and_invalid_spans_dropped() {
    let broker = tokio::task::block_in_place(Broker::start);
    let address = broker.address.clone();
    tokio::task::block_in_place(|| {
        broker.create_topic("spans", 1);
        let mut messages = otlp_messages(0..1, 10);
        // 300,000 empty spans: 600 KB, about 75 MB decoded, over 8 x message.max.bytes.
        let big = wasmcol_tests::empty_spans_request(300_000);
        messages.push((Some(b"big".to_vec()), big));
        // Ten spans, three of them with an all-zero span id.
        let mut mixed = spans_request(2, 11, 10, 20);
        for span in &mut mixed.resource_spans[0].scope_spans[0].spans[..3] {
            span.span_id = vec![0; 8];
        }
        messages.push((None, mixed.encode_to_vec()));
        messages.extend(otlp_messages(2..3, 10));
        produce(&address, "spans", &messages);
    });

    let metrics = free_port();
    let gateway = Collector::start(&gateway_config(&address, "spans", metrics, ""), metrics);
    let out = gateway.path("out.jsonl");
    let mut want: Vec<u64> = (1..=10).chain(14..=20).chain(21..=30).collect();
    want.sort();
    let arrived = wait_until(Duration::from_secs(30), || {
        let mut ids = output_span_ids(&out);
        ids.sort();
        ids.dedup();
        ids == want
    });
    assert!(arrived, "{:?}\n{}", output_span_ids(&out), gateway.log());
    let text = scrape_metrics(metrics).await;
    for (series, value) in [
        (
            r#"wasmcol_receiver_over_budget_requests_total{receiver="kafka",transport="kafka"}"#,
            1.0,
        ),
        (
            r#"wasmcol_receiver_invalid_spans_total{receiver="kafka",transport="kafka"}"#,
            3.0,
        ),
        (
            r#"wasmcol_receiver_malformed_messages_total{receiver="kafka"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metric_value(&text, series), Some(value), "{series}\n{text}");
    }
    assert!(
        gateway.wait_for_log_line(
            &[
                "cannot be decoded",
                "offset=1",
                "300000 spans",
                "message.max.bytes"
            ],
            Duration::from_secs(5)
        ),
        "{}",
        gateway.log()
    );
}

/// What the independent client (kafka_check.py) reads from `topic`.
fn python_read(brokers: &str, topic: &str, out: &std::path::Path) -> serde_json::Value {
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/kafka_check.py"))
        .args(["--brokers", brokers, "--topic", topic, "--out"])
        .arg(out)
        .status()
        .expect("run kafka_check.py");
    assert!(status.success(), "kafka_check.py failed");
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// Span ids (hex) of a kafka_check.py report.
fn report_span_ids(report: &serde_json::Value) -> BTreeSet<String> {
    report["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_string())
        .collect()
}

/// OTLP/HTTP with `x-tenant: acme` → `include_metadata` → batch `metadata_keys` →
/// `topic_from_metadata_key`: the tenant's spans land in topic `acme`, the rest in `topic`,
/// and so do those of a tenant outside `allowed_topics` (counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metadata_names_the_topic() {
    let broker = tokio::task::block_in_place(Broker::start);
    let brokers = broker.address.clone();
    tokio::task::block_in_place(|| {
        broker.create_topic("acme", 1);
        broker.create_topic("otlp_spans", 1);
    });
    let http = free_port();
    let metrics = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
        include_metadata: true
processors:
  batch:
    timeout: 100ms
    metadata_keys: [x-tenant]
exporters:
  kafka:
    brokers: [{brokers}]
    topic_from_metadata_key: x-tenant
    allowed_topics: [acme]
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [kafka]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    );
    let mut collector = tokio::task::block_in_place(|| Collector::start(&config, http));
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    let proto = ("content-type", "application/x-protobuf");
    // Interleaved, so the batch processor sees both tenants within one timeout.
    for (k, tenant) in [
        (0u64, Some("acme")),
        (1, None),
        (2, Some("acme")),
        (3, None),
        (4, Some("otlp_spans_dlq")),
    ] {
        let mut headers = vec![proto];
        if let Some(t) = tenant {
            headers.push(("x-tenant", t));
        }
        let body = spans_request(k as u8 + 1, k * 10 + 1, 5, 0).encode_to_vec();
        let reply = wasmcol_tests::http_request("POST", &url, &headers, body)
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", collector.log());
    }
    let ids = |ks: &[u64]| -> BTreeSet<String> {
        ks.iter()
            .flat_map(|k| (k * 10 + 1..k * 10 + 6).map(|id| format!("{id:016x}")))
            .collect()
    };
    tokio::task::block_in_place(|| {
        // Read by the independent client until both topics hold 10 spans (or time is up).
        let mut acme = serde_json::Value::Null;
        let mut rest = serde_json::Value::Null;
        wait_until(Duration::from_secs(30), || {
            acme = python_read(&brokers, "acme", &collector.path("acme.json"));
            rest = python_read(&brokers, "otlp_spans", &collector.path("rest.json"));
            report_span_ids(&acme).len() >= 10 && report_span_ids(&rest).len() >= 15
        });
        assert_eq!(acme["undecodable"], 0);
        assert_eq!(report_span_ids(&acme), ids(&[0, 2]), "topic acme: {acme}");
        assert_eq!(
            report_span_ids(&rest),
            ids(&[1, 3, 4]),
            "topic otlp_spans: {rest}"
        );
    });
    let text = scrape_metrics(metrics).await;
    assert_eq!(
        metric_value(
            &text,
            "wasmcol_exporter_kafka_topic_not_allowed_batches_total{exporter=\"kafka\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        collector
            .log()
            .contains("a batch named a topic outside allowed_topics"),
        "{}",
        collector.log()
    );
    assert_eq!(collector.stop(), 0);
}
