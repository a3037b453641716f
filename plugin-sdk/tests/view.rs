//! View mode: the views read what prost decodes, and edits recorded through them do what the
//! mutable API's do.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as V,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, TracesData};
use prost::Message;
use wasmcol_plugin_sdk::edit::encode_batch;
use wasmcol_plugin_sdk::prelude::*;
use wasmcol_plugin_sdk::testing::{kv, resource_spans, span};
use wasmcol_plugin_sdk::view::AttributesView;
use wasmcol_plugin_sdk::{Edit, Output};

fn any(v: V) -> AnyValue {
    AnyValue { value: Some(v) }
}

fn array(values: Vec<AnyValue>) -> AnyValue {
    any(V::ArrayValue(ArrayValue { values }))
}

fn map(values: Vec<KeyValue>) -> AnyValue {
    any(V::KvlistValue(KeyValueList { values }))
}

fn attr(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

/// Every kind of value, nested.
fn varied_attributes() -> Vec<KeyValue> {
    vec![
        attr("s", any(V::StringValue("text".into()))),
        attr("b", any(V::BoolValue(true))),
        attr("i", any(V::IntValue(-42))),
        attr("d", any(V::DoubleValue(2.5))),
        attr("bytes", any(V::BytesValue(vec![0, 1, 255]))),
        attr("idx", any(V::StringValueStrindex(7))),
        attr("empty", AnyValue::default()),
        KeyValue {
            key: "none".into(),
            value: None,
            key_strindex: 3,
        },
        attr(
            "nested",
            array(vec![
                any(V::StringValue("a".into())),
                array(vec![any(V::IntValue(1)), AnyValue::default()]),
                map(vec![
                    attr("k", any(V::StringValue("v".into()))),
                    attr("deep", map(vec![attr("x", array(vec![]))])),
                    KeyValue {
                        key: "nothing".into(),
                        ..Default::default()
                    },
                ]),
            ]),
        ),
        attr("dup", any(V::IntValue(1))),
        attr("dup", any(V::IntValue(2))),
    ]
}

fn varied_batch() -> Vec<ResourceSpans> {
    let mut full = span("full", &[]);
    full.attributes = varied_attributes();
    full.status = Some(Status {
        message: "boom".into(),
        code: 2,
    });
    full.events = vec![
        Event {
            time_unix_nano: 5,
            name: "ev0".into(),
            attributes: varied_attributes(),
            ..Default::default()
        },
        Event {
            name: "ev1".into(),
            ..Default::default()
        },
    ];
    full.links = vec![Link {
        trace_id: vec![9; 16],
        span_id: vec![8; 8],
        attributes: vec![kv("peer", "p".into())],
        ..Default::default()
    }];
    let mut second = resource_spans("two", vec![span("a", &[]), span("b", &[])]);
    second.scope_spans.push(ScopeSpans {
        scope: Some(InstrumentationScope {
            name: "lib".into(),
            version: "1.0".into(),
            attributes: vec![kv("scope.k", "v".into())],
            ..Default::default()
        }),
        spans: vec![span("c", &[("x", Value::Int(1))])],
        ..Default::default()
    });
    vec![
        resource_spans("one", vec![full, span("plain", &[])]),
        second,
        // No resource and no scope at all.
        ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "bare".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    ]
}

/// What the views say about one span, in the decoded types.
#[derive(Debug, PartialEq)]
struct Seen {
    index: u32,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    status: Option<(i32, String)>,
    attributes: Vec<KeyValue>,
    events: Vec<(String, Vec<KeyValue>)>,
    links: Vec<Vec<KeyValue>>,
    resource: Vec<KeyValue>,
    scope: Vec<KeyValue>,
}

fn seen_by_views(batch: &mut Batch) -> Vec<Seen> {
    let mut out = Vec::new();
    batch.for_each_span_view(|s| {
        out.push(Seen {
            index: s.index(),
            name: s.name().to_string(),
            trace_id: s.trace_id().to_vec(),
            span_id: s.span_id().to_vec(),
            status: s.status().map(|st| (st.code, st.message.to_string())),
            attributes: s.attributes().to_key_values(),
            events: s
                .events()
                .map(|e| (e.name().to_string(), e.attributes().to_key_values()))
                .collect(),
            links: s.links().map(|l| l.attributes().to_key_values()).collect(),
            resource: s.resource_attributes().to_key_values(),
            scope: s.scope_attributes().to_key_values(),
        })
    });
    out
}

fn seen_by_prost(data: &[ResourceSpans]) -> Vec<Seen> {
    let mut out = Vec::new();
    for rs in data {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                out.push(Seen {
                    index: out.len() as u32,
                    name: s.name.clone(),
                    trace_id: s.trace_id.clone(),
                    span_id: s.span_id.clone(),
                    status: s.status.as_ref().map(|st| (st.code, st.message.clone())),
                    attributes: s.attributes.clone(),
                    events: s
                        .events
                        .iter()
                        .map(|e| (e.name.clone(), e.attributes.clone()))
                        .collect(),
                    links: s.links.iter().map(|l| l.attributes.clone()).collect(),
                    resource: rs
                        .resource
                        .as_ref()
                        .map(|r| r.attributes.clone())
                        .unwrap_or_default(),
                    scope: ss
                        .scope
                        .as_ref()
                        .map(|r| r.attributes.clone())
                        .unwrap_or_default(),
                });
            }
        }
    }
    out
}

fn check_views(bytes: Vec<u8>) {
    let decoded = TracesData::decode(&bytes[..]).unwrap().resource_spans;
    let expected = seen_by_prost(&decoded);
    assert!(!expected.is_empty());
    assert_eq!(seen_by_views(&mut Batch::from_encoded(bytes)), expected);
    // A batch built from decoded data is viewed through its encoding.
    assert_eq!(seen_by_views(&mut Batch::new(decoded)), expected);
}

#[test]
fn views_equal_prost_decoding() {
    check_views(encode_batch(&varied_batch()));
}

#[test]
fn values_and_lookups_read_like_the_decoded_attributes() {
    let attrs = varied_attributes();
    let mut batch = Batch::new(vec![resource_spans(
        "svc",
        vec![{
            let mut s = span("x", &[]);
            s.attributes = attrs.clone();
            s
        }],
    )]);
    batch.for_each_span_view(|s| {
        let view: AttributesView<'_> = s.attributes();
        assert_eq!(view.iter().count(), attrs.len());
        for (a, kv) in view.iter().zip(&attrs) {
            assert_eq!(a.key(), kv.key);
            assert_eq!(a.value.to_any_value(), kv.value.clone().unwrap_or_default());
        }
        // The first of duplicate keys, like the mutable API's lookups.
        assert!(matches!(view.get("dup"), Some(ValueView::Int(1))));
        assert_eq!(view.get_str("s"), Some("text"));
        assert!(view.get("none").is_none());
        assert!(view.get("missing").is_none());
        assert_eq!(s.service_name(), Some("svc"));
        let Some(ValueView::Array(a)) = view.get("nested") else {
            panic!("nested is an array");
        };
        assert_eq!(a.iter().count(), 3);
    });
}

/// `field` of a message, length-delimited, around `body`.
fn wrap(field: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// Concatenated encodings of one message type decode as the merge of them all.
fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn repeated_occurrences_merge_or_override_like_prost() {
    let int = |i| any(V::IntValue(i));
    let kv_bytes = |k: &str, v: AnyValue| attr(k, v).encode_to_vec();
    // The value field twice: the arrays (and maps) merge into one.
    let arrays = cat(&[
        kv_bytes("arr", array(vec![int(1), int(2)])),
        kv_bytes("", array(vec![int(3)])),
    ]);
    let maps = cat(&[
        kv_bytes("map", map(vec![attr("a", int(1))])),
        kv_bytes("", map(vec![attr("b", int(2))])),
    ]);
    // A oneof: the last member set wins, and a member set afresh does not merge.
    let oneof = cat(&[
        kv_bytes("one", array(vec![int(1)])),
        kv_bytes("", any(V::StringValue("s".into()))),
        kv_bytes("", array(vec![int(2)])),
        kv_bytes("", array(vec![int(3)])),
    ]);
    let last = cat(&[
        kv_bytes("two", array(vec![int(1)])),
        kv_bytes("renamed", any(V::IntValue(9))),
    ]);
    let span_bytes = cat(&[
        Span {
            name: "first".into(),
            status: Some(Status {
                message: "kept".into(),
                code: 0,
            }),
            attributes: vec![attr("plain", int(0))],
            ..Default::default()
        }
        .encode_to_vec(),
        wrap(9, &arrays),
        wrap(9, &maps),
        wrap(9, &oneof),
        wrap(9, &last),
        Span {
            name: "second".into(),
            status: Some(Status {
                message: String::new(),
                code: 2,
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    ]);
    let resource = |k: &str| {
        Resource {
            attributes: vec![kv(k, "v".into())],
            ..Default::default()
        }
        .encode_to_vec()
    };
    let scope = |k: &str| {
        InstrumentationScope {
            name: k.into(),
            attributes: vec![kv(k, "v".into())],
            ..Default::default()
        }
        .encode_to_vec()
    };
    let scope_spans = cat(&[
        wrap(1, &scope("s1")),
        wrap(2, &span_bytes),
        wrap(1, &scope("s2")),
    ]);
    let rs = cat(&[
        wrap(1, &resource("r1")),
        wrap(2, &scope_spans),
        wrap(1, &resource("r2")),
    ]);
    let bytes = wrap(1, &rs);

    let decoded = TracesData::decode(&bytes[..]).unwrap().resource_spans;
    let s = &decoded[0].scope_spans[0].spans[0];
    // Make sure the test exercises what it means to.
    assert_eq!(s.name, "second");
    assert_eq!(s.status.as_ref().unwrap().message, "kept");
    assert_eq!(decoded[0].resource.as_ref().unwrap().attributes.len(), 2);
    assert_eq!(
        s.attributes[1].value,
        Some(array(vec![int(1), int(2), int(3)]))
    );
    assert_eq!(s.attributes[3].value, Some(array(vec![int(2), int(3)])));
    assert_eq!(s.attributes[4].key, "renamed");

    check_views(bytes.clone());
    let mut batch = Batch::from_encoded(bytes);
    batch.for_each_scope_view(|sc| {
        assert_eq!(sc.scope().name(), "s2");
        assert_eq!(sc.attributes().iter().count(), 2);
    });
}

/// The same changes, once through each API.
macro_rules! operations {
    ($batch:expr, $resource:ident, $scope:ident, $span:ident) => {{
        let batch: &mut Batch = $batch;
        batch.$resource(|r| {
            r.set_attribute("env", "prod");
            r.remove_attribute("service.name");
            r.remove_attribute("service.name");
        });
        batch.$scope(|s| {
            s.set_attribute("scoped", Value::Int(1));
            s.remove_attribute("absent");
        });
        batch.$span(|s| match s.index() {
            0 => {
                s.set_attribute("s", "replaced");
                s.remove_attribute("i");
                s.remove_attribute("i");
                s.set_attribute("new", Value::Bool(true));
                s.remove_attribute("new");
                s.remove_attribute("dup");
                s.set_event_attribute(0, "e", "v");
                s.remove_event_attribute(0, "s");
                s.remove_event_attribute(1, "missing");
                s.set_event_attribute(9, "ignored", "v");
                s.set_event_name(1, "renamed event");
                s.set_event_name(9, "ignored");
                s.set_link_attribute(0, "peer", Value::Double(1.5));
                s.remove_link_attribute(0, "peer");
                s.set_link_attribute(3, "ignored", "v");
                s.set_name("renamed");
                s.set_status(StatusCode::Ok, "fine");
            }
            1 | 4 => {
                s.drop_span();
                s.drop_span();
            }
            _ => s.set_attribute("seen", Value::Int(i64::from(s.index()))),
        });
        // Dropped spans are skipped from now on.
        let mut visits = 0;
        batch.$span(|_| visits += 1);
        assert_eq!(visits, 4);
    }};
}

#[test]
fn view_edits_equal_mutable_edits() {
    let data = varied_batch();
    let mut mutable = Batch::new(data.clone());
    operations!(
        &mut mutable,
        for_each_resource,
        for_each_scope,
        for_each_span
    );
    for mut viewed in [
        Batch::new(data.clone()),
        Batch::from_encoded(encode_batch(&data)),
    ] {
        operations!(
            &mut viewed,
            for_each_resource_view,
            for_each_scope_view,
            for_each_span_view
        );
        assert_eq!(viewed.edits(), mutable.edits());
    }

    let mut viewed = Batch::new(data.clone());
    operations!(
        &mut viewed,
        for_each_resource_view,
        for_each_scope_view,
        for_each_span_view
    );
    let from_views = viewed.into_resource_spans();
    assert_eq!(from_views, mutable.into_resource_spans());
    assert_ne!(from_views, data);
}

#[test]
fn view_mode_output_is_the_edits() {
    let data = varied_batch();
    let mut batch = Batch::from_encoded(encode_batch(&data));
    batch.for_each_span_view(|s| {
        if s.index() == 2 {
            s.set_name("n");
        }
    });
    assert_eq!(
        batch.into_output(),
        Output::Edits(vec![Edit::SetSpanName {
            span: 2,
            name: "n".into()
        }])
    );
}

#[test]
fn the_harness_runs_view_mode_plugins() {
    struct Upper;
    impl Plugin for Upper {
        fn new(_: PluginConfig) -> Result<Self, String> {
            Ok(Upper)
        }
        fn process(&mut self, batch: &mut Batch) -> Result<(), String> {
            batch.for_each_span_view(|s| {
                let n = s.name().to_uppercase();
                s.set_name(n)
            });
            Ok(())
        }
    }
    let mut h = wasmcol_plugin_sdk::testing::Harness::<Upper>::new(serde_json::json!({})).unwrap();
    let out = h
        .process(vec![resource_spans("svc", vec![span("get", &[])])])
        .unwrap();
    assert_eq!(out[0].scope_spans[0].spans[0].name, "GET");
}

#[test]
#[should_panic(expected = "not both")]
fn mixing_modes_in_one_call_is_refused() {
    let mut batch = Batch::new(varied_batch());
    batch.for_each_span_view(|_| {});
    batch.for_each_span(|_| {});
}

#[test]
fn malformed_bytes_end_iteration_without_panicking() {
    let mut bytes = encode_batch(&varied_batch());
    for cut in [1, 7, bytes.len() / 2] {
        bytes.truncate(bytes.len() - cut);
        let mut batch = Batch::from_encoded(bytes.clone());
        batch.for_each_span_view(|s| {
            for a in s.attributes() {
                let _ = a.value.to_any_value();
            }
            let _ = (s.status(), s.events().count(), s.links().count());
        });
    }
}
