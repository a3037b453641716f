//! `e2e`: the end-to-end benchmark. Runs the release `wasmcol` binary and Rotel's
//! `rotel-agent` side by side under the same OTLP/gRPC load from `wasmcol-loadgen`, samples
//! each collector process from `/proc`, and prints a markdown report of medians and ratios.
//!
//! ```sh
//! cargo build --release -p wasmcol --bins
//! cargo run --release -p wasmcol-benches --bin e2e -- --duration 20 --repeats 3
//! ```
//!
//! Scenarios (each run starts a fresh collector process on free 127.0.0.1 ports):
//! - collectors: `wasmcol` with `otlp` (gRPC) → `batch` → `nop`; `wasmcol` with `otlp` →
//!   `batch` → `file` (protobuf, on disk); Rotel with OTLP gRPC → its `blackhole` exporter
//!   (Rotel batches by default, 8192 spans / 200 ms, like our `batch` defaults);
//! - loads: a fixed rate (default 10 000 spans/s) and saturated (no rate limit, several
//!   workers, a few hundred spans per request).
//!
//! Measured per run: spans the collector accepted (from the load generator's summary), the
//! collector's CPU time (`utime + stime` of `/proc/PID/stat`, all threads) from just before
//! the load starts until 0.5 s after it ends (so the last batch's flush is included), and its
//! peak resident memory (`VmHWM` of `/proc/PID/status`). Derived: CPU-seconds per million
//! spans, cores used (CPU-seconds / load duration), spans per second per core
//! (= accepted spans / CPU-seconds).
//!
//! Every process started is killed when its run ends, including on errors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail, ensure};
use clap::Parser;

/// Compares wasmcol with Rotel end to end (OTLP/gRPC over loopback) and prints a markdown
/// report. Expects `target/release/wasmcol` and `target/release/wasmcol-loadgen`.
#[derive(Parser, Debug)]
#[command(name = "e2e")]
struct Args {
    /// Seconds of load per run.
    #[arg(long, default_value_t = 20)]
    duration: u64,

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

    /// Which wasmcol pipelines to run (the plugin one needs --plugin).
    #[arg(long, value_delimiter = ',', default_value = "nop,file,plugin")]
    pipelines: Vec<String>,
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
    /// Rotel: OTLP → blackhole.
    Rotel,
}

impl Target {
    fn collector(self) -> &'static str {
        match self {
            Self::WasmcolNop | Self::WasmcolFile | Self::WasmcolPlugin => "wasmcol",
            Self::Rotel => "Rotel",
        }
    }

    fn pipeline(self) -> &'static str {
        match self {
            Self::WasmcolNop => "otlp/grpc → batch → nop",
            Self::WasmcolFile => "otlp/grpc → batch → file (proto, on disk)",
            Self::WasmcolPlugin => "otlp/grpc → batch → wasm plugin → nop",
            Self::Rotel => "otlp/grpc → (batch) → blackhole",
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

/// A port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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

/// Clock ticks per second of `/proc/PID/stat` times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU ticks of every thread of `pid`, living or exited.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = &stat[stat
        .rfind(')')
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?
        + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields
        .get(11)
        .ok_or_else(|| anyhow!("short stat"))?
        .parse()?;
    let stime: u64 = fields
        .get(12)
        .ok_or_else(|| anyhow!("short stat"))?
        .parse()?;
    Ok(utime + stime)
}

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

/// A `kB` field of `/proc/PID/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))?;
    let kib: f64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
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
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
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
}

fn wasmcol_config(
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
    } else {
        "nop"
    };
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n\
         processors:\n  batch: {{}}\n{plugin_yaml}\
         exporters:\n{exporter}\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics}\n  \
         pipelines:\n    traces:\n      receivers: [otlp]\n      processors: {processors}\n      \
         exporters: [{name}]\n"
    )
}

/// Starts the collector of `target`; returns it, its gRPC port and (wasmcol) metrics port.
fn start_collector(
    env: &Env,
    target: Target,
    run_dir: &Path,
) -> anyhow::Result<(Proc, u16, Option<u16>)> {
    let grpc = free_port()?;
    match target {
        Target::WasmcolNop | Target::WasmcolFile | Target::WasmcolPlugin => {
            let metrics = free_port()?;
            let config = run_dir.join("wasmcol.yaml");
            let plugin = env
                .args
                .plugin
                .as_deref()
                .map(|p| (p, env.args.plugin_config.as_str()));
            std::fs::write(
                &config,
                wasmcol_config(target, grpc, metrics, run_dir, plugin),
            )?;
            let mut p = Proc::spawn(
                "wasmcol",
                Command::new(&env.wasmcol)
                    .arg("--config")
                    .arg(&config)
                    .envs(env.args.wasmcol_env.iter().map(|(k, v)| (k, v))),
                run_dir.join("wasmcol.log"),
            )?;
            wait_for_port(&mut p, grpc)?;
            Ok((p, grpc, Some(metrics)))
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
            Ok((p, grpc, None))
        }
    }
}

fn loadgen_args(args: &Args, load: LoadKind, port: u16) -> Vec<String> {
    let spt = args.spans_per_trace;
    let mut v: Vec<String> = vec![
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
    let (mut collector, port, metrics_port) = start_collector(env, target, &run_dir)?;
    let pid = collector.pid();
    // Let start-up work (threads, allocator arenas) settle before the baseline.
    std::thread::sleep(Duration::from_secs(1));
    collector.check_alive()?;
    let idle_rss_mib = status_mib(pid, "VmRSS:")?;
    let cpu0 = cpu_ticks(pid)?;
    let machine0 = machine_busy_ticks()?;
    let children0 = reaped_children_ticks()?;

    let mut gen_cmd = Command::new(&env.loadgen);
    gen_cmd.args(loadgen_args(&env.args, load, port));
    let out = run_command(
        "wasmcol-loadgen",
        &mut gen_cmd,
        Duration::from_secs(env.args.duration + 30),
        &run_dir,
    )?;
    // The batch processors flush on a 200 ms timer: include that in the run.
    let children1 = reaped_children_ticks()?;
    std::thread::sleep(Duration::from_millis(500));
    collector.check_alive()?;
    let cpu1 = cpu_ticks(pid)?;
    let machine1 = machine_busy_ticks()?;
    let peak_rss_mib = status_mib(pid, "VmHWM:")?;

    let exported = match metrics_port {
        Some(p) => Some(scrape_counter(p, "wasmcol_exporter_sent_spans_total")?),
        None => None,
    };
    drop(collector);
    if target == Target::WasmcolFile {
        // The file is not needed once the run is measured.
        let _ = std::fs::remove_file(run_dir.join("traces.pb"));
    }

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
    let cpu_secs = (cpu1 - cpu0) as f64 / env.ticks;
    let loadgen_cpu_secs = (children1 - children0) as f64 / env.ticks;
    let machine_secs = machine1.saturating_sub(machine0) as f64 / env.ticks;
    ensure!(accepted > 0, "the collector accepted no spans: {json_line}");
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
        other_cpu_secs: (machine_secs - cpu_secs - loadgen_cpu_secs).max(0.0),
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
    }
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
         that ran on the machine during the run (a shared machine is noisy)\n"
    );

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
        "| load | pipeline | run | accepted spans | refused | failed requests | exported (collector's count) | load s | collector CPU s | loadgen CPU s | other CPU s | idle RSS MiB | peak RSS MiB |"
    );
    let _ = writeln!(
        r,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for res in results {
        let _ = writeln!(
            r,
            "| {:?} | {} {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
            res.load,
            res.target.collector(),
            res.target.pipeline(),
            res.repeat + 1,
            res.accepted,
            res.refused,
            res.failed_requests,
            res.exported.map_or("n/a".to_owned(), |e| e.to_string()),
            res.load_secs,
            res.cpu_secs,
            res.loadgen_cpu_secs,
            res.other_cpu_secs,
            res.idle_rss_mib,
            res.peak_rss_mib
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
    };

    let wanted = |name: &str| env.args.pipelines.iter().any(|p| p == name);
    let mut targets = Vec::new();
    if wanted("nop") {
        targets.push(Target::WasmcolNop);
    }
    if wanted("file") {
        targets.push(Target::WasmcolFile);
    }
    if wanted("plugin") && env.args.plugin.is_some() {
        targets.push(Target::WasmcolPlugin);
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
