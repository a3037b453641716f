//! Connection bounds: clients that open connections and stall cost the collector a bounded
//! time and memory, and never keep a real client from being served.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use wasmcol_tests::{
    Collector, all_spans, free_port, metric_value, python, read_json_lines, scrape_metrics,
    wait_until, workspace_root,
};

const MIB: u64 = 1024 * 1024;
/// Half-open connections held at once (half stop inside their headers, half inside their body).
const HALF_OPEN: usize = 2_000;
const READ_HEADER_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Slack for a loaded 2-core machine between a deadline and the socket's close being seen.
const SLACK: Duration = Duration::from_secs(5);

fn config(grpc: u16, http: u16, metrics: u16) -> String {
    config_with_idle(grpc, http, metrics, "1s")
}

fn config_with_idle(grpc: u16, http: u16, metrics: u16, idle: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        keepalive:
          server_parameters:
            max_connection_idle: {idle}
      http:
        endpoint: 127.0.0.1:{http}
        read_header_timeout: {header}s
        read_timeout: {read}s
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
"#,
        header = READ_HEADER_TIMEOUT.as_secs(),
        read = READ_TIMEOUT.as_secs(),
    )
}

/// The test process holds thousands of sockets: its soft open-files limit goes to the hard one.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    let now = getrlimit(Resource::Nofile).current;
    assert!(
        now.is_none_or(|n| n > HALF_OPEN as u64 + 200),
        "open-files limit {now:?} is too low for {HALF_OPEN} sockets"
    );
}

/// What a stalled socket has seen so far.
#[derive(Debug, PartialEq)]
enum Seen {
    /// Nothing: the collector still holds the connection open.
    Open,
    /// EOF or a reset: the collector closed it.
    Closed,
    /// The collector answered (it should not, to half a request).
    Data(String),
}

fn peek(socket: &mut TcpStream) -> Seen {
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let mut buf = [0u8; 512];
    match socket.read(&mut buf) {
        Ok(0) => Seen::Closed,
        Ok(n) => Seen::Data(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Seen::Open,
        Err(_) => Seen::Closed,
    }
}

fn scrape(metrics: u16) -> String {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(scrape_metrics(metrics))
}

#[test]
fn half_open_http_connections_are_closed_and_a_real_client_is_served() {
    raise_open_files_limit();
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let mut collector = Collector::start(&config(grpc, http, metrics), grpc);

    // Half the sockets stop inside their headers, half inside a body they promised 1000
    // bytes of.
    let opened = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..HALF_OPEN)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", http))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            let in_body = i % 2 == 1;
            let partial = if in_body {
                "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 1000\r\n\r\n0123456789"
            } else {
                "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-ty"
            };
            s.write_all(partial.as_bytes()).unwrap();
            s
        })
        .collect();
    // The listener queues them all (its backlog is the kernel's `somaxconn`), so this is quick
    // unless the machine is overloaded; then the early check below is skipped and the deadline
    // for the closes moves by as much.
    let all_open = opened.elapsed();

    // A real SDK client is served while they are held.
    let expected_path = collector.path("expected.json");
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_traces.py"))
        .args(["--protocol", "http", "--endpoint"])
        .arg(format!("127.0.0.1:{http}"))
        .args(["--traces", "20", "--expected"])
        .arg(&expected_path)
        .status()
        .expect("run python");
    assert!(
        status.success(),
        "the SDK client failed:\n{}",
        collector.log()
    );
    let sdk_done = opened.elapsed();
    let expected: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
    assert_eq!(expected.len(), 60);
    let out = collector.path("out.jsonl");
    let arrived = wait_until(Duration::from_secs(10), || {
        out.exists() && all_spans(&read_json_lines(&out)).len() >= expected.len()
    });
    assert!(arrived, "spans did not arrive:\n{}", collector.log());

    // Before the header timeout, every stalled connection is still open (and counted).
    if opened.elapsed() + Duration::from_secs(1) < READ_HEADER_TIMEOUT {
        let text = scrape(metrics);
        let open = metric_value(
            &text,
            r#"wasmcol_receiver_open_connections{receiver="otlp",transport="http"}"#,
        )
        .unwrap_or(0.0);
        assert!(open >= HALF_OPEN as f64, "open connections: {open}");
        for s in stalled.iter_mut().step_by(50) {
            assert_eq!(peek(s), Seen::Open, "closed before its timeout");
        }
    } else {
        eprintln!("opening took {all_open:?} and the SDK {sdk_done:?}: the early check is skipped");
    }

    // After the timeouts, every one is closed without an answer.
    let deadline = opened + READ_TIMEOUT + all_open + SLACK;
    let mut open_left = stalled.len();
    while open_left > 0 && Instant::now() < deadline {
        open_left = 0;
        for s in stalled.iter_mut() {
            match peek(s) {
                Seen::Open => open_left += 1,
                Seen::Closed => {}
                Seen::Data(d) => panic!("a half request was answered: {d}"),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        open_left,
        0,
        "{open_left} connections still open {:?} after opening",
        opened.elapsed()
    );
    let text = scrape(metrics);
    let open = metric_value(
        &text,
        r#"wasmcol_receiver_open_connections{receiver="otlp",transport="http"}"#,
    )
    .unwrap_or(-1.0);
    assert!(open <= 1.0, "open connections after the timeouts: {open}");

    let peak = collector.peak_rss_bytes();
    eprintln!("peak RSS {} MiB", peak / MIB);
    assert!(peak < 256 * MIB, "peak RSS {} MiB", peak / MIB);
    assert_eq!(collector.stop(), 0, "clean exit:\n{}", collector.log());
    assert_eq!(
        all_spans(&read_json_lines(&out)).len(),
        expected.len(),
        "every span, once"
    );
}

/// The header timeout alone: a connection stalled in its headers is closed at
/// `read_header_timeout`, well before `read_timeout`.
#[test]
fn a_connection_stalled_in_its_headers_goes_at_the_header_timeout() {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let collector = Collector::start(&config(grpc, http, metrics), grpc);
    let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
    let opened = Instant::now();
    s.write_all(b"POST /v1/traces HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT + SLACK)).unwrap();
    let mut buf = [0u8; 256];
    let r = s.read(&mut buf);
    let took = opened.elapsed();
    assert!(
        match &r {
            Ok(n) => *n == 0,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        },
        "{r:?} after {took:?}"
    );
    assert!(
        took >= READ_HEADER_TIMEOUT - Duration::from_millis(100) && took < READ_TIMEOUT,
        "closed after {took:?}:\n{}",
        collector.log()
    );
}

/// gRPC `max_connection_idle`: an HTTP/2 connection with no RPC gets a GOAWAY and is closed.
#[test]
fn an_idle_grpc_connection_gets_a_goaway_and_is_closed() {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let collector = Collector::start(&config(grpc, http, metrics), grpc);
    let mut s = TcpStream::connect(("127.0.0.1", grpc)).unwrap();
    let opened = Instant::now();
    // The client preface and an empty SETTINGS frame; then nothing.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    let (frames, _) = frames_until_closed(&mut s, Duration::from_secs(15));
    let took = opened.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "closed after {took:?}:\n{}",
        collector.log()
    );
    // One of the server's frames is a GOAWAY (type 7).
    assert!(frames.contains(&7), "frame types {frames:?}");
}

/// Reads what the server sends until it closes (or `within` passes); returns the frame types.
fn frames_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let opened = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    let took = opened.elapsed();
    assert!(
        r.is_ok() || r.as_ref().unwrap_err().kind() == ErrorKind::ConnectionReset,
        "not closed: {r:?} after {took:?}"
    );
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
        frames.push(got[at + 3]);
        at += 9 + len;
    }
    (frames, took)
}

/// gRPC `keepalive.enforcement_policy`: a client that pings with no RPC in progress, again
/// and again, gets a GOAWAY and its connection closed (the default policy, as grpc-go's).
#[test]
fn a_client_flooding_pings_gets_a_goaway() {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let collector = Collector::start(&config_with_idle(grpc, http, metrics, "0s"), grpc);
    let mut s = TcpStream::connect(("127.0.0.1", grpc)).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    for i in 0..4u8 {
        s.write_all(&[0, 0, 8, 6, 0, 0, 0, 0, 0, i, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
    }
    let (frames, took) = frames_until_closed(&mut s, Duration::from_secs(15));
    assert!(frames.contains(&7), "frame types {frames:?}");
    assert!(
        took < Duration::from_secs(5),
        "closed after {took:?}:\n{}",
        collector.log()
    );

    // Two pings are not a flood: that connection stays open.
    let mut calm = TcpStream::connect(("127.0.0.1", grpc)).unwrap();
    calm.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    calm.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    for i in 0..2u8 {
        calm.write_all(&[0, 0, 8, 6, 0, 0, 0, 0, 0, i, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
    }
    calm.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = Vec::new();
    let r = calm.read_to_end(&mut got);
    assert!(
        matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "closed: {r:?}"
    );
}
