//! The on-disk sending queue (`sending_queue.storage: file_storage`) with real processes: a
//! collector under load, killed with SIGKILL again and again, a back end that goes away for a
//! minute, a queue directory on a small tmpfs that fills up. Whatever a client was told is
//! accepted must reach the back end, another `wasmcol` writing a file.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use wasmcol_tests::{
    Collector, DownPort, file_pipeline_config, free_port, http_request, metric_value,
    output_span_ids, scrape_metrics, spans_request, wait_until,
};

/// A back end: a collector writing what it receives over OTLP/HTTP to `{dir}/out.jsonl`.
struct Sink {
    collector: Collector,
    http: u16,
}

impl Sink {
    fn start(http: u16) -> Self {
        let config = file_pipeline_config(free_port(), http, free_port(), "batch", "").replace(
            "  telemetry:",
            "    logs:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [file]\n  telemetry:",
        );
        Sink {
            collector: Collector::start(&config, http),
            http,
        }
    }

    fn ids(&self) -> Vec<u64> {
        output_span_ids(&self.collector.path("out.jsonl"))
    }

    /// The times of the log records written (the load numbers its records by their time).
    fn log_times(&self) -> Vec<u64> {
        let text = std::fs::read_to_string(self.collector.path("out.jsonl")).unwrap_or_default();
        let mut times = Vec::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue; // a line still being written
            };
            for rl in v["resourceLogs"].as_array().into_iter().flatten() {
                for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                    for r in sl["logRecords"].as_array().into_iter().flatten() {
                        if let Some(t) = r["timeUnixNano"].as_str().and_then(|t| t.parse().ok()) {
                            times.push(t);
                        }
                    }
                }
            }
        }
        times
    }
}

/// What the load sends: spans to `/v1/traces`, or log records to `/v1/logs`.
#[derive(Clone, Copy)]
enum Signal {
    Traces,
    Logs,
}

impl Signal {
    /// A request of `n` items numbered from `first` (span ids, or record times), each with a
    /// `pad`-byte attribute; and its path.
    fn request(self, first: u64, n: usize, pad: usize) -> (Vec<u8>, &'static str) {
        match self {
            Signal::Traces => (
                spans_request(7, first, n, pad).encode_to_vec(),
                "/v1/traces",
            ),
            Signal::Logs => {
                let text = |s: String| AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                };
                let records = (first..first + n as u64)
                    .map(|i| LogRecord {
                        time_unix_nano: i,
                        severity_text: "INFO".into(),
                        body: Some(text(format!("record {i}"))),
                        attributes: vec![KeyValue {
                            key: "pad".into(),
                            value: Some(text("x".repeat(pad))),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect();
                let request = ExportLogsServiceRequest {
                    resource_logs: vec![ResourceLogs {
                        scope_logs: vec![ScopeLogs {
                            log_records: records,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                };
                (request.encode_to_vec(), "/v1/logs")
            }
        }
    }
}

/// The collector under test: OTLP/HTTP in, a batch processor, `otlphttp` out to `sink_http`
/// with its queue in `queue_dir`; traces and logs.
fn gateway_config(
    http: u16,
    metrics: u16,
    sink_http: u16,
    queue_dir: &Path,
    queue: &str,
) -> String {
    format!(
        r#"
extensions:
  file_storage:
    directory: {dir}
    create_directory: true
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    timeout: 20ms
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{sink_http}
    sending_queue: {{ storage: file_storage, {queue} }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0s }}
service:
  extensions: [file_storage]
  shutdown_timeout: 5s
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlphttp]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlphttp]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        dir = queue_dir.display()
    )
}

/// Clients sending requests of fresh span ids to `port` until stopped; they remember which ids
/// were acknowledged (HTTP 200) and which were refused.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    refused: Arc<AtomicU64>,
    statuses: Arc<Mutex<HashSet<u16>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `clients` senders of `spans` spans (or log records) per request, each with a `pad`-byte
    /// attribute, each pausing `pause` after an acknowledged request.
    fn start(
        port: Arc<AtomicU64>,
        signal: Signal,
        clients: u64,
        spans: usize,
        pad: usize,
        pause: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicU64::new(0));
        let statuses = Arc::new(Mutex::new(HashSet::new()));
        let threads = (0..clients)
            .map(|c| {
                let (stop, acked, refused, statuses, port) = (
                    stop.clone(),
                    acked.clone(),
                    refused.clone(),
                    statuses.clone(),
                    port.clone(),
                );
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    // Each client numbers its spans in a range of its own.
                    let mut next = (c + 1) << 40;
                    while !stop.load(Ordering::Relaxed) {
                        let (body, path) = signal.request(next, spans, pad);
                        let url =
                            format!("http://127.0.0.1:{}{path}", port.load(Ordering::Relaxed));
                        let reply = rt.block_on(async {
                            tokio::time::timeout(
                                Duration::from_secs(10),
                                http_request(
                                    "POST",
                                    &url,
                                    &[("content-type", "application/x-protobuf")],
                                    body,
                                ),
                            )
                            .await
                        });
                        match reply {
                            Ok(Ok(r)) if r.status == 200 => {
                                acked.lock().unwrap().extend(next..next + spans as u64);
                                std::thread::sleep(pause);
                            }
                            Ok(Ok(r)) => {
                                statuses.lock().unwrap().insert(r.status);
                                refused.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            // Killed or not yet listening: try again shortly.
                            _ => std::thread::sleep(Duration::from_millis(20)),
                        }
                        next += spans as u64;
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            refused,
            statuses,
            threads,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn finish(self) -> (Vec<u64>, u64, HashSet<u16>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let statuses = self.statuses.lock().unwrap().clone();
        (acked, self.refused.load(Ordering::Relaxed), statuses)
    }
}

/// Waits until the sink holds every id in `acked`; returns (missing, delivered, duplicates).
fn settle(sink: &Sink, acked: &[u64], timeout: Duration) -> (Vec<u64>, usize, usize) {
    settle_by(acked, timeout, || sink.ids())
}

/// [`settle`] for whatever `written` reads from the sink.
fn settle_by(
    acked: &[u64],
    timeout: Duration,
    written: impl Fn() -> Vec<u64>,
) -> (Vec<u64>, usize, usize) {
    let want: HashSet<u64> = acked.iter().copied().collect();
    wait_until(timeout, || {
        let got: HashSet<u64> = written().into_iter().collect();
        want.is_subset(&got)
    });
    let ids = written();
    let got: HashSet<u64> = ids.iter().copied().collect();
    let mut missing: Vec<u64> = want.difference(&got).copied().collect();
    missing.sort_unstable();
    (missing, ids.len(), ids.len() - got.len())
}

/// [`gateway_config`] on `http` into `sink`, its queue in `queue_dir` with 4 consumers.
fn four_consumers(http: u16, sink: &Sink, queue_dir: &Path) -> String {
    gateway_config(http, free_port(), sink.http, queue_dir, "num_consumers: 4")
}

/// What a kill -9 loop saw.
struct Killed {
    /// Items acknowledged to the clients.
    acked: usize,
    /// Acknowledged items the back end never got.
    missing: Vec<u64>,
    /// Items the back end wrote, and how many of them twice or more.
    delivered: usize,
    duplicates: usize,
}

/// Runs a collector on `config(http)` (its queue on disk in a directory that outlives it)
/// under a load of `signal` from 4 clients, kills it with SIGKILL `cycles` times at moments
/// varied by `stagger` and starts it again; the last one stops the load, drains into `sink`
/// and stops cleanly. `check` looks at each collector once it has acknowledged some data.
fn kill_9_loop(
    signal: Signal,
    cycles: usize,
    stagger: u64,
    sink: &Sink,
    config: impl Fn(u16) -> String,
    check: impl Fn(&Collector),
) -> Killed {
    let port = Arc::new(AtomicU64::new(0));
    let mut load = None;
    for cycle in 0..=cycles {
        let http = free_port();
        let mut gateway = Collector::start(&config(http), http);
        port.store(u64::from(http), Ordering::Relaxed);
        let l = load
            .get_or_insert_with(|| Load::start(port.clone(), signal, 4, 50, 32, Duration::ZERO));
        let before = l.acked();
        // Under load for a while (at least some requests acknowledged by this process).
        assert!(
            wait_until(Duration::from_secs(20), || l.acked() >= before + 200),
            "cycle {cycle}: no progress:\n{}",
            gateway.log()
        );
        check(&gateway);
        std::thread::sleep(Duration::from_millis(300 + stagger * cycle as u64 % 400));
        if cycle == cycles {
            // The last process stops the load, drains and stops cleanly.
            let (acked, _, _) = load.take().unwrap().finish();
            let (missing, delivered, duplicates) =
                settle_by(&acked, Duration::from_secs(60), || match signal {
                    Signal::Traces => sink.ids(),
                    Signal::Logs => sink.log_times(),
                });
            assert_eq!(gateway.stop(), 0, "{}", gateway.log());
            return Killed {
                acked: acked.len(),
                missing,
                delivered,
                duplicates,
            };
        }
        // kill -9 (dropping the handle sends SIGKILL and reaps it).
        drop(gateway);
    }
    unreachable!("the last cycle returns")
}

impl Killed {
    fn assert_nothing_missing(&self, what: &str) {
        let Killed { missing, .. } = self;
        assert!(
            missing.is_empty(),
            "{} acknowledged {what} never reached the back end (first: {:?})",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
}

#[test]
fn kill_9_loop_loses_nothing_acknowledged() {
    const CYCLES: usize = 20;
    let sink = Sink::start(free_port());
    let queue = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let config = |http| four_consumers(http, &sink, queue.path());
    let k = kill_9_loop(Signal::Traces, CYCLES, 37, &sink, config, |_| {});
    println!(
        "RELIABILITY kill -9 loop: cycles {CYCLES}, acknowledged {}, delivered {}, duplicates \
         {}, missing {}, {:.0?}",
        k.acked,
        k.delivered,
        k.duplicates,
        k.missing.len(),
        started.elapsed()
    );
    k.assert_nothing_missing("spans");
}

/// Log records through the on-disk queue (its folder `exporter_otlphttp__logs`): killed with
/// SIGKILL under load again and again, every acknowledged record reaches the back end.
#[test]
fn kill_9_loop_loses_no_acknowledged_log_record() {
    const CYCLES: usize = 8;
    let sink = Sink::start(free_port());
    let queue = tempfile::tempdir().unwrap();
    let config = |http| four_consumers(http, &sink, queue.path());
    let k = kill_9_loop(Signal::Logs, CYCLES, 53, &sink, config, |_| {});
    println!(
        "RELIABILITY kill -9 loop, logs: cycles {CYCLES}, acknowledged {}, delivered {}, \
         duplicates {}, missing {}",
        k.acked,
        k.delivered,
        k.duplicates,
        k.missing.len()
    );
    assert!(
        queue.path().join("exporter_otlphttp__logs").is_dir(),
        "the logs queue is not where it should be: {:?}",
        std::fs::read_dir(queue.path())
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    k.assert_nothing_missing("log records");
}

/// A `forward` connector passes acknowledgement on: with `otlp → batch → forward` in one
/// pipeline and `forward → batch → otlphttp` (queue on disk) in the next, the first pipeline's
/// clients are answered once their data is stored, as if the connector were not there, so
/// kill -9 under load loses nothing acknowledged.
#[test]
fn kill_9_loop_through_a_forward_connector_loses_nothing_acknowledged() {
    const CYCLES: usize = 8;
    let sink = Sink::start(free_port());
    let queue = tempfile::tempdir().unwrap();
    let config = |http| {
        let direct = "    traces:\n      receivers: [otlp]\n      processors: [batch]\n      \
                      exporters: [otlphttp]\n";
        let forwarded = "    traces:\n      receivers: [otlp]\n      processors: [batch]\n      \
                         exporters: [forward]\n    traces/stored:\n      receivers: [forward]\n      \
                         processors: [batch]\n      exporters: [otlphttp]\n";
        let config = four_consumers(http, &sink, queue.path());
        assert!(config.contains(direct));
        config
            .replace(direct, forwarded)
            .replace("\nservice:\n", "\nconnectors:\n  forward:\nservice:\n")
    };
    let stored = |c: &Collector| {
        let log = c.log();
        for pipeline in ["traces", "traces/stored"] {
            let field = format!("pipeline={pipeline}");
            assert!(
                log.lines().any(
                    |l| l.contains("clients are answered once their data is stored")
                        && l.split_whitespace().any(|w| w == field)
                ),
                "pipeline {pipeline} is not said to be stored:\n{log}"
            );
        }
    };
    let k = kill_9_loop(Signal::Traces, CYCLES, 41, &sink, config, stored);
    println!(
        "RELIABILITY kill -9 loop through forward: cycles {CYCLES}, acknowledged {}, delivered \
         {}, duplicates {}, missing {}",
        k.acked,
        k.delivered,
        k.duplicates,
        k.missing.len()
    );
    k.assert_nothing_missing("spans");
}

#[test]
fn back_end_down_for_a_minute_loses_nothing_and_memory_stays_flat() {
    // Down for the first minute: connections refused, and the port kept from other tests.
    let sink_port = DownPort::new();
    let queue = tempfile::tempdir().unwrap();
    let (http, metrics) = (free_port(), free_port());
    let config = gateway_config(
        http,
        metrics,
        sink_port.port,
        queue.path(),
        "num_consumers: 2, sizer: bytes, queue_size: 1073741824",
    );
    let gateway = Collector::start(&config, http);
    let port = Arc::new(AtomicU64::new(u64::from(http)));
    // About 0.5 KB per span at about 4,000 spans/s: a minute of it (over 100 MiB) is far more
    // than the process's memory.
    let load = Load::start(port, Signal::Traces, 2, 100, 500, Duration::from_millis(50));
    let started = Instant::now();
    let mut peak_rss = 0;
    while started.elapsed() < Duration::from_secs(60) {
        peak_rss = peak_rss.max(gateway.rss_bytes());
        std::thread::sleep(Duration::from_millis(500));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let text = rt.block_on(scrape_metrics(metrics));
    let on_disk = metric_value(
        &text,
        r#"wasmcol_exporter_queue_disk_bytes{exporter="otlphttp"}"#,
    )
    .unwrap_or(0.0);
    let acked_while_down = load.acked();
    let sink = Sink::start(sink_port.release());
    std::thread::sleep(Duration::from_secs(2));
    let (acked, _, _) = load.finish();
    let (missing, delivered, duplicates) = settle(&sink, &acked, Duration::from_secs(120));
    println!(
        "RELIABILITY back end down 60 s: acknowledged while down {acked_while_down}, in all {}, \
         delivered {delivered}, duplicates {duplicates}, missing {}, queue on disk {:.1} MiB, \
         peak RSS {:.1} MiB",
        acked.len(),
        missing.len(),
        on_disk / 1048576.0,
        peak_rss as f64 / 1048576.0
    );
    assert!(
        acked_while_down > 10_000,
        "too little load: {acked_while_down} spans"
    );
    assert!(
        on_disk > 20.0 * 1048576.0,
        "the queue should hold the outage on disk, holds {on_disk} bytes"
    );
    assert!(
        peak_rss < 200 * 1048576,
        "peak RSS {} MiB while the back end was down",
        peak_rss / 1048576
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged spans lost:\n{}",
        missing.len(),
        gateway.log()
    );
}

/// Mounts a tmpfs of `mib` MiB at `dir` for the life of the guard.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Self {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a tmpfs to fill it up and needs root: mount said {status}"
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_refuses_retryably_and_recovers() {
    let mount = tempfile::tempdir().unwrap();
    let _tmpfs = Tmpfs::mount(mount.path(), 8);
    let queue = mount.path().join("queue");
    let sink_port = DownPort::new();
    let (http, metrics) = (free_port(), free_port());
    let config = gateway_config(
        http,
        metrics,
        sink_port.port,
        &queue,
        "sizer: bytes, queue_size: 1073741824",
    );
    let mut gateway = Collector::start(&config, http);
    let port = Arc::new(AtomicU64::new(u64::from(http)));
    let load = Load::start(port.clone(), Signal::Traces, 2, 100, 1000, Duration::ZERO);
    // The back end is down: the queue grows until the tmpfs is full, then data is refused.
    assert!(
        gateway.wait_for_log_line(
            &["cannot write to the on-disk sending queue"],
            Duration::from_secs(60)
        ),
        "the disk never filled up:\n{}",
        gateway.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let (acked_full, refused, statuses) = load.finish();
    assert!(refused > 0);
    assert_eq!(
        statuses,
        HashSet::from([503]),
        "a full disk must be refused with a retryable status"
    );
    // Space comes back once the back end takes the data.
    let sink = Sink::start(sink_port.release());
    let (missing, _, _) = settle(&sink, &acked_full, Duration::from_secs(60));
    assert!(
        missing.is_empty(),
        "{} acknowledged spans lost",
        missing.len()
    );
    // The emptied queue gives its space back: new data is accepted again.
    let load = Load::start(port, Signal::Traces, 2, 100, 1000, Duration::ZERO);
    assert!(
        wait_until(Duration::from_secs(30), || load.acked() >= 5_000),
        "no data accepted after the disk emptied:\n{}",
        gateway.log()
    );
    let (acked_after, _, _) = load.finish();
    assert_eq!(gateway.stop(), 0, "{}", gateway.log());
    let (missing, _, _) = settle(&sink, &acked_after, Duration::from_secs(60));
    assert!(
        missing.is_empty(),
        "{} acknowledged spans lost",
        missing.len()
    );
    // The queue is not corrupt: a new process opens it without complaint.
    let restarted = Collector::start(&config, http);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let text = rt.block_on(scrape_metrics(metrics));
    assert_eq!(
        metric_value(
            &text,
            r#"wasmcol_exporter_queue_corrupt_records_total{exporter="otlphttp"}"#
        ),
        Some(0.0),
        "{}",
        restarted.log()
    );
}
