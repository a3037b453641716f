//! The rows of [`super::rows`], read straight out of checked OTLP protobuf: the bytes a
//! receiver accepted (`otlp::wire::validate`) are never decoded into prost structures.
//!
//! Decoding a batch only to write it again costs an allocation per id, string, attribute and
//! list, and the decoded copy outlives the insert while it is retried. Here every value is
//! copied from the received bytes into the row: ids and strings as they are, other attribute
//! values rendered into one reused buffer. Per batch a handful of buffers are allocated and
//! reused for every span; per span nothing is.
//!
//! The rows are byte for byte those [`super::rows::encode`] writes for the decoded batch (a
//! differential test holds the two together), so this copies prost's reading rules:
//! - a singular field given more than once: the last occurrence wins; a singular message
//!   (`resource`, `scope`, `status`, `KeyValue.value`) given more than once is merged, which
//!   appends its repeated fields and lets the last occurrence of each singular one win;
//! - the `AnyValue` oneof: the last member set wins, and an `array_value` or `kvlist_value`
//!   that follows the same member merges into it (its elements are appended);
//! - OTLP/JSON maps render with their keys sorted and the last of equal keys winning, as
//!   `serde_json`'s map does.
//!
//! Strings are copied without a UTF-8 check: `wire::validate`, which every encoded batch has
//! passed, rejects any string field that is not UTF-8 (as prost does).

use std::io::Write as _;

use base64::Engine as _;

use super::rows::{float_string, kind_name, put_id, put_len, put_str, put_time, status_name};
use crate::otlp::wire::{
    RawField, ResourceSpansView, ScopeSpansView, SpanView, TracesView, key_value_key, raw_fields,
    raw_fields_numbered,
};

// Field numbers of the OTLP messages read here.
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_ATTRIBUTES: u32 = 1;
const SCOPE_SPANS_SCOPE: u32 = 1;
const SCOPE_NAME: u32 = 1;
const SCOPE_VERSION: u32 = 2;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_EVENTS: u32 = 11;
const SPAN_LINKS: u32 = 13;
const SPAN_STATUS: u32 = 15;
const STATUS_MESSAGE: u32 = 2;
const EVENT_TIME: u32 = 1;
const EVENT_NAME: u32 = 2;
const EVENT_ATTRIBUTES: u32 = 3;
const LINK_TRACE_ID: u32 = 1;
const LINK_SPAN_ID: u32 = 2;
const LINK_TRACE_STATE: u32 = 3;
const LINK_ATTRIBUTES: u32 = 4;
const KEY_VALUE_VALUE: u32 = 2;
const ANY_STRING: u32 = 1;
const ANY_BOOL: u32 = 2;
const ANY_INT: u32 = 3;
const ANY_DOUBLE: u32 = 4;
const ANY_ARRAY: u32 = 5;
const ANY_KVLIST: u32 = 6;
const ANY_BYTES: u32 = 7;
const ANY_STRING_STRINDEX: u32 = 8;
/// `ArrayValue.values` and `KeyValueList.values`.
const LIST_VALUES: u32 = 1;

/// Appends one row per span of `parts` to `out`; returns the number of rows. The parts,
/// concatenated, are one `ExportTraceServiceRequest` (or `TracesData`) encoding that
/// `wire::validate` accepted.
pub fn encode<'a>(parts: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) -> usize {
    let mut buffers = Buffers::default();
    let mut rows = 0;
    for part in parts {
        for rs in TracesView::new(part).resource_spans() {
            rows += put_resource_spans(out, rs, &mut buffers);
        }
    }
    rows
}

/// Reused from span to span.
#[derive(Default)]
struct Buffers<'a> {
    /// The current resource's `ResourceAttributes` map, as written.
    resource_map: Vec<u8>,
    /// The current resource's `service.name`, rendered.
    service: Vec<u8>,
    /// The current span's attributes, events and links (message bodies).
    attributes: Vec<&'a [u8]>,
    events: Vec<&'a [u8]>,
    links: Vec<&'a [u8]>,
    /// An attribute value rendered as a string, before its length is known.
    value: Vec<u8>,
    /// The entries of the JSON objects being rendered, innermost last: (key, `KeyValue` body).
    entries: Vec<(&'a str, &'a [u8])>,
}

fn put_resource_spans<'a>(
    out: &mut Vec<u8>,
    rs: ResourceSpansView<'a>,
    b: &mut Buffers<'a>,
) -> usize {
    // Occurrences of `resource` merge: their attributes, in order, are the resource's. An
    // absent resource has none.
    let attributes = || {
        raw_fields_numbered(rs.encoded(), RESOURCE_SPANS_RESOURCE)
            .flat_map(|resource| raw_fields_numbered(resource.payload, RESOURCE_ATTRIBUTES))
            .map(|kv| kv.payload)
    };
    b.service.clear();
    if let Some(kv) =
        attributes().find(|kv| key_value_key(kv).unwrap_or_default() == "service.name")
    {
        render_value(&mut b.service, AnySource::KeyValue(kv), &mut b.entries);
    }
    // The resource's map is the same for every span under it: written once.
    let mut map = std::mem::take(&mut b.resource_map);
    map.clear();
    put_map(&mut map, attributes, b);
    b.resource_map = map;

    let mut rows = 0;
    for ss in rs.scope_spans() {
        rows += put_scope_spans(out, ss, b);
    }
    rows
}

fn put_scope_spans<'a>(out: &mut Vec<u8>, ss: ScopeSpansView<'a>, b: &mut Buffers<'a>) -> usize {
    // Occurrences of `scope` merge: the last name and the last version seen win.
    let (mut name, mut version): (&[u8], &[u8]) = (&[], &[]);
    for scope in raw_fields_numbered(ss.encoded(), SCOPE_SPANS_SCOPE) {
        for f in raw_fields(scope.payload) {
            match f.number {
                SCOPE_NAME => name = f.payload,
                SCOPE_VERSION => version = f.payload,
                _ => {}
            }
        }
    }
    let mut rows = 0;
    for span in ss.spans() {
        put_span(out, span, name, version, b);
        rows += 1;
    }
    rows
}

fn put_span<'a>(
    out: &mut Vec<u8>,
    span: SpanView<'a>,
    scope_name: &[u8],
    scope_version: &[u8],
    b: &mut Buffers<'a>,
) {
    // The view has read the scalar fields; one more pass finds the repeated ones and the
    // status message (statuses merge: the last message seen wins).
    b.attributes.clear();
    b.events.clear();
    b.links.clear();
    let mut status_message: &[u8] = &[];
    for f in raw_fields(span.encoded()) {
        match f.number {
            SPAN_ATTRIBUTES => b.attributes.push(f.payload),
            SPAN_EVENTS => b.events.push(f.payload),
            SPAN_LINKS => b.links.push(f.payload),
            SPAN_STATUS => {
                if let Some(m) = raw_fields_numbered(f.payload, STATUS_MESSAGE).last() {
                    status_message = m.payload;
                }
            }
            _ => {}
        }
    }

    put_time(out, span.start_time_unix_nano());
    put_id(out, span.trace_id());
    put_id(out, span.span_id());
    put_id(out, span.parent_span_id());
    put_str(out, span.trace_state());
    put_str(out, span.name());
    put_str(out, kind_name(span.kind()));
    put_bytes(out, &b.service);
    out.extend_from_slice(&b.resource_map);
    put_bytes(out, scope_name);
    put_bytes(out, scope_version);
    let attributes = std::mem::take(&mut b.attributes);
    put_map(out, || attributes.iter().copied(), b);
    b.attributes = attributes;
    // As in `rows`: an end before the start is a zero duration.
    let duration = span
        .end_time_unix_nano()
        .saturating_sub(span.start_time_unix_nano());
    out.extend_from_slice(&duration.to_le_bytes());
    put_str(out, status_name(span.status_code()));
    put_bytes(out, status_message);

    let events = std::mem::take(&mut b.events);
    put_len(out, events.len());
    for e in &events {
        put_time(
            out,
            raw_fields_numbered(e, EVENT_TIME).last().map_or(0, fixed64),
        );
    }
    put_len(out, events.len());
    for e in &events {
        put_bytes(out, last_payload(e, EVENT_NAME));
    }
    put_len(out, events.len());
    for e in &events {
        put_map(
            out,
            || raw_fields_numbered(e, EVENT_ATTRIBUTES).map(|kv| kv.payload),
            b,
        );
    }
    b.events = events;

    let links = std::mem::take(&mut b.links);
    put_len(out, links.len());
    for l in &links {
        put_id(out, last_payload(l, LINK_TRACE_ID));
    }
    put_len(out, links.len());
    for l in &links {
        put_id(out, last_payload(l, LINK_SPAN_ID));
    }
    put_len(out, links.len());
    for l in &links {
        put_bytes(out, last_payload(l, LINK_TRACE_STATE));
    }
    put_len(out, links.len());
    for l in &links {
        put_map(
            out,
            || raw_fields_numbered(l, LINK_ATTRIBUTES).map(|kv| kv.payload),
            b,
        );
    }
    b.links = links;
}

/// A `Map(String, String)` of `KeyValue` bodies: every one, duplicate keys included, as the
/// decoded path writes them.
fn put_map<'a, I: Iterator<Item = &'a [u8]>>(
    out: &mut Vec<u8>,
    key_values: impl Fn() -> I,
    b: &mut Buffers<'a>,
) {
    put_len(out, key_values().count());
    for kv in key_values() {
        put_key_value(out, kv, b);
    }
}

fn put_key_value<'a>(out: &mut Vec<u8>, kv: &'a [u8], b: &mut Buffers<'a>) {
    put_str(out, key_value_key(kv).unwrap_or_default());
    let source = AnySource::KeyValue(kv);
    match resolve(source) {
        // The common case, copied without the intermediate buffer.
        Any::String(s) => put_bytes(out, s),
        Any::Bytes(bytes) => {
            put_len(out, base64::encoded_len(bytes.len(), true).unwrap_or(0));
            base64_into(out, bytes);
        }
        any => {
            b.value.clear();
            render(&mut b.value, any, source, &mut b.entries);
            put_bytes(out, &b.value);
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len());
    out.extend_from_slice(s);
}

// ----- Reading ---------------------------------------------------------------------------------

/// A singular string or bytes field: the last occurrence, or empty.
fn last_payload(body: &[u8], number: u32) -> &[u8] {
    raw_fields_numbered(body, number)
        .last()
        .map_or(&[], |f| f.payload)
}

/// The value of a 64-bit field (its last eight bytes).
fn fixed64(f: RawField<'_>) -> u64 {
    f.bytes
        .len()
        .checked_sub(8)
        .and_then(|at| f.bytes[at..].try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The value of a varint field (what follows its key).
fn varint(f: RawField<'_>) -> u64 {
    let Some(key_len) = f.bytes.iter().position(|&b| b < 0x80) else {
        return 0;
    };
    let mut value = 0u64;
    for (i, &b) in f.bytes[key_len + 1..].iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            break;
        }
    }
    value
}

/// Where an `AnyValue` is encoded.
#[derive(Clone, Copy)]
enum AnySource<'a> {
    /// The `value` of a `KeyValue` body: every occurrence, merged.
    KeyValue(&'a [u8]),
    /// An element of an `ArrayValue`: one `AnyValue` body.
    Element(&'a [u8]),
}

impl<'a> AnySource<'a> {
    /// The fields of the `AnyValue`, its occurrences concatenated (which is how they merge).
    fn fields(self) -> impl Iterator<Item = RawField<'a>> {
        let (key_value, element): (&[u8], &[u8]) = match self {
            AnySource::KeyValue(kv) => (kv, &[]),
            AnySource::Element(any) => (&[], any),
        };
        raw_fields(element).chain(
            raw_fields_numbered(key_value, KEY_VALUE_VALUE)
                .flat_map(|value| raw_fields(value.payload)),
        )
    }
}

/// The member of the `AnyValue` oneof that is set.
#[derive(Clone, Copy)]
enum Any<'a> {
    /// None, or `string_value_strindex` (which only means something in profiles).
    Nothing,
    String(&'a [u8]),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// An `array_value`, merged from the occurrences starting at this field index of
    /// [`AnySource::fields`].
    Array(usize),
    /// A `kvlist_value`, likewise.
    Kvlist(usize),
}

/// prost's oneof merge: each member replaces the one set before, except that a message member
/// following itself merges into it.
fn resolve(source: AnySource<'_>) -> Any<'_> {
    let mut any = Any::Nothing;
    for (i, f) in source.fields().enumerate() {
        any = match (f.number, any) {
            (ANY_STRING, _) => Any::String(f.payload),
            (ANY_BOOL, _) => Any::Bool(varint(f) != 0),
            (ANY_INT, _) => Any::Int(varint(f) as i64),
            (ANY_DOUBLE, _) => Any::Double(f64::from_bits(fixed64(f))),
            (ANY_ARRAY, Any::Array(start)) => Any::Array(start),
            (ANY_ARRAY, _) => Any::Array(i),
            (ANY_KVLIST, Any::Kvlist(start)) => Any::Kvlist(start),
            (ANY_KVLIST, _) => Any::Kvlist(i),
            (ANY_BYTES, _) => Any::Bytes(f.payload),
            (ANY_STRING_STRINDEX, _) => Any::Nothing,
            _ => any,
        };
    }
    any
}

/// The list elements of a merged `array_value` or `kvlist_value` (`ArrayValue` element
/// bodies, or `KeyValue` bodies), in order.
fn list_items<'a>(
    source: AnySource<'a>,
    start: usize,
    member: u32,
) -> impl Iterator<Item = &'a [u8]> {
    // From `start` on, only this member and unknown fields occur (any other member would have
    // ended the run).
    let lists = source
        .fields()
        .skip(start)
        .filter(move |f| f.number == member);
    lists
        .flat_map(|list| raw_fields_numbered(list.payload, LIST_VALUES))
        .map(|item| item.payload)
}

// ----- Rendering -------------------------------------------------------------------------------

/// `rows::value_string` of the `AnyValue` at `source`, appended to `w`.
fn render_value<'a>(
    w: &mut Vec<u8>,
    source: AnySource<'a>,
    entries: &mut Vec<(&'a str, &'a [u8])>,
) {
    render(w, resolve(source), source, entries);
}

fn render<'a>(
    w: &mut Vec<u8>,
    any: Any<'a>,
    source: AnySource<'a>,
    entries: &mut Vec<(&'a str, &'a [u8])>,
) {
    match any {
        Any::Nothing => {}
        Any::String(s) => w.extend_from_slice(s),
        Any::Bool(v) => w.extend_from_slice(if v { b"true" } else { b"false" }),
        Any::Int(v) => {
            let _ = write!(w, "{v}");
        }
        Any::Double(v) => {
            if v.is_infinite() {
                w.extend_from_slice(float_string(v).as_bytes());
            } else {
                let _ = write!(w, "{v}");
            }
        }
        Any::Bytes(bytes) => base64_into(w, bytes),
        Any::Array(_) | Any::Kvlist(_) => json(w, any, source, entries),
    }
}

fn base64_into(w: &mut Vec<u8>, bytes: &[u8]) {
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    let start = w.len();
    w.resize(start + len, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut w[start..])
        .unwrap_or(0);
    w.truncate(start + written);
}

/// The value as `rows` renders it in JSON (through `serde_json::Value`, compact).
fn json<'a>(
    w: &mut Vec<u8>,
    any: Any<'a>,
    source: AnySource<'a>,
    entries: &mut Vec<(&'a str, &'a [u8])>,
) {
    // Writing into a Vec cannot fail.
    match any {
        Any::Nothing => w.extend_from_slice(b"null"),
        Any::String(s) => {
            let _ = serde_json::to_writer(&mut *w, std::str::from_utf8(s).unwrap_or_default());
        }
        Any::Bool(v) => w.extend_from_slice(if v { b"true" } else { b"false" }),
        Any::Int(v) => {
            let _ = write!(w, "{v}");
        }
        Any::Double(v) => {
            if v.is_finite() {
                let _ = serde_json::to_writer(&mut *w, &v);
            } else {
                // Not a JSON number: `rows` writes the Go spelling as a string.
                let _ = serde_json::to_writer(&mut *w, &float_string(v));
            }
        }
        Any::Bytes(bytes) => {
            w.push(b'"');
            base64_into(w, bytes);
            w.push(b'"');
        }
        Any::Array(start) => {
            w.push(b'[');
            for (i, element) in list_items(source, start, ANY_ARRAY).enumerate() {
                if i > 0 {
                    w.push(b',');
                }
                let element = AnySource::Element(element);
                json(w, resolve(element), element, entries);
            }
            w.push(b']');
        }
        Any::Kvlist(start) => {
            // A JSON object keeps one value per key, the last one, and lists keys in order
            // (serde_json's map is a BTreeMap): sort this object's entries, stably.
            let base = entries.len();
            for kv in list_items(source, start, ANY_KVLIST) {
                let key = key_value_key(kv).unwrap_or_default();
                entries.push((key, kv));
            }
            entries[base..].sort_by(|a, b| a.0.cmp(b.0));
            let end = entries.len();
            w.push(b'{');
            let mut first = true;
            for i in base..end {
                let (key, kv) = entries[i];
                if i + 1 < end && entries[i + 1].0 == key {
                    continue;
                }
                if !first {
                    w.push(b',');
                }
                first = false;
                let _ = serde_json::to_writer(&mut *w, key);
                w.push(b':');
                let value = AnySource::KeyValue(kv);
                json(w, resolve(value), value, entries);
            }
            w.push(b'}');
            entries.truncate(base);
        }
    }
}
