//! `e2e_clickhouse`: OTLP → ClickHouse end to end, wasmcol beside Rotel's `rotel-agent`, both
//! with their default ClickHouse settings, against the same discarding ClickHouse
//! ([`wasmcol_benches::ch_sink`]: answers every request, decompresses inserts and counts their
//! rows, keeps nothing), so the collectors and not a database bound the run.
//!
//! ```sh
//! cargo build --release -p wasmcol --bins -p wasmcol-benches --bins
//! target/release/e2e_clickhouse --repeats 3
//! target/release/e2e_clickhouse --traces 20000 --repeats 1 --targets wasmcol,rotel --verbose
//! ```
//!
//! Per run, a fresh collector and sink; `wasmcol-loadgen` sends `--traces` traces as fast as
//! `--workers` connections allow (OTLP/gRPC, service name `svc`, so the only string
//! `wasmcol-loadgen` in a row is its scope name, which the sink counts); requests the collector
//! refuses under this load (back-pressure) are retried with the load generator's backoff.
//! Measured:
//! - spans/s accepted: spans over the load generator's own elapsed time (how fast the
//!   collector took the load);
//! - spans/s end to end: from the first span sent until the sink has counted every row (this
//!   includes the exporter's last batch timeout: 5 s for wasmcol's `clickhouse` defaults);
//! - collector CPU-seconds per million spans (`utime + stime` of `/proc/PID/stat`, same
//!   window), and the sink's (this process) for comparison;
//! - collector peak RSS (`VmHWM` of `/proc/PID/status` at the end of the run);
//! - a run fails unless the sink counted exactly the spans sent.
//!
//! Targets (`--targets`, all by default):
//! - `wasmcol`: `otlp → clickhouse`, the exporter's defaults (lz4, its own batching);
//! - `wasmcol-batch`: `otlp → batch → clickhouse` (default `batch` processor);
//! - `wasmcol-none`: `otlp → clickhouse` with `compress: none`;
//! - `rotel`: `rotel-agent --exporter clickhouse` with its defaults (lz4 in ClickHouse's
//!   compressed blocks with `decompress=1`, `async_insert=1`);
//! - `rotel-none`: the same with `--clickhouse-exporter-compression none`.
//!
//! The table gives medians of `--repeats` runs and ratios to the Rotel row with the same
//! compression. The machine may be shared: note the load average beside the figures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use clap::Parser;
use wasmcol_benches::ch_sink::ChSink;
use wasmcol_benches::procfs::{clock_ticks, cpu_ticks, free_port, peak_rss_mib};

/// Compares wasmcol's and Rotel's ClickHouse exporters end to end.
#[derive(Parser, Debug)]
#[command(name = "e2e_clickhouse")]
struct Args {
    /// What the load is: `traces`, or the same load as `logs` (a log record per span) or
    /// `metrics` (a data point per span), sent by `wasmcol-loadgen --signal`; the collectors
    /// write it to their tables for that signal, whose rows also carry the scope name the sink
    /// counts. "spans" in the report are its items.
    #[arg(long, default_value = "traces", value_parser = ["traces", "logs", "metrics"])]
    signal: String,
    /// Traces per run.
    #[arg(long, default_value_t = 150_000)]
    traces: u64,
    /// Spans per trace.
    #[arg(long, default_value_t = 10)]
    spans_per_trace: u32,
    /// String attributes per span.
    #[arg(long, default_value_t = 10)]
    attributes: u32,
    /// Bytes per attribute value.
    #[arg(long, default_value_t = 64)]
    attribute_size: u32,
    /// Load generator connections.
    #[arg(long, default_value_t = 4)]
    workers: u32,
    /// Traces per load generator request.
    #[arg(long, default_value_t = 40)]
    batch_traces: u32,
    /// Runs per target; the report shows medians.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Targets, comma-separated: wasmcol, wasmcol-batch, wasmcol-none, rotel, rotel-none.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "wasmcol,wasmcol-batch,wasmcol-none,rotel,rotel-none"
    )]
    targets: Vec<String>,
    /// Directory holding `wasmcol` and `wasmcol-loadgen` [default: target/release].
    #[arg(long)]
    wasmcol: Option<PathBuf>,
    /// Path of `rotel-agent` [default: from the PyPI package in target/bench-venv].
    #[arg(long)]
    rotel: Option<PathBuf>,
    /// Seconds to wait for every row after the load ends.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Log the first requests the sink sees (what each collector sends).
    #[arg(long)]
    verbose: bool,
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn wait_port(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(s) = child.try_wait()? {
            bail!("collector exited ({s})");
        }
        ensure!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Wasmcol,
    WasmcolBatch,
    WasmcolNone,
    Rotel,
    RotelNone,
}

impl Target {
    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "wasmcol" => Self::Wasmcol,
            "wasmcol-batch" => Self::WasmcolBatch,
            "wasmcol-none" => Self::WasmcolNone,
            "rotel" => Self::Rotel,
            "rotel-none" => Self::RotelNone,
            _ => bail!("unknown target {s:?}"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Wasmcol => "wasmcol otlp → clickhouse (defaults: lz4)",
            Self::WasmcolBatch => "wasmcol otlp → batch → clickhouse (lz4)",
            Self::WasmcolNone => "wasmcol otlp → clickhouse (compress: none)",
            Self::Rotel => "rotel-agent (defaults: lz4)",
            Self::RotelNone => "rotel-agent (compression none)",
        }
    }

    fn is_rotel(self) -> bool {
        matches!(self, Self::Rotel | Self::RotelNone)
    }

    /// The Rotel target with the same compression.
    fn rotel_peer(self) -> Self {
        match self {
            Self::WasmcolNone | Self::RotelNone => Self::RotelNone,
            _ => Self::Rotel,
        }
    }
}

struct Run {
    /// Requests the collector refused (and the load generator retried).
    refused: u64,
    accepted_per_sec: f64,
    e2e_per_sec: f64,
    cpu_s_per_m: f64,
    sink_cpu_s_per_m: f64,
    peak_rss_mib: f64,
}

struct Env {
    args: Args,
    wasmcol: PathBuf,
    loadgen: PathBuf,
    rotel: Option<PathBuf>,
    ticks: f64,
    dir: tempfile::TempDir,
}

fn spawn_collector(env: &Env, target: Target, grpc: u16, ch: u16) -> anyhow::Result<Child> {
    let log = std::fs::File::create(env.dir.path().join(format!("{target:?}.log")))?;
    let mut cmd = if target.is_rotel() {
        let mut c = Command::new(env.rotel.as_ref().context("no rotel-agent")?);
        c.arg("start")
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args([
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{}", free_port()?),
            ])
            .args(["--exporter", "clickhouse"])
            .args([
                "--clickhouse-exporter-endpoint",
                &format!("http://127.0.0.1:{ch}"),
            ]);
        if target == Target::RotelNone {
            c.args(["--clickhouse-exporter-compression", "none"]);
        }
        c
    } else {
        let (processors, compress) = match target {
            Target::WasmcolBatch => ("processors: [batch], ", ""),
            Target::WasmcolNone => ("", "\n    compress: none"),
            _ => ("", ""),
        };
        let config = env.dir.path().join(format!("{target:?}.yaml"));
        std::fs::write(
            &config,
            format!(
                "receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: \"127.0.0.1:{grpc}\" }} }} }} }}\n\
                 processors: {{ batch: {{}} }}\n\
                 exporters:\n  clickhouse:\n    endpoint: http://127.0.0.1:{ch}\n    database: otel\n    \
                 create_schema: false{compress}\n\
                 service: {{ telemetry: {{ metrics: {{ address: none }} }}, pipelines: {{ {signal}: {{ receivers: [otlp], {processors}exporters: [clickhouse] }} }} }}\n",
                signal = env.args.signal,
            ),
        )?;
        let mut c = Command::new(&env.wasmcol);
        c.arg("--config").arg(&config);
        c
    };
    Ok(cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?)
}

fn one_run(env: &Env, target: Target) -> anyhow::Result<Run> {
    let args = &env.args;
    let sink = ChSink::start(args.verbose)?;
    let grpc = free_port()?;
    let mut collector = Proc(spawn_collector(env, target, grpc, sink.port())?);
    wait_port(&mut collector.0, grpc)?;
    std::thread::sleep(Duration::from_millis(500));
    let pid = collector.0.id().to_string();
    let want = args.traces * u64::from(args.spans_per_trace);
    let rows0 = sink.rows();
    let (c0, s0) = (cpu_ticks(&pid)?, cpu_ticks("self")?);
    let started = Instant::now();
    let out = Command::new(&env.loadgen)
        .args(["--signal", &args.signal])
        .args(["--endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--traces", &args.traces.to_string()])
        .args(["--spans-per-trace", &args.spans_per_trace.to_string()])
        .args(["--attributes", &args.attributes.to_string()])
        .args(["--attribute-size", &args.attribute_size.to_string()])
        .args(["--batch-traces", &args.batch_traces.to_string()])
        .args(["--workers", &args.workers.to_string()])
        // Saturating load meets back-pressure (gRPC RESOURCE_EXHAUSTED/UNAVAILABLE): retry
        // refused requests as an OTLP client does, so every span is delivered once.
        .args(["--service", "svc", "--retry", "--json", "--quiet"])
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        out.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(
        text.lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .ok_or_else(|| anyhow!("no loadgen summary in {text}"))?,
    )?;
    let field = |k: &str| {
        summary
            .get(k)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| anyhow!("no {k} in {summary}"))
    };
    let accepted = field("spans_accepted")? as u64;
    let refused = field("requests_refused")? as u64;
    ensure!(
        accepted == want,
        "the collector accepted {accepted} of {want} spans: {summary}"
    );
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let rows = sink.rows() - rows0;
        ensure!(
            rows <= want,
            "the sink counted {rows} rows for {want} spans"
        );
        if rows == want {
            break;
        }
        if let Some(s) = collector.0.try_wait()? {
            bail!("collector exited ({s}) with {rows} of {want} rows");
        }
        ensure!(
            Instant::now() < deadline,
            "{rows} rows of {want} {} s after the load",
            args.timeout
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let ended = sink.last_insert().context("no insert")?;
    let cpu = (cpu_ticks(&pid)? - c0) as f64 / env.ticks;
    let sink_cpu = (cpu_ticks("self")? - s0) as f64 / env.ticks;
    let peak_rss_mib = peak_rss_mib(collector.0.id())?;
    ensure!(sink.errors() == 0, "the sink could not decode some inserts");
    // Late duplicates (a retried insert) would show here.
    std::thread::sleep(Duration::from_millis(300));
    let rows = sink.rows() - rows0;
    ensure!(
        rows == want,
        "the sink counted {rows} rows for {want} spans"
    );
    let m = want as f64 / 1e6;
    Ok(Run {
        refused,
        accepted_per_sec: want as f64 / field("elapsed_secs")?,
        e2e_per_sec: want as f64 / ended.duration_since(started).as_secs_f64(),
        cpu_s_per_m: cpu / m,
        sink_cpu_s_per_m: sink_cpu / m,
        peak_rss_mib,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let targets = args
        .targets
        .iter()
        .map(|t| Target::parse(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bin = args
        .wasmcol
        .clone()
        .unwrap_or_else(|| root().join("target/release"));
    let (wasmcol, loadgen) = (bin.join("wasmcol"), bin.join("wasmcol-loadgen"));
    ensure!(
        wasmcol.is_file() && loadgen.is_file(),
        "no wasmcol/wasmcol-loadgen in {}: cargo build --release -p wasmcol --bins",
        bin.display()
    );
    let rotel = if targets.iter().any(|t| t.is_rotel()) {
        let r = args.rotel.clone().unwrap_or_else(|| {
            root().join("target/bench-venv/lib/python3.11/site-packages/rotel/rotel-agent")
        });
        ensure!(
            r.is_file(),
            "{} missing: run the e2e benchmark once (it installs rotel), pass --rotel, or leave \
             the rotel targets out of --targets",
            r.display()
        );
        Some(r)
    } else {
        None
    };
    let dir = tempfile::tempdir()?;
    // Copies, so a rebuild during the run cannot swap the binaries under it.
    let copy = |p: &Path| -> anyhow::Result<PathBuf> {
        let to = dir.path().join(p.file_name().context("file name")?);
        std::fs::copy(p, &to)?;
        Ok(to)
    };
    let (wasmcol, loadgen) = (copy(&wasmcol)?, copy(&loadgen)?);
    let env = Env {
        args,
        wasmcol,
        loadgen,
        rotel,
        ticks: clock_ticks(),
        dir,
    };
    let mut results: Vec<(Target, Vec<Run>)> = targets.iter().map(|&t| (t, vec![])).collect();
    // Interleaved repeats, so a burst of load from elsewhere does not hit one target only.
    for i in 0..env.args.repeats {
        for (target, runs) in &mut results {
            let r = one_run(&env, *target).with_context(|| {
                format!(
                    "{} run {i} (collector log: {})",
                    target.name(),
                    env.dir.path().join(format!("{target:?}.log")).display()
                )
            });
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    // Keep the logs of a failed run.
                    let kept = env.dir.path().to_path_buf();
                    std::mem::forget(env);
                    eprintln!("logs kept in {}", kept.display());
                    return Err(e);
                }
            };
            eprintln!(
                "{} #{i}: {:.0} spans/s accepted, {:.0} spans/s end to end, {:.2} CPU-s/M, \
                 peak RSS {:.0} MiB, {} requests refused and retried",
                target.name(),
                r.accepted_per_sec,
                r.e2e_per_sec,
                r.cpu_s_per_m,
                r.peak_rss_mib,
                r.refused
            );
            runs.push(r);
        }
    }
    let med = |t: Target, f: fn(&Run) -> f64| {
        results
            .iter()
            .find(|(x, _)| *x == t)
            .map(|(_, runs)| median(runs.iter().map(f).collect()))
    };
    let ratio = |t: Target, f: fn(&Run) -> f64| match (med(t, f), med(t.rotel_peer(), f)) {
        (Some(a), Some(b)) if !t.is_rotel() => format!("{:.2}×", a / b),
        _ => "—".into(),
    };
    println!(
        "| collector | spans/s accepted | spans/s end to end | CPU-s per 1M spans | \
         CPU vs Rotel | peak RSS MiB | RSS vs Rotel | sink CPU-s per 1M | runs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (t, runs) in &results {
        let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {} | {:.0} | {} | {:.2} | {} |",
            t.name(),
            m(|r| r.accepted_per_sec),
            m(|r| r.e2e_per_sec),
            m(|r| r.cpu_s_per_m),
            ratio(*t, |r| r.cpu_s_per_m),
            m(|r| r.peak_rss_mib),
            ratio(*t, |r| r.peak_rss_mib),
            m(|r| r.sink_cpu_s_per_m),
            runs.len()
        );
    }
    Ok(())
}
