//! Support for wasmcol's integration tests: start the real `wasmcol` binary on a config with
//! free ports, run the Python OpenTelemetry SDK as a sender, and read what the file exporter
//! wrote.
//!
//! Tests run against the binaries in the workspace's target directory; `tests/run.sh` (the
//! README's test command) builds them and installs the Python packages first.

pub mod sdk;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};

pub mod kafka;
pub mod tls;
pub mod wat_plugin;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Path of a binary built from this workspace (`wasmcol`, `wasmcol-loadgen`).
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} is not built under {}: run the tests with tests/run.sh (it builds the binaries first)",
        target.display()
    );
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests). The kernel may
/// hand a released port out again at once, so a port this process already got is never
/// returned twice (two calls for one config must not collide).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind an ephemeral port")
            .local_addr()
            .expect("local addr")
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Runs `wasmcol-loadgen --json --quiet` with `args` to completion and returns its JSON
/// summary (`spans_accepted`, `spans_refused`, ...); panics, with its stderr, if it fails.
pub fn run_loadgen(args: &[&str]) -> serde_json::Value {
    let out = Command::new(binary("wasmcol-loadgen"))
        .args(["--json", "--quiet"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run wasmcol-loadgen");
    assert!(
        out.status.success(),
        "wasmcol-loadgen failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "wasmcol-loadgen printed no JSON summary ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A port for a back end that is down for now: bound, not listening, so connecting to it is
/// refused, and no other test's process can take it meanwhile (a port from [`free_port`] can
/// be taken by any process until someone listens on it). [`DownPort::release`] frees it just
/// before the back end starts.
pub struct DownPort {
    socket: socket2::Socket,
    /// The port.
    pub port: u16,
}

impl DownPort {
    /// Binds a free port on 127.0.0.1 without listening.
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a TCP socket");
        socket
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind 127.0.0.1:0");
        let port = socket
            .local_addr()
            .expect("local addr")
            .as_socket()
            .expect("an IP address")
            .port();
        Self { socket, port }
    }

    /// Frees the port for the process about to listen on it.
    pub fn release(self) -> u16 {
        drop(self.socket);
        self.port
    }
}

impl Default for DownPort {
    fn default() -> Self {
        Self::new()
    }
}

/// The Python interpreter with the OpenTelemetry SDK installed (`WASMCOL_PYTHON`, or the
/// `.venv` that tests/run.sh creates).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("WASMCOL_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run the tests with tests/run.sh, which creates it",
        venv.display()
    );
    venv
}

/// A running `wasmcol` process; killed on drop. Its stderr is collected for assertions.
pub struct Collector {
    child: Child,
    log: Arc<Mutex<String>>,
    /// The directory holding its config and output.
    pub dir: tempfile::TempDir,
}

impl Collector {
    /// Writes `config` to a temporary directory (the string `{dir}` is replaced by that
    /// directory) and starts `wasmcol` on it, waiting until `ready_port` accepts connections.
    pub fn start(config: &str, ready_port: u16) -> Self {
        Self::start_with_env(config, ready_port, &[])
    }

    /// [`Collector::start`] with extra environment variables for the collector process.
    pub fn start_with_env(config: &str, ready_port: u16, env: &[(&str, &str)]) -> Self {
        Self::start_wrapped(config, ready_port, env, &[])
    }

    /// [`Collector::start_with_env`] through a wrapper command: `wrapper` followed by the
    /// `wasmcol` command line (e.g. `["prlimit", "--fsize=100000"]`), which must `exec` it so
    /// [`Collector::pid`] stays the collector's.
    pub fn start_wrapped(
        config: &str,
        ready_port: u16,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = config.replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, text).expect("write config");
        let mut command = match wrapper.split_first() {
            None => Command::new(binary("wasmcol")),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary("wasmcol"));
                c
            }
        };
        let mut child = command
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wasmcol");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut c = Self { child, log, dir };
        c.wait_for_port(ready_port);
        c
    }

    fn wait_for_port(&mut self, port: u16) {
        // Generous: a plugin not yet in the compiled-code cache is compiled at start, which
        // takes a debug build tens of seconds when several tests start it at once.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "wasmcol exited with {status} before listening:\n{}",
                    self.log()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "wasmcol did not listen on {port} within 60s:\n{}",
            self.log()
        );
    }

    /// Everything the process wrote to stderr so far (logs, with ANSI colours stripped).
    pub fn log(&self) -> String {
        strip_ansi(&self.log.lock().unwrap())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        wasmcol::telemetry::process::read_sample(&self.pid().to_string())
            .map(|s| s.rss_bytes)
            .unwrap_or(0)
    }

    /// Sends SIGTERM and waits (up to 30 s) for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "wasmcol did not stop within 30s after SIGTERM:\n{}",
            self.log()
        );
    }

    /// Sends `signal` (a name `kill` knows: `TERM`, `INT`, `HUP`) without waiting.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    /// Waits up to `timeout` for the process to exit; its exit code (`-1` if a signal killed
    /// it), or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A path inside the collector's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads a file exporter's JSON-lines output: every span with its resource. A torn last line
/// (a process killed mid-write, or a line still being written) is skipped.
pub fn read_json_lines(path: &Path) -> Vec<ResourceSpans> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    complete_json_lines(&bytes)
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .flat_map(|l| {
            wasmcol::otlp::json::decode_traces(l)
                .unwrap_or_else(|e| {
                    panic!(
                        "output line is not OTLP/JSON ({e}): {}",
                        String::from_utf8_lossy(l)
                    )
                })
                .resource_spans
        })
        .collect()
}

/// The lines of `bytes` up to the end of its last complete OTLP/JSON line, as the file
/// exporter's own tail detection finds it.
fn complete_json_lines(bytes: &[u8]) -> &[u8] {
    use wasmcol::exporters::file::{Compression, Format, complete_len};
    &bytes[..complete_len(bytes, Format::Json, Compression::None)]
}

/// All spans in `rs`, flattened.
pub fn all_spans(rs: &[ResourceSpans]) -> Vec<&Span> {
    rs.iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect()
}

/// Polls `f` until it returns true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal pipeline config: OTLP gRPC + HTTP on the given ports → (processors) → file
/// `{dir}/out.jsonl`, metrics on `metrics_port`.
pub fn file_pipeline_config(
    grpc: u16,
    http: u16,
    metrics: u16,
    processors: &str,
    extra: &str,
) -> String {
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
{extra}
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [{processors}]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

// ---------------------------------------------------------------------------------------------
// Raw protocol helpers for the error-path and back-pressure tests.

impl Collector {
    /// Peak resident memory of the process so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or(0)
    }

    /// Waits up to `timeout` for one log line that contains every string in `parts`.
    pub fn wait_for_log_line(&self, parts: &[&str], timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.log()
                .lines()
                .any(|l| parts.iter().all(|p| l.contains(p)))
        })
    }
}

/// An HTTP response read in full.
#[derive(Debug)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Response body.
    pub body: Vec<u8>,
}

/// Sends one HTTP/1.1 request on a fresh connection with exactly `headers` and `body`
/// (hyper's legacy client; only `Host` and, for a body, `Content-Length` are added).
pub async fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<HttpReply, String> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder()
        .method(http::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?)
        .uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}

/// The Prometheus text served at `http://127.0.0.1:{port}/metrics`.
pub async fn scrape_metrics(port: u16) -> String {
    let r = http_request(
        "GET",
        &format!("http://127.0.0.1:{port}/metrics"),
        &[],
        Vec::new(),
    )
    .await
    .expect("scrape /metrics");
    assert_eq!(r.status, 200, "/metrics answered {}", r.status);
    String::from_utf8(r.body).expect("metrics are UTF-8")
}

/// The value of `series` (a metric name with its labels, exactly as the text format prints
/// them, e.g. `x_total{a="b"}`) in Prometheus text, if present.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            // A series without labels may be printed as `name{}`.
            let rest = if series.contains('{') {
                rest
            } else {
                rest.strip_prefix("{}").unwrap_or(rest)
            };
            rest.strip_prefix(' ')
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A trace request with `n` spans under trace id `[trace; 16]` whose span ids are the
/// big-endian numbers `first..first + n`; each span carries a `pad`-byte string attribute.
pub fn spans_request(
    trace: u8,
    first: u64,
    n: usize,
    pad: usize,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::ScopeSpans;

    let string = |k: &str, v: String| KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    };
    let spans = (first..first + n as u64)
        .map(|id| Span {
            trace_id: vec![trace; 16],
            span_id: id.to_be_bytes().to_vec(),
            name: format!("span-{id}"),
            kind: 1,
            start_time_unix_nano: 1_700_000_000_000_000_000 + id,
            end_time_unix_nano: 1_700_000_000_000_000_000 + id + 1000,
            attributes: if pad > 0 {
                vec![string("pad", "x".repeat(pad))]
            } else {
                Vec::new()
            },
            ..Default::default()
        })
        .collect();
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string("service.name", "wasmcol-tests".into())],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "wasmcol-tests".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The protobuf of a trace request holding `n` empty spans (2 bytes each on the wire, about
/// 250 once decoded, and invalid: no ids), built without building the spans.
pub fn empty_spans_request(n: usize) -> Vec<u8> {
    let spans = [0x12u8, 0x00].repeat(n);
    // ScopeSpans { spans } inside ResourceSpans { scope_spans } inside the request.
    let mut scope = vec![0x12];
    prost::encoding::encode_varint(spans.len() as u64, &mut scope);
    let mut request = vec![0x0a];
    prost::encoding::encode_varint((scope.len() + spans.len()) as u64, &mut request);
    request.extend_from_slice(&scope);
    request.extend_from_slice(&spans);
    request
}

/// The span ids in `rs` read as big-endian numbers (see [`spans_request`]).
pub fn span_ids(rs: &[ResourceSpans]) -> Vec<u64> {
    all_spans(rs)
        .iter()
        .map(|s| {
            u64::from_be_bytes(
                s.span_id
                    .as_slice()
                    .try_into()
                    .unwrap_or_else(|_| panic!("span id {:?} is not 8 bytes", s.span_id)),
            )
        })
        .collect()
}

/// Span ids (see [`span_ids`]) in a file exporter's JSON-lines output so far: a missing file
/// reads as empty and a last line still being written is skipped, so this can be polled.
pub fn output_span_ids(path: &Path) -> Vec<u64> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    json_lines_span_ids(&bytes)
}

/// Span ids in OTLP/JSON lines; a torn last line (unterminated, or one that does not decode)
/// is ignored.
pub fn json_lines_span_ids(bytes: &[u8]) -> Vec<u64> {
    let mut ids = Vec::new();
    for line in complete_json_lines(bytes).split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let req = wasmcol::otlp::json::decode_traces(line).unwrap_or_else(|e| {
            panic!(
                "output line is not OTLP/JSON ({e}): {}",
                String::from_utf8_lossy(&line[..line.len().min(200)])
            )
        });
        ids.extend(span_ids(&req.resource_spans));
    }
    ids
}

/// Span ids in a file exporter's `format: proto` (or compressed) output; a torn last record
/// is ignored, any other unreadable record panics.
pub fn length_prefixed_span_ids(
    bytes: &[u8],
    format: wasmcol::exporters::file::Format,
    compression: wasmcol::exporters::file::Compression,
) -> Vec<u64> {
    wasmcol::exporters::file::read_length_prefixed(bytes, format, compression)
        .unwrap_or_else(|e| panic!("output is not {format:?}/{compression:?} records: {e}"))
        .iter()
        .flat_map(|r| span_ids(&r.resource_spans))
        .collect()
}
