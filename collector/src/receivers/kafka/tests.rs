//! The receiver against librdkafka's mock cluster: which offsets are committed and what goes to
//! the dead-letter topic when the pipeline delivers, gives up for now, or refuses for good.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::KafkaReceiverConfig;
use crate::component::{Lifecycle, ReceiverConfig};
use crate::pipeline::{ConsumeError, TraceBatch, Traces};
use crate::testing;

/// The rest of the pipeline, acting on each message by its span's name: `reject…` is refused
/// for good by an exporter after `consume` returned, `refuse…` is refused for good by
/// `consume` itself, `flaky…` is given up on once (retries exhausted) and then delivered, and
/// anything else is delivered.
#[derive(Default)]
struct Pipeline {
    /// Span names in the order their batches arrived (a message handed over again shows twice).
    seen: Mutex<Vec<String>>,
}

impl Pipeline {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl crate::pipeline::Consumer<Traces> for Pipeline {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let name = batch.resources()[0].scope_spans[0].spans[0].name.clone();
        let first_time = {
            let mut seen = self.seen.lock().unwrap();
            let first = !seen.contains(&name);
            seen.push(name.clone());
            first
        };
        if name.starts_with("reject") {
            batch
                .delivery
                .reject_because("HTTP 400 Bad Request: span has no trace id");
        } else if name.starts_with("refuse") {
            return Err(ConsumeError::permanent("processor x: unknown tenant"));
        } else if name.starts_with("flaky") && first_time {
            batch.delivery.fail();
        }
        Ok(())
    }
}

/// One OTLP message holding one span called `name`.
fn message(name: &str) -> Vec<u8> {
    TraceBatch::new(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                name: name.to_string(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
    .to_protobuf()
    .to_vec()
}

async fn produce(brokers: &str, names: &[&str]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for name in names {
        producer
            .send(
                FutureRecord::to("spans")
                    .key(&format!("key-{name}"))
                    .payload(&message(name)),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
}

fn receiver_config(brokers: &str, dead_letter: bool) -> KafkaReceiverConfig {
    let dlq = if dead_letter {
        "dead_letter_topic: spans_dlq"
    } else {
        ""
    };
    serde_yaml_ng::from_str(&format!(
        "brokers: [{brokers}]\ntopics: [spans]\ngroup_id: g\ninitial_offset: earliest\n\
         session_timeout: 6s\nheartbeat_interval: 1s\ncommit_interval: 50ms\nmax_fetch_wait: 10ms\n{dlq}"
    ))
    .unwrap()
}

/// The offset group `g` committed for `spans`/0 (-1 for none).
fn committed(brokers: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "g")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("spans", 0);
    match c.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(tpl) => match tpl.find_partition("spans", 0).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        },
        Err(_) => -1,
    }
}

/// A dead-letter message: key, the span name in the value, headers.
#[derive(Debug)]
struct DeadLetter {
    key: String,
    name: String,
    headers: HashMap<String, String>,
}

fn dead_letters(brokers: &str, at_least: usize) -> Vec<DeadLetter> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("spans_dlq", 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while out.len() < at_least && Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        let batch = TraceBatch::from_protobuf(bytes::Bytes::copy_from_slice(
            m.payload().unwrap_or_default(),
        ))
        .unwrap();
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(DeadLetter {
            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            name: batch.resources()[0].scope_spans[0].spans[0].name.clone(),
            headers,
        });
    }
    out
}

fn dlq_high_watermark(brokers: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    c.fetch_watermarks("spans_dlq", 0, Duration::from_secs(5))
        .map_or(0, |(_, hi)| hi)
}

/// Polls `f` (off the async threads) until it holds or `secs` pass.
async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if tokio::task::block_in_place(&mut f) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Running {
    receiver: Arc<dyn Lifecycle>,
    pipeline: Arc<Pipeline>,
    /// (messages, spans) counted as rejected.
    rejected: Box<dyn Fn() -> (u64, u64)>,
}

async fn start(brokers: &str, dead_letter: bool) -> Running {
    let ctx = testing::context("kafka");
    let pipeline = Arc::new(Pipeline::default());
    let receiver = receiver_config(brokers, dead_letter)
        .build(
            &ctx,
            crate::component::Consumers {
                traces: Some(pipeline.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    receiver.start().await.unwrap();
    let (messages, spans) = ctx.metrics.receiver_rejected("kafka");
    Running {
        receiver,
        pipeline,
        rejected: Box::new(move || (messages.get(), spans.get())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_data_is_dead_lettered_and_the_offset_moves_on() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("spans", 1, 1).unwrap();
    mock.create_topic("spans_dlq", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let names = ["ok-0", "flaky-1", "reject-2", "ok-3", "refuse-4", "ok-5"];
    produce(&brokers, &names).await;
    let r = start(&brokers, true).await;

    assert!(
        eventually(20, || committed(&brokers) == 6).await,
        "the offset must move past every message; committed {}, pipeline saw {:?}",
        committed(&brokers),
        r.pipeline.seen()
    );
    let mut seen = r.pipeline.seen();
    seen.sort();
    assert_eq!(
        seen,
        [
            "flaky-1", "flaky-1", "ok-0", "ok-3", "ok-5", "refuse-4", "reject-2"
        ],
        "data given up on for now is handed over again; data refused for good is not"
    );
    assert_eq!((r.rejected)(), (2, 2));

    let mut dlq = tokio::task::block_in_place(|| dead_letters(&brokers, 2));
    dlq.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        dlq.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["refuse-4", "reject-2"],
        "{dlq:?}"
    );
    let header = |d: &DeadLetter, k: &str| d.headers.get(k).cloned().unwrap_or_default();
    assert_eq!(dlq[0].key, "key-refuse-4");
    assert_eq!(header(&dlq[0], "wasmcol.source.offset"), "4");
    assert_eq!(
        header(&dlq[0], "wasmcol.error"),
        "processor x: unknown tenant"
    );
    assert_eq!(dlq[1].key, "key-reject-2");
    assert_eq!(header(&dlq[1], "wasmcol.source.topic"), "spans");
    assert_eq!(header(&dlq[1], "wasmcol.source.partition"), "0");
    assert_eq!(header(&dlq[1], "wasmcol.source.offset"), "2");
    assert_eq!(
        header(&dlq[1], "wasmcol.error"),
        "HTTP 400 Bad Request: span has no trace id"
    );
    r.receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_topic_refused_data_is_counted_and_skipped() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("spans", 1, 1).unwrap();
    mock.create_topic("spans_dlq", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    produce(&brokers, &["reject-0", "refuse-1", "ok-2"]).await;
    let r = start(&brokers, false).await;
    assert!(
        eventually(20, || committed(&brokers) == 3).await,
        "committed {}, pipeline saw {:?}",
        committed(&brokers),
        r.pipeline.seen()
    );
    assert_eq!(r.pipeline.seen(), ["reject-0", "refuse-1", "ok-2"]);
    assert_eq!((r.rejected)(), (2, 2));
    assert_eq!(
        tokio::task::block_in_place(|| dlq_high_watermark(&brokers)),
        0
    );
    r.receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offset_waits_for_the_dead_letter_write() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("spans", 1, 1).unwrap();
    mock.create_topic("spans_dlq", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    produce(&brokers, &["reject-0", "ok-1"]).await;
    // The next four writes fail (not retried by librdkafka): the dead-letter write is retried
    // with a growing pause (0.1 + 0.2 + 0.4 + 0.8 s).
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 4],
    );
    let r = start(&brokers, true).await;

    let mut held = false;
    let done = eventually(20, || {
        // Committed first: a commit past the rejected message implies the write was
        // acknowledged before it.
        let c = committed(&brokers);
        let written = dlq_high_watermark(&brokers);
        assert!(
            c <= 0 || written == 1,
            "offset {c} committed before the dead-letter write"
        );
        if c <= 0 && written == 0 && r.pipeline.seen().iter().any(|n| n == "ok-1") {
            held = true;
        }
        c == 2
    })
    .await;
    assert!(
        done,
        "committed {}, dead letters {}",
        committed(&brokers),
        dlq_high_watermark(&brokers)
    );
    assert!(
        held,
        "while the dead-letter topic refused the write, the delivered message after it was not committed"
    );
    assert_eq!(r.pipeline.seen(), ["reject-0", "ok-1"]);
    assert_eq!((r.rejected)(), (1, 1));
    r.receiver.shutdown().await;
}

/// A logs or metrics pipeline that records what it is given: the log bodies (refusing for good
/// those starting with `reject`) or the metric names.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl crate::pipeline::Consumer<crate::pipeline::Logs> for Recorder {
    async fn consume(
        &self,
        batch: crate::pipeline::Batch<crate::pipeline::Logs>,
    ) -> Result<(), ConsumeError> {
        let record = &batch.resources()[0].scope_logs[0].log_records[0];
        let body = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                s.clone()
            }
            other => panic!("body {other:?}"),
        };
        if body.starts_with("reject") {
            batch
                .delivery
                .reject_because("HTTP 400 Bad Request: bad log");
        }
        self.seen.lock().unwrap().push(body);
        Ok(())
    }
}

#[async_trait]
impl crate::pipeline::Consumer<crate::pipeline::Metrics> for Recorder {
    async fn consume(
        &self,
        batch: crate::pipeline::Batch<crate::pipeline::Metrics>,
    ) -> Result<(), ConsumeError> {
        let name = batch.resources()[0].scope_metrics[0].metrics[0]
            .name
            .clone();
        self.seen.lock().unwrap().push(name);
        Ok(())
    }
}

fn log_message(body: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    crate::pipeline::Batch::<crate::pipeline::Logs>::new(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord {
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(body.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
    .to_protobuf()
    .to_vec()
}

fn metric_json(name: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
    };
    let rm = vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: name.into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint::default()],
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let mut out = Vec::new();
    crate::otlp::json::encode_metrics(&rm, &mut out);
    out
}

/// The offset group `g` committed for `topic`/0 (-1 for none).
fn committed_in(brokers: &str, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "g")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    match c.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(tpl) => match tpl.find_partition(topic, 0).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        },
        Err(_) => -1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_metrics_reach_their_pipelines_and_poison_is_dead_lettered() {
    let mock = MockCluster::new(1).unwrap();
    for topic in ["logs", "metrics", "signals_dlq"] {
        mock.create_topic(topic, 1, 1).unwrap();
    }
    let brokers = mock.bootstrap_servers();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let messages: [(&str, Vec<u8>); 7] = [
        ("logs", log_message("ok-0")),
        ("logs", b"\xff\xff not protobuf".to_vec()),
        ("logs", log_message("reject-2")),
        ("logs", log_message("ok-3")),
        ("metrics", metric_json("m-0")),
        // Protobuf on a topic read as OTLP/JSON: cannot be decoded.
        ("metrics", log_message("not-json")),
        ("metrics", metric_json("m-2")),
    ];
    for (topic, value) in &messages {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let config: KafkaReceiverConfig = serde_yaml_ng::from_str(&format!(
        "brokers: [{brokers}]\nlogs: {{ topics: [logs] }}\n\
         metrics: {{ topics: [metrics], encoding: otlp_json }}\n\
         group_id: g\ninitial_offset: earliest\nsession_timeout: 6s\nheartbeat_interval: 1s\n\
         commit_interval: 50ms\nmax_fetch_wait: 10ms\ndead_letter_topic: signals_dlq"
    ))
    .unwrap();
    let ctx = testing::context("kafka");
    let logs = Arc::new(Recorder::default());
    let metrics = Arc::new(Recorder::default());
    let receiver = config
        .build(
            &ctx,
            crate::component::Consumers {
                logs: Some(logs.clone()),
                metrics: Some(metrics.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    receiver.start().await.unwrap();

    assert!(
        eventually(20, || committed_in(&brokers, "logs") == 4
            && committed_in(&brokers, "metrics") == 3)
        .await,
        "committed logs {} metrics {}; saw {:?} {:?}",
        committed_in(&brokers, "logs"),
        committed_in(&brokers, "metrics"),
        logs.seen.lock().unwrap(),
        metrics.seen.lock().unwrap()
    );
    assert_eq!(*logs.seen.lock().unwrap(), ["ok-0", "reject-2", "ok-3"]);
    assert_eq!(*metrics.seen.lock().unwrap(), ["m-0", "m-2"]);
    assert_eq!(ctx.metrics.receiver_malformed("kafka").get(), 2);
    let (rejected, spans) = ctx.metrics.receiver_rejected("kafka");
    assert_eq!((rejected.get(), spans.get()), (1, 0));

    // The three poison messages, unchanged, with their origin.
    let mut dead: Vec<(String, String, Vec<u8>)> = tokio::task::block_in_place(|| {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "reader")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("signals_dlq", 0, Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.len() < 3 && Instant::now() < deadline {
            let Some(m) = c.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m.unwrap();
            let header = |k: &str| {
                m.headers()
                    .and_then(|h| h.iter().find(|h| h.key == k))
                    .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                    .unwrap_or_default()
            };
            out.push((
                header("wasmcol.source.topic"),
                header("wasmcol.source.offset"),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
        out
    });
    dead.sort();
    assert_eq!(
        dead,
        [
            ("logs".into(), "1".into(), messages[1].1.clone()),
            ("logs".into(), "2".into(), messages[2].1.clone()),
            ("metrics".into(), "1".into(), messages[5].1.clone()),
        ]
    );
    receiver.shutdown().await;
}

#[test]
fn a_topic_read_for_two_signals_is_refused_at_build() {
    let config: KafkaReceiverConfig = serde_yaml_ng::from_str("topics: [shared]").unwrap();
    let both = crate::component::Consumers {
        traces: Some(Arc::new(Pipeline::default())),
        logs: Some(Arc::new(Recorder::default())),
        ..Default::default()
    };
    let e = config
        .build(&testing::context("kafka"), both)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("receivers.kafka.topics") && e.contains("\"shared\" is also read for traces"),
        "{e}"
    );
    let none = crate::component::Consumers::default();
    assert!(config.build(&testing::context("kafka"), none).is_err());
}
