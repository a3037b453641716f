//! `validate` and the views, held against prost. The oracle is always
//! `ExportTraceServiceRequest::decode`. Each test either builds bytes by hand to reach one of
//! prost's rules, or takes prost-encoded requests and damages them. The machinery is generic
//! over the signal ([`Signal`]); `logs` and `metrics` hold `validate_logs` and
//! `validate_metrics` to prost with it.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
    any_value::Value as V,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status,
    span::{Event, Link},
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use prost::Message as _;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, encode_varint};

use super::cursor::{EGROUP, I32, I64, LEN, SGROUP, VARINT, all_ascii};
use super::*;
use crate::otlp::ExportTraceServiceRequest;
/// Deterministic choices for the rewriter, from one generated seed.
use crate::testing::SplitMix64 as Rng;
use std::borrow::Cow;

mod logs;
mod metrics;

// ----- Oracle ---------------------------------------------------------------------------------

fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

fn invalid_span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .filter(|s| !(valid_id(&s.trace_id, 16) && valid_id(&s.span_id, 8)))
        .count()
}

/// The decoded size of a list of attributes, by the measure of [`Validated::decoded_bytes`].
fn kvs_size(list: &[KeyValue]) -> usize {
    use std::mem::size_of;
    list.iter()
        .map(|kv| size_of::<KeyValue>() + kv.key.len() + kv.value.as_ref().map_or(0, any_size))
        .sum()
}

/// The decoded size of what an `AnyValue` holds on the heap.
fn any_size(v: &AnyValue) -> usize {
    use std::mem::size_of;
    match &v.value {
        Some(V::StringValue(s)) => s.len(),
        Some(V::BytesValue(b)) => b.len(),
        Some(V::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| size_of::<AnyValue>() + any_size(v))
            .sum(),
        Some(V::KvlistValue(l)) => kvs_size(&l.values),
        _ => 0,
    }
}

/// The decoded size of an optional `Resource` and an optional `InstrumentationScope`.
fn resource_and_scope_size(
    resource: Option<&Resource>,
    scope: Option<&InstrumentationScope>,
) -> usize {
    use std::mem::size_of;
    let mut total = 0;
    if let Some(r) = resource {
        total += kvs_size(&r.attributes);
        for e in &r.entity_refs {
            total += size_of::<EntityRef>() + e.schema_url.len() + e.r#type.len();
            for k in e.id_keys.iter().chain(&e.description_keys) {
                total += size_of::<String>() + k.len();
            }
        }
    }
    if let Some(s) = scope {
        total += s.name.len() + s.version.len() + kvs_size(&s.attributes);
    }
    total
}

/// What [`Validated::decoded_bytes`] bounds: every element of every repeated field, plus the
/// bytes of every string and bytes field, of the decoded request.
fn decoded_size(request: &ExportTraceServiceRequest) -> usize {
    use std::mem::size_of;
    let mut total = 0;
    for rs in &request.resource_spans {
        total += size_of::<ResourceSpans>()
            + rs.schema_url.len()
            + resource_and_scope_size(rs.resource.as_ref(), None);
        for ss in &rs.scope_spans {
            total += size_of::<ScopeSpans>()
                + ss.schema_url.len()
                + resource_and_scope_size(None, ss.scope.as_ref());
            for span in &ss.spans {
                total += size_of::<Span>()
                    + span.trace_id.len()
                    + span.span_id.len()
                    + span.trace_state.len()
                    + span.parent_span_id.len()
                    + span.name.len()
                    + kvs_size(&span.attributes)
                    + span.status.as_ref().map_or(0, |s| s.message.len());
                for e in &span.events {
                    total += size_of::<Event>() + e.name.len() + kvs_size(&e.attributes);
                }
                for l in &span.links {
                    total += size_of::<Link>()
                        + l.trace_id.len()
                        + l.span_id.len()
                        + l.trace_state.len()
                        + kvs_size(&l.attributes);
                }
            }
        }
    }
    total
}

/// A signal whose validator is held to prost: what the generic checks and generators below
/// need to know about it.
trait Signal {
    /// The request type prost decodes.
    type Request: prost::Message + Default + std::fmt::Debug;
    /// What the validator returns.
    type Counts: std::fmt::Debug;
    /// The message types, each with the field numbers that lead to it from the request.
    const SCHEMA: &'static [MessageSchema];
    /// How many `InvalidString` failures [`bad_utf8_in_every_string_field`] finds: three per
    /// string field.
    const STRING_FIELDS: usize;
    fn validate(buf: &[u8]) -> Result<Self::Counts, WireError>;
    /// Asserts that `counts` are what prost decoded from `buf` into `request`.
    fn check(counts: &Self::Counts, request: &Self::Request, buf: &[u8]);
    /// Reads `buf` with the signal's views; on bytes the validator rejects this must merely
    /// not panic.
    fn walk(_buf: &[u8]) {}
    /// The top-level items (spans, log records, metrics), which the rewriter never changes.
    fn items(counts: &Self::Counts) -> usize;
    fn request_items(request: &Self::Request) -> usize;
    /// The message type of field `tag` of this signal's message `kind` (the request is
    /// `"Request"`), or `None` if it is not a message field; the shared messages are known
    /// to [`child`].
    fn child(kind: &str, tag: u32) -> Option<&'static str>;
    /// Whether field `tag` of `kind` is a singular message field (occurrences merge).
    fn singular(kind: &str, tag: u32) -> bool;
    /// Messages the rewriter may give the fields of the sibling before them too (a later
    /// field replaces or merges into an earlier one, as prost decodes).
    fn merges(kind: &str) -> bool;
    /// For a repeated numeric field of `kind`, the wire type of one element.
    fn packed(_kind: &str, _tag: u32) -> Option<u8> {
        None
    }
}

/// Runs the validator of `S` and prost on `buf` and requires the same verdict: on success the
/// same counts, and the views read what prost decoded; on failure the same message.
fn same_as<S: Signal>(buf: &[u8]) -> Result<S::Counts, WireError> {
    let ours = S::validate(buf);
    let theirs = S::Request::decode(buf);
    match (&ours, &theirs) {
        (Ok(counts), Ok(request)) => S::check(counts, request, buf),
        (Err(ours), Err(theirs)) => {
            assert_eq!(ours.to_string(), theirs.to_string(), "input {buf:02x?}")
        }
        _ => panic!("validate: {ours:?}, prost: {theirs:?}, input {buf:02x?}"),
    }
    S::walk(buf);
    ours
}

/// Traces: [`validate`].
struct Traces;

impl Signal for Traces {
    type Request = ExportTraceServiceRequest;
    type Counts = Validated;
    const SCHEMA: &'static [MessageSchema] = SCHEMA;
    // 15 string fields (repeated ones included).
    const STRING_FIELDS: usize = 15;

    fn validate(buf: &[u8]) -> Result<Validated, WireError> {
        validate(buf)
    }

    fn check(counts: &Validated, request: &ExportTraceServiceRequest, buf: &[u8]) {
        assert_eq!(counts.resource_spans, request.resource_spans.len());
        assert_eq!(counts.spans, span_count(request));
        assert_eq!(counts.invalid_spans, invalid_span_count(request));
        let decoded = decoded_size(request);
        assert!(
            counts.decoded_bytes >= decoded,
            "estimate {} below the decoded size {decoded}, input {buf:02x?}",
            counts.decoded_bytes
        );
        views_match(buf, request);
    }

    fn walk(buf: &[u8]) {
        walk(buf)
    }

    fn items(counts: &Validated) -> usize {
        counts.spans
    }

    fn request_items(request: &ExportTraceServiceRequest) -> usize {
        span_count(request)
    }

    fn child(kind: &str, tag: u32) -> Option<&'static str> {
        Some(match (kind, tag) {
            ("Request", 1) => "ResourceSpans",
            ("ResourceSpans", 1) => "Resource",
            ("ResourceSpans", 2) => "ScopeSpans",
            ("ScopeSpans", 1) => "InstrumentationScope",
            ("ScopeSpans", 2) => "Span",
            ("Span", 9) | ("Event", 3) | ("Link", 4) => "KeyValue",
            ("Span", 11) => "Event",
            ("Span", 13) => "Link",
            ("Span", 15) => "Status",
            _ => return None,
        })
    }

    fn singular(kind: &str, tag: u32) -> bool {
        matches!(
            (kind, tag),
            ("ResourceSpans", 1) | ("ScopeSpans", 1) | ("Span", 15)
        )
    }

    fn merges(kind: &str) -> bool {
        // Spans whose fields come in two rounds: the last wins, statuses merge.
        kind == "Span"
    }
}

/// The trace validator held to prost.
fn same_as_prost(buf: &[u8]) -> Result<Validated, WireError> {
    same_as::<Traces>(buf)
}

fn bytes_of(m: &impl prost::Message) -> Vec<u8> {
    m.encode_to_vec()
}

/// Compares re-encoded bytes, not structs: a double field may be a NaN.
fn same_message<M: prost::Message + Default>(body: &[u8], expected: &M) {
    let decoded = M::decode(body).expect("a view's body decodes");
    assert_eq!(bytes_of(&decoded), bytes_of(expected));
}

fn views_match(buf: &[u8], request: &ExportTraceServiceRequest) {
    let view = TracesView::new(buf);
    assert_eq!(view.encoded(), buf);
    let all: Vec<_> = view.resource_spans().collect();
    assert_eq!(all.len(), request.resource_spans.len());
    for (rv, rs) in all.iter().zip(&request.resource_spans) {
        same_message(rv.encoded(), rs);
        assert_eq!(rv.schema_url(), rs.schema_url);
        let resource = rv.resource();
        assert_eq!(resource.is_some(), rs.resource.is_some());
        if let (Some(body), Some(expected)) = (&resource, &rs.resource) {
            same_message(body, expected);
            let mut keys: Vec<&str> = expected.attributes.iter().map(|a| a.key.as_str()).collect();
            keys.extend(["service.name", "missing"]);
            for key in keys {
                assert_eq!(
                    resource_string_attribute(body, key),
                    expected_string_attribute(expected, key),
                    "attribute {key:?}"
                );
            }
        }
        let scopes: Vec<_> = rv.scope_spans().collect();
        assert_eq!(scopes.len(), rs.scope_spans.len());
        for (sv, ss) in scopes.iter().zip(&rs.scope_spans) {
            same_message(sv.encoded(), ss);
            assert_eq!(sv.schema_url(), ss.schema_url);
            let scope = sv.scope();
            assert_eq!(scope.is_some(), ss.scope.is_some());
            if let (Some(body), Some(expected)) = (&scope, &ss.scope) {
                same_message(body, expected);
            }
            let spans: Vec<_> = sv.spans().collect();
            assert_eq!(spans.len(), ss.spans.len());
            for (span, expected) in spans.iter().zip(&ss.spans) {
                same_message(span.encoded(), expected);
                assert_eq!(span.trace_id(), expected.trace_id);
                assert_eq!(span.span_id(), expected.span_id);
                assert_eq!(span.parent_span_id(), expected.parent_span_id);
                assert_eq!(span.trace_state(), expected.trace_state);
                assert_eq!(span.name(), expected.name);
                assert_eq!(span.kind(), expected.kind);
                assert_eq!(span.flags(), expected.flags);
                assert_eq!(span.start_time_unix_nano(), expected.start_time_unix_nano);
                assert_eq!(span.end_time_unix_nano(), expected.end_time_unix_nano);
                assert_eq!(
                    span.status_code(),
                    expected.status.as_ref().map_or(0, |s| s.code)
                );
            }
        }
    }
}

fn expected_string_attribute<'r>(resource: &'r Resource, key: &str) -> Option<&'r str> {
    let first = resource.attributes.iter().find(|a| a.key == key)?;
    match first.value.as_ref()?.value.as_ref()? {
        V::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Reads everything the views offer; on bytes `validate` rejects, this must merely not panic.
fn walk(buf: &[u8]) {
    use std::hint::black_box;
    for rs in TracesView::new(buf).resource_spans() {
        black_box((rs.encoded(), rs.schema_url()));
        if let Some(resource) = rs.resource() {
            black_box(resource_string_attribute(&resource, "service.name"));
        }
        for ss in rs.scope_spans() {
            black_box((ss.encoded(), ss.scope(), ss.schema_url()));
            for span in ss.spans() {
                black_box((span.encoded(), span.trace_id(), span.span_id()));
                black_box((span.parent_span_id(), span.name(), span.trace_state()));
                black_box((span.kind(), span.flags(), span.status_code()));
                black_box((span.start_time_unix_nano(), span.end_time_unix_nano()));
            }
        }
    }
}

// ----- Hand-made encodings --------------------------------------------------------------------

fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_varint(v, &mut out);
    out
}

fn key(tag: u32, wire_type: u8) -> Vec<u8> {
    varint(u64::from(tag) << 3 | u64::from(wire_type))
}

fn ld(tag: u32, body: &[u8]) -> Vec<u8> {
    [key(tag, LEN), varint(body.len() as u64), body.to_vec()].concat()
}

/// A field with the given wire type and a well-formed payload for it.
fn field(tag: u32, wire_type: u8) -> Vec<u8> {
    match wire_type {
        VARINT => [key(tag, VARINT), varint(300)].concat(),
        I64 => [key(tag, I64), vec![7; 8]].concat(),
        LEN => ld(tag, b""),
        SGROUP => [key(tag, SGROUP), key(tag, EGROUP)].concat(),
        I32 => [key(tag, I32), vec![7; 4]].concat(),
        _ => unreachable!("no payload for wire type {wire_type}"),
    }
}

/// Wraps `body` in the messages that `path` (field numbers, outermost first) leads through.
fn nest(path: &[u32], body: &[u8]) -> Vec<u8> {
    match path.split_first() {
        None => body.to_vec(),
        Some((&tag, rest)) => ld(tag, &nest(rest, body)),
    }
}

/// A message type: its name, the field numbers that lead to it from the request, and its known
/// fields with their wire types (from the generated prost structs).
type MessageSchema = (&'static str, &'static [u32], &'static [(u32, u8)]);

const SCHEMA: &[MessageSchema] = &[
    ("ExportTraceServiceRequest", &[], &[(1, LEN)]),
    ("ResourceSpans", &[1], &[(1, LEN), (2, LEN), (3, LEN)]),
    ("Resource", &[1, 1], &[(1, LEN), (2, VARINT), (3, LEN)]),
    (
        "EntityRef",
        &[1, 1, 3],
        &[(1, LEN), (2, LEN), (3, LEN), (4, LEN)],
    ),
    ("ScopeSpans", &[1, 2], &[(1, LEN), (2, LEN), (3, LEN)]),
    (
        "InstrumentationScope",
        &[1, 2, 1],
        &[(1, LEN), (2, LEN), (3, LEN), (4, VARINT)],
    ),
    (
        "Span",
        &[1, 2, 2],
        &[
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (4, LEN),
            (5, LEN),
            (6, VARINT),
            (7, I64),
            (8, I64),
            (9, LEN),
            (10, VARINT),
            (11, LEN),
            (12, VARINT),
            (13, LEN),
            (14, VARINT),
            (15, LEN),
            (16, I32),
        ],
    ),
    (
        "Event",
        &[1, 2, 2, 11],
        &[(1, I64), (2, LEN), (3, LEN), (4, VARINT)],
    ),
    (
        "Link",
        &[1, 2, 2, 13],
        &[
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (4, LEN),
            (5, VARINT),
            (6, I32),
        ],
    ),
    ("Status", &[1, 2, 2, 15], &[(2, LEN), (3, VARINT)]),
    (
        "KeyValue",
        &[1, 2, 2, 9],
        &[(1, LEN), (2, LEN), (3, VARINT)],
    ),
    (
        "AnyValue",
        &[1, 2, 2, 9, 2],
        &[
            (1, LEN),
            (2, VARINT),
            (3, VARINT),
            (4, I64),
            (5, LEN),
            (6, LEN),
            (7, LEN),
            (8, VARINT),
        ],
    ),
    ("ArrayValue", &[1, 2, 2, 9, 2, 5], &[(1, LEN)]),
    ("KeyValueList", &[1, 2, 2, 9, 2, 6], &[(1, LEN)]),
];

fn kv(key: &str, value: V) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, V::StringValue(value.to_owned()))
}

/// A request with one of everything: two resources, entity refs, scopes, server and client
/// spans with events, links, nested attribute values and statuses.
fn sample_request() -> ExportTraceServiceRequest {
    let span = |i: u8, parent: bool| Span {
        trace_id: vec![0xa0 + i / 4; 16],
        span_id: vec![i; 8],
        trace_state: if i.is_multiple_of(2) {
            "vendor=1".into()
        } else {
            String::new()
        },
        parent_span_id: if parent { vec![i - 1; 8] } else { Vec::new() },
        flags: 0x101,
        name: format!("GET /orders/{i}"),
        kind: 2 + i32::from(parent),
        start_time_unix_nano: 1_763_700_000_000_000_000 + u64::from(i) * 1_000,
        end_time_unix_nano: 1_763_700_000_000_500_000 + u64::from(i) * 1_000,
        attributes: vec![
            s("http.request.method", "GET"),
            kv("http.response.status_code", V::IntValue(200)),
            kv("retry", V::BoolValue(i.is_multiple_of(3))),
            kv("ratio", V::DoubleValue(0.25)),
            kv("blob", V::BytesValue(vec![0, 0xff, i])),
            kv(
                "tags",
                V::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(V::StringValue("a".into())),
                        },
                        AnyValue {
                            value: Some(V::KvlistValue(KeyValueList {
                                values: vec![s("inner", "b"), kv("n", V::IntValue(-1))],
                            })),
                        },
                    ],
                }),
            ),
        ],
        dropped_attributes_count: 1,
        events: vec![Event {
            time_unix_nano: 1_763_700_000_000_100_000,
            name: "exception".into(),
            attributes: vec![
                s("exception.type", "java.sql.SQLTransientConnectionException"),
                s(
                    "exception.message",
                    "Connection is not available — timed out",
                ),
            ],
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 2,
        links: vec![Link {
            trace_id: vec![0xbb; 16],
            span_id: vec![0xcc; 8],
            trace_state: "k=v".into(),
            attributes: vec![s("link.kind", "follows")],
            dropped_attributes_count: 0,
            flags: 0x100,
        }],
        dropped_links_count: 3,
        status: Some(Status {
            message: if i == 0 {
                "timeout".into()
            } else {
                String::new()
            },
            code: i32::from(i == 0) * 2,
        }),
    };
    let resource = |service: &str| Resource {
        attributes: vec![
            s("service.name", service),
            s("host.name", "node-7"),
            kv("process.pid", V::IntValue(4242)),
        ],
        dropped_attributes_count: 0,
        entity_refs: vec![EntityRef {
            schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
            r#type: "service".into(),
            id_keys: vec!["service.name".into()],
            description_keys: vec!["host.name".into(), "process.pid".into()],
        }],
    };
    let scope = |name: &str| InstrumentationScope {
        name: name.into(),
        version: "1.2.3".into(),
        attributes: vec![s("scope.attr", "x")],
        dropped_attributes_count: 0,
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(resource("checkout")),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(scope("io.opentelemetry.servlet")),
                        spans: vec![span(0, false), span(1, true)],
                        schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
                    },
                    ScopeSpans {
                        scope: Some(scope("io.opentelemetry.jdbc")),
                        spans: vec![span(2, true)],
                        schema_url: String::new(),
                    },
                ],
                schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
            },
            ResourceSpans {
                resource: Some(resource("payments")),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![span(4, false)],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
        ],
    }
}

fn expect_kind(buf: &[u8], kind: ErrorKind) -> WireError {
    expect_kind_of::<Traces>(buf, kind)
}

/// Requires the validator of `S` and prost to reject `buf`, with this kind of error.
fn expect_kind_of<S: Signal>(buf: &[u8], kind: ErrorKind) -> WireError {
    let err = same_as::<S>(buf).expect_err("invalid");
    assert_eq!(err.kind(), kind, "{err}");
    err
}

// ----- Unit tests -----------------------------------------------------------------------------

#[test]
fn accepts_sample_request_and_counts_spans() {
    let buf = sample_request().encode_to_vec();
    assert_eq!(
        same_as_prost(&buf).expect("valid"),
        Validated {
            resource_spans: 2,
            spans: 4,
            invalid_spans: invalid_span_count(&sample_request()),
            decoded_bytes: decoded_size(&sample_request()),
        }
    );
    assert_eq!(same_as_prost(&[]).expect("empty"), Validated::default());
}

#[test]
fn truncated_at_every_offset_fails_like_prost() {
    let buf = sample_request().encode_to_vec();
    let mut failures = 0;
    for len in 0..buf.len() {
        failures += usize::from(same_as_prost(&buf[..len]).is_err());
    }
    // Only the cut between the two ResourceSpans (and the empty prefix) leaves a valid request.
    assert_eq!(failures, buf.len() - 2);
}

#[test]
fn bad_utf8_deep_inside_an_event_attribute() {
    let mut request = sample_request();
    let nested = V::ArrayValue(ArrayValue {
        values: vec![AnyValue {
            value: Some(V::KvlistValue(KeyValueList {
                values: vec![s("k", "MARKER-VALUE")],
            })),
        }],
    });
    request.resource_spans[1].scope_spans[0].spans[0].events[0]
        .attributes
        .push(kv("deep", nested));
    let mut buf = request.encode_to_vec();
    let at = buf
        .windows(12)
        .position(|w| w == b"MARKER-VALUE")
        .expect("marker");
    buf[at + 6] = 0xff;
    let err = expect_kind(&buf, ErrorKind::InvalidString);
    assert_eq!(
        err.path(),
        [
            ("AnyValue", "value"),
            ("KeyValue", "value"),
            ("KeyValueList", "values"),
            ("AnyValue", "value"),
            ("ArrayValue", "values"),
            ("AnyValue", "value"),
            ("KeyValue", "value"),
            ("Event", "attributes"),
            ("Span", "events"),
            ("ScopeSpans", "spans"),
            ("ResourceSpans", "scope_spans"),
            ("ExportTraceServiceRequest", "resource_spans"),
        ]
    );
    assert!(err.to_string().starts_with(
        "failed to decode Protobuf message: AnyValue.value: KeyValue.value: KeyValueList.values:"
    ));
}

/// Every string field of every message type of `S`, reached through its schema's paths, fails
/// on bad UTF-8 as prost fails.
fn bad_utf8_in_every_string_field<S: Signal>() {
    let mut invalid_strings = 0;
    for (name, path, fields) in S::SCHEMA {
        for &(tag, wire_type) in *fields {
            if wire_type != LEN {
                continue;
            }
            for bad in [&b"\xff"[..], b"ok\xc3", b"\xed\xa0\x80"] {
                let buf = nest(path, &ld(tag, bad));
                let result = same_as::<S>(&buf);
                // Bytes fields take anything, and a message field fails on the bytes as
                // fields; only string fields must say "not UTF-8".
                if let Err(e) = &result
                    && e.kind() == ErrorKind::InvalidString
                {
                    assert_eq!(e.path()[0].0, *name);
                    invalid_strings += 1;
                }
            }
        }
    }
    // Each string field (repeated ones included) fails on each of the three.
    assert_eq!(invalid_strings, S::STRING_FIELDS * 3);
}

#[test]
fn bad_utf8_in_every_trace_string_field() {
    bad_utf8_in_every_string_field::<Traces>();
    let buf = nest(&[1, 1, 3], &ld(2, b"\xff"));
    let err = expect_kind(&buf, ErrorKind::InvalidString);
    assert_eq!(err.path()[0], ("EntityRef", "r#type"));
}

#[test]
fn ascii_fast_path_sees_every_byte() {
    for len in 0..=80 {
        let mut text = vec![b'a'; len];
        assert!(all_ascii(&text));
        same_as_prost(&nest(&[1, 2, 2], &ld(5, &text))).expect("ASCII name");
        for at in 0..len {
            for b in [0x80, 0xc3, 0xff] {
                text[at] = b;
                assert!(!all_ascii(&text), "len {len}, byte {b:#x} at {at}");
                expect_kind(&nest(&[1, 2, 2], &ld(5, &text)), ErrorKind::InvalidString);
            }
            // Valid UTF-8 that is not ASCII takes the slow path and passes.
            text[at] = 0xc3;
            if at + 1 < len {
                text[at + 1] = 0xa9;
                same_as_prost(&nest(&[1, 2, 2], &ld(5, &text))).expect("UTF-8 name");
                text[at + 1] = b'a';
            }
            text[at] = b'a';
        }
    }
}

/// Marks a schema field as a repeated numeric one: packed (length-delimited) runs are
/// accepted besides its element's own wire type.
const PACKED: u8 = 0x10;

/// Every known field of `S` with its declared wire type passes, and with any other fails as in
/// prost (a repeated numeric field takes a packed run too).
fn wrong_wire_type_for_every_known_field<S: Signal>() {
    for (name, path, fields) in S::SCHEMA {
        for &(tag, declared) in *fields {
            let packed = declared & PACKED != 0;
            let declared = declared & 7;
            assert!(
                same_as::<S>(&nest(path, &field(tag, declared))).is_ok(),
                "{name} field {tag}"
            );
            for wire_type in [VARINT, I64, LEN, SGROUP, I32] {
                if wire_type == declared {
                    continue;
                }
                if packed && wire_type == LEN {
                    same_as::<S>(&nest(path, &field(tag, LEN))).expect("an empty packed run");
                    continue;
                }
                let err = expect_kind_of::<S>(
                    &nest(path, &field(tag, wire_type)),
                    ErrorKind::UnexpectedWireType {
                        actual: wire_type,
                        expected: declared,
                    },
                );
                assert_eq!(err.path()[0].0, *name);
            }
        }
    }
}

#[test]
fn wrong_wire_type_for_every_known_trace_field() {
    wrong_wire_type_for_every_known_field::<Traces>();
}

#[test]
fn packed_encoding_is_not_accepted_for_scalar_fields() {
    // prost accepts packed encoding only for repeated numeric fields, and this schema has none.
    let packed = [key(6, LEN), varint(2), vec![1, 2]].concat();
    expect_kind(
        &nest(&[1, 2, 2], &packed),
        ErrorKind::UnexpectedWireType {
            actual: LEN,
            expected: VARINT,
        },
    );
}

/// An unknown group with nested groups and fields of every wire type inside.
fn unknown_group() -> Vec<u8> {
    [
        key(40, SGROUP),
        field(1, VARINT),
        field(2, LEN),
        key(41, SGROUP),
        field(3, I64),
        key(42, SGROUP),
        key(42, EGROUP),
        field(4, I32),
        key(41, EGROUP),
        key(40, EGROUP),
    ]
    .concat()
}

/// Unknown fields of every wire type, groups included, are skipped in every message type of
/// `S`.
fn unknown_fields_and_groups_are_skipped_at_every_level<S: Signal>() {
    for (_, path, _) in S::SCHEMA {
        let mut body = Vec::new();
        for wire_type in [VARINT, I64, LEN, SGROUP, I32] {
            body.extend(field(17 + u32::from(wire_type), wire_type));
        }
        body.extend(unknown_group());
        body.extend(ld(1000, b"\xff\xff anything, even bad UTF-8"));
        body.extend(field((1 << 29) - 1, VARINT));
        let buf = nest(path, &body);
        same_as::<S>(&buf).expect("unknown fields are skipped");
    }
}

/// Groups that do not close, or close the wrong group, fail in every message type of `S` as
/// in prost.
fn malformed_groups_fail_like_prost<S: Signal>() {
    for (_, path, _) in S::SCHEMA {
        // An end group that closes nothing.
        expect_kind_of::<S>(
            &nest(path, &key(20, EGROUP)),
            ErrorKind::UnexpectedEndGroupTag,
        );
        // One that closes a different group.
        expect_kind_of::<S>(
            &nest(path, &[key(20, SGROUP), key(21, EGROUP)].concat()),
            ErrorKind::UnexpectedEndGroupTag,
        );
        // A group the message ends inside of, and one the input ends inside of.
        let unclosed = [key(20, SGROUP), field(1, VARINT)].concat();
        same_as::<S>(&nest(path, &unclosed)).expect_err("unclosed group");
        same_as::<S>(&[nest(path, &[]), unclosed].concat()).expect_err("unclosed group");
    }
}

/// Keys with field number 0 or wire type 6 or 7 fail in every message type of `S`.
fn field_number_zero_and_wire_types_6_and_7_are_invalid<S: Signal>() {
    for (_, path, _) in S::SCHEMA {
        for wire_type in 0..=5 {
            expect_kind_of::<S>(&nest(path, &key(0, wire_type)), ErrorKind::InvalidTag);
        }
        for wire_type in [6, 7] {
            expect_kind_of::<S>(
                &nest(path, &key(1, wire_type)),
                ErrorKind::InvalidWireType {
                    value: u64::from(wire_type),
                },
            );
        }
    }
}

#[test]
fn unknown_fields_and_groups_are_skipped_in_traces() {
    unknown_fields_and_groups_are_skipped_at_every_level::<Traces>();
    // The sample request with an unknown field before every ResourceSpans still reads the same.
    let sample = sample_request().encode_to_vec();
    let buf = [unknown_group(), sample.clone(), field(9, I64)].concat();
    assert_eq!(same_as_prost(&buf).expect("valid").spans, 4);
}

#[test]
fn malformed_groups_in_traces() {
    malformed_groups_fail_like_prost::<Traces>();
}

#[test]
fn invalid_keys_in_traces() {
    field_number_zero_and_wire_types_6_and_7_are_invalid::<Traces>();
}

#[test]
fn varint_limits() {
    let ten_bytes = |last: u8| [vec![0xff; 9], vec![last]].concat();
    // As the value of an unknown field, as a length, and as a key.
    for prefix in [key(2, VARINT), key(1, LEN), Vec::new()] {
        let ok = [prefix.clone(), ten_bytes(0x01)].concat();
        let result = same_as_prost(&ok);
        if prefix == key(2, VARINT) {
            result.expect("u64::MAX is a valid varint");
        }
        for bad in [ten_bytes(0x02), ten_bytes(0x7f), vec![0xff; 11], vec![0x80]] {
            expect_kind(&[prefix.clone(), bad].concat(), ErrorKind::InvalidVarint);
        }
    }
    let kind = |v: &[u8]| nest(&[1, 2, 2], &[key(6, VARINT), v.to_vec()].concat());
    same_as_prost(&kind(&ten_bytes(0x01))).expect("enum takes any varint");
    expect_kind(&kind(&ten_bytes(0x02)), ErrorKind::InvalidVarint);
    // Over-long but in-range encodings are fine.
    same_as_prost(&[key(2, VARINT), vec![0x80, 0x80, 0x00]].concat()).expect("padded varint");
    same_as_prost(&[vec![0x8a, 0x80, 0x00], varint(0)].concat()).expect("padded key");
    // Keys must fit in 32 bits.
    let big_key = varint(u64::from(u32::MAX) + 1);
    expect_kind(
        &big_key,
        ErrorKind::InvalidKey {
            key: u64::from(u32::MAX) + 1,
        },
    );
    expect_kind(
        &nest(&[1, 2, 2, 15], &big_key),
        ErrorKind::InvalidKey { key: 1 << 32 },
    );
    same_as_prost(&[varint(u64::from(u32::MAX) - 2), vec![0; 4]].concat()).expect("largest tag");
}

#[test]
fn lengths_past_the_end() {
    // A message longer than the input; a string longer than the input; a fixed64 cut short by
    // the end of the input; one running past the end of its span but not of the input.
    for (buf, kind) in [
        (
            [key(1, LEN), varint(5), vec![0; 4]].concat(),
            ErrorKind::BufferUnderflow,
        ),
        (
            nest(&[1], &[key(3, LEN), varint(100)].concat()),
            ErrorKind::BufferUnderflow,
        ),
        (
            nest(&[1, 2, 2], &[key(7, I64), vec![0; 7]].concat()),
            ErrorKind::BufferUnderflow,
        ),
        (
            [
                nest(&[1, 2, 2], &[key(7, I64), vec![0; 7]].concat()),
                field(9, VARINT),
            ]
            .concat(),
            ErrorKind::DelimitedLengthExceeded,
        ),
    ] {
        expect_kind(&buf, kind);
    }
    // prost reads a field against the whole input, so a string running past its message is
    // checked for UTF-8 with the bytes that follow, and fails on them.
    let mut span = [key(5, LEN), varint(3), b"ab".to_vec()].concat();
    span = [ld(2, &span), vec![0xff]].concat();
    let buf = nest(&[1, 2], &span);
    expect_kind(&buf, ErrorKind::InvalidString);
}

/// Attribute value nested `levels` ArrayValues deep, as a request.
fn nested_any_value(levels: usize, innermost: &[u8]) -> Vec<u8> {
    let mut any = innermost.to_vec();
    for _ in 0..levels {
        any = ld(5, &ld(1, &any));
    }
    nest(&[1, 2, 2, 9, 2], &any)
}

/// The deepest nesting `make` can take before prost's recursion limit, checked against prost
/// for every depth up to there and one beyond.
fn recursion_boundary(make: impl Fn(usize) -> Vec<u8>) -> usize {
    recursion_boundary_of::<Traces>(make)
}

/// [`recursion_boundary`] for the validator of `S`.
fn recursion_boundary_of<S: Signal>(make: impl Fn(usize) -> Vec<u8>) -> usize {
    let mut levels = 0;
    while same_as::<S>(&make(levels)).is_ok() {
        levels += 1;
        assert!(levels < 200, "no recursion limit");
    }
    expect_kind_of::<S>(&make(levels), ErrorKind::RecursionLimitReached);
    expect_kind_of::<S>(&make(levels + 1), ErrorKind::RecursionLimitReached);
    levels - 1
}

/// An attribute whose value is a KeyValueList holding one KeyValue, `levels` times over,
/// as a request; the innermost KeyValue's body is `innermost`.
fn nested_key_values(levels: usize, innermost: &[u8]) -> Vec<u8> {
    let mut kv = innermost.to_vec();
    for _ in 0..levels {
        kv = ld(2, &ld(6, &ld(1, &kv)));
    }
    nest(&[1, 2, 2, 9], &kv)
}

#[test]
fn recursion_limit_for_nested_values() {
    // Top-level fields have budget 100, and ResourceSpans, ScopeSpans, Span, KeyValue,
    // AnyValue each spend one: the outer AnyValue's fields have 95. Each ArrayValue level
    // spends two more, and a message needs budget left where it occurs: 95 - 2 * 47 = 1.
    assert_eq!(
        recursion_boundary(|n| nested_any_value(n, &field(1, LEN))),
        47
    );
    // Each KeyValueList level spends three (AnyValue, KeyValueList, KeyValue), so the deepest
    // KeyValue's fields have budget 96 - 3 * 32 = 0 ...
    assert_eq!(
        recursion_boundary(|n| nested_key_values(n, &ld(1, b"key"))),
        32
    );
    // ... where its scalar fields still decode, but an unknown field of any kind does not,
    // because prost's `skip_field` checks the budget before it looks at the wire type.
    same_as_prost(&nested_key_values(32, &field(3, VARINT))).expect("scalar at budget 0");
    for wire_type in [VARINT, I64, LEN, SGROUP, I32] {
        expect_kind(
            &nested_key_values(32, &field(20, wire_type)),
            ErrorKind::RecursionLimitReached,
        );
    }
    expect_kind(
        &nested_key_values(32, &ld(2, b"")),
        ErrorKind::RecursionLimitReached,
    );
    // A string attribute in the usual layout (read in one go) needs budget for its value too.
    let plain = [ld(1, b"key"), ld(2, &ld(1, b"value"))].concat();
    assert_eq!(recursion_boundary(|n| nested_key_values(n, &plain)), 31);
}

#[test]
fn string_attributes_in_and_out_of_the_usual_layout() {
    let long = "v".repeat(300);
    let kvs = [
        [ld(1, b"k"), ld(2, &ld(1, b"v"))].concat(),
        [ld(1, long.as_bytes()), ld(2, &ld(1, long.as_bytes()))].concat(),
        [ld(1, b""), ld(2, &ld(1, b""))].concat(),
        // Not ASCII: UTF-8 or not.
        [ld(1, "ké".as_bytes()), ld(2, &ld(1, "vé".as_bytes()))].concat(),
        [ld(1, b"k\xff"), ld(2, &ld(1, b"v"))].concat(),
        [ld(1, b"k"), ld(2, &ld(1, b"v\xff"))].concat(),
        // Other layouts.
        [ld(1, b"k"), ld(2, &[ld(1, b"v"), ld(1, b"\xff")].concat())].concat(),
        [ld(1, b"k"), ld(2, &ld(1, b"v")), ld(1, b"\xff")].concat(),
        [ld(1, b"k"), ld(2, &ld(1, b"v")), field(20, SGROUP)].concat(),
        [ld(1, b"k"), ld(2, &ld(7, b"v"))].concat(),
        [ld(1, b"k"), ld(2, &ld(8, b"v"))].concat(),
        [ld(1, b"k"), ld(2, b"")].concat(),
    ];
    for kv in &kvs {
        for path in [
            &[1, 2, 2, 9][..],
            &[1, 1, 1],
            &[1, 2, 1, 3],
            &[1, 2, 2, 11, 3],
        ] {
            same_as_prost(&nest(path, kv)).ok();
        }
    }
    // Lengths that run past the `KeyValue` or the input, with the layout's tags.
    let body = [ld(1, b"k"), ld(2, &ld(1, b"v"))].concat();
    for (at, len) in [(1, 9), (4, 9), (6, 9), (1, 200), (0, 3), (0, 200)] {
        let mut kv = body.clone();
        if at == 0 {
            // The KeyValue's own length: shorter than its fields, or past the input.
            let mut field = key(9, LEN);
            field.extend(varint(len));
            field.extend(&kv);
            same_as_prost(&[nest(&[1, 2, 2], &field), ld(1, b"")].concat()).ok();
            continue;
        }
        kv[at] = len as u8;
        same_as_prost(&nest(&[1, 2, 2, 9], &kv)).ok();
        same_as_prost(&[nest(&[1, 2, 2, 9], &kv), vec![0x0a; 12]].concat()).ok();
    }
}

#[test]
fn recursion_limit_for_unknown_groups() {
    let groups = |levels: usize| {
        let mut body = field(21, VARINT);
        for _ in 0..levels {
            body = [key(20, SGROUP), body, key(20, EGROUP)].concat();
        }
        nest(&[1, 2, 2], &body)
    };
    // Span fields have budget 97; each group level spends one and the innermost skip needs one.
    assert_eq!(recursion_boundary(groups), 96);
}

#[test]
fn error_text_reads_like_prost() {
    let buf = nest(&[1, 2, 2], &ld(5, b"\xff"));
    let err = validate(&buf).expect_err("bad name");
    assert_eq!(
        err.to_string(),
        "failed to decode Protobuf message: Span.name: ScopeSpans.spans: \
         ResourceSpans.scope_spans: ExportTraceServiceRequest.resource_spans: \
         invalid string value: data is not UTF-8 encoded"
    );
    let err = validate(&nest(&[1, 1], &field(2, LEN))).expect_err("bad wire type");
    assert_eq!(
        err.to_string(),
        "failed to decode Protobuf message: Resource.dropped_attributes_count: \
         ResourceSpans.resource: ExportTraceServiceRequest.resource_spans: \
         invalid wire type: LengthDelimited (expected Varint)"
    );
    let err: Box<dyn std::error::Error> = Box::new(err);
    assert!(format!("{err:?}").contains("UnexpectedWireType"));
}

#[test]
fn views_follow_prost_merge_rules() {
    let status = |code: i32, message: &str| {
        bytes_of(&Status {
            message: message.into(),
            code,
        })
    };
    let span = [
        ld(1, &[1; 16]),
        ld(5, b"first"),
        ld(15, &status(2, "boom")),
        [key(6, VARINT), varint(1)].concat(),
        ld(1, &[2; 16]),
        ld(5, b"second"),
        // A later Status without a code keeps the earlier code; prost merges the two.
        ld(15, &status(0, "more")),
        [key(6, VARINT), varint(u64::MAX)].concat(),
        [key(7, I64), 5u64.to_le_bytes().to_vec()].concat(),
        [key(7, I64), 6u64.to_le_bytes().to_vec()].concat(),
    ]
    .concat();
    let resource_a = bytes_of(&Resource {
        attributes: vec![s("service.name", "a"), s("x", "1")],
        ..Default::default()
    });
    let resource_b = bytes_of(&Resource {
        attributes: vec![s("service.name", "b"), kv("x", V::IntValue(1))],
        dropped_attributes_count: 4,
        ..Default::default()
    });
    let rs = [
        ld(1, &resource_a),
        ld(3, b"schema-1"),
        ld(2, &ld(2, &span)),
        ld(1, &resource_b),
        ld(3, b"schema-2"),
    ]
    .concat();
    let buf = ld(1, &rs);
    same_as_prost(&buf).expect("valid");

    let rv = TracesView::new(&buf).resource_spans().next().expect("one");
    assert_eq!(rv.schema_url(), "schema-2");
    let resource = rv.resource().expect("resource");
    assert!(matches!(resource, Cow::Owned(_)));
    // Merged occurrences concatenate their attribute lists: the first occurrence's comes first.
    assert_eq!(
        resource_string_attribute(&resource, "service.name"),
        Some("a")
    );
    assert_eq!(resource_string_attribute(&resource, "x"), Some("1"));
    let sv = rv.scope_spans().next().expect("one");
    assert!(sv.scope().is_none());
    let view = sv.spans().next().expect("one");
    assert_eq!(view.trace_id(), [2; 16]);
    assert_eq!(view.name(), "second");
    assert_eq!(view.status_code(), 2);
    assert_eq!(view.kind(), -1);
    assert_eq!(view.start_time_unix_nano(), 6);
    assert_eq!(view.end_time_unix_nano(), 0);
    assert_eq!(view.encoded(), span);

    let single = ld(1, &ld(1, &resource_a));
    let rv = TracesView::new(&single)
        .resource_spans()
        .next()
        .expect("one");
    assert!(matches!(rv.resource(), Some(Cow::Borrowed(_))));
    let empty = ld(1, &ld(1, b""));
    let rv = TracesView::new(&empty)
        .resource_spans()
        .next()
        .expect("one");
    assert_eq!(rv.resource().as_deref(), Some(&b""[..]));
}

#[test]
fn resource_string_attribute_reads_only_string_values() {
    let resource = Resource {
        attributes: vec![
            s("service.name", "checkout"),
            kv("pid", V::IntValue(7)),
            s("dup", "old"),
            s("dup", "new"),
            KeyValue {
                key: "none".into(),
                value: None,
                key_strindex: 0,
            },
        ],
        ..Default::default()
    };
    let body = bytes_of(&resource);
    assert_eq!(
        resource_string_attribute(&body, "service.name"),
        Some("checkout")
    );
    assert_eq!(resource_string_attribute(&body, "pid"), None);
    assert_eq!(resource_string_attribute(&body, "dup"), Some("old"));
    assert_eq!(resource_string_attribute(&body, "none"), None);
    assert_eq!(resource_string_attribute(&body, "absent"), None);
    // A value given in two AnyValue occurrences: the last member of the oneof wins.
    let merged = ld(
        1,
        &[
            ld(1, b"k"),
            ld(2, &ld(1, b"str")),
            ld(2, &[key(3, VARINT), varint(1)].concat()),
        ]
        .concat(),
    );
    assert_eq!(resource_string_attribute(&merged, "k"), None);
    let merged = ld(
        1,
        &[
            ld(1, b"k"),
            ld(2, &[key(3, VARINT), varint(1)].concat()),
            ld(2, &ld(1, b"str")),
        ]
        .concat(),
    );
    assert_eq!(resource_string_attribute(&merged, "k"), Some("str"));
}

#[test]
fn views_never_panic_on_invalid_bytes() {
    let buf = sample_request().encode_to_vec();
    for len in 0..buf.len() {
        walk(&buf[..len]);
    }
    let mut buf = buf;
    for i in 0..buf.len() {
        let old = buf[i];
        for b in [0x00, 0x80, 0xff, 0x0b, 0x0c] {
            buf[i] = b;
            walk(&buf);
        }
        buf[i] = old;
    }
    walk(&[0x0b; 4096]);
    walk(&[0xff; 20]);
}

// ----- Differential property test -------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z./]{1,10}", ".{0,4}"]
}

fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("service.name".to_owned()),
        Just("a".to_owned()),
        Just("b".to_owned()),
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

fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        1 => Just(None),
        3 => text().prop_map(|v| Some(V::StringValue(v))),
        1 => any::<bool>().prop_map(|v| Some(V::BoolValue(v))),
        1 => any::<i64>().prop_map(|v| Some(V::IntValue(v))),
        1 => any::<f64>().prop_map(|v| Some(V::DoubleValue(v))),
        1 => vec(any::<u8>(), 0..6).prop_map(|v| Some(V::BytesValue(v))),
        1 => any::<i32>().prop_map(|v| Some(V::StringValueStrindex(v))),
    ]
    .prop_map(|value| AnyValue { value });
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(|values| AnyValue {
                value: Some(V::ArrayValue(ArrayValue { values })),
            }),
            vec((key_name(), option::of(inner), any::<i32>()), 0..3).prop_map(|kvs| {
                AnyValue {
                    value: Some(V::KvlistValue(KeyValueList {
                        values: kvs.into_iter().map(key_value_of).collect(),
                    })),
                }
            }),
        ]
    })
}

fn key_value_of((key, value, strindex): (String, Option<AnyValue>, i32)) -> KeyValue {
    KeyValue {
        key,
        value,
        key_strindex: if strindex % 4 == 0 { strindex } else { 0 },
    }
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    vec(
        (key_name(), option::of(any_value()), any::<i32>()).prop_map(key_value_of),
        0..4,
    )
}

fn resource() -> impl Strategy<Value = Resource> {
    let entity_ref = (text(), text(), vec(text(), 0..2), vec(text(), 0..2)).prop_map(
        |(schema_url, r#type, id_keys, description_keys)| EntityRef {
            schema_url,
            r#type,
            id_keys,
            description_keys,
        },
    );
    (attributes(), count(), vec(entity_ref, 0..2)).prop_map(
        |(attributes, dropped_attributes_count, entity_refs)| Resource {
            attributes,
            dropped_attributes_count,
            entity_refs,
        },
    )
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
    let link = (id(16), id(8), text(), attributes(), count(), any::<u32>()).prop_map(
        |(trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags)| Link {
            trace_id,
            span_id,
            trace_state,
            attributes,
            dropped_attributes_count,
            flags,
        },
    );
    let status = (text(), prop_oneof![0..3i32, any::<i32>()])
        .prop_map(|(message, code)| Status { message, code });
    (
        (id(16), id(8), text(), id(8), any::<u32>(), text()),
        (
            prop_oneof![0..6i32, any::<i32>()],
            any::<u64>(),
            any::<u64>(),
        ),
        (attributes(), vec(event, 0..2), vec(link, 0..2)),
        (count(), count(), count(), option::of(status)),
    )
        .prop_map(
            |(
                (trace_id, span_id, trace_state, parent_span_id, flags, name),
                (kind, start_time_unix_nano, end_time_unix_nano),
                (attributes, events, links),
                (dropped_attributes_count, dropped_events_count, dropped_links_count, status),
            )| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name,
                kind,
                start_time_unix_nano,
                end_time_unix_nano,
                attributes,
                dropped_attributes_count,
                events,
                dropped_events_count,
                links,
                dropped_links_count,
                status,
            },
        )
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope_spans =
        (option::of(scope()), vec(span(), 0..5), text()).prop_map(|(scope, spans, schema_url)| {
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
    vec(resource_spans, 1..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

/// The message type of field `tag` of the shared message `kind`, or of the signal's own
/// (`S::child`), or `None` if it is not a message field.
fn child<S: Signal>(kind: &str, tag: u32) -> Option<&'static str> {
    Some(match (kind, tag) {
        ("Resource", 1) | ("InstrumentationScope", 3) | ("KeyValueList", 1) => "KeyValue",
        ("Resource", 3) => "EntityRef",
        ("KeyValue", 2) | ("ArrayValue", 1) => "AnyValue",
        ("AnyValue", 5) => "ArrayValue",
        ("AnyValue", 6) => "KeyValueList",
        _ => return S::child(kind, tag),
    })
}

fn unknown_field(rng: &mut Rng, depth: u32) -> Vec<u8> {
    let tag = 17 + (rng.next() % 30) as u32;
    match rng.next() % 6 {
        0 => [key(tag, VARINT), varint(rng.next() >> (rng.next() % 64))].concat(),
        1 => [key(tag, I64), rng.next().to_le_bytes().to_vec()].concat(),
        2 => ld(tag, &rng.next().to_le_bytes()[..(rng.next() % 9) as usize]),
        3 => [key(tag, I32), rng.next().to_le_bytes()[..4].to_vec()].concat(),
        _ if depth < 3 => {
            let mut group = key(tag, SGROUP);
            for _ in 0..rng.next() % 3 {
                group.extend(unknown_field(rng, depth + 1));
            }
            group.extend(key(tag, EGROUP));
            group
        }
        _ => field(tag, VARINT),
    }
}

/// Re-encodes a valid message body of type `kind`, adding what prost's encoder never writes
/// but decoders must take: unknown fields and groups, singular messages given more than once,
/// records whose fields come in two rounds (`S::merges`: the last wins, messages and oneof
/// members merge or replace), and repeated numeric fields unpacked or packed in several runs.
fn rewrite<S: Signal>(mut body: &[u8], kind: &str, rng: &mut Rng, out: &mut Vec<u8>) {
    let mut previous: Option<(u32, Vec<u8>)> = None;
    while !body.is_empty() {
        if rng.one_in(10) {
            out.extend(unknown_field(rng, 0));
        }
        let start = body;
        let (tag, wire_type) = decode_key(&mut body).expect("valid input");
        if wire_type == WireType::LengthDelimited
            && let Some(element) = S::packed(kind, tag)
        {
            let len = decode_varint(&mut body).expect("valid input") as usize;
            let (run, rest) = body.split_at(len);
            body = rest;
            repack(tag, element, run, rng, out);
            continue;
        }
        let Some(child_kind) =
            child::<S>(kind, tag).filter(|_| wire_type == WireType::LengthDelimited)
        else {
            prost::encoding::skip_field(wire_type, tag, &mut body, DecodeContext::default())
                .expect("valid input");
            out.extend(&start[..start.len() - body.len()]);
            continue;
        };
        let len = decode_varint(&mut body).expect("valid input") as usize;
        let (inner, rest) = body.split_at(len);
        body = rest;
        let mut new = Vec::new();
        rewrite::<S>(inner, child_kind, rng, &mut new);
        if S::merges(child_kind) {
            let this = new.clone();
            if let Some((previous_tag, previous)) = &previous
                && *previous_tag == tag
                && rng.one_in(3)
            {
                new = [previous.clone(), new].concat();
            }
            previous = Some((tag, this));
        }
        out.extend(ld(tag, &new));
        if (S::singular(kind, tag) || (kind, tag) == ("KeyValue", 2)) && rng.one_in(4) {
            let mut again = Vec::new();
            rewrite::<S>(inner, child_kind, rng, &mut again);
            out.extend(ld(tag, if rng.one_in(2) { &again } else { &[] }));
        }
    }
    if rng.one_in(10) {
        out.extend(unknown_field(rng, 0));
    }
}

/// Writes the packed run `run` of field `tag` (elements of wire type `element`) as prost
/// would take it: as it was, element by element, or cut into several runs, some of them empty.
fn repack(tag: u32, element: u8, mut run: &[u8], rng: &mut Rng, out: &mut Vec<u8>) {
    let mut elements = Vec::new();
    while !run.is_empty() {
        let before = run;
        match element {
            VARINT => {
                decode_varint(&mut run).expect("valid input");
            }
            I64 => run = &run[8..],
            _ => run = &run[4..],
        }
        elements.push(&before[..before.len() - run.len()]);
    }
    match rng.next() % 3 {
        0 => out.extend(ld(tag, &elements.concat())),
        1 => {
            for e in elements {
                out.extend([key(tag, element), e.to_vec()].concat());
            }
        }
        _ => {
            let cut = (rng.next() as usize) % (elements.len() + 1);
            out.extend(ld(tag, &elements[..cut].concat()));
            if rng.one_in(2) {
                out.extend(ld(tag, &[]));
            }
            for e in &elements[cut..] {
                if rng.one_in(2) {
                    out.extend([key(tag, element), e.to_vec()].concat());
                } else {
                    out.extend(ld(tag, e));
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// Copies a range of the input to another place in it.
    Splice(Index, Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (
            any::<Index>(),
            prop::sample::select(vec![0x00, 0x01, 0x7f, 0x80, 0xff, 0x0b, 0x0c, 0x0f, 0x12])
        )
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), vec(any::<u8>(), 1..4)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1..8usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, b, c)| Mutation::Splice(a, b, c)),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    if buf.is_empty() {
        if let Mutation::Insert(_, bytes) = m {
            buf.extend(bytes);
        }
        return;
    }
    let len = buf.len();
    match m {
        Mutation::Truncate(i) => buf.truncate(i.index(len)),
        Mutation::Flip(i, x) => buf[i.index(len)] ^= x,
        Mutation::Set(i, b) => buf[i.index(len)] = *b,
        Mutation::Insert(i, bytes) => {
            let at = i.index(len + 1);
            buf.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let at = i.index(len);
            buf.drain(at..(at + n).min(len));
        }
        Mutation::Splice(a, b, c) => {
            let (a, b) = (a.index(len), b.index(len));
            let piece = buf[a.min(b)..=a.max(b)].to_vec();
            let at = c.index(len + 1);
            buf.splice(at..at, piece);
        }
    }
}

/// The differential property: `request` encoded by prost, rewritten (two cases in three) with
/// what prost's encoder never writes, then damaged by `mutations`, gets the same verdict from
/// the validator of `S` as from prost after every step.
fn differential<S: Signal>(request: &S::Request, seed: u64, mutations: &[Mutation]) {
    let plain = request.encode_to_vec();
    let mut buf = if seed.is_multiple_of(3) {
        plain
    } else {
        let mut out = Vec::new();
        rewrite::<S>(&plain, "Request", &mut Rng(seed), &mut out);
        out
    };
    if mutations.is_empty() {
        let counts = same_as::<S>(&buf).expect("an unmutated request is valid");
        assert_eq!(S::items(&counts), S::request_items(request));
    }
    for m in mutations {
        apply(&mut buf, m);
        same_as::<S>(&buf).ok();
    }
}

/// The proptest settings of the differential tests.
fn differential_config() -> Config {
    Config {
        cases: 512,
        // No regression files written into the source tree; a failure prints its input.
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(differential_config())]

    #[test]
    fn prop_validate_matches_prost(
        request in request(),
        seed in any::<u64>(),
        mutations in vec(mutation(), 0..3),
    ) {
        differential::<Traces>(&request, seed, &mutations);
    }

    #[test]
    fn prop_random_bytes_match_prost(buf in vec(any::<u8>(), 0..48)) {
        same_as_prost(&buf).ok();
    }
}
