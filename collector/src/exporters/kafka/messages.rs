//! Turning a batch into Kafka messages: one topic per batch (from request metadata) or per
//! resource (from an attribute, or the default), one message per trace when partitioning by trace id (the key is the 16-byte trace
//! id, as the OpenTelemetry Collector writes it), and no message above `max_message_bytes`:
//! spans are packed into messages up to the limit. A single span that cannot fit alone is
//! rejected, counted and logged, never sent to be refused by the broker.
//!
//! This module cuts decoded spans ([`Splitter::split_for`]): OTLP/JSON, and batches a stage
//! has rebuilt as structures. A batch that still holds the protobuf it was received as is cut
//! from those bytes for `otlp_proto` (see `wire_split`), into the same messages.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use prost::encoding::{self, WireType};

use crate::kafka::Encoding;
use crate::pipeline::{Metadata, TraceBatch, count_spans};

/// Bytes a record needs besides its key and value (record header, varints, batch header
/// share). Reserved so that key + value + overhead stays within `max_message_bytes`.
pub const RECORD_OVERHEAD: usize = 128;

/// Upper bound of a nested message's tag and length prefix (1-byte tag, varint of at most 5).
pub(super) const NESTED_HEADER: usize = 6;

/// One message to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    /// Destination topic.
    pub topic: Arc<str>,
    /// The 16-byte trace id when partitioning by trace, else none (librdkafka then spreads
    /// messages over the partitions).
    pub key: Option<Bytes>,
    /// The encoded request (the messages of one batch may share one buffer).
    pub value: Bytes,
    /// Spans in this message.
    pub spans: u64,
}

/// How a batch is cut into messages.
#[derive(Debug, Clone)]
pub struct Splitter {
    /// Payload encoding.
    pub encoding: Encoding,
    /// Topic when `topic_from_attribute` is unset or absent from a resource.
    pub topic: Arc<str>,
    /// Resource attribute naming the topic; empty = always `topic`.
    pub topic_from_attribute: String,
    /// Request metadata key naming the topic of the whole batch, before
    /// `topic_from_attribute`; empty = unused.
    pub topic_from_metadata_key: String,
    /// Topics (or `*` patterns) `topic_from_metadata_key` may name; a batch naming another
    /// goes to `topic`.
    pub allowed_topics: Vec<String>,
    /// One message per trace, keyed by trace id.
    pub partition_traces_by_id: bool,
    /// Largest message (key + value + [`RECORD_OVERHEAD`]).
    pub max_message_bytes: usize,
}

/// The messages for a batch, and what could not be sent.
#[derive(Debug, Default)]
pub struct Split {
    /// Messages, in batch order.
    pub messages: Vec<OutMessage>,
    /// Spans too large to fit in any message on their own.
    pub rejected_spans: u64,
    /// The topic the batch's metadata named when it was not allowed (the batch then went to
    /// `topic`).
    pub topic_not_allowed: Option<String>,
}

/// Spans of one scope of one resource, borrowed from the batch: messages are cut and encoded
/// from these without copying the spans.
#[derive(Debug, Clone)]
struct Part<'a> {
    rs: &'a ResourceSpans,
    ss: &'a ScopeSpans,
    spans: Vec<&'a Span>,
    /// `encoded_len` of each span as field 2 of `ScopeSpans` (tag and length included).
    lens: Vec<usize>,
}

impl<'a> Part<'a> {
    fn new(rs: &'a ResourceSpans, ss: &'a ScopeSpans) -> Self {
        Self {
            rs,
            ss,
            spans: Vec::new(),
            lens: Vec::new(),
        }
    }

    fn push(&mut self, span: &'a Span, len: usize) {
        self.spans.push(span);
        self.lens.push(len);
    }

    /// Length of this part's `ScopeSpans` body.
    fn body_len(&self) -> usize {
        self.ss
            .scope
            .as_ref()
            .map_or(0, |s| encoding::message::encoded_len(1, s))
            + self.lens.iter().sum::<usize>()
            + string_len(3, &self.ss.schema_url)
    }

    /// An owned copy, for encodings that cannot write borrowed parts.
    fn to_owned_scope(&self) -> ScopeSpans {
        ScopeSpans {
            scope: self.ss.scope.clone(),
            spans: self.spans.iter().map(|s| (*s).clone()).collect(),
            schema_url: self.ss.schema_url.clone(),
        }
    }
}

fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        encoding::string::encoded_len(tag, &s.to_string())
    }
}

/// Upper bound of what a new `ResourceSpans` entry costs besides its scopes.
fn resource_header_len(rs: &ResourceSpans) -> usize {
    NESTED_HEADER
        + rs.resource
            .as_ref()
            .map_or(0, |r| encoding::message::encoded_len(1, r))
        + string_len(3, &rs.schema_url)
}

/// Upper bound of what a new `ScopeSpans` entry costs besides its spans.
fn scope_header_len(ss: &ScopeSpans) -> usize {
    NESTED_HEADER
        + ss.scope
            .as_ref()
            .map_or(0, |s| encoding::message::encoded_len(1, s))
        + string_len(3, &ss.schema_url)
}

/// Writes `parts` as an `ExportTraceServiceRequest`, the bytes prost would write for the same
/// request; consecutive parts of one resource share its `ResourceSpans` entry.
fn encode_parts(parts: &[Part<'_>], capacity: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(capacity);
    let mut i = 0;
    while i < parts.len() {
        let rs = parts[i].rs;
        let j = i + parts[i..]
            .iter()
            .take_while(|p| std::ptr::eq(p.rs, rs))
            .count();
        let bodies: Vec<usize> = parts[i..j].iter().map(Part::body_len).collect();
        let rs_len = rs
            .resource
            .as_ref()
            .map_or(0, |r| encoding::message::encoded_len(1, r))
            + bodies
                .iter()
                .map(|l| 1 + encoding::encoded_len_varint(*l as u64) + l)
                .sum::<usize>()
            + string_len(3, &rs.schema_url);
        encoding::encode_key(1, WireType::LengthDelimited, &mut buf);
        encoding::encode_varint(rs_len as u64, &mut buf);
        if let Some(r) = &rs.resource {
            encoding::message::encode(1, r, &mut buf);
        }
        for (p, body) in parts[i..j].iter().zip(bodies) {
            encoding::encode_key(2, WireType::LengthDelimited, &mut buf);
            encoding::encode_varint(body as u64, &mut buf);
            if let Some(scope) = &p.ss.scope {
                encoding::message::encode(1, scope, &mut buf);
            }
            for (span, len) in p.spans.iter().zip(&p.lens) {
                // `len` is the field's whole length: tag, length prefix and body.
                let body = len - 1 - encoding::encoded_len_varint(span.encoded_len() as u64);
                encoding::encode_key(2, WireType::LengthDelimited, &mut buf);
                encoding::encode_varint(body as u64, &mut buf);
                span.encode_raw(&mut buf);
            }
            if !p.ss.schema_url.is_empty() {
                encoding::string::encode(3, &p.ss.schema_url, &mut buf);
            }
        }
        if !rs.schema_url.is_empty() {
            encoding::string::encode(3, &rs.schema_url, &mut buf);
        }
        i = j;
    }
    buf
}

impl Splitter {
    /// Cuts `batch` into messages: from its protobuf bytes when it still holds them and the
    /// encoding is `otlp_proto`, else from its decoded spans. Both give the same messages.
    pub fn split_batch(&self, batch: &TraceBatch) -> Split {
        if self.encoding == Encoding::OtlpProto
            && let Some(parts) = batch.protobuf_parts()
        {
            return self.split_encoded(parts, batch.item_count(), &batch.metadata);
        }
        self.split_for(batch.resources(), &batch.metadata)
    }

    /// Cuts `resource_spans` (of a batch without metadata) into messages.
    pub fn split(&self, resource_spans: &[ResourceSpans]) -> Split {
        self.split_for(resource_spans, &Metadata::default())
    }

    /// Cuts `resource_spans` of a batch with request `metadata` into messages.
    pub fn split_for(&self, resource_spans: &[ResourceSpans], metadata: &Metadata) -> Split {
        let mut out = Split::default();
        let groups = match self.topic_from_metadata(metadata) {
            Some(Ok(topic)) => vec![(topic, resource_spans.iter().collect())],
            Some(Err(refused)) => {
                out.topic_not_allowed = Some(refused);
                vec![(self.topic.clone(), resource_spans.iter().collect())]
            }
            None => self.by_topic(resource_spans),
        };
        for (topic, group) in groups {
            if self.partition_traces_by_id {
                for (trace_id, parts) in by_trace(&group) {
                    self.pack(&topic, Some(Bytes::from(trace_id)), parts, &mut out);
                }
            } else {
                let parts = group
                    .iter()
                    .flat_map(|rs| {
                        rs.scope_spans.iter().map(move |ss| {
                            let mut p = Part::new(rs, ss);
                            for span in &ss.spans {
                                p.push(span, encoding::message::encoded_len(2, span));
                            }
                            p
                        })
                    })
                    .collect();
                self.pack(&topic, None, parts, &mut out);
            }
        }
        out
    }

    /// The topic named by `topic_from_metadata_key`, when set and present (non-empty): `Ok`
    /// when `allowed_topics` has it (and it is a topic name), else `Err` with the value.
    pub(super) fn topic_from_metadata(
        &self,
        metadata: &Metadata,
    ) -> Option<Result<Arc<str>, String>> {
        if self.topic_from_metadata_key.is_empty() {
            return None;
        }
        let topic = metadata
            .get(&self.topic_from_metadata_key)
            .filter(|t| !t.is_empty())?;
        let allowed = crate::config::wildcard::any_matches(&self.allowed_topics, topic)
            && crate::kafka::topic_problem(topic).is_none();
        Some(if allowed {
            Ok(Arc::from(topic))
        } else {
            Err(topic.to_string())
        })
    }

    fn topic_of(&self, rs: &ResourceSpans) -> Arc<str> {
        if self.topic_from_attribute.is_empty() {
            return self.topic.clone();
        }
        rs.resource
            .as_ref()
            .into_iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == self.topic_from_attribute)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) if !s.is_empty() => Some(Arc::from(s.as_str())),
                _ => None,
            })
            .unwrap_or_else(|| self.topic.clone())
    }

    /// Groups resources by topic, keeping the order of first appearance.
    fn by_topic<'a>(
        &self,
        resource_spans: &'a [ResourceSpans],
    ) -> Vec<(Arc<str>, Vec<&'a ResourceSpans>)> {
        if self.topic_from_attribute.is_empty() {
            return vec![(self.topic.clone(), resource_spans.iter().collect())];
        }
        let mut groups: Vec<(Arc<str>, Vec<&ResourceSpans>)> = Vec::new();
        for rs in resource_spans {
            let topic = self.topic_of(rs);
            match groups.iter_mut().find(|(t, _)| *t == topic) {
                Some((_, g)) => g.push(rs),
                None => groups.push((topic, vec![rs])),
            }
        }
        groups
    }

    /// Packs `parts` into as few messages as fit under the limit, in order.
    fn pack(&self, topic: &Arc<str>, key: Option<Bytes>, parts: Vec<Part<'_>>, out: &mut Split) {
        let limit = self.limit(key.as_deref());
        let mut chunk: Vec<Part<'_>> = Vec::new();
        let mut size = 0;
        for part in parts {
            let mut current = Part::new(part.rs, part.ss);
            for (span, len) in part.spans.iter().zip(&part.lens) {
                let headers = |chunk: &[Part<'_>], current: &Part<'_>| {
                    if !current.spans.is_empty() {
                        0
                    } else if chunk.last().is_some_and(|p| std::ptr::eq(p.rs, current.rs)) {
                        scope_header_len(current.ss)
                    } else {
                        resource_header_len(current.rs) + scope_header_len(current.ss)
                    }
                };
                let mut add = len + headers(&chunk, &current);
                if size + add > limit && (!chunk.is_empty() || !current.spans.is_empty()) {
                    if !current.spans.is_empty() {
                        chunk.push(std::mem::replace(&mut current, Part::new(part.rs, part.ss)));
                    }
                    self.emit(topic, &key, std::mem::take(&mut chunk), size, out);
                    size = 0;
                    add = len + headers(&chunk, &current);
                }
                if add > limit {
                    self.reject(topic, out);
                    continue;
                }
                current.push(span, *len);
                size += add;
            }
            if !current.spans.is_empty() {
                chunk.push(current);
            }
        }
        if !chunk.is_empty() {
            self.emit(topic, &key, chunk, size, out);
        }
    }

    /// The most a message's value may take with `key`.
    pub(super) fn limit(&self, key: Option<&[u8]>) -> usize {
        self.max_message_bytes
            .saturating_sub(RECORD_OVERHEAD + key.map_or(0, <[u8]>::len))
    }

    /// Counts (and logs) a span that fits in no message.
    pub(super) fn reject(&self, topic: &Arc<str>, out: &mut Split) {
        crate::telemetry::log_limited!(warn, "a span is larger than max_message_bytes on its own; dropping it",
            topic = %topic,
            max_message_bytes = self.max_message_bytes
        );
        out.rejected_spans += 1;
    }

    fn emit(
        &self,
        topic: &Arc<str>,
        key: &Option<Bytes>,
        chunk: Vec<Part<'_>>,
        size: usize,
        out: &mut Split,
    ) {
        let spans: usize = chunk.iter().map(|p| p.spans.len()).sum();
        if spans == 0 {
            return;
        }
        match self.encoding {
            Encoding::OtlpProto => out.messages.push(OutMessage {
                topic: topic.clone(),
                key: key.clone(),
                value: Bytes::from(encode_parts(&chunk, size)),
                spans: spans as u64,
            }),
            // JSON is larger than protobuf and its size is only known once written: write the
            // chunk, halving it until each half fits.
            Encoding::OtlpJson => {
                let mut owned: Vec<ResourceSpans> = Vec::new();
                for p in &chunk {
                    let scope = p.to_owned_scope();
                    match owned.last_mut() {
                        Some(last)
                            if last.resource == p.rs.resource
                                && last.schema_url == p.rs.schema_url =>
                        {
                            last.scope_spans.push(scope)
                        }
                        _ => owned.push(ResourceSpans {
                            resource: p.rs.resource.clone(),
                            scope_spans: vec![scope],
                            schema_url: p.rs.schema_url.clone(),
                        }),
                    }
                }
                self.fit_json(topic, key.clone(), owned, out);
            }
        }
    }

    fn fit_json(
        &self,
        topic: &Arc<str>,
        key: Option<Bytes>,
        group: Vec<ResourceSpans>,
        out: &mut Split,
    ) {
        let spans = count_spans(&group);
        if spans == 0 {
            return;
        }
        let limit = self.limit(key.as_deref());
        let value = self.encoding.encode(&group);
        if value.len() <= limit {
            out.messages.push(OutMessage {
                topic: topic.clone(),
                key,
                value: Bytes::from(value),
                spans: spans as u64,
            });
            return;
        }
        if spans == 1 {
            self.reject(topic, out);
            return;
        }
        let mut rest = TraceBatch::new(group);
        let front = rest.split_front(spans / 2);
        self.fit_json(topic, key.clone(), front.into_resources(), out);
        self.fit_json(topic, key, rest.into_resources(), out);
    }
}

/// Regroups the spans of `group` by trace id (in order of first appearance); each trace's
/// spans keep their resource and scope.
fn by_trace<'a>(group: &[&'a ResourceSpans]) -> Vec<(Vec<u8>, Vec<Part<'a>>)> {
    let mut order: Vec<(Vec<u8>, Vec<Part<'a>>)> = Vec::new();
    let mut index: HashMap<&'a [u8], usize> = HashMap::new();
    for &rs in group {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let t = *index.entry(span.trace_id.as_slice()).or_insert_with(|| {
                    order.push((span.trace_id.clone(), Vec::new()));
                    order.len() - 1
                });
                let parts = &mut order[t].1;
                let same = parts
                    .last()
                    .is_some_and(|p| std::ptr::eq(p.rs, rs) && std::ptr::eq(p.ss, ss));
                if !same {
                    parts.push(Part::new(rs, ss));
                }
                let len = encoding::message::encoded_len(2, span);
                parts.last_mut().expect("a part").push(span, len);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::count_spans;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn splitter(partition: bool, max: usize) -> Splitter {
        Splitter {
            encoding: Encoding::OtlpProto,
            topic: Arc::from("otlp_spans"),
            topic_from_attribute: String::new(),
            topic_from_metadata_key: String::new(),
            allowed_topics: Vec::new(),
            partition_traces_by_id: partition,
            max_message_bytes: max,
        }
    }

    /// `traces` traces of `per_trace` spans, interleaved, in two scopes of one resource.
    fn interleaved(traces: u8, per_trace: usize, pad: usize) -> Vec<ResourceSpans> {
        let mut scopes = vec![ScopeSpans::default(), ScopeSpans::default()];
        for i in 0..per_trace {
            for t in 0..traces {
                scopes[i % 2].spans.push(Span {
                    trace_id: vec![t + 1; 16],
                    span_id: vec![i as u8; 8],
                    name: "x".repeat(pad),
                    ..Default::default()
                });
            }
        }
        vec![ResourceSpans {
            scope_spans: scopes,
            ..Default::default()
        }]
    }

    fn decoded(m: &OutMessage) -> Vec<ResourceSpans> {
        Encoding::OtlpProto.decode(&m.value).unwrap()
    }

    #[test]
    fn one_message_per_trace_keyed_by_trace_id() {
        let split = splitter(true, 1_000_000).split(&interleaved(3, 4, 10));
        assert_eq!(split.messages.len(), 3);
        for m in &split.messages {
            let key = m.key.clone().unwrap();
            assert_eq!(key.len(), 16);
            let rs = decoded(m);
            assert_eq!(count_spans(&rs), 4);
            assert_eq!(m.spans, 4);
            for s in rs
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
            {
                assert_eq!(s.trace_id, key);
            }
        }
    }

    #[test]
    fn without_partitioning_one_unkeyed_message() {
        let split = splitter(false, 1_000_000).split(&interleaved(3, 4, 10));
        assert_eq!(split.messages.len(), 1);
        assert_eq!(split.messages[0].key, None);
        assert_eq!(split.messages[0].spans, 12);
    }

    #[test]
    fn oversized_batches_are_split_below_the_limit() {
        let max = 2_000;
        for partition in [false, true] {
            let split = splitter(partition, max).split(&interleaved(2, 50, 100));
            assert!(split.messages.len() > 4, "{}", split.messages.len());
            let mut total = 0;
            for m in &split.messages {
                let size = m.value.len() + m.key.as_ref().map_or(0, Bytes::len) + RECORD_OVERHEAD;
                assert!(size <= max, "{size} > {max}");
                total += count_spans(&decoded(m));
            }
            assert_eq!(total, 100);
            assert_eq!(split.rejected_spans, 0);
        }
    }

    #[test]
    fn borrowed_encoding_is_what_prost_writes() {
        let mut rs = interleaved(2, 5, 10);
        rs[0].schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
        rs[0].scope_spans[1].schema_url = "scope-schema".into();
        rs[0].resource = Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("checkout".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        rs.push(interleaved(1, 3, 700).remove(0));
        let split = splitter(false, 1_000_000).split(&rs);
        assert_eq!(split.messages.len(), 1);
        let prost = crate::otlp::ExportTraceServiceRequest {
            resource_spans: rs.clone(),
        };
        assert_eq!(split.messages[0].value, prost.encode_to_vec());
    }

    #[test]
    fn messages_are_filled_before_a_new_one_starts() {
        let max = 5_000;
        let split = splitter(false, max).split(&interleaved(4, 100, 100));
        let sizes: Vec<usize> = split.messages.iter().map(|m| m.value.len()).collect();
        for s in &sizes[..sizes.len() - 1] {
            // A span is ~130 bytes: a message closes only when the next span does not fit.
            assert!(*s + RECORD_OVERHEAD > max - 400, "{sizes:?}");
        }
    }

    #[test]
    fn json_is_split_too() {
        let mut s = splitter(false, 3_000);
        s.encoding = Encoding::OtlpJson;
        let split = s.split(&interleaved(2, 30, 100));
        let total: usize = split
            .messages
            .iter()
            .map(|m| {
                assert!(m.value.len() + RECORD_OVERHEAD <= 3_000);
                count_spans(&Encoding::OtlpJson.decode(&m.value).unwrap())
            })
            .sum();
        assert_eq!(total, 60);
    }

    #[test]
    fn a_span_too_large_alone_is_rejected() {
        let mut rs = interleaved(1, 3, 10);
        rs[0].scope_spans[0].spans[0].name = "y".repeat(5_000);
        let split = splitter(false, 1_000).split(&rs);
        assert_eq!(split.rejected_spans, 1);
        assert_eq!(split.messages.iter().map(|m| m.spans).sum::<u64>(), 2);
    }

    #[test]
    fn topic_from_metadata_key_wins_over_the_attribute() {
        let mut s = splitter(false, 1_000_000);
        s.topic_from_attribute = "kafka.topic".into();
        s.topic_from_metadata_key = "X-Tenant".into();
        s.allowed_topics = vec!["acme".into(), "tenant-*".into()];
        let mut rs = interleaved(1, 2, 1);
        rs[0].resource = Some(Resource {
            attributes: vec![KeyValue {
                key: "kafka.topic".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("from-attr".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        rs.extend(interleaved(1, 1, 1));
        let topics = |md: &[(&str, &str)]| -> Vec<(String, u64)> {
            let md = Metadata::new(md.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            s.split_for(&rs, &md)
                .messages
                .iter()
                .map(|m| (m.topic.to_string(), m.spans))
                .collect()
        };
        assert_eq!(topics(&[("x-tenant", "acme")]), vec![("acme".into(), 3)]);
        // Absent or empty: the attribute, then the default.
        let fallback = vec![("from-attr".to_string(), 2), ("otlp_spans".to_string(), 1)];
        assert_eq!(topics(&[("other", "x")]), fallback);
        assert_eq!(topics(&[("x-tenant", "")]), fallback);
        assert_eq!(
            topics(&[("x-tenant", "tenant-7")]),
            vec![("tenant-7".into(), 3)]
        );
    }

    #[test]
    fn a_topic_outside_allowed_topics_goes_to_the_default_topic() {
        let mut s = splitter(false, 1_000_000);
        s.topic_from_metadata_key = "x-tenant".into();
        s.allowed_topics = vec!["acme".into(), "tenant-*".into()];
        let rs = interleaved(2, 2, 1);
        for refused in ["__consumer_offsets", "acme2", "tenant-a/b", "tenant-*x"] {
            let md = Metadata::new([("x-tenant".to_string(), refused.to_string())]);
            let split = s.split_for(&rs, &md);
            assert_eq!(split.topic_not_allowed.as_deref(), Some(refused));
            assert!(split.messages.iter().all(|m| &*m.topic == "otlp_spans"));
            assert_eq!(split.messages.iter().map(|m| m.spans).sum::<u64>(), 4);
        }
        let md = Metadata::new([("x-tenant".to_string(), "acme".to_string())]);
        assert_eq!(s.split_for(&rs, &md).topic_not_allowed, None);
    }

    #[test]
    fn topic_from_resource_attribute() {
        let mut s = splitter(false, 1_000_000);
        s.topic_from_attribute = "kafka.topic".into();
        let with = |topic: &str| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "kafka.topic".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(topic.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..interleaved(1, 1, 1).remove(0)
        };
        let rs = vec![
            with("a"),
            interleaved(1, 1, 1).remove(0),
            with("a"),
            with("b"),
        ];
        let topics: Vec<(String, u64)> = s
            .split(&rs)
            .messages
            .iter()
            .map(|m| (m.topic.to_string(), m.spans))
            .collect();
        assert_eq!(
            topics,
            vec![
                ("a".to_string(), 2),
                ("otlp_spans".to_string(), 1),
                ("b".to_string(), 1)
            ]
        );
    }
}
