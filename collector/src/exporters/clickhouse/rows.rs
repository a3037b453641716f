//! Spans as ClickHouse `RowBinary` rows, one per span, columns in [`INSERT_COLUMNS`] order.
//!
//! RowBinary is the input format ClickHouse parses cheapest (no text to parse, no escaping),
//! and it is cheap to produce: integers little-endian, strings and arrays prefixed by a LEB128
//! length, a `Map` as its length then key, value, key, value. `LowCardinality(String)` is sent
//! as a plain `String`; `DateTime64(9)` as nanoseconds in an `Int64`.
//!
//! Values follow the OpenTelemetry Collector's ClickHouse exporter, so rows written by either
//! look alike: ids in lower-case hex (empty when all zero), kinds `SPAN_KIND_SERVER`, ...,
//! status codes `STATUS_CODE_UNSET`, `STATUS_CODE_OK`, `STATUS_CODE_ERROR` (the proto enum names
//! that exporter writes), attribute values as strings (arrays and maps as JSON,
//! bytes as base64).
//!
//! This encoder takes decoded spans: a batch a stage has decoded or rebuilt. A batch still
//! holding the protobuf it was received as goes through [`super::rows_wire`], which writes
//! the same rows from the bytes (held to this encoder by a differential test).
//!
//! [`INSERT_COLUMNS`]: super::schema::INSERT_COLUMNS

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};

/// Appends one row per span to `out`; returns the number of rows.
pub fn encode(resource_spans: &[ResourceSpans], out: &mut Vec<u8>) -> usize {
    encode_chunked(resource_spans, out, usize::MAX, &mut |_| {})
}

/// [`encode`], handing the rows over as they are written: whenever `out` holds `chunk` bytes
/// or more after a row, they go to `flush` and `out` is cleared. The rows written after the
/// last flush are left in `out`.
pub fn encode_chunked(
    resource_spans: &[ResourceSpans],
    out: &mut Vec<u8>,
    chunk: usize,
    flush: &mut dyn FnMut(&[u8]),
) -> usize {
    let mut rows = 0;
    for rs in resource_spans {
        let resource_attrs: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
        let service = service_name(resource_attrs);
        // The resource's map is the same for every span under it: encode it once.
        let mut resource_map = Vec::new();
        put_map(&mut resource_map, resource_attrs);
        for ss in &rs.scope_spans {
            let (scope_name, scope_version) = ss
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            for span in &ss.spans {
                put_span(
                    out,
                    span,
                    &service,
                    &resource_map,
                    scope_name,
                    scope_version,
                );
                rows += 1;
                if out.len() >= chunk {
                    flush(out);
                    out.clear();
                }
            }
        }
    }
    rows
}

fn put_span(
    out: &mut Vec<u8>,
    span: &Span,
    service: &str,
    resource_map: &[u8],
    scope_name: &str,
    scope_version: &str,
) {
    put_time(out, span.start_time_unix_nano);
    put_id(out, &span.trace_id);
    put_id(out, &span.span_id);
    put_id(out, &span.parent_span_id);
    put_str(out, &span.trace_state);
    put_str(out, &span.name);
    put_str(out, kind_name(span.kind));
    put_str(out, service);
    out.extend_from_slice(resource_map);
    put_str(out, scope_name);
    put_str(out, scope_version);
    put_map(out, &span.attributes);
    // An end before the start (clock trouble at the sender) is a zero duration, not a
    // wrapped-around one.
    let duration = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);
    out.extend_from_slice(&duration.to_le_bytes());
    let status = span.status.as_ref();
    put_str(out, status_name(status.map_or(0, |s| s.code)));
    put_str(out, status.map_or("", |s| s.message.as_str()));

    put_len(out, span.events.len());
    for e in &span.events {
        put_time(out, e.time_unix_nano);
    }
    put_len(out, span.events.len());
    for e in &span.events {
        put_str(out, &e.name);
    }
    put_len(out, span.events.len());
    for e in &span.events {
        put_map(out, &e.attributes);
    }

    put_len(out, span.links.len());
    for l in &span.links {
        put_id(out, &l.trace_id);
    }
    put_len(out, span.links.len());
    for l in &span.links {
        put_id(out, &l.span_id);
    }
    put_len(out, span.links.len());
    for l in &span.links {
        put_str(out, &l.trace_state);
    }
    put_len(out, span.links.len());
    for l in &span.links {
        put_map(out, &l.attributes);
    }
}

/// The names the OpenTelemetry Collector's exporter writes.
pub fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "SPAN_KIND_INTERNAL",
        Ok(SpanKind::Server) => "SPAN_KIND_SERVER",
        Ok(SpanKind::Client) => "SPAN_KIND_CLIENT",
        Ok(SpanKind::Producer) => "SPAN_KIND_PRODUCER",
        Ok(SpanKind::Consumer) => "SPAN_KIND_CONSUMER",
        Ok(SpanKind::Unspecified) | Err(_) => "SPAN_KIND_UNSPECIFIED",
    }
}

/// The names the OpenTelemetry Collector's exporter writes.
pub fn status_name(code: i32) -> &'static str {
    match StatusCode::try_from(code) {
        Ok(StatusCode::Ok) => "STATUS_CODE_OK",
        Ok(StatusCode::Error) => "STATUS_CODE_ERROR",
        Ok(StatusCode::Unset) | Err(_) => "STATUS_CODE_UNSET",
    }
}

/// `DateTime64(9)`: nanoseconds since the epoch in an Int64 (times past 2262 are clamped).
pub(super) fn put_time(out: &mut Vec<u8>, unix_nano: u64) {
    let t = i64::try_from(unix_nano).unwrap_or(i64::MAX);
    out.extend_from_slice(&t.to_le_bytes());
}

/// LEB128, as RowBinary prefixes strings, arrays and maps.
pub(super) fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// A trace or span id in lower-case hex; empty when absent or all zero (an invalid id).
pub(super) fn put_id(out: &mut Vec<u8>, id: &[u8]) {
    if id.iter().all(|b| *b == 0) {
        put_len(out, 0);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    put_len(out, id.len() * 2);
    // Rendered 16 bytes (a trace id) at a time and appended at once: a push per digit costs a
    // capacity check each, which showed in profiles.
    let mut hex = [0u8; 32];
    for chunk in id.chunks(16) {
        for (pair, b) in hex.chunks_exact_mut(2).zip(chunk) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        out.extend_from_slice(&hex[..chunk.len() * 2]);
    }
}

/// The resource's `service.name`, as the `ServiceName` column holds it (empty without one).
pub(super) fn service_name(resource_attrs: &[KeyValue]) -> String {
    resource_attrs
        .iter()
        .find(|kv| kv.key == "service.name")
        .map(|kv| value_string(kv.value.as_ref()))
        .unwrap_or_default()
}

/// `Map(LowCardinality(String), String)`: the attributes, values rendered by [`value_string`].
pub(super) fn put_map(out: &mut Vec<u8>, attrs: &[KeyValue]) {
    put_len(out, attrs.len());
    for kv in attrs {
        put_str(out, &kv.key);
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            // The common case, without an intermediate String.
            Some(Value::StringValue(s)) => put_str(out, s),
            _ => put_str(out, &value_string(kv.value.as_ref())),
        }
    }
}

/// An attribute value as the OpenTelemetry Collector renders it (`pcommon.Value.AsString`).
pub fn value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        // A string-table index only means something in profiles, which carry the table.
        None | Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => float_string(*d),
        Some(Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b),
        Some(other @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => {
            to_json(Some(other)).to_string()
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest exact decimal, never an exponent.
/// Rust's `Display` for `f64` is the same apart from the infinities.
pub(super) fn float_string(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    d.to_string()
}

fn to_json(v: Option<&Value>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        None | Some(Value::StringValueStrindex(_)) => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(float_string(*d)), J::Number)
        }
        Some(Value::BytesValue(b)) => {
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Value::ArrayValue(a)) => {
            J::Array(a.values.iter().map(|v| to_json(v.value.as_ref())).collect())
        }
        Some(Value::KvlistValue(kvs)) => J::Object(
            kvs.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        to_json(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
    }
}
