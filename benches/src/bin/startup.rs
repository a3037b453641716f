//! `startup`: how long `wasmcol` takes from exec to accepting OTLP connections with three
//! plugins in its pipeline (`builtin:pii-scrub`, `builtin:enrich` and the `tagger` test
//! plugin), with the compiled-plugin cache cold (an empty cache directory per run) and warm
//! (a cache filled by an earlier run). Prints medians in milliseconds.
//!
//! ```sh
//! cargo build --release -p wasmcol --bins
//! cargo run --release -p wasmcol-benches --bin startup -- --runs 10
//! ```

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;

/// Measures start-up time with three plugins, cold and warm plugin cache.
#[derive(Parser, Debug)]
struct Args {
    /// Runs per case.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// The collector binary [default: target/release/wasmcol].
    #[arg(long)]
    wasmcol: Option<PathBuf>,
}

const TAGGER: &str = env!("WASMCOL_TEST_PLUGIN_TAGGER");

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn config(port: u16, dir: &std::path::Path) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
processors:
  wasm/scrub:
    plugin: builtin:pii-scrub
  wasm/enrich:
    plugin: builtin:enrich
  wasm/tagger:
    plugin: {TAGGER}
    config: {{ teams: {{ checkout: payments }} }}
exporters:
  file:
    path: {}/out.jsonl
service:
  telemetry:
    metrics:
      address: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [wasm/scrub, wasm/enrich, wasm/tagger]
      exporters: [file]
"#,
        dir.display()
    )
}

/// Starts the collector and returns the time until its OTLP port accepts a connection.
fn start_once(bin: &PathBuf, cache: &std::path::Path) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, config(port, dir.path()))?;
    let started = Instant::now();
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .env("WASMCOL_PLUGIN_CACHE", cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let result = loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break Ok(started.elapsed());
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!("wasmcol exited with {status}"));
        }
        if started.elapsed() > Duration::from_secs(60) {
            break Err(anyhow::anyhow!("wasmcol did not listen within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = args.wasmcol.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/wasmcol")
    });
    if !bin.exists() {
        bail!(
            "{} is missing: cargo build --release -p wasmcol --bins",
            bin.display()
        );
    }
    let mut cold = Vec::new();
    for _ in 0..args.runs {
        let cache = tempfile::tempdir()?;
        cold.push(start_once(&bin, cache.path())?);
    }
    let warm_cache = tempfile::tempdir()?;
    start_once(&bin, warm_cache.path())?;
    // The engine writes cache entries from a background worker: let it finish.
    std::thread::sleep(Duration::from_secs(2));
    let mut warm = Vec::new();
    for _ in 0..args.runs {
        warm.push(start_once(&bin, warm_cache.path())?);
    }
    println!("| plugin cache | runs | median start-up (ms) | min | max |");
    println!("|---|---|---|---|---|");
    for (name, v) in [("cold (compile)", cold), ("warm (cached)", warm)] {
        let (min, max) = (
            v.iter().min().copied().unwrap_or_default(),
            v.iter().max().copied().unwrap_or_default(),
        );
        println!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} |",
            v.len(),
            median_ms(v),
            min.as_secs_f64() * 1000.0,
            max.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
