//! The byte path ([`Splitter::split_batch`] on a batch that holds received protobuf) held to
//! the decoded path ([`Splitter::split_for`]), the oracle. For prost-encoded input (what the
//! SDKs send) every message must be the same, byte for byte; for input prost never writes
//! (unknown fields, repeated singular fields) the messages must hold the same spans.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as V,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status,
    span::{Event, Link},
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::Config;
use prost::Message as _;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, encode_varint};

use super::messages::{RECORD_OVERHEAD, Split, Splitter};
use crate::kafka::Encoding;
use crate::otlp::ExportTraceServiceRequest;
use crate::pipeline::{Metadata, TraceBatch};
use crate::testing::SplitMix64 as Rng;

// ----- Running both paths ---------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    partition: bool,
    max_message_bytes: usize,
    topic_from_attribute: bool,
    /// `x-tenant` metadata: none, an allowed topic, a refused one.
    tenant: Option<&'static str>,
}

fn splitter(o: &Options) -> Splitter {
    Splitter {
        encoding: Encoding::OtlpProto,
        topic: "otlp_spans".into(),
        topic_from_attribute: if o.topic_from_attribute {
            "kafka.topic".into()
        } else {
            String::new()
        },
        topic_from_metadata_key: "x-tenant".into(),
        allowed_topics: vec!["acme".into()],
        partition_traces_by_id: o.partition,
        max_message_bytes: o.max_message_bytes,
    }
}

/// A batch of the received `requests` (checked, as a receiver checks them), merged as the
/// batch processor merges them.
fn batch(requests: &[Vec<u8>], o: &Options) -> TraceBatch {
    let mut batch = TraceBatch::default();
    for r in requests {
        batch.merge(TraceBatch::from_protobuf(Bytes::from(r.clone())).expect("validate accepts"));
    }
    if let Some(tenant) = o.tenant {
        batch = batch.with_metadata(Metadata::new([("x-tenant".into(), tenant.into())]));
    }
    batch
}

/// The byte path's split and the decoded path's.
fn both(requests: &[Vec<u8>], o: &Options) -> (Split, Split) {
    let s = splitter(o);
    let batch = batch(requests, o);
    assert!(batch.protobuf_parts().is_some() || batch.is_empty());
    let bytes = s.split_batch(&batch);
    let decoded = s.split_for(batch.resources(), &batch.metadata);
    (bytes, decoded)
}

fn same_split(bytes: &Split, decoded: &Split) {
    assert_eq!(bytes.messages.len(), decoded.messages.len());
    for (b, d) in bytes.messages.iter().zip(&decoded.messages) {
        assert_eq!(b, d);
    }
    assert_eq!(bytes.rejected_spans, decoded.rejected_spans);
    assert_eq!(bytes.topic_not_allowed, decoded.topic_not_allowed);
}

/// A message value as prost reads it, written back as prost writes it (unknown fields gone,
/// repeated singular fields merged). Bytes, not structures: a double may be a NaN.
fn canonical(value: &[u8]) -> Vec<u8> {
    ExportTraceServiceRequest::decode(value)
        .expect("a message decodes")
        .encode_to_vec()
}

/// For each message: topic, key, span count and canonical content.
fn content(split: &Split) -> Vec<(String, Option<Bytes>, u64, Vec<u8>)> {
    split
        .messages
        .iter()
        .map(|m| {
            (
                m.topic.to_string(),
                m.key.clone(),
                m.spans,
                canonical(&m.value),
            )
        })
        .collect()
}

/// A message's topic and key.
type Destination = (String, Option<Bytes>);

/// For each topic and key, the spans sent, in order, canonically encoded.
fn spans_by_destination(split: &Split) -> Vec<(Destination, Vec<Vec<u8>>)> {
    let mut out: Vec<(Destination, Vec<Vec<u8>>)> = Vec::new();
    for m in &split.messages {
        let dest = (m.topic.to_string(), m.key.clone());
        let spans = ExportTraceServiceRequest::decode(m.value.as_ref())
            .expect("a message decodes")
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.encode_to_vec())
            .collect::<Vec<_>>();
        match out.iter_mut().find(|(d, _)| *d == dest) {
            Some((_, all)) => all.extend(spans),
            None => out.push((dest, spans)),
        }
    }
    out
}

fn within_limit(split: &Split, max: usize) {
    for m in &split.messages {
        let size = m.value.len() + m.key.as_ref().map_or(0, Bytes::len) + RECORD_OVERHEAD;
        assert!(size <= max, "{size} > {max}");
        assert_eq!(
            m.spans as usize,
            TraceBatch::from_protobuf(m.value.clone())
                .expect("a message is valid OTLP")
                .item_count()
        );
    }
}

fn total_spans(requests: &[Vec<u8>]) -> u64 {
    requests
        .iter()
        .map(|r| crate::otlp::wire::validate(r).expect("valid").spans as u64)
        .sum()
}

// ----- Hand-picked cases ----------------------------------------------------------------------

fn s(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(V::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// SDK-shaped requests: `traces` traces of `per_trace` spans each, their spans spread over the
/// requests (so every trace is cut across requests, scopes and resources).
fn sdk_requests(requests: usize, traces: u8, per_trace: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut n = 0u64;
    for r in 0..requests {
        let mut scopes = vec![
            ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.jdbc".into(),
                    version: "2.9.0".into(),
                    ..Default::default()
                }),
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                ..Default::default()
            },
            ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.http".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        for i in 0..per_trace {
            for t in 0..traces {
                n += 1;
                scopes[(i + t as usize) % 2].spans.push(Span {
                    trace_id: vec![t + 1; 16],
                    span_id: n.to_be_bytes().to_vec(),
                    parent_span_id: if i == 0 { vec![] } else { vec![t + 1; 8] },
                    name: format!("SELECT orders {i}"),
                    kind: 3,
                    start_time_unix_nano: 1_700_000_000_000_000_000 + n,
                    end_time_unix_nano: 1_700_000_000_000_500_000 + n,
                    attributes: vec![s("db.system", "postgresql"), s("http.route", "/api")],
                    events: vec![Event {
                        name: "message".into(),
                        time_unix_nano: n,
                        attributes: vec![s("message.type", "SENT")],
                        ..Default::default()
                    }],
                    status: Some(Status::default()),
                    flags: 0x101,
                    ..Default::default()
                });
            }
        }
        let resource = |service: &str| {
            Some(Resource {
                attributes: vec![s("service.name", service), s("host.name", "ip-10-0-0-1")],
                ..Default::default()
            })
        };
        out.push(
            ExportTraceServiceRequest {
                resource_spans: vec![
                    ResourceSpans {
                        resource: resource(&format!("checkout-{r}")),
                        scope_spans: scopes,
                        schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                    },
                    ResourceSpans {
                        resource: resource("cart"),
                        scope_spans: vec![ScopeSpans {
                            spans: vec![Span {
                                trace_id: vec![1; 16],
                                span_id: vec![0xee; 8],
                                name: "cart".into(),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ],
            }
            .encode_to_vec(),
        );
    }
    out
}

#[test]
fn sdk_batches_give_the_same_bytes_at_every_limit() {
    let requests = sdk_requests(3, 5, 12);
    for partition in [true, false] {
        for max in [600, 900, 2_000, 5_000, 1_000_000] {
            let o = Options {
                partition,
                max_message_bytes: max,
                topic_from_attribute: false,
                tenant: None,
            };
            let (bytes, decoded) = both(&requests, &o);
            same_split(&bytes, &decoded);
            within_limit(&bytes, max);
            assert_eq!(
                bytes.messages.iter().map(|m| m.spans).sum::<u64>() + bytes.rejected_spans,
                total_spans(&requests)
            );
            assert_eq!(bytes.rejected_spans, 0);
            if max < 5_000 {
                assert!(bytes.messages.len() > 5, "{max}: {}", bytes.messages.len());
            }
        }
    }
}

#[test]
fn keys_are_slices_of_the_received_bytes() {
    let requests = sdk_requests(2, 3, 2);
    let o = Options {
        partition: true,
        max_message_bytes: 1_000_000,
        topic_from_attribute: false,
        tenant: None,
    };
    let batch = batch(&requests, &o);
    let parts: Vec<Bytes> = batch.protobuf_parts().unwrap().cloned().collect();
    let split = splitter(&o).split_batch(&batch);
    assert_eq!(split.messages.len(), 3);
    for m in &split.messages {
        let key = m.key.as_ref().unwrap();
        assert!(parts.iter().any(|p| {
            let range = p.as_ptr_range();
            range.contains(&key.as_ptr()) && key.len() == 16
        }));
    }
}

#[test]
fn a_batch_a_stage_rebuilt_takes_the_decoded_path() {
    let requests = sdk_requests(1, 2, 2);
    let o = Options {
        partition: true,
        max_message_bytes: 1_000_000,
        topic_from_attribute: false,
        tenant: None,
    };
    let mut batch = batch(&requests, &o);
    batch.resources_mut()[0].scope_spans[0].spans[0].name = "renamed".into();
    assert!(batch.protobuf_parts().is_none());
    let split = splitter(&o).split_batch(&batch);
    assert_eq!(split.messages.iter().map(|m| m.spans).sum::<u64>(), 5);
    assert!(
        split
            .messages
            .iter()
            .any(|m| m.value.windows(7).any(|w| w == b"renamed"))
    );
}

#[test]
fn a_span_too_large_alone_is_rejected_by_both() {
    let mut request = ExportTraceServiceRequest::decode(&*sdk_requests(1, 2, 3)[0]).unwrap();
    request.resource_spans[0].scope_spans[0].spans[1].name = "y".repeat(3_000);
    let requests = vec![request.encode_to_vec()];
    for partition in [true, false] {
        let o = Options {
            partition,
            max_message_bytes: 1_500,
            topic_from_attribute: false,
            tenant: None,
        };
        let (bytes, decoded) = both(&requests, &o);
        same_split(&bytes, &decoded);
        assert_eq!(bytes.rejected_spans, 1);
    }
}

// ----- Generated requests ---------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z./]{1,10}", ".{0,4}"]
}

fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("service.name".to_owned()),
        Just("a".to_owned()),
        text()
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![3 => Just(0u32), 1 => any::<u32>()]
}

fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        vec(any::<u8>(), len),
        vec(any::<u8>(), 0..20)
    ]
}

/// Trace ids from a small pool, so that traces interleave; some empty or of another length.
fn trace_id() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (1..=4u8).prop_map(|t| vec![t; 16]),
        1 => Just(Vec::new()),
        1 => Just(vec![9; 5]),
        1 => vec(any::<u8>(), 16),
    ]
}

fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        1 => Just(None),
        3 => text().prop_map(|v| Some(V::StringValue(v))),
        1 => any::<bool>().prop_map(|v| Some(V::BoolValue(v))),
        1 => any::<i64>().prop_map(|v| Some(V::IntValue(v))),
        1 => any::<f64>().prop_map(|v| Some(V::DoubleValue(v))),
        1 => vec(any::<u8>(), 0..6).prop_map(|v| Some(V::BytesValue(v))),
    ]
    .prop_map(|value| AnyValue { value });
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(|values| AnyValue {
                value: Some(V::ArrayValue(ArrayValue { values })),
            }),
            vec((key_name(), option::of(inner)), 0..3).prop_map(|kvs| AnyValue {
                value: Some(V::KvlistValue(KeyValueList {
                    values: kvs
                        .into_iter()
                        .map(|(key, value)| KeyValue {
                            key,
                            value,
                            ..Default::default()
                        })
                        .collect(),
                })),
            }),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    vec(
        (key_name(), option::of(any_value())).prop_map(|(key, value)| KeyValue {
            key,
            value,
            ..Default::default()
        }),
        0..3,
    )
}

/// A resource, sometimes naming a topic (or naming it badly: empty, not a string, twice:
/// the first counts).
fn resource() -> impl Strategy<Value = Resource> {
    let topic = prop_oneof![
        1 => Just(None),
        1 => Just(Some(V::StringValue("a".into()))),
        1 => Just(Some(V::StringValue("b".into()))),
        1 => Just(Some(V::StringValue("otlp_spans".into()))),
        1 => Just(Some(V::StringValue(String::new()))),
        1 => Just(Some(V::IntValue(7))),
    ];
    (attributes(), vec(topic, 0..3), count()).prop_map(|(mut attributes, topics, dropped)| {
        for value in topics {
            attributes.push(KeyValue {
                key: "kafka.topic".into(),
                value: Some(AnyValue { value }),
                ..Default::default()
            });
        }
        Resource {
            attributes,
            dropped_attributes_count: dropped,
            entity_refs: Vec::new(),
        }
    })
}

fn scope() -> impl Strategy<Value = InstrumentationScope> {
    (text(), text(), attributes(), count()).prop_map(
        |(name, version, attributes, dropped_attributes_count)| InstrumentationScope {
            name,
            version,
            attributes,
            dropped_attributes_count,
        },
    )
}

fn span() -> impl Strategy<Value = Span> {
    let event = (any::<u64>(), text(), attributes(), count()).prop_map(
        |(time_unix_nano, name, attributes, dropped_attributes_count)| Event {
            time_unix_nano,
            name,
            attributes,
            dropped_attributes_count,
        },
    );
    let link = (id(16), id(8), text(), attributes(), any::<u32>()).prop_map(
        |(trace_id, span_id, trace_state, attributes, flags)| Link {
            trace_id,
            span_id,
            trace_state,
            attributes,
            dropped_attributes_count: 0,
            flags,
        },
    );
    let status = (text(), 0..3i32).prop_map(|(message, code)| Status { message, code });
    (
        (trace_id(), id(8), text(), id(8), any::<u32>(), text()),
        (0..6i32, any::<u64>(), any::<u64>()),
        (attributes(), vec(event, 0..2), vec(link, 0..2)),
        (count(), option::of(status)),
        // Padding, so that limits cut between spans.
        0..200usize,
    )
        .prop_map(
            |(
                (trace_id, span_id, trace_state, parent_span_id, flags, name),
                (kind, start_time_unix_nano, end_time_unix_nano),
                (attributes, events, links),
                (dropped_attributes_count, status),
                pad,
            )| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name: name + &"x".repeat(pad),
                kind,
                start_time_unix_nano,
                end_time_unix_nano,
                attributes,
                dropped_attributes_count,
                events,
                dropped_events_count: 0,
                links,
                dropped_links_count: 0,
                status,
            },
        )
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope_spans =
        (option::of(scope()), vec(span(), 0..6), text()).prop_map(|(scope, spans, schema_url)| {
            ScopeSpans {
                scope,
                spans,
                schema_url,
            }
        });
    let resource_spans = (option::of(resource()), vec(scope_spans, 0..3), text()).prop_map(
        |(resource, scope_spans, schema_url)| ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        },
    );
    vec(resource_spans, 0..4)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

fn options() -> impl Strategy<Value = Options> {
    (
        any::<bool>(),
        prop_oneof![1 => Just(10_000_000usize), 3 => 150..4_000usize],
        any::<bool>(),
        prop_oneof![Just(None), Just(Some("acme")), Just(Some("nope"))],
    )
        .prop_map(
            |(partition, max_message_bytes, topic_from_attribute, tenant)| Options {
                partition,
                max_message_bytes,
                topic_from_attribute,
                tenant,
            },
        )
}

// ----- Input prost never writes ---------------------------------------------------------------

fn ld(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// An unknown field (a number no OTLP message here uses) of any wire type, groups included.
fn unknown_field(rng: &mut Rng, depth: u32) -> Vec<u8> {
    let tag = 17 + (rng.next() % 30) as u32;
    let mut out = Vec::new();
    let key = |wire_type: WireType, out: &mut Vec<u8>| {
        prost::encoding::encode_key(tag, wire_type, out);
    };
    match rng.next() % 5 {
        0 => {
            key(WireType::Varint, &mut out);
            encode_varint(rng.next() >> (rng.next() % 64), &mut out);
        }
        1 => {
            key(WireType::SixtyFourBit, &mut out);
            out.extend(rng.next().to_le_bytes());
        }
        2 => out = ld(tag, &rng.next().to_le_bytes()[..(rng.next() % 9) as usize]),
        3 => {
            key(WireType::ThirtyTwoBit, &mut out);
            out.extend(&rng.next().to_le_bytes()[..4]);
        }
        _ => {
            key(WireType::StartGroup, &mut out);
            if depth < 2 {
                for _ in 0..rng.next() % 3 {
                    out.extend(unknown_field(rng, depth + 1));
                }
            }
            key(WireType::EndGroup, &mut out);
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Request,
    ResourceSpans,
    ScopeSpans,
    /// Resource, scope, span: copied whole by the byte path.
    Leaf,
}

/// Re-encodes a prost-encoded message body of type `kind` with what decoders must take and
/// prost never writes: unknown fields at every level the byte path reads or copies, resources
/// and scopes given twice (protobuf merges them), and spans with a decoy `trace_id` before the
/// real one (the last one counts).
fn rewrite(mut body: &[u8], kind: Kind, rng: &mut Rng, out: &mut Vec<u8>) {
    while !body.is_empty() {
        if rng.one_in(6) {
            out.extend(unknown_field(rng, 0));
        }
        let start = body;
        let (tag, wire_type) = decode_key(&mut body).expect("valid input");
        let child = match (kind, tag) {
            (Kind::Request, 1) => Some(Kind::ResourceSpans),
            (Kind::ResourceSpans, 2) => Some(Kind::ScopeSpans),
            (Kind::ResourceSpans | Kind::ScopeSpans, 1) | (Kind::ScopeSpans, 2) => Some(Kind::Leaf),
            _ => None,
        };
        let Some(child) = child else {
            prost::encoding::skip_field(wire_type, tag, &mut body, DecodeContext::default())
                .expect("valid input");
            out.extend(&start[..start.len() - body.len()]);
            continue;
        };
        let len = decode_varint(&mut body).expect("valid input") as usize;
        let (inner, rest) = body.split_at(len);
        body = rest;
        let mut new = Vec::new();
        // A span keeps its fields (a decoy trace id is only added in front of a real one).
        let is_span = kind == Kind::ScopeSpans && tag == 2;
        if is_span {
            if !inner.is_empty() && inner[0] == 0x0a && rng.one_in(3) {
                new.extend(ld(1, &[0xdd; 16]));
            }
            new.extend(inner);
        } else if child == Kind::Leaf {
            new.extend(inner);
        } else {
            rewrite(inner, child, rng, &mut new);
        }
        if rng.one_in(5) {
            new.extend(unknown_field(rng, 0));
        }
        out.extend(ld(tag, &new));
        // A resource or scope given twice: the second, empty, merges into the first.
        if child == Kind::Leaf && !is_span && rng.one_in(4) {
            out.extend(ld(tag, &[]));
        }
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 256,
        // No regression files written into the source tree; a failure prints its input.
        failure_persistence: None,
        ..Config::default()
    })]

    /// Prost-encoded requests: the same messages, byte for byte.
    #[test]
    fn prop_same_messages_as_the_decoded_path(
        requests in vec(request(), 1..4),
        o in options(),
    ) {
        let requests: Vec<Vec<u8>> = requests.iter().map(|r| r.encode_to_vec()).collect();
        let (bytes, decoded) = both(&requests, &o);
        same_split(&bytes, &decoded);
        within_limit(&bytes, o.max_message_bytes);
        prop_assert_eq!(
            bytes.messages.iter().map(|m| m.spans).sum::<u64>() + bytes.rejected_spans,
            total_spans(&requests)
        );
    }

    /// Requests with unknown fields, merged resources and scopes and decoy trace ids: the
    /// same spans to the same topics and keys. Sizes are measured on the bytes as received,
    /// so with a limit that cuts, messages may be cut elsewhere; below it they are the same
    /// messages.
    #[test]
    fn prop_same_spans_for_input_prost_never_writes(
        requests in vec(request(), 1..4),
        seed in any::<u64>(),
        o in options(),
    ) {
        let mut rng = Rng(seed);
        let requests: Vec<Vec<u8>> = requests
            .iter()
            .map(|r| {
                let mut out = Vec::new();
                rewrite(&r.encode_to_vec(), Kind::Request, &mut rng, &mut out);
                out
            })
            .collect();
        let (bytes, decoded) = both(&requests, &o);
        within_limit(&bytes, o.max_message_bytes);
        prop_assert_eq!(&bytes.topic_not_allowed, &decoded.topic_not_allowed);
        prop_assert_eq!(
            bytes.messages.iter().map(|m| m.spans).sum::<u64>() + bytes.rejected_spans,
            total_spans(&requests)
        );
        if o.max_message_bytes == 10_000_000 {
            prop_assert_eq!(content(&bytes), content(&decoded));
        } else if bytes.rejected_spans == 0 && decoded.rejected_spans == 0 {
            prop_assert_eq!(spans_by_destination(&bytes), spans_by_destination(&decoded));
        }
    }
}
