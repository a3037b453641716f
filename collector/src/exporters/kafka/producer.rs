//! The producer side: one [`Sender`] attempt = produce every message of a batch not yet acked
//! and wait for librdkafka's delivery report of each.
//!
//! A batch counts as delivered only when the broker acknowledged every one of its messages
//! (with the configured `acks`). Acked messages are remembered in the payload, so a retry
//! sends only what is still missing instead of duplicating what already arrived.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::config::KafkaExporterConfig;
use super::messages::{OutMessage, Splitter};
use super::signal_split::{KafkaSignal, Keying, SignalSplitter};
use crate::exporters::sending_queue::{Accepted, SendError, Sender};
use crate::pipeline::{Batch, SignalKind, Traces};

const PENDING: u8 = 0;
const ACKED: u8 = 1;
const REJECTED: u8 = 2;

/// How long to wait before offering a message again when librdkafka's local queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);

/// A batch cut into messages, with what happened to each so far.
pub struct Payload {
    messages: Vec<OutMessage>,
    state: Vec<AtomicU8>,
    /// Items that fit in no message (see [`Splitter`]).
    too_large_spans: u64,
}

/// The librdkafka producer of an exporter, shared by its senders of every signal.
pub struct SharedProducer {
    /// Replaced when librdkafka reports a fatal error (the idempotent producer can end up in
    /// one, after which it refuses everything).
    producer: RwLock<Arc<FutureProducer>>,
    config: ClientConfig,
}

/// Produces batches of signal `S` to Kafka with librdkafka.
pub struct KafkaSender<S: KafkaSignal = Traces> {
    producer: Arc<SharedProducer>,
    splitter: SignalSplitter,
    /// The exporter's id, for log lines.
    id: String,
    /// Batches whose metadata named a topic outside `allowed_topics`.
    topic_not_allowed: Counter,
    signal: PhantomData<fn() -> S>,
}

impl SharedProducer {
    /// Creates the producer (librdkafka connects lazily, so this succeeds with brokers down).
    pub fn new(cfg: &KafkaExporterConfig) -> anyhow::Result<Self> {
        let mut c = cfg.client().client_config();
        let p = &cfg.producer;
        c.set("acks", p.required_acks.as_str())
            .set("enable.idempotence", p.idempotent.to_string())
            .set("compression.type", p.compression.as_str())
            .set("linger.ms", p.linger.get().as_millis().to_string())
            .set("message.max.bytes", p.max_message_bytes.to_string())
            // librdkafka refuses a batch.size above message.max.bytes.
            .set("batch.size", p.max_message_bytes.min(1_000_000).to_string())
            .set(
                "message.timeout.ms",
                cfg.timeout.get().as_millis().to_string(),
            )
            // The Java client's partitioner: a trace id maps to the same partition whichever
            // of the usual clients produced it.
            .set("partitioner", "murmur2_random");
        // Options the user named win over ours.
        for (k, v) in &cfg.librdkafka_options {
            c.set(k, v);
        }
        let producer: FutureProducer = c
            .create()
            .map_err(|e| anyhow::anyhow!("cannot create the Kafka producer: {e}"))?;
        Ok(Self {
            producer: RwLock::new(Arc::new(producer)),
            config: c,
        })
    }
}

impl<S: KafkaSignal> KafkaSender<S> {
    /// Creates a producer for exporter `id` and a sender on it; `topic_not_allowed` counts
    /// batches that named a topic outside `allowed_topics`.
    pub fn new(
        cfg: &KafkaExporterConfig,
        id: &str,
        topic_not_allowed: Counter,
    ) -> anyhow::Result<Self> {
        Ok(Self::with_producer(
            Arc::new(SharedProducer::new(cfg)?),
            cfg,
            id,
            topic_not_allowed,
        ))
    }

    /// A sender of signal `S` on `producer` (an exporter's senders share one).
    pub fn with_producer(
        producer: Arc<SharedProducer>,
        cfg: &KafkaExporterConfig,
        id: &str,
        topic_not_allowed: Counter,
    ) -> Self {
        let keying = match S::KIND {
            SignalKind::Traces => Keying::None,
            SignalKind::Logs if cfg.partition_logs_by_trace_id => Keying::TraceId,
            SignalKind::Logs if cfg.partition_logs_by_resource_attributes => {
                Keying::ResourceAttributes
            }
            SignalKind::Metrics if cfg.partition_metrics_by_resource_attributes => {
                Keying::ResourceAttributes
            }
            SignalKind::Logs | SignalKind::Metrics => Keying::None,
        };
        Self {
            producer,
            splitter: SignalSplitter {
                base: Splitter {
                    encoding: cfg.encoding_for(S::KIND),
                    topic: Arc::from(cfg.topic_for(S::KIND)),
                    topic_from_attribute: cfg.topic_from_attribute.clone(),
                    topic_from_metadata_key: cfg.topic_from_metadata_key_for(S::KIND).to_string(),
                    allowed_topics: cfg.allowed_topics.clone(),
                    partition_traces_by_id: S::KIND == SignalKind::Traces
                        && cfg.partition_traces_by_id,
                    max_message_bytes: cfg.producer.max_message_bytes,
                },
                keying,
            },
            id: id.to_string(),
            topic_not_allowed,
            signal: PhantomData,
        }
    }
}

/// Errors that the same message will meet again on every attempt.
fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::InvalidTopic
        )
    )
}

#[async_trait]
impl<S: KafkaSignal> Sender for KafkaSender<S> {
    type Signal = S;

    type Payload = Payload;

    fn prepare(&self, batch: &Batch<S>) -> Payload {
        let split = S::split(&self.splitter, batch);
        if let Some(topic) = &split.topic_not_allowed {
            self.topic_not_allowed.inc();
            // The value comes from a client: quoted, and cut short.
            let topic: String = topic.chars().take(64).collect();
            crate::telemetry::log_limited!(warn, "topic not in allowed_topics";
                exporter = %self.id,
                topic = ?topic,
                "a batch named a topic outside allowed_topics: sent to the default topic"
            );
        }
        Payload {
            state: split
                .messages
                .iter()
                .map(|_| AtomicU8::new(PENDING))
                .collect(),
            messages: split.messages,
            too_large_spans: split.rejected_spans,
        }
    }

    async fn send(&self, payload: &Payload) -> Result<Accepted, SendError> {
        let producer = self
            .producer
            .producer
            .read()
            .expect("producer lock")
            .clone();
        let result = self.send_with(&producer, payload).await;
        if result.is_err() {
            self.producer.replace_if_fatal(&producer);
        }
        result
    }
}

impl SharedProducer {
    /// Starts a new producer if `failed` (the one in use) is in a fatal state.
    fn replace_if_fatal(&self, failed: &Arc<FutureProducer>) {
        let Some((code, reason)) = failed.client().fatal_error() else {
            return;
        };
        let mut current = self.producer.write().expect("producer lock");
        if !Arc::ptr_eq(&current, failed) {
            return; // another attempt replaced it already
        }
        crate::telemetry::log_limited!(error, "the Kafka producer hit a fatal error; starting a new one", ?code, %reason);
        match self.config.create::<FutureProducer>() {
            Ok(p) => *current = Arc::new(p),
            Err(e) => {
                crate::telemetry::log_limited!(error, "cannot recreate the Kafka producer", error = %e)
            }
        }
    }
}

impl<S: KafkaSignal> KafkaSender<S> {
    async fn send_with(
        &self,
        producer: &FutureProducer,
        payload: &Payload,
    ) -> Result<Accepted, SendError> {
        let mut in_flight = Vec::new();
        let mut last_error: Option<KafkaError> = None;
        for (i, m) in payload.messages.iter().enumerate() {
            if payload.state[i].load(Ordering::Acquire) != PENDING {
                continue;
            }
            let mut record = FutureRecord::to(&m.topic).payload(m.value.as_ref());
            if let Some(k) = &m.key {
                record = record.key(k.as_ref());
            }
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        in_flight.push((i, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // librdkafka's own buffer is full: wait for deliveries to free it.
                        // The sending queue's timeout bounds this.
                        record = r;
                        tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    }
                    Err((e, _)) => {
                        if is_permanent(&e) {
                            payload.state[i].store(REJECTED, Ordering::Release);
                        }
                        last_error = Some(e);
                        break;
                    }
                }
            }
        }
        for (i, delivery) in in_flight {
            match delivery.await {
                Ok(Ok(_)) => payload.state[i].store(ACKED, Ordering::Release),
                Ok(Err((e, _))) => {
                    if is_permanent(&e) {
                        payload.state[i].store(REJECTED, Ordering::Release);
                    }
                    last_error = Some(e);
                }
                Err(_) => {
                    last_error = Some(KafkaError::Canceled);
                }
            }
        }
        let pending = payload
            .state
            .iter()
            .filter(|s| s.load(Ordering::Acquire) == PENDING)
            .count();
        if pending > 0 {
            let e = last_error.map_or_else(|| "no delivery report".to_string(), |e| e.to_string());
            return Err(SendError::retryable(format!(
                "{pending} of {} messages not acknowledged: {e}",
                payload.messages.len()
            )));
        }
        let rejected: u64 = payload
            .messages
            .iter()
            .zip(&payload.state)
            .filter(|(_, s)| s.load(Ordering::Acquire) == REJECTED)
            .map(|(m, _)| m.spans)
            .sum::<u64>()
            + payload.too_large_spans;
        if rejected == 0 {
            return Ok(Accepted::all());
        }
        let why = match last_error {
            Some(e) => format!("the broker rejected messages: {e}"),
            None => format!("{} larger than producer.max_message_bytes", S::KIND.items()),
        };
        Ok(Accepted {
            rejected,
            message: why,
        })
    }
}
