//! `memory_limiter` in a memory-limited cgroup, end to end: the real `wasmcol` runs in a cgroup
//! of its own (created here under the test's cgroup, v1 or v2; in v2 beside it where the test's
//! cgroup cannot delegate `memory` because processes sit in it) with `limit_percentage` taken
//! from that cgroup's limit, in front of an exporter whose receiver reads slowly. A burst at 3x
//! the normal load builds up the exporter's queue; the limiter must refuse (HTTP 503, retried by
//! the load generator) before the kernel's OOM killer acts, the process must survive and keep
//! answering, and every span the load generator sent must reach the sink.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use wasmcol_tests::{Collector, binary, free_port, metric_value, scrape_metrics, wait_until};

const MIB: u64 = 1024 * 1024;
/// The cgroup's memory limit; the limiter's hard limit is 80% of it, its soft limit 60%.
/// (Without the limiter, the burst below gets the collector OOM-killed at this limit.)
const CGROUP_LIMIT: u64 = 128 * MIB;
/// How fast the sink reads: the collector can export no faster than this.
const SINK_BYTES_PER_SEC: f64 = 6.0 * MIB as f64;
/// Spans per trace, string attributes per span and their size: about 8 KiB per span.
const SPANS_PER_TRACE: u32 = 5;
const ATTRIBUTES: u32 = 4;
const ATTRIBUTE_SIZE: u32 = 2048;
/// Normal load in traces per second (about 80% of what the sink takes); the burst is 3x.
const NORMAL_RATE: u64 = 120;
const NORMAL_SECS: u64 = 5;
const BURST_SECS: u64 = 8;

/// A memory cgroup made for the test, removed on drop.
struct MemCgroup {
    dir: PathBuf,
    v2: bool,
}

impl MemCgroup {
    /// Creates a child of this process's own memory cgroup limited to `limit` bytes.
    fn create(limit: u64) -> Result<Self, String> {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let mountinfo =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let name = format!("wasmcol-limits-memory-{}", std::process::id());
        let mut errors = Vec::new();
        // cgroup v1 `memory` hierarchy first (a child needs nothing enabled), then v2.
        for v2 in [false, true] {
            let Some(own) = own_cgroup(&cgroups, &mountinfo, v2) else {
                continue;
            };
            let made = (|| -> std::io::Result<PathBuf> {
                if v2 {
                    let controllers = std::fs::read_to_string(own.join("cgroup.controllers"))?;
                    if !controllers.split_whitespace().any(|c| c == "memory") {
                        return Err(std::io::Error::other("no memory controller"));
                    }
                    // A child of our own cgroup needs `memory` in its subtree_control, which
                    // cgroup v2 refuses while processes sit in it; then make a sibling: the
                    // parent already delegates `memory` (it is in our cgroup.controllers).
                    let sub = std::fs::read_to_string(own.join("cgroup.subtree_control"))?;
                    let base = if sub.split_whitespace().any(|c| c == "memory")
                        || std::fs::write(own.join("cgroup.subtree_control"), "+memory").is_ok()
                    {
                        own.clone()
                    } else {
                        own.parent()
                            .ok_or_else(|| std::io::Error::other("the root cgroup"))?
                            .to_path_buf()
                    };
                    let dir = base.join(&name);
                    std::fs::create_dir(&dir)?;
                    let limited = std::fs::write(dir.join("memory.max"), limit.to_string());
                    if let Err(e) = limited {
                        let _ = std::fs::remove_dir(&dir);
                        return Err(e);
                    }
                    let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                    Ok(dir)
                } else {
                    let dir = own.join(&name);
                    std::fs::create_dir(&dir)?;
                    let limited =
                        std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string());
                    if let Err(e) = limited {
                        let _ = std::fs::remove_dir(&dir);
                        return Err(e);
                    }
                    Ok(dir)
                }
            })();
            match made {
                Ok(dir) => return Ok(Self { dir, v2 }),
                Err(e) => errors.push(format!("{}: {e}", own.display())),
            }
        }
        Err(if errors.is_empty() {
            "no cgroup memory controller is mounted".into()
        } else {
            errors.join("; ")
        })
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Highest memory use the kernel charged to the cgroup.
    fn peak(&self) -> u64 {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A wrapper for [`Collector::start_wrapped`] that moves the process into the cgroup.
    fn wrapper(&self) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            format!(
                "echo $$ > '{}' && exec \"$@\"",
                self.dir.join("cgroup.procs").display()
            ),
            "sh".into(),
        ]
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // The collector is gone by now (dropped first); its cgroup empties shortly after.
        let _ = wait_until(Duration::from_secs(5), || {
            std::fs::remove_dir(&self.dir).is_ok()
        });
    }
}

/// This process's cgroup directory in the v1 `memory` hierarchy or the v2 one.
fn own_cgroup(cgroups: &str, mountinfo: &str, v2: bool) -> Option<PathBuf> {
    let path = cgroups.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (id, controllers, path) = (p.next()?, p.next()?, p.next()?);
        let matches = if v2 {
            id == "0" && controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == "memory")
        };
        matches.then(|| path.to_string())
    })?;
    let point = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let options = right.nth(1).unwrap_or("");
        let ok = if v2 {
            fstype == "cgroup2"
        } else {
            fstype == "cgroup" && options.split(',').any(|o| o == "memory")
        };
        // Only a mount of the whole hierarchy maps paths simply.
        (ok && *left.get(3)? == "/").then(|| left.get(4).map(|s| s.to_string()))?
    })?;
    Some(Path::new(&point).join(path.trim_start_matches('/')))
}

/// An OTLP/HTTP receiver that reads at [`SINK_BYTES_PER_SEC`], one request at a time, and
/// records every (trace id, span id) it gets.
#[derive(Default)]
struct Sink {
    spans: Mutex<HashSet<(Vec<u8>, Vec<u8>)>>,
    received: Mutex<u64>,
    turn: tokio::sync::Mutex<()>,
}

impl Sink {
    async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let sink = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let sink = sink.clone();
                    async move { sink.handle(req).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full<bytes::Bytes>>, hyper::Error> {
        let _turn = self.turn.lock().await;
        let encoding = req
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = req.into_body().collect().await?.to_bytes();
        tokio::time::sleep(Duration::from_secs_f64(
            body.len() as f64 / SINK_BYTES_PER_SEC,
        ))
        .await;
        let raw = match encoding.as_str() {
            "gzip" => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .expect("gzip body");
                out
            }
            "zstd" => zstd::decode_all(&body[..]).expect("zstd body"),
            _ => body.to_vec(),
        };
        let request = ExportTraceServiceRequest::decode(&raw[..]).expect("OTLP protobuf body");
        let mut spans = self.spans.lock().unwrap();
        let mut n = 0;
        for rs in &request.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    spans.insert((s.trace_id.clone(), s.span_id.clone()));
                    n += 1;
                }
            }
        }
        *self.received.lock().unwrap() += n;
        Ok(hyper::Response::builder()
            .header("content-type", "application/x-protobuf")
            .body(Full::new(
                opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::default()
                    .encode_to_vec()
                    .into(),
            ))
            .unwrap())
    }

    fn unique(&self) -> u64 {
        self.spans.lock().unwrap().len() as u64
    }
}

/// Starts the load generator: `traces` traces at `rate` per second over OTLP/HTTP, retrying
/// every refusal until accepted.
fn loadgen(port: u16, rate: u64, traces: u64) -> std::process::Child {
    Command::new(binary("wasmcol-loadgen"))
        .args(["--json", "--quiet", "--retry", "--workers", "8"])
        .args(["--protocol", "http", "--endpoint"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--rate", &rate.to_string(), "--traces", &traces.to_string()])
        .args(["--spans-per-trace", &SPANS_PER_TRACE.to_string()])
        .args(["--attributes", &ATTRIBUTES.to_string()])
        .args(["--attribute-size", &ATTRIBUTE_SIZE.to_string()])
        .args(["--batch-traces", "4", "--timeout", "30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wasmcol-loadgen")
}

fn summary(child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("wait for wasmcol-loadgen");
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

fn count(summary: &serde_json::Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in the loadgen summary: {summary}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_before_the_oom_killer_and_delivers_a_3x_burst() {
    let cgroup = match MemCgroup::create(CGROUP_LIMIT) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "\n!!!!!!!! SKIPPED limits_memory: cannot create a memory-limited cgroup here ({e}).\n\
                 !!!!!!!! Run as root on a machine with the cgroup v1 memory controller or cgroup v2 \
                 with memory delegated to this process's cgroup.\n"
            );
            return;
        }
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_port = listener.local_addr().unwrap().port();
    let sink = Arc::new(Sink::default());
    tokio::spawn(sink.clone().serve(listener));

    let (http, metrics) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 20
  batch:
    send_batch_size: 400
    timeout: 200ms
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{sink_port}
    sending_queue:
      num_consumers: 1
      sizer: bytes
      queue_size: 1073741824
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlphttp]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    );
    let wrapper = cgroup.wrapper();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut collector = Collector::start_wrapped(&config, http, &[], &wrapper);
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", collector.pid())).unwrap();
    let name = cgroup.dir.file_name().unwrap().to_str().unwrap();
    assert!(own.contains(name), "not in the test cgroup: {own}");
    // The limits come from the cgroup it runs in, not the machine.
    let log = collector.log();
    let hard = CGROUP_LIMIT * 80 / 100 / MIB;
    assert!(
        log.contains(&format!("hard_limit_mib={hard}")),
        "limits not taken from the cgroup (expected hard_limit_mib={hard}):\n{log}"
    );

    // Normal load, then a burst at three times the rate.
    let normal_traces = NORMAL_RATE * NORMAL_SECS;
    let normal = summary(loadgen(http, NORMAL_RATE, normal_traces));
    let burst_traces = 3 * NORMAL_RATE * BURST_SECS;
    let started = Instant::now();
    let mut burst = loadgen(http, 3 * NORMAL_RATE, burst_traces);
    // Watch the process while the burst runs.
    let mut first_refusal: Option<Duration> = None;
    let refusing_before = collector.log().matches("refusing data").count();
    let mut rss_peak = 0;
    let burst = loop {
        rss_peak = rss_peak.max(collector.rss_bytes());
        if first_refusal.is_none()
            && collector.log().matches("refusing data").count() > refusing_before
        {
            first_refusal = Some(started.elapsed());
            assert_eq!(
                cgroup.oom_kills(),
                0,
                "the OOM killer acted before the limiter refused"
            );
        }
        assert!(
            collector.wait_exit(Duration::ZERO).is_none(),
            "wasmcol exited during the burst (OOM kills: {}):\n{}",
            cgroup.oom_kills(),
            collector.log()
        );
        if started.elapsed() > Duration::from_secs(180) {
            panic!("the burst did not finish in 180 s:\n{}", collector.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if burst.try_wait().expect("poll wasmcol-loadgen").is_some() {
            break summary(burst);
        }
    };

    let sent = count(&normal, "spans_accepted") + count(&burst, "spans_accepted");
    let expected = (normal_traces + burst_traces) * SPANS_PER_TRACE as u64;
    assert_eq!(count(&normal, "requests_failed"), 0, "{normal}");
    assert_eq!(count(&burst, "requests_failed"), 0, "{burst}");
    assert_eq!(sent, expected, "normal {normal}\nburst {burst}");

    // Every span accepted reaches the sink.
    let delivered = wait_until(Duration::from_secs(120), || sink.unique() >= expected);
    let text = scrape_metrics(metrics).await;
    let refused = metric_value(
        &text,
        r#"wasmcol_processor_refused_spans_total{processor="memory_limiter",pipeline="traces"}"#,
    )
    .unwrap_or(0.0);
    eprintln!(
        "limits_memory: cgroup {} MiB, peak charged {} MiB, peak RSS {} MiB, first refusal after {:?} of the burst, \
         {refused} spans refused, loadgen refusals {} (normal) {} (burst), {} of {expected} spans delivered ({} received)",
        CGROUP_LIMIT / MIB,
        cgroup.peak() / MIB,
        rss_peak / MIB,
        first_refusal,
        count(&normal, "requests_refused"),
        count(&burst, "requests_refused"),
        sink.unique(),
        sink.received.lock().unwrap(),
    );
    assert!(
        first_refusal.is_some() && refused > 0.0,
        "the limiter never refused: the burst did not reach the soft limit (peak RSS {} MiB)",
        rss_peak / MIB
    );
    assert!(count(&burst, "requests_refused") > 0, "{burst}");
    assert_eq!(cgroup.oom_kills(), 0, "the OOM killer acted");
    assert!(
        delivered,
        "{} of {expected} spans reached the sink",
        sink.unique()
    );
    // Still alive and answering.
    assert!(collector.wait_exit(Duration::ZERO).is_none());
    assert!(scrape_metrics(metrics).await.contains("wasmcol_"));
    assert_eq!(collector.stop(), 0, "{}", collector.log());
}
