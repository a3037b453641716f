use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::component::nested;
use crate::component::{Problem, Validate};
use crate::config::Duration;
use crate::exporters::sending_queue::{QueueConfig, RetryConfig};
use crate::kafka::client::{AuthConfig, ClientSettings, default_brokers, default_client_id};
use crate::kafka::{Encoding, topic_problem};
use crate::pipeline::SignalKind;

/// `producer.compression`: codec librdkafka applies to each record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaCompression {
    /// Uncompressed (the OpenTelemetry Collector's default).
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl KafkaCompression {
    /// librdkafka's name for the codec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// `producer.required_acks`: how many replicas must have a record before the broker acks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequiredAcks {
    /// Every in-sync replica (`all`, or `-1` as the OpenTelemetry Collector writes it).
    #[default]
    All,
    /// The partition leader only (`1`).
    Leader,
    /// No acknowledgement (`0`): nothing can be known to be delivered.
    None,
}

impl RequiredAcks {
    /// librdkafka's `acks` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Leader => "1",
            Self::None => "0",
        }
    }
}

impl<'de> Deserialize<'de> for RequiredAcks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(-1) => Ok(Self::All),
            Raw::Int(1) => Ok(Self::Leader),
            Raw::Int(0) => Ok(Self::None),
            Raw::Text(t) if t == "all" || t == "-1" => Ok(Self::All),
            Raw::Text(t) if t == "1" => Ok(Self::Leader),
            Raw::Text(t) if t == "0" => Ok(Self::None),
            Raw::Int(n) => Err(de::Error::custom(format!(
                "expected all, -1, 1 or 0, got {n}"
            ))),
            Raw::Text(t) => Err(de::Error::custom(format!(
                "expected all, -1, 1 or 0, got {t:?}"
            ))),
        }
    }
}

/// `producer`: how messages are produced.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// Largest message, key and value and record overhead included; batches are split so no
    /// message exceeds it (keep it at or below the broker's `message.max.bytes`).
    pub max_message_bytes: usize,
    /// Acknowledgement the broker gives: `all` (default; `-1`), `1` or `0`.
    pub required_acks: RequiredAcks,
    /// `none` (default), `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: KafkaCompression,
    /// Idempotent producer: retries inside librdkafka never duplicate or reorder records.
    /// Requires `required_acks: all`.
    pub idempotent: bool,
    /// How long librdkafka waits to fill a record batch before sending it.
    pub linger: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 1_000_000,
            required_acks: RequiredAcks::All,
            compression: KafkaCompression::None,
            idempotent: true,
            linger: Duration::from_millis(5),
        }
    }
}

/// `traces`, `logs`, `metrics`: where and how one signal is written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    /// Topic for this signal; default: the top-level `topic` when set, else `otlp_spans`,
    /// `otlp_logs` or `otlp_metrics`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Request metadata key naming this signal's topic; default: the top-level
    /// `topic_from_metadata_key`.
    #[serde(default)]
    pub topic_from_metadata_key: Option<String>,
    /// `otlp_proto` or `otlp_json`; default: the top-level `encoding` when set, else
    /// `otlp_proto`.
    #[serde(default)]
    pub encoding: Option<Encoding>,
}

/// `exporters.kafka`: spans, log records and metrics to Kafka topics as OTLP messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaExporterConfig {
    /// Bootstrap brokers, `host:port` each.
    #[serde(default = "default_brokers")]
    pub brokers: Vec<String>,
    /// The client id sent to the brokers.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Spans: `topic` (default `otlp_spans`), `topic_from_metadata_key`, `encoding`.
    #[serde(default)]
    pub traces: SignalConfig,
    /// Log records: `topic` (default `otlp_logs`), `topic_from_metadata_key`, `encoding`.
    #[serde(default)]
    pub logs: SignalConfig,
    /// Metrics: `topic` (default `otlp_metrics`), `topic_from_metadata_key`, `encoding`.
    #[serde(default)]
    pub metrics: SignalConfig,
    /// Deprecated (as in the OpenTelemetry Collector): the topic of every signal whose own
    /// `topic` is unset. Use `traces.topic`, `logs.topic`, `metrics.topic`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Resource attribute whose (string) value names the topic for that resource's data;
    /// resources without it go to the signal's topic. Empty = always the signal's topic.
    #[serde(default)]
    pub topic_from_attribute: String,
    /// Request metadata key (case-insensitive) whose value names the topic for the whole
    /// batch, for every signal without its own `topic_from_metadata_key`; it wins over
    /// `topic_from_attribute` and the signal's topic, as in the OpenTelemetry
    /// Collector. Needs `include_metadata` on the receiver and, with a batch processor, the key
    /// in its `metadata_keys`. Empty = unused. Clients choose this value, so it needs
    /// `allowed_topics`.
    #[serde(default)]
    pub topic_from_metadata_key: String,
    /// Topics clients may choose with `topic_from_metadata_key` (not a Collector option):
    /// names, or patterns where `*` stands for any run of characters (`tenant-*`). A batch
    /// naming any other topic goes to the signal's topic, counted in
    /// `wasmcol_exporter_kafka_topic_not_allowed_batches_total` and logged.
    #[serde(default)]
    pub allowed_topics: Vec<String>,
    /// Deprecated (as in the OpenTelemetry Collector): the encoding of every signal whose own
    /// `encoding` is unset. Use `traces.encoding`, `logs.encoding`, `metrics.encoding`.
    #[serde(default)]
    pub encoding: Option<Encoding>,
    /// One message per trace with the trace id as its key, so every span of a trace lands in
    /// the same partition (and reaches the same consumer).
    #[serde(default)]
    pub partition_traces_by_id: bool,
    /// Metrics messages keyed by a hash of their resource's attributes: one resource's
    /// metrics stay in one partition.
    #[serde(default)]
    pub partition_metrics_by_resource_attributes: bool,
    /// Log messages keyed by a hash of their resource's attributes.
    #[serde(default)]
    pub partition_logs_by_resource_attributes: bool,
    /// Log messages cut per trace and keyed by the trace id in hex (records without one go
    /// unkeyed). Not together with `partition_logs_by_resource_attributes`.
    #[serde(default)]
    pub partition_logs_by_trace_id: bool,
    /// Bound on each attempt: how long librdkafka may try to deliver a message
    /// (`message.timeout.ms`) before the attempt counts as failed and is retried.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Producer settings.
    #[serde(default)]
    pub producer: ProducerConfig,
    /// Transport security; absent = plaintext.
    #[serde(default)]
    pub tls: Option<crate::config::tls::client::ClientTlsConfig>,
    /// Authentication (`sasl`).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Extra librdkafka producer properties, applied last.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
    /// The queue between the pipeline and the producer.
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Retries of failed deliveries.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl KafkaExporterConfig {
    /// The option block of `signal`.
    pub fn signal(&self, signal: SignalKind) -> &SignalConfig {
        match signal {
            SignalKind::Traces => &self.traces,
            SignalKind::Logs => &self.logs,
            SignalKind::Metrics => &self.metrics,
        }
    }

    /// The topic `signal` is written to: its own `topic`, else the top-level `topic`, else
    /// the OpenTelemetry Collector's default.
    pub fn topic_for(&self, signal: SignalKind) -> &str {
        self.signal(signal)
            .topic
            .as_deref()
            .or(self.topic.as_deref())
            .unwrap_or(match signal {
                SignalKind::Traces => "otlp_spans",
                SignalKind::Logs => "otlp_logs",
                SignalKind::Metrics => "otlp_metrics",
            })
    }

    /// The encoding of `signal`'s messages: its own, else the top-level one, else protobuf.
    pub fn encoding_for(&self, signal: SignalKind) -> Encoding {
        self.signal(signal)
            .encoding
            .or(self.encoding)
            .unwrap_or_default()
    }

    /// The metadata key naming `signal`'s topic: its own, else the top-level one.
    pub fn topic_from_metadata_key_for(&self, signal: SignalKind) -> &str {
        self.signal(signal)
            .topic_from_metadata_key
            .as_deref()
            .unwrap_or(&self.topic_from_metadata_key)
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

impl Validate for KafkaExporterConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = self.client().problems();
        if let Some(topic) = &self.topic
            && let Some(e) = topic_problem(topic)
        {
            p.push(Problem::new("topic", e));
        }
        for signal in SignalKind::ALL {
            let own = self.signal(signal);
            if let Some(topic) = &own.topic
                && let Some(e) = topic_problem(topic)
            {
                p.push(Problem::new(format!("{signal}.topic"), e));
            }
            if let Some(key) = &own.topic_from_metadata_key
                && !key.is_empty()
                && self.allowed_topics.is_empty()
            {
                p.push(Problem::new(
                    format!("{signal}.topic_from_metadata_key"),
                    format!(
                        "clients choose the topic with {key:?}: add `allowed_topics` with the \
                         topics they may choose (names, or patterns such as `tenant-*`)"
                    ),
                ));
            }
        }
        if self.partition_logs_by_resource_attributes && self.partition_logs_by_trace_id {
            p.push(Problem::new(
                "partition_logs_by_trace_id",
                "cannot be true together with partition_logs_by_resource_attributes: a message \
                 has one key (choose one)",
            ));
        }
        if !self.topic_from_metadata_key.is_empty() && self.allowed_topics.is_empty() {
            p.push(Problem::new(
                "topic_from_metadata_key",
                format!(
                    "clients choose the topic with {:?}: add `allowed_topics` with the topics \
                     they may choose (names, or patterns such as `tenant-*`)",
                    self.topic_from_metadata_key
                ),
            ));
        }
        let keys_used = SignalKind::ALL
            .iter()
            .any(|s| !self.topic_from_metadata_key_for(*s).is_empty());
        if !keys_used && !self.allowed_topics.is_empty() {
            p.push(Problem::new(
                "allowed_topics",
                "has no effect without topic_from_metadata_key",
            ));
        }
        for (i, t) in self.allowed_topics.iter().enumerate() {
            // `*` aside, an entry must be a topic name.
            if topic_problem(&t.replace('*', "x")).is_some() {
                p.push(Problem::new(
                    format!("allowed_topics[{i}]"),
                    format!(
                        "{t:?} is neither a Kafka topic name nor a pattern of one (only \
                         letters, digits, '.', '_', '-' and '*')"
                    ),
                ));
            }
        }
        let min = super::messages::RECORD_OVERHEAD + 16 + 64;
        let max = 1_000_000_000;
        if !(min..=max).contains(&self.producer.max_message_bytes) {
            p.push(Problem::new(
                "producer.max_message_bytes",
                format!(
                    "must be between {min} and {max}, got {}",
                    self.producer.max_message_bytes
                ),
            ));
        }
        if self.producer.idempotent && self.producer.required_acks != RequiredAcks::All {
            p.push(Problem::new(
                "producer.required_acks",
                format!(
                    "the idempotent producer needs `all`, got {} (or set producer.idempotent: false)",
                    self.producer.required_acks.as_str()
                ),
            ));
        }
        if self.timeout.is_zero() {
            p.push(Problem::new(
                "timeout",
                "must be greater than 0 (it bounds each delivery attempt), got 0s",
            ));
        } else if self.producer.linger >= self.timeout {
            p.push(Problem::new(
                "producer.linger",
                format!(
                    "must be shorter than timeout ({}), got {}",
                    self.timeout, self.producer.linger
                ),
            ));
        }
        p.extend(nested("sending_queue", self.sending_queue.validate()));
        p.extend(nested("retry_on_failure", self.retry_on_failure.validate()));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> KafkaExporterConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn problems(yaml: &str) -> Vec<(String, String)> {
        parse(yaml)
            .validate()
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect()
    }

    #[test]
    fn every_signal_has_the_collectors_default_topic_and_encoding() {
        let c = parse("{}");
        assert_eq!(c.topic_for(SignalKind::Traces), "otlp_spans");
        assert_eq!(c.topic_for(SignalKind::Logs), "otlp_logs");
        assert_eq!(c.topic_for(SignalKind::Metrics), "otlp_metrics");
        for s in SignalKind::ALL {
            assert_eq!(c.encoding_for(s), Encoding::OtlpProto);
            assert_eq!(c.topic_from_metadata_key_for(s), "");
        }
        assert!(!c.partition_logs_by_resource_attributes);
        assert!(!c.partition_logs_by_trace_id);
        assert!(!c.partition_metrics_by_resource_attributes);
        assert!(c.validate().is_empty());
    }

    #[test]
    fn signal_options_win_over_the_deprecated_top_level_ones() {
        let c = parse(
            "topic: everything\nencoding: otlp_json\n\
             logs: { topic: app_logs }\nmetrics: { encoding: otlp_proto }",
        );
        assert_eq!(c.topic_for(SignalKind::Traces), "everything");
        assert_eq!(c.topic_for(SignalKind::Logs), "app_logs");
        assert_eq!(c.topic_for(SignalKind::Metrics), "everything");
        assert_eq!(c.encoding_for(SignalKind::Traces), Encoding::OtlpJson);
        assert_eq!(c.encoding_for(SignalKind::Logs), Encoding::OtlpJson);
        assert_eq!(c.encoding_for(SignalKind::Metrics), Encoding::OtlpProto);
        assert!(c.validate().is_empty());

        let c = parse(
            "topic_from_metadata_key: x-tenant\nallowed_topics: [acme]\n\
             metrics: { topic_from_metadata_key: x-metrics-topic }",
        );
        assert_eq!(c.topic_from_metadata_key_for(SignalKind::Logs), "x-tenant");
        assert_eq!(
            c.topic_from_metadata_key_for(SignalKind::Metrics),
            "x-metrics-topic"
        );
    }

    #[test]
    fn problems_name_the_signal_option_and_the_value() {
        assert_eq!(
            problems("logs: { topic: 'bad topic' }"),
            vec![(
                "logs.topic".to_string(),
                "\"bad topic\" is not a valid Kafka topic name (' ': only letters, digits, '.', '_' and '-')"
                    .to_string()
            )]
        );
        assert_eq!(problems("topic: ''")[0].0, "topic");
        let p = problems("metrics: { topic_from_metadata_key: x-t }");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "metrics.topic_from_metadata_key");
        assert!(p[0].1.contains("\"x-t\"") && p[0].1.contains("allowed_topics"));
        // allowed_topics is used when any signal takes its topic from metadata.
        assert!(problems("allowed_topics: [a]\nlogs: { topic_from_metadata_key: k }").is_empty());
        let p = problems(
            "partition_logs_by_resource_attributes: true\npartition_logs_by_trace_id: true",
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "partition_logs_by_trace_id");
        assert!(p[0].1.contains("partition_logs_by_resource_attributes"));
    }

    #[test]
    fn unknown_and_misspelled_signal_options_are_refused() {
        let e = serde_yaml_ng::from_str::<KafkaExporterConfig>("logs: { topics: [a] }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("topics"), "{e}");
        let e = serde_yaml_ng::from_str::<KafkaExporterConfig>("metrics: { encoding: raw }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("raw"), "{e}");
    }
}
