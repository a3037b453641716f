//! `e2e_clickhouse`: OTLP → ClickHouse end to end. Runs the release `wasmcol` (otlp →
//! clickhouse exporter) and Rotel's `rotel-agent` (OTLP → its clickhouse exporter) against the
//! same ClickHouse engine (chDB behind `tests/python/clickhouse_front.py`), sends a fixed
//! number of spans with `wasmcol-loadgen`, and reports, per run, rows per second (from the
//! first span sent until every row is visible in the table) and the collector's CPU-seconds
//! per million spans (`utime + stime` of `/proc/PID/stat` over the same window). Prints a
//! markdown table of medians.
//!
//! ```sh
//! cargo build --release -p wasmcol --bins
//! cargo run --release -p wasmcol-benches --bin e2e_clickhouse -- --traces 20000 --repeats 3
//! ```
//!
//! Both collectors are set up alike: no compression (Rotel compresses with ClickHouse's
//! native block format, which the chDB front does not decode; `wasmcol` uses `Content-Encoding`
//! and is also run with its default `lz4`), synchronous inserts, batches of up to 100 000 rows
//! or 1 s. Rotel does not create tables, so the harness creates the same schema for it first.
//! The chDB front is itself a Python process on the same machine: it, not the collectors,
//! bounds rows per second, which is why CPU per span is the figure to compare.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use wasmcol::exporters::clickhouse::{Schema, TableEngine};

/// Compares wasmcol's and Rotel's ClickHouse exporters end to end.
#[derive(Parser, Debug)]
#[command(name = "e2e_clickhouse")]
struct Args {
    /// Traces per run.
    #[arg(long, default_value_t = 20_000)]
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
    /// Runs per collector; the report shows medians.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Path of `rotel-agent` [default: from the PyPI package in target/bench-venv].
    #[arg(long)]
    rotel: Option<PathBuf>,
    /// Skip Rotel.
    #[arg(long)]
    no_rotel: bool,
}

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
        .unwrap()
        .to_path_buf()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat[stat.rfind(')').context("stat")? + 1..]
        .split_whitespace()
        .collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// A statement against the front; its text answer.
fn query(port: u16, sql: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sql}",
        sql.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    ensure!(head.starts_with("HTTP/1.1 200"), "{sql}: {body}");
    Ok(body.trim().to_string())
}

fn start_front(dir: &Path) -> anyhow::Result<(Proc, u16)> {
    let port = free_port()?;
    let mut child = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/python/clickhouse_front.py"))
        .arg("--data")
        .arg(dir)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the chDB front (run tests/run.sh once to install chdb into .venv)")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    ensure!(line.starts_with("LISTENING"), "front: {line}");
    Ok((Proc(child), port))
}

fn wait_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Wasmcol,
    WasmcolLz4,
    Rotel,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Self::Wasmcol => "wasmcol (compress: none)",
            Self::WasmcolLz4 => "wasmcol (compress: lz4)",
            Self::Rotel => "rotel-agent (compression none)",
        }
    }
}

struct Run {
    rows_per_sec: f64,
    cpu_s_per_m: f64,
    front_cpu_s_per_m: f64,
}

fn one_run(args: &Args, target: Target, rotel: Option<&Path>) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let (front, ch) = start_front(&dir.path().join("ch"))?;
    let grpc = free_port()?;
    let collector = match target {
        Target::Wasmcol | Target::WasmcolLz4 => {
            let compress = if target == Target::Wasmcol {
                "none"
            } else {
                "lz4"
            };
            let config = dir.path().join("c.yaml");
            std::fs::write(
                &config,
                format!(
                    "receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: \"127.0.0.1:{grpc}\" }} }} }} }}\n\
                     exporters:\n  clickhouse:\n    endpoint: http://127.0.0.1:{ch}\n    database: otel\n    \
                     compress: {compress}\n    batch: {{ max_rows: 100000, timeout: 1s }}\n\
                     service: {{ telemetry: {{ metrics: {{ address: none }} }}, pipelines: {{ traces: {{ receivers: [otlp], exporters: [clickhouse] }} }} }}\n"
                ),
            )?;
            // The collector's log of the latest run, for a run that fails: in the temp dir as
            // `e2e_clickhouse-wasmcol-{none,lz4}.log`.
            let log = std::fs::File::create(
                std::env::temp_dir().join(format!("e2e_clickhouse-wasmcol-{compress}.log")),
            )?;
            Command::new(root().join("target/release/wasmcol"))
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?
        }
        Target::Rotel => {
            let schema = Schema {
                database: "otel".into(),
                table: "otel_traces".into(),
                cluster: None,
                engine: TableEngine::default(),
                ttl: Duration::ZERO,
                span_metrics: false,
                deduplication: true,
            };
            for statement in schema.ddl() {
                query(ch, &statement)?;
            }
            Command::new(rotel.context("no rotel-agent")?)
                .arg("start")
                .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
                .args([
                    "--otlp-http-endpoint",
                    &format!("127.0.0.1:{}", free_port()?),
                ])
                .args(["--exporter", "clickhouse"])
                .args([
                    "--clickhouse-exporter-endpoint",
                    &format!("http://127.0.0.1:{ch}"),
                ])
                .args(["--clickhouse-exporter-database", "otel"])
                .args(["--clickhouse-exporter-compression", "none"])
                .args(["--clickhouse-exporter-async-insert", "false"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?
        }
    };
    let collector = Proc(collector);
    wait_port(grpc)?;
    // wasmcol creates the schema at start; wait for it so the run measures inserts only.
    let deadline = Instant::now() + Duration::from_secs(20);
    while query(ch, "EXISTS TABLE otel.otel_traces_trace_id_ts_mv")? != "1" {
        ensure!(Instant::now() < deadline, "schema not created");
        std::thread::sleep(Duration::from_millis(100));
    }
    let want = args.traces * u64::from(args.spans_per_trace);
    let (c0, f0) = (cpu_ticks(collector.0.id())?, cpu_ticks(front.0.id())?);
    let started = Instant::now();
    let status = Command::new(root().join("target/release/wasmcol-loadgen"))
        .args(["--endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--traces", &args.traces.to_string()])
        .args(["--spans-per-trace", &args.spans_per_trace.to_string()])
        .args(["--attributes", &args.attributes.to_string()])
        .args(["--attribute-size", &args.attribute_size.to_string()])
        .args(["--batch-traces", "40", "--workers", "2", "--quiet"])
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "loadgen failed");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n: u64 = query(ch, "SELECT count() FROM otel.otel_traces")?.parse()?;
        if n >= want {
            ensure!(n == want, "{n} rows for {want} spans");
            break;
        }
        if Instant::now() > deadline {
            bail!("{} rows of {want} after 300 s", n);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ticks = |t: u64| t as f64 / 100.0;
    let cpu = ticks(cpu_ticks(collector.0.id())? - c0);
    let front_cpu = ticks(cpu_ticks(front.0.id())? - f0);
    let m = want as f64 / 1e6;
    Ok(Run {
        rows_per_sec: want as f64 / elapsed,
        cpu_s_per_m: cpu / m,
        front_cpu_s_per_m: front_cpu / m,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rotel = if args.no_rotel {
        None
    } else {
        Some(args.rotel.clone().unwrap_or_else(|| {
            root().join("target/bench-venv/lib/python3.11/site-packages/rotel/rotel-agent")
        }))
    };
    if let Some(r) = &rotel {
        ensure!(
            r.is_file(),
            "{} missing: run the e2e benchmark once (it installs rotel) or pass --rotel/--no-rotel",
            r.display()
        );
    }
    let mut targets = vec![Target::Wasmcol, Target::WasmcolLz4];
    if rotel.is_some() {
        targets.push(Target::Rotel);
    }
    println!(
        "| collector | rows/s (median) | collector CPU-s per 1M spans | chDB front CPU-s per 1M spans | runs |\n|---|---|---|---|---|"
    );
    for target in targets {
        let mut runs = Vec::new();
        for i in 0..args.repeats {
            let r = one_run(&args, target, rotel.as_deref())
                .with_context(|| format!("{} run {i}", target.name()))?;
            eprintln!(
                "{}: {:.0} rows/s, {:.2} CPU-s/M",
                target.name(),
                r.rows_per_sec,
                r.cpu_s_per_m
            );
            runs.push(r);
        }
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} |",
            target.name(),
            median(runs.iter().map(|r| r.rows_per_sec).collect()),
            median(runs.iter().map(|r| r.cpu_s_per_m).collect()),
            median(runs.iter().map(|r| r.front_cpu_s_per_m).collect()),
            runs.len()
        );
    }
    Ok(())
}
