//! `e2e_kafka`: Kafka throughput end to end, into and out of a local broker (tansu, in
//! memory), with Rotel's `rotel-agent` and its Kafka exporter measured in the same run.
//!
//! ```sh
//! cargo build --release -p wasmcol --bins -p wasmcol-benches --bins
//! target/release/e2e_kafka --duration 15 --repeats 3
//! target/release/e2e_kafka --scenarios gateway --gateway-traces 300000 --repeats 3
//! ```
//!
//! Scenarios (`--scenarios`, all by default; fresh collector process per run, and a fresh
//! topic per export run):
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
//! - **gateway**: wasmcol `kafka → batch → clickhouse` with the defaults of all three, into
//!   the discarding ClickHouse of [`wasmcol_benches::ch_sink`] (counts rows, keeps nothing).
//!   It reads a topic filled once beforehand by wasmcol's export with `--gateway-traces`
//!   traces of 10 spans (the consume scenario reads it too when export is not selected).
//!   Measured over the steady state (first insert to the last but one: the first waits for
//!   group join and a full insert, the last for the exporter's 5 s batch timeout): spans/s,
//!   CPU-seconds per million spans, spans/s per core of collector CPU (spans over collector
//!   CPU-seconds), the CPU-seconds per second of the collector, the sink and the broker, and
//!   the collector's peak RSS; then which of them bounded the run. A run fails unless the sink
//!   counted exactly the spans in the topic. `--gateway-max-fetch-wait` overrides the
//!   receiver's `max_fetch_wait` (250 ms by default) to show what fetch latency costs.
//!
//! The machine may be shared: the report gives medians and ratios.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
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
use wasmcol_benches::ch_sink::ChSink;
use wasmcol_benches::procfs::{clock_ticks, cpu_ticks, free_port, peak_rss_mib};

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
    /// Scenarios, comma-separated: export, consume, gateway.
    #[arg(long, value_delimiter = ',', default_value = "export,consume,gateway")]
    scenarios: Vec<String>,
    /// Traces (of 10 spans) in the topic the gateway scenario reads.
    #[arg(long, default_value_t = 200_000)]
    gateway_traces: u64,
    /// The gateway's `kafka` receiver `max_fetch_wait` (e.g. 10ms) [default: the receiver's].
    #[arg(long)]
    gateway_max_fetch_wait: Option<String>,
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

/// Starts the `wasmcol` under test on `config`, written to `dir` (its log beside it).
fn spawn_wasmcol(env: &Env, dir: &Path, config: &str) -> anyhow::Result<Proc> {
    std::fs::write(dir.join("wasmcol.yaml"), config)?;
    Proc::spawn(
        Command::new(&env.wasmcol)
            .arg("--config")
            .arg(dir.join("wasmcol.yaml")),
        dir.join("wasmcol.log"),
    )
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
    /// The broker's process, for its CPU time.
    broker_pid: u32,
    ticks: f64,
    dir: tempfile::TempDir,
}

/// `target` fed by `wasmcol-loadgen` for `--duration` seconds, or with `traces` traces when
/// given, into a new `topic`.
fn export_run(
    env: &Env,
    target: Target,
    topic: &str,
    traces: Option<u64>,
) -> anyhow::Result<ExportRun> {
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
            spawn_wasmcol(env, &dir, &cfg)?
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
    // A fixed amount is retried when refused (back-pressure), so all of it reaches the topic.
    let amount = match traces {
        Some(n) => vec!["--traces".to_string(), n.to_string(), "--retry".into()],
        None => vec!["--duration".to_string(), format!("{}s", env.args.duration)],
    };
    let out = Command::new(&env.loadgen)
        .args(["--endpoint", &format!("127.0.0.1:{grpc}")])
        .args(amount)
        // The gateway's sink counts rows by the scope name `wasmcol-loadgen`: keep it out of
        // the service name.
        .args(["--service", "svc"])
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
    let mut proc = spawn_wasmcol(env, &dir, &cfg)?;
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

/// One gateway run: wasmcol `kafka → batch → clickhouse` (defaults) draining `topic`, which
/// holds `spans` spans, into the discarding sink.
struct GatewayRun {
    /// Spans per wall second, steady state (see [`gateway_run`]).
    spans_per_sec: f64,
    /// Collector CPU-seconds per million spans.
    cpu_s_per_m: f64,
    /// Spans per second of collector CPU: per core of collector CPU.
    spans_per_core_sec: f64,
    /// CPU-seconds per wall second of the collector, the sink (this process) and the broker.
    collector_util: f64,
    sink_util: f64,
    broker_util: f64,
    peak_rss_mib: f64,
}

/// A moment of a gateway run: when the sink had counted `rows` (after a new insert), with the
/// CPU ticks of the collector, the sink (this process) and the broker.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    rows: u64,
    collector: u64,
    sink: u64,
    broker: u64,
}

/// The steady state runs from the first insert to the last but one: the exporter's first
/// insert waits for a full batch (group join, fetch start-up) and its last for the batch
/// timeout (5 s by default), neither of which is throughput. Rows and CPU are counted over the
/// same window, sampled whenever the sink counts a new insert.
fn gateway_run(env: &Env, topic: &str, spans: u64, repeat: usize) -> anyhow::Result<GatewayRun> {
    let sink = ChSink::start(false)?;
    let dir = env.dir.path().join(format!("gateway-{topic}-{repeat}"));
    std::fs::create_dir_all(&dir)?;
    let cfg = format!(
        "receivers:\n  kafka:\n    brokers: [{b}]\n    topics: [{topic}]\n    group_id: gateway-{repeat}\n    initial_offset: earliest\n{fetch_wait}\
         processors:\n  batch: {{}}\n\
         exporters:\n  clickhouse:\n    endpoint: http://127.0.0.1:{ch}\n    database: otel\n    create_schema: false\n\
         service:\n  telemetry:\n    metrics:\n      address: none\n  \
         pipelines:\n    traces:\n      receivers: [kafka]\n      processors: [batch]\n      exporters: [clickhouse]\n",
        b = env.brokers,
        ch = sink.port(),
        fetch_wait = env
            .args
            .gateway_max_fetch_wait
            .as_ref()
            .map_or(String::new(), |w| format!("    max_fetch_wait: {w}\n")),
    );
    let mut proc = spawn_wasmcol(env, &dir, &cfg)?;
    let started = Instant::now();
    let pid = proc.pid();
    let sample = || -> anyhow::Result<Sample> {
        Ok(Sample {
            at: Instant::now(),
            rows: sink.rows(),
            collector: cpu_ticks(pid)?,
            sink: self_cpu_ticks()?,
            broker: cpu_ticks(env.broker_pid)?,
        })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut samples, mut inserts) = (Vec::new(), 0);
    loop {
        let n = sink.inserts();
        if n != inserts {
            inserts = n;
            samples.push(sample()?);
        }
        let rows = sink.rows();
        ensure!(
            rows <= spans,
            "the sink counted {rows} rows for {spans} spans"
        );
        if rows == spans {
            break;
        }
        if let Some(s) = proc.0.try_wait()? {
            bail!("collector exited ({s}): see {}", dir.display());
        }
        ensure!(
            Instant::now() < deadline,
            "{rows} of {spans} spans in the sink after 300 s: see {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    if samples.last().is_none_or(|s| s.rows != spans) {
        samples.push(sample()?);
    }
    let peak_rss_mib = peak_rss_mib(pid)?;
    drop(proc);
    eprintln!(
        "gateway #{repeat}: {:.1} bytes of insert bodies per span, as sent",
        sink.body_bytes() as f64 / spans as f64
    );
    ensure!(sink.errors() == 0, "the sink could not decode some inserts");
    ensure!(
        samples.len() >= 3,
        "{} inserts: fill the topic with more spans (--gateway-traces)",
        samples.len()
    );
    let (a, b) = (samples[0], samples[samples.len() - 2]);
    let secs = b.at.duration_since(a.at).as_secs_f64();
    eprintln!(
        "gateway #{repeat}: {} inserts; steady state {:.2} s from the first ({} rows, {:.2} s \
         after start) to the last but one; the last came {:.2} s later",
        samples.len(),
        secs,
        a.rows,
        a.at.duration_since(started).as_secs_f64(),
        samples[samples.len() - 1]
            .at
            .duration_since(b.at)
            .as_secs_f64()
    );
    let n = (b.rows - a.rows) as f64;
    let cpu = |x: u64, y: u64| (y - x) as f64 / env.ticks;
    let collector = cpu(a.collector, b.collector);
    Ok(GatewayRun {
        spans_per_sec: n / secs,
        cpu_s_per_m: collector / n * 1e6,
        spans_per_core_sec: n / collector,
        collector_util: collector / secs,
        sink_util: cpu(a.sink, b.sink) / secs,
        broker_util: cpu(a.broker, b.broker) / secs,
        peak_rss_mib,
    })
}

/// User + system CPU ticks of this process (the sink's threads and the idle harness).
fn self_cpu_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow!("bad stat"))? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// What bounded a gateway run, from the CPU utilisations (cores: the machine's).
fn bottleneck(r: &GatewayRun, cores: f64) -> String {
    let busy = r.collector_util + r.sink_util + r.broker_util;
    if busy >= 0.9 * cores {
        format!(
            "the machine's {cores:.0} cores (collector {:.2} + broker {:.2} + sink {:.2} CPU/s)",
            r.collector_util, r.broker_util, r.sink_util
        )
    } else if r.broker_util >= 0.9 {
        format!("the broker (tansu at {:.2} CPU/s)", r.broker_util)
    } else if r.collector_util >= 0.9 {
        format!(
            "collector CPU ({:.2} cores busy of {cores:.0})",
            r.collector_util
        )
    } else {
        format!(
            "neither CPU: the collector waited ({:.2} cores busy; fetch latency or batching)",
            r.collector_util
        )
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
        broker_pid: broker.pid(),
        ticks: clock_ticks(),
        dir,
    };

    let scenario = |name: &str| env.args.scenarios.iter().any(|s| s == name);
    for s in &env.args.scenarios {
        ensure!(
            ["export", "consume", "gateway"].contains(&s.as_str()),
            "unknown scenario {s:?}"
        );
    }
    let mut targets = vec![Target::Wasmcol];
    if env.rotel.is_some() {
        targets.push(Target::Rotel);
    }
    // The topic the gateway (and consume, without export) reads: filled once, by wasmcol.
    let fill = if scenario("gateway") || (scenario("consume") && !scenario("export")) {
        let r = export_run(&env, Target::Wasmcol, "fill", Some(env.args.gateway_traces))?;
        ensure!(
            r.in_topic == r.accepted,
            "{} spans in the topic for {} accepted",
            r.in_topic,
            r.accepted
        );
        eprintln!("filled topic `fill` with {} spans", r.in_topic);
        Some(r.in_topic)
    } else {
        None
    };
    let mut export: Vec<(Target, ExportRun)> = Vec::new();
    let mut consume: Vec<(f64, f64)> = Vec::new();
    let mut gateway: Vec<GatewayRun> = Vec::new();
    for repeat in 0..env.args.repeats {
        if scenario("export") {
            for &t in &targets {
                let topic = format!("{t:?}-{repeat}").to_lowercase();
                let r = export_run(&env, t, &topic, None)?;
                eprintln!(
                    "export {t:?} #{repeat}: {:.0} spans/s accepted, {} of {} in the topic, {:.2} CPU-s/M",
                    r.accepted as f64 / r.load_secs,
                    r.in_topic,
                    r.accepted,
                    r.cpu_secs / r.accepted as f64 * 1e6
                );
                if t == Target::Wasmcol && scenario("consume") {
                    let c = consume_run(&env, &topic, r.in_topic, repeat)?;
                    eprintln!("consume #{repeat}: {:.0} spans/s, {:.2} CPU-s/M", c.0, c.1);
                    consume.push(c);
                }
                export.push((t, r));
            }
        } else if let (true, Some(spans)) = (scenario("consume"), fill) {
            let c = consume_run(&env, "fill", spans, repeat)?;
            eprintln!("consume #{repeat}: {:.0} spans/s, {:.2} CPU-s/M", c.0, c.1);
            consume.push(c);
        }
        if let (true, Some(spans)) = (scenario("gateway"), fill) {
            let g = gateway_run(&env, "fill", spans, repeat)?;
            eprintln!(
                "gateway #{repeat}: {:.0} spans/s, {:.2} CPU-s/M, {:.0} spans/s per core, \
                 collector {:.2} / sink {:.2} / broker {:.2} CPU/s, peak RSS {:.0} MiB",
                g.spans_per_sec,
                g.cpu_s_per_m,
                g.spans_per_core_sec,
                g.collector_util,
                g.sink_util,
                g.broker_util,
                g.peak_rss_mib
            );
            gateway.push(g);
        }
    }
    if !export.is_empty() || !consume.is_empty() {
        println!(
            "| scenario | collector | spans/s (median) | CPU-s per M spans (median) | spans in topic / accepted |"
        );
        println!("|---|---|---|---|---|");
    }
    for &t in &targets {
        let runs: Vec<&ExportRun> = export
            .iter()
            .filter(|(x, _)| *x == t)
            .map(|(_, r)| r)
            .collect();
        if runs.is_empty() {
            continue;
        }
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
    if !consume.is_empty() {
        println!(
            "| Kafka → nop | wasmcol (kafka → batch → nop) | {:.0} | {:.2} | — |",
            median(consume.iter().map(|c| c.0).collect()),
            median(consume.iter().map(|c| c.1).collect())
        );
    }
    if !gateway.is_empty() {
        let m = |f: fn(&GatewayRun) -> f64| median(gateway.iter().map(f).collect());
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        println!();
        println!(
            "| Kafka → batch → clickhouse (wasmcol defaults{}, discarding sink) | spans/s | \
             CPU-s per M spans | spans/s per core of collector CPU | collector CPU/s | \
             sink CPU/s | broker CPU/s | peak RSS MiB | runs |",
            env.args
                .gateway_max_fetch_wait
                .as_ref()
                .map_or(String::new(), |w| format!(" but max_fetch_wait: {w}"))
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let median_run = GatewayRun {
            spans_per_sec: m(|g| g.spans_per_sec),
            cpu_s_per_m: m(|g| g.cpu_s_per_m),
            spans_per_core_sec: m(|g| g.spans_per_core_sec),
            collector_util: m(|g| g.collector_util),
            sink_util: m(|g| g.sink_util),
            broker_util: m(|g| g.broker_util),
            peak_rss_mib: m(|g| g.peak_rss_mib),
        };
        let g = &median_run;
        println!(
            "| gateway | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {} |",
            g.spans_per_sec,
            g.cpu_s_per_m,
            g.spans_per_core_sec,
            g.collector_util,
            g.sink_util,
            g.broker_util,
            g.peak_rss_mib,
            gateway.len()
        );
        println!("\nBounded by: {}.", bottleneck(g, cores));
    }
    drop(broker);
    Ok(())
}
