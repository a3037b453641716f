//! What the Kafka receiver and exporter share: the client settings passed to librdkafka
//! ([`client`]: brokers, TLS, SASL, extra properties), the message payload encodings
//! ([`Encoding`]: OTLP protobuf or OTLP/JSON export requests), and Kafka's rule for topic
//! names (`topic_problem`).

pub mod client;
pub mod encoding;

pub use encoding::Encoding;

/// Kafka's own limit on topic names.
pub(crate) fn topic_problem(topic: &str) -> Option<String> {
    if topic.is_empty() {
        return Some("must not be empty".into());
    }
    if topic.len() > 249 || topic == "." || topic == ".." {
        return Some(format!("{topic:?} is not a valid Kafka topic name"));
    }
    let bad = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
    bad.map(|c| {
        format!("{topic:?} is not a valid Kafka topic name ({c:?}: only letters, digits, '.', '_' and '-')")
    })
}
