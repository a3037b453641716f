//! Logs: `decode_logs`, `decode_logs_within`, `encode_logs`.

use std::mem::size_of;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValueList, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};

use super::super::{DecodeError, decode_logs, decode_logs_within, encode_logs};
use super::{every_kind_of_value, full_resource, full_scope, kv, spec_resource, spec_scope};

fn encode(request: &ExportLogsServiceRequest) -> String {
    super::encoded(&request.resource_logs, encode_logs)
}

fn decode(json: &str) -> ExportLogsServiceRequest {
    decode_logs(json.as_bytes()).unwrap_or_else(|e| panic!("decoding {json}: {e}"))
}

fn decode_err(json: &str) -> String {
    let err = match decode_logs(json.as_bytes()) {
        Ok(request) => panic!("decoding {json} succeeded: {request:?}"),
        Err(e) => e,
    };
    // The bounded decoder gives the same message.
    assert_eq!(
        decode_logs_within(json.as_bytes(), usize::MAX).unwrap_err(),
        DecodeError::Malformed(err.clone())
    );
    err
}

/// A request with one resource and one scope holding log records whose JSON is `records`.
fn with_records(records: &str) -> String {
    format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{records}]}}]}}]}}"#)
}

/// The log records of the first scope of the first resource.
fn records(request: &ExportLogsServiceRequest) -> &[LogRecord] {
    &request.resource_logs[0].scope_logs[0].log_records
}

fn full_record() -> LogRecord {
    LogRecord {
        time_unix_nano: 1_544_712_660_300_000_000,
        observed_time_unix_nano: u64::MAX,
        severity_number: SeverityNumber::Warn3 as i32,
        severity_text: "WARNING".into(),
        body: Some(AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: every_kind_of_value(),
            })),
        }),
        attributes: every_kind_of_value(),
        dropped_attributes_count: 7,
        flags: 0x1ff,
        trace_id: (1..=16).collect(),
        span_id: vec![0xff; 8],
        event_name: "browser.page_view".into(),
    }
}

fn full_request() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: Some(full_resource()),
                scope_logs: vec![
                    ScopeLogs {
                        scope: Some(full_scope()),
                        log_records: vec![
                            full_record(),
                            // Outside a span: no ids.
                            LogRecord {
                                body: Some(AnyValue {
                                    value: Some(Value::StringValue("no span".into())),
                                }),
                                severity_number: 99, // unknown to the enum, kept
                                ..LogRecord::default()
                            },
                            // All-zero ids, as some SDKs send for "no span": kept as sent.
                            LogRecord {
                                trace_id: vec![0; 16],
                                span_id: vec![0; 8],
                                body: Some(AnyValue::default()),
                                ..LogRecord::default()
                            },
                            LogRecord::default(),
                        ],
                        schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
                    },
                    ScopeLogs::default(),
                ],
                schema_url: "https://opentelemetry.io/schemas/1.22.0".into(),
            },
            ResourceLogs::default(),
        ],
    }
}

#[test]
fn round_trips_a_fully_populated_request() {
    let request = full_request();
    let json = encode(&request);
    assert!(!json.contains('\n'), "one line: {json}");
    serde_json::from_str::<serde_json::Value>(&json).expect("valid JSON");
    let decoded = decode(&json);
    assert_eq!(decoded, request);
    assert_eq!(encode(&decoded), json);

    let kept = decode_logs_within(json.as_bytes(), usize::MAX).expect("within budget");
    assert_eq!(kept.request, request);
    assert_eq!(kept.invalid, 0, "nothing is left out of logs");
}

#[test]
fn encodes_the_canonical_form() {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(spec_resource()),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_544_712_660_300_000_000,
                        severity_number: SeverityNumber::Info as i32,
                        severity_text: "Information".into(),
                        body: Some(AnyValue {
                            value: Some(Value::StringValue("hello".into())),
                        }),
                        attributes: vec![kv("n", Value::IntValue(10))],
                        flags: 1,
                        trace_id: hex::decode("5B8EFFF798038103D269B633813FC60C").unwrap(),
                        span_id: hex::decode("EEE19B7EC3C1B174").unwrap(),
                        event_name: "e".into(),
                        ..LogRecord::default()
                    },
                    LogRecord::default(),
                ],
                ..ScopeLogs::default()
            }],
            schema_url: String::new(),
        }],
    };
    assert_eq!(
        encode(&request),
        concat!(
            r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},"#,
            r#""scopeLogs":[{"logRecords":[{"timeUnixNano":"1544712660300000000","severityNumber":9,"#,
            r#""severityText":"Information","body":{"stringValue":"hello"},"#,
            r#""attributes":[{"key":"n","value":{"intValue":"10"}}],"flags":1,"#,
            r#""traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","eventName":"e"},{}]}]}]}"#,
        )
    );
    assert_eq!(
        encode(&ExportLogsServiceRequest::default()),
        r#"{"resourceLogs":[]}"#
    );
}

/// The example in the OTLP specification (opentelemetry-proto's examples/logs.json).
#[test]
fn decodes_the_spec_example() {
    let request = decode(
        r#"{
  "resourceLogs": [
    {
      "resource": {
        "attributes": [
          {
            "key": "service.name",
            "value": {
              "stringValue": "my.service"
            }
          }
        ]
      },
      "scopeLogs": [
        {
          "scope": {
            "name": "my.library",
            "version": "1.0.0",
            "attributes": [
              {
                "key": "my.scope.attribute",
                "value": {
                  "stringValue": "some scope attribute"
                }
              }
            ]
          },
          "logRecords": [
            {
              "timeUnixNano": 1544712660300000000,
              "observedTimeUnixNano": 1544712660300000000,
              "severityText": "Information",
              "traceId": "5B8EFFF798038103D269B633813FC60C",
              "spanId": "EEE19B7EC3C1B174",
              "body": {
                "stringValue": "Example log record"
              },
              "attributes": [
                {
                  "key": "string.attribute",
                  "value": {
                    "stringValue": "some string"
                  }
                },
                {
                  "key": "boolean.attribute",
                  "value": {
                    "boolValue": true
                  }
                },
                {
                  "key": "int.attribute",
                  "value": {
                    "intValue": 10
                  }
                },
                {
                  "key": "double.attribute",
                  "value": {
                    "doubleValue": 637.704
                  }
                },
                {
                  "key": "array.attribute",
                  "value": {
                    "arrayValue": {
                      "values": [
                        {
                          "stringValue": "many"
                        },
                        {
                          "stringValue": "values"
                        }
                      ]
                    }
                  }
                },
                {
                  "key": "map.attribute",
                  "value": {
                    "kvlistValue": {
                      "values": [
                        {
                          "key": "some.map.key",
                          "value": {
                            "stringValue": "some value"
                          }
                        }
                      ]
                    }
                  }
                }
              ]
            }
          ]
        }
      ]
    }
  ]
}"#,
    );
    let string = |s: &str| AnyValue {
        value: Some(Value::StringValue(s.into())),
    };
    let expected = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(spec_resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(spec_scope()),
                log_records: vec![LogRecord {
                    time_unix_nano: 1_544_712_660_300_000_000,
                    observed_time_unix_nano: 1_544_712_660_300_000_000,
                    severity_text: "Information".into(),
                    trace_id: hex::decode("5b8efff798038103d269b633813fc60c").unwrap(),
                    span_id: hex::decode("eee19b7ec3c1b174").unwrap(),
                    body: Some(string("Example log record")),
                    attributes: vec![
                        kv("string.attribute", Value::StringValue("some string".into())),
                        kv("boolean.attribute", Value::BoolValue(true)),
                        kv("int.attribute", Value::IntValue(10)),
                        kv("double.attribute", Value::DoubleValue(637.704)),
                        kv(
                            "array.attribute",
                            Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                                values: vec![string("many"), string("values")],
                            }),
                        ),
                        kv(
                            "map.attribute",
                            Value::KvlistValue(KeyValueList {
                                values: vec![kv(
                                    "some.map.key",
                                    Value::StringValue("some value".into()),
                                )],
                            }),
                        ),
                    ],
                    ..LogRecord::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    assert_eq!(request, expected);
    assert_eq!(decode(&encode(&request)), request);
}

#[test]
fn accepts_snake_case_names_enum_names_and_strings_for_integers() {
    let request = decode(&with_records(
        r#"{"time_unix_nano":"5","observed_time_unix_nano":6,"severity_number":"SEVERITY_NUMBER_ERROR",
            "severity_text":"E","dropped_attributes_count":"2","flags":"1",
            "trace_id":"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708",
            "event_name":"ev","body":{"int_value":"-1"}},
           {"severityNumber":"SEVERITY_NUMBER_FATAL4"},{"severityNumber":"13"},{"severityNumber":null}"#,
    ));
    let records = records(&request);
    assert_eq!(
        records[0],
        LogRecord {
            time_unix_nano: 5,
            observed_time_unix_nano: 6,
            severity_number: SeverityNumber::Error as i32,
            severity_text: "E".into(),
            body: Some(AnyValue {
                value: Some(Value::IntValue(-1)),
            }),
            attributes: vec![],
            dropped_attributes_count: 2,
            flags: 1,
            trace_id: (1..=16).collect(),
            span_id: (1..=8).collect(),
            event_name: "ev".into(),
        }
    );
    let severities: Vec<i32> = records[1..].iter().map(|r| r.severity_number).collect();
    assert_eq!(severities, vec![24, 13, 0]);
    let snake = decode(
        r#"{"resource_logs":[{"schema_url":"r","scope_logs":[{"schema_url":"s","log_records":[{}]}]}]}"#,
    );
    assert_eq!(snake.resource_logs[0].schema_url, "r");
    assert_eq!(snake.resource_logs[0].scope_logs[0].schema_url, "s");
    assert_eq!(self::records(&snake), &[LogRecord::default()]);
}

#[test]
fn ids_are_optional_and_null_means_default() {
    let request = decode(&with_records(
        r#"{"traceId":"","spanId":""},{"traceId":null,"spanId":null,"body":null,"attributes":null},
           {"traceId":"00000000000000000000000000000000","spanId":"0000000000000000"},
           {"unknownField":{"traceId":"zz"},"severityText":"kept"}"#,
    ));
    let records = self::records(&request);
    assert_eq!(records[0], LogRecord::default());
    assert_eq!(records[1], LogRecord::default());
    assert_eq!(
        (
            records[2].trace_id.as_slice(),
            records[2].span_id.as_slice()
        ),
        (&[0u8; 16][..], &[0u8; 8][..])
    );
    assert_eq!(records[3].severity_text, "kept");
    // A bounded decoding keeps them all.
    let json = with_records(r#"{"traceId":""},{},{"spanId":"0000000000000000"}"#);
    let kept = decode_logs_within(json.as_bytes(), usize::MAX).unwrap();
    assert_eq!(
        kept.request.resource_logs[0].scope_logs[0]
            .log_records
            .len(),
        3
    );
    assert_eq!(kept.invalid, 0);
}

#[test]
fn rejects_ids_of_the_wrong_length() {
    // The example in `decode_logs`'s documentation.
    assert_eq!(
        decode_err(r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{},{"traceId":"abc"}]}]}]}"#),
        r#"resourceLogs[0].scopeLogs[0].logRecords[1].traceId: invalid traceId "abc": expected 32 hex digits at line 1 column 65"#
    );
    let err = decode_err(&with_records(
        r#"{},{"traceId":"5b8efff798038103d269b633813fc6"}"#,
    ));
    assert!(
        err.starts_with(
            r#"resourceLogs[0].scopeLogs[0].logRecords[1].traceId: invalid traceId "5b8efff798038103d269b633813fc6": expected 32 hex digits"#
        ),
        "{err}"
    );
    let err = decode_err(&with_records(r#"{"spanId":"0000000000000000ff"}"#));
    assert!(
        err.starts_with(
            r#"resourceLogs[0].scopeLogs[0].logRecords[0].spanId: invalid spanId "0000000000000000ff": expected 16 hex digits"#
        ),
        "{err}"
    );
    let err = decode_err(&with_records(r#"{"spanId":"eee19b7ec3c1b17g"}"#));
    assert!(
        err.contains("logRecords[0].spanId: invalid spanId"),
        "{err}"
    );
    // Base64, which proto3 JSON would use for bytes: not OTLP.
    let err = decode_err(&with_records(r#"{"traceId":"W47/95gDgQPSabYzgT/GDA=="}"#));
    assert!(err.contains("traceId: invalid traceId"), "{err}");
}

#[test]
fn rejects_bad_values() {
    for (record, message) in [
        (
            r#"{"severityNumber":"SEVERITY_NUMBER_LOUD"}"#,
            r#"severityNumber: invalid severityNumber "SEVERITY_NUMBER_LOUD": expected one of the SeverityNumber names, such as "SEVERITY_NUMBER_INFO", or an integer"#,
        ),
        (r#"{"severityNumber":1.5}"#, "severityNumber: invalid value"),
        (r#"{"timeUnixNano":"-1"}"#, "timeUnixNano: invalid value"),
        (r#"{"flags":4294967296}"#, "flags: invalid value"),
        (r#"{"body":"text"}"#, "body: invalid type: string"),
        (
            r#"{"body":{"stringValue":"a","boolValue":true}}"#,
            "body.boolValue: AnyValue has more than one value: stringValue and boolValue",
        ),
        (r#"{"eventName":1}"#, "eventName: invalid type"),
    ] {
        let err = decode_err(&with_records(record));
        assert!(
            err.starts_with(&format!(
                "resourceLogs[0].scopeLogs[0].logRecords[0].{message}"
            )),
            "{record}: {err}"
        );
    }
    let err = decode_err(r#"{"resourceLogs":{}}"#);
    assert!(
        err.starts_with(
            "resourceLogs: invalid type: map, expected an array of OTLP/JSON ResourceLogs objects"
        ),
        "{err}"
    );
    let err = decode_err("[]");
    assert!(
        err.starts_with(
            "invalid type: sequence, expected an OTLP/JSON ExportLogsServiceRequest object"
        ),
        "{err}"
    );
}

#[test]
fn stops_past_its_budget() {
    let json = with_records(r#"{"attributes":[{"key":"a"},{"key":"b"}]},{}"#);
    // Every element of every repeated field, at its size in memory.
    let size = size_of::<ResourceLogs>()
        + size_of::<ScopeLogs>()
        + 2 * size_of::<LogRecord>()
        + 2 * size_of::<opentelemetry_proto::tonic::common::v1::KeyValue>();
    let kept = decode_logs_within(json.as_bytes(), size).expect("exactly the budget");
    assert_eq!(kept.request, decode(&json));
    assert_eq!(
        decode_logs_within(json.as_bytes(), size - 1).unwrap_err(),
        DecodeError::OverBudget { budget: size - 1 }
    );
    // Stopped as soon as it is over, before the malformed part.
    let mut truncated = with_records(&r#"{},"#.repeat(1000));
    truncated.truncate(truncated.len() - 10);
    assert_eq!(
        decode_logs_within(truncated.as_bytes(), 10 * size_of::<LogRecord>()).unwrap_err(),
        DecodeError::OverBudget {
            budget: 10 * size_of::<LogRecord>()
        }
    );
    assert!(decode_logs(truncated.as_bytes()).is_err());
}
