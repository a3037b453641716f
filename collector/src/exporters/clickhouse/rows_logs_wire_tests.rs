//! The log records' byte path ([`rows_logs_wire`]) held to their decoded path
//! ([`rows_logs`]): for any bytes `wire::validate_logs` accepts, both write the same rows, byte
//! for byte. The oracle decodes with prost and encodes with `rows_logs::encode`. Inputs, as for
//! spans (whose generators, re-encoder and damage this shares): generated requests with bodies
//! of every `AnyValue` kind, re-encoded the ways a decoder must take and prost's encoder never
//! writes, randomly damaged requests that still pass `validate_logs`, hand-made corner cases,
//! and a request the OpenTelemetry Python SDK encoded (`testdata/sdk_logs_request.py`).

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value as V,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::Config;
use prost::Message as _;

use super::config::Compress;
use super::rows_wire_tests::{
    Kind, Rewriter, any_value, apply, assert_same_rows, attributes, decompress, id, key, kv, ld,
    mutation, oneof_cases, rewrite, string, text, value_cases, varint,
};
use super::sender::{CHUNK, encode_body, encode_rows, encode_rows_chunked};
use super::{rows, rows_logs, rows_logs_wire};
use crate::otlp::wire;
use crate::pipeline::{Batch, Logs};

/// A request the Python SDK 1.45 encoded: 69 log records under two resources, three scopes
/// each.
const SDK_LOGS_REQUEST: &[u8] = include_bytes!("testdata/sdk_logs_request.binpb");

type LogBatch = Batch<Logs>;

// ----- Oracle -----------------------------------------------------------------------------------

/// Requires both encoders to write the same rows for `buf`, which `validate_logs` must accept;
/// returns the number of rows.
fn same_rows(buf: &[u8]) -> usize {
    let checked = wire::validate_logs(buf).expect("valid input");
    let request = ExportLogsServiceRequest::decode(buf).expect("prost agrees with validate_logs");
    let mut expected = Vec::new();
    let rows = rows_logs::encode(&request.resource_logs, &mut expected);
    assert_eq!(rows, checked.log_records);
    let mut ours = Vec::new();
    assert_eq!(rows_logs_wire::encode([buf], &mut ours), rows);
    assert_same_rows(&ours, &expected, buf);
    rows
}

/// The rows a batch goes out as, through the sender's choice of encoder.
fn batch_rows(batch: &LogBatch) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let rows = encode_rows(batch, &mut out);
    (out, rows)
}

fn sdk_request() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest::decode(SDK_LOGS_REQUEST).unwrap()
}

/// A request of one record whose body is given by `body_fields` (`LogRecord.body` fields,
/// encoded), under a resource and a scope.
fn with_body(body_fields: &[u8]) -> Vec<u8> {
    let record = [
        ld(9, &[7; 16]),
        ld(10, &[9; 8]),
        [key(1, 1), 5u64.to_le_bytes().to_vec()].concat(),
        body_fields.to_vec(),
    ]
    .concat();
    let scope_logs = ld(2, &[ld(1, &ld(1, b"scope")), ld(2, &record)].concat());
    let resource = ld(1, &kv("service.name", string("svc")).encode_to_vec());
    ld(1, &[ld(1, &resource), scope_logs].concat())
}

/// The first record's `Body` column (the request of [`with_body`]).
fn body_value(buf: &[u8]) -> String {
    let request = ExportLogsServiceRequest::decode(buf).unwrap();
    rows::value_string(
        request.resource_logs[0].scope_logs[0].log_records[0]
            .body
            .as_ref(),
    )
}

// ----- Unit tests -------------------------------------------------------------------------------

#[test]
fn the_sdk_request_holds_what_the_tests_need() {
    let request = sdk_request();
    let records: Vec<&LogRecord> = request
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .collect();
    let body = |f: fn(&V) -> bool| {
        records.iter().any(|r| {
            r.body
                .as_ref()
                .and_then(|b| b.value.as_ref())
                .is_some_and(f)
        })
    };
    assert!(body(|v| matches!(v, V::StringValue(_))));
    assert!(body(|v| matches!(v, V::IntValue(_))));
    assert!(body(|v| matches!(v, V::DoubleValue(d) if d.is_nan())));
    assert!(body(|v| matches!(v, V::BoolValue(_))));
    assert!(body(|v| matches!(v, V::BytesValue(_))));
    assert!(body(|v| matches!(v, V::ArrayValue(_))));
    assert!(body(|v| matches!(v, V::KvlistValue(_))));
    assert!(
        records
            .iter()
            .any(|r| r.body.as_ref().is_none_or(|b| b.value.is_none()))
    );
    assert!(
        records
            .iter()
            .any(|r| r.time_unix_nano == 0 && r.observed_time_unix_nano != 0)
    );
    assert!(records.iter().any(|r| r.trace_id.is_empty()));
    assert!(
        records
            .iter()
            .any(|r| r.trace_id.len() == 16 && r.flags & 1 == 1)
    );
    assert!(records.iter().any(|r| !r.event_name.is_empty()));
}

#[test]
fn sdk_request_gives_the_same_rows() {
    assert_eq!(same_rows(SDK_LOGS_REQUEST), 69);
    // As a batch of two received requests, merged the way the batch processor does.
    let request = sdk_request();
    let mut parts = request.resource_logs.iter().map(|rl| {
        LogBatch::from_protobuf(Bytes::from(
            ExportLogsServiceRequest {
                resource_logs: vec![rl.clone()],
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
    assert_eq!(rows_logs::encode(&request.resource_logs, &mut expected), 69);
    assert_eq!(batch_rows(&batch), (expected, 69));
}

#[test]
fn a_decoded_batch_is_encoded_from_its_structures() {
    let request = sdk_request();
    let mut expected = Vec::new();
    rows_logs::encode(&request.resource_logs, &mut expected);
    // Cut inside a request: both halves are decoded.
    let mut batch = LogBatch::from_protobuf(Bytes::from_static(SDK_LOGS_REQUEST)).unwrap();
    let front = batch.split_front(7);
    assert!(front.protobuf_parts().is_none() && batch.protobuf_parts().is_none());
    let (mut rows, n) = batch_rows(&front);
    let (rest, m) = batch_rows(&batch);
    rows.extend(rest);
    assert_eq!((rows, n + m), (expected, 69));
}

#[test]
fn bodies_render_like_the_decoded_path() {
    for (value, expected) in value_cases() {
        let buf = with_body(&ld(
            5,
            &AnyValue {
                value: Some(value.clone()),
            }
            .encode_to_vec(),
        ));
        assert_eq!(body_value(&buf), expected, "{value:?}");
        assert_eq!(same_rows(&buf), 1);
    }
    // Absent, and present with nothing set.
    for buf in [with_body(&[]), with_body(&ld(5, &[]))] {
        assert_eq!(body_value(&buf), "");
        assert_eq!(same_rows(&buf), 1);
    }
}

#[test]
fn body_occurrences_merge_as_prost_reads_them() {
    for (body, expected) in oneof_cases() {
        // All in one `body`, and split over two (occurrences merge), with a field between.
        let whole = with_body(&ld(5, &body));
        assert_eq!(body_value(&whole), expected);
        same_rows(&whole);
        let (first, second) = body.split_at(body.len() / 2);
        let split = with_body(&[ld(5, first), ld(3, b"INFO"), ld(5, second)].concat());
        // Unless the cut fell inside a field.
        if wire::validate_logs(&split).is_ok() {
            assert_eq!(body_value(&split), expected);
            same_rows(&split);
        }
    }
}

#[test]
fn absent_and_empty_fields() {
    let record = LogRecord {
        trace_id: vec![0; 16],
        span_id: Vec::new(),
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![
            // No resource, no scope, no time at all, zero and empty ids.
            ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records: vec![record.clone()],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
            // Empty resource and scope, a service.name that is not a string, the observed time
            // only, severities out of range, flags past the low byte, ids of odd lengths.
            ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        KeyValue::default(),
                        kv("service.name", V::IntValue(7)),
                        kv("service.name", string("second")),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![
                    ScopeLogs {
                        scope: Some(InstrumentationScope::default()),
                        log_records: vec![
                            LogRecord {
                                observed_time_unix_nano: 5,
                                severity_number: 300,
                                flags: 0x1ff,
                                trace_id: vec![1, 2, 3],
                                span_id: vec![0xab; 9],
                                attributes: vec![KeyValue::default()],
                                ..record.clone()
                            },
                            LogRecord {
                                time_unix_nano: u64::MAX,
                                observed_time_unix_nano: 5,
                                severity_number: -1,
                                severity_text: "sev".into(),
                                event_name: "e".into(),
                                ..record.clone()
                            },
                        ],
                        schema_url: "https://scope".into(),
                    },
                    ScopeLogs::default(),
                    ScopeLogs {
                        scope: Some(InstrumentationScope {
                            name: "n".into(),
                            version: "v".into(),
                            attributes: vec![kv("a", V::BoolValue(true)), KeyValue::default()],
                            dropped_attributes_count: 3,
                        }),
                        log_records: vec![record],
                        schema_url: String::new(),
                    },
                ],
                schema_url: "https://resource".into(),
            },
            ResourceLogs::default(),
        ],
    };
    assert_eq!(same_rows(&request.encode_to_vec()), 4);
    assert_eq!(same_rows(&[]), 0);
}

#[test]
fn scopes_and_resources_given_twice_merge() {
    // Two `scope` occurrences (names and versions: the last wins; attributes add up), two
    // `resource` occurrences, schema URLs given twice (the last wins), records between them.
    let record = ld(2, &[ld(9, &[1; 16]), ld(5, &ld(1, b"body"))].concat());
    let scope_logs = [
        ld(
            1,
            &[
                ld(1, b"first"),
                ld(2, b"1"),
                ld(3, &kv("a", string("x")).encode_to_vec()),
            ]
            .concat(),
        ),
        record.clone(),
        ld(3, b"scope-url-1"),
        ld(
            1,
            &[
                ld(1, b"second"),
                ld(3, &kv("b", V::IntValue(2)).encode_to_vec()),
            ]
            .concat(),
        ),
        ld(3, b"scope-url-2"),
        record,
    ]
    .concat();
    let resource_logs = [
        ld(3, b"resource-url-1"),
        ld(
            1,
            &ld(1, &kv("service.name", string("svc")).encode_to_vec()),
        ),
        ld(2, &scope_logs),
        ld(1, &ld(1, &kv("host", string("h")).encode_to_vec())),
        ld(3, b"resource-url-2"),
        [key(20, 0), varint(1)].concat(),
    ]
    .concat();
    assert_eq!(same_rows(&ld(1, &resource_logs)), 2);
}

/// The SDK request `copies` times over, as one received batch of that many parts.
fn many_sdk_requests(copies: usize) -> LogBatch {
    let mut batch = LogBatch::from_protobuf(Bytes::from_static(SDK_LOGS_REQUEST)).unwrap();
    for _ in 1..copies {
        batch.merge(LogBatch::from_protobuf(Bytes::from_static(SDK_LOGS_REQUEST)).unwrap());
    }
    batch
}

#[test]
fn rows_handed_over_in_chunks_are_the_rows() {
    let received = many_sdk_requests(3);
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
                assert_eq!(flushes, rows);
            }
        }
    }
}

#[test]
fn every_compressed_body_decompresses_to_the_rows() {
    let one = LogBatch::from_protobuf(Bytes::from_static(SDK_LOGS_REQUEST))
        .unwrap()
        .split_front(1);
    let mut decoded = many_sdk_requests(60);
    decoded.split_front(1);
    assert!(decoded.protobuf_parts().is_none());
    let batches = [
        one,
        many_sdk_requests(1),
        many_sdk_requests(60),
        decoded,
        LogBatch::new(Vec::new()),
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

// ----- Generated requests -----------------------------------------------------------------------

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        any::<u64>(),
        1_763_700_000_000_000_000..1_763_700_001_000_000_000u64
    ]
}

fn log_record() -> impl Strategy<Value = LogRecord> {
    (
        (time(), time(), prop_oneof![0..25i32, any::<i32>()], text()),
        (option::of(any_value()), attributes()),
        (any::<u32>(), id(16), id(8), text()),
    )
        .prop_map(
            |(
                (time_unix_nano, observed_time_unix_nano, severity_number, severity_text),
                (body, attributes),
                (flags, trace_id, span_id, event_name),
            )| LogRecord {
                time_unix_nano,
                observed_time_unix_nano,
                severity_number,
                severity_text,
                body,
                attributes,
                dropped_attributes_count: 0,
                flags,
                trace_id,
                span_id,
                event_name,
            },
        )
}

fn request() -> impl Strategy<Value = ExportLogsServiceRequest> {
    let scope = (text(), text(), attributes()).prop_map(|(name, version, attributes)| {
        InstrumentationScope {
            name,
            version,
            attributes,
            dropped_attributes_count: 0,
        }
    });
    let scope_logs = (option::of(scope), vec(log_record(), 0..4), text()).prop_map(
        |(scope, log_records, schema_url)| ScopeLogs {
            scope,
            log_records,
            schema_url,
        },
    );
    let resource = attributes().prop_map(|attributes| Resource {
        attributes,
        ..Default::default()
    });
    let resource_logs = (option::of(resource), vec(scope_logs, 0..3), text()).prop_map(
        |(resource, scope_logs, schema_url)| ResourceLogs {
            resource,
            scope_logs,
            schema_url,
        },
    );
    vec(resource_logs, 0..3).prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
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
        let records: usize = request
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .map(|sl| sl.log_records.len())
            .sum();
        prop_assert_eq!(same_rows(&plain), records);
        let mut buf = Vec::new();
        rewrite(&plain, Kind::LogsRequest, &mut Rewriter::new(seed), &mut buf);
        prop_assert!(wire::validate_logs(&buf).is_ok(), "rewritten input is valid");
        same_rows(&buf);
        // Damaged bytes that still pass `validate_logs` (a changed id, time, length or tag)
        // must give the same rows too.
        for m in &mutations {
            apply(&mut buf, m);
            if wire::validate_logs(&buf).is_ok() {
                same_rows(&buf);
            }
        }
    }
}
