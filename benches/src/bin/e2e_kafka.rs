//! `e2e_kafka`: Kafka throughput end to end, into and out of a local broker (tansu, in
//! memory), with Rotel's `rotel-agent` and its Kafka exporter measured in the same run.
//!
//! ```sh
//! cargo build --release -p wasmcol --bins
//! cargo run --release -p wasmcol-benches --bin e2e_kafka -- --duration 15 --repeats 3
//! ```
//!
//! Scenarios (fresh collector process and fresh topic per run):
//! - **export**: saturated OTLP/gRPC load from `wasmcol-loadgen` → collector → Kafka topic
//!   (OTLP protobuf, no compression, acks=all). wasmcol: `otlp → batch → kafka` (8192-span
//!   batches split into messages under 1 MB); Rotel: `--exporter kafka` with 512-span batches
//!   (it writes one message per batch without splitting, and its default 8192-span batches of
//!   these spans exceed the broker's 1 MB limit). Measured: spans the collector accepted per
//!   second of load, spans found in the topic afterwards (decoded with rdkafka), collector
//!   CPU-seconds per million accepted spans.
//! - **consume**: wasmcol `kafka → batch → nop` reading a topic the export run filled (Rotel
//!   has no Kafka receiver). Measured from the first span exported to the last: spans/s and
//!   CPU-seconds per million spans.
//!
//! The machine may be shared: the report gives medians and ratios.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use clap::Parser;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

/// Kafka export and consume throughput of wasmcol, beside Rotel's Kafka exporter.
#[derive(Parser, Debug)]
#[command(name = "e2e_kafka")]
struct Args {
    /// Seconds of load per export run.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Runs of each scenario; the report shows medians.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Directory holding `wasmcol` and `wasmcol-loadgen` [default: target/release].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// `tansu` binary [default: on PATH or ~/.cargo/bin].
    #[arg(long)]
    tansu: Option<PathBuf>,
    /// `rotel-agent` binary [default: the one in target/bench-venv, as `e2e` installs it].
    #[arg(long)]
    rotel: Option<PathBuf>,
    /// Skip Rotel.
    #[arg(long)]
    no_rotel: bool,
}

/// A child process killed when dropped.
struct Proc(Child, PathBuf);

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> anyhow::Result<Self> {
        let out = File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        Ok(Self(child, log))
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn wait_port(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(s) = self.0.try_wait()? {
                bail!("{:?} exited ({s}): see {}", self.0.id(), self.1.display());
            }
            ensure!(
                Instant::now() < deadline,
                "no listener on {port} after 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU ticks of every thread of `pid`.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow!("bad stat"))? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// Sum of a counter's samples in wasmcol's Prometheus text.
fn scrape_counter(port: u16, name: &str) -> anyhow::Result<u64> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body
        .lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter(|r| r.starts_with('{') || r.starts_with(' '))
        .filter_map(|r| r.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn which(name: &str) -> Option<PathBuf> {
    let out = Command::new("which").arg(name).output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    for r in block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))? {
        r.map_err(|(t, e)| anyhow!("create topic {t}: {e}"))?;
    }
    Ok(())
}

/// Messages in `topic` (sum of high watermarks) and, when `decode`, the spans they hold.
fn topic_contents(brokers: &str, topic: &str, decode: bool) -> anyhow::Result<(i64, u64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-kafka-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut messages = 0;
    for p in md.topics()[0].partitions() {
        let (lo, hi) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        messages += hi - lo;
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    if !decode {
        return Ok((messages, 0));
    }
    c.assign(&tpl)?;
    // The watermarks are a lower bound (tansu 0.6 counts a record batch as one offset): read
    // on until nothing arrives for a second.
    let (mut read, mut spans) = (0i64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Instant::now();
    while Instant::now() < deadline && (read < messages || last.elapsed() < Duration::from_secs(1))
    {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m?;
            last = Instant::now();
            read += 1;
            let req = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                m.payload().unwrap_or_default(),
            )?;
            spans += req
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len() as u64)
                .sum::<u64>();
        }
    }
    Ok((messages, spans))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Wasmcol,
    Rotel,
}

struct ExportRun {
    accepted: u64,
    in_topic: u64,
    load_secs: f64,
    cpu_secs: f64,
}

struct Env {
    args: Args,
    wasmcol: PathBuf,
    loadgen: PathBuf,
    rotel: Option<PathBuf>,
    brokers: String,
    ticks: f64,
    dir: tempfile::TempDir,
}

fn export_run(env: &Env, target: Target, topic: &str) -> anyhow::Result<ExportRun> {
    create_topic(&env.brokers, topic, env.args.partitions)?;
    let grpc = free_port()?;
    let dir = env.dir.path().join(topic);
    std::fs::create_dir_all(&dir)?;
    let mut proc = match target {
        Target::Wasmcol => {
            let metrics = free_port()?;
            let cfg = format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n\
                 processors:\n  batch: {{}}\n\
                 exporters:\n  kafka:\n    brokers: [{b}]\n    topic: {topic}\n\
                 service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics}\n  \
                 pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [kafka]\n",
                b = env.brokers
            );
            std::fs::write(dir.join("wasmcol.yaml"), cfg)?;
            Proc::spawn(
                Command::new(&env.wasmcol)
                    .arg("--config")
                    .arg(dir.join("wasmcol.yaml")),
                dir.join("wasmcol.log"),
            )?
        }
        Target::Rotel => Proc::spawn(
            Command::new(env.rotel.as_ref().expect("rotel"))
                .arg("start")
                .args(["--exporter", "kafka"])
                .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
                .args([
                    "--otlp-http-endpoint",
                    &format!("127.0.0.1:{}", free_port()?),
                ])
                .args(["--kafka-exporter-brokers", &env.brokers])
                .args(["--kafka-exporter-traces-topic", topic])
                .args(["--kafka-exporter-format", "protobuf"])
                .args(["--kafka-exporter-acks", "all"])
                // Rotel sends each batch as one message and does not split it: at its default
                // 8192 spans these 1 KB spans make ~8 MB messages that the broker refuses
                // (MessageSizeTooLarge), losing them. 512-span batches fit in 1 MB.
                .args(["--traces-batch-max-size", "512"])
                .arg("--pid-file")
                .arg(dir.join("rotel.pid"))
                .arg("--log-file")
                .arg(dir.join("rotel-file.log")),
            dir.join("rotel.log"),
        )?,
    };
    proc.wait_port(grpc)?;
    std::thread::sleep(Duration::from_secs(1));
    let cpu0 = cpu_ticks(proc.pid())?;
    let out = Command::new(&env.loadgen)
        .args(["--endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--duration", &format!("{}s", env.args.duration)])
        .args([
            "--spans-per-trace",
            "10",
            "--attributes",
            "10",
            "--attribute-size",
            "64",
        ])
        .args([
            "--rate",
            "0",
            "--batch-traces",
            "40",
            "--workers",
            "4",
            "--json",
            "--quiet",
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Let the last batches reach the broker, then stop counting.
    let mut last = -1;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(300));
        let (n, _) = topic_contents(&env.brokers, topic, false)?;
        if n == last {
            break;
        }
        last = n;
    }
    let cpu1 = cpu_ticks(proc.pid())?;
    drop(proc);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| anyhow!("no loadgen summary"))?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let f = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| anyhow!("no {k} in {line}"))
    };
    let (_, in_topic) = topic_contents(&env.brokers, topic, true)?;
    Ok(ExportRun {
        accepted: f("spans_accepted")? as u64,
        in_topic,
        load_secs: f("elapsed_secs")?,
        cpu_secs: (cpu1 - cpu0) as f64 / env.ticks,
    })
}

/// wasmcol reading `topic` (holding `spans`) into `nop`: (spans/s, CPU-seconds per million).
fn consume_run(env: &Env, topic: &str, spans: u64, repeat: usize) -> anyhow::Result<(f64, f64)> {
    let metrics = free_port()?;
    let dir = env.dir.path().join(format!("consume-{topic}-{repeat}"));
    std::fs::create_dir_all(&dir)?;
    let cfg = format!(
        "receivers:\n  kafka:\n    brokers: [{b}]\n    topics: [{topic}]\n    group_id: bench-{repeat}\n    initial_offset: earliest\n    max_fetch_wait: 10ms\n\
         processors:\n  batch: {{}}\n\
         exporters:\n  nop: {{}}\n\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics}\n  \
         pipelines:\n    traces:\n      receivers: [kafka]\n      processors: [batch]\n      exporters: [nop]\n",
        b = env.brokers
    );
    std::fs::write(dir.join("wasmcol.yaml"), cfg)?;
    let mut proc = Proc::spawn(
        Command::new(&env.wasmcol)
            .arg("--config")
            .arg(dir.join("wasmcol.yaml")),
        dir.join("wasmcol.log"),
    )?;
    proc.wait_port(metrics)?;
    let sent = |p| scrape_counter(p, "wasmcol_exporter_sent_spans_total");
    let deadline = Instant::now() + Duration::from_secs(300);
    // Start the clock at the first data (group join and fetch start-up are not throughput).
    let (t0, cpu0, s0) = loop {
        let s = sent(metrics)?;
        if s > 0 {
            break (Instant::now(), cpu_ticks(proc.pid())?, s);
        }
        ensure!(
            Instant::now() < deadline,
            "nothing consumed: see {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    loop {
        let s = sent(metrics)?;
        if s >= spans {
            let secs = t0.elapsed().as_secs_f64();
            let cpu = (cpu_ticks(proc.pid())? - cpu0) as f64 / env.ticks;
            let n = (s - s0) as f64;
            return Ok((n / secs, cpu / n * 1e6));
        }
        ensure!(
            Instant::now() < deadline,
            "consumed {s} of {spans} spans in 300 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = args
        .bin_dir
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/release"));
    let (wasmcol, loadgen) = (bin.join("wasmcol"), bin.join("wasmcol-loadgen"));
    ensure!(
        wasmcol.is_file() && loadgen.is_file(),
        "build first: cargo build --release -p wasmcol --bins"
    );
    let tansu = args
        .tansu
        .clone()
        .or_else(|| which("tansu"))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu")))
        .filter(|p| p.is_file())
        .ok_or_else(|| anyhow!("no tansu: cargo install tansu --features dynostore"))?;
    let rotel = if args.no_rotel {
        None
    } else {
        let p = args.rotel.clone().unwrap_or_else(|| {
            workspace_root()
                .join("target/bench-venv/lib/python3.11/site-packages/rotel/rotel-agent")
        });
        ensure!(
            p.is_file(),
            "no rotel-agent at {} (run the e2e bench once, or --rotel)",
            p.display()
        );
        Some(p)
    };
    let dir = tempfile::tempdir()?;
    // Copies, so a rebuild during the run cannot swap the binaries under it.
    let (wasmcol, loadgen) = {
        let copy = |p: &Path| -> anyhow::Result<PathBuf> {
            let to = dir.path().join(p.file_name().expect("file name"));
            std::fs::copy(p, &to)?;
            Ok(to)
        };
        (copy(&wasmcol)?, copy(&loadgen)?)
    };
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let mut broker = Proc::spawn(
        Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"]),
        dir.path().join("tansu.log"),
    )?;
    broker.wait_port(port)?;
    let env = Env {
        args,
        wasmcol,
        loadgen,
        rotel,
        brokers: format!("127.0.0.1:{port}"),
        ticks: clock_ticks(),
        dir,
    };

    let mut targets = vec![Target::Wasmcol];
    if env.rotel.is_some() {
        targets.push(Target::Rotel);
    }
    let mut export: Vec<(Target, ExportRun)> = Vec::new();
    let mut consume: Vec<(f64, f64)> = Vec::new();
    for repeat in 0..env.args.repeats {
        for &t in &targets {
            let topic = format!("{t:?}-{repeat}").to_lowercase();
            let r = export_run(&env, t, &topic)?;
            eprintln!(
                "export {t:?} #{repeat}: {:.0} spans/s accepted, {} of {} in the topic, {:.2} CPU-s/M",
                r.accepted as f64 / r.load_secs,
                r.in_topic,
                r.accepted,
                r.cpu_secs / r.accepted as f64 * 1e6
            );
            if t == Target::Wasmcol {
                let c = consume_run(&env, &topic, r.in_topic, repeat)?;
                eprintln!("consume #{repeat}: {:.0} spans/s, {:.2} CPU-s/M", c.0, c.1);
                consume.push(c);
            }
            export.push((t, r));
        }
    }
    println!(
        "| scenario | collector | spans/s (median) | CPU-s per M spans (median) | spans in topic / accepted |"
    );
    println!("|---|---|---|---|---|");
    for &t in &targets {
        let runs: Vec<&ExportRun> = export
            .iter()
            .filter(|(x, _)| *x == t)
            .map(|(_, r)| r)
            .collect();
        let rate = median(
            runs.iter()
                .map(|r| r.accepted as f64 / r.load_secs)
                .collect(),
        );
        let cpu = median(
            runs.iter()
                .map(|r| r.cpu_secs / r.accepted as f64 * 1e6)
                .collect(),
        );
        let kept = median(
            runs.iter()
                .map(|r| r.in_topic as f64 / r.accepted as f64)
                .collect(),
        );
        let name = match t {
            Target::Wasmcol => "wasmcol (otlp → batch → kafka)",
            Target::Rotel => "rotel-agent (--exporter kafka)",
        };
        println!("| OTLP/gRPC → Kafka | {name} | {rate:.0} | {cpu:.2} | {kept:.3} |");
    }
    println!(
        "| Kafka → nop | wasmcol (kafka → batch → nop) | {:.0} | {:.2} | — |",
        median(consume.iter().map(|c| c.0).collect()),
        median(consume.iter().map(|c| c.1).collect())
    );
    drop(broker);
    Ok(())
}
