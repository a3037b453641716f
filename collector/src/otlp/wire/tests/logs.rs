//! `validate_logs` held to `ExportLogsServiceRequest::decode` with the machinery of the trace
//! tests.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

use super::*;

/// Logs: [`validate_logs`].
struct Logs;

const LOGS_SCHEMA: &[MessageSchema] = &[
    ("ExportLogsServiceRequest", &[], &[(1, LEN)]),
    ("ResourceLogs", &[1], &[(1, LEN), (2, LEN), (3, LEN)]),
    ("Resource", &[1, 1], &[(1, LEN), (2, VARINT), (3, LEN)]),
    (
        "EntityRef",
        &[1, 1, 3],
        &[(1, LEN), (2, LEN), (3, LEN), (4, LEN)],
    ),
    ("ScopeLogs", &[1, 2], &[(1, LEN), (2, LEN), (3, LEN)]),
    (
        "InstrumentationScope",
        &[1, 2, 1],
        &[(1, LEN), (2, LEN), (3, LEN), (4, VARINT)],
    ),
    (
        "LogRecord",
        &[1, 2, 2],
        &[
            (1, I64),
            (2, VARINT),
            (3, LEN),
            (5, LEN),
            (6, LEN),
            (7, VARINT),
            (8, I32),
            (9, LEN),
            (10, LEN),
            (11, I64),
            (12, LEN),
        ],
    ),
    (
        "KeyValue",
        &[1, 2, 2, 6],
        &[(1, LEN), (2, LEN), (3, VARINT)],
    ),
    (
        "AnyValue",
        &[1, 2, 2, 5],
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
    ("ArrayValue", &[1, 2, 2, 5, 5], &[(1, LEN)]),
    ("KeyValueList", &[1, 2, 2, 5, 6], &[(1, LEN)]),
];

fn log_record_count(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len())
        .sum()
}

/// What [`ValidatedLogs::decoded_bytes`] bounds.
fn decoded_logs_size(request: &ExportLogsServiceRequest) -> usize {
    use std::mem::size_of;
    let mut total = 0;
    for rl in &request.resource_logs {
        total += size_of::<ResourceLogs>()
            + rl.schema_url.len()
            + resource_and_scope_size(rl.resource.as_ref(), None);
        for sl in &rl.scope_logs {
            total += size_of::<ScopeLogs>()
                + sl.schema_url.len()
                + resource_and_scope_size(None, sl.scope.as_ref());
            for r in &sl.log_records {
                total += size_of::<LogRecord>()
                    + r.severity_text.len()
                    + r.body.as_ref().map_or(0, any_size)
                    + kvs_size(&r.attributes)
                    + r.trace_id.len()
                    + r.span_id.len()
                    + r.event_name.len();
            }
        }
    }
    total
}

impl Signal for Logs {
    type Request = ExportLogsServiceRequest;
    type Counts = ValidatedLogs;
    const SCHEMA: &'static [MessageSchema] = LOGS_SCHEMA;
    // ResourceLogs.schema_url, EntityRef's four, ScopeLogs.schema_url, the scope's name and
    // version, LogRecord.severity_text and event_name, KeyValue.key, AnyValue.string_value.
    const STRING_FIELDS: usize = 12;

    fn validate(buf: &[u8]) -> Result<ValidatedLogs, WireError> {
        validate_logs(buf)
    }

    fn check(counts: &ValidatedLogs, request: &ExportLogsServiceRequest, buf: &[u8]) {
        assert_eq!(counts.resource_logs, request.resource_logs.len());
        assert_eq!(counts.log_records, log_record_count(request));
        let decoded = decoded_logs_size(request);
        assert!(
            counts.decoded_bytes >= decoded,
            "estimate {} below the decoded size {decoded}, input {buf:02x?}",
            counts.decoded_bytes
        );
    }

    fn items(counts: &ValidatedLogs) -> usize {
        counts.log_records
    }

    fn request_items(request: &ExportLogsServiceRequest) -> usize {
        log_record_count(request)
    }

    fn child(kind: &str, tag: u32) -> Option<&'static str> {
        Some(match (kind, tag) {
            ("Request", 1) => "ResourceLogs",
            ("ResourceLogs", 1) => "Resource",
            ("ResourceLogs", 2) => "ScopeLogs",
            ("ScopeLogs", 1) => "InstrumentationScope",
            ("ScopeLogs", 2) => "LogRecord",
            ("LogRecord", 5) => "AnyValue",
            ("LogRecord", 6) => "KeyValue",
            _ => return None,
        })
    }

    fn singular(kind: &str, tag: u32) -> bool {
        matches!(
            (kind, tag),
            ("ResourceLogs", 1) | ("ScopeLogs", 1) | ("LogRecord", 5)
        )
    }

    fn merges(kind: &str) -> bool {
        kind == "LogRecord"
    }
}

fn sample_logs() -> ExportLogsServiceRequest {
    let record = |i: u8| LogRecord {
        time_unix_nano: 1_763_700_000_000_000_000 + u64::from(i),
        observed_time_unix_nano: 1_763_700_000_000_000_500 + u64::from(i),
        severity_number: 9 + i32::from(i),
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(if i == 0 {
                V::StringValue(format!("order {i} placed"))
            } else {
                V::KvlistValue(KeyValueList {
                    values: vec![s("msg", "structured"), kv("n", V::IntValue(7))],
                })
            }),
        }),
        attributes: vec![s("http.route", "/orders"), kv("retry", V::BoolValue(true))],
        dropped_attributes_count: 1,
        flags: 1,
        trace_id: vec![0xa0 + i; 16],
        span_id: vec![i + 1; 8],
        event_name: if i == 2 {
            "order.placed".into()
        } else {
            String::new()
        },
    };
    let resource = Resource {
        attributes: vec![s("service.name", "checkout")],
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: Some(resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app".into(),
                        version: "1.0".into(),
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    log_records: vec![record(0), record(1)],
                    schema_url: String::new(),
                }],
                schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
            },
            ResourceLogs {
                resource: Some(resource),
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records: vec![record(2)],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
        ],
    }
}

#[test]
fn accepts_sample_logs_and_counts_records() {
    let request = sample_logs();
    let buf = request.encode_to_vec();
    let counts = same_as::<Logs>(&buf).expect("valid");
    assert_eq!((counts.resource_logs, counts.log_records), (2, 3));
    assert_eq!(counts.decoded_bytes, decoded_logs_size(&request));
    assert_eq!(
        same_as::<Logs>(&[]).expect("empty"),
        ValidatedLogs::default()
    );
}

#[test]
fn truncated_logs_fail_like_prost() {
    let buf = sample_logs().encode_to_vec();
    let mut failures = 0;
    for len in 0..buf.len() {
        failures += usize::from(same_as::<Logs>(&buf[..len]).is_err());
    }
    // Only the cut between the two ResourceLogs (and the empty prefix) leaves a valid request.
    assert_eq!(failures, buf.len() - 2);
}

#[test]
fn schema_rules_hold_for_every_log_message() {
    bad_utf8_in_every_string_field::<Logs>();
    wrong_wire_type_for_every_known_field::<Logs>();
    unknown_fields_and_groups_are_skipped_at_every_level::<Logs>();
    malformed_groups_fail_like_prost::<Logs>();
    field_number_zero_and_wire_types_6_and_7_are_invalid::<Logs>();
}

#[test]
fn log_error_text_reads_like_prost() {
    let buf = nest(&[1, 2, 2, 5], &ld(1, b"\xff"));
    let err = validate_logs(&buf).expect_err("bad body");
    assert_eq!(
        err.to_string(),
        "failed to decode Protobuf message: AnyValue.value: LogRecord.body: \
         ScopeLogs.log_records: ResourceLogs.scope_logs: \
         ExportLogsServiceRequest.resource_logs: invalid string value: data is not UTF-8 encoded"
    );
    same_as::<Logs>(&buf).expect_err("bad body");
}

#[test]
fn log_body_occurrences_merge() {
    // A string body, then an int body (the oneof member replaced), then a body with only an
    // unknown field (merged, keeps the int): prost ends with the int.
    let record = [
        ld(5, &ld(1, b"text")),
        ld(5, &[key(3, VARINT), varint(7)].concat()),
        ld(5, &field(20, VARINT)),
        ld(4, b"reserved field 4 is unknown"),
    ]
    .concat();
    let buf = nest(&[1, 2, 2], &record);
    assert_eq!(same_as::<Logs>(&buf).expect("valid").log_records, 1);
    let request = ExportLogsServiceRequest::decode(&buf[..]).expect("valid");
    let body = &request.resource_logs[0].scope_logs[0].log_records[0].body;
    assert_eq!(
        body.as_ref().and_then(|b| b.value.clone()),
        Some(V::IntValue(7))
    );
}

#[test]
fn recursion_limit_for_nested_log_bodies() {
    // Top-level fields have budget 100; ResourceLogs, ScopeLogs, LogRecord and the body spend
    // one each, so the body's fields have 96. Each ArrayValue level spends two more: after 48
    // the innermost body's fields have 0, enough for a string but not for another level.
    let nested = |levels: usize| {
        let mut any = ld(1, b"leaf");
        for _ in 0..levels {
            any = ld(5, &ld(1, &any));
        }
        nest(&[1, 2, 2, 5], &any)
    };
    assert_eq!(recursion_boundary_of::<Logs>(nested), 48);
}

fn log_record() -> impl Strategy<Value = LogRecord> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            prop_oneof![0..25i32, any::<i32>()],
        ),
        (text(), option::of(any_value()), attributes(), count()),
        (any::<u32>(), id(16), id(8), text()),
    )
        .prop_map(
            |(
                (time_unix_nano, observed_time_unix_nano, severity_number),
                (severity_text, body, attributes, dropped_attributes_count),
                (flags, trace_id, span_id, event_name),
            )| LogRecord {
                time_unix_nano,
                observed_time_unix_nano,
                severity_number,
                severity_text,
                body,
                attributes,
                dropped_attributes_count,
                flags,
                trace_id,
                span_id,
                event_name,
            },
        )
}

fn logs_request() -> impl Strategy<Value = ExportLogsServiceRequest> {
    let scope_logs = (option::of(scope()), vec(log_record(), 0..5), text()).prop_map(
        |(scope, log_records, schema_url)| ScopeLogs {
            scope,
            log_records,
            schema_url,
        },
    );
    let resource_logs = (option::of(resource()), vec(scope_logs, 0..3), text()).prop_map(
        |(resource, scope_logs, schema_url)| ResourceLogs {
            resource,
            scope_logs,
            schema_url,
        },
    );
    vec(resource_logs, 1..3).prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
}

proptest! {
    #![proptest_config(differential_config())]

    #[test]
    fn prop_validate_logs_matches_prost(
        request in logs_request(),
        seed in any::<u64>(),
        mutations in vec(mutation(), 0..3),
    ) {
        differential::<Logs>(&request, seed, &mutations);
    }

    #[test]
    fn prop_random_bytes_match_prost_as_logs(buf in vec(any::<u8>(), 0..48)) {
        same_as::<Logs>(&buf).ok();
    }
}
