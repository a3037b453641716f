//! `e2e`: the end-to-end benchmark. Runs the release `wasmcol` binary and Rotel's
//! `rotel-agent` side by side under the same OTLP/gRPC load from `wasmcol-loadgen`, samples
//! each collector process from `/proc`, and prints a markdown report of medians and ratios.
//!
//! ```sh
//! cargo build --release -p wasmcol --bins
//! cargo run --release -p wasmcol-benches --bin e2e -- --duration 20 --repeats 3
//! # the persistent queue (issue 14): enough connections to keep 10k spans/s going while each
//! # answer waits for the batch processor and the disk
//! cargo run --release -p wasmcol-benches --bin e2e -- --duration 10 --repeats 3 \
//!     --pipelines queue-memory,queue-disk,queue-disk-fsync --fixed-workers 32 --saturated-workers 32
//! ```
//!
//! Scenarios (each run starts a fresh collector process on free 127.0.0.1 ports):
//! - collectors: `wasmcol` with `otlp` (gRPC) → `batch` → `nop`; `wasmcol` with `otlp` →
//!   `batch` → `file` (protobuf, on disk); Rotel with OTLP gRPC → its `blackhole` exporter
//!   (Rotel batches by default, 8192 spans / 200 ms, like our `batch` defaults);
//! - the persistent queue (issue 14), `--pipelines queue-memory,queue-disk,queue-disk-fsync`:
//!   `wasmcol` with `otlp` (gRPC) → `batch` → `otlphttp` whose sending queue is in memory,
//!   on disk (`sending_queue.storage: file_storage`, `fsync: false`) or on disk with
//!   `fsync: true`. The otlphttp destination is a second `wasmcol` (otlp/http → nop) that the
//!   harness starts on a free port; only the first process (the gateway) is measured. A suffix
//!   changes the batch processor: `-batch10ms` (`timeout: 10ms`) or `-nobatch` (none), e.g.
//!   `queue-disk-fsync-nobatch`. With the queue on disk the gateway answers a client only once
//!   its data is stored, so the batch processor's wait is part of the answer time;
//! - loads: a fixed rate (default 10 000 spans/s) and saturated (no rate limit, several
//!   workers, a few hundred spans per request).
//!
//! Measured per run: spans the collector accepted (from the load generator's summary), the
//! collector's CPU time (`utime + stime` of `/proc/PID/stat`, all threads) from just before
//! the load starts until 0.5 s after it ends (so the last batch's flush is included), and its
//! peak resident memory (`VmHWM` of `/proc/PID/status`). Derived: CPU-seconds per million
//! spans, cores used (CPU-seconds / load duration), spans per second per core
//! (= accepted spans / CPU-seconds). For the queue pipelines the run lasts until the gateway
//! has sent everything it accepted (at most 60 s more), so the sending side's CPU is counted
//! too. The load generator's latency percentiles of acknowledged requests (p50/p90/p99/max)
//! are reported per scenario.
//!
//! Every process started is killed when its run ends, including on errors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail, ensure};
use clap::Parser;
use wasmcol_benches::procfs::{clock_ticks, cpu_ticks, free_port, status_mib};

/// Compares wasmcol with Rotel end to end (OTLP/gRPC over loopback) and prints a markdown
/// report. Expects `target/release/wasmcol` and `target/release/wasmcol-loadgen`.
#[derive(Parser, Debug)]
#[command(name = "e2e")]
struct Args {
    /// Seconds of load per run.
    #[arg(long, default_value_t = 20)]
    duration: u64,

    /// What the load is: `traces`, or the same load as `logs` (a log record per span) or
    /// `metrics` (a data point per span), sent by `wasmcol-loadgen --signal`; the pipelines
    /// under test carry that signal, and "spans" in the report are its items.
    #[arg(long, default_value = "traces", value_parser = ["traces", "logs", "metrics"])]
    signal: String,

    /// Runs of each scenario; the report shows medians.
    #[arg(long, default_value_t = 3)]
    repeats: usize,

    /// Spans per second of the fixed-rate load.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,

    /// Spans per trace sent by the load generator.
    #[arg(long, default_value_t = 10)]
    spans_per_trace: u32,

    /// String attributes per span.
    #[arg(long, default_value_t = 10)]
    attributes: u32,

    /// Bytes per attribute value.
    #[arg(long, default_value_t = 64)]
    attribute_size: u32,

    /// Traces per request at the fixed rate (10 traces of 10 spans: 100 spans per request).
    #[arg(long, default_value_t = 10)]
    fixed_batch_traces: u32,

    /// Load generator workers (connections) at the fixed rate.
    #[arg(long, default_value_t = 2)]
    fixed_workers: u32,

    /// Traces per request when saturating (40 traces of 10 spans: 400 spans per request).
    #[arg(long, default_value_t = 40)]
    saturated_batch_traces: u32,

    /// Load generator workers (connections) when saturating.
    #[arg(long, default_value_t = 4)]
    saturated_workers: u32,

    /// Which loads to run.
    #[arg(long, value_delimiter = ',', default_value = "fixed,saturated")]
    loads: Vec<LoadKind>,

    /// Directory holding `wasmcol` and `wasmcol-loadgen` [default: the workspace's
    /// target/release, or $CARGO_TARGET_DIR/release].
    #[arg(long)]
    bin_dir: Option<PathBuf>,

    /// Path of a `rotel-agent` binary; without it the harness installs the PyPI package into
    /// --venv (once) and uses the binary the wheel ships.
    #[arg(long)]
    rotel: Option<PathBuf>,

    /// Virtual environment for the PyPI `rotel` package [default: target/bench-venv].
    #[arg(long)]
    venv: Option<PathBuf>,

    /// What `pip install` is given when the venv has no Rotel yet.
    #[arg(long, default_value = "rotel")]
    rotel_spec: String,

    /// Extra environment for the wasmcol collector process, e.g.
    /// `LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2` to try another allocator;
    /// repeatable. Shown in the report.
    #[arg(long = "wasmcol-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    wasmcol_env: Vec<(String, String)>,

    /// Skip Rotel (wasmcol scenarios only).
    #[arg(long)]
    no_rotel: bool,

    /// Also write the report to this file.
    #[arg(long)]
    output: Option<PathBuf>,

    /// Adds a scenario otlp → batch → wasm plugin → nop with this plugin (`builtin:NAME` or
    /// a `.wasm` path), to compare with the same pipeline without it in the same run.
    #[arg(long)]
    plugin: Option<String>,

    /// The plugin's `config:` as inline YAML (flow style), e.g. `{ mode: noop }`.
    #[arg(long, default_value = "{}")]
    plugin_config: String,

    /// Which wasmcol pipelines to run: `nop`, `file`, `plugin` (needs --plugin), `analytics` (traces: `nop` beside the spanmetrics, servicegraph and trace_analysis connectors), `trace-analysis` (`nop` beside trace_analysis alone), and the
    /// persistent queue's `queue-memory`, `queue-disk`, `queue-disk-fsync`, each optionally
    /// with `-batch10ms` or `-nobatch`.
    #[arg(long, value_delimiter = ',', default_value = "nop,file,plugin")]
    pipelines: Vec<String>,

    /// Directory for the queue pipelines' `file_storage` (a fresh folder per run below it,
    /// removed after the run) [default: the run's temporary directory].
    #[arg(long)]
    queue_dir: Option<PathBuf>,

    /// `compression` of the queue pipelines' otlphttp exporter (`none`, `gzip`, `zstd`); none
    /// by default, so the figures show the queue's cost rather than gzip's.
    #[arg(long, default_value = "none")]
    otlphttp_compression: String,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// A kind of load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum LoadKind {
    /// A fixed rate (--rate spans/s).
    Fixed,
    /// As fast as the load generator can send.
    Saturated,
}

/// A collector setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// wasmcol: otlp → batch → nop.
    WasmcolNop,
    /// wasmcol: otlp → batch → file (proto).
    WasmcolFile,
    /// wasmcol: otlp → batch → wasm plugin (--plugin) → nop.
    WasmcolPlugin,
    /// wasmcol: otlp → batch → nop, and → the trace analytics connectors (`spanmetrics`,
    /// `servicegraph`, `trace_analysis`) → a metrics pipeline → nop (traces only).
    WasmcolAnalytics,
    /// wasmcol: otlp → batch → nop, and → `trace_analysis` alone → a metrics pipeline → nop.
    WasmcolTraceAnalysis,
    /// wasmcol: otlp → (batch) → otlphttp to a second wasmcol, with this sending queue.
    WasmcolQueue(QueueKind, BatchKind),
    /// Rotel: OTLP → blackhole.
    Rotel,
}

/// Where the otlphttp exporter's sending queue lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum QueueKind {
    /// In memory (the default).
    Memory,
    /// `storage: file_storage`, `fsync: false`.
    Disk,
    /// `storage: file_storage`, `fsync: true`.
    DiskFsync,
}

/// The batch processor in front of the otlphttp exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum BatchKind {
    /// `batch: {}` (8192 spans / 200 ms).
    Default,
    /// `batch: { timeout: 10ms }`.
    Timeout10ms,
    /// No batch processor.
    None,
}

impl Target {
    /// The target a `--pipelines` name stands for (`None` for `plugin`, which depends on
    /// --plugin, and for unknown names).
    fn from_pipeline_name(name: &str) -> Option<Self> {
        match name {
            "nop" => return Some(Self::WasmcolNop),
            "file" => return Some(Self::WasmcolFile),
            "analytics" => return Some(Self::WasmcolAnalytics),
            "trace-analysis" => return Some(Self::WasmcolTraceAnalysis),
            _ => {}
        }
        let rest = name.strip_prefix("queue-")?;
        let (rest, batch) = if let Some(r) = rest.strip_suffix("-batch10ms") {
            (r, BatchKind::Timeout10ms)
        } else if let Some(r) = rest.strip_suffix("-nobatch") {
            (r, BatchKind::None)
        } else {
            (rest, BatchKind::Default)
        };
        let queue = match rest {
            "memory" => QueueKind::Memory,
            "disk" => QueueKind::Disk,
            "disk-fsync" => QueueKind::DiskFsync,
            _ => return None,
        };
        Some(Self::WasmcolQueue(queue, batch))
    }

    fn collector(self) -> &'static str {
        match self {
            Self::WasmcolNop
            | Self::WasmcolFile
            | Self::WasmcolPlugin
            | Self::WasmcolAnalytics
            | Self::WasmcolTraceAnalysis
            | Self::WasmcolQueue(..) => "wasmcol",
            Self::Rotel => "Rotel",
        }
    }

    fn pipeline(self) -> String {
        match self {
            Self::WasmcolNop => "otlp/grpc → batch → nop".to_owned(),
            Self::WasmcolFile => "otlp/grpc → batch → file (proto, on disk)".to_owned(),
            Self::WasmcolPlugin => "otlp/grpc → batch → wasm plugin → nop".to_owned(),
            Self::WasmcolAnalytics => "otlp/grpc → batch → nop + spanmetrics + servicegraph + \
                                        trace_analysis (→ metrics → nop)"
                .to_owned(),
            Self::WasmcolTraceAnalysis => {
                "otlp/grpc → batch → nop + trace_analysis (→ metrics → nop)".to_owned()
            }
            Self::WasmcolQueue(queue, batch) => {
                let batch = match batch {
                    BatchKind::Default => "batch → ",
                    BatchKind::Timeout10ms => "batch (10ms) → ",
                    BatchKind::None => "",
                };
                let queue = match queue {
                    QueueKind::Memory => "memory queue",
                    QueueKind::Disk => "disk queue",
                    QueueKind::DiskFsync => "disk queue, fsync",
                };
                format!("otlp/grpc → {batch}otlphttp ({queue})")
            }
            Self::Rotel => "otlp/grpc → (batch) → blackhole".to_owned(),
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
struct RunResult {
    target: Target,
    load: LoadKind,
    repeat: usize,
    /// Spans the collector acknowledged, per the load generator.
    accepted: u64,
    /// Spans refused with a retryable status (back-pressure).
    refused: u64,
    /// Requests that failed otherwise.
    failed_requests: u64,
    /// Seconds the load generator sent for.
    load_secs: f64,
    /// Collector CPU seconds (user + system) over the run.
    cpu_secs: f64,
    /// Resident memory once started, before any load.
    idle_rss_mib: f64,
    /// Peak resident memory (VmHWM) at the end of the run.
    peak_rss_mib: f64,
    /// Spans the collector's exporter reported sent (wasmcol's own metrics), if known.
    exported: Option<u64>,
    /// CPU seconds of the load generator.
    loadgen_cpu_secs: f64,
    /// CPU seconds of everything else on the machine over the run (other people's work on a
    /// shared machine shows up here).
    other_cpu_secs: f64,
    /// CPU seconds of the otlphttp destination (queue pipelines), not part of `cpu_secs`.
    sink_cpu_secs: Option<f64>,
    /// Spans the otlphttp destination received (queue pipelines).
    delivered: Option<u64>,
    /// Seconds from the end of the load until the gateway had sent everything it accepted
    /// (queue pipelines).
    drain_secs: Option<f64>,
    /// Answer time of acknowledged requests, from the load generator: p50, p90, p99, max (ms).
    latency_ms: Option<[f64; 4]>,
}

impl RunResult {
    fn spans_per_sec(&self) -> f64 {
        self.accepted as f64 / self.load_secs
    }
    fn cores(&self) -> f64 {
        self.cpu_secs / self.load_secs
    }
    fn cpu_per_million(&self) -> f64 {
        self.cpu_secs / self.accepted as f64 * 1e6
    }
    fn spans_per_core_sec(&self) -> f64 {
        self.accepted as f64 / self.cpu_secs
    }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A child process that is killed (and reaped) when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> anyhow::Result<Self> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of the log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Fails if the process has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited early ({status}); its log ({}) ends with:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits for the process to exit, killing it after `timeout`.
    fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not finish within {timeout:?}; killed", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs a command to completion with a time limit; its output, or an error with it.
fn run_command(
    what: &str,
    cmd: &mut Command,
    timeout: Duration,
    dir: &Path,
) -> anyhow::Result<String> {
    let log = dir.join(format!("{}.log", what.replace([' ', '/'], "_")));
    let mut p = Proc::spawn(what, cmd, log)?;
    let status = p.wait_timeout(timeout)?;
    let out = std::fs::read_to_string(&p.log).unwrap_or_default();
    ensure!(status.success(), "{what} failed ({status}):\n{out}");
    Ok(out)
}

/// Waits until `port` accepts connections, failing if `proc` dies or 20 s pass.
fn wait_for_port(proc: &mut Proc, port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        proc.check_alive()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not listen on {addr} within 20 s; its log ends with:\n{}",
                proc.name,
                proc.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// /proc sampling
// ---------------------------------------------------------------------------------------------

/// Busy ticks of the whole machine (all CPUs), from `/proc/stat`.
fn machine_busy_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat
        .lines()
        .next()
        .ok_or_else(|| anyhow!("empty /proc/stat"))?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    ensure!(v.len() >= 8, "short /proc/stat line {cpu:?}");
    Ok(v[0] + v[1] + v[2] + v[5] + v[6] + v[7])
}

/// CPU ticks of this process's children that have exited and been waited for (`cutime` +
/// `cstime`): the load generator's CPU time, once it is reaped.
fn reaped_children_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let rest = &stat[stat
        .rfind(')')
        .ok_or_else(|| anyhow!("bad /proc/self/stat"))?
        + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // cutime is field 16, cstime field 17.
    let cutime: u64 = fields
        .get(13)
        .ok_or_else(|| anyhow!("short stat"))?
        .parse()?;
    let cstime: u64 = fields
        .get(14)
        .ok_or_else(|| anyhow!("short stat"))?
        .parse()?;
    Ok(cutime + cstime)
}

/// Sum of every sample of a counter in wasmcol's Prometheus text.
fn scrape_counter(port: u16, name: &str) -> anyhow::Result<u64> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let mut total = 0.0;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name` may end with the first of its labels (`..._total{exporter="nop"`).
        if !(rest.starts_with(['{', ' ']) || name.ends_with('"') && rest.starts_with([',', '}'])) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            total += v;
        }
    }
    Ok(total as u64)
}

// ---------------------------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------------------------

struct Env {
    args: Args,
    wasmcol: PathBuf,
    loadgen: PathBuf,
    rotel: Option<PathBuf>,
    ticks: f64,
    dir: tempfile::TempDir,
    /// `/proc/loadavg` when the harness started.
    load_before: String,
}

/// The gateway of a queue pipeline: otlp/grpc → (batch) → otlphttp to `sink_http`, its sending
/// queue as `queue` says (on disk below `queue_dir`).
fn queue_gateway_config(
    signal: &str,
    queue: QueueKind,
    batch: BatchKind,
    ports: (u16, u16, u16),
    queue_dir: &Path,
    compression: &str,
) -> String {
    let (grpc, metrics, sink_http) = ports;
    let (processors, batch_yaml) = match batch {
        BatchKind::Default => ("[batch]", "  batch: {}\n"),
        BatchKind::Timeout10ms => ("[batch]", "  batch: { timeout: 10ms }\n"),
        BatchKind::None => ("[]", ""),
    };
    let (extensions, storage) = match queue {
        QueueKind::Memory => (String::new(), ""),
        QueueKind::Disk | QueueKind::DiskFsync => (
            format!(
                "extensions:\n  file_storage:\n    directory: {}\n    create_directory: true\n    \
                 fsync: {}\n",
                queue_dir.display(),
                queue == QueueKind::DiskFsync
            ),
            ", storage: file_storage",
        ),
    };
    let service_extensions = if storage.is_empty() {
        ""
    } else {
        "  extensions: [file_storage]\n"
    };
    format!(
        "{extensions}\
         receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n\
         processors:\n{batch_yaml}\
         exporters:\n  otlphttp:\n    endpoint: http://127.0.0.1:{sink_http}\n    \
         compression: {compression}\n    sending_queue: {{ enabled: true{storage} }}\n\
         service:\n{service_extensions}  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics}\n  \
         pipelines:\n    {signal}:\n      receivers: [otlp]\n      processors: {processors}\n      \
         exporters: [otlphttp]\n"
    )
}

/// The queue pipelines' destination: otlp/http → nop.
fn sink_config(signal: &str, http: u16, metrics: u16) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{http}\n\
         exporters:\n  nop: {{}}\n\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics}\n  \
         pipelines:\n    {signal}:\n      receivers: [otlp]\n      exporters: [nop]\n"
    )
}

/// The self-telemetry counter of items an exporter sent, for `signal`.
fn sent_counter(signal: &str) -> &'static str {
    match signal {
        "logs" => "wasmcol_exporter_sent_log_records_total",
        "metrics" => "wasmcol_exporter_sent_metric_points_total",
        _ => "wasmcol_exporter_sent_spans_total",
    }
}

fn wasmcol_config(
    signal: &str,
    target: Target,
    grpc: u16,
    metrics: u16,
    dir: &Path,
    plugin: Option<(&str, &str)>,
) -> String {
    let (processors, plugin_yaml) = match (target, plugin) {
        (Target::WasmcolPlugin, Some((plugin, config))) => (
            "[batch, wasm/plugin]",
            format!("  wasm/plugin:\n    plugin: {plugin}\n    config: {config}\n"),
        ),
        _ => ("[batch]", String::new()),
    };
    let exporter = match target {
        Target::WasmcolFile => format!(
            "  file:\n    path: {}/traces.pb\n    format: proto\n    \
             rotation:\n      max_megabytes: 256\n      max_backups: 1\n",
            dir.display()
        ),
        _ => "  nop: {}\n".to_owned(),
    };
    let name = if target == Target::WasmcolFile {
        "file"
    } else if target == Target::WasmcolAnalytics {
        "nop, spanmetrics, servicegraph, trace_analysis"
    } else if target == Target::WasmcolTraceAnalysis {
        "nop, trace_analysis"
    } else {
        "nop"
    };
    // trace_analysis waits 1 s for a trace's spans (30 s by default): the load's traces
    // arrive whole in one request, and a shorter wait keeps the buffer within its budget at
    // saturation.
    let analysis = "  trace_analysis:\n    decision_wait: 1s\n";
    let (connectors, metrics_pipeline) = match target {
        Target::WasmcolAnalytics => (
            format!("connectors:\n  spanmetrics: {{}}\n  servicegraph: {{}}\n{analysis}"),
            "    metrics:\n      receivers: [spanmetrics, servicegraph, trace_analysis]\n      \
             exporters: [nop]\n",
        ),
        Target::WasmcolTraceAnalysis => (
            format!("connectors:\n{analysis}"),
            "    metrics:\n      receivers: [trace_analysis]\n      exporters: [nop]\n",
        ),
        _ => (String::new(), ""),
    };
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n\
         processors:\n  batch: {{}}\n{plugin_yaml}\
         exporters:\n{exporter}{connectors}\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics}\n  \
         pipelines:\n    {signal}:\n      receivers: [otlp]\n      processors: {processors}\n      \
         exporters: [{name}]\n{metrics_pipeline}"
    )
}

/// A started collector under test.
struct Started {
    collector: Proc,
    /// Its OTLP/gRPC port.
    grpc: u16,
    /// Its metrics port (wasmcol).
    metrics: Option<u16>,
    /// The otlphttp destination of a queue pipeline, and its metrics port.
    sink: Option<(Proc, u16)>,
}

/// Starts the `wasmcol` under test on `config` and waits until it listens on `grpc`.
fn spawn_wasmcol(env: &Env, config: &Path, run_dir: &Path, grpc: u16) -> anyhow::Result<Proc> {
    let mut p = Proc::spawn(
        "wasmcol",
        Command::new(&env.wasmcol)
            .arg("--config")
            .arg(config)
            .envs(env.args.wasmcol_env.iter().map(|(k, v)| (k, v))),
        run_dir.join("wasmcol.log"),
    )?;
    wait_for_port(&mut p, grpc)?;
    Ok(p)
}

/// Starts the collector of `target` (and, for a queue pipeline, its destination first).
fn start_collector(env: &Env, target: Target, run_dir: &Path) -> anyhow::Result<Started> {
    let grpc = free_port()?;
    match target {
        Target::WasmcolQueue(queue, batch) => {
            let (sink_http, sink_metrics) = (free_port()?, free_port()?);
            let sink_yaml = run_dir.join("sink.yaml");
            std::fs::write(
                &sink_yaml,
                sink_config(&env.args.signal, sink_http, sink_metrics),
            )?;
            let mut sink = Proc::spawn(
                "wasmcol (otlphttp destination)",
                Command::new(&env.wasmcol).arg("--config").arg(&sink_yaml),
                run_dir.join("sink.log"),
            )?;
            wait_for_port(&mut sink, sink_http)?;

            let metrics = free_port()?;
            let queue_dir = queue_dir_of(env, run_dir, target).expect("a queue pipeline");
            let config = run_dir.join("wasmcol.yaml");
            std::fs::write(
                &config,
                queue_gateway_config(
                    &env.args.signal,
                    queue,
                    batch,
                    (grpc, metrics, sink_http),
                    &queue_dir,
                    &env.args.otlphttp_compression,
                ),
            )?;
            let p = spawn_wasmcol(env, &config, run_dir, grpc)?;
            Ok(Started {
                collector: p,
                grpc,
                metrics: Some(metrics),
                sink: Some((sink, sink_metrics)),
            })
        }
        Target::WasmcolNop
        | Target::WasmcolFile
        | Target::WasmcolPlugin
        | Target::WasmcolAnalytics
        | Target::WasmcolTraceAnalysis => {
            let metrics = free_port()?;
            let config = run_dir.join("wasmcol.yaml");
            let plugin = env
                .args
                .plugin
                .as_deref()
                .map(|p| (p, env.args.plugin_config.as_str()));
            std::fs::write(
                &config,
                wasmcol_config(&env.args.signal, target, grpc, metrics, run_dir, plugin),
            )?;
            let p = spawn_wasmcol(env, &config, run_dir, grpc)?;
            Ok(Started {
                collector: p,
                grpc,
                metrics: Some(metrics),
                sink: None,
            })
        }
        Target::Rotel => {
            let rotel = env.rotel.as_ref().expect("Rotel scenarios need Rotel");
            let http = free_port()?;
            let mut p = Proc::spawn(
                "rotel-agent",
                Command::new(rotel)
                    .arg("start")
                    .args(["--exporter", "blackhole"])
                    .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
                    .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
                    .arg("--pid-file")
                    .arg(run_dir.join("rotel.pid"))
                    .arg("--log-file")
                    .arg(run_dir.join("rotel-agent-file.log")),
                run_dir.join("rotel.log"),
            )?;
            wait_for_port(&mut p, grpc)?;
            Ok(Started {
                collector: p,
                grpc,
                metrics: None,
                sink: None,
            })
        }
    }
}

fn loadgen_args(args: &Args, load: LoadKind, port: u16) -> Vec<String> {
    let spt = args.spans_per_trace;
    let mut v: Vec<String> = vec![
        "--signal".into(),
        args.signal.clone(),
        "--endpoint".into(),
        format!("127.0.0.1:{port}"),
        "--duration".into(),
        format!("{}s", args.duration),
        "--spans-per-trace".into(),
        spt.to_string(),
        "--attributes".into(),
        args.attributes.to_string(),
        "--attribute-size".into(),
        args.attribute_size.to_string(),
        "--json".into(),
        "--quiet".into(),
    ];
    let (rate, batch, workers) = match load {
        LoadKind::Fixed => (
            args.rate as f64 / f64::from(spt),
            args.fixed_batch_traces,
            args.fixed_workers,
        ),
        LoadKind::Saturated => (0.0, args.saturated_batch_traces, args.saturated_workers),
    };
    v.extend([
        "--rate".into(),
        rate.to_string(),
        "--batch-traces".into(),
        batch.to_string(),
        "--workers".into(),
        workers.to_string(),
    ]);
    v
}

fn one_run(env: &Env, target: Target, load: LoadKind, repeat: usize) -> anyhow::Result<RunResult> {
    let run_dir = env
        .dir
        .path()
        .join(format!("{target:?}-{load:?}-{repeat}").to_lowercase());
    std::fs::create_dir_all(&run_dir)?;
    let started = start_collector(env, target, &run_dir)?;
    let result = measure(env, target, load, repeat, &run_dir, started);
    if let Some(dir) = queue_dir_of(env, &run_dir, target) {
        // Queued data is not needed once the run is measured (and can be large).
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// The `file_storage` directory `start_collector` gives a queue pipeline's run.
fn queue_dir_of(env: &Env, run_dir: &Path, target: Target) -> Option<PathBuf> {
    matches!(target, Target::WasmcolQueue(..)).then(|| {
        env.args
            .queue_dir
            .as_deref()
            .unwrap_or(run_dir)
            .join(format!(
                "queue-{}",
                run_dir
                    .file_name()
                    .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned())
            ))
    })
}

fn measure(
    env: &Env,
    target: Target,
    load: LoadKind,
    repeat: usize,
    run_dir: &Path,
    started: Started,
) -> anyhow::Result<RunResult> {
    let Started {
        mut collector,
        grpc: port,
        metrics: metrics_port,
        mut sink,
    } = started;
    let pid = collector.pid();
    // Let start-up work (threads, allocator arenas) settle before the baseline.
    std::thread::sleep(Duration::from_secs(1));
    collector.check_alive()?;
    let idle_rss_mib = status_mib(pid, "VmRSS:")?;
    let cpu0 = cpu_ticks(pid)?;
    let sink_cpu0 = match &sink {
        Some((p, _)) => Some(cpu_ticks(p.pid())?),
        None => None,
    };
    let machine0 = machine_busy_ticks()?;
    let children0 = reaped_children_ticks()?;

    let mut gen_cmd = Command::new(&env.loadgen);
    gen_cmd.args(loadgen_args(&env.args, load, port));
    let out = run_command(
        "wasmcol-loadgen",
        &mut gen_cmd,
        Duration::from_secs(env.args.duration + 30),
        run_dir,
    )?;
    let children1 = reaped_children_ticks()?;
    let json_line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| anyhow!("no JSON summary from wasmcol-loadgen:\n{out}"))?;
    let summary: serde_json::Value = serde_json::from_str(json_line)
        .with_context(|| format!("parsing the load generator's summary {json_line:?}"))?;
    let field = |k: &str| {
        summary
            .get(k)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| anyhow!("no {k:?} in the load generator's summary {json_line}"))
    };
    let accepted = field("spans_accepted")? as u64;

    // A queue pipeline may still be sending what it accepted: wait for it (bounded), so the
    // sending side's CPU is part of the run.
    let load_end = Instant::now();
    let mut drain_secs = None;
    if let (Some(_), Some(m)) = (&sink, metrics_port) {
        let deadline = load_end + Duration::from_secs(60);
        loop {
            collector.check_alive()?;
            if scrape_counter(m, sent_counter(&env.args.signal))? >= accepted {
                drain_secs = Some(load_end.elapsed().as_secs_f64());
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The batch processors flush on a 200 ms timer: include that in the run.
    std::thread::sleep(Duration::from_millis(500));
    collector.check_alive()?;
    let cpu1 = cpu_ticks(pid)?;
    let sink_cpu1 = match &mut sink {
        Some((p, _)) => {
            p.check_alive()?;
            Some(cpu_ticks(p.pid())?)
        }
        None => None,
    };
    let machine1 = machine_busy_ticks()?;
    let peak_rss_mib = status_mib(pid, "VmHWM:")?;

    let exported = match metrics_port {
        // The connectors count what they take in as exporters do: only `nop`'s is exported.
        Some(p)
            if matches!(
                target,
                Target::WasmcolAnalytics | Target::WasmcolTraceAnalysis
            ) =>
        {
            Some(scrape_counter(
                p,
                &format!("{}{{exporter=\"nop\"", sent_counter(&env.args.signal)),
            )?)
        }
        Some(p) => Some(scrape_counter(p, sent_counter(&env.args.signal))?),
        None => None,
    };
    let delivered = match &sink {
        Some((_, m)) => Some(scrape_counter(*m, sent_counter(&env.args.signal))?),
        None => None,
    };
    drop(collector);
    drop(sink);
    if target == Target::WasmcolFile {
        // The file is not needed once the run is measured.
        let _ = std::fs::remove_file(run_dir.join("traces.pb"));
    }

    let cpu_secs = (cpu1 - cpu0) as f64 / env.ticks;
    let loadgen_cpu_secs = (children1 - children0) as f64 / env.ticks;
    let sink_cpu_secs = sink_cpu0
        .zip(sink_cpu1)
        .map(|(a, b)| (b - a) as f64 / env.ticks);
    let machine_secs = machine1.saturating_sub(machine0) as f64 / env.ticks;
    ensure!(accepted > 0, "the collector accepted no spans: {json_line}");
    let latency = |k: &str| summary.get(k).and_then(serde_json::Value::as_f64);
    let latency_ms = match (
        latency("latency_p50_ms"),
        latency("latency_p90_ms"),
        latency("latency_p99_ms"),
        latency("latency_max_ms"),
    ) {
        (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d]),
        _ => None,
    };
    Ok(RunResult {
        target,
        load,
        repeat,
        accepted,
        refused: field("spans_refused")? as u64,
        failed_requests: field("requests_failed")? as u64,
        load_secs: field("elapsed_secs")?,
        cpu_secs,
        idle_rss_mib,
        peak_rss_mib,
        exported,
        loadgen_cpu_secs,
        other_cpu_secs: (machine_secs - cpu_secs - loadgen_cpu_secs - sink_cpu_secs.unwrap_or(0.0))
            .max(0.0),
        sink_cpu_secs,
        delivered,
        drain_secs,
        latency_ms,
    })
}

// ---------------------------------------------------------------------------------------------
// Setup: binaries, Rotel, machine
// ---------------------------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ is inside the workspace")
        .to_path_buf()
}

fn find_binaries(args: &Args) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("release"),
    };
    let wasmcol = dir.join("wasmcol");
    let loadgen = dir.join("wasmcol-loadgen");
    for b in [&wasmcol, &loadgen] {
        ensure!(
            b.is_file(),
            "{} is missing: build the release binaries first with\n\n    \
             cargo build --release -p wasmcol --bins\n",
            b.display()
        );
    }
    Ok((wasmcol, loadgen))
}

/// Copies the binaries into `dir`, so that a rebuild of the workspace during a long run
/// (other people build in the same tree) cannot change what is measured half-way.
fn snapshot(bins: [&Path; 2], dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let copy = |b: &Path| -> anyhow::Result<PathBuf> {
        let to = dir.join(b.file_name().expect("a file name"));
        std::fs::copy(b, &to).with_context(|| format!("copying {}", b.display()))?;
        Ok(to)
    };
    Ok((copy(bins[0])?, copy(bins[1])?))
}

/// The `rotel-agent` binary: given, or from the PyPI package in the venv (installed if needed).
fn find_rotel(args: &Args, scratch: &Path) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.rotel {
        ensure!(p.is_file(), "--rotel {} does not exist", p.display());
        return Ok(p.clone());
    }
    let venv = args
        .venv
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/bench-venv"));
    let python = venv.join("bin/python");
    let locate = |python: &Path| -> anyhow::Result<PathBuf> {
        let out = Command::new(python)
            .args([
                "-c",
                "import os, rotel; print(os.path.dirname(rotel.__file__))",
            ])
            .stderr(Stdio::null())
            .output()?;
        ensure!(out.status.success(), "rotel is not installed in the venv");
        let dir = PathBuf::from(String::from_utf8(out.stdout)?.trim());
        let direct = dir.join("rotel-agent");
        if direct.is_file() {
            return Ok(direct);
        }
        // Otherwise look through the package for the binary.
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().is_some_and(|n| n == "rotel-agent") {
                    return Ok(p);
                }
            }
        }
        bail!("no rotel-agent binary under {}", dir.display())
    };
    if python.is_file() {
        if let Ok(p) = locate(&python) {
            return Ok(p);
        }
    } else {
        eprintln!("e2e: creating {} for Rotel", venv.display());
        run_command(
            "python3 -m venv",
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            Duration::from_secs(120),
            scratch,
        )?;
    }
    eprintln!(
        "e2e: pip install {} into {}",
        args.rotel_spec,
        venv.display()
    );
    run_command(
        "pip install rotel",
        Command::new(venv.join("bin/pip")).args(["install", "--quiet", &args.rotel_spec]),
        Duration::from_secs(600),
        scratch,
    )?;
    locate(&python)
}

fn rotel_version(rotel: &Path) -> String {
    let agent = Command::new(rotel)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    // The wheel's version, if the binary sits in a Python package.
    let wheel = rotel
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "site-packages"))
        .and_then(|sp| {
            std::fs::read_dir(sp).ok()?.flatten().find_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_prefix("rotel-")
                    .and_then(|v| v.strip_suffix(".dist-info"))
                    .map(str::to_owned)
            })
        });
    match wheel {
        Some(w) => format!("`{agent}` (PyPI `rotel` {w})"),
        None => format!("`{agent}`"),
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| {
            l["MemTotal:".len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), {mem_gib:.1} GiB RAM, Linux {}",
        kernel.trim()
    )
}

/// Today's UTC date as YYYY-MM-DD.
fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians of one scenario's runs.
struct Medians {
    runs: usize,
    spans_per_sec: f64,
    cores: f64,
    cpu_per_million: f64,
    spans_per_core: f64,
    idle_rss: f64,
    peak_rss: f64,
    refused: f64,
    refused_pct: f64,
    /// p50, p90, p99, max of acknowledged requests (ms), each the median over the runs.
    latency_ms: Option<[f64; 4]>,
}

fn medians(runs: &[&RunResult]) -> Medians {
    let m = |f: fn(&RunResult) -> f64| median(runs.iter().map(|r| f(r)).collect());
    Medians {
        runs: runs.len(),
        spans_per_sec: m(RunResult::spans_per_sec),
        cores: m(RunResult::cores),
        cpu_per_million: m(RunResult::cpu_per_million),
        spans_per_core: m(RunResult::spans_per_core_sec),
        idle_rss: m(|r| r.idle_rss_mib),
        peak_rss: m(|r| r.peak_rss_mib),
        refused: m(|r| r.refused as f64),
        refused_pct: m(|r| 100.0 * r.refused as f64 / (r.accepted + r.refused) as f64),
        latency_ms: runs.iter().all(|r| r.latency_ms.is_some()).then(|| {
            std::array::from_fn(|i| {
                median(
                    runs.iter()
                        .filter_map(|r| r.latency_ms)
                        .map(|l| l[i])
                        .collect(),
                )
            })
        }),
    }
}

/// The file system type of `dir` (`ext4`, `tmpfs`, ...): that of the longest mount point of
/// `/proc/self/mounts` holding it.
fn fs_type(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(point)
                .then(|| (point.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".to_owned(), |(_, kind)| kind)
}

/// The load average of `/proc/loadavg` (1, 5, 15 minutes).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 && c != '-' {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

/// The persistent queue's tables: each queue pipeline against the in-memory queue (with the
/// same batch processor) of the same load, and the latency of acknowledged requests of every
/// scenario.
fn queue_sections(r: &mut String, a: &Args, med: &BTreeMap<(LoadKind, Target), Medians>) {
    if !med
        .keys()
        .any(|(_, t)| matches!(t, Target::WasmcolQueue(..)))
    {
        return;
    }
    let load_name = |load: LoadKind| match load {
        LoadKind::Fixed => format!("{} spans/s", thousands(a.rate as f64)),
        LoadKind::Saturated => "saturated".to_owned(),
    };
    let _ = writeln!(
        r,
        "\n### Persistent queue: ratios to the in-memory queue (medians; the in-memory queue \
         with the same batch processor and load = 1)\n"
    );
    let _ = writeln!(
        r,
        "| load | pipeline | accepted spans/s | spans/s per core | CPU-s per M spans | peak RSS MiB | CPU per span ratio | spans/s per core ratio | peak RSS ratio |"
    );
    let _ = writeln!(r, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (&(load, target), m) in med {
        let Target::WasmcolQueue(_, batch) = target else {
            continue;
        };
        let base = med.get(&(load, Target::WasmcolQueue(QueueKind::Memory, batch)));
        let ratio = |f: fn(&Medians) -> f64| {
            base.map_or("n/a".to_owned(), |b| format!("{:.2}", f(m) / f(b)))
        };
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {:.2} | {:.1} | {} | {} | {} |",
            load_name(load),
            target.pipeline(),
            thousands(m.spans_per_sec),
            thousands(m.spans_per_core),
            m.cpu_per_million,
            m.peak_rss,
            ratio(|m| m.cpu_per_million),
            ratio(|m| m.spans_per_core),
            ratio(|m| m.peak_rss),
        );
    }

    let _ = writeln!(
        r,
        "\n### Latency of acknowledged requests (load generator, ms; medians over runs)\n"
    );
    let _ = writeln!(r, "| load | collector | pipeline | p50 | p90 | p99 | max |");
    let _ = writeln!(r, "|---|---|---|---:|---:|---:|---:|");
    for (&(load, target), m) in med {
        let Some([p50, p90, p99, max]) = m.latency_ms else {
            continue;
        };
        let _ = writeln!(
            r,
            "| {} | {} | {} | {p50:.1} | {p90:.1} | {p99:.1} | {max:.1} |",
            load_name(load),
            target.collector(),
            target.pipeline(),
        );
    }
}

fn report(
    env: &Env,
    results: &[RunResult],
    failures: &[String],
    rotel_version: &str,
    wasmcol_version: &str,
) -> String {
    let a = &env.args;
    let mut r = String::new();
    let cmd: Vec<String> = std::env::args().collect();
    let _ = writeln!(
        r,
        "## End to end: wasmcol vs Rotel (OTLP/gRPC over loopback)\n"
    );
    let _ = writeln!(r, "- date: {} (UTC)", today());
    let _ = writeln!(r, "- machine: {}", machine());
    let _ = writeln!(r, "- command: `{}`", cmd.join(" "));
    let _ = writeln!(r, "- wasmcol: `{wasmcol_version}`; Rotel: {rotel_version}");
    if a.signal != "traces" {
        let _ = writeln!(
            r,
            "- signal: **{}**, one {} per span of the load described below; \"spans\" in the \
             tables are {}",
            a.signal,
            if a.signal == "logs" {
                "log record"
            } else {
                "data point"
            },
            if a.signal == "logs" {
                "log records"
            } else {
                "data points"
            },
        );
    }
    if !a.wasmcol_env.is_empty() {
        let vars: Vec<String> = a
            .wasmcol_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(r, "- wasmcol ran with environment: `{}`", vars.join(" "));
    }
    let _ = writeln!(
        r,
        "- load: `wasmcol-loadgen` on the same machine, traces of {} spans, {} string attributes \
         of {} B per span; fixed: {} spans/s in requests of {} spans over {} connections; \
         saturated: no rate limit, requests of {} spans over {} connections; {} s per run, \
         medians of {} runs (a fresh collector process per run)",
        a.spans_per_trace,
        a.attributes,
        a.attribute_size,
        a.rate,
        a.fixed_batch_traces * a.spans_per_trace,
        a.fixed_workers,
        a.saturated_batch_traces * a.spans_per_trace,
        a.saturated_workers,
        a.duration,
        a.repeats
    );
    let _ = writeln!(
        r,
        "- CPU = the collector process's user+system time from `/proc/PID/stat` over the run; \
         peak RSS = `VmHWM`; idle RSS = `VmRSS` 1 s after start; spans/s per core = accepted \
         spans / collector CPU-seconds; \"other CPU s\" in the last table is everything else \
         that ran on the machine during the run (a shared machine is noisy)"
    );
    let _ = writeln!(
        r,
        "- load average (1, 5, 15 min) at the start: {}; at the end: {}",
        env.load_before,
        load_average()
    );
    if results
        .iter()
        .any(|res| matches!(res.target, Target::WasmcolQueue(..)))
    {
        let queue_dir = a.queue_dir.as_deref().unwrap_or(env.dir.path());
        let _ = writeln!(
            r,
            "- queue pipelines: the otlphttp exporter (`compression: {}`, sending queue \
             defaults: 10 consumers, 64 MiB) sends to a second `wasmcol` (otlp/http → nop) \
             on the same machine; only the gateway (the first process) is measured, the \
             destination's CPU is in the last table. A run lasts until the gateway has sent \
             everything it accepted (\"drain s\" after the load), plus 0.5 s. `file_storage` \
             directory: {} ({}). Latency = the load generator's time from sending a request to \
             its success answer, acknowledged requests only (median over runs of each \
             percentile)",
            a.otlphttp_compression,
            queue_dir.display(),
            fs_type(queue_dir)
        );
    }
    let _ = writeln!(r);

    let mut groups: BTreeMap<(LoadKind, Target), Vec<&RunResult>> = BTreeMap::new();
    for res in results {
        groups.entry((res.load, res.target)).or_default().push(res);
    }
    let med: BTreeMap<(LoadKind, Target), Medians> =
        groups.iter().map(|(k, v)| (*k, medians(v))).collect();

    let _ = writeln!(
        r,
        "| load | collector | pipeline | runs | accepted spans/s | refused % | collector cores | CPU-s per M spans | spans/s per core | idle RSS MiB | peak RSS MiB |"
    );
    let _ = writeln!(r, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((load, target), m) in &med {
        let load_name = match load {
            LoadKind::Fixed => format!("{} spans/s", thousands(a.rate as f64)),
            LoadKind::Saturated => "saturated".to_owned(),
        };
        let _ = writeln!(
            r,
            "| {load_name} | {} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {} | {:.1} | {:.1} |",
            target.collector(),
            target.pipeline(),
            m.runs,
            thousands(m.spans_per_sec),
            m.refused_pct,
            m.cores,
            m.cpu_per_million,
            thousands(m.spans_per_core),
            m.idle_rss,
            m.peak_rss
        );
    }

    let rotel_of = |load| med.get(&(load, Target::Rotel));
    if med.keys().any(|(_, t)| *t == Target::Rotel) {
        let _ = writeln!(
            r,
            "\n### Ratios, wasmcol / Rotel (medians; below 1 favours wasmcol)\n"
        );
        let _ = writeln!(
            r,
            "| load | wasmcol pipeline | CPU per span | peak RSS | spans/s per core |"
        );
        let _ = writeln!(r, "|---|---|---:|---:|---:|");
        for ((load, target), m) in &med {
            if *target == Target::Rotel {
                continue;
            }
            if let Some(rm) = rotel_of(*load) {
                let _ = writeln!(
                    r,
                    "| {load:?} | {} | {:.2} | {:.2} | {:.2} |",
                    target.pipeline(),
                    m.cpu_per_million / rm.cpu_per_million,
                    m.peak_rss / rm.peak_rss,
                    m.spans_per_core / rm.spans_per_core
                );
            }
        }
    }

    queue_sections(&mut r, a, &med);

    let _ = writeln!(r, "\n### Targets\n");
    let fixed = |t| med.get(&(LoadKind::Fixed, t));
    if let (Some(w), Some(rt)) = (fixed(Target::WasmcolNop), fixed(Target::Rotel)) {
        let _ = writeln!(
            r,
            "- at {} spans/s, collector CPU ≤ Rotel's: wasmcol (nop) {:.3} vs Rotel {:.3} \
             CPU-s per M spans ({:.2}×) → {}",
            thousands(a.rate as f64),
            w.cpu_per_million,
            rt.cpu_per_million,
            w.cpu_per_million / rt.cpu_per_million,
            verdict(w.cpu_per_million <= rt.cpu_per_million)
        );
    }
    if let (Some(w), Some(rt)) = (fixed(Target::WasmcolFile), fixed(Target::Rotel)) {
        let _ = writeln!(
            r,
            "  - with the file exporter (writes to disk, Rotel's blackhole does not): {:.3} \
             CPU-s per M spans ({:.2}× Rotel)",
            w.cpu_per_million,
            w.cpu_per_million / rt.cpu_per_million
        );
    }
    for t in [Target::WasmcolNop, Target::WasmcolFile] {
        if let Some(w) = fixed(t) {
            let _ = writeln!(
                r,
                "- at {} spans/s, RSS ≤ 30 MiB ({}): peak {:.1} MiB → {}",
                thousands(a.rate as f64),
                t.pipeline(),
                w.peak_rss,
                verdict(w.peak_rss <= 30.0)
            );
        }
    }
    if let Some(w) = med.get(&(LoadKind::Saturated, Target::WasmcolFile)) {
        let _ = writeln!(
            r,
            "- saturated OTLP/gRPC → file ≥ 300K spans/s per collector core: {} spans/s per \
             core ({} spans/s on {:.2} cores) → {}",
            thousands(w.spans_per_core),
            thousands(w.spans_per_sec),
            w.cores,
            verdict(w.spans_per_core >= 300_000.0)
        );
    }
    for (&(load, target), m) in &med {
        if load == LoadKind::Saturated
            && let Target::WasmcolQueue(QueueKind::Disk | QueueKind::DiskFsync, _) = target
        {
            let _ = writeln!(
                r,
                "- saturated, persistent queue ≥ 250K spans/s per gateway core ({}): {} spans/s \
                 per core ({} spans/s on {:.2} cores) → {}",
                target.pipeline(),
                thousands(m.spans_per_core),
                thousands(m.spans_per_sec),
                m.cores,
                verdict(m.spans_per_core >= 250_000.0)
            );
        }
    }
    let refused: Vec<String> = med
        .iter()
        .filter(|(_, m)| m.refused > 0.0)
        .map(|((l, t), m)| format!("{l:?}/{}: {}", t.pipeline(), thousands(m.refused)))
        .collect();
    if !refused.is_empty() {
        let _ = writeln!(
            r,
            "- spans refused with a retryable status (back-pressure), median per run: {}",
            refused.join("; ")
        );
    }

    let _ = writeln!(r, "\n### Every run\n");
    let _ = writeln!(
        r,
        "| load | pipeline | run | accepted spans | refused | failed requests | exported (collector's count) | delivered (destination's count) | load s | drain s | collector CPU s | destination CPU s | loadgen CPU s | other CPU s | idle RSS MiB | peak RSS MiB | latency p50 / p99 / max ms |"
    );
    let _ = writeln!(
        r,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for res in results {
        let _ = writeln!(
            r,
            "| {:?} | {} {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.2} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {} |",
            res.load,
            res.target.collector(),
            res.target.pipeline(),
            res.repeat + 1,
            res.accepted,
            res.refused,
            res.failed_requests,
            res.exported.map_or("n/a".to_owned(), |e| e.to_string()),
            res.delivered.map_or("n/a".to_owned(), |e| e.to_string()),
            res.load_secs,
            match (res.drain_secs, &res.target) {
                (Some(d), _) => format!("{d:.2}"),
                (None, Target::WasmcolQueue(..)) => "> 60 (not all sent)".to_owned(),
                (None, _) => "n/a".to_owned(),
            },
            res.cpu_secs,
            res.sink_cpu_secs
                .map_or("n/a".to_owned(), |c| format!("{c:.2}")),
            res.loadgen_cpu_secs,
            res.other_cpu_secs,
            res.idle_rss_mib,
            res.peak_rss_mib,
            res.latency_ms.map_or("n/a".to_owned(), |l| format!(
                "{:.1} / {:.1} / {:.1}",
                l[0], l[2], l[3]
            )),
        );
    }
    if !failures.is_empty() {
        let _ = writeln!(r, "\n### Failed runs\n");
        for f in failures {
            let _ = writeln!(r, "- {}", f.replace('\n', " / "));
        }
    }
    r
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match real_main(args) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("e2e: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main(args: Args) -> anyhow::Result<bool> {
    ensure!(
        args.duration > 0 && args.repeats > 0,
        "--duration and --repeats must be positive"
    );
    let (wasmcol, loadgen) = find_binaries(&args)?;
    let dir = tempfile::Builder::new().prefix("wasmcol-e2e-").tempdir()?;
    let (wasmcol, loadgen) = snapshot([&wasmcol, &loadgen], dir.path())?;
    let rotel = if args.no_rotel {
        None
    } else {
        Some(find_rotel(&args, dir.path())?)
    };
    let rotel_version = rotel.as_deref().map_or("not run".to_owned(), rotel_version);
    let wasmcol_version = Command::new(&wasmcol)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let env = Env {
        ticks: clock_ticks(),
        wasmcol,
        loadgen,
        rotel,
        dir,
        args,
        load_before: load_average(),
    };

    let mut targets = Vec::new();
    for name in &env.args.pipelines {
        let target = match name.as_str() {
            "plugin" if env.args.plugin.is_some() => Target::WasmcolPlugin,
            "plugin" => continue,
            other => Target::from_pipeline_name(other).ok_or_else(|| {
                anyhow!(
                    "--pipelines: unknown pipeline {other:?} (nop, file, plugin, analytics, trace-analysis, \
                     queue-memory, queue-disk, queue-disk-fsync, optionally with \
                     -batch10ms or -nobatch)"
                )
            })?,
        };
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    if env.rotel.is_some() {
        targets.push(Target::Rotel);
    }
    let mut loads = env.args.loads.clone();
    loads.sort();
    loads.dedup();
    let total = env.args.repeats * loads.len() * targets.len();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let mut n = 0;
    // Round-robin over scenarios, so slow drifts of a shared machine spread over all of them.
    for repeat in 0..env.args.repeats {
        for &load in &loads {
            for &target in &targets {
                n += 1;
                eprint!(
                    "e2e: [{n}/{total}] {load:?} load, {} ({}), run {} ... ",
                    target.collector(),
                    target.pipeline(),
                    repeat + 1
                );
                match one_run(&env, target, load, repeat) {
                    Ok(res) => {
                        eprintln!(
                            "{} spans/s, {:.2} cores, {:.2} CPU-s/M spans, peak {:.1} MiB",
                            thousands(res.spans_per_sec()),
                            res.cores(),
                            res.cpu_per_million(),
                            res.peak_rss_mib
                        );
                        results.push(res);
                    }
                    Err(e) => {
                        eprintln!("FAILED: {e:#}");
                        failures.push(format!(
                            "{load:?} {} run {}: {e:#}",
                            target.pipeline(),
                            repeat + 1
                        ));
                    }
                }
            }
        }
    }
    let text = report(&env, &results, &failures, &rotel_version, &wasmcol_version);
    println!("{text}");
    if let Some(path) = &env.args.output {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(failures.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every generated configuration is one wasmcol accepts.
    #[test]
    fn queue_configs_are_valid() {
        let dir = Path::new("/tmp/wasmcol-e2e-test-queue");
        let check = |yaml: &str| {
            if let Err(e) = wasmcol::config::Config::parse("e2e", yaml, &|_| None) {
                panic!("{yaml}\n{e:?}");
            }
        };
        for queue in [QueueKind::Memory, QueueKind::Disk, QueueKind::DiskFsync] {
            for batch in [BatchKind::Default, BatchKind::Timeout10ms, BatchKind::None] {
                let yaml =
                    queue_gateway_config("traces", queue, batch, (4317, 8888, 4318), dir, "none");
                check(&yaml);
                assert_eq!(
                    yaml.contains("storage: file_storage"),
                    queue != QueueKind::Memory
                );
                assert_eq!(
                    yaml.contains("fsync: true"),
                    queue == QueueKind::DiskFsync,
                    "{yaml}"
                );
                assert_eq!(
                    yaml.contains("timeout: 10ms"),
                    batch == BatchKind::Timeout10ms
                );
                assert_eq!(yaml.contains("[batch]"), batch != BatchKind::None);
            }
        }
        check(&sink_config("traces", 4318, 8889));
    }

    #[test]
    fn pipeline_names() {
        assert_eq!(Target::from_pipeline_name("nop"), Some(Target::WasmcolNop));
        assert_eq!(
            Target::from_pipeline_name("queue-disk-fsync"),
            Some(Target::WasmcolQueue(
                QueueKind::DiskFsync,
                BatchKind::Default
            ))
        );
        assert_eq!(
            Target::from_pipeline_name("queue-disk-batch10ms"),
            Some(Target::WasmcolQueue(
                QueueKind::Disk,
                BatchKind::Timeout10ms
            ))
        );
        assert_eq!(
            Target::from_pipeline_name("queue-memory-nobatch"),
            Some(Target::WasmcolQueue(QueueKind::Memory, BatchKind::None))
        );
        assert_eq!(Target::from_pipeline_name("queue-tape"), None);
        assert_eq!(Target::from_pipeline_name("plugin"), None);
    }
}
