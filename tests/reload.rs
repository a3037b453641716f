//! Live configuration reload, with real processes over loopback: SIGHUP swaps a changed
//! exporter while a real client keeps sending (every acknowledged span lands in the old file or
//! the new one, split at the reload); a broken config is refused, every problem logged, and the
//! old one keeps running; an unchanged receiver keeps its listener (no connection refused) and
//! its connections; an exporter whose options change takes over its on-disk queue (the old
//! instance closes it first) and sends what the old one had queued; `--watch-config` reloads on
//! a ConfigMap's `..data` swap, and without it nothing happens; the metrics count reloads and
//! show the configuration's hash.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::SendRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use wasmcol_tests::{
    Collector, free_port, http_request, metric_value, output_span_ids, python, scrape_metrics,
    spans_request, wait_until, workspace_root,
};

/// otlp (gRPC) → batch → file `out` (relative to the collector's directory); metrics and a
/// health check on the given ports. `receiver_extra` is added to the gRPC protocol's options.
fn config(
    grpc: u16,
    metrics: u16,
    health: u16,
    out: &str,
    batch: &str,
    receiver_extra: &str,
) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
{receiver_extra}
processors:
  batch:
    timeout: {batch}
exporters:
  file:
    path: "{{dir}}/{out}"
    flush_interval: 50ms
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  shutdown_timeout: 5s
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

/// Replaces the config file the collector was started on (`{dir}` as [`Collector::start`]).
fn rewrite(c: &Collector, config: &str) {
    let text = config.replace("{dir}", &c.dir.path().display().to_string());
    std::fs::write(c.path("config.yaml"), text).expect("rewrite config");
}

/// How many log lines contain every string in `parts`.
fn lines_with(c: &Collector, parts: &[&str]) -> usize {
    c.log()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

/// Sends SIGHUP and waits for the reload's outcome line (`outcome`: "config reloaded" or
/// "config reload failed"), the `n`th such line.
fn reload(c: &Collector, outcome: &str, n: usize) {
    c.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(30), || lines_with(c, &[outcome]) >= n),
        "no {outcome:?} line after SIGHUP\n{}",
        c.log()
    );
}

/// The Python SDK sender that exports one span at a time until `stop` exists, recording each
/// acknowledged span id in `acked`.
fn steady_sender(grpc: u16, acked: &Path, stop: &Path) -> Child {
    Command::new(python())
        .arg(workspace_root().join("tests/python/send_steady.py"))
        .args(["--endpoint", &format!("127.0.0.1:{grpc}")])
        .arg("--acked")
        .arg(acked)
        .arg("--stop")
        .arg(stop)
        .spawn()
        .expect("start send_steady.py")
}

fn acked_ids(path: &Path) -> BTreeSet<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().expect("span id"))
        .collect()
}

/// The running configuration's hash, from `wasmcol_config_info`.
fn config_hash(metrics: &str) -> String {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("wasmcol_config_info{hash=\""))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no wasmcol_config_info in\n{metrics}"))
        .to_string()
}

fn reloads(metrics: &str, outcome: &str) -> f64 {
    metric_value(
        metrics,
        &format!("wasmcol_config_reloads_total{{outcome=\"{outcome}\"}}"),
    )
    .unwrap_or_else(|| panic!("no reload counter for {outcome} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_moves_a_changed_exporter_and_loses_no_acknowledged_span() {
    let (grpc, metrics, health) = (free_port(), free_port(), free_port());
    let mut c = Collector::start(&config(grpc, metrics, health, "a.jsonl", "100ms", ""), grpc);
    let before = scrape_metrics(metrics).await;
    assert_eq!(reloads(&before, "success"), 0.0);
    let (a, b) = (c.path("a.jsonl"), c.path("b.jsonl"));
    let (acked, stop) = (c.path("acked.txt"), c.path("stop"));
    let mut sender = steady_sender(grpc, &acked, &stop);
    assert!(
        wait_until(Duration::from_secs(30), || output_span_ids(&a).len() >= 50),
        "spans did not reach a.jsonl\n{}",
        c.log()
    );

    rewrite(&c, &config(grpc, metrics, health, "b.jsonl", "100ms", ""));
    reload(&c, "config reloaded", 1);
    assert!(
        wait_until(Duration::from_secs(30), || output_span_ids(&b).len() >= 50),
        "spans did not reach b.jsonl after the reload\n{}",
        c.log()
    );
    std::fs::write(&stop, "").unwrap();
    assert!(sender.wait().expect("sender").success(), "sender failed");

    // The new hash, one successful reload.
    let after = scrape_metrics(metrics).await;
    assert_eq!(reloads(&after, "success"), 1.0, "{after}");
    assert_eq!(reloads(&after, "failure"), 0.0, "{after}");
    assert_ne!(config_hash(&before), config_hash(&after));
    assert!(
        c.log().contains(&format!("hash={}", config_hash(&after))),
        "the log does not name the new hash\n{}",
        c.log()
    );
    // What was kept and what restarted.
    assert_eq!(
        lines_with(
            &c,
            &[
                "reload: swapping",
                "kept=[\"extensions.health_check\", \"receivers.otlp\"]",
                "\"exporters.file (traces)\""
            ]
        ),
        1,
        "{}",
        c.log()
    );
    assert_eq!(c.stop(), 0, "exit status\n{}", c.log());

    let in_a: BTreeSet<u64> = output_span_ids(&a).into_iter().collect();
    let in_b: BTreeSet<u64> = output_span_ids(&b).into_iter().collect();
    let acked = acked_ids(&acked);
    let written = &in_a | &in_b;
    let lost: Vec<_> = acked.difference(&written).collect();
    assert!(
        lost.is_empty(),
        "acknowledged spans lost: {lost:?}\n{}",
        c.log()
    );
    assert!(in_a.is_disjoint(&in_b), "spans written twice");
    // Sent one at a time: everything before the reload in a, everything after in b.
    let (last_a, first_b) = (in_a.last().unwrap(), in_b.first().unwrap());
    assert!(
        last_a < first_b,
        "a ends at {last_a}, b starts at {first_b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_is_refused_and_the_running_one_stays() {
    let (grpc, metrics, health) = (free_port(), free_port(), free_port());
    let good = config(grpc, metrics, health, "a.jsonl", "100ms", "");
    let mut c = Collector::start(&good, grpc);
    let before = scrape_metrics(metrics).await;

    let broken = good.replace("timeout: 100ms", "timeout: soonish").replace(
        "flush_interval: 50ms",
        "flush_interval: 50ms\n    colour: blue",
    );
    rewrite(&c, &broken);
    reload(&c, "config reload failed", 1);
    // One error line per problem, each naming it.
    assert_eq!(
        lines_with(
            &c,
            &[
                "ERROR",
                "config reload",
                "processors.batch.timeout",
                "soonish"
            ]
        ),
        1,
        "{}",
        c.log()
    );
    assert_eq!(
        lines_with(&c, &["ERROR", "config reload", "exporters.file", "colour"]),
        1,
        "{}",
        c.log()
    );
    let after = scrape_metrics(metrics).await;
    assert_eq!(reloads(&after, "failure"), 1.0, "{after}");
    assert_eq!(reloads(&after, "success"), 0.0, "{after}");
    assert_eq!(config_hash(&before), config_hash(&after));
    assert_eq!(health_status(health).await, 200);

    // Data still flows through the running configuration.
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect");
    client
        .export(spans_request(1, 1, 20, 0))
        .await
        .expect("export after the failed reload");
    assert_eq!(c.stop(), 0, "exit status\n{}", c.log());
    let delivered: BTreeSet<u64> = output_span_ids(&c.path("a.jsonl")).into_iter().collect();
    assert_eq!(delivered, (1..21).collect(), "{}", c.log());
}

/// An HTTP/2 connection to the gRPC port, without the reconnecting a gRPC channel does: if
/// the server closes it, calls on it fail.
async fn h2_connection(grpc: u16) -> SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", grpc))
        .await
        .expect("connect to the gRPC port");
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    send
}

/// One `Export` of 10 spans with ids `first..first + 10` on `send`; the grpc-status.
async fn h2_export(
    send: &mut SendRequest<Full<Bytes>>,
    grpc: u16,
    first: u64,
) -> Result<String, String> {
    let message = spans_request(2, first, 10, 0).encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let req = http::Request::post(format!(
        "http://127.0.0.1:{grpc}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(Full::new(Bytes::from(framed)))
    .unwrap();
    send.ready().await.map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(headers
        .get("grpc-status")
        .or_else(|| body.trailers().and_then(|t| t.get("grpc-status")))
        .map(|v| v.to_str().unwrap_or("?").to_string())
        .unwrap_or_else(|| "none".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_receiver_keeps_its_listener_and_its_connections() {
    let (grpc, metrics, health) = (free_port(), free_port(), free_port());
    let mut c = Collector::start(
        &config(grpc, metrics, health, "out.jsonl", "100ms", ""),
        grpc,
    );
    let mut conn = h2_connection(grpc).await;
    assert_eq!(h2_export(&mut conn, grpc, 1).await.as_deref(), Ok("0"));

    // Probe the port in a tight loop, and keep exporting on the one connection, across a
    // reload that changes the batch processor only.
    let stop = Arc::new(AtomicBool::new(false));
    let (connected, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let probe = std::thread::spawn({
        let (stop, connected, refused) = (stop.clone(), connected.clone(), refused.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                match TcpStream::connect(("127.0.0.1", grpc)) {
                    Ok(_) => connected.fetch_add(1, Ordering::Relaxed),
                    Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    });
    let sending = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut next = 11;
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match h2_export(&mut conn, grpc, next).await {
                    Ok(s) if s == "0" => next += 10,
                    other => failures.push(other),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (conn, next, failures)
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    rewrite(&c, &config(grpc, metrics, health, "out.jsonl", "300ms", ""));
    reload(&c, "config reloaded", 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    probe.join().unwrap();
    let (mut conn, next, failures) = sending.await.unwrap();
    assert_eq!(
        refused.load(Ordering::Relaxed),
        0,
        "connections refused during the reload"
    );
    assert!(connected.load(Ordering::Relaxed) > 10);
    assert!(
        failures.is_empty(),
        "exports failed on the kept connection: {failures:?}"
    );
    assert!(next > 11, "nothing was exported during the reload");
    assert_eq!(
        lines_with(
            &c,
            &[
                "reload: swapping",
                "kept=[\"extensions.health_check\", \"receivers.otlp\", \"exporters.file (traces)\"]",
                "restarted=[\"processors.batch (pipeline traces)\"]"
            ]
        ),
        1,
        "{}",
        c.log()
    );
    // The established connection still works after the reload.
    assert_eq!(h2_export(&mut conn, grpc, next).await.as_deref(), Ok("0"));
    assert_eq!(health_status(health).await, 200);

    // A changed receiver on the same port: the old listener closes, the new one opens.
    rewrite(
        &c,
        &config(
            grpc,
            metrics,
            health,
            "out.jsonl",
            "300ms",
            "        max_recv_msg_size_mib: 8",
        ),
    );
    reload(&c, "config reloaded", 2);
    assert_eq!(
        lines_with(&c, &["restarted=[\"receivers.otlp\"]"]),
        1,
        "{}",
        c.log()
    );
    let mut fresh = h2_connection(grpc).await;
    assert_eq!(
        h2_export(&mut fresh, grpc, next + 10).await.as_deref(),
        Ok("0")
    );

    assert_eq!(c.stop(), 0, "exit status\n{}", c.log());
    let delivered: BTreeSet<u64> = output_span_ids(&c.path("out.jsonl")).into_iter().collect();
    let expected: BTreeSet<u64> = (1..next + 20).collect();
    assert_eq!(delivered, expected, "{}", c.log());
}

/// A Kubernetes ConfigMap volume as kubelet writes it: `config.yaml` → `..data/config.yaml`,
/// `..data` → a timestamped directory.
struct ConfigMap {
    dir: tempfile::TempDir,
    version: usize,
}

impl ConfigMap {
    fn new(config: &str) -> Self {
        let mut cm = Self {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        cm.update(config);
        std::os::unix::fs::symlink("..data/config.yaml", cm.path()).unwrap();
        cm
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// A new timestamped directory, and `..data` swapped to it by an atomic rename, the old
    /// one removed: as kubelet updates a ConfigMap.
    fn update(&mut self, config: &str) {
        self.version += 1;
        let name = format!("..2026_12_05_00_00_0{}.1234", self.version);
        let version = self.dir.path().join(&name);
        std::fs::create_dir(&version).unwrap();
        std::fs::write(version.join("config.yaml"), config).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        let data = self.dir.path().join("..data");
        let old = std::fs::read_link(&data).ok();
        std::fs::rename(&tmp, &data).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.path().join(old)).unwrap();
        }
    }
}

/// Starts wasmcol on `cm` (with `--watch-config` if `watch`) through a shell that replaces the
/// command line [`Collector::start_wrapped`] gives it.
fn start_on(cm: &ConfigMap, grpc: u16, watch: bool) -> Collector {
    let script = format!(
        "exec \"$0\" --config {} {}",
        cm.path().display(),
        if watch { "--watch-config" } else { "" }
    );
    Collector::start_wrapped("{}", grpc, &[], &["sh", "-c", &script])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_swap_reloads_only_with_watch_config() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display().to_string();
    let mut running = Vec::new();
    for watch in [true, false] {
        let (grpc, metrics, health) = (free_port(), free_port(), free_port());
        let at =
            |file: &str| config(grpc, metrics, health, file, "50ms", "").replace("{dir}", &dir);
        let tag = if watch { "watched" } else { "unwatched" };
        let mut cm = ConfigMap::new(&at(&format!("{tag}-a.jsonl")));
        let c = start_on(&cm, grpc, watch);
        cm.update(&at(&format!("{tag}-b.jsonl")));
        running.push((watch, grpc, c, cm));
    }
    for (watch, grpc, c, _) in &running {
        if *watch {
            assert!(
                c.wait_for_log_line(
                    &["reloading the configuration", "config file change"],
                    Duration::from_secs(20)
                ) && c.wait_for_log_line(&["config reloaded"], Duration::from_secs(20)),
                "the ConfigMap swap did not reload\n{}",
                c.log()
            );
        } else {
            // Several watch intervals.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(
                lines_with(c, &["reloading the configuration"]),
                0,
                "{}",
                c.log()
            );
        }
        let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .expect("connect");
        client
            .export(spans_request(3, 1, 5, 0))
            .await
            .expect("export after the swap");
    }
    for (watch, _, mut c, _) in running {
        assert_eq!(c.stop(), 0, "exit status\n{}", c.log());
        let (tag, file) = if watch {
            ("watched", "b")
        } else {
            ("unwatched", "a")
        };
        let written = output_span_ids(&out.path().join(format!("{tag}-{file}.jsonl")));
        assert_eq!(written, (1..6).collect::<Vec<_>>(), "{tag}\n{}", c.log());
    }
}

/// otlp (gRPC) → `otlp_http` to `sink_http`, its queue on disk in `queue_dir`; `extra` is added
/// to the exporter's options.
fn queued_config(grpc: u16, sink_http: u16, queue_dir: &Path, extra: &str) -> String {
    format!(
        r#"
extensions:
  file_storage:
    directory: {dir}
    create_directory: true
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{sink_http}
    sending_queue: {{ storage: file_storage }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 300ms, max_elapsed_time: 0s }}
{extra}
service:
  extensions: [file_storage]
  shutdown_timeout: 5s
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlphttp]
  telemetry:
    metrics:
      address: none
"#,
        dir = queue_dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_exporter_takes_over_its_on_disk_queue() {
    // The back end is down: what the gateway acknowledges waits in its on-disk queue.
    let down = wasmcol_tests::DownPort::new();
    let grpc = free_port();
    let queue = tempfile::tempdir().unwrap();
    let mut c = Collector::start(&queued_config(grpc, down.port, queue.path(), ""), grpc);
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect");
    client
        .export(spans_request(4, 1, 30, 0))
        .await
        .expect("export acknowledged (stored)");

    // The exporter's options change, its queue directory does not: the old instance closes the
    // queue before the new one opens it.
    rewrite(
        &c,
        &queued_config(grpc, down.port, queue.path(), "    timeout: 7s"),
    );
    reload(&c, "config reloaded", 1);
    assert_eq!(
        lines_with(&c, &["restarted=[\"exporters.otlphttp (traces)\"]"]),
        1,
        "{}",
        c.log()
    );
    assert!(!c.log().contains("did not start"), "{}", c.log());
    client
        .export(spans_request(4, 31, 20, 0))
        .await
        .expect("export after the reload");

    // The back end comes up: the new instance sends what the old one had queued, and the rest.
    let sink_http = down.release();
    let sink_config =
        wasmcol_tests::file_pipeline_config(free_port(), sink_http, free_port(), "batch", "");
    let sink = Collector::start(&sink_config, sink_http);
    let expected: BTreeSet<u64> = (1..51).collect();
    assert!(
        wait_until(Duration::from_secs(30), || {
            output_span_ids(&sink.path("out.jsonl"))
                .into_iter()
                .collect::<BTreeSet<_>>()
                == expected
        }),
        "delivered {:?}\n{}",
        output_span_ids(&sink.path("out.jsonl")).len(),
        c.log()
    );
    assert_eq!(c.stop(), 0, "exit status\n{}", c.log());
}

/// The status `health_check` on `port` answers.
async fn health_status(port: u16) -> u16 {
    http_request("GET", &format!("http://127.0.0.1:{port}/"), &[], Vec::new())
        .await
        .expect("health check")
        .status
}
