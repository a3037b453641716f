//! Spans for the trace connectors' tests: varied enough to reach every branch of the span
//! reader ([`super::spans`]), as decoded requests and as the bytes a receiver passes on.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// A second, in nanoseconds.
pub(crate) const SECOND: u64 = 1_000_000_000;
/// A millisecond, in nanoseconds.
const MS: u64 = 1_000_000;

/// A string attribute.
pub(crate) fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A span named `name` of `kind` lasting `ms` milliseconds.
pub(crate) fn span(name: &str, kind: i32, ms: u64) -> Span {
    Span {
        name: name.into(),
        kind,
        start_time_unix_nano: SECOND,
        end_time_unix_nano: SECOND + ms * MS,
        ..Default::default()
    }
}

/// Service `service`'s resource (on host `h1`) with `spans` in one scope.
pub(crate) fn resource(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![text("service.name", service), text("host.name", "h1")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Spans of every kind, status and sampling threshold, with dimensions of every value type
/// in the span or its resource, as two export requests.
pub(crate) fn varied_spans() -> Vec<Vec<ResourceSpans>> {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    let value = |v: any_value::Value| Some(AnyValue { value: Some(v) });
    let mut spans = Vec::new();
    for (i, kind) in [0, 1, 2, 3, 4, 5, 9].into_iter().enumerate() {
        for code in [0, 1, 2, 7] {
            let mut s = span(
                &format!("op{}", i % 3),
                kind,
                1 + 7 * i as u64 + code as u64,
            );
            // Kind i's span is the parent of kind i + 1's in trace `code`: servers under
            // clients, consumers under producers, and root spans.
            s.trace_id = vec![code as u8 + 1; 16];
            s.span_id = vec![i as u8 + 1; 8];
            if i % 2 == 1 {
                s.parent_span_id = vec![i as u8; 8];
            }
            if code != 0 || i % 2 == 0 {
                s.status = Some(Status {
                    code,
                    ..Default::default()
                });
            }
            s.trace_state =
                ["", "ot=th:8", "vendor=x, ot=th:c", "ot=p:3"][(i + code as usize) % 4].into();
            match (i + code as usize) % 6 {
                0 => s.attributes.push(text("http.method", "POST")),
                1 => s.attributes.push(KeyValue {
                    key: "http.method".into(),
                    value: value(any_value::Value::IntValue(7)),
                    ..Default::default()
                }),
                2 => s.attributes.push(KeyValue {
                    key: "http.method".into(),
                    value: value(any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(any_value::Value::BoolValue(true)),
                        }],
                    })),
                    ..Default::default()
                }),
                3 => s.attributes.push(KeyValue {
                    key: "host.name".into(),
                    value: None,
                    ..Default::default()
                }),
                4 => s.attributes.push(KeyValue {
                    key: "http.method".into(),
                    value: value(any_value::Value::DoubleValue(1.5)),
                    ..Default::default()
                }),
                _ => {}
            }
            s.attributes
                .push(text("db.name", ["", "orders", "users"][i % 3]));
            s.attributes.push(text("peer.service", "payments"));
            s.attributes.push(text("http.method", "shadowed"));
            spans.push(s);
        }
    }
    // Servers answering the clients (kind 3, span id 4), in the other resource.
    let mut servers: Vec<Span> = (0..4)
        .map(|code| {
            let mut s = span("serve", 2, 2 + code);
            s.trace_id = vec![code as u8 + 1; 16];
            s.span_id = vec![20; 8];
            s.parent_span_id = vec![4; 8];
            s.attributes.push(text("http.method", "GET"));
            s
        })
        .collect();
    let (first, second) = spans.split_at(spans.len() / 2);
    servers.extend_from_slice(second);
    let second = &servers[..];
    let mut other = resource("cart", second.to_vec());
    other
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(text("http.method", "PUT"));
    vec![
        vec![resource("checkout", first.to_vec()), resource("", vec![])],
        vec![other, resource("checkout", second[..3].to_vec())],
    ]
}

/// The export requests' bytes, checked as a receiver checks them.
pub(crate) fn encoded(requests: &[Vec<ResourceSpans>]) -> Vec<Vec<u8>> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    requests
        .iter()
        .map(|rs| {
            let bytes = ExportTraceServiceRequest {
                resource_spans: rs.clone(),
            }
            .encode_to_vec();
            crate::otlp::wire::validate(&bytes).expect("valid");
            bytes
        })
        .collect()
}
