//! Back-pressure and shutdown, end to end: when the exporter cannot deliver, the queues fill and
//! the OTLP receiver refuses with retryable statuses (gRPC `UNAVAILABLE` with `RetryInfo`, HTTP
//! 503 with `Retry-After`) while memory stays bounded; once the exporter can deliver again, every span
//! that was acknowledged arrives exactly once. SIGTERM drains what the batch processor holds.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;
use wasmcol_tests::{
    Collector, free_port, http_request, json_lines_span_ids, metric_value, output_span_ids,
    scrape_metrics, spans_request, wait_until,
};

const MIB: u64 = 1024 * 1024;

/// Reads a FIFO on a thread of its own. The thread opens the FIFO at once (so the writer's
/// `open` does not block) but reads nothing until [`FifoReader::start_reading`]: until then a
/// writer blocks as soon as the pipe buffer is full.
struct FifoReader {
    data: Arc<Mutex<Vec<u8>>>,
    go: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FifoReader {
    fn new(path: PathBuf) -> Self {
        let data = Arc::new(Mutex::new(Vec::new()));
        let (go, wait) = mpsc::channel::<()>();
        let sink = data.clone();
        let thread = std::thread::spawn(move || {
            // Blocks until the collector opens the FIFO for writing.
            let mut fifo = std::fs::File::open(&path).expect("open the FIFO for reading");
            if wait.recv().is_err() {
                return;
            }
            let mut chunk = vec![0u8; 1 << 16];
            loop {
                match fifo.read(&mut chunk) {
                    Ok(0) => return, // every writer closed it: the collector exited
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("read the FIFO: {e}"),
                }
            }
        });
        Self {
            data,
            go: Some(go),
            thread: Some(thread),
        }
    }

    fn start_reading(&mut self) {
        self.go.take().expect("started once").send(()).unwrap();
    }

    /// Span ids read so far.
    fn span_ids(&self) -> Vec<u64> {
        json_lines_span_ids(&self.data.lock().unwrap())
    }

    /// Waits for end of file (the writer closed); returns everything read.
    fn finish(mut self) -> Vec<u8> {
        self.thread.take().unwrap().join().expect("FIFO reader");
        std::mem::take(&mut *self.data.lock().unwrap())
    }
}

/// One request's worth of span ids: request `k` carries ids `k * 1000 ..`.
fn ids_of(k: u64, n: usize) -> impl Iterator<Item = u64> {
    (k * 1000..).take(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_exporter_pushes_back_and_loses_nothing() {
    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = fifo_dir.path().join("spans.fifo");
    let st = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo failed");
    let mut reader = FifoReader::new(fifo.clone());

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
processors:
  batch:
    send_batch_size: 1
    queue_size: 2
    timeout: 50ms
exporters:
  file:
    path: "{fifo}"
    queue_size: 1
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
"#,
        fifo = fifo.display()
    );
    let mut c = Collector::start(&config, http);
    let started = Instant::now();

    // ~1 MiB per request: 256 spans with 4 KiB of attribute each.
    const SPANS: usize = 256;
    const PAD: usize = 4096;
    let mut accepted: Vec<u64> = Vec::new();
    let (mut grpc_accepted, mut grpc_refused) = (0u64, 0u64);
    let (mut http_accepted, mut http_refused) = (0u64, 0u64);
    let mut sent_bytes = 0u64;
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect gRPC");
    let mut k = 0u64;
    while sent_bytes < 180 * MIB {
        k += 1;
        let req = spans_request(1, k * 1000, SPANS, PAD);
        sent_bytes += req.encoded_len() as u64;
        match client.export(req).await {
            Ok(_) => {
                accepted.extend(ids_of(k, SPANS));
                grpc_accepted += SPANS as u64;
            }
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "request {k}: {s:?}");
                let retry = s
                    .get_details_retry_info()
                    .unwrap_or_else(|| panic!("UNAVAILABLE without RetryInfo: {s:?}"));
                let delay = retry.retry_delay.expect("RetryInfo with a delay");
                assert!(
                    delay > Duration::ZERO && delay <= Duration::from_secs(60),
                    "{delay:?}"
                );
                grpc_refused += SPANS as u64;
            }
        }
    }
    assert!(grpc_refused > 0, "no gRPC request was refused");
    assert!(
        grpc_accepted > 0,
        "the queues should take a few requests before refusing"
    );

    let url = format!("http://127.0.0.1:{http}/v1/traces");
    while sent_bytes < 200 * MIB {
        k += 1;
        let body = spans_request(1, k * 1000, SPANS, PAD).encode_to_vec();
        sent_bytes += body.len() as u64;
        let r = http_request(
            "POST",
            &url,
            &[("content-type", "application/x-protobuf")],
            body,
        )
        .await
        .expect("HTTP request");
        match r.status {
            200 => {
                accepted.extend(ids_of(k, SPANS));
                http_accepted += SPANS as u64;
            }
            503 => {
                let retry_after: u64 = r
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("503 without a Retry-After in seconds: {r:?}"));
                assert!((1..=60).contains(&retry_after), "{retry_after}");
                let s = tonic_types::Status::decode(&r.body[..]).expect("google.rpc.Status");
                assert_eq!(s.code, Code::Unavailable as i32, "{s:?}");
                http_refused += SPANS as u64;
            }
            other => panic!("HTTP answered {other}: {r:?}"),
        }
    }
    assert!(http_refused > 0, "no HTTP request was refused");
    // A refused JSON request gets its error as JSON.
    let json = serde_json::to_vec(&spans_request(1, 1, 1, 0)).unwrap();
    let r = http_request("POST", &url, &[("content-type", "application/json")], json)
        .await
        .expect("HTTP request");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.headers.contains_key(http::header::RETRY_AFTER), "{r:?}");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON error body");
    assert_eq!(v["code"], Code::Unavailable as i32, "{v}");
    http_refused += 1;
    let sending_took = started.elapsed();

    // Memory stays bounded although ~200 MiB went in.
    let peak = c.peak_rss_bytes();
    assert!(
        peak < 150 * MIB,
        "peak RSS {} MiB after sending {} MiB",
        peak / MIB,
        sent_bytes / MIB
    );

    let text = scrape_metrics(metrics).await;
    let value = |series: &str| metric_value(&text, series).unwrap_or(0.0) as u64;
    let refused_grpc =
        value(r#"wasmcol_receiver_refused_spans_total{receiver="otlp",transport="grpc"}"#);
    let refused_http =
        value(r#"wasmcol_receiver_refused_spans_total{receiver="otlp",transport="http"}"#);
    assert!(refused_grpc > 0, "{text}");
    assert_eq!(
        (refused_grpc, refused_http),
        (grpc_refused, http_refused),
        "{text}"
    );
    assert_eq!(
        value(r#"wasmcol_receiver_accepted_spans_total{receiver="otlp",transport="grpc"}"#),
        grpc_accepted,
        "{text}"
    );
    assert_eq!(
        value(r#"wasmcol_receiver_accepted_spans_total{receiver="otlp",transport="http"}"#),
        http_accepted,
        "{text}"
    );

    // Unblock the exporter: everything acknowledged drains out.
    reader.start_reading();
    let mut seen = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = reader.span_ids();
            seen.len() >= accepted.len()
        }),
        "only {} of {} accepted spans arrived after unblocking\n{}",
        seen.len(),
        accepted.len(),
        c.log()
    );
    // And the collector accepts again.
    k += 1;
    let retry_deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.export(spans_request(1, k * 1000, SPANS, PAD)).await {
            Ok(_) => break,
            Err(s) if s.code() == Code::Unavailable && Instant::now() < retry_deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("still refusing after the exporter recovered: {s:?}"),
        }
    }
    accepted.extend(ids_of(k, SPANS));

    assert_eq!(c.stop(), 0, "exit code\n{}", c.log());
    let all = json_lines_span_ids(&reader.finish());
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "some spans were written twice");
    let expected: BTreeSet<u64> = accepted.iter().copied().collect();
    let missing: Vec<_> = expected.difference(&unique).take(10).collect();
    let extra: Vec<_> = unique.difference(&expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} spans accepted, {} written; missing e.g. {missing:?}, refused but written e.g. {extra:?}",
        expected.len(),
        unique.len()
    );
    eprintln!(
        "sent {} MiB in {sending_took:?}: {} spans accepted, {} refused; peak RSS {} MiB",
        sent_bytes / MIB,
        grpc_accepted + http_accepted,
        grpc_refused + http_refused,
        peak / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_spans_held_by_the_batch_processor() {
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
processors:
  batch:
    send_batch_size: 100000
    timeout: 30s
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
    );
    let mut c = Collector::start(&config, http);
    let mut expected = Vec::new();
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect gRPC");
    for k in 1..=10u64 {
        client
            .export(spans_request(2, k * 1000, 10, 100))
            .await
            .expect("export");
        expected.extend(ids_of(k, 10));
    }
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    for k in 11..=15u64 {
        let r = http_request(
            "POST",
            &url,
            &[("content-type", "application/x-protobuf")],
            spans_request(2, k * 1000, 10, 100).encode_to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        expected.extend(ids_of(k, 10));
    }
    // The batch holds everything: nothing is written before the 30 s timeout.
    std::thread::sleep(Duration::from_millis(500));
    let out = c.path("out.jsonl");
    assert!(output_span_ids(&out).is_empty(), "the batch was sent early");

    let t = Instant::now();
    assert_eq!(c.stop(), 0, "exit code\n{}", c.log());
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "shutdown waited {took:?}: the batch should be flushed at once, not on its timeout"
    );
    let mut written = output_span_ids(&out);
    written.sort();
    expected.sort();
    assert_eq!(written, expected, "every accepted span, once\n{}", c.log());
}
