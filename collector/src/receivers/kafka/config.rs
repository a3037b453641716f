use std::collections::BTreeMap;

use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::Duration;
use crate::exporters::kafka::client::{
    AuthConfig, ClientSettings, default_brokers, default_client_id,
};
use crate::exporters::kafka::{Encoding, topic_problem};

/// `initial_offset`: where a consumer group without a committed offset starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    /// Only messages written from now on (the OpenTelemetry Collector's default).
    #[default]
    Latest,
    /// Everything still in the topic.
    Earliest,
}

/// `receivers.kafka`: spans from Kafka topics, consumed in a consumer group, at least once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaReceiverConfig {
    /// Bootstrap brokers, `host:port` each.
    #[serde(default = "default_brokers")]
    pub brokers: Vec<String>,
    /// The client id sent to the brokers.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Topics to read (default `[otlp_spans]`).
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    /// How message values are encoded: `otlp_proto` (default) or `otlp_json`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Consumer group: collectors with the same group share the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// `latest` (default) or `earliest`: where a group with no committed offset starts.
    #[serde(default)]
    pub initial_offset: InitialOffset,
    /// How long the group coordinator waits for a heartbeat before it reassigns this
    /// consumer's partitions.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: Duration,
    /// How often the consumer sends heartbeats (well below `session_timeout`).
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval: Duration,
    /// How often offsets of delivered messages are committed. Only offsets whose data every
    /// exporter has delivered are ever committed, whatever the interval.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: Duration,
    /// Longest a fetch waits at the broker for data (`fetch.wait.max.ms`); shorter means
    /// lower latency and more requests.
    #[serde(default = "default_max_fetch_wait")]
    pub max_fetch_wait: Duration,
    /// Topic that receives messages that cannot be decoded or whose data the pipeline refused
    /// for good (as they were, with their origin and the reason in headers); empty = log,
    /// count and skip them.
    #[serde(default)]
    pub dead_letter_topic: String,
    /// Transport security; absent = plaintext.
    #[serde(default)]
    pub tls: Option<crate::config::tls::client::ClientTlsConfig>,
    /// Authentication (`sasl`).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Extra librdkafka consumer properties, applied last.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

fn default_topics() -> Vec<String> {
    vec!["otlp_spans".to_string()]
}

fn default_group_id() -> String {
    "wasmcol".to_string()
}

fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(3)
}

fn default_max_fetch_wait() -> Duration {
    Duration::from_millis(250)
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}

impl KafkaReceiverConfig {
    /// librdkafka's `message.max.bytes`: what `librdkafka_options` sets, or librdkafka's
    /// default (1,000,000, which is also the broker's default limit).
    pub fn max_message_bytes(&self) -> usize {
        self.librdkafka_options
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1_000_000)
    }

    /// The connection settings.
    pub fn client(&self) -> ClientSettings<'_> {
        ClientSettings {
            brokers: &self.brokers,
            client_id: &self.client_id,
            tls: self.tls.as_ref(),
            auth: Some(&self.auth),
            librdkafka_options: Some(&self.librdkafka_options),
        }
    }
}

impl Validate for KafkaReceiverConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = self.client().problems();
        if self.topics.is_empty() {
            p.push(Problem::new(
                "topics",
                "must list at least one topic, got an empty list",
            ));
        }
        for (i, t) in self.topics.iter().enumerate() {
            if let Some(e) = topic_problem(t) {
                p.push(Problem::new(format!("topics[{i}]"), e));
            }
        }
        if !self.dead_letter_topic.is_empty() {
            if let Some(e) = topic_problem(&self.dead_letter_topic) {
                p.push(Problem::new("dead_letter_topic", e));
            } else if self.topics.contains(&self.dead_letter_topic) {
                p.push(Problem::new(
                    "dead_letter_topic",
                    format!(
                        "{:?} is also in topics: dead-lettered messages would be read again forever",
                        self.dead_letter_topic
                    ),
                ));
            }
        }
        if self.group_id.trim().is_empty() {
            p.push(Problem::new("group_id", "must not be empty"));
        }
        if self.session_timeout.is_zero() {
            p.push(Problem::new(
                "session_timeout",
                "must be greater than 0, got 0s",
            ));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            p.push(Problem::new(
                "heartbeat_interval",
                format!(
                    "must be greater than 0 and shorter than session_timeout ({}), got {}",
                    self.session_timeout, self.heartbeat_interval
                ),
            ));
        }
        if self.max_fetch_wait.is_zero() || self.max_fetch_wait.get().as_millis() > 300_000 {
            p.push(Problem::new(
                "max_fetch_wait",
                format!("must be between 1ms and 5m, got {}", self.max_fetch_wait),
            ));
        }
        if self.commit_interval.is_zero() {
            p.push(Problem::new(
                "commit_interval",
                "must be greater than 0, got 0s",
            ));
        }
        p
    }
}
