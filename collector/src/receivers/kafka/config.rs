use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::Duration;
use crate::kafka::client::{AuthConfig, ClientSettings, default_brokers, default_client_id};
use crate::kafka::{Encoding, topic_problem};
use crate::pipeline::SignalKind;

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

/// `traces`, `logs`, `metrics`: the topics a signal is read from and how they are encoded.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalTopics {
    /// Topics to read this signal from; default: the top-level `topics` when set, else
    /// `[otlp_spans]`, `[otlp_logs]` or `[otlp_metrics]`.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Deprecated (as in the OpenTelemetry Collector): one topic, the same as `topics: [it]`.
    #[serde(default)]
    pub topic: Option<String>,
    /// `otlp_proto` or `otlp_json`; default: the top-level `encoding` when set, else
    /// `otlp_proto`.
    #[serde(default)]
    pub encoding: Option<Encoding>,
}

/// `receivers.kafka`: spans, log records and metrics from Kafka topics, consumed in a consumer
/// group, at least once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaReceiverConfig {
    /// Bootstrap brokers, `host:port` each.
    #[serde(default = "default_brokers")]
    pub brokers: Vec<String>,
    /// The client id sent to the brokers.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Spans: `topics` (default `[otlp_spans]`), `encoding`.
    #[serde(default)]
    pub traces: SignalTopics,
    /// Log records: `topics` (default `[otlp_logs]`), `encoding`.
    #[serde(default)]
    pub logs: SignalTopics,
    /// Metrics: `topics` (default `[otlp_metrics]`), `encoding`.
    #[serde(default)]
    pub metrics: SignalTopics,
    /// Deprecated: the topics of every signal without its own `topics` (use
    /// `traces.topics`, `logs.topics`, `metrics.topics`). Each topic is read for one signal
    /// only, so a receiver in pipelines of several signals needs each signal's own topics.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Deprecated: the encoding of every signal without its own `encoding` (use
    /// `traces.encoding`, `logs.encoding`, `metrics.encoding`).
    #[serde(default)]
    pub encoding: Option<Encoding>,
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
    /// The option block of `signal`.
    pub fn signal(&self, signal: SignalKind) -> &SignalTopics {
        match signal {
            SignalKind::Traces => &self.traces,
            SignalKind::Logs => &self.logs,
            SignalKind::Metrics => &self.metrics,
        }
    }

    /// The topics `signal` is read from: its own `topics` (or `topic`), else the top-level
    /// `topics`, else the OpenTelemetry Collector's default.
    pub fn topics_for(&self, signal: SignalKind) -> Vec<String> {
        let own = self.signal(signal);
        if let Some(topics) = &own.topics {
            return topics.clone();
        }
        if let Some(topic) = &own.topic {
            return vec![topic.clone()];
        }
        if let Some(topics) = &self.topics {
            return topics.clone();
        }
        vec![
            match signal {
                SignalKind::Traces => "otlp_spans",
                SignalKind::Logs => "otlp_logs",
                SignalKind::Metrics => "otlp_metrics",
            }
            .to_string(),
        ]
    }

    /// Where `signal`'s topics come from, for error messages: its own option or the
    /// deprecated top-level `topics`.
    fn topics_option(&self, signal: SignalKind) -> String {
        let own = self.signal(signal);
        if own.topics.is_some() {
            format!("{signal}.topics")
        } else if own.topic.is_some() {
            format!("{signal}.topic")
        } else if self.topics.is_some() {
            "topics".to_string()
        } else {
            format!("{signal}.topics")
        }
    }

    /// The encoding of `signal`'s messages: its own, else the top-level one, else protobuf.
    pub fn encoding_for(&self, signal: SignalKind) -> Encoding {
        self.signal(signal)
            .encoding
            .or(self.encoding)
            .unwrap_or_default()
    }

    /// A topic that two of `signals` would both read (each message is decoded as one signal):
    /// the problem naming it.
    pub fn shared_topic(&self, signals: &[SignalKind]) -> Option<Problem> {
        for (i, a) in signals.iter().enumerate() {
            for b in &signals[i + 1..] {
                let theirs = self.topics_for(*b);
                if let Some(t) = self.topics_for(*a).iter().find(|t| theirs.contains(t)) {
                    return Some(Problem::new(
                        self.topics_option(*b),
                        format!(
                            "{t:?} is also read for {a} ({}): a topic holds one signal; give \
                             each signal its own topics ({a}.topics, {b}.topics)",
                            self.topics_option(*a)
                        ),
                    ));
                }
            }
        }
        None
    }

    /// The signal each topic of `signals` is read as.
    pub fn routes_by_topic(&self, signals: &[SignalKind]) -> HashMap<String, SignalKind> {
        signals
            .iter()
            .flat_map(|s| self.topics_for(*s).into_iter().map(move |t| (t, *s)))
            .collect()
    }

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
        let mut lists: Vec<(String, &Vec<String>)> = Vec::new();
        if let Some(topics) = &self.topics {
            lists.push(("topics".into(), topics));
        }
        for signal in SignalKind::ALL {
            let own = self.signal(signal);
            if own.topics.is_some() && own.topic.is_some() {
                p.push(Problem::new(
                    format!("{signal}.topic"),
                    format!("cannot be set together with {signal}.topics (use {signal}.topics)"),
                ));
            }
            if let Some(topics) = &own.topics {
                lists.push((format!("{signal}.topics"), topics));
            }
            if let Some(topic) = &own.topic
                && let Some(e) = topic_problem(topic)
            {
                p.push(Problem::new(format!("{signal}.topic"), e));
            }
        }
        for (option, topics) in &lists {
            if topics.is_empty() {
                p.push(Problem::new(
                    option.clone(),
                    "must list at least one topic, got an empty list",
                ));
            }
            for (i, t) in topics.iter().enumerate() {
                if let Some(e) = topic_problem(t) {
                    p.push(Problem::new(format!("{option}[{i}]"), e));
                }
            }
        }
        // Topics given for several signals explicitly can never work; the deprecated
        // top-level `topics` shared by every signal is checked against the signals the
        // receiver's pipelines carry when it is built.
        let explicit: Vec<SignalKind> = SignalKind::ALL
            .into_iter()
            .filter(|s| self.signal(*s).topics.is_some() || self.signal(*s).topic.is_some())
            .collect();
        p.extend(self.shared_topic(&explicit));
        if !self.dead_letter_topic.is_empty() {
            if let Some(e) = topic_problem(&self.dead_letter_topic) {
                p.push(Problem::new("dead_letter_topic", e));
            } else if let Some(signal) = SignalKind::ALL
                .into_iter()
                .find(|s| self.topics_for(*s).contains(&self.dead_letter_topic))
            {
                p.push(Problem::new(
                    "dead_letter_topic",
                    format!(
                        "{:?} is also in {}: dead-lettered messages would be read again forever",
                        self.dead_letter_topic,
                        self.topics_option(signal)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> KafkaReceiverConfig {
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
    fn every_signal_has_the_collectors_default_topics_and_encoding() {
        let c = parse("{}");
        assert_eq!(c.topics_for(SignalKind::Traces), ["otlp_spans"]);
        assert_eq!(c.topics_for(SignalKind::Logs), ["otlp_logs"]);
        assert_eq!(c.topics_for(SignalKind::Metrics), ["otlp_metrics"]);
        for s in SignalKind::ALL {
            assert_eq!(c.encoding_for(s), Encoding::OtlpProto);
        }
        assert!(c.validate().is_empty());
        assert_eq!(c.shared_topic(&SignalKind::ALL).map(|p| p.path), None);
        let routes = c.routes_by_topic(&[SignalKind::Logs, SignalKind::Metrics]);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes["otlp_logs"], SignalKind::Logs);
        assert_eq!(routes["otlp_metrics"], SignalKind::Metrics);
    }

    #[test]
    fn signal_options_win_over_the_top_level_ones() {
        let c = parse(
            "topics: [spans]\nencoding: otlp_json\n\
             logs: { topics: [app_logs, audit_logs] }\nmetrics: { topic: m, encoding: otlp_proto }",
        );
        assert_eq!(c.topics_for(SignalKind::Traces), ["spans"]);
        assert_eq!(c.topics_for(SignalKind::Logs), ["app_logs", "audit_logs"]);
        assert_eq!(c.topics_for(SignalKind::Metrics), ["m"]);
        assert_eq!(c.encoding_for(SignalKind::Traces), Encoding::OtlpJson);
        assert_eq!(c.encoding_for(SignalKind::Logs), Encoding::OtlpJson);
        assert_eq!(c.encoding_for(SignalKind::Metrics), Encoding::OtlpProto);
        assert!(c.validate().is_empty());
    }

    #[test]
    fn the_deprecated_topics_serve_one_signal_only() {
        // Fine for a receiver in traces pipelines (today's configurations)...
        let c = parse("topics: [spans]");
        assert!(c.validate().is_empty());
        assert!(c.shared_topic(&[SignalKind::Traces]).is_none());
        // ...but the same topic cannot be read as traces and as logs.
        let p = c
            .shared_topic(&[SignalKind::Traces, SignalKind::Logs])
            .unwrap();
        assert_eq!(p.path, "topics");
        assert!(
            p.message.contains("\"spans\"") && p.message.contains("logs.topics"),
            "{}",
            p.message
        );
        let c = parse("topics: [spans]\nlogs: { topics: [logs] }");
        assert!(
            c.shared_topic(&[SignalKind::Traces, SignalKind::Logs])
                .is_none()
        );
    }

    #[test]
    fn problems_name_the_signal_option_and_the_value() {
        let p = problems("logs: { topics: [ok, 'no/slash'] }");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "logs.topics[1]");
        assert!(p[0].1.contains("\"no/slash\""), "{}", p[0].1);

        let p = problems("metrics: { topics: [] }");
        assert_eq!(p[0].0, "metrics.topics");

        let p = problems("traces: { topic: a, topics: [b] }");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "traces.topic");
        assert!(p[0].1.contains("traces.topics"));

        let p = problems("traces: { topics: [a, shared] }\nmetrics: { topics: [shared] }");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "metrics.topics");
        assert!(p[0].1.contains("\"shared\"") && p[0].1.contains("traces.topics"));

        let p = problems("logs: { topics: [l] }\ndead_letter_topic: l");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "dead_letter_topic");
        assert!(
            p[0].1.contains("\"l\" is also in logs.topics"),
            "{}",
            p[0].1
        );
    }

    #[test]
    fn unknown_signal_options_are_refused() {
        let e = serde_yaml_ng::from_str::<KafkaReceiverConfig>("logs: { topic_from_attribute: a }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("topic_from_attribute"), "{e}");
    }
}
