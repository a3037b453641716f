//! The byte path ([`rows_wire`]) held to the decoded path ([`rows`]): for any bytes
//! `wire::validate` accepts, both write the same rows, byte for byte. The oracle decodes with
//! prost and encodes with `rows::encode`. Inputs: generated requests re-encoded the ways a
//! decoder must take and prost's encoder never writes (fields in any order, given twice,
//! singular messages split in two, unknown fields and groups, oneof members overriding each
//! other), randomly damaged requests that still pass `validate`, hand-made corner cases, and a
//! request the OpenTelemetry Python SDK encoded (`testdata/sdk_request.py`).
//!
//! The generators, the re-encoder, the damage and the comparison are shared with the log
//! records' differential test (`rows_logs_wire_tests`).

use std::collections::HashMap;
use std::io::Read as _;

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
use proptest::sample::Index;
use proptest::test_runner::Config;
use prost::Message as _;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, encode_varint};

use super::config::Compress;
use super::sender::{
    CHUNK, LZ4_BLOCK, LZ4_FRAME_HEADER, encode_body, encode_rows, encode_rows_chunked,
};
use super::{rows, rows_wire};
use crate::otlp::ExportTraceServiceRequest;
use crate::otlp::wire;
use crate::pipeline::TraceBatch;
use crate::testing::SplitMix64 as Rng;

/// A request the Python SDK 1.45 encoded: 45 spans under two resources, six scopes.
const SDK_REQUEST: &[u8] = include_bytes!("testdata/sdk_request.binpb");

// ----- Oracle -----------------------------------------------------------------------------------

/// Requires both encoders to write the same rows for `buf`, which `validate` must accept;
/// returns the number of rows.
fn same_rows(buf: &[u8]) -> usize {
    let checked = wire::validate(buf).expect("valid input");
    let request = ExportTraceServiceRequest::decode(buf).expect("prost agrees with validate");
    let mut expected = Vec::new();
    let rows = rows::encode(&request.resource_spans, &mut expected);
    assert_eq!(rows, checked.spans);
    let mut ours = Vec::new();
    assert_eq!(rows_wire::encode([buf], &mut ours), rows);
    assert_same_rows(&ours, &expected, buf);
    rows
}

/// Panics, showing where, unless the byte path's rows `ours` are the decoded path's.
pub(super) fn assert_same_rows(ours: &[u8], expected: &[u8], buf: &[u8]) {
    if ours != expected {
        let at = ours
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(expected.len()));
        let from = at.saturating_sub(24);
        panic!(
            "rows differ at byte {at} of {} (decoded path {}):\n ours    {:?}\n decoded {:?}\ninput {buf:02x?}",
            ours.len(),
            expected.len(),
            String::from_utf8_lossy(&ours[from..(at + 40).min(ours.len())]),
            String::from_utf8_lossy(&expected[from..(at + 40).min(expected.len())]),
        );
    }
}

/// The rows a batch goes out as, through the sender's choice of encoder.
fn batch_rows(batch: &TraceBatch) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let rows = encode_rows(batch, &mut out);
    (out, rows)
}

// ----- Hand-made encodings ----------------------------------------------------------------------

pub(super) fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_varint(v, &mut out);
    out
}

pub(super) fn key(tag: u32, wire_type: u8) -> Vec<u8> {
    varint(u64::from(tag) << 3 | u64::from(wire_type))
}

pub(super) fn ld(tag: u32, body: &[u8]) -> Vec<u8> {
    [key(tag, 2), varint(body.len() as u64), body.to_vec()].concat()
}

pub(super) fn kv(key: &str, value: V) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

pub(super) fn set(value: V) -> AnyValue {
    AnyValue { value: Some(value) }
}

pub(super) fn string(s: &str) -> V {
    V::StringValue(s.to_owned())
}

/// A request of one span whose only attribute is the `KeyValue` body `attribute`, under a
/// resource whose only attribute is the same.
fn with_attribute(attribute: &[u8]) -> Vec<u8> {
    let span = [ld(1, &[7; 16]), ld(2, &[9; 8]), ld(9, attribute)].concat();
    let scope_spans = ld(2, &ld(2, &span));
    let resource = ld(1, attribute);
    ld(1, &[ld(1, &resource), scope_spans].concat())
}

/// The first row's `SpanAttributes` value (the request of [`with_attribute`]).
fn attribute_value(buf: &[u8]) -> String {
    let request = ExportTraceServiceRequest::decode(buf).unwrap();
    rows::value_string(
        request.resource_spans[0].scope_spans[0].spans[0].attributes[0]
            .value
            .as_ref(),
    )
}

// ----- Unit tests -------------------------------------------------------------------------------

#[test]
fn sdk_request_gives_the_same_rows() {
    assert_eq!(same_rows(SDK_REQUEST), 45);
    // As a batch of two received requests, merged the way the batch processor does.
    let request = ExportTraceServiceRequest::decode(SDK_REQUEST).unwrap();
    let mut parts = request.resource_spans.iter().map(|rs| {
        TraceBatch::from_protobuf(Bytes::from(
            ExportTraceServiceRequest {
                resource_spans: vec![rs.clone()],
            }
            .encode_to_vec(),
        ))
        .unwrap()
    });
    let mut batch = parts.next().unwrap();
    for part in parts {
        batch.merge(part);
    }
    assert_eq!(batch.protobuf_parts().map(|p| p.len()), Some(2));
    let mut expected = Vec::new();
    assert_eq!(rows::encode(&request.resource_spans, &mut expected), 45);
    assert_eq!(batch_rows(&batch), (expected, 45));
}

#[test]
fn a_decoded_batch_is_encoded_from_its_structures() {
    let request = ExportTraceServiceRequest::decode(SDK_REQUEST).unwrap();
    let mut expected = Vec::new();
    rows::encode(&request.resource_spans, &mut expected);
    // Cut inside a request: both halves are decoded.
    let mut batch = TraceBatch::from_protobuf(Bytes::from_static(SDK_REQUEST)).unwrap();
    let front = batch.split_front(7);
    assert!(front.protobuf_parts().is_none() && batch.protobuf_parts().is_none());
    let (mut rows, n) = batch_rows(&front);
    let (rest, m) = batch_rows(&batch);
    rows.extend(rest);
    assert_eq!((rows, n + m), (expected, 45));
}

#[test]
fn non_utf8_strings_never_reach_either_encoder() {
    // The byte path copies strings without checking them because nothing unchecked gets
    // there: `validate` (and so `TraceBatch::from_protobuf`) rejects them, as prost does.
    let bad = b"ok \xff\xfe";
    for buf in [
        with_attribute(&[ld(1, b"k"), ld(2, &ld(1, bad))].concat()),
        with_attribute(&[ld(1, bad), ld(2, &ld(1, b"v"))].concat()),
        ld(1, &ld(2, &ld(2, &[ld(1, &[7; 16]), ld(5, bad)].concat()))),
    ] {
        let err = wire::validate(&buf).expect_err("not UTF-8");
        assert_eq!(err.kind(), wire::ErrorKind::InvalidString);
        assert!(ExportTraceServiceRequest::decode(buf.as_slice()).is_err());
        assert!(TraceBatch::from_protobuf(Bytes::from(buf)).is_err());
    }
}

#[test]
fn string_attributes_in_and_out_of_the_usual_layout() {
    // A length field whose varint is padded with zero groups (`0x85 0x00` for 5): prost reads
    // it; RowBinary writes 5 as one byte.
    let padded = |tag: u32, body: &[u8]| {
        let mut len = varint(body.len() as u64);
        len[0] |= 0x80;
        len.push(0);
        [key(tag, 2), len, body.to_vec()].concat()
    };
    let long = "v".repeat(200);
    let longer = "w".repeat(20_000);
    let attributes = [
        // The usual layout, with one-, two- and three-byte lengths, and empty strings.
        [ld(1, b"k"), ld(2, &ld(1, b"v"))].concat(),
        [ld(1, b"k"), ld(2, &ld(1, long.as_bytes()))].concat(),
        [ld(1, long.as_bytes()), ld(2, &ld(1, longer.as_bytes()))].concat(),
        [ld(1, b""), ld(2, &ld(1, b""))].concat(),
        // Padded lengths: of the key, the value, the string.
        [padded(1, b"k"), ld(2, &ld(1, b"v"))].concat(),
        [ld(1, b"k"), padded(2, &ld(1, b"v"))].concat(),
        [ld(1, b"k"), ld(2, &padded(1, b"v"))].concat(),
        // Anything after the string or the value, or before the key; the key given twice.
        [ld(1, b"k"), ld(2, &[ld(1, b"v"), ld(1, b"w")].concat())].concat(),
        [ld(1, b"k"), ld(2, &[ld(1, b"v"), ld(99, b"x")].concat())].concat(),
        [ld(1, b"k"), ld(2, &ld(1, b"v")), ld(2, &ld(1, b"w"))].concat(),
        [ld(1, b"k"), ld(2, &ld(1, b"v")), ld(1, b"j")].concat(),
        [ld(1, b"k"), ld(2, &ld(1, b"v")), key(3, 0), vec![1]].concat(),
        [ld(99, b"x"), ld(1, b"k"), ld(2, &ld(1, b"v"))].concat(),
        [ld(1, b"j"), ld(1, b"k"), ld(2, &ld(1, b"v"))].concat(),
        // Not a string, or no value.
        [ld(1, b"k"), ld(2, &ld(7, b"v"))].concat(),
        [ld(1, b"k"), ld(2, &[])].concat(),
        ld(1, b"k"),
        ld(2, &ld(1, b"v")),
    ];
    for attribute in attributes {
        same_rows(&with_attribute(&attribute));
    }
}

/// `AnyValue`s of every kind, as `rows::value_string` renders them.
pub(super) fn value_cases() -> Vec<(V, String)> {
    let array = |values: Vec<AnyValue>| V::ArrayValue(ArrayValue { values });
    let map = |values: Vec<KeyValue>| V::KvlistValue(KeyValueList { values });
    let cases = [
        (string("plain"), "plain"),
        (V::BoolValue(false), "false"),
        (V::IntValue(i64::MIN), "-9223372036854775808"),
        (V::DoubleValue(1.0), "1"),
        (V::DoubleValue(-0.0), "-0"),
        (V::DoubleValue(1e300), &format!("1{}", "0".repeat(300))),
        (V::DoubleValue(f64::NEG_INFINITY), "-Inf"),
        (V::DoubleValue(f64::NAN), "NaN"),
        (V::BytesValue(vec![0xff, 0, 1, 2]), "/wABAg=="),
        (V::BytesValue(Vec::new()), ""),
        (V::StringValueStrindex(3), ""),
        (array(Vec::new()), "[]"),
        (map(Vec::new()), "{}"),
        (
            // Arrays in maps in arrays, with every kind of leaf, and keys sorted.
            array(vec![
                set(map(vec![
                    kv(
                        "z",
                        array(vec![set(V::IntValue(-1)), AnyValue { value: None }]),
                    ),
                    kv("a\"\n", V::DoubleValue(1.0)),
                    kv("m", V::DoubleValue(f64::INFINITY)),
                    kv("b", V::BytesValue(vec![1, 2, 3])),
                    KeyValue {
                        key: "none".into(),
                        value: None,
                        key_strindex: 0,
                    },
                ])),
                set(string("tab\tand \u{1} and é")),
                set(V::BoolValue(true)),
                set(V::StringValueStrindex(1)),
            ]),
            r#"[{"a\"\n":1.0,"b":"AQID","m":"+Inf","none":null,"z":[-1,null]},"tab\tand \u0001 and é",true,null]"#,
        ),
        (
            // Equal keys: the last value wins.
            map(vec![kv("k", V::IntValue(1)), kv("k", V::IntValue(2))]),
            r#"{"k":2}"#,
        ),
    ];
    cases
        .into_iter()
        .map(|(value, expected)| (value, expected.to_owned()))
        .collect()
}

#[test]
fn attribute_values_render_like_the_decoded_path() {
    for (value, expected) in value_cases() {
        let buf = with_attribute(&kv("key", value.clone()).encode_to_vec());
        assert_eq!(attribute_value(&buf), expected, "{value:?}");
        same_rows(&buf);
    }
}

/// `AnyValue` bodies in encodings prost's encoder never writes (members overriding and
/// merging), with what prost reads them as, rendered.
pub(super) fn oneof_cases() -> Vec<(Vec<u8>, &'static str)> {
    let s = |v: &str| ld(1, v.as_bytes());
    let array = |items: &[&str]| {
        ld(
            5,
            &items
                .iter()
                .map(|i| ld(1, &s(i)))
                .collect::<Vec<_>>()
                .concat(),
        )
    };
    let list = |entries: &[(&str, i64)]| {
        ld(
            6,
            &entries
                .iter()
                .map(|(k, v)| {
                    ld(
                        1,
                        &[s(k), ld(2, &[key(3, 0), varint(*v as u64)].concat())].concat(),
                    )
                })
                .collect::<Vec<_>>()
                .concat(),
        )
    };
    let unknown = [key(20, 0), varint(5)].concat();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // An array following an array merges into it, also across `value` occurrences and
        // past unknown fields.
        (
            [array(&["a"]), unknown.clone(), array(&["b"])].concat(),
            r#"["a","b"]"#,
        ),
        // Another member in between starts a new one.
        ([array(&["a"]), s("x"), array(&["b"])].concat(), r#"["b"]"#),
        (
            [array(&["a"]), key(8, 0), varint(1), array(&["b"])].concat(),
            r#"["b"]"#,
        ),
        ([array(&["a"]), s("x")].concat(), "x"),
        ([s("x"), key(8, 0), varint(1)].concat(), ""),
        (
            [list(&[("x", 1)]), list(&[("x", 2), ("a", 0)])].concat(),
            r#"{"a":0,"x":2}"#,
        ),
        (
            [list(&[("x", 1)]), array(&[]), list(&[("y", 2)])].concat(),
            r#"{"y":2}"#,
        ),
        (
            [key(2, 0), varint(7), key(3, 0), varint(u64::MAX)].concat(),
            "-1",
        ),
        (
            [key(3, 0), varint(1), key(2, 0), varint(7)].concat(),
            "true",
        ),
    ];
    cases
}

#[test]
fn oneof_members_override_and_merge_as_prost_reads_them() {
    let s = |v: &str| ld(1, v.as_bytes());
    for (body, expected) in oneof_cases() {
        // All in one `value`, and split over two (occurrences merge).
        let cut = body.len() / 2;
        let (first, second) = body.split_at(cut);
        let whole = with_attribute(&[s("k"), ld(2, &body)].concat());
        assert_eq!(attribute_value(&whole), expected);
        same_rows(&whole);
        let split = with_attribute(&[ld(2, first), s("k"), ld(2, second)].concat());
        // Unless the cut fell inside a field.
        if wire::validate(&split).is_ok() {
            assert_eq!(attribute_value(&split), expected);
            same_rows(&split);
        }
    }
}

#[test]
fn absent_and_empty_fields() {
    let span = Span {
        trace_id: vec![0; 16],
        span_id: Vec::new(),
        parent_span_id: vec![0; 8],
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![
            // No resource, no scope, no status, zero and empty ids.
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![span.clone()],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
            // Empty resource and scope, an empty status, a service.name that is not a string,
            // an event and a link with nothing set.
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        KeyValue::default(),
                        kv("service.name", V::IntValue(7)),
                        kv("service.name", string("second")),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(InstrumentationScope::default()),
                        spans: vec![Span {
                            status: Some(Status::default()),
                            events: vec![Event::default()],
                            links: vec![Link::default()],
                            attributes: vec![KeyValue::default()],
                            end_time_unix_nano: 5,
                            start_time_unix_nano: u64::MAX,
                            kind: 99,
                            ..span
                        }],
                        schema_url: String::new(),
                    },
                    ScopeSpans::default(),
                ],
                schema_url: String::new(),
            },
            ResourceSpans::default(),
        ],
    };
    assert_eq!(same_rows(&request.encode_to_vec()), 2);
    assert_eq!(same_rows(&[]), 0);
}

/// The SDK request `copies` times over, as one received batch of that many parts.
fn many_sdk_requests(copies: usize) -> TraceBatch {
    let mut batch = TraceBatch::from_protobuf(Bytes::from_static(SDK_REQUEST)).unwrap();
    for _ in 1..copies {
        batch.merge(TraceBatch::from_protobuf(Bytes::from_static(SDK_REQUEST)).unwrap());
    }
    batch
}

#[test]
fn rows_handed_over_in_chunks_are_the_rows() {
    let received = many_sdk_requests(3);
    // Decoded: cut inside a part.
    let mut decoded = many_sdk_requests(3);
    decoded.split_front(1);
    assert!(decoded.protobuf_parts().is_none());
    for batch in [&received, &decoded] {
        let (whole, rows) = batch_rows(batch);
        for chunk in [0, 1, 1000, 64 * 1024, usize::MAX] {
            let mut chunks = Vec::new();
            let mut flushes = 0;
            let mut out = Vec::new();
            let n = encode_rows_chunked(batch, &mut out, chunk, &mut |rows| {
                assert!(rows.len() >= chunk);
                chunks.extend_from_slice(rows);
                flushes += 1;
            });
            assert!(out.len() < chunk || out.is_empty());
            chunks.extend_from_slice(&out);
            assert_eq!((n, &chunks), (rows, &whole), "chunk {chunk}");
            if chunk <= 1 {
                // A flush after every row.
                assert_eq!(flushes, rows);
            }
        }
    }
}

#[test]
fn every_compressed_body_decompresses_to_the_rows() {
    // Inserts of one row, of less than a chunk, and of several chunks (received and decoded).
    let one = TraceBatch::from_protobuf(Bytes::from_static(SDK_REQUEST))
        .unwrap()
        .split_front(1);
    let mut decoded = many_sdk_requests(40);
    decoded.split_front(1);
    assert!(decoded.protobuf_parts().is_none());
    let batches = [
        one,
        many_sdk_requests(1),
        many_sdk_requests(40),
        decoded,
        TraceBatch::new(Vec::new()),
    ];
    for batch in &batches {
        let (rows, n) = batch_rows(batch);
        if batch.item_count() > 1000 {
            assert!(rows.len() > 3 * CHUNK, "{} bytes of rows", rows.len());
        }
        for compress in [
            Compress::None,
            Compress::Lz4,
            Compress::Zstd,
            Compress::Gzip,
        ] {
            let (body, m) = encode_body(batch, compress);
            assert_eq!(m, n);
            assert!(decompress(body, compress) == rows, "{compress:?}, {n} rows");
        }
    }
}

#[test]
fn the_lz4_frame_header_is_the_one_for_independent_blocks_of_1_mib() {
    let info = lz4_flex::frame::FrameInfo::new()
        .block_size(lz4_flex::frame::BlockSize::Max1MB)
        .block_mode(lz4_flex::frame::BlockMode::Independent);
    let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
    std::io::Write::write_all(&mut e, b"rows").unwrap();
    let frame = e.finish().unwrap();
    assert_eq!(frame[..7], LZ4_FRAME_HEADER);
}

/// The blocks of an lz4 body (after its 7-byte header): each one's stored size and whether it
/// is stored uncompressed.
fn lz4_blocks(body: &[u8]) -> Vec<(usize, bool)> {
    let mut blocks = Vec::new();
    let mut at = 7;
    loop {
        let size = u32::from_le_bytes(body[at..at + 4].try_into().unwrap());
        at += 4;
        if size == 0 {
            assert_eq!(at, body.len(), "nothing after the end mark");
            return blocks;
        }
        let (len, raw) = ((size & !(1 << 31)) as usize, size & (1 << 31) != 0);
        blocks.push((len, raw));
        at += len;
    }
}

#[test]
fn lz4_blocks_stay_within_1_mib_and_incompressible_rows_are_stored_as_they_are() {
    // A span whose attribute (and resource attribute) is 2.5 MiB of random letters: rows far
    // over a block, which lz4 cannot shrink.
    let mut rng = Rng(7);
    let letters: Vec<u8> = (0..5 * LZ4_BLOCK / 2)
        .map(|_| b'a' + (rng.next() % 26) as u8)
        .collect();
    let attribute = [ld(1, b"k"), ld(2, &ld(1, &letters))].concat();
    let one_huge = TraceBatch::from_protobuf(Bytes::from(with_attribute(&attribute))).unwrap();
    for batch in [one_huge, many_sdk_requests(100)] {
        let (rows, n) = batch_rows(&batch);
        let (body, m) = encode_body(&batch, Compress::Lz4);
        assert_eq!(m, n);
        assert!(decompress(body.clone(), Compress::Lz4) == rows, "{n} rows");
        let blocks = lz4_blocks(&body);
        assert!(blocks.len() > 1, "{blocks:?}");
        for &(len, raw) in &blocks {
            assert!(len <= LZ4_BLOCK, "{blocks:?}");
            assert!(raw || len < LZ4_BLOCK, "{blocks:?}");
        }
        if n == 1 {
            assert!(blocks.iter().any(|&(_, raw)| raw), "{blocks:?}");
        } else {
            // Compressed blocks, each followed by the next (a block that did not shrink would
            // be stored as it is).
            assert!(blocks.iter().all(|&(_, raw)| !raw), "{blocks:?}");
            assert!(
                body.len() * 8 < rows.len(),
                "{} of {}",
                body.len(),
                rows.len()
            );
        }
    }
}

/// An insert's body, decompressed.
pub(super) fn decompress(body: Vec<u8>, compress: Compress) -> Vec<u8> {
    let mut plain = Vec::new();
    match compress {
        Compress::None => plain = body,
        Compress::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(body.as_slice())
                .read_to_end(&mut plain)
                .unwrap();
        }
        Compress::Zstd => plain = zstd::stream::decode_all(body.as_slice()).unwrap(),
        Compress::Gzip => {
            flate2::read::GzDecoder::new(body.as_slice())
                .read_to_end(&mut plain)
                .unwrap();
        }
    }
    plain
}

// ----- Generated requests -----------------------------------------------------------------------

pub(super) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z./]{1,10}",
        ".{0,4}",
        Just("\"quoted\\\"\n\t\u{1}\u{7f}é😀".to_owned()),
    ]
}

pub(super) fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("service.name".to_owned()),
        Just("a".to_owned()),
        Just("b".to_owned()),
        text()
    ]
}

pub(super) fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(vec![0; len]),
        vec(any::<u8>(), len),
        vec(any::<u8>(), 0..20)
    ]
}

pub(super) fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<f64>(),
        1 => prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            1.0,
            0.1,
            1e300,
            5e-324,
            1e21,
            123456789.125,
        ]),
    ]
}

pub(super) fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        1 => Just(None),
        3 => text().prop_map(|v| Some(V::StringValue(v))),
        1 => any::<bool>().prop_map(|v| Some(V::BoolValue(v))),
        1 => any::<i64>().prop_map(|v| Some(V::IntValue(v))),
        1 => double().prop_map(|v| Some(V::DoubleValue(v))),
        1 => vec(any::<u8>(), 0..7).prop_map(|v| Some(V::BytesValue(v))),
        1 => any::<i32>().prop_map(|v| Some(V::StringValueStrindex(v))),
    ]
    .prop_map(|value| AnyValue { value });
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|values| set(V::ArrayValue(ArrayValue { values }))),
            vec((key_name(), option::of(inner)), 0..4).prop_map(|kvs| {
                set(V::KvlistValue(KeyValueList {
                    values: kvs
                        .into_iter()
                        .map(|(key, value)| KeyValue {
                            key,
                            value,
                            key_strindex: 0,
                        })
                        .collect(),
                }))
            }),
        ]
    })
}

pub(super) fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    vec(
        (key_name(), option::of(any_value())).prop_map(|(key, value)| KeyValue {
            key,
            value,
            key_strindex: 0,
        }),
        0..5,
    )
}

fn span() -> impl Strategy<Value = Span> {
    let event =
        (any::<u64>(), text(), attributes()).prop_map(|(time_unix_nano, name, attributes)| Event {
            time_unix_nano,
            name,
            attributes,
            dropped_attributes_count: 0,
        });
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
    let status = (text(), prop_oneof![0..3i32, any::<i32>()])
        .prop_map(|(message, code)| Status { message, code });
    (
        (id(16), id(8), text(), id(8), any::<u32>(), text()),
        (
            prop_oneof![0..6i32, any::<i32>()],
            prop_oneof![
                any::<u64>(),
                1_763_700_000_000_000_000..1_763_700_001_000_000_000u64
            ],
            prop_oneof![
                any::<u64>(),
                1_763_700_000_000_000_000..1_763_700_001_000_000_000u64
            ],
        ),
        (attributes(), vec(event, 0..3), vec(link, 0..3)),
        option::of(status),
    )
        .prop_map(
            |(
                (trace_id, span_id, trace_state, parent_span_id, flags, name),
                (kind, start_time_unix_nano, end_time_unix_nano),
                (attributes, events, links),
                status,
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
                dropped_attributes_count: 0,
                events,
                dropped_events_count: 0,
                links,
                dropped_links_count: 0,
                status,
            },
        )
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope = (text(), text(), attributes()).prop_map(|(name, version, attributes)| {
        InstrumentationScope {
            name,
            version,
            attributes,
            dropped_attributes_count: 0,
        }
    });
    let scope_spans =
        (option::of(scope), vec(span(), 0..4), text()).prop_map(|(scope, spans, schema_url)| {
            ScopeSpans {
                scope,
                spans,
                schema_url,
            }
        });
    let resource = attributes().prop_map(|attributes| Resource {
        attributes,
        ..Default::default()
    });
    let resource_spans =
        (option::of(resource), vec(scope_spans, 0..3)).prop_map(|(resource, scope_spans)| {
            ResourceSpans {
                resource,
                scope_spans,
                schema_url: String::new(),
            }
        });
    vec(resource_spans, 0..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

// ----- Re-encoding ------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Kind {
    Request,
    ResourceSpans,
    Resource,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
}

/// The message type of field `tag` of `kind`, if it is a message field read here.
fn child(kind: Kind, tag: u32) -> Option<Kind> {
    use Kind::*;
    Some(match (kind, tag) {
        (Request, 1) => ResourceSpans,
        (ResourceSpans, 1) => Resource,
        (ResourceSpans, 2) => ScopeSpans,
        (Resource, 1) => KeyValue,
        (ScopeSpans, 1) => Scope,
        (ScopeSpans, 2) => Span,
        (Scope, 3) | (Span, 9) | (Event, 3) | (Link, 4) | (KeyValueList, 1) => KeyValue,
        (Span, 11) => Event,
        (Span, 13) => Link,
        (Span, 15) => Status,
        (KeyValue, 2) | (ArrayValue, 1) => AnyValue,
        (AnyValue, 5) => ArrayValue,
        (AnyValue, 6) => KeyValueList,
        (LogsRequest, 1) => ResourceLogs,
        (ResourceLogs, 1) => Resource,
        (ResourceLogs, 2) => ScopeLogs,
        (ScopeLogs, 1) => Scope,
        (ScopeLogs, 2) => LogRecord,
        (LogRecord, 5) => AnyValue,
        (LogRecord, 6) => KeyValue,
        _ => return None,
    })
}

/// Singular message fields: given twice, they merge.
fn singular_message(kind: Kind, tag: u32) -> bool {
    matches!(
        (kind, tag),
        (Kind::ResourceSpans | Kind::ResourceLogs, 1)
            | (Kind::ScopeSpans | Kind::ScopeLogs, 1)
            | (Kind::Span, 15)
            | (Kind::LogRecord, 5)
            | (Kind::KeyValue, 2)
            | (Kind::AnyValue, 5 | 6)
    )
}

fn unknown_field(rng: &mut Rng, depth: u32) -> Vec<u8> {
    let tag = 17 + (rng.next() % 30) as u32;
    match rng.next() % 6 {
        0 => [key(tag, 0), varint(rng.next() >> (rng.next() % 64))].concat(),
        1 => [key(tag, 1), rng.next().to_le_bytes().to_vec()].concat(),
        2 => ld(tag, &rng.next().to_le_bytes()[..(rng.next() % 9) as usize]),
        3 => [key(tag, 5), rng.next().to_le_bytes()[..4].to_vec()].concat(),
        _ if depth < 3 => {
            let mut group = key(tag, 3);
            for _ in 0..rng.next() % 3 {
                group.extend(unknown_field(rng, depth + 1));
            }
            group.extend(key(tag, 4));
            group
        }
        _ => [key(tag, 0), varint(1)].concat(),
    }
}

/// A top-level field of a body: its number and its whole encoding.
struct Field {
    tag: u32,
    bytes: Vec<u8>,
}

/// The top-level fields of a valid message body, as they are.
fn top_fields(mut body: &[u8]) -> Vec<Field> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let start = body;
        let (tag, wire_type) = decode_key(&mut body).expect("valid input");
        prost::encoding::skip_field(wire_type, tag, &mut body, DecodeContext::default())
            .expect("valid input");
        out.push(Field {
            tag,
            bytes: start[..start.len() - body.len()].to_vec(),
        });
    }
    out
}

/// The rewriter's state: its random choices, and fields seen so far by message type, to give
/// a later message of the same type a second, different occurrence of a field.
pub(super) struct Rewriter {
    rng: Rng,
    seen: HashMap<Kind, Vec<Field>>,
}

impl Rewriter {
    /// A rewriter making the choices `seed` gives.
    pub(super) fn new(seed: u64) -> Self {
        Self {
            rng: Rng(seed),
            seen: HashMap::new(),
        }
    }
}

/// Splits a valid message body into its top-level fields, rewriting the nested messages.
fn split_fields(mut body: &[u8], kind: Kind, r: &mut Rewriter) -> Vec<Field> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let start = body;
        let (tag, wire_type) = decode_key(&mut body).expect("valid input");
        match child(kind, tag).filter(|_| wire_type == WireType::LengthDelimited) {
            Some(child_kind) => {
                let len = decode_varint(&mut body).expect("valid input") as usize;
                let (inner, rest) = body.split_at(len);
                body = rest;
                let mut new = Vec::new();
                rewrite(inner, child_kind, r, &mut new);
                if singular_message(kind, tag) && r.rng.one_in(4) {
                    // The same message in two occurrences, cut between two of its fields.
                    let fields = top_fields(&new);
                    let cut = (r.rng.next() % (fields.len() as u64 + 1)) as usize;
                    let (a, b) = fields.split_at(cut);
                    let join =
                        |f: &[Field]| f.iter().flat_map(|f| f.bytes.clone()).collect::<Vec<_>>();
                    out.push(Field {
                        tag,
                        bytes: ld(tag, &join(a)),
                    });
                    out.push(Field {
                        tag,
                        bytes: ld(tag, &join(b)),
                    });
                } else {
                    out.push(Field {
                        tag,
                        bytes: ld(tag, &new),
                    });
                }
            }
            None => {
                prost::encoding::skip_field(wire_type, tag, &mut body, DecodeContext::default())
                    .expect("valid input");
                out.push(Field {
                    tag,
                    bytes: start[..start.len() - body.len()].to_vec(),
                });
            }
        }
    }
    out
}

/// Re-encodes a valid message body of type `kind` in ways prost's encoder never writes but
/// a decoder must take: fields moved, given twice (last wins, messages merge), singular
/// messages split in two, unknown fields and groups, `AnyValue` members overridden by a later
/// one. The result is valid; what it decodes to may differ, which does not matter here.
pub(super) fn rewrite(body: &[u8], kind: Kind, r: &mut Rewriter, out: &mut Vec<u8>) {
    let mut fields = split_fields(body, kind, r);
    let seen = r.seen.entry(kind).or_default();
    for f in &fields {
        if seen.len() < 64 {
            seen.push(Field {
                tag: f.tag,
                bytes: f.bytes.clone(),
            });
        }
    }
    let rng = &mut r.rng;
    if !seen.is_empty() && rng.one_in(4) {
        // A field of another message of this type: a second, different occurrence.
        let donor = &seen[(rng.next() % seen.len() as u64) as usize];
        let donor = Field {
            tag: donor.tag,
            bytes: donor.bytes.clone(),
        };
        let to = (rng.next() % (fields.len() as u64 + 1)) as usize;
        fields.insert(to, donor);
    }
    if !fields.is_empty() && rng.one_in(4) {
        // Move one field elsewhere.
        let from = (rng.next() % fields.len() as u64) as usize;
        let f = fields.remove(from);
        let to = (rng.next() % (fields.len() as u64 + 1)) as usize;
        fields.insert(to, f);
    }
    if !fields.is_empty() && rng.one_in(5) {
        // Give one field twice.
        let i = (rng.next() % fields.len() as u64) as usize;
        let again = Field {
            tag: fields[i].tag,
            bytes: fields[i].bytes.clone(),
        };
        let to = (rng.next() % (fields.len() as u64 + 1)) as usize;
        fields.insert(to, again);
    }
    if kind == Kind::AnyValue && rng.one_in(4) {
        // Another member first; the one that follows wins.
        let member = match rng.next() % 5 {
            0 => ld(1, b"earlier"),
            1 => [key(3, 0), varint(42)].concat(),
            2 => [key(8, 0), varint(3)].concat(),
            3 => ld(5, &ld(1, &ld(1, b"earlier"))),
            _ => [key(4, 1), 2.5f64.to_le_bytes().to_vec()].concat(),
        };
        fields.insert(
            0,
            Field {
                tag: 0,
                bytes: member,
            },
        );
    }
    if kind == Kind::KeyValue && rng.one_in(6) {
        // An earlier key, and a key index (ignored outside profiles).
        fields.insert(
            0,
            Field {
                tag: 1,
                bytes: ld(1, b"earlier"),
            },
        );
        fields.push(Field {
            tag: 3,
            bytes: [key(3, 0), varint(rng.next() % 5)].concat(),
        });
    }
    for f in fields {
        if rng.one_in(10) {
            out.extend(unknown_field(rng, 0));
        }
        out.extend(f.bytes);
    }
    if rng.one_in(10) {
        out.extend(unknown_field(rng, 0));
    }
}

#[derive(Clone, Debug)]
pub(super) enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
}

pub(super) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (
            any::<Index>(),
            prop::sample::select(vec![
                0x00, 0x01, 0x7f, 0x80, 0xff, 0x0b, 0x0c, 0x12, 0x2a, 0x61
            ])
        )
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), vec(any::<u8>(), 1..4)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1..8usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

pub(super) fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    let len = buf.len();
    if len == 0 {
        return;
    }
    match m {
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
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 384,
        // No regression files written into the source tree; a failure prints its input.
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn prop_byte_path_writes_the_decoded_paths_rows(
        request in request(),
        seed in any::<u64>(),
        mutations in vec(mutation(), 0..3),
    ) {
        let plain = request.encode_to_vec();
        prop_assert_eq!(same_rows(&plain), crate::pipeline::count_spans(&request.resource_spans));
        let mut buf = Vec::new();
        let mut rewriter = Rewriter::new(seed);
        rewrite(&plain, Kind::Request, &mut rewriter, &mut buf);
        prop_assert!(wire::validate(&buf).is_ok(), "rewritten input is valid");
        same_rows(&buf);
        // Damaged bytes that still pass `validate` (a changed id, time, length or tag) must
        // give the same rows too.
        for m in &mutations {
            apply(&mut buf, m);
            if wire::validate(&buf).is_ok() {
                same_rows(&buf);
            }
        }
    }
}
