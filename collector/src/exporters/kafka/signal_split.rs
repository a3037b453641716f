//! Messages for logs and metrics: the topics, keys and size limit of [`Splitter`], cut from
//! decoded batches.
//!
//! Topics are chosen as for spans (request metadata, then `topic_from_attribute`, then the
//! signal's topic). Keys follow the OpenTelemetry Collector: with
//! `partition_logs_by_resource_attributes` / `partition_metrics_by_resource_attributes` one
//! message group per resource, keyed by a 16-byte hash of its attributes (the same attributes
//! in any order give the same key, so a resource's data stays in one partition); with
//! `partition_logs_by_trace_id` one group per trace, keyed by the trace id in hex (log records
//! without a trace id go unkeyed).
//!
//! Each group is packed under `max_message_bytes`: encoded whole when it fits, else cut in
//! proportion to its size (inside a scope or a metric when needed, each part repeating its
//! resource, scope and metric description) until every message fits. A single log record or
//! data point that fits in no message is rejected, counted and logged.

use std::sync::Arc;

use super::messages::{OutMessage, Split, Splitter};
use crate::otlp::OtlpSignal;
use crate::pipeline::{Batch, Logs, Metadata, Metrics, Traces};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

/// A signal the Kafka exporter writes.
pub trait KafkaSignal: OtlpSignal + Sized {
    /// The resource of one resource entry.
    fn resource(r: &Self::Resource) -> Option<&Resource>;

    /// Cuts `batch` into messages.
    fn split(splitter: &SignalSplitter, batch: &Batch<Self>) -> Split {
        splitter.split_decoded::<Self>(batch.resources(), &batch.metadata)
    }

    /// The resources of `resources` grouped by the trace id of their items, in order of first
    /// appearance: `(trace id, resources holding only that trace's items)`. Only log records
    /// carry one among the signals this is used for; others form one group without an id.
    fn by_trace_id(resources: &[Self::Resource]) -> Vec<(Vec<u8>, Vec<Self::Resource>)> {
        vec![(Vec::new(), resources.to_vec())]
    }
}

impl KafkaSignal for Traces {
    fn resource(r: &ResourceSpans) -> Option<&Resource> {
        r.resource.as_ref()
    }

    /// Spans have their own cutting (byte path and trace-id keys): see [`Splitter`].
    fn split(splitter: &SignalSplitter, batch: &Batch<Self>) -> Split {
        splitter.base.split_batch(batch)
    }
}

impl KafkaSignal for Logs {
    fn resource(r: &ResourceLogs) -> Option<&Resource> {
        r.resource.as_ref()
    }

    fn by_trace_id(resources: &[ResourceLogs]) -> Vec<(Vec<u8>, Vec<ResourceLogs>)> {
        let mut groups: Vec<(Vec<u8>, Vec<ResourceLogs>)> = Vec::new();
        for rl in resources {
            for sl in &rl.scope_logs {
                for record in &sl.log_records {
                    let at = match groups.iter().position(|(id, _)| *id == record.trace_id) {
                        Some(at) => at,
                        None => {
                            groups.push((record.trace_id.clone(), Vec::new()));
                            groups.len() - 1
                        }
                    };
                    let group = &mut groups[at].1;
                    // Reuse the group's last resource and scope entry when they are these.
                    let same_resource = group.last().is_some_and(|last| {
                        last.resource == rl.resource && last.schema_url == rl.schema_url
                    });
                    if !same_resource {
                        group.push(ResourceLogs {
                            resource: rl.resource.clone(),
                            scope_logs: Vec::new(),
                            schema_url: rl.schema_url.clone(),
                        });
                    }
                    let entry = group.last_mut().expect("pushed above");
                    let same_scope = entry.scope_logs.last().is_some_and(|last| {
                        last.scope == sl.scope && last.schema_url == sl.schema_url
                    });
                    if !same_scope {
                        entry
                            .scope_logs
                            .push(opentelemetry_proto::tonic::logs::v1::ScopeLogs {
                                scope: sl.scope.clone(),
                                log_records: Vec::new(),
                                schema_url: sl.schema_url.clone(),
                            });
                    }
                    entry
                        .scope_logs
                        .last_mut()
                        .expect("pushed above")
                        .log_records
                        .push(record.clone());
                }
            }
        }
        groups
    }
}

impl KafkaSignal for Metrics {
    fn resource(r: &ResourceMetrics) -> Option<&Resource> {
        r.resource.as_ref()
    }
}

/// How messages of a signal other than spans are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keying {
    /// No key: librdkafka spreads messages over the partitions.
    #[default]
    None,
    /// A hash of the resource's attributes (`partition_*_by_resource_attributes`).
    ResourceAttributes,
    /// The trace id in hex (`partition_logs_by_trace_id`).
    TraceId,
}

/// How a batch of one signal is cut into messages.
#[derive(Debug, Clone)]
pub struct SignalSplitter {
    /// Topics, encoding and size limit (and, for spans, the whole cutting).
    pub base: Splitter,
    /// Keys of log and metric messages.
    pub keying: Keying,
}

/// A 16-byte key for a resource: the first half of SHA-256 over its attributes, sorted by key
/// and encoded as protobuf, so the order they arrive in does not matter.
pub fn resource_key(resource: Option<&Resource>) -> Bytes {
    let mut attributes: Vec<&KeyValue> =
        resource.map_or_else(Vec::new, |r| r.attributes.iter().collect());
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    let mut buf = Vec::new();
    for kv in attributes {
        prost::encoding::message::encode(1, kv, &mut buf);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &buf);
    Bytes::copy_from_slice(&digest.as_ref()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SignalSplitter {
    /// Cuts `resources` (of a batch with request `metadata`) into messages.
    pub fn split_decoded<S: KafkaSignal>(
        &self,
        resources: &[S::Resource],
        metadata: &Metadata,
    ) -> Split {
        let mut out = Split::default();
        let groups: Vec<(Arc<str>, Vec<S::Resource>)> =
            match self.base.topic_from_metadata(metadata) {
                Some(Ok(topic)) => vec![(topic, resources.to_vec())],
                Some(Err(refused)) => {
                    out.topic_not_allowed = Some(refused);
                    vec![(self.base.topic.clone(), resources.to_vec())]
                }
                None => self.by_topic::<S>(resources),
            };
        for (topic, group) in groups {
            match self.keying {
                Keying::None => self.pack::<S>(&topic, None, group, &mut out),
                Keying::ResourceAttributes => {
                    let mut keyed: Vec<(Bytes, Vec<S::Resource>)> = Vec::new();
                    for r in group {
                        let key = resource_key(S::resource(&r));
                        match keyed.iter_mut().find(|(k, _)| *k == key) {
                            Some((_, g)) => g.push(r),
                            None => keyed.push((key, vec![r])),
                        }
                    }
                    for (key, g) in keyed {
                        self.pack::<S>(&topic, Some(key), g, &mut out);
                    }
                }
                Keying::TraceId => {
                    for (id, g) in S::by_trace_id(&group) {
                        let key = (!id.is_empty()).then(|| Bytes::from(hex(&id)));
                        self.pack::<S>(&topic, key, g, &mut out);
                    }
                }
            }
        }
        out
    }

    /// Groups resources by the topic `topic_from_attribute` names (or the signal's topic), in
    /// order of first appearance.
    fn by_topic<S: KafkaSignal>(
        &self,
        resources: &[S::Resource],
    ) -> Vec<(Arc<str>, Vec<S::Resource>)> {
        let base = &self.base;
        if base.topic_from_attribute.is_empty() {
            return vec![(base.topic.clone(), resources.to_vec())];
        }
        let mut groups: Vec<(Arc<str>, Vec<S::Resource>)> = Vec::new();
        for r in resources {
            let topic = S::resource(r)
                .into_iter()
                .flat_map(|res| &res.attributes)
                .find(|kv| kv.key == base.topic_from_attribute)
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) if !s.is_empty() => {
                        Some(Arc::from(s.as_str()))
                    }
                    _ => None,
                })
                .unwrap_or_else(|| base.topic.clone());
            match groups.iter_mut().find(|(t, _)| *t == topic) {
                Some((_, g)) => g.push(r.clone()),
                None => groups.push((topic, vec![r.clone()])),
            }
        }
        groups
    }

    /// Packs `resources` into messages under the limit, in order.
    fn pack<S: KafkaSignal>(
        &self,
        topic: &Arc<str>,
        key: Option<Bytes>,
        resources: Vec<S::Resource>,
        out: &mut Split,
    ) {
        let limit = self.base.limit(key.as_deref());
        let encoding = self.base.encoding;
        // A stack of chunks still to write, the next one on top.
        let mut todo = vec![Batch::<S>::new(resources)];
        while let Some(mut chunk) = todo.pop() {
            let items = chunk.item_count();
            if items == 0 {
                continue;
            }
            let (size, value) = match encoding.encoded_len_hint_of(chunk.resources()) {
                Some(n) if n > limit => (n, None),
                _ => {
                    let value = encoding.encode_signal::<S>(chunk.resources());
                    (value.len(), Some(value))
                }
            };
            if size <= limit
                && let Some(value) = value
            {
                out.messages.push(OutMessage {
                    topic: topic.clone(),
                    key: key.clone(),
                    value: Bytes::from(value),
                    spans: items as u64,
                });
                continue;
            }
            if items == 1 {
                crate::telemetry::log_limited!(warn, "a log record or data point is larger than max_message_bytes on its own; dropping it",
                    topic = %topic,
                    signal = %S::KIND,
                    max_message_bytes = self.base.max_message_bytes
                );
                out.rejected_spans += 1;
                continue;
            }
            // What fits in proportion to the size, a little less for the repeated headers;
            // a front that still does not fit is cut again.
            let fit = (items as u128 * limit as u128 * 9 / 10 / size as u128) as usize;
            let front = chunk.split_front(fit.clamp(1, items - 1));
            todo.push(chunk);
            todo.push(front);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Encoding;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ScopeMetrics, metric, number_data_point,
    };

    fn attr(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn logs(resources: usize, records: usize, body: usize) -> Vec<ResourceLogs> {
        (0..resources)
            .map(|r| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![attr("service.name", &format!("svc-{r}"))],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: (0..records)
                        .map(|i| LogRecord {
                            time_unix_nano: i as u64,
                            trace_id: vec![(i % 3) as u8 + 1; 16],
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("x".repeat(body))),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect()
    }

    fn metrics(points: usize) -> Vec<ResourceMetrics> {
        vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![attr("service.name", "m")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "g".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: (0..points)
                            .map(|i| NumberDataPoint {
                                time_unix_nano: i as u64,
                                value: Some(number_data_point::Value::AsInt(i as i64)),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    fn splitter(topic: &str, keying: Keying, max: usize, encoding: Encoding) -> SignalSplitter {
        SignalSplitter {
            base: Splitter {
                encoding,
                topic: topic.into(),
                topic_from_attribute: String::new(),
                topic_from_metadata_key: String::new(),
                allowed_topics: Vec::new(),
                partition_traces_by_id: false,
                max_message_bytes: max,
            },
            keying,
        }
    }

    fn decoded_logs(split: &Split, encoding: Encoding) -> Vec<LogRecord> {
        split
            .messages
            .iter()
            .flat_map(|m| {
                let batch = encoding
                    .decode_batch::<Logs>(
                        &m.value,
                        crate::otlp::intake::Budget::for_limit(1 << 24, "test"),
                    )
                    .unwrap()
                    .batch;
                batch
                    .into_resources()
                    .into_iter()
                    .flat_map(|r| r.scope_logs)
                    .flat_map(|s| s.log_records)
            })
            .collect()
    }

    #[test]
    fn logs_are_split_under_the_limit_in_both_encodings_and_none_is_lost() {
        let all = logs(3, 40, 100);
        let sent: Vec<LogRecord> = all
            .iter()
            .flat_map(|r| r.scope_logs[0].log_records.clone())
            .collect();
        for encoding in [Encoding::OtlpProto, Encoding::OtlpJson] {
            let s = splitter("otlp_logs", Keying::None, 2_000, encoding);
            let split = s.split_decoded::<Logs>(&all, &Metadata::default());
            assert!(split.messages.len() > 5, "{encoding:?}");
            for m in &split.messages {
                assert!(m.value.len() + super::super::RECORD_OVERHEAD <= 2_000);
                assert_eq!(&*m.topic, "otlp_logs");
            }
            assert_eq!(split.rejected_spans, 0);
            assert_eq!(decoded_logs(&split, encoding), sent, "{encoding:?}");
            assert_eq!(split.messages.iter().map(|m| m.spans).sum::<u64>(), 120);
        }
    }

    #[test]
    fn protobuf_messages_are_mostly_full() {
        let s = splitter("otlp_logs", Keying::None, 10_000, Encoding::OtlpProto);
        let split = s.split_decoded::<Logs>(&logs(1, 400, 100), &Metadata::default());
        // ~130 bytes a record: 52 KB of records need at most 8 messages of 10 KB.
        assert!(split.messages.len() <= 8, "{}", split.messages.len());
    }

    #[test]
    fn metric_points_are_split_inside_a_metric() {
        let s = splitter("otlp_metrics", Keying::None, 400, Encoding::OtlpProto);
        let split = s.split_decoded::<Metrics>(&metrics(100), &Metadata::default());
        assert!(split.messages.len() > 1);
        let mut times = Vec::new();
        for m in &split.messages {
            let rm = Encoding::OtlpProto
                .decode_batch::<Metrics>(
                    &m.value,
                    crate::otlp::intake::Budget::for_limit(1 << 20, "test"),
                )
                .unwrap()
                .batch
                .into_resources();
            let metric = &rm[0].scope_metrics[0].metrics[0];
            assert_eq!(metric.name, "g");
            let Some(metric::Data::Gauge(g)) = &metric.data else {
                panic!("kind lost")
            };
            times.extend(g.data_points.iter().map(|p| p.time_unix_nano));
        }
        assert_eq!(times, (0..100).collect::<Vec<u64>>());
    }

    #[test]
    fn a_record_too_large_alone_is_rejected() {
        let mut all = logs(1, 3, 10);
        all[0].scope_logs[0].log_records[1].body = Some(AnyValue {
            value: Some(any_value::Value::StringValue("y".repeat(5_000))),
        });
        let s = splitter("otlp_logs", Keying::None, 1_000, Encoding::OtlpProto);
        let split = s.split_decoded::<Logs>(&all, &Metadata::default());
        assert_eq!(split.rejected_spans, 1);
        assert_eq!(split.messages.iter().map(|m| m.spans).sum::<u64>(), 2);
    }

    #[test]
    fn resource_keys_ignore_attribute_order_and_group_resources() {
        let a = Resource {
            attributes: vec![attr("a", "1"), attr("b", "2")],
            ..Default::default()
        };
        let b = Resource {
            attributes: vec![attr("b", "2"), attr("a", "1")],
            ..Default::default()
        };
        assert_eq!(resource_key(Some(&a)), resource_key(Some(&b)));
        assert_eq!(resource_key(Some(&a)).len(), 16);
        assert_ne!(resource_key(Some(&a)), resource_key(None));

        let s = splitter(
            "otlp_logs",
            Keying::ResourceAttributes,
            1_000_000,
            Encoding::OtlpProto,
        );
        let mut all = logs(2, 2, 1);
        all.extend(logs(1, 2, 1)); // svc-0 again
        let split = s.split_decoded::<Logs>(&all, &Metadata::default());
        let keys: Vec<(Option<Bytes>, u64)> = split
            .messages
            .iter()
            .map(|m| (m.key.clone(), m.spans))
            .collect();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].1, 4);
        assert_eq!(keys[1].1, 2);
        assert_eq!(keys[0].0, Some(resource_key(all[0].resource.as_ref())));
    }

    #[test]
    fn logs_by_trace_id_are_keyed_by_the_hex_id() {
        let s = splitter("otlp_logs", Keying::TraceId, 1_000_000, Encoding::OtlpProto);
        let mut all = logs(2, 6, 1);
        all[1].scope_logs[0].log_records[0].trace_id.clear();
        let split = s.split_decoded::<Logs>(&all, &Metadata::default());
        let keys: Vec<(Option<String>, u64)> = split
            .messages
            .iter()
            .map(|m| {
                (
                    m.key
                        .as_ref()
                        .map(|k| String::from_utf8(k.to_vec()).unwrap()),
                    m.spans,
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                (Some("01".repeat(16)), 3),
                (Some("02".repeat(16)), 4),
                (Some("03".repeat(16)), 4),
                (None, 1),
            ]
        );
    }
}
