//! `apply_logs` held against the decoded path, as `edit_tests.rs` does for spans: for any logs
//! batch and edits, decoding what `apply_logs` writes must give what the reference
//! (`edit_oracle_logs.rs`) makes of the decoded batch, and a bad edit must fail with the
//! reference's message. The bytes come from prost or from a noisy encoder that adds what
//! prost never writes.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as V,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::Config;
use prost::Message as _;

use super::oracle_logs as oracle;
use super::*;
use crate::Value;
use crate::edit::{Edit, Target, encode_logs_batch};

fn record_count(data: &[ResourceLogs]) -> usize {
    data.iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len())
        .sum()
}

/// Runs both paths on `bytes` and requires the same outcome. Returns `apply_logs`'s answer.
fn check(bytes: &[u8], edits: Vec<Edit>) -> Result<Edited, String> {
    let mut expected = ExportLogsServiceRequest::decode(bytes)
        .expect("test input must be valid")
        .resource_logs;
    let reference = oracle::prepare(&expected, edits.clone()).map(|checked| {
        oracle::apply(&mut expected, checked);
        expected
    });
    let ours = apply_logs(bytes, edits.clone());
    match (&reference, &ours) {
        (Ok(expected), Ok(edited)) => {
            let got = ExportLogsServiceRequest::decode(edited.bytes.as_slice())
                .unwrap_or_else(|e| panic!("output does not decode: {e}; edits {edits:?}"))
                .resource_logs;
            assert_eq!(&got, expected, "edits {edits:?}");
            assert_eq!(edited.spans, record_count(&got));
        }
        (Err(expected), Err(got)) => assert_eq!(got, expected),
        _ => panic!("prepare+apply: {reference:?}, wire apply: {ours:?}; edits {edits:?}"),
    }
    ours
}

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(V::StringValue(v.to_owned())),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

fn record(body: Option<AnyValue>, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        observed_time_unix_nano: 1_700_000_000_000_000_001,
        severity_number: 9,
        severity_text: "INFO".into(),
        body,
        attributes,
        dropped_attributes_count: 2,
        flags: 1,
        trace_id: vec![7; 16],
        span_id: vec![8; 8],
        event_name: "e".into(),
    }
}

fn batch() -> Vec<ResourceLogs> {
    vec![
        ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("cart"))],
                ..Default::default()
            }),
            scope_logs: vec![
                ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        attributes: vec![kv("a", s("1"))],
                        ..Default::default()
                    }),
                    log_records: vec![
                        record(Some(s("card 4111 1111 1111 1111")), vec![kv("k", s("v"))]),
                        record(None, vec![]),
                    ],
                    schema_url: "s".into(),
                },
                ScopeLogs {
                    scope: None,
                    log_records: vec![record(
                        Some(AnyValue {
                            value: Some(V::KvlistValue(KeyValueList {
                                values: vec![kv("user", s("a@b.c"))],
                            })),
                        }),
                        vec![kv("x", s("y")), kv("x", s("z"))],
                    )],
                    schema_url: String::new(),
                },
            ],
            schema_url: String::new(),
        },
        ResourceLogs {
            resource: None,
            scope_logs: vec![ScopeLogs {
                scope: None,
                log_records: vec![record(Some(s("last")), vec![])],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        },
    ]
}

fn set(target: Target, key: &str, value: impl Into<Value>) -> Edit {
    Edit::SetAttribute {
        target,
        key: key.into(),
        value: value.into(),
    }
}

#[test]
fn every_log_edit_kind_matches_the_decoded_path() {
    let bytes = encode_logs_batch(&batch());
    let edited = check(
        &bytes,
        vec![
            set(Target::Resource(0), "env", "prod"),
            set(Target::Resource(1), "env", "dev"),
            set(Target::Scope(1), "lib", 3i64),
            set(Target::LogRecord(0), "k", "w"),
            Edit::RemoveAttribute {
                target: Target::LogRecord(2),
                key: "x".into(),
            },
            Edit::SetBody {
                record: 0,
                value: Value::from("card ****"),
            },
            Edit::SetBody {
                record: 1,
                value: Value::Int(5),
            },
            Edit::SetBody {
                record: 2,
                value: Value::Any(AnyValue {
                    value: Some(V::ArrayValue(ArrayValue {
                        values: vec![s("a"), s("b")],
                    })),
                }),
            },
        ],
    )
    .unwrap();
    assert_eq!(edited.spans, 4);
    let got = ExportLogsServiceRequest::decode(edited.bytes.as_slice())
        .unwrap()
        .resource_logs;
    let first = &got[0].scope_logs[0].log_records[0];
    assert_eq!(first.body, Some(s("card ****")));
    // Everything the edits do not name is as it was.
    assert_eq!(first.trace_id, vec![7; 16]);
    assert_eq!(first.severity_text, "INFO");
    assert_eq!(first.observed_time_unix_nano, 1_700_000_000_000_000_001);
}

#[test]
fn dropping_records_prunes_empty_scopes_and_resources() {
    let bytes = encode_logs_batch(&batch());
    let edited = check(
        &bytes,
        vec![
            Edit::DropLogRecord { record: 3 },
            Edit::DropLogRecord { record: 2 },
            Edit::DropLogRecord { record: 2 },
        ],
    )
    .unwrap();
    assert_eq!(edited.spans, 2);
    let got = ExportLogsServiceRequest::decode(edited.bytes.as_slice())
        .unwrap()
        .resource_logs;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].scope_logs.len(), 1);
}

#[test]
fn a_body_given_twice_in_the_bytes_is_replaced_whole() {
    // prost merges repeated occurrences of a message field; the edit must replace them all.
    let mut r = record(Some(s("secret")), vec![]).encode_to_vec();
    prost::encoding::message::encode(5, &s("second"), &mut r);
    let sl = {
        let mut b = Vec::new();
        prost::encoding::bytes::encode(2, &r, &mut b);
        b
    };
    let rl = {
        let mut b = Vec::new();
        prost::encoding::bytes::encode(2, &sl, &mut b);
        b
    };
    let mut bytes = Vec::new();
    prost::encoding::bytes::encode(1, &rl, &mut bytes);
    let edited = check(
        &bytes,
        vec![Edit::SetBody {
            record: 0,
            value: Value::from("clean"),
        }],
    )
    .unwrap();
    let got = ExportLogsServiceRequest::decode(edited.bytes.as_slice()).unwrap();
    assert_eq!(
        got.resource_logs[0].scope_logs[0].log_records[0].body,
        Some(s("clean"))
    );
}

#[test]
fn span_edits_and_targets_fail_on_logs_and_log_edits_on_spans() {
    let bytes = encode_logs_batch(&batch());
    for edit in [
        Edit::DropSpan { span: 0 },
        Edit::SetSpanName {
            span: 0,
            name: "n".into(),
        },
        set(Target::Span(0), "k", 1i64),
        set(Target::Event(0, 0), "k", 1i64),
        Edit::DropLogRecord { record: 9 },
        set(Target::LogRecord(4), "k", 1i64),
        set(Target::Scope(3), "k", 1i64),
    ] {
        let err = check(&bytes, vec![set(Target::LogRecord(0), "ok", 1i64), edit]).unwrap_err();
        assert!(!err.is_empty());
    }
    assert_eq!(
        apply(&bytes[..0], vec![Edit::DropLogRecord { record: 0 }]).unwrap_err(),
        "drop-log-record does not apply to a trace batch"
    );
    assert_eq!(
        apply(&bytes[..0], vec![set(Target::LogRecord(0), "k", 1i64)]).unwrap_err(),
        "target LogRecord(0) does not apply to a trace batch"
    );
}

// ----- Bytes prost never writes -----------------------------------------------------------------

/// Encodes `data` as a sender other than prost might: unknown fields around and inside every
/// message, a resource and a scope split over two occurrences (which decoding merges), a decoy
/// body before the real one (a later occurrence replaces the value), attributes interleaved
/// with other fields. `seed` picks where. Decoding gives `data` back, but for a body holding no
/// value, which leaves the decoy in place; the tests index edits by what the bytes decode to,
/// so both paths see the same batch either way.
fn noisy(data: &[ResourceLogs], seed: u64) -> Vec<u8> {
    use prost::encoding::{bytes, message, uint64};
    let mut n = seed;
    let mut flip = || {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (n >> 33).is_multiple_of(3)
    };
    let unknown = |out: &mut Vec<u8>| {
        uint64::encode(90, &7, out);
        bytes::encode(91, &b"noise".to_vec(), out);
    };
    let mut out = Vec::new();
    for rl in data {
        let mut rl_bytes = Vec::new();
        if flip() {
            unknown(&mut rl_bytes);
        }
        if let Some(r) = &rl.resource {
            // Two occurrences: the first half of the attributes, then the rest.
            let half = r.attributes.len() / 2;
            let first = Resource {
                attributes: r.attributes[..half].to_vec(),
                ..Default::default()
            };
            let second = Resource {
                attributes: r.attributes[half..].to_vec(),
                ..r.clone()
            };
            message::encode(1, &first, &mut rl_bytes);
            message::encode(1, &second, &mut rl_bytes);
        }
        for sl in &rl.scope_logs {
            let mut sl_bytes = Vec::new();
            if let Some(scope) = &sl.scope {
                message::encode(1, scope, &mut sl_bytes);
            }
            for r in &sl.log_records {
                let mut r_bytes = Vec::new();
                if flip() {
                    unknown(&mut r_bytes);
                }
                let body_first = flip();
                if let (true, Some(body)) = (body_first, &r.body) {
                    message::encode(
                        5,
                        &AnyValue {
                            value: Some(V::IntValue(-1)),
                        },
                        &mut r_bytes,
                    );
                    message::encode(5, body, &mut r_bytes);
                }
                for (i, kv) in r.attributes.iter().enumerate() {
                    message::encode(6, kv, &mut r_bytes);
                    if i == 0 && flip() {
                        // Attributes need not be consecutive.
                        prost::encoding::fixed64::encode(
                            11,
                            &r.observed_time_unix_nano,
                            &mut r_bytes,
                        );
                    }
                }
                let rest = LogRecord {
                    body: if body_first { None } else { r.body.clone() },
                    attributes: Vec::new(),
                    ..r.clone()
                };
                rest.encode_raw(&mut r_bytes);
                if flip() {
                    unknown(&mut r_bytes);
                }
                bytes::encode(2, &r_bytes, &mut sl_bytes);
            }
            bytes::encode(3, &sl.schema_url.clone().into_bytes(), &mut sl_bytes);
            bytes::encode(2, &sl_bytes, &mut rl_bytes);
        }
        bytes::encode(1, &rl_bytes, &mut out);
    }
    out
}

#[test]
fn the_noisy_encoder_decodes_to_its_input() {
    for seed in 0..50 {
        let bytes = noisy(&batch(), seed);
        let got = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(got.resource_logs, batch(), "seed {seed}");
    }
}

// ----- Random batches and edits ---------------------------------------------------------------

fn any_value() -> impl Strategy<Value = AnyValue> {
    prop_oneof![
        any::<i64>().prop_map(|v| AnyValue {
            value: Some(V::IntValue(v))
        }),
        "[a-z]{0,4}".prop_map(|v| s(&v)),
        vec("[a-z]{0,2}".prop_map(|v| s(&v)), 0..3).prop_map(|values| AnyValue {
            value: Some(V::ArrayValue(ArrayValue { values }))
        }),
        Just(AnyValue { value: None }),
    ]
}

fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(&["a", "b", ""][..]).prop_map(str::to_owned)
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    vec(
        (key(), option::weighted(0.9, any_value())).prop_map(|(key, value)| KeyValue {
            key,
            value,
            ..Default::default()
        }),
        0..4,
    )
}

fn random_batch() -> impl Strategy<Value = Vec<ResourceLogs>> {
    let rec = (option::of(any_value()), attributes()).prop_map(|(b, a)| record(b, a));
    let scope = option::of(attributes().prop_map(|attributes| InstrumentationScope {
        attributes,
        ..Default::default()
    }));
    let scopes = vec(
        (scope, vec(rec, 0..4)).prop_map(|(scope, log_records)| ScopeLogs {
            scope,
            log_records,
            schema_url: String::new(),
        }),
        0..3,
    );
    let resource = option::of(attributes().prop_map(|attributes| Resource {
        attributes,
        ..Default::default()
    }));
    vec(
        (resource, scopes).prop_map(|(resource, scope_logs)| ResourceLogs {
            resource,
            scope_logs,
            schema_url: String::new(),
        }),
        1..4,
    )
}

#[derive(Debug, Clone)]
enum Seed {
    Set(u8, u32, String, AnyValue),
    Remove(u8, u32, String),
    Body(u32, AnyValue),
    Drop(u32),
}

fn seed() -> impl Strategy<Value = Seed> {
    prop_oneof![
        4 => (0u8..3, any::<u32>(), key(), any_value()).prop_map(|(t, i, k, v)| Seed::Set(t, i, k, v)),
        3 => (0u8..3, any::<u32>(), key()).prop_map(|(t, i, k)| Seed::Remove(t, i, k)),
        2 => (any::<u32>(), any_value()).prop_map(|(i, v)| Seed::Body(i, v)),
        1 => any::<u32>().prop_map(Seed::Drop),
    ]
}

fn pick(raw: u32, count: usize) -> u32 {
    if raw.is_multiple_of(150) || count == 0 {
        count as u32 + raw % 2
    } else {
        raw % count as u32
    }
}

fn edits(data: &[ResourceLogs], seeds: Vec<Seed>) -> Vec<Edit> {
    let scopes = data.iter().map(|r| r.scope_logs.len()).sum();
    let records = record_count(data);
    let target = |t: u8, raw: u32| match t {
        0 => Target::Resource(pick(raw, data.len())),
        1 => Target::Scope(pick(raw, scopes)),
        _ => Target::LogRecord(pick(raw, records)),
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
            Seed::Body(raw, value) => Edit::SetBody {
                record: pick(raw, records),
                value: Value::Any(value),
            },
            Seed::Drop(raw) => Edit::DropLogRecord {
                record: pick(raw, records),
            },
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
    fn random_logs_batches_and_edits_match_the_decoded_path(
        data in random_batch(),
        seeds in vec(seed(), 0..10),
        noise in option::of(any::<u64>()),
    ) {
        let bytes = match noise {
            Some(seed) => noisy(&data, seed),
            None => encode_logs_batch(&data),
        };
        // Edits index the batch as the bytes decode, which is what the plugin sees.
        let decoded = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap().resource_logs;
        let edits = edits(&decoded, seeds);
        let _ = check(&bytes, edits);
    }
}
