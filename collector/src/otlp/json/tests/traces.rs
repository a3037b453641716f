//! Traces: `decode_traces`, `decode_traces_within`, `encode_traces`.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

use std::mem::size_of;

use super::super::{
    DecodeError, ExportTraceServiceRequest, decode_traces, decode_traces_within, encode_traces,
};
use super::{every_kind_of_value, full_resource, full_scope, kv, spec_resource, spec_scope};

fn encode(request: &ExportTraceServiceRequest) -> String {
    let mut out = Vec::new();
    encode_traces(&request.resource_spans, &mut out);
    String::from_utf8(out).expect("UTF-8")
}

fn decode(json: &str) -> ExportTraceServiceRequest {
    decode_traces(json.as_bytes()).unwrap_or_else(|e| panic!("decoding {json}: {e}"))
}

fn decode_err(json: &str) -> String {
    match decode_traces(json.as_bytes()) {
        Ok(request) => panic!("decoding {json} succeeded: {request:?}"),
        Err(e) => e,
    }
}

/// The first span of a request.
fn span0(request: &ExportTraceServiceRequest) -> &Span {
    &request.resource_spans[0].scope_spans[0].spans[0]
}

/// A request with one span whose JSON is `span`.
fn with_span(span: &str) -> String {
    format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#)
}

fn full_request() -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: (1..=16).collect(),
        span_id: vec![0xff; 8],
        trace_state: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into(),
        parent_span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
        flags: 0x301,
        name: "GET /things/{id}".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_544_712_660_000_000_000,
        end_time_unix_nano: u64::MAX,
        attributes: every_kind_of_value(),
        dropped_attributes_count: 1,
        events: vec![
            span::Event {
                time_unix_nano: u64::MAX,
                name: "exception".into(),
                attributes: vec![kv("exception.message", Value::StringValue("boom".into()))],
                dropped_attributes_count: 2,
            },
            span::Event::default(),
        ],
        dropped_events_count: 3,
        links: vec![
            span::Link {
                trace_id: vec![0xab; 16],
                span_id: vec![0xcd; 8],
                trace_state: "k=v".into(),
                attributes: vec![kv("link", Value::IntValue(-1))],
                dropped_attributes_count: 4,
                flags: u32::MAX,
            },
            span::Link::default(),
        ],
        dropped_links_count: u32::MAX,
        status: Some(Status {
            message: "it failed".into(),
            code: status::StatusCode::Error as i32,
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(full_resource()),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(full_scope()),
                        spans: vec![
                            span,
                            Span {
                                kind: 99, // unknown to the enum, kept
                                status: Some(Status::default()),
                                ..Span::default()
                            },
                        ],
                        schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
                    },
                    ScopeSpans::default(),
                ],
                schema_url: "https://opentelemetry.io/schemas/1.22.0".into(),
            },
            ResourceSpans {
                resource: Some(Resource::default()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope::default()),
                    spans: vec![Span::default()],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
            ResourceSpans::default(),
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
}

#[test]
fn round_trips_nan() {
    let json = with_span(r#"{"attributes":[{"key":"n","value":{"doubleValue":"NaN"}}]}"#);
    let request = decode(&json);
    let Some(Value::DoubleValue(d)) = &span0(&request).attributes[0].value.as_ref().unwrap().value
    else {
        panic!("not a double: {request:?}");
    };
    assert!(d.is_nan());
    assert!(encode(&request).contains(r#"{"doubleValue":"NaN"}"#));
}

#[test]
fn encodes_the_canonical_form() {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue("svc".into()))],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    ..InstrumentationScope::default()
                }),
                spans: vec![Span {
                    trace_id: hex::decode("5B8EFFF798038103D269B633813FC60C").unwrap(),
                    span_id: hex::decode("EEE19B7EC3C1B174").unwrap(),
                    name: "op".into(),
                    kind: 2,
                    flags: 1,
                    start_time_unix_nano: 1_544_712_660_000_000_000,
                    end_time_unix_nano: 1_544_712_661_000_000_000,
                    attributes: vec![
                        kv("i", Value::IntValue(-3)),
                        kv("d", Value::DoubleValue(1e300)),
                        kv("b", Value::BytesValue(b"hi?>".to_vec())),
                        kv("z", Value::DoubleValue(0.0)),
                    ],
                    status: Some(Status {
                        message: String::new(),
                        code: 2,
                    }),
                    ..Span::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    assert_eq!(
        encode(&request),
        concat!(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"#,
            r#""scopeSpans":[{"scope":{"name":"lib"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","#,
            r#""spanId":"eee19b7ec3c1b174","flags":1,"name":"op","kind":2,"#,
            r#""startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","#,
            r#""attributes":[{"key":"i","value":{"intValue":"-3"}},{"key":"d","value":{"doubleValue":1e300}},"#,
            r#"{"key":"b","value":{"bytesValue":"aGk/Pg=="}},{"key":"z","value":{"doubleValue":0.0}}],"#,
            r#""status":{"code":2}}]}]}]}"#,
        )
    );
}

#[test]
fn encodes_defaults_as_absent() {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![Span::default()],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    assert_eq!(
        encode(&request),
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{}]}]}]}"#
    );
    assert_eq!(
        encode(&ExportTraceServiceRequest::default()),
        r#"{"resourceSpans":[]}"#
    );
    let mut out = b"prefix ".to_vec();
    encode_traces(&[], &mut out);
    assert_eq!(out, b"prefix {\"resourceSpans\":[]}", "appends");
}

#[test]
fn escapes_strings() {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            schema_url: "\"\\/\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}é".into(),
            ..ResourceSpans::default()
        }],
    };
    let json = encode(&request);
    assert_eq!(
        json,
        "{\"resourceSpans\":[{\"schemaUrl\":\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}é\"}]}"
    );
    assert_eq!(decode(&json), request);
}

/// The example in the OTLP specification (opentelemetry-proto's examples/trace.json).
#[test]
fn decodes_the_spec_example() {
    let request = decode(
        r#"{
  "resourceSpans": [
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
  "scopeSpans": [
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
      "spans": [
        {
          "traceId": "5B8EFFF798038103D269B633813FC60C",
          "spanId": "EEE19B7EC3C1B174",
          "parentSpanId": "EEE19B7EC3C1B173",
          "name": "I'm a server span",
          "startTimeUnixNano": 1544712660000000000,
          "endTimeUnixNano": 1544712661000000000,
          "kind": 2,
          "attributes": [
            {
              "key": "my.span.attr",
              "value": {
                "stringValue": "some value"
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
    let expected = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(spec_resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(spec_scope()),
                spans: vec![Span {
                    trace_id: vec![
                        0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33,
                        0x81, 0x3f, 0xc6, 0x0c,
                    ],
                    span_id: vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74],
                    parent_span_id: vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73],
                    name: "I'm a server span".into(),
                    start_time_unix_nano: 1_544_712_660_000_000_000,
                    end_time_unix_nano: 1_544_712_661_000_000_000,
                    kind: span::SpanKind::Server as i32,
                    attributes: vec![kv("my.span.attr", Value::StringValue("some value".into()))],
                    ..Span::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    assert_eq!(request, expected);
}

#[test]
fn accepts_snake_case_names() {
    let camel = decode(&encode(&full_request()));
    let snake = decode(
        r#"{"resource_spans":[{"resource":{"attributes":[],"dropped_attributes_count":2,
            "entity_refs":[{"schema_url":"u","type":"t","id_keys":["a"],"description_keys":["b"]}]},
          "scope_spans":[{"scope":{"name":"n","version":"v","dropped_attributes_count":3},
            "schema_url":"s",
            "spans":[{"trace_id":"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708",
              "trace_state":"ts","parent_span_id":"0807060504030201","flags":1,"name":"x",
              "kind":3,"start_time_unix_nano":"5","end_time_unix_nano":"6",
              "attributes":[{"key":"k","key_strindex":1,"value":{"kvlist_value":{"values":[
                {"key":"s","value":{"string_value":"v"}},{"key":"b","value":{"bool_value":true}},
                {"key":"i","value":{"int_value":"-1"}},{"key":"d","value":{"double_value":1.5}},
                {"key":"y","value":{"bytes_value":"AQI="}},{"key":"r","value":{"string_value_strindex":4}},
                {"key":"a","value":{"array_value":{"values":[]}}}]}}}],
              "dropped_attributes_count":7,"dropped_events_count":8,"dropped_links_count":9,
              "events":[{"time_unix_nano":"10","name":"e","dropped_attributes_count":11}],
              "links":[{"trace_id":"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708",
                "trace_state":"lts","dropped_attributes_count":12,"flags":13}],
              "status":{"message":"m","code":1}}]}],
          "schema_url":"rs"}]}"#,
    );
    assert_eq!(camel, full_request(), "sanity");
    let rs = &snake.resource_spans[0];
    assert_eq!(rs.schema_url, "rs");
    let resource = rs.resource.as_ref().unwrap();
    assert_eq!(resource.dropped_attributes_count, 2);
    assert_eq!(
        resource.entity_refs,
        vec![EntityRef {
            schema_url: "u".into(),
            r#type: "t".into(),
            id_keys: vec!["a".into()],
            description_keys: vec!["b".into()],
        }]
    );
    let ss = &rs.scope_spans[0];
    assert_eq!(ss.schema_url, "s");
    let scope = ss.scope.as_ref().unwrap();
    assert_eq!((scope.name.as_str(), scope.version.as_str()), ("n", "v"));
    assert_eq!(scope.dropped_attributes_count, 3);
    let span = &ss.spans[0];
    assert_eq!(span.trace_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(span.span_id, (1..=8).collect::<Vec<u8>>());
    assert_eq!(span.parent_span_id, (1..=8).rev().collect::<Vec<u8>>());
    assert_eq!(span.trace_state, "ts");
    assert_eq!((span.flags, span.kind), (1, 3));
    assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (5, 6));
    assert_eq!(
        (
            span.dropped_attributes_count,
            span.dropped_events_count,
            span.dropped_links_count
        ),
        (7, 8, 9)
    );
    assert_eq!(
        span.events,
        vec![span::Event {
            time_unix_nano: 10,
            name: "e".into(),
            attributes: vec![],
            dropped_attributes_count: 11,
        }]
    );
    assert_eq!(
        span.links,
        vec![span::Link {
            trace_id: (1..=16).collect(),
            span_id: (1..=8).collect(),
            trace_state: "lts".into(),
            attributes: vec![],
            dropped_attributes_count: 12,
            flags: 13,
        }]
    );
    assert_eq!(
        span.status,
        Some(Status {
            message: "m".into(),
            code: 1
        })
    );
    assert_eq!(span.attributes[0].key_strindex, 1);
    assert_eq!(
        span.attributes[0].value,
        Some(AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("s", Value::StringValue("v".into())),
                    kv("b", Value::BoolValue(true)),
                    kv("i", Value::IntValue(-1)),
                    kv("d", Value::DoubleValue(1.5)),
                    kv("y", Value::BytesValue(vec![1, 2])),
                    kv("r", Value::StringValueStrindex(4)),
                    kv("a", Value::ArrayValue(ArrayValue::default())),
                ]
            }))
        })
    );
}

#[test]
fn accepts_enum_names_and_numbers() {
    for (kind, expected) in [
        (r#""SPAN_KIND_UNSPECIFIED""#, 0),
        (r#""SPAN_KIND_INTERNAL""#, 1),
        (r#""SPAN_KIND_SERVER""#, 2),
        (r#""SPAN_KIND_CLIENT""#, 3),
        (r#""SPAN_KIND_PRODUCER""#, 4),
        (r#""SPAN_KIND_CONSUMER""#, 5),
        ("0", 0),
        ("2", 2),
        ("5", 5),
        ("42", 42), // unknown values are kept: proto3 enums are open
        ("-1", -1),
        (r#""3""#, 3),
        ("null", 0),
    ] {
        let request = decode(&with_span(&format!(r#"{{"kind":{kind}}}"#)));
        assert_eq!(span0(&request).kind, expected, "kind {kind}");
    }
    for (code, expected) in [
        (r#""STATUS_CODE_UNSET""#, 0),
        (r#""STATUS_CODE_OK""#, 1),
        (r#""STATUS_CODE_ERROR""#, 2),
        ("1", 1),
        ("2", 2),
        ("7", 7),
    ] {
        let request = decode(&with_span(&format!(r#"{{"status":{{"code":{code}}}}}"#)));
        assert_eq!(
            span0(&request).status.as_ref().unwrap().code,
            expected,
            "code {code}"
        );
    }
}

#[test]
fn accepts_upper_and_mixed_case_hex_ids() {
    let request = decode(&with_span(
        r#"{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19b7ec3c1B174",
            "parentSpanId":"ABCDEF0123456789",
            "links":[{"traceId":"0A0B0C0D0E0F0A0B0C0D0E0F0A0B0C0D","spanId":"FFFFFFFFFFFFFFFF"}]}"#,
    ));
    let span = span0(&request);
    assert_eq!(
        hex::encode(&span.trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(hex::encode(&span.parent_span_id), "abcdef0123456789");
    assert_eq!(
        hex::encode(&span.links[0].trace_id),
        "0a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d"
    );
    assert_eq!(span.links[0].span_id, vec![0xff; 8]);
    // Written back in lowercase.
    let json = encode(&request);
    assert!(
        json.contains(r#""traceId":"5b8efff798038103d269b633813fc60c""#),
        "{json}"
    );
    assert!(
        json.contains(r#""parentSpanId":"abcdef0123456789""#),
        "{json}"
    );
}

#[test]
fn empty_and_null_ids_are_unset() {
    let request = decode(&with_span(
        r#"{"traceId":"","spanId":null,"parentSpanId":""}"#,
    ));
    assert_eq!(span0(&request), &Span::default());
}

#[test]
fn ignores_unknown_fields() {
    let request = decode(
        r#"{"unknown":{"a":[1,{"b":[[],{}]}],"traceId":"zz"},
          "resourceSpans":[{"futureField":[{"x":{"y":null}}],
            "resource":{"attributes":[{"key":"k","extra":{"deep":[{"deeper":{}}]},
              "value":{"unknownValue":{"nested":[1,2,{"stringValue":"no"}]},"intValue":5,"more":[]}}],
              "entityRefs":[{"unknown":true}]},
            "scopeSpans":[{"scope":{"name":"s","x":[]},"spans":[
              {"name":"n","deprecatedCode":1,"status":{"deprecated_code":1,"code":2,"z":{"q":[]}},
               "events":[{"name":"e","what":"ever"}],"links":[{"nope":1.5e10}]}],"y":"z"}]}],
          "trailing":[true,false,null,"s",-1.0e-5]}"#,
    );
    let rs = &request.resource_spans[0];
    assert_eq!(
        rs.resource.as_ref().unwrap().attributes,
        vec![kv("k", Value::IntValue(5))]
    );
    assert_eq!(
        rs.resource.as_ref().unwrap().entity_refs,
        vec![EntityRef::default()]
    );
    let span = span0(&request);
    assert_eq!(span.name, "n");
    assert_eq!(span.status.as_ref().unwrap().code, 2);
    assert_eq!(span.events[0].name, "e");
    assert_eq!(span.links, vec![span::Link::default()]);
    assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "s");
}

#[test]
fn null_means_default() {
    let request = decode(
        r#"{"resourceSpans":[{"resource":null,"schemaUrl":null,"scopeSpans":[{"scope":null,"spans":[
            {"traceId":null,"name":null,"kind":null,"flags":null,"startTimeUnixNano":null,
             "attributes":null,"events":null,"links":null,"status":null,"droppedLinksCount":null,
             "droppedAttributesCount":null},
            {"attributes":[{"key":null,"value":null},{"key":"k","value":{"stringValue":null}},
              {"key":"a","value":{"arrayValue":null}},{"key":"b","value":{"stringValue":null,"boolValue":false}}]}]}]}]}"#,
    );
    let rs = &request.resource_spans[0];
    assert_eq!(rs.resource, None);
    assert_eq!(rs.scope_spans[0].scope, None);
    assert_eq!(span0(&request), &Span::default());
    assert_eq!(
        rs.scope_spans[0].spans[1].attributes,
        vec![
            KeyValue::default(),
            KeyValue {
                key: "k".into(),
                value: Some(AnyValue::default()),
                key_strindex: 0
            },
            KeyValue {
                key: "a".into(),
                value: Some(AnyValue::default()),
                key_strindex: 0
            },
            kv("b", Value::BoolValue(false)),
        ]
    );
    assert_eq!(
        decode(r#"{"resourceSpans":null}"#),
        ExportTraceServiceRequest::default()
    );
    assert_eq!(decode("{}"), ExportTraceServiceRequest::default());
}

#[test]
fn accepts_numbers_and_strings_for_integers() {
    let request = decode(&with_span(
        r#"{"startTimeUnixNano":"18446744073709551615","endTimeUnixNano":1544712661000000000,
            "flags":"257","droppedAttributesCount":"3","droppedEventsCount":4.0,
            "droppedLinksCount":5e0,
            "events":[{"timeUnixNano":"1544712660000000000"},{"timeUnixNano":1.5e9}],
            "attributes":[{"key":"a","value":{"intValue":-9223372036854775808}},
              {"key":"b","value":{"intValue":"9223372036854775807"}},
              {"key":"c","value":{"intValue":"-12"}},{"key":"d","value":{"intValue":12}},
              {"key":"e","value":{"doubleValue":"2.5"}},{"key":"f","value":{"doubleValue":7}},
              {"key":"g","value":{"doubleValue":"Infinity"}},{"key":"h","value":{"doubleValue":"-Infinity"}}]}"#,
    ));
    let span = span0(&request);
    assert_eq!(span.start_time_unix_nano, u64::MAX);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(span.flags, 257);
    assert_eq!(
        (
            span.dropped_attributes_count,
            span.dropped_events_count,
            span.dropped_links_count
        ),
        (3, 4, 5)
    );
    assert_eq!(span.events[0].time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.events[1].time_unix_nano, 1_500_000_000);
    let values: Vec<_> = span
        .attributes
        .iter()
        .map(|kv| kv.value.clone().unwrap().value.unwrap())
        .collect();
    assert_eq!(
        values,
        vec![
            Value::IntValue(i64::MIN),
            Value::IntValue(i64::MAX),
            Value::IntValue(-12),
            Value::IntValue(12),
            Value::DoubleValue(2.5),
            Value::DoubleValue(7.0),
            Value::DoubleValue(f64::INFINITY),
            Value::DoubleValue(f64::NEG_INFINITY),
        ]
    );
    // Written back in the canonical forms.
    let json = encode(&request);
    assert!(
        json.contains(r#""startTimeUnixNano":"18446744073709551615""#),
        "{json}"
    );
    assert!(
        json.contains(r#""endTimeUnixNano":"1544712661000000000""#),
        "{json}"
    );
    assert!(json.contains(r#""flags":257"#), "{json}");
    assert!(json.contains(r#"{"intValue":"12"}"#), "{json}");
}

#[test]
fn accepts_url_safe_and_unpadded_base64() {
    for encoded in ["+/8=", "+/8", "-_8=", "-_8"] {
        let request = decode(&with_span(&format!(
            r#"{{"attributes":[{{"key":"b","value":{{"bytesValue":"{encoded}"}}}}]}}"#
        )));
        assert_eq!(
            span0(&request).attributes[0],
            kv("b", Value::BytesValue(vec![0xfb, 0xff])),
            "{encoded}"
        );
    }
}

#[test]
fn rejects_a_trace_id_of_the_wrong_length() {
    let err = decode_err(&with_span(
        r#"{"traceId":"5b8efff798038103d269b633813fc6"}"#,
    ));
    assert!(
        err.starts_with(
            r#"resourceSpans[0].scopeSpans[0].spans[0].traceId: invalid traceId "5b8efff798038103d269b633813fc6": expected 32 hex digits"#
        ),
        "{err}"
    );
    let err = decode_err(&with_span(
        r#"{"spanId":"5b8efff798038103d269b633813fc60c"}"#,
    ));
    assert!(err.contains(r#"spans[0].spanId: invalid spanId"#), "{err}");
    assert!(err.contains("expected 16 hex digits"), "{err}");
    // Base64 of 16 bytes, which proto3 JSON would use for bytes: not OTLP.
    let err = decode_err(&with_span(r#"{"traceId":"W47/95gDgQPSabYzgT/GDA=="}"#));
    assert!(err.contains("traceId: invalid traceId"), "{err}");
}

#[test]
fn rejects_bad_hex() {
    let err = decode_err(&with_span(
        r#"{"links":[{},{"spanId":"eee19b7ec3c1b17g"}]}"#,
    ));
    assert!(
        err.starts_with(
            r#"resourceSpans[0].scopeSpans[0].spans[0].links[1].spanId: invalid spanId "eee19b7ec3c1b17g": expected 16 hex digits"#
        ),
        "{err}"
    );
    let err = decode_err(&with_span(r#"{"parentSpanId":"xyz"}"#));
    assert!(
        err.contains(r#"parentSpanId: invalid parentSpanId "xyz": expected 16 hex digits"#),
        "{err}"
    );
    let err = decode_err(&with_span(r#"{"traceId":12}"#));
    assert!(err.contains("traceId: invalid type: integer `12`"), "{err}");
}

#[test]
fn rejects_a_bad_enum_name() {
    let err = decode_err(&with_span(r#"{"kind":"SPAN_KIND_SERVR"}"#));
    assert!(
        err.starts_with(
            r#"resourceSpans[0].scopeSpans[0].spans[0].kind: invalid kind "SPAN_KIND_SERVR""#
        ),
        "{err}"
    );
    let err = decode_err(&with_span(r#"{"status":{"code":"ERROR"}}"#));
    assert!(
        err.contains(r#"spans[0].status.code: invalid code "ERROR""#),
        "{err}"
    );
    let err = decode_err(&with_span(r#"{"kind":4294967296}"#));
    assert!(err.contains("spans[0].kind: invalid value"), "{err}");
}

#[test]
fn rejects_bad_integers() {
    let err = decode_err(&with_span(
        r#"{"attributes":[{"key":"a","value":{"intValue":"1"}},{"key":"b","value":{"intValue":"abc"}}]}"#,
    ));
    assert!(
        err.starts_with(
            r#"resourceSpans[0].scopeSpans[0].spans[0].attributes[1].value.intValue: invalid value: string "abc""#
        ),
        "{err}"
    );
    for (field, value) in [
        ("startTimeUnixNano", "-1"),
        ("startTimeUnixNano", r#""-1""#),
        ("startTimeUnixNano", "18446744073709551616"),
        ("endTimeUnixNano", r#""18446744073709551616""#),
        ("endTimeUnixNano", "1.5"),
        ("endTimeUnixNano", r#""""#),
        ("endTimeUnixNano", "true"),
        ("flags", "4294967296"),
        ("droppedLinksCount", r#""x""#),
    ] {
        let err = decode_err(&with_span(&format!(r#"{{"{field}":{value}}}"#)));
        assert!(
            err.starts_with(&format!(
                "resourceSpans[0].scopeSpans[0].spans[0].{field}: invalid "
            )),
            "{field}={value}: {err}"
        );
    }
    let err = decode_err(&with_span(
        r#"{"attributes":[{"key":"k","value":{"kvlistValue":{"values":[{"key":"x","value":{"intValue":9223372036854775808}}]}}}]}"#,
    ));
    assert!(
        err.contains("attributes[0].value.kvlistValue.values[0].value.intValue: invalid value"),
        "{err}"
    );
}

#[test]
fn rejects_bad_values() {
    for (value, message) in [
        (
            r#"{"doubleValue":"nan"}"#,
            "value.doubleValue: invalid value",
        ),
        (
            r#"{"doubleValue":"1.0x"}"#,
            "value.doubleValue: invalid value",
        ),
        (r#"{"boolValue":"true"}"#, "value.boolValue: invalid type"),
        (r#"{"stringValue":1}"#, "value.stringValue: invalid type"),
        (r#"{"bytesValue":"!!"}"#, "value.bytesValue: invalid base64"),
        (r#"{"arrayValue":[]}"#, "value.arrayValue: invalid type"),
        (
            r#"{"stringValue":"a","intValue":"1"}"#,
            "value.intValue: AnyValue has more than one value: stringValue and intValue",
        ),
    ] {
        let err = decode_err(&with_span(&format!(
            r#"{{"attributes":[{{"key":"k","value":{value}}}]}}"#
        )));
        assert!(
            err.starts_with(&format!(
                "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].{message}"
            )),
            "{value}: {err}"
        );
    }
}

#[test]
fn reports_malformed_json_as_serde_json_does() {
    for json in ["", "{", r#"{"resourceSpans":[}"#, "{} x", "{\"a\":tru}"] {
        let err = decode_err(json);
        let serde_err = serde_json::from_str::<serde::de::IgnoredAny>(json).unwrap_err();
        assert_eq!(err, serde_err.to_string(), "{json}");
    }
    // Deep inside too: no path, since a syntax error has no field.
    let err = decode_err(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"a",}]}]}]}"#);
    assert_eq!(err, "trailing comma at line 1 column 56");
    let err = decode_err("[]");
    assert!(
        err.starts_with(
            "invalid type: sequence, expected an OTLP/JSON ExportTraceServiceRequest object"
        ),
        "{err}"
    );
    let err = decode_err("null");
    assert!(err.starts_with("invalid type: null"), "{err}");
    let err = decode_err(r#"{"resourceSpans":{}}"#);
    assert!(
        err.starts_with(
            "resourceSpans: invalid type: map, expected an array of OTLP/JSON ResourceSpans objects"
        ),
        "{err}"
    );
}

#[test]
fn fails_cleanly_on_deep_nesting() {
    // serde_json's recursion limit stops this long before the stack runs out.
    let depth = 10_000;
    let json = with_span(&format!(
        r#"{{"attributes":[{{"key":"k","value":{}1{}}}]}}"#,
        r#"{"arrayValue":{"values":["#.repeat(depth),
        "]}}".repeat(depth)
    ));
    let err = decode_err(&json);
    assert!(err.starts_with("recursion limit exceeded"), "{err}");
}

#[test]
fn shortens_huge_bad_values_in_errors() {
    let huge = "g".repeat(100_000);
    let err = decode_err(&with_span(&format!(r#"{{"traceId":"{huge}"}}"#)));
    assert!(err.len() < 300, "{err}");
    let err = decode_err(&with_span(&format!(r#"{{"startTimeUnixNano":"{huge}"}}"#)));
    assert!(err.len() < 300, "{err}");
}

#[test]
fn a_bounded_decoding_leaves_out_invalid_spans_and_stops_past_its_budget() {
    let json = concat!(
        r#"{"resourceSpans":[{"resource":{"entityRefs":[{"idKeys":["a","b"],"descriptionKeys":[null]}]},"#,
        r#""scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"},"#,
        r#"{},{"traceId":"00000000000000000000000000000000","spanId":"eee19b7ec3c1b174"}]}]}]}"#,
    );
    // Every element of every repeated field kept, at its size in memory: strings too.
    let size = size_of::<ResourceSpans>()
        + size_of::<EntityRef>()
        + 3 * size_of::<String>()
        + size_of::<ScopeSpans>()
        + size_of::<Span>();
    let kept = decode_traces_within(json.as_bytes(), size).expect("exactly the budget");
    assert_eq!(kept.invalid, 2, "an empty and an all-zero trace id");
    let mut all = decode(json);
    all.resource_spans[0].scope_spans[0].spans.truncate(1);
    assert_eq!(kept.request, all);
    assert_eq!(
        decode_traces_within(json.as_bytes(), size - 1).unwrap_err(),
        DecodeError::OverBudget { budget: size - 1 }
    );
}
