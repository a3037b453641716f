//! `kafka` exporter: spans, log records and metrics to Kafka topics as OTLP messages, with
//! the OpenTelemetry Collector's option names.
//!
//! ```yaml
//! exporters:
//!   kafka:
//!     brokers: [kafka-1:9092, kafka-2:9092]
//!     traces: { topic: otlp_spans, encoding: otlp_proto }     # the defaults
//!     logs: { topic: otlp_logs, encoding: otlp_proto }
//!     metrics: { topic: otlp_metrics, encoding: otlp_json }
//!     topic_from_attribute: kafka.topic   # optional: per-resource topic
//!     topic_from_metadata_key: x-tenant   # optional: per-request topic (wins over the attribute)
//!     allowed_topics: [acme, "tenant-*"]  # required with it: what clients may choose
//!     partition_traces_by_id: true        # key = trace id: a trace stays in one partition
//!     partition_logs_by_resource_attributes: true    # or partition_logs_by_trace_id
//!     partition_metrics_by_resource_attributes: true
//!     timeout: 5s                         # per delivery attempt
//!     producer:
//!       max_message_bytes: 1000000        # batches are split to stay below
//!       required_acks: all                # all (-1), 1, 0
//!       compression: zstd                 # none, gzip, snappy, lz4, zstd
//!       idempotent: true
//!       linger: 5ms
//!     tls: { ca_file: /etc/kafka/ca.pem }
//!     auth: { sasl: { mechanism: SCRAM-SHA-512, username: u, password: "${env:KAFKA_PASSWORD}" } }
//!     sending_queue: { queue_size: 1000, num_consumers: 10 }
//!     retry_on_failure: { initial_interval: 1s, max_elapsed_time: 300s }
//! ```
//!
//! Delivery reports drive the outcome: a batch is delivered when the broker acknowledged every
//! message cut from it; failed messages are retried from the bounded sending queue; when the
//! queue is full, upstream gets a retryable refusal.

mod config;
mod messages;
mod producer;
mod signal_split;
mod wire_split;

pub use config::{
    KafkaCompression, KafkaExporterConfig, ProducerConfig, RequiredAcks, SignalConfig,
};
pub use messages::{OutMessage, RECORD_OVERHEAD, Splitter};
pub use producer::{KafkaSender, SharedProducer};
pub use signal_split::{KafkaSignal, Keying, SignalSplitter, resource_key};

use std::sync::Arc;

use crate::component::{BuildContext, Exporter, ExporterConfig};
use crate::config::Duration;
use crate::exporters::sending_queue::SendingQueue;
use crate::kafka::client;

/// Slack over `timeout` for the sending queue's own bound on an attempt: librdkafka reports a
/// timed-out message itself, which is the cleaner failure.
const ATTEMPT_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

impl ExporterConfig for KafkaExporterConfig {
    crate::component::exports_every_signal!(build);

    fn storage(&self) -> Option<crate::component::ComponentId> {
        self.sending_queue.storage_id()
    }
}

impl KafkaExporterConfig {
    /// The exporter for signal `S`; an exporter's signals share one producer.
    fn build<S: KafkaSignal>(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<S>>> {
        let id = ctx.id.to_string();
        let producer = ctx.shared(|| {
            client::warn_plaintext_sasl(&format!("exporters.{id}"), &self.client().client_config());
            SharedProducer::new(self).map_err(|e| anyhow::anyhow!("exporters.{id}: {e}"))
        })?;
        let sender = KafkaSender::<S>::with_producer(
            producer,
            self,
            &id,
            ctx.metrics.kafka_topic_not_allowed(&id),
        );
        Ok(Arc::new(SendingQueue::new(
            ctx,
            sender,
            &self.sending_queue,
            &self.retry_on_failure,
            Duration(self.timeout.get() + ATTEMPT_SLACK),
        )))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wire_split_tests;
