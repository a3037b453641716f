//! `apply` held against the decoded path: for any batch bytes and edits, decoding what `apply`
//! writes must give what the reference (`oracle::prepare` + `oracle::apply`) makes of the
//! decoded batch, and a bad edit must fail with the reference's message. The input bytes come either from prost or from a
//! hand encoder that adds what prost never writes (unknown fields, groups, repeated singular
//! fields, split messages), since the oracle decodes whatever bytes it is given.
//!
//! The output is held to prost's decoder, which the collector's validator accepts exactly
//! (`collector/src/otlp/wire/tests.rs` holds the validator to prost), so output that decodes
//! here is output the host passes on.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value as V,
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
use prost::encoding::{WireType, encode_key, encode_varint};

use super::*;
use crate::Value;
use crate::edit::{self, Edit, StatusCode, Target};

/// Deterministic pseudo-random choices (SplitMix64), from one seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

/// The spans of a decoded batch.
fn span_count(data: &[ResourceSpans]) -> usize {
    data.iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

// ----- Oracle ---------------------------------------------------------------------------------

/// Runs both paths on `bytes` and requires the same outcome. Returns `apply`'s answer.
fn check(bytes: &[u8], edits: Vec<Edit>) -> Result<Edited, String> {
    let mut expected = ExportTraceServiceRequest::decode(bytes)
        .expect("test input must be valid")
        .resource_spans;
    let reference = oracle::prepare(&expected, edits.clone()).map(|checked| {
        oracle::apply(&mut expected, checked);
        expected
    });
    let ours = apply(bytes, edits.clone());
    match (&reference, &ours) {
        (Ok(expected), Ok(edited)) => {
            let got = ExportTraceServiceRequest::decode(edited.bytes.as_slice())
                .unwrap_or_else(|e| panic!("output does not decode: {e}; edits {edits:?}"))
                .resource_spans;
            assert_eq!(&got, expected, "edits {edits:?}");
            assert_eq!(edited.spans, span_count(&got));
        }
        (Err(expected), Err(got)) => assert_eq!(got, expected),
        _ => panic!("prepare+apply: {reference:?}, wire apply: {ours:?}; edits {edits:?}"),
    }
    ours
}

fn checked(bytes: &[u8], edits: Vec<Edit>) -> Edited {
    check(bytes, edits).expect("edits apply")
}

// ----- Building batches -----------------------------------------------------------------------

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(V::StringValue(v.to_owned())),
    }
}

fn i(v: i64) -> AnyValue {
    AnyValue {
        value: Some(V::IntValue(v)),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

fn span(name: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.to_owned(),
        kind: 2,
        start_time_unix_nano: 10,
        end_time_unix_nano: 20,
        attributes,
        ..Default::default()
    }
}

fn event(name: &str, attributes: Vec<KeyValue>) -> Event {
    Event {
        time_unix_nano: 15,
        name: name.to_owned(),
        attributes,
        dropped_attributes_count: 0,
    }
}

fn link(attributes: Vec<KeyValue>) -> Link {
    Link {
        trace_id: vec![3; 16],
        span_id: vec![4; 8],
        attributes,
        ..Default::default()
    }
}

fn scope_spans(scope: Option<InstrumentationScope>, spans: Vec<Span>) -> ScopeSpans {
    ScopeSpans {
        scope,
        spans,
        schema_url: String::new(),
    }
}

fn resource_spans(resource: Option<Resource>, scopes: Vec<ScopeSpans>) -> ResourceSpans {
    ResourceSpans {
        resource,
        scope_spans: scopes,
        schema_url: "https://schema".to_owned(),
    }
}

fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn scope(name: &str, attributes: Vec<KeyValue>) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.to_owned(),
        version: "1".to_owned(),
        attributes,
        dropped_attributes_count: 0,
    })
}

/// Three resources: the first with two scopes (one empty) and a duplicate key, the second
/// without resource or scope and with an empty scope, the third with events, links, a status
/// and a `key_strindex`.
fn batch() -> Vec<ResourceSpans> {
    let mut rich = span(
        "rich",
        vec![
            kv("a", i(1)),
            kv("b", s("x")),
            kv("a", i(2)),
            kv("c", s("y")),
        ],
    );
    rich.attributes[1].key_strindex = 7;
    rich.events = vec![
        event("e0", vec![kv("k", s("v")), kv("k", s("w"))]),
        event("e1", vec![]),
    ];
    rich.links = vec![link(vec![kv("l", i(5))]), link(vec![])];
    rich.status = Some(Status {
        message: "old".to_owned(),
        code: 2,
    });
    vec![
        resource_spans(
            resource(vec![
                kv("service.name", s("shop")),
                kv("dup", i(1)),
                kv("dup", i(2)),
            ]),
            vec![
                scope_spans(
                    scope("lib", vec![kv("s", i(1))]),
                    vec![span("s0", vec![kv("a", i(1))]), span("s1", vec![])],
                ),
                scope_spans(scope("empty", vec![]), vec![]),
            ],
        ),
        resource_spans(
            None,
            vec![
                scope_spans(None, vec![span("s2", vec![kv("x", i(0))])]),
                scope_spans(None, vec![]),
            ],
        ),
        resource_spans(
            resource(vec![]),
            vec![scope_spans(
                scope("rich", vec![]),
                vec![rich, span("s4", vec![kv("z", s("q"))])],
            )],
        ),
    ]
}

fn encode(data: &[ResourceSpans]) -> Vec<u8> {
    edit::encode_batch(data)
}

fn set(target: Target, key: &str, value: impl Into<Value>) -> Edit {
    Edit::SetAttribute {
        target,
        key: key.to_owned(),
        value: value.into(),
    }
}

fn remove(target: Target, key: &str) -> Edit {
    Edit::RemoveAttribute {
        target,
        key: key.to_owned(),
    }
}

// ----- A noisy encoder ------------------------------------------------------------------------

/// Decides, from a seed, where to add what prost never writes.
struct Noise(SplitMix64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0.next()
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.0.one_in(n)
    }

    /// Maybe an unknown field of some wire type, groups included.
    fn unknown(&mut self, out: &mut Vec<u8>) {
        match self.next() % 8 {
            0 => {
                encode_key(90, WireType::Varint, out);
                encode_varint(300, out);
            }
            1 => {
                encode_key(91, WireType::SixtyFourBit, out);
                out.extend_from_slice(&[7; 8]);
            }
            2 => field(out, 92, b"unknown"),
            3 => {
                encode_key(93, WireType::ThirtyTwoBit, out);
                out.extend_from_slice(&[9; 4]);
            }
            4 => {
                encode_key(94, WireType::StartGroup, out);
                encode_key(1, WireType::Varint, out);
                encode_varint(1, out);
                encode_key(94, WireType::EndGroup, out);
            }
            _ => {}
        }
    }
}

fn field(out: &mut Vec<u8>, number: u32, body: &[u8]) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

fn varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    encode_key(number, WireType::Varint, out);
    encode_varint(v, out);
}

fn fixed64_field(out: &mut Vec<u8>, number: u32, v: u64) {
    encode_key(number, WireType::SixtyFourBit, out);
    out.extend_from_slice(&v.to_le_bytes());
}

fn noisy_kv(kv: &KeyValue, n: &mut Noise) -> Vec<u8> {
    let mut out = Vec::new();
    let value = |out: &mut Vec<u8>, n: &mut Noise| {
        if let Some(v) = &kv.value {
            if n.one_in(6) {
                // An earlier value that the later one merges into.
                field(out, 2, &i(99).encode_to_vec());
            }
            field(out, 2, &v.encode_to_vec());
        }
    };
    match n.next() % 8 {
        // Earlier keys that the later one overrides, before or after the value.
        0 => {
            field(&mut out, 1, b"decoy");
            field(&mut out, 1, kv.key.as_bytes());
            value(&mut out, n);
        }
        1 => {
            field(&mut out, 1, b"decoy");
            value(&mut out, n);
            field(&mut out, 1, kv.key.as_bytes());
        }
        _ => {
            field(&mut out, 1, kv.key.as_bytes());
            value(&mut out, n);
        }
    }
    n.unknown(&mut out);
    if kv.key_strindex != 0 {
        varint_field(&mut out, 3, kv.key_strindex as u64);
    }
    out
}

fn noisy_attributes(out: &mut Vec<u8>, number: u32, attributes: &[KeyValue], n: &mut Noise) {
    for kv in attributes {
        field(out, number, &noisy_kv(kv, n));
        n.unknown(out);
    }
}

/// A singular message field, sometimes as two occurrences that prost merges.
fn split(out: &mut Vec<u8>, number: u32, parts: (Vec<u8>, Vec<u8>), n: &mut Noise) {
    if n.one_in(2) {
        field(out, number, &parts.0);
        n.unknown(out);
        field(out, number, &parts.1);
    } else {
        field(out, number, &[parts.0, parts.1].concat());
    }
}

fn noisy_resource(r: &Resource, n: &mut Noise) -> (Vec<u8>, Vec<u8>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let half = r.attributes.len() / 2;
    noisy_attributes(&mut a, 1, &r.attributes[..half], n);
    n.unknown(&mut a);
    noisy_attributes(&mut b, 1, &r.attributes[half..], n);
    if r.dropped_attributes_count != 0 {
        varint_field(&mut b, 2, r.dropped_attributes_count.into());
    }
    (a, b)
}

fn noisy_scope(s: &InstrumentationScope, n: &mut Noise) -> (Vec<u8>, Vec<u8>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    field(&mut a, 1, s.name.as_bytes());
    let half = s.attributes.len() / 2;
    noisy_attributes(&mut a, 3, &s.attributes[..half], n);
    field(&mut b, 2, s.version.as_bytes());
    n.unknown(&mut b);
    noisy_attributes(&mut b, 3, &s.attributes[half..], n);
    (a, b)
}

fn noisy_event(e: &Event, n: &mut Noise) -> Vec<u8> {
    let mut out = Vec::new();
    fixed64_field(&mut out, 1, e.time_unix_nano);
    if n.one_in(4) {
        field(&mut out, 2, b"decoy");
    }
    field(&mut out, 2, e.name.as_bytes());
    noisy_attributes(&mut out, 3, &e.attributes, n);
    n.unknown(&mut out);
    out
}

fn noisy_link(l: &Link, n: &mut Noise) -> Vec<u8> {
    let mut out = Vec::new();
    field(&mut out, 1, &l.trace_id);
    field(&mut out, 2, &l.span_id);
    noisy_attributes(&mut out, 4, &l.attributes, n);
    n.unknown(&mut out);
    out
}

fn noisy_span(sp: &Span, n: &mut Noise) -> Vec<u8> {
    let mut out = Vec::new();
    field(&mut out, 1, &sp.trace_id);
    field(&mut out, 2, &sp.span_id);
    if n.one_in(3) {
        // A name that the later one overrides.
        field(&mut out, 5, b"decoy");
    }
    n.unknown(&mut out);
    field(&mut out, 5, sp.name.as_bytes());
    varint_field(&mut out, 6, sp.kind as u64);
    fixed64_field(&mut out, 7, sp.start_time_unix_nano);
    noisy_attributes(&mut out, 9, &sp.attributes, n);
    // Events and links interleave, and sometimes links come first.
    let links_first = n.one_in(2);
    let (mut events, mut links) = (sp.events.iter(), sp.links.iter());
    loop {
        let (e, l) = (events.next(), links.next());
        if e.is_none() && l.is_none() {
            break;
        }
        let e = e.map(|e| noisy_event(e, n));
        let l = l.map(|l| noisy_link(l, n));
        if links_first {
            l.iter().for_each(|l| field(&mut out, 13, l));
            e.iter().for_each(|e| field(&mut out, 11, e));
        } else {
            e.iter().for_each(|e| field(&mut out, 11, e));
            l.iter().for_each(|l| field(&mut out, 13, l));
        }
    }
    if let Some(st) = &sp.status {
        let mut a = Vec::new();
        field(&mut a, 2, st.message.as_bytes());
        let mut b = Vec::new();
        varint_field(&mut b, 3, st.code as u64);
        split(&mut out, 15, (a, b), n);
    }
    n.unknown(&mut out);
    fixed64_field(&mut out, 8, sp.end_time_unix_nano);
    out
}

/// `data` encoded with noise; decoding it gives `data` back only up to the decoys, which is
/// fine: the oracle decodes these bytes, not `data`.
fn noisy(data: &[ResourceSpans], seed: u64) -> Vec<u8> {
    let n = &mut Noise(SplitMix64(seed));
    let mut out = Vec::new();
    for rs in data {
        let mut body = Vec::new();
        let resource = rs.resource.as_ref().map(|r| noisy_resource(r, n));
        // The two halves of a split resource go on either side of the scopes.
        let mut tail = None;
        if let Some((a, b)) = resource {
            if n.one_in(2) {
                field(&mut body, 1, &a);
                tail = Some(b);
            } else {
                split(&mut body, 1, (a, b), n);
            }
        }
        for ss in &rs.scope_spans {
            let mut sb = Vec::new();
            n.unknown(&mut sb);
            for sp in &ss.spans {
                field(&mut sb, 2, &noisy_span(sp, n));
            }
            if let Some(scope) = &ss.scope {
                split(&mut sb, 1, noisy_scope(scope, n), n);
            }
            field(&mut body, 2, &sb);
            n.unknown(&mut body);
        }
        if let Some(b) = tail {
            field(&mut body, 1, &b);
        }
        field(&mut body, 3, rs.schema_url.as_bytes());
        field(&mut out, 1, &body);
        n.unknown(&mut out);
    }
    out
}

// ----- Examples -------------------------------------------------------------------------------

#[test]
fn every_edit_kind_matches_the_decoded_path() {
    let edits = vec![
        set(Target::Resource(0), "service.name", "cart"),
        set(Target::Resource(2), "new", 1i64),
        set(Target::Scope(0), "s", true),
        set(Target::Scope(3), "scope.new", 2.5f64),
        set(Target::Span(3), "b", "replaced, keeps key_strindex"),
        set(Target::Span(3), "zz", Value::Bytes(vec![0, 1, 2])),
        remove(Target::Span(3), "a"),
        set(Target::Event(3, 0), "k", "first k only"),
        set(Target::Event(3, 1), "new", 3i64),
        set(Target::Link(3, 0), "l", 6i64),
        set(Target::Link(3, 1), "l", 7i64),
        remove(Target::Span(0), "a"),
        Edit::SetSpanName {
            span: 1,
            name: "renamed".to_owned(),
        },
        Edit::SetEventName {
            span: 3,
            event: 1,
            name: "e1 renamed".to_owned(),
        },
        Edit::SetStatus {
            span: 3,
            code: StatusCode::Ok,
            message: String::new(),
        },
        Edit::SetStatus {
            span: 2,
            code: StatusCode::Error,
            message: "boom".to_owned(),
        },
        set(
            Target::Span(4),
            "array",
            Value::Any(AnyValue {
                value: Some(V::ArrayValue(ArrayValue {
                    values: vec![i(1), s("two")],
                })),
            }),
        ),
    ];
    let bytes = encode(&batch());
    let edited = checked(&bytes, edits.clone());
    assert_eq!(edited.spans, 5);
    for seed in 0..50 {
        checked(&noisy(&batch(), seed), edits.clone());
    }
}

#[test]
fn repeated_ops_on_one_key_apply_in_order() {
    let t = Target::Span(3);
    let cases = vec![
        // set, remove, set: the key ends up appended, without its key_strindex.
        vec![set(t, "b", 1i64), remove(t, "b"), set(t, "b", 2i64)],
        // Remove takes every duplicate, then set appends.
        vec![remove(t, "a"), set(t, "a", 3i64)],
        // Set touches only the first duplicate, twice.
        vec![set(t, "a", 4i64), set(t, "a", 5i64)],
        // A new key set twice, removed, set again.
        vec![
            set(t, "n", 1i64),
            set(t, "n", 2i64),
            remove(t, "n"),
            set(t, "n", 3i64),
        ],
        vec![
            remove(t, "missing"),
            remove(t, "c"),
            remove(t, "b"),
            remove(t, "a"),
        ],
        vec![set(t, "", "empty key")],
        vec![
            set(Target::Resource(0), "dup", 9i64),
            remove(Target::Resource(0), "service.name"),
            set(Target::Resource(0), "service.name", "again"),
            remove(Target::Resource(0), "dup"),
        ],
    ];
    for edits in cases {
        checked(&encode(&batch()), edits.clone());
        for seed in 0..30 {
            checked(&noisy(&batch(), seed), edits.clone());
        }
    }
}

#[test]
fn a_set_value_replaces_the_old_one_instead_of_merging_into_it() {
    let empty = AnyValue { value: None };
    let array = |values| AnyValue {
        value: Some(V::ArrayValue(ArrayValue { values })),
    };
    let mut data = batch();
    data[2].scope_spans[0].spans[1].attributes = vec![kv("arr", array(vec![i(1), i(2)]))];
    let bytes = encode(&data);
    for value in [empty, array(vec![i(3)])] {
        for t in [Target::Span(3), Target::Span(4), Target::Resource(0)] {
            for key in ["a", "b", "arr", "service.name", "new"] {
                checked(&bytes, vec![set(t, key, Value::Any(value.clone()))]);
            }
        }
    }
}

#[test]
fn absent_resource_and_scope_are_created_even_by_a_remove() {
    for edits in [
        vec![remove(Target::Resource(1), "nothing")],
        vec![remove(Target::Scope(2), "nothing")],
        vec![set(Target::Resource(1), "r", 1i64)],
        vec![
            set(Target::Scope(3), "s", 1i64),
            remove(Target::Scope(2), "x"),
        ],
    ] {
        let edited = checked(&encode(&batch()), edits);
        assert_eq!(edited.spans, 5);
    }
}

#[test]
fn drops_prune_every_empty_scope_and_resource() {
    let data = batch();
    let bytes = encode(&data);
    // Dropping s2 empties resource 1; the empty scopes of resources 0 and 1 go too.
    let edited = checked(&bytes, vec![Edit::DropSpan { span: 2 }]);
    assert_eq!(edited.spans, 4);
    let got = ExportTraceServiceRequest::decode(edited.bytes.as_slice())
        .unwrap()
        .resource_spans;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].scope_spans.len(), 1);

    // Edits on a dropped span are moot; dropping twice counts once.
    checked(
        &bytes,
        vec![
            set(Target::Span(0), "a", 1i64),
            Edit::DropSpan { span: 0 },
            Edit::DropSpan { span: 0 },
            Edit::SetSpanName {
                span: 0,
                name: "gone".to_owned(),
            },
        ],
    );
    // Everything dropped leaves an empty request.
    let all = (0..5)
        .map(|span| Edit::DropSpan { span })
        .collect::<Vec<_>>();
    let edited = checked(&bytes, all.clone());
    assert_eq!(edited.spans, 0);
    for seed in 0..30 {
        checked(&noisy(&data, seed), all.clone());
        checked(&noisy(&data, seed), vec![Edit::DropSpan { span: 4 }]);
    }

    // A resource without scopes at all goes as well, even far from the drop.
    let mut data = batch();
    data.push(resource_spans(resource(vec![]), vec![]));
    checked(&encode(&data), vec![Edit::DropSpan { span: 4 }]);
}

#[test]
fn without_drops_empty_scopes_and_resources_stay() {
    let mut data = batch();
    data.push(resource_spans(resource(vec![]), vec![]));
    let bytes = encode(&data);
    let edited = checked(&bytes, vec![set(Target::Span(0), "a", 1i64)]);
    let got = ExportTraceServiceRequest::decode(edited.bytes.as_slice())
        .unwrap()
        .resource_spans;
    assert_eq!(got.len(), 4);
}

#[test]
fn untouched_resources_are_copied_byte_for_byte() {
    let bytes = encode(&batch());
    let edited = checked(&bytes, vec![set(Target::Span(4), "a", 1i64)]);
    let before: Vec<&[u8]> = wire::raw_fields(&bytes).map(|f| f.bytes).collect();
    let after: Vec<&[u8]> = wire::raw_fields(&edited.bytes).map(|f| f.bytes).collect();
    assert_eq!(before[..2], after[..2]);
    assert_ne!(before[2], after[2]);

    let none = checked(&bytes, Vec::new());
    assert_eq!(none.bytes, bytes);
}

#[test]
fn length_prefixes_follow_bodies_across_varint_sizes() {
    // Bodies just under and over 128 and 16384 bytes, grown and shrunk by an edit.
    for size in [100usize, 120, 126, 127, 128, 200, 16_300, 16_380, 16_400] {
        let data = vec![resource_spans(
            resource(vec![kv("pad", s(&"r".repeat(size)))]),
            vec![scope_spans(
                scope("lib", vec![]),
                vec![span("s", vec![kv("pad", s(&"x".repeat(size)))])],
            )],
        )];
        let bytes = encode(&data);
        for grow in [0usize, 1, 2, 10, 200, 20_000] {
            let big = "y".repeat(size + grow);
            checked(&bytes, vec![set(Target::Span(0), "pad", big.as_str())]);
            checked(&bytes, vec![set(Target::Span(0), "more", big.as_str())]);
            checked(&bytes, vec![set(Target::Resource(0), "pad", big.as_str())]);
            checked(&bytes, vec![set(Target::Scope(0), "more", big.as_str())]);
        }
        checked(&bytes, vec![remove(Target::Span(0), "pad")]);
        checked(&bytes, vec![remove(Target::Resource(0), "pad")]);
        checked(&bytes, vec![set(Target::Span(0), "pad", "")]);
    }
}

#[test]
fn out_of_range_indices_fail_like_prepare_and_apply_nothing() {
    let bytes = encode(&batch());
    let bad = [
        set(Target::Resource(3), "k", 1i64),
        remove(Target::Scope(5), "k"),
        set(Target::Span(5), "k", 1i64),
        set(Target::Event(3, 2), "k", 1i64),
        set(Target::Event(0, 0), "k", 1i64),
        remove(Target::Link(3, 2), "k"),
        set(Target::Link(9, 0), "k", 1i64),
        Edit::SetSpanName {
            span: 5,
            name: String::new(),
        },
        Edit::SetEventName {
            span: 4,
            event: 0,
            name: String::new(),
        },
        Edit::SetEventName {
            span: 7,
            event: 0,
            name: String::new(),
        },
        Edit::SetStatus {
            span: u32::MAX,
            code: StatusCode::Unset,
            message: String::new(),
        },
        Edit::DropSpan { span: 5 },
    ];
    for edit in bad {
        let good = set(Target::Span(0), "a", 1i64);
        let err = check(&bytes, vec![good.clone(), edit.clone(), good.clone()])
            .expect_err("out of range");
        assert!(err.contains("out of range"), "{err}");
        // The first bad edit is the one reported.
        let first = check(&bytes, vec![edit.clone(), Edit::DropSpan { span: 99 }]).unwrap_err();
        assert_eq!(first, err);
    }
    let empty = Vec::new();
    check(&empty, vec![set(Target::Resource(0), "k", 1i64)]).unwrap_err();
    check(&empty, vec![Edit::DropSpan { span: 0 }]).unwrap_err();
    assert_eq!(checked(&empty, Vec::new()).bytes, empty);
}

// ----- Random batches and edits ---------------------------------------------------------------

fn any_value() -> impl Strategy<Value = AnyValue> {
    prop_oneof![
        any::<i64>().prop_map(i),
        "[a-z]{0,4}".prop_map(|v| s(&v)),
        any::<bool>().prop_map(|b| AnyValue {
            value: Some(V::BoolValue(b))
        }),
        (-1000i32..1000).prop_map(|d| AnyValue {
            value: Some(V::DoubleValue(f64::from(d) / 8.0))
        }),
        vec(any::<i64>().prop_map(i), 0..3).prop_map(|values| AnyValue {
            value: Some(V::ArrayValue(ArrayValue { values }))
        }),
        Just(AnyValue { value: None }),
    ]
}

const KEYS: &[&str] = &["a", "b", "c", ""];

fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(KEYS).prop_map(str::to_owned)
}

fn key_value() -> impl Strategy<Value = KeyValue> {
    (key(), option::weighted(0.9, any_value()), 0i32..3).prop_map(|(key, value, strindex)| {
        KeyValue {
            key,
            value,
            key_strindex: strindex,
        }
    })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    vec(key_value(), 0..4)
}

fn random_span() -> impl Strategy<Value = Span> {
    (
        "[a-z]{0,3}",
        attributes(),
        vec(("[a-z]{0,2}", attributes()), 0..3),
        vec(attributes(), 0..3),
        option::of((0i32..3, "[a-z]{0,2}")),
    )
        .prop_map(|(name, attributes, events, links, status)| Span {
            events: events
                .into_iter()
                .map(|(name, attributes)| event(&name, attributes))
                .collect(),
            links: links.into_iter().map(link).collect(),
            status: status.map(|(code, message)| Status { code, message }),
            ..span(&name, attributes)
        })
}

fn random_batch() -> impl Strategy<Value = Vec<ResourceSpans>> {
    let scope = option::of(attributes().prop_map(|a| scope("lib", a).unwrap_or_default()));
    let scopes = vec(
        (scope, vec(random_span(), 0..5)).prop_map(|(sc, spans)| scope_spans(sc, spans)),
        0..4,
    );
    let resource = option::of(attributes().prop_map(|a| resource(a).unwrap_or_default()));
    vec(
        (resource, scopes).prop_map(|(r, scopes)| resource_spans(r, scopes)),
        1..5,
    )
}

/// An edit with raw indices, mapped onto the batch once its counts are known.
#[derive(Debug, Clone)]
enum Seed {
    Set(u8, [u32; 2], String, AnyValue),
    Remove(u8, [u32; 2], String),
    SpanName(u32, String),
    EventName([u32; 2], String),
    Status(u32, u8, String),
    Drop(u32),
}

fn seed() -> impl Strategy<Value = Seed> {
    let idx = || [any::<u32>(), any::<u32>()];
    prop_oneof![
        4 => (0u8..5, idx(), key(), any_value()).prop_map(|(t, i, k, v)| Seed::Set(t, i, k, v)),
        3 => (0u8..5, idx(), key()).prop_map(|(t, i, k)| Seed::Remove(t, i, k)),
        1 => (any::<u32>(), "[a-z]{0,3}").prop_map(|(i, n)| Seed::SpanName(i, n)),
        1 => (idx(), "[a-z]{0,3}").prop_map(|(i, n)| Seed::EventName(i, n)),
        1 => (any::<u32>(), 0u8..3, "[a-z]{0,3}").prop_map(|(i, c, m)| Seed::Status(i, c, m)),
        1 => any::<u32>().prop_map(Seed::Drop),
    ]
}

/// Mostly in range; one raw value in 150 lands just past the end.
fn pick(raw: u32, count: usize) -> u32 {
    if raw.is_multiple_of(150) || count == 0 {
        count as u32 + raw % 2
    } else {
        raw % count as u32
    }
}

fn edits(data: &[ResourceSpans], seeds: Vec<Seed>) -> Vec<Edit> {
    let scopes: Vec<&ScopeSpans> = data.iter().flat_map(|r| &r.scope_spans).collect();
    let spans: Vec<&Span> = scopes.iter().flat_map(|s| &s.spans).collect();
    let span = |raw: u32| pick(raw, spans.len());
    let items = |sp: &Span, links: bool| {
        if links {
            sp.links.len()
        } else {
            sp.events.len()
        }
    };
    let item = |raw: [u32; 2], links: bool| {
        // A span that has events (links), so that few such edits fail.
        let with: Vec<usize> = (0..spans.len())
            .filter(|&p| items(spans[p], links) > 0)
            .collect();
        let p = match with.len() {
            0 => span(raw[0]),
            n => with[raw[0] as usize % n] as u32,
        };
        let count = spans.get(p as usize).map_or(0, |sp| items(sp, links));
        (p, pick(raw[1], count))
    };
    let target = |t: u8, raw: [u32; 2]| match t {
        0 => Target::Resource(pick(raw[0], data.len())),
        1 => Target::Scope(pick(raw[0], scopes.len())),
        2 => Target::Span(span(raw[0])),
        3 => {
            let (p, e) = item(raw, false);
            Target::Event(p, e)
        }
        _ => {
            let (p, l) = item(raw, true);
            Target::Link(p, l)
        }
    };
    seeds
        .into_iter()
        .map(|seed| match seed {
            Seed::Set(t, raw, key, value) => Edit::SetAttribute {
                target: target(t, raw),
                key,
                value: Value::Any(value),
            },
            Seed::Remove(t, raw, key) => Edit::RemoveAttribute {
                target: target(t, raw),
                key,
            },
            Seed::SpanName(raw, name) => Edit::SetSpanName {
                span: span(raw),
                name,
            },
            Seed::EventName(raw, name) => {
                let (span, event) = item(raw, false);
                Edit::SetEventName { span, event, name }
            }
            Seed::Status(raw, code, message) => Edit::SetStatus {
                span: span(raw),
                code: [StatusCode::Unset, StatusCode::Ok, StatusCode::Error][code as usize],
                message,
            },
            Seed::Drop(raw) => Edit::DropSpan { span: span(raw) },
        })
        .collect()
}

proptest! {
    #![proptest_config(Config {
        cases: 1000,
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn random_batches_and_edits_match_the_decoded_path(
        data in random_batch(),
        seeds in vec(seed(), 0..10),
        noise in option::of(any::<u64>()),
    ) {
        let bytes = match noise {
            Some(seed) => noisy(&data, seed),
            None => encode(&data),
        };
        // Edits index the batch as the bytes decode, which is what the plugin sees.
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap().resource_spans;
        let edits = edits(&decoded, seeds);
        let _ = check(&bytes, edits);
    }
}

// ----- Long attribute lists -------------------------------------------------------------------

/// Keys from a set large enough that lists pass `SCAN_AT_MOST` and small enough that keys
/// repeat (in the original lists too, where every attribute with a key is removed at once).
fn long_key() -> impl Strategy<Value = String> {
    (0u8..40).prop_map(|k| format!("k{k}"))
}

fn long_attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    vec(
        (long_key(), any_value()).prop_map(|(k, v)| kv(&k, v)),
        0..3 * SCAN_AT_MOST,
    )
}

proptest! {
    #![proptest_config(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    })]

    /// Lists short and long, ops that cross `SCAN_AT_MOST` on the way (sets that append,
    /// removes, sets again after a remove), on every kind of list: the indexed path gives what
    /// `attributes::set` / `attributes::remove` give on the decoded batch.
    #[test]
    fn long_attribute_lists_match_the_decoded_path(
        lists in vec(long_attributes(), 5),
        ops in vec((0u8..5, any::<bool>(), long_key(), any_value()), 0..6 * SCAN_AT_MOST),
        noise in option::of(any::<u64>()),
    ) {
        let [r, sc, sp, ev, li]: [Vec<KeyValue>; 5] = lists.try_into().unwrap();
        let data = vec![resource_spans(
            resource(r),
            vec![scope_spans(
                scope("lib", sc),
                vec![Span {
                    events: vec![event("e", ev)],
                    links: vec![link(li)],
                    ..span("s", sp)
                }],
            )],
        )];
        let bytes = match noise {
            Some(seed) => noisy(&data, seed),
            None => encode(&data),
        };
        let edits = ops
            .into_iter()
            .map(|(t, is_set, key, value)| {
                let target = [
                    Target::Resource(0),
                    Target::Scope(0),
                    Target::Span(0),
                    Target::Event(0, 0),
                    Target::Link(0, 0),
                ][t as usize];
                if is_set {
                    Edit::SetAttribute { target, key, value: Value::Any(value) }
                } else {
                    Edit::RemoveAttribute { target, key }
                }
            })
            .collect();
        checked(&bytes, edits);
    }
}

#[test]
fn distinct_keys_on_one_span_cost_n_log_n() {
    // 200,000 distinct keys on one span, then every other one removed: the old list search
    // made this quadratic (minutes); indexed, it is well under a second even unoptimised.
    let bytes = encode(&[resource_spans(
        resource(vec![]),
        vec![scope_spans(
            None,
            vec![span("s", vec![kv("keep", s("me"))])],
        )],
    )]);
    let n = 200_000;
    let mut edits: Vec<Edit> = (0..n)
        .map(|i| set(Target::Span(0), &format!("k{i}"), i as i64))
        .collect();
    edits.extend(
        (0..n)
            .step_by(2)
            .map(|i| remove(Target::Span(0), &format!("k{i}"))),
    );
    let started = std::time::Instant::now();
    let edited = apply(&bytes, edits).expect("applies");
    let took = started.elapsed();
    let got = ExportTraceServiceRequest::decode(edited.bytes.as_slice()).unwrap();
    let attributes = &got.resource_spans[0].scope_spans[0].spans[0].attributes;
    assert_eq!(attributes.len(), 1 + n / 2);
    assert_eq!(attributes[1], kv("k1", i(1)));
    assert_eq!(
        attributes[n / 2],
        kv(&format!("k{}", n - 1), i(n as i64 - 1))
    );
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
}
