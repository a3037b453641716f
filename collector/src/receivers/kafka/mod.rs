//! `kafka` receiver: spans, log records and metrics from Kafka topics in a consumer group,
//! delivered at least once.
//!
//! ```yaml
//! receivers:
//!   kafka:
//!     brokers: [kafka-1:9092]
//!     traces: { topics: [otlp_spans], encoding: otlp_proto }   # the defaults
//!     logs: { topics: [otlp_logs], encoding: otlp_proto }
//!     metrics: { topics: [otlp_metrics], encoding: otlp_json }
//!     group_id: wasmcol-gateway
//!     client_id: gateway-1
//!     initial_offset: latest        # or earliest
//!     session_timeout: 10s
//!     heartbeat_interval: 3s
//!     commit_interval: 1s
//!     max_fetch_wait: 250ms
//!     dead_letter_topic: otlp_spans_dlq   # optional
//! ```
//!
//! One consumer reads the topics of every signal the receiver's pipelines carry, and hands
//! each message's data to that signal's pipelines.
//!
//! An offset is committed only after every exporter of the pipeline delivered the data of
//! that message and of every message before it in its partition: a collector killed
//! mid-stream re-reads, never skips. Data an exporter gave up on for now (retries exhausted,
//! shutdown) is handed to the pipeline again. Neither bad input nor bad data stops a
//! partition:
//! - a message that cannot be decoded is counted (`wasmcol_receiver_malformed_messages_total`),
//!   logged with topic, partition and offset, and skipped or written to the dead-letter topic;
//! - a message whose data the pipeline refused for good (a permanent error or a partial
//!   rejection by a destination) is counted (`wasmcol_receiver_rejected_messages_total`,
//!   `wasmcol_receiver_rejected_spans_total`), logged with topic, partition, offset and the
//!   reason, and skipped or written to the dead-letter topic.
//!
//! Dead-letter messages are the original key and value, with headers `wasmcol.source.topic`,
//! `wasmcol.source.partition`, `wasmcol.source.offset` and `wasmcol.error` (the reason); the
//! offset is committed only once the dead-letter topic has acknowledged the write.

mod config;
mod consumer;
mod offsets;
mod payloads;
#[cfg(test)]
mod tests;

pub use config::{InitialOffset, KafkaReceiverConfig, SignalTopics};
pub use offsets::{Offsets, Ticket};

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, Consumers, Lifecycle, ReceiverConfig};
use crate::pipeline::{SignalKind, Signals};
use consumer::{DeadLetter, GroupContext, RejectedMetrics, Route, Routes, Worker};

impl ReceiverConfig for KafkaReceiverConfig {
    fn signals(&self) -> Signals {
        Signals::ALL
    }

    fn build(&self, ctx: &BuildContext, next: Consumers) -> anyhow::Result<Arc<dyn Lifecycle>> {
        let id = ctx.id.to_string();
        let how = |signal: SignalKind| {
            (
                self.encoding_for(signal),
                ctx.metrics.receiver(&id, "kafka", signal),
            )
        };
        let routes = Routes {
            traces: next.traces.map(|n| Route::new(n, how(SignalKind::Traces))),
            logs: next.logs.map(|n| Route::new(n, how(SignalKind::Logs))),
            metrics: next
                .metrics
                .map(|n| Route::new(n, how(SignalKind::Metrics))),
        };
        let used = routes.signals();
        if used.is_empty() {
            anyhow::bail!("receiver {id} feeds no pipeline");
        }
        if let Some(p) = self.shared_topic(&used) {
            anyhow::bail!("receivers.{id}.{}: {}", p.path, p.message);
        }
        crate::kafka::client::warn_plaintext_sasl(
            &format!("receivers.{id}"),
            &self.client().client_config(),
        );
        let (messages, spans) = ctx.metrics.receiver_rejected(&id);
        Ok(Arc::new(KafkaReceiver {
            id: id.clone(),
            config: self.clone(),
            routes: Arc::new(routes),
            malformed: ctx.metrics.receiver_malformed(&id),
            rejected: RejectedMetrics { messages, spans },
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        }))
    }
}

struct KafkaReceiver {
    id: String,
    config: KafkaReceiverConfig,
    routes: Arc<Routes>,
    malformed: prometheus_client::metrics::counter::Counter,
    rejected: RejectedMetrics,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// `queued.max.messages.kbytes`: messages fetched ahead of the pipeline, in KiB.
const PREFETCH_KIB: u32 = 16 * 1024;

impl KafkaReceiver {
    fn consumer_config(&self) -> rdkafka::ClientConfig {
        let cfg = &self.config;
        let mut c = cfg.client().client_config();
        let ms = |d: crate::config::Duration| d.get().as_millis().to_string();
        c.set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", ms(cfg.commit_interval))
            // Offsets are stored by us, only for delivered data.
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match cfg.initial_offset {
                    InitialOffset::Latest => "latest",
                    InitialOffset::Earliest => "earliest",
                },
            )
            .set("session.timeout.ms", ms(cfg.session_timeout))
            .set("heartbeat.interval.ms", ms(cfg.heartbeat_interval))
            .set("fetch.wait.max.ms", ms(cfg.max_fetch_wait))
            // What librdkafka fetches ahead of the pipeline, in KiB: 16 MiB instead of its
            // 64 MiB, part of keeping a gateway's memory bounded (a librdkafka_options entry
            // overrides it).
            .set("queued.max.messages.kbytes", PREFETCH_KIB.to_string())
            .set("enable.partition.eof", "false");
        for (k, v) in &cfg.librdkafka_options {
            c.set(k, v);
        }
        c
    }
}

#[async_trait]
impl Lifecycle for KafkaReceiver {
    async fn start(&self) -> anyhow::Result<()> {
        let offsets = Arc::new(Mutex::new(Offsets::default()));
        let context = GroupContext {
            id: self.id.clone(),
            offsets: offsets.clone(),
        };
        let topics: Vec<String> = self
            .routes
            .signals()
            .into_iter()
            .flat_map(|s| self.config.topics_for(s))
            .collect();
        let consumer = consumer::subscribe(&self.consumer_config(), context, &topics)?;
        let dead_letter = if self.config.dead_letter_topic.is_empty() {
            None
        } else {
            let producer = self
                .config
                .client()
                .client_config()
                .set("acks", "all")
                .create()
                .map_err(|e| anyhow::anyhow!("cannot create the dead-letter producer: {e}"))?;
            Some(Arc::new(DeadLetter {
                producer,
                topic: self.config.dead_letter_topic.clone(),
            }))
        };
        let worker = Arc::new(Worker::new(
            self.id.clone(),
            self.routes.clone(),
            self.config.routes_by_topic(&self.routes.signals()),
            self.config.max_message_bytes(),
            self.malformed.clone(),
            self.rejected.clone(),
            consumer,
            offsets,
            dead_letter,
            self.stop.clone(),
        ));
        tracing::info!(receiver = %self.id, ?topics, group = %self.config.group_id, "consuming");
        *self.task.lock().expect("kafka receiver lock") = Some(tokio::spawn(worker.run()));
        Ok(())
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        let task = self.task.lock().expect("kafka receiver lock").take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}
