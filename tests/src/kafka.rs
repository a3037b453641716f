//! A real Kafka-protocol broker for the tests (`tansu`, in-memory storage, on loopback), and
//! small rdkafka helpers to create topics, produce and read back.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::free_port;

/// The `tansu` binary: on PATH, or where `cargo install` puts it (tests/run.sh installs it).
pub fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WASMCOL_TANSU") {
        return PathBuf::from(p);
    }
    if let Ok(out) = Command::new("which").arg("tansu").output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        });
    let p = home.join("bin/tansu");
    assert!(
        p.exists(),
        "the tansu broker is not installed: run tests/run.sh (it runs `cargo install tansu --features dynostore`)"
    );
    p
}

/// A tansu broker with in-memory storage on 127.0.0.1; killed on drop.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:port`, for `brokers:` and `bootstrap.servers`.
    pub address: String,
}

impl Broker {
    /// Starts a broker on a free port and waits until it answers metadata requests.
    pub fn start() -> Self {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let b = Self {
            child,
            address: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen within 20s");
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        create_topic(&self.address, topic, partitions);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Creates `topic` on the cluster at `brokers`.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let results = block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("create topics");
    for r in results {
        if let Err((t, e)) = r {
            panic!("cannot create topic {t}: {e}");
        }
    }
}

/// Produces `(key, value)` messages to `topic` and waits for every ack.
pub fn produce(brokers: &str, topic: &str, messages: &[(Option<Vec<u8>>, Vec<u8>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .create()
        .expect("producer");
    block_on(async {
        for (k, v) in messages {
            let mut r = FutureRecord::to(topic).payload(v);
            if let Some(k) = k {
                r = r.key(k);
            }
            producer
                .send(r, Duration::from_secs(10))
                .await
                .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
        }
    });
}

/// Produces `messages` one at a time, `pause` apart, each acked before the next: a steady
/// stream for tests that act while data is still arriving.
pub fn produce_stream(
    brokers: &str,
    topic: &str,
    messages: &[(Option<Vec<u8>>, Vec<u8>)],
    pause: Duration,
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    block_on(async {
        for (k, v) in messages {
            let mut r = FutureRecord::to(topic).payload(v);
            if let Some(k) = k {
                r = r.key(k);
            }
            producer
                .send(r, Duration::from_secs(10))
                .await
                .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
            tokio::time::sleep(pause).await;
        }
    });
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition it was in.
    pub partition: i32,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Vec<u8>,
    /// Its offset.
    pub offset: i64,
    /// Its headers, in order (a header without a value reads as empty).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Reads every message of `topic` from the beginning until none arrives for a second (at
/// least up to the high watermarks; tansu 0.6 reports a batch of records as one offset in its
/// watermarks, so they are only a lower bound).
pub fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "wasmcol-tests-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut at_least = 0i64;
    for &p in &partitions {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        at_least += hi - lo;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Instant::now();
    while Instant::now() < deadline
        && ((out.len() as i64) < at_least || last.elapsed() < Duration::from_secs(1))
    {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            last = Instant::now();
            out.push(Record {
                partition: m.partition(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
                offset: m.offset(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    out
}
