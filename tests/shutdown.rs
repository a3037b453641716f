//! Shutdown and signals, with real processes over loopback: SIGTERM drains within
//! `service.shutdown_timeout` even while clients hold half-sent requests and idle HTTP/2
//! connections, and every acknowledged span reaches the exporter; SIGHUP reloads (here an unchanged
//! config: nothing restarts, nothing is lost, the process keeps running);
//! a second SIGTERM during the drain exits at once.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use wasmcol_tests::{
    Collector, free_port, http_request, output_span_ids, spans_request, wait_until,
};

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// otlp (gRPC + HTTP) → batch that would hold spans for 10 s → file.
fn config(grpc: u16, http: u16) -> String {
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
    timeout: 10s
    send_batch_size: 100000
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  shutdown_timeout: {timeout}s
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
  telemetry:
    metrics:
      address: none
"#,
        timeout = SHUTDOWN_TIMEOUT.as_secs()
    )
}

/// A request body that sends what it is given through a channel and never ends on its own.
struct HeldBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// Opens an HTTP/2 connection to the gRPC port and starts an `Export` call whose message is
/// only half sent. Returns what keeps the stream open and the call's outcome: `Ok(grpc-status)`
/// if the server answered, `Err` if the stream or connection was cut.
async fn half_sent_grpc_call(
    grpc: u16,
) -> (
    tokio::sync::mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<Result<String, String>>,
) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", grpc))
        .await
        .expect("connect to the gRPC port");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let message = spans_request(9, 900_000, 10, 0).encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message[..message.len() / 2]);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(Bytes::from(framed)).await.unwrap();
    let req = http::Request::post(format!(
        "http://127.0.0.1:{grpc}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(HeldBody(rx))
    .unwrap();
    let call = tokio::spawn(async move {
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let status = headers
            .get("grpc-status")
            .or_else(|| body.trailers().and_then(|t| t.get("grpc-status")))
            .map(|v| v.to_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| "none".into());
        Ok(status)
    });
    (tx, call)
}

/// The HTTP/2 client preface and an empty SETTINGS frame, then nothing: an idle connection
/// whose client never reads, so never answers the server's GOAWAY or pings.
fn idle_raw_h2(grpc: u16) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", grpc)).expect("connect to the gRPC port");
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_acknowledged_span_despite_stalled_clients() {
    let (grpc, http) = (free_port(), free_port());
    let mut c = Collector::start(&config(grpc, http), grpc);
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            http
        ))
        .is_ok()),
        "the HTTP port never opened"
    );

    // An HTTP request whose headers promise a body that never fully arrives.
    let message = spans_request(8, 800_000, 10, 0).encode_to_vec();
    let mut half_http = TcpStream::connect(("127.0.0.1", http)).unwrap();
    write!(
        half_http,
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        message.len()
    )
    .unwrap();
    half_http.write_all(&message[..message.len() / 2]).unwrap();
    // An HTTP/2 connection that never answers, and a gRPC call stuck halfway through its message.
    let _idle_h2 = idle_raw_h2(grpc);
    let (_hold_stream, half_grpc) = half_sent_grpc_call(grpc).await;

    // 1,100 spans, every one acknowledged: 600 over gRPC (a client kept open and idle
    // afterwards), 500 over HTTP.
    let mut acknowledged = BTreeSet::new();
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect");
    for k in 1..7u64 {
        client
            .export(spans_request(1, k * 1000, 100, 64))
            .await
            .expect("gRPC export acknowledged");
        acknowledged.extend(k * 1000..k * 1000 + 100);
    }
    for k in 7..12u64 {
        let r = http_request(
            "POST",
            &format!("http://127.0.0.1:{http}/v1/traces"),
            &[("content-type", "application/x-protobuf")],
            spans_request(1, k * 1000, 100, 64).encode_to_vec(),
        )
        .await
        .expect("HTTP export");
        assert_eq!(r.status, 200, "HTTP export not acknowledged: {r:?}");
        acknowledged.extend(k * 1000..k * 1000 + 100);
    }
    assert_eq!(acknowledged.len(), 1100);
    // The batch processor holds them (its timeout is 10 s).
    assert!(output_span_ids(&c.path("out.jsonl")).is_empty());

    let sent = Instant::now();
    c.signal("TERM");
    let code = c.wait_exit(SHUTDOWN_TIMEOUT + Duration::from_secs(10));
    let took = sent.elapsed();
    assert_eq!(code, Some(0), "exit status after SIGTERM\n{}", c.log());
    assert!(
        took < SHUTDOWN_TIMEOUT + Duration::from_millis(1500),
        "exit took {took:?}, more than shutdown_timeout ({SHUTDOWN_TIMEOUT:?}) and a margin\n{}",
        c.log()
    );

    let delivered: BTreeSet<u64> = output_span_ids(&c.path("out.jsonl")).into_iter().collect();
    let missing: Vec<_> = acknowledged.difference(&delivered).collect();
    assert!(
        missing.is_empty(),
        "{} of 1100 acknowledged spans missing from the output\n{}",
        missing.len(),
        c.log()
    );
    // The stalled clients were cut, not waited for, and never told their data was taken.
    assert!(
        c.log()
            .contains("closing connections still open after the grace period"),
        "{}",
        c.log()
    );
    let mut answer = Vec::new();
    let _ = half_http.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "the half-sent HTTP request was acknowledged: {}",
        String::from_utf8_lossy(&answer)
    );
    let outcome = tokio::time::timeout(Duration::from_secs(5), half_grpc)
        .await
        .expect("the half-sent gRPC call ended with the process")
        .unwrap();
    assert!(
        !matches!(outcome.as_deref(), Ok("0")),
        "the half-sent gRPC call was acknowledged"
    );
    assert!(
        delivered.iter().all(|id| *id < 800_000),
        "spans from the half-sent requests reached the output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_without_stopping_or_losing_spans() {
    let (grpc, http) = (free_port(), free_port());
    let mut c = Collector::start(&config(grpc, http), grpc);
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect");
    client
        .export(spans_request(1, 1, 10, 0))
        .await
        .expect("export before SIGHUP");

    // The config is unchanged: the reload keeps every part as it runs.
    c.signal("HUP");
    assert!(
        c.wait_for_log_line(&["config reloaded"], Duration::from_secs(10)),
        "no reload after SIGHUP\n{}",
        c.log()
    );
    assert!(
        c.log().contains("restarted=[] added=[] removed=[]"),
        "an unchanged config restarted something\n{}",
        c.log()
    );
    c.signal("HUP");
    assert_eq!(
        c.wait_exit(Duration::from_millis(500)),
        None,
        "SIGHUP stopped the process\n{}",
        c.log()
    );
    // Still serving: a new connection and a new request are answered.
    let mut fresh = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect after SIGHUP");
    fresh
        .export(spans_request(1, 1000, 10, 0))
        .await
        .expect("export after SIGHUP");

    assert_eq!(c.stop(), 0, "exit status\n{}", c.log());
    let delivered: BTreeSet<u64> = output_span_ids(&c.path("out.jsonl")).into_iter().collect();
    let expected: BTreeSet<u64> = (1..11).chain(1000..1010).collect();
    assert_eq!(delivered, expected, "{}", c.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_during_the_drain_exits_at_once() {
    // A back end that takes TCP connections (the kernel's backlog) but never speaks HTTP/2:
    // every export attempt waits out its 30 s timeout, so the drain cannot finish quickly.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = black_hole.local_addr().unwrap().port();
    let (grpc, health) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  otlp:
    endpoint: 127.0.0.1:{backend}
    tls:
      insecure: true
    timeout: 30s
    retry_on_failure:
      initial_interval: 10s
      max_elapsed_time: 0s
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  shutdown_timeout: 30s
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
  telemetry:
    metrics:
      address: none
"#
    );
    let mut c = Collector::start(&config, grpc);
    let health_url = format!("http://127.0.0.1:{health}/");
    let ready = http_request("GET", &health_url, &[], Vec::new()).await;
    assert_eq!(ready.map(|r| r.status), Ok(200), "health before the drain");
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect");
    client
        .export(spans_request(1, 1, 10, 0))
        .await
        .expect("export acknowledged (queued)");

    c.signal("TERM");
    assert!(
        c.wait_for_log_line(&["shutting down: draining"], Duration::from_secs(10)),
        "{}",
        c.log()
    );
    // Not ready during the drain, and still answering so.
    let draining = http_request("GET", &health_url, &[], Vec::new())
        .await
        .expect("the health check answers during the drain");
    assert_eq!(
        draining.status, 503,
        "health during the drain: {draining:?}"
    );
    assert!(
        String::from_utf8_lossy(&draining.body).contains("stopping"),
        "{draining:?}"
    );
    // SIGHUP during the drain reloads nothing: it is logged and ignored.
    c.signal("HUP");
    assert!(
        c.wait_for_log_line(
            &["SIGHUP while shutting down: ignored"],
            Duration::from_secs(5)
        ),
        "{}",
        c.log()
    );
    assert_eq!(
        c.wait_exit(Duration::from_secs(2)),
        None,
        "the drain should still be waiting for the back end\n{}",
        c.log()
    );

    let sent = Instant::now();
    c.signal("TERM");
    let code = c.wait_exit(Duration::from_secs(10));
    let took = sent.elapsed();
    assert_eq!(
        code,
        Some(128 + 15),
        "exit status after the second SIGTERM\n{}",
        c.log()
    );
    assert!(
        took < Duration::from_secs(2),
        "the second SIGTERM took {took:?} to stop the process\n{}",
        c.log()
    );
    assert!(
        c.log().contains("second stop signal during the drain"),
        "{}",
        c.log()
    );
    drop(black_hole);
}
