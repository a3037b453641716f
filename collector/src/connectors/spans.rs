//! The spans of a batch as the trace connectors read them, from the decoded structures or
//! straight out of the batch's checked protobuf bytes, alike: a [`SpanRef`] borrows
//! everything it shows, so reading a span allocates nothing.

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prost::Message;
use wasmcol_plugin_sdk::wire::{FieldValue, Fields};

use crate::otlp::wire::{SpanView, TracesView};

/// A span's attributes: decoded, or the `Span` message body (attributes are field 9).
#[derive(Clone, Copy)]
pub(crate) enum Attributes<'a> {
    Decoded(&'a [KeyValue]),
    Encoded(&'a [u8]),
}

/// An attribute's value: decoded, or the `AnyValue` message body.
pub(crate) enum Value<'a> {
    Decoded(&'a AnyValue),
    Encoded(Cow<'a, [u8]>),
}

impl<'a> Attributes<'a> {
    /// The value of the first attribute named `key`: `None` without one, `Some(None)` when
    /// that attribute has no value (as prost decodes it: `value` absent).
    pub(crate) fn get(self, key: &str) -> Option<Option<Value<'a>>> {
        match self {
            Attributes::Decoded(list) => list
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| kv.value.as_ref().map(Value::Decoded)),
            Attributes::Encoded(body) => encoded_attribute(body, key),
        }
    }
}

/// The first `KeyValue` (field 9 of a `Span` body) whose key is `key`. Within a `KeyValue`,
/// the last `key` wins and occurrences of `value` merge, as in prost.
fn encoded_attribute<'a>(span: &'a [u8], key: &str) -> Option<Option<Value<'a>>> {
    for field in Fields::new(span) {
        let (9, FieldValue::Len(kv)) = field else {
            continue;
        };
        let mut k: &[u8] = &[];
        let mut value: Option<Cow<'a, [u8]>> = None;
        for f in Fields::new(kv) {
            match f {
                (1, FieldValue::Len(b)) => k = b,
                (2, FieldValue::Len(b)) => {
                    value = Some(match value {
                        None => Cow::Borrowed(b),
                        Some(prev) => {
                            let mut all = prev.into_owned();
                            all.extend_from_slice(b);
                            Cow::Owned(all)
                        }
                    })
                }
                _ => {}
            }
        }
        if k == key.as_bytes() {
            return Some(value.map(Value::Encoded));
        }
    }
    None
}

impl Value<'_> {
    /// The string when the value is a plain `string_value` (the common case, read without
    /// decoding); `None` for anything else.
    fn plain_str(&self) -> Option<&str> {
        match self {
            Value::Decoded(v) => match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s),
                _ => None,
            },
            Value::Encoded(body) => {
                let mut fields = Fields::new(body);
                match (fields.next(), fields.next()) {
                    (Some((1, FieldValue::Len(s))), None) => std::str::from_utf8(s).ok(),
                    _ => None,
                }
            }
        }
    }

    /// The value decoded (allocates for strings and nested values).
    pub(crate) fn to_any_value(&self) -> AnyValue {
        match self {
            Value::Decoded(v) => (*v).clone(),
            Value::Encoded(body) => AnyValue::decode(&body[..]).unwrap_or_default(),
        }
    }

    /// Appends the value as prost encodes it, length-delimited: equal for equal values,
    /// whichever form they come in.
    pub(crate) fn encode_length_delimited(&self, out: &mut Vec<u8>) {
        use prost::encoding::{encode_varint, encoded_len_varint};
        if let (Value::Encoded(_), Some(s)) = (self, self.plain_str()) {
            // What prost writes for `AnyValue { string_value: s }`.
            let len = s.len();
            encode_varint((1 + encoded_len_varint(len as u64) + len) as u64, out);
            out.push(0x0a);
            encode_varint(len as u64, out);
            out.extend_from_slice(s.as_bytes());
            return;
        }
        let encode = |v: &AnyValue, out: &mut Vec<u8>| {
            v.encode_length_delimited(out)
                .expect("a Vec grows as needed")
        };
        match self {
            Value::Decoded(v) => encode(v, out),
            Value::Encoded(_) => encode(&self.to_any_value(), out),
        }
    }

    /// The value as text when it is a string, bool, int or double (`None` otherwise), as the
    /// service graph labels show it. Borrowed for strings.
    pub(crate) fn text(&self) -> Option<Cow<'_, str>> {
        if let Some(s) = self.plain_str() {
            return Some(Cow::Borrowed(s));
        }
        let owned;
        let v = match self {
            Value::Decoded(v) => *v,
            Value::Encoded(_) => {
                owned = self.to_any_value();
                &owned
            }
        };
        Some(Cow::Owned(match v.value.as_ref()? {
            any_value::Value::StringValue(s) => s.clone(),
            any_value::Value::IntValue(i) => i.to_string(),
            any_value::Value::BoolValue(b) => b.to_string(),
            any_value::Value::DoubleValue(d) => d.to_string(),
            _ => return None,
        }))
    }
}

/// One span, borrowed from either form.
pub(crate) struct SpanRef<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub trace_state: &'a str,
    pub name: &'a str,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    /// `status.code`, 0 (unset) without a status.
    pub status_code: i32,
    pub attributes: Attributes<'a>,
}

impl<'a> From<&'a Span> for SpanRef<'a> {
    fn from(span: &'a Span) -> Self {
        SpanRef {
            trace_id: &span.trace_id,
            span_id: &span.span_id,
            parent_span_id: &span.parent_span_id,
            trace_state: &span.trace_state,
            name: &span.name,
            kind: span.kind,
            start_time_unix_nano: span.start_time_unix_nano,
            end_time_unix_nano: span.end_time_unix_nano,
            status_code: span.status.as_ref().map_or(0, |s| s.code),
            attributes: Attributes::Decoded(&span.attributes),
        }
    }
}

impl<'a> From<SpanView<'a>> for SpanRef<'a> {
    fn from(span: SpanView<'a>) -> Self {
        SpanRef {
            trace_id: span.trace_id(),
            span_id: span.span_id(),
            parent_span_id: span.parent_span_id(),
            trace_state: span.trace_state(),
            name: span.name(),
            kind: span.kind(),
            start_time_unix_nano: span.start_time_unix_nano(),
            end_time_unix_nano: span.end_time_unix_nano(),
            status_code: span.status_code(),
            attributes: Attributes::Encoded(span.encoded()),
        }
    }
}

/// Calls `each` with every resource's attributes and its spans: read from the protobuf
/// parts, which must have passed validation, or from the decoded resources. Only the
/// resources (a few per batch) are decoded from the bytes.
pub(crate) fn for_each_resource<'p>(
    parts: Option<impl Iterator<Item = &'p [u8]>>,
    decoded: impl FnOnce() -> &'p [ResourceSpans],
    mut each: impl FnMut(&[KeyValue], &mut dyn Iterator<Item = SpanRef<'_>>),
) {
    match parts {
        Some(parts) => {
            for part in parts {
                for rs in TracesView::new(part).resource_spans() {
                    let resource = rs
                        .resource()
                        .map(|r| Resource::decode(&r[..]).unwrap_or_default())
                        .unwrap_or_default();
                    let mut spans = rs.scope_spans().flat_map(|s| s.spans()).map(SpanRef::from);
                    each(&resource.attributes, &mut spans);
                }
            }
        }
        None => {
            for rs in decoded() {
                let resource: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
                let mut spans = rs
                    .scope_spans
                    .iter()
                    .flat_map(|s| &s.spans)
                    .map(SpanRef::from);
                each(resource, &mut spans);
            }
        }
    }
}
