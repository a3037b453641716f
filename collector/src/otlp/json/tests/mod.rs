//! Tests of the OTLP/JSON codec, one file per signal; the values they share are here.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

mod logs;
mod metrics;
mod traces;

/// `encode` applied to `items`, as a string.
fn encoded<T>(items: &[T], encode: fn(&[T], &mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    encode(items, &mut out);
    String::from_utf8(out).expect("UTF-8")
}

/// A resource with every field set.
fn full_resource() -> Resource {
    Resource {
        attributes: vec![kv("service.name", Value::StringValue("svc".into()))],
        dropped_attributes_count: 5,
        entity_refs: vec![EntityRef {
            schema_url: "https://opentelemetry.io/schemas/1.0.0".into(),
            r#type: "service".into(),
            id_keys: vec!["service.name".into(), String::new()],
            description_keys: vec!["service.version".into()],
        }],
    }
}

/// A scope with every field set.
fn full_scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "my.library".into(),
        version: "1.0.0".into(),
        attributes: vec![kv("scope.attr", Value::IntValue(1))],
        dropped_attributes_count: 6,
    }
}

/// The resource of the examples in opentelemetry-proto's `examples/`.
fn spec_resource() -> Resource {
    Resource {
        attributes: vec![kv("service.name", Value::StringValue("my.service".into()))],
        ..Resource::default()
    }
}

/// The scope of the examples in opentelemetry-proto's `examples/`.
fn spec_scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "my.library".into(),
        version: "1.0.0".into(),
        attributes: vec![kv(
            "my.scope.attribute",
            Value::StringValue("some scope attribute".into()),
        )],
        dropped_attributes_count: 0,
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn every_kind_of_value() -> Vec<KeyValue> {
    vec![
        kv(
            "s",
            Value::StringValue("quote \" backslash \\ nl \n tab \t nul \0 é ☃ 😀".into()),
        ),
        kv("empty-string", Value::StringValue(String::new())),
        kv("t", Value::BoolValue(true)),
        kv("f", Value::BoolValue(false)),
        kv("zero", Value::IntValue(0)),
        kv("neg", Value::IntValue(-42)),
        kv("min", Value::IntValue(i64::MIN)),
        kv("max", Value::IntValue(i64::MAX)),
        kv("d", Value::DoubleValue(0.1)),
        kv("d-neg", Value::DoubleValue(-2.5e-300)),
        kv("d-big", Value::DoubleValue(1.7976931348623157e308)),
        kv("d-int", Value::DoubleValue(3.0)),
        kv("d-zero", Value::DoubleValue(0.0)),
        kv("inf", Value::DoubleValue(f64::INFINITY)),
        kv("-inf", Value::DoubleValue(f64::NEG_INFINITY)),
        kv(
            "bytes",
            Value::BytesValue(vec![0, 1, 2, 0xfb, 0xff, 0xfe, 0x7f]),
        ),
        kv("no-bytes", Value::BytesValue(Vec::new())),
        kv(
            "array",
            Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(Value::IntValue(1)),
                    },
                    AnyValue { value: None },
                    AnyValue {
                        value: Some(Value::ArrayValue(ArrayValue {
                            values: vec![AnyValue {
                                value: Some(Value::KvlistValue(KeyValueList {
                                    values: vec![kv("deep", Value::BoolValue(true))],
                                })),
                            }],
                        })),
                    },
                    AnyValue {
                        value: Some(Value::ArrayValue(ArrayValue::default())),
                    },
                ],
            }),
        ),
        kv(
            "kvlist",
            Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("a", Value::StringValue("x".into())),
                    KeyValue {
                        key: "unset".into(),
                        value: None,
                        key_strindex: 0,
                    },
                    kv(
                        "nested",
                        Value::KvlistValue(KeyValueList {
                            values: vec![kv("b", Value::DoubleValue(-1.5))],
                        }),
                    ),
                ],
            }),
        ),
        kv("empty-kvlist", Value::KvlistValue(KeyValueList::default())),
        KeyValue {
            key: "empty-value".into(),
            value: Some(AnyValue { value: None }),
            key_strindex: 0,
        },
        kv("strindex", Value::StringValueStrindex(7)),
        KeyValue {
            key: String::new(),
            value: None,
            key_strindex: 3,
        },
    ]
}
