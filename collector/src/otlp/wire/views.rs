//! Views: fields read straight out of validated bytes.
//!
//! The views trust that `validate` accepted their bytes and do not check again. On any other
//! input they stop at the first thing they cannot read, and they never panic: every read is
//! bounds-checked, and groups are skipped by counting levels instead of by recursion.

use std::borrow::Cow;

use wasmcol_plugin_sdk::wire::{FieldValue, Fields};

/// The bodies of every occurrence of message field `tag`.
fn messages<'a>(body: &'a [u8], tag: u32) -> impl Iterator<Item = &'a [u8]> + use<'a> {
    Fields::new(body).filter_map(move |field| match field {
        (t, FieldValue::Len(b)) if t == tag => Some(b),
        _ => None,
    })
}

/// A singular message field. protobuf merges repeated occurrences, and decoding the
/// concatenation of their bodies gives the same result.
fn merged(body: &[u8], tag: u32) -> Option<Cow<'_, [u8]>> {
    let mut out: Option<Cow<'_, [u8]>> = None;
    for b in messages(body, tag) {
        out = Some(match out {
            None => Cow::Borrowed(b),
            Some(prev) => {
                let mut all = prev.into_owned();
                all.extend_from_slice(b);
                Cow::Owned(all)
            }
        });
    }
    out
}

/// A singular length-delimited field: the last occurrence wins.
fn last_len(body: &[u8], tag: u32) -> &[u8] {
    messages(body, tag).last().unwrap_or_default()
}

fn as_str(bytes: &[u8]) -> &str {
    // Validated bytes are always UTF-8. The views cannot skip the check without `unsafe`, which
    // the workspace forbids, and other bytes are read as empty.
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// An `ExportTraceServiceRequest` (or `TracesData`) that [`validate`] accepted.
#[derive(Clone, Copy, Debug)]
pub struct TracesView<'a> {
    buf: &'a [u8],
}

impl<'a> TracesView<'a> {
    /// A view of `buf`, which should have passed [`validate`]. With any other bytes, the
    /// iterators may end early, but nothing panics.
    pub fn new(buf: &'a [u8]) -> Self {
        TracesView { buf }
    }

    /// The whole request.
    pub fn encoded(&self) -> &'a [u8] {
        self.buf
    }

    /// `resource_spans`, in order.
    pub fn resource_spans(&self) -> impl Iterator<Item = ResourceSpansView<'a>> + use<'a> {
        messages(self.buf, 1).map(|encoded| ResourceSpansView { encoded })
    }
}

/// One `ResourceSpans` of a [`TracesView`].
#[derive(Clone, Copy, Debug)]
pub struct ResourceSpansView<'a> {
    encoded: &'a [u8],
}

impl<'a> ResourceSpansView<'a> {
    /// The `ResourceSpans` message body (without its key and length).
    pub fn encoded(&self) -> &'a [u8] {
        self.encoded
    }

    /// The `Resource` message body, or `None` if the field is absent. If the field occurs more
    /// than once, the bodies are concatenated, which is how protobuf merges them. Only that
    /// case allocates.
    pub fn resource(&self) -> Option<Cow<'a, [u8]>> {
        merged(self.encoded, 1)
    }

    /// `schema_url`.
    pub fn schema_url(&self) -> &'a str {
        as_str(last_len(self.encoded, 3))
    }

    /// `scope_spans`, in order.
    pub fn scope_spans(&self) -> impl Iterator<Item = ScopeSpansView<'a>> + use<'a> {
        messages(self.encoded, 2).map(|encoded| ScopeSpansView { encoded })
    }
}

/// One `ScopeSpans` of a [`ResourceSpansView`].
#[derive(Clone, Copy, Debug)]
pub struct ScopeSpansView<'a> {
    encoded: &'a [u8],
}

impl<'a> ScopeSpansView<'a> {
    /// The `ScopeSpans` message body.
    pub fn encoded(&self) -> &'a [u8] {
        self.encoded
    }

    /// The `InstrumentationScope` message body, merged like [`ResourceSpansView::resource`].
    pub fn scope(&self) -> Option<Cow<'a, [u8]>> {
        merged(self.encoded, 1)
    }

    /// `schema_url`.
    pub fn schema_url(&self) -> &'a str {
        as_str(last_len(self.encoded, 3))
    }

    /// `spans`, in order. Each span's scalar fields are read once, when the iterator reaches
    /// the span.
    pub fn spans(&self) -> impl Iterator<Item = SpanView<'a>> + use<'a> {
        messages(self.encoded, 2).map(SpanView::new)
    }
}

/// One span of a [`ScopeSpansView`]. As prost does, it takes the last occurrence of a
/// singular field, and for `status` it merges the occurrences, so the last `code` seen in any
/// of them wins. Attributes, events and links can be read from [`SpanView::encoded`].
#[derive(Clone, Copy, Debug)]
pub struct SpanView<'a> {
    encoded: &'a [u8],
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent_span_id: &'a [u8],
    trace_state: &'a [u8],
    name: &'a [u8],
    kind: i32,
    flags: u32,
    start_time_unix_nano: u64,
    end_time_unix_nano: u64,
    status_code: i32,
}

impl<'a> SpanView<'a> {
    fn new(encoded: &'a [u8]) -> Self {
        let mut span = SpanView {
            encoded,
            trace_id: &[],
            span_id: &[],
            parent_span_id: &[],
            trace_state: &[],
            name: &[],
            kind: 0,
            flags: 0,
            start_time_unix_nano: 0,
            end_time_unix_nano: 0,
            status_code: 0,
        };
        // One pass, so that reading several fields costs no more than reading one.
        for field in Fields::new(encoded) {
            match field {
                (1, FieldValue::Len(b)) => span.trace_id = b,
                (2, FieldValue::Len(b)) => span.span_id = b,
                (3, FieldValue::Len(b)) => span.trace_state = b,
                (4, FieldValue::Len(b)) => span.parent_span_id = b,
                (5, FieldValue::Len(b)) => span.name = b,
                // int32 fields keep the low 32 bits of the varint, as prost's `as i32` does.
                (6, FieldValue::Varint(v)) => span.kind = v as i32,
                (7, FieldValue::Fixed64(v)) => span.start_time_unix_nano = v,
                (8, FieldValue::Fixed64(v)) => span.end_time_unix_nano = v,
                (15, FieldValue::Len(status)) => {
                    for field in Fields::new(status) {
                        if let (3, FieldValue::Varint(v)) = field {
                            span.status_code = v as i32;
                        }
                    }
                }
                (16, FieldValue::Fixed32(v)) => span.flags = v,
                _ => {}
            }
        }
        span
    }

    /// The `Span` message body.
    pub fn encoded(&self) -> &'a [u8] {
        self.encoded
    }

    /// `trace_id` (16 bytes in a well-formed span; not checked).
    pub fn trace_id(&self) -> &'a [u8] {
        self.trace_id
    }

    /// `span_id` (8 bytes in a well-formed span; not checked).
    pub fn span_id(&self) -> &'a [u8] {
        self.span_id
    }

    /// `parent_span_id`, empty for a root span.
    pub fn parent_span_id(&self) -> &'a [u8] {
        self.parent_span_id
    }

    /// `trace_state`.
    pub fn trace_state(&self) -> &'a str {
        as_str(self.trace_state)
    }

    /// `name`.
    pub fn name(&self) -> &'a str {
        as_str(self.name)
    }

    /// `kind`, a `SpanKind` value, which may be outside the enum's range.
    pub fn kind(&self) -> i32 {
        self.kind
    }

    /// `flags`.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// `start_time_unix_nano`.
    pub fn start_time_unix_nano(&self) -> u64 {
        self.start_time_unix_nano
    }

    /// `end_time_unix_nano`.
    pub fn end_time_unix_nano(&self) -> u64 {
        self.end_time_unix_nano
    }

    /// `status.code`, a `StatusCode` value, or 0 (unset) when the span has no status.
    pub fn status_code(&self) -> i32 {
        self.status_code
    }
}

/// The string value of attribute `key` in a `Resource` body (from
/// [`ResourceSpansView::resource`]). When several attributes have that key, the first one
/// counts, as in the plugin SDK's attribute lookups (so decoded and encoded paths agree).
/// `None` if no attribute has the key, or if the first one's value is not an
/// `AnyValue.string_value`.
pub fn resource_string_attribute<'b>(resource: &'b [u8], key: &str) -> Option<&'b str> {
    for kv in messages(resource, 1) {
        let mut k: &[u8] = &[];
        let mut value = None;
        for field in Fields::new(kv) {
            match field {
                (1, FieldValue::Len(b)) => k = b,
                (2, FieldValue::Len(any)) => {
                    // Occurrences of `value` merge, and within the `value` oneof the last
                    // member set wins.
                    for field in Fields::new(any) {
                        match field {
                            (1, FieldValue::Len(s)) => value = Some(s),
                            (2..=8, _) => value = None,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if k == key.as_bytes() {
            return value.and_then(|s| std::str::from_utf8(s).ok());
        }
    }
    None
}

/// The first attribute named `key` in a message body whose attributes are field `tag`
/// (`Span`: 9) with an int or double value, as `f64`; attributes with that key and another
/// kind of value are passed over.
pub fn numeric_attribute(body: &[u8], tag: u32, key: &str) -> Option<f64> {
    for kv in messages(body, tag) {
        let mut k: &[u8] = &[];
        let mut value = None;
        for field in Fields::new(kv) {
            match field {
                (1, FieldValue::Len(b)) => k = b,
                (2, FieldValue::Len(any)) => {
                    // As for strings: occurrences merge, the last oneof member set wins.
                    for field in Fields::new(any) {
                        match field {
                            (3, FieldValue::Varint(v)) => value = Some(v as i64 as f64),
                            (4, FieldValue::Fixed64(v)) => value = Some(f64::from_bits(v)),
                            (1..=8, _) => value = None,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if k == key.as_bytes()
            && let Some(v) = value
        {
            return Some(v);
        }
    }
    None
}
