//! `kafka` exporter: spans to Kafka topics as OTLP messages, with the OpenTelemetry
//! Collector's option names.
//!
//! ```yaml
//! exporters:
//!   kafka:
//!     brokers: [kafka-1:9092, kafka-2:9092]
//!     topic: otlp_spans
//!     topic_from_attribute: kafka.topic   # optional: per-resource topic
//!     topic_from_metadata_key: x-tenant   # optional: per-request topic (wins over the attribute)
//!     allowed_topics: [acme, "tenant-*"]  # required with it: what clients may choose
//!     encoding: otlp_proto                # or otlp_json
//!     partition_traces_by_id: true        # key = trace id: a trace stays in one partition
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

pub mod client;
mod config;
pub mod encoding;
mod messages;
mod producer;
mod wire_split;

pub(crate) use config::topic_problem;
pub use config::{KafkaCompression, KafkaExporterConfig, ProducerConfig, RequiredAcks};
pub use encoding::Encoding;
pub use messages::{OutMessage, RECORD_OVERHEAD, Splitter};
pub use producer::KafkaSender;

use std::sync::Arc;

use crate::component::{BuildContext, Exporter, ExporterConfig};
use crate::config::Duration;
use crate::exporters::sending_queue::SendingQueue;
use crate::pipeline::Traces;

/// Slack over `timeout` for the sending queue's own bound on an attempt: librdkafka reports a
/// timed-out message itself, which is the cleaner failure.
const ATTEMPT_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

impl ExporterConfig for KafkaExporterConfig {
    fn storage(&self) -> Option<crate::component::ComponentId> {
        self.sending_queue.storage_id()
    }

    fn build_traces(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<Traces>>> {
        client::warn_plaintext_sasl(
            &format!("exporters.{}", ctx.id),
            &self.client().client_config(),
        );
        let id = ctx.id.to_string();
        let sender = KafkaSender::new(self, &id, ctx.metrics.kafka_topic_not_allowed(&id))
            .map_err(|e| anyhow::anyhow!("exporters.{id}: {e}"))?;
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
