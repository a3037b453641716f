//! Spans as JSON records in the shape `tests/python/send_traces.py` writes for what the
//! Python OTel SDK sent, so tests can compare the collector's output field by field.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde_json::{Value as Json, json};

/// One attribute value as `{"string": ...}`, `{"int": ...}`, ...
pub fn any_json(v: Option<&AnyValue>) -> Json {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => json!({ "string": s }),
        Some(Value::BoolValue(b)) => json!({ "bool": b }),
        Some(Value::IntValue(i)) => json!({ "int": i }),
        Some(Value::DoubleValue(d)) => json!({ "double": d }),
        Some(Value::ArrayValue(a)) => {
            json!({ "array": a.values.iter().map(|v| any_json(Some(v))).collect::<Vec<_>>() })
        }
        other => json!({ "unexpected": format!("{other:?}") }),
    }
}

/// Attributes as a JSON object (order-insensitive).
pub fn attrs_json(attrs: &[KeyValue]) -> Json {
    Json::Object(
        attrs
            .iter()
            .map(|kv| (kv.key.clone(), any_json(kv.value.as_ref())))
            .collect(),
    )
}

/// The collector's output, keyed by hex span id, in the same shape as the Python script's record of what it sent.
pub fn output_json(rs: &[ResourceSpans]) -> HashMap<String, Json> {
    let mut out = HashMap::new();
    for r in rs {
        let resource = attrs_json(
            &r.resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default(),
        );
        for ss in &r.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| json!([s.name, s.version]))
                .unwrap_or(json!(["", ""]));
            for s in &ss.spans {
                let status = s.status.clone().unwrap_or_default();
                let span_id = hex::encode(&s.span_id);
                let prev = out.insert(
                    span_id.clone(),
                    json!({
                        "trace_id": hex::encode(&s.trace_id),
                        "span_id": span_id,
                        "parent_span_id": hex::encode(&s.parent_span_id),
                        "name": s.name,
                        "kind": s.kind,
                        "start_time_unix_nano": s.start_time_unix_nano,
                        "end_time_unix_nano": s.end_time_unix_nano,
                        "attributes": attrs_json(&s.attributes),
                        "events": s.events.iter().map(|e| json!({
                            "name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": attrs_json(&e.attributes)
                        })).collect::<Vec<_>>(),
                        "links": s.links.iter().map(|l| json!({
                            "trace_id": hex::encode(&l.trace_id), "span_id": hex::encode(&l.span_id), "attributes": attrs_json(&l.attributes)
                        })).collect::<Vec<_>>(),
                        "status_code": status.code,
                        "status_message": status.message,
                        "resource": resource,
                        "scope": scope,
                    }),
                );
                assert!(
                    prev.is_none(),
                    "span {} written twice",
                    hex::encode(&s.span_id)
                );
            }
        }
    }
    out
}
