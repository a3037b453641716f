//! Hostile input against the real collector: requests that are small on the wire but huge
//! once decoded are refused without the memory, and a few huge requests do not stall the
//! health check or lose a span.

use std::io::Write as _;
use std::time::{Duration, Instant};

use prost::Message as _;
use wasmcol_tests::{
    Collector, free_port, http_request, metric_value, output_span_ids, scrape_metrics,
    spans_request, wait_until,
};

const MIB: u64 = 1024 * 1024;

/// The issue's shape: otlp → memory_limiter → batch → file, default limits.
fn config(grpc: u16, http: u16, metrics: u16, health: u16) -> String {
    format!(
        r#"
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
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
    limit_mib: 4000
    spike_limit_mib: 800
  batch:
    timeout: 50ms
    # Up to eight 20 MiB requests arrive at once: room for all, so the tests measure
    # decoding, not the queue's bound (which would refuse some, retryably).
    queue_bytes: 256MiB
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

fn gzip_of(parts: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for p in parts {
        e.write_all(&p).unwrap();
    }
    e.finish().unwrap()
}

async fn post(
    http: u16,
    content_type: &str,
    gzip: bool,
    body: Vec<u8>,
) -> wasmcol_tests::HttpReply {
    let mut headers = vec![("content-type", content_type)];
    if gzip {
        headers.push(("content-encoding", "gzip"));
    }
    http_request(
        "POST",
        &format!("http://127.0.0.1:{http}/v1/traces"),
        &headers,
        body,
    )
    .await
    .expect("HTTP request")
}

fn rss_bytes(c: &Collector) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_span_floods_are_refused_without_the_memory() {
    let (grpc, http, metrics, health) = (free_port(), free_port(), free_port(), free_port());
    let c = Collector::start(&config(grpc, http, metrics, health), http);
    // Warm up: one real request, so first-use allocations are behind us.
    let r = post(
        http,
        "application/x-protobuf",
        false,
        spans_request(1, 1, 10, 64).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let before = c.peak_rss_bytes();

    // 6.5 million empty spans `{}` in JSON: ~19.5 MB, about 20 KB gzipped.
    const N: usize = 6_500_000;
    let mut chunks = vec![br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{}"#.to_vec()];
    chunks.extend((0..N / 100_000).map(|i| {
        let n = if i == 0 { 100_000 - 1 } else { 100_000 };
        ",{}".repeat(n).into_bytes()
    }));
    chunks.push(b"]}]}]}".to_vec());
    let json = gzip_of(chunks);
    assert!(json.len() < 40_000, "the gzip body is {} bytes", json.len());
    let r = post(http, "application/json", true, json).await;
    assert!(
        (400..500).contains(&r.status),
        "JSON flood answered {}: {r:?}",
        r.status
    );
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains("6500000 spans"), "{text}");

    // Ten million 2-byte empty spans in protobuf: 20 MB, about 20 KB gzipped.
    const M: usize = 10_000_000;
    let proto = gzip_of([wasmcol_tests::empty_spans_request(M)]);
    assert!(
        proto.len() < 40_000,
        "the gzip body is {} bytes",
        proto.len()
    );
    let r = post(http, "application/x-protobuf", true, proto).await;
    assert_eq!(r.status, 413, "protobuf flood: {r:?}");

    let grew = c.peak_rss_bytes().saturating_sub(before);
    assert!(
        grew < 64 * MIB,
        "peak RSS grew by {} MiB\n{}",
        grew / MIB,
        c.log()
    );

    // Alive, and serving: a valid request goes through, and the refusals were counted.
    let r = post(
        http,
        "application/x-protobuf",
        false,
        spans_request(2, 100, 5, 0).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let out = c.path("out.jsonl");
    assert!(
        wait_until(Duration::from_secs(10), || output_span_ids(&out).len()
            == 15),
        "{:?}",
        output_span_ids(&out)
    );
    let text = scrape_metrics(metrics).await;
    assert_eq!(
        metric_value(
            &text,
            r#"wasmcol_receiver_over_budget_requests_total{receiver="otlp",transport="http"}"#
        ),
        Some(1.0),
        "{text}"
    );
    eprintln!("peak RSS grew by {} KiB", grew / 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ids_are_dropped_and_reported_as_partial_success() {
    let (grpc, http, metrics, health) = (free_port(), free_port(), free_port(), free_port());
    let c = Collector::start(&config(grpc, http, metrics, health), http);
    let mut request = spans_request(3, 1, 4, 0);
    let spans = &mut request.resource_spans[0].scope_spans[0].spans;
    spans[1].trace_id = vec![0; 16];
    spans[2].span_id.clear();
    let r = post(
        http,
        "application/x-protobuf",
        false,
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let answer =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            &r.body[..],
        )
        .expect("an ExportTraceServiceResponse");
    let partial = answer.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("2 spans dropped"),
        "{partial:?}"
    );

    // Over gRPC too.
    let mut client = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
        format!("http://127.0.0.1:{grpc}"),
    )
    .await
    .expect("connect");
    let mut request = spans_request(4, 10, 3, 0);
    request.resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
    let answer = client.export(request).await.expect("export").into_inner();
    assert_eq!(answer.partial_success.map(|p| p.rejected_spans), Some(1));

    let out = c.path("out.jsonl");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let mut ids = output_span_ids(&out);
            ids.sort();
            ids == [1, 4, 11, 12]
        }),
        "{:?}",
        output_span_ids(&out)
    );
    let text = scrape_metrics(metrics).await;
    for (transport, n) in [("http", 2.0), ("grpc", 1.0)] {
        assert_eq!(
            metric_value(
                &text,
                &format!(
                    r#"wasmcol_receiver_invalid_spans_total{{receiver="otlp",transport="{transport}"}}"#
                )
            ),
            Some(n),
            "{text}"
        );
    }
}

/// The `percent`th percentile of `samples` (sorted in place).
fn percentile(samples: &mut [Duration], percent: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * percent / 100).min(samples.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn huge_json_requests_do_not_stall_the_health_check() {
    let (grpc, http, metrics, health) = (free_port(), free_port(), free_port(), free_port());
    let c = Collector::start(&config(grpc, http, metrics, health), http);

    // Eight JSON requests of real spans, each just under the 20 MiB default limit.
    const PER: usize = 17_500;
    let bodies: Vec<Vec<u8>> = (0..8u64)
        .map(|k| {
            let request = spans_request(k as u8 + 1, 1 + k * PER as u64, PER, 900);
            let mut json = Vec::new();
            wasmcol::otlp::json::encode_traces(&request.resource_spans, &mut json);
            json
        })
        .collect();
    for b in &bodies {
        assert!(
            b.len() as u64 > 16 * MIB && (b.len() as u64) < 20 * MIB,
            "{}",
            b.len()
        );
    }

    let health_url = format!("http://127.0.0.1:{health}/");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let start = Instant::now();
                let r = http_request("GET", &health_url, &[], Vec::new()).await;
                latencies.push((start, start.elapsed()));
                assert_eq!(r.map(|r| r.status).ok(), Some(200));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            latencies
        })
    };
    let started = Instant::now();
    let sends: Vec<_> = bodies
        .into_iter()
        .map(|body| tokio::spawn(async move { post(http, "application/json", false, body).await }))
        .collect();
    for s in sends {
        let r = s.await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
    }
    let sent = Instant::now();
    let sending = sent - started;
    // Keep polling while the exporter writes them out.
    let out = c.path("out.jsonl");
    let all = wait_until(Duration::from_secs(120), || {
        output_span_ids(&out).len() >= 8 * PER
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let all_latencies = poller.await.unwrap();
    // The checks made while the requests were being received and decoded.
    let mut latencies: Vec<Duration> = all_latencies
        .iter()
        .filter(|(at, _)| *at >= started && *at < sent)
        .map(|(_, took)| *took)
        .collect();
    assert!(
        all,
        "{} of {} spans written\n{}",
        output_span_ids(&out).len(),
        8 * PER,
        c.log()
    );
    let mut ids = output_span_ids(&out);
    ids.sort();
    ids.dedup();
    assert_eq!(ids, (1..=8 * PER as u64).collect::<Vec<_>>());
    let p50 = percentile(&mut latencies, 50);
    let p90 = percentile(&mut latencies, 90);
    eprintln!(
        "{} health checks while sending ({sending:?}); p50 {p50:?}, p90 {p90:?}, max {:?}",
        latencies.len(),
        latencies.last().unwrap()
    );
    assert!(
        latencies.len() >= 20,
        "only {} health checks",
        latencies.len()
    );
    // A decode holding a runtime worker would keep both of them busy for most of the sending
    // (each request takes a few hundred milliseconds to decode), so most checks would wait
    // behind one. A few slow checks on a shared, loaded machine say nothing about that.
    assert!(p50 < Duration::from_millis(50), "health check p50 {p50:?}");
    assert!(p90 < Duration::from_millis(100), "health check p90 {p90:?}");
    assert!(rss_bytes(&c) > 0);
}
