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
//!
//! The reading and rendering of resources, scopes, attribute maps and `AnyValue`s here is
//! shared with the log records' byte path, [`super::rows_logs_wire`].

use std::io::Write as _;

use base64::Engine as _;
use wasmcol_plugin_sdk::wire::{FieldValue, Fields};

use super::rows::{float_string, kind_name, put_id, put_len, put_time, status_name};
use crate::otlp::wire::{ResourceSpansView, ScopeSpansView, TracesView, key_value_key};

// Field numbers of the OTLP messages read here.
/// `ResourceSpans.resource` and `ResourceLogs.resource`.
const RESOURCE_OF: u32 = 1;
const RESOURCE_ATTRIBUTES: u32 = 1;
/// `ScopeSpans.scope` and `ScopeLogs.scope`.
const SCOPE_OF: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;
const SCOPE_NAME: u32 = 1;
const SCOPE_VERSION: u32 = 2;
const SCOPE_ATTRIBUTES: u32 = 3;
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_TRACE_STATE: u32 = 3;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START: u32 = 7;
const SPAN_END: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_EVENTS: u32 = 11;
const SPAN_LINKS: u32 = 13;
const SPAN_STATUS: u32 = 15;
const STATUS_MESSAGE: u32 = 2;
const STATUS_CODE: u32 = 3;
const EVENT_TIME: u32 = 1;
const EVENT_NAME: u32 = 2;
const EVENT_ATTRIBUTES: u32 = 3;
const LINK_TRACE_ID: u32 = 1;
const LINK_SPAN_ID: u32 = 2;
const LINK_TRACE_STATE: u32 = 3;
const LINK_ATTRIBUTES: u32 = 4;
const KEY_VALUE_KEY: u32 = 1;
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
    encode_chunked(parts, out, usize::MAX, &mut |_| {})
}

/// [`encode`], handing the rows over as they are written: whenever `out` holds `chunk` bytes
/// or more after a row, they go to `flush` and `out` is cleared. The rows written after the
/// last flush are left in `out`.
pub fn encode_chunked<'a>(
    parts: impl IntoIterator<Item = &'a [u8]>,
    out: &mut Vec<u8>,
    chunk: usize,
    flush: &mut dyn FnMut(&[u8]),
) -> usize {
    let mut b = Buffers::default();
    let mut sink = Sink::new(out, chunk, flush);
    let mut rows = 0;
    for part in parts {
        for rs in TracesView::new(part).resource_spans() {
            rows += put_resource_spans(&mut sink, rs, &mut b);
        }
    }
    rows
}

/// Where rows go: `out`, handed to `flush` whenever it holds `chunk` bytes after a row.
pub(super) struct Sink<'o, 'f> {
    pub(super) out: &'o mut Vec<u8>,
    chunk: usize,
    flush: &'f mut dyn FnMut(&[u8]),
}

impl<'o, 'f> Sink<'o, 'f> {
    pub(super) fn new(out: &'o mut Vec<u8>, chunk: usize, flush: &'f mut dyn FnMut(&[u8])) -> Self {
        Self { out, chunk, flush }
    }

    /// After each row.
    #[inline]
    pub(super) fn row_done(&mut self) {
        if self.out.len() >= self.chunk {
            (self.flush)(self.out);
            self.out.clear();
        }
    }
}

/// Reused from span to span, so that a span costs no allocation once they have grown.
#[derive(Default)]
struct Buffers<'a> {
    resource: ResourceColumns,
    /// The current span's (or resource's) attributes: `KeyValue` bodies.
    attributes: Vec<&'a [u8]>,
    /// The current span's events and links, and their attributes, which they index.
    events: Vec<Event<'a>>,
    event_attributes: Vec<&'a [u8]>,
    links: Vec<Link<'a>>,
    link_attributes: Vec<&'a [u8]>,
    render: Render<'a>,
}

/// The columns every row under a resource shares, written once per resource.
#[derive(Default)]
pub(super) struct ResourceColumns {
    /// The `ResourceAttributes` map, as written.
    pub(super) map: Vec<u8>,
    /// The `service.name`, rendered.
    pub(super) service: Vec<u8>,
}

impl ResourceColumns {
    /// Reads the resource of `holder` (a `ResourceSpans` or `ResourceLogs` body), using
    /// `attributes` as scratch. Occurrences of `resource` merge: their attributes, in order,
    /// are the resource's. An absent resource has none.
    pub(super) fn read<'a>(
        &mut self,
        holder: &'a [u8],
        attributes: &mut Vec<&'a [u8]>,
        r: &mut Render<'a>,
    ) {
        attributes.clear();
        attributes.extend(
            len_fields(holder, RESOURCE_OF)
                .flat_map(|resource| len_fields(resource, RESOURCE_ATTRIBUTES)),
        );
        self.service.clear();
        if let Some(&kv) = attributes
            .iter()
            .find(|kv| key_value_key(kv).unwrap_or_default() == "service.name")
        {
            render_value(&mut self.service, AnySource::key_value(kv), &mut r.entries);
        }
        self.map.clear();
        put_map(&mut self.map, attributes, r);
    }
}

/// The scope of `holder` (a `ScopeSpans` or `ScopeLogs` body): its name and version, and,
/// when `attributes` is given, its attributes appended there. Occurrences of `scope` merge:
/// the last name and the last version seen win, attributes add up.
pub(super) fn read_scope<'a>(
    holder: &'a [u8],
    mut attributes: Option<&mut Vec<&'a [u8]>>,
) -> (&'a [u8], &'a [u8]) {
    let (mut name, mut version): (&[u8], &[u8]) = (&[], &[]);
    for scope in len_fields(holder, SCOPE_OF) {
        for f in Fields::new(scope) {
            match f {
                (SCOPE_NAME, FieldValue::Len(v)) => name = v,
                (SCOPE_VERSION, FieldValue::Len(v)) => version = v,
                (SCOPE_ATTRIBUTES, FieldValue::Len(kv)) => {
                    if let Some(a) = attributes.as_deref_mut() {
                        a.push(kv);
                    }
                }
                _ => {}
            }
        }
    }
    (name, version)
}

/// For rendering attribute values.
#[derive(Default)]
pub(super) struct Render<'a> {
    /// An attribute value rendered as a string, before its length is known.
    value: Vec<u8>,
    /// The entries of the JSON objects being rendered, innermost last: (key, `KeyValue` body).
    entries: Vec<(&'a str, &'a [u8])>,
}

/// An event's columns; `attributes` indexes [`Buffers::event_attributes`].
struct Event<'a> {
    time: u64,
    name: &'a [u8],
    attributes: (usize, usize),
}

/// A link's columns; `attributes` indexes [`Buffers::link_attributes`].
struct Link<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    trace_state: &'a [u8],
    attributes: (usize, usize),
}

/// The length-delimited fields numbered `number` of a message body.
pub(super) fn len_fields(body: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    Fields::new(body).filter_map(move |f| match f {
        (n, FieldValue::Len(payload)) if n == number => Some(payload),
        _ => None,
    })
}

fn put_resource_spans<'a>(
    sink: &mut Sink<'_, '_>,
    rs: ResourceSpansView<'a>,
    b: &mut Buffers<'a>,
) -> usize {
    // The same for every span under the resource: written once.
    b.resource
        .read(rs.encoded(), &mut b.attributes, &mut b.render);

    let mut rows = 0;
    for ss in rs.scope_spans() {
        rows += put_scope_spans(sink, ss, b);
    }
    rows
}

fn put_scope_spans<'a>(
    sink: &mut Sink<'_, '_>,
    ss: ScopeSpansView<'a>,
    b: &mut Buffers<'a>,
) -> usize {
    let (name, version) = read_scope(ss.encoded(), None);
    let mut rows = 0;
    for span in len_fields(ss.encoded(), SCOPE_SPANS_SPANS) {
        put_span(sink.out, span, name, version, b);
        sink.row_done();
        rows += 1;
    }
    rows
}

/// One row, from one pass over the span's fields (and one over each event and link).
fn put_span<'a>(
    out: &mut Vec<u8>,
    span: &'a [u8],
    scope_name: &[u8],
    scope_version: &[u8],
    b: &mut Buffers<'a>,
) {
    // Singular fields: the last occurrence wins. Statuses merge: the last code and the last
    // message seen win.
    let (mut trace_id, mut span_id, mut parent_span_id): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let (mut trace_state, mut name, mut status_message): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let (mut kind, mut status_code) = (0i32, 0i32);
    let (mut start, mut end) = (0u64, 0u64);
    b.attributes.clear();
    b.events.clear();
    b.event_attributes.clear();
    b.links.clear();
    b.link_attributes.clear();
    for field in Fields::new(span) {
        match field {
            (SPAN_TRACE_ID, FieldValue::Len(v)) => trace_id = v,
            (SPAN_SPAN_ID, FieldValue::Len(v)) => span_id = v,
            (SPAN_TRACE_STATE, FieldValue::Len(v)) => trace_state = v,
            (SPAN_PARENT_SPAN_ID, FieldValue::Len(v)) => parent_span_id = v,
            (SPAN_NAME, FieldValue::Len(v)) => name = v,
            // int32 fields keep the low 32 bits of the varint, as prost's `as i32` does.
            (SPAN_KIND, FieldValue::Varint(v)) => kind = v as i32,
            (SPAN_START, FieldValue::Fixed64(v)) => start = v,
            (SPAN_END, FieldValue::Fixed64(v)) => end = v,
            (SPAN_ATTRIBUTES, FieldValue::Len(kv)) => b.attributes.push(kv),
            (SPAN_EVENTS, FieldValue::Len(event)) => {
                let first = b.event_attributes.len();
                let mut e = Event {
                    time: 0,
                    name: &[],
                    attributes: (first, first),
                };
                for f in Fields::new(event) {
                    match f {
                        (EVENT_TIME, FieldValue::Fixed64(v)) => e.time = v,
                        (EVENT_NAME, FieldValue::Len(v)) => e.name = v,
                        (EVENT_ATTRIBUTES, FieldValue::Len(kv)) => b.event_attributes.push(kv),
                        _ => {}
                    }
                }
                e.attributes.1 = b.event_attributes.len();
                b.events.push(e);
            }
            (SPAN_LINKS, FieldValue::Len(link)) => {
                let first = b.link_attributes.len();
                let mut l = Link {
                    trace_id: &[],
                    span_id: &[],
                    trace_state: &[],
                    attributes: (first, first),
                };
                for f in Fields::new(link) {
                    match f {
                        (LINK_TRACE_ID, FieldValue::Len(v)) => l.trace_id = v,
                        (LINK_SPAN_ID, FieldValue::Len(v)) => l.span_id = v,
                        (LINK_TRACE_STATE, FieldValue::Len(v)) => l.trace_state = v,
                        (LINK_ATTRIBUTES, FieldValue::Len(kv)) => b.link_attributes.push(kv),
                        _ => {}
                    }
                }
                l.attributes.1 = b.link_attributes.len();
                b.links.push(l);
            }
            (SPAN_STATUS, FieldValue::Len(status)) => {
                for f in Fields::new(status) {
                    match f {
                        (STATUS_MESSAGE, FieldValue::Len(v)) => status_message = v,
                        (STATUS_CODE, FieldValue::Varint(v)) => status_code = v as i32,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    put_time(out, start);
    put_id(out, trace_id);
    put_id(out, span_id);
    put_id(out, parent_span_id);
    put_bytes(out, trace_state);
    put_bytes(out, name);
    put_bytes(out, kind_name(kind).as_bytes());
    put_bytes(out, &b.resource.service);
    out.extend_from_slice(&b.resource.map);
    put_bytes(out, scope_name);
    put_bytes(out, scope_version);
    put_map(out, &b.attributes, &mut b.render);
    // As in `rows`: an end before the start is a zero duration.
    out.extend_from_slice(&end.saturating_sub(start).to_le_bytes());
    put_bytes(out, status_name(status_code).as_bytes());
    put_bytes(out, status_message);

    put_len(out, b.events.len());
    for e in &b.events {
        put_time(out, e.time);
    }
    put_len(out, b.events.len());
    for e in &b.events {
        put_bytes(out, e.name);
    }
    put_len(out, b.events.len());
    for e in &b.events {
        let (from, to) = e.attributes;
        put_map(out, &b.event_attributes[from..to], &mut b.render);
    }

    put_len(out, b.links.len());
    for l in &b.links {
        put_id(out, l.trace_id);
    }
    put_len(out, b.links.len());
    for l in &b.links {
        put_id(out, l.span_id);
    }
    put_len(out, b.links.len());
    for l in &b.links {
        put_bytes(out, l.trace_state);
    }
    put_len(out, b.links.len());
    for l in &b.links {
        let (from, to) = l.attributes;
        put_map(out, &b.link_attributes[from..to], &mut b.render);
    }
}

/// A `Map(String, String)` of `KeyValue` bodies: every one, duplicate keys included, as the
/// decoded path writes them.
pub(super) fn put_map<'a>(out: &mut Vec<u8>, key_values: &[&'a [u8]], r: &mut Render<'a>) {
    put_len(out, key_values.len());
    for &kv in key_values {
        put_key_value(out, kv, r);
    }
}

#[inline(always)]
fn put_key_value<'a>(out: &mut Vec<u8>, kv: &'a [u8], r: &mut Render<'a>) {
    if let Some((key, value)) = plain_string_key_value(kv) {
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        return;
    }
    put_key_value_fields(out, kv, r);
}

/// Nearly every attribute is a `KeyValue` as encoders write it: the key, then a value holding
/// only a `string_value`, each length a minimal varint. The map entry is then the key and the
/// string, each after its length in LEB128, which is what those varints are: two slices of
/// `kv`, returned as they are copied (length prefix included). `None` for any other layout.
#[inline(always)]
fn plain_string_key_value(kv: &[u8]) -> Option<(&[u8], &[u8])> {
    const KEY: u8 = (KEY_VALUE_KEY as u8) << 3 | 2;
    const VALUE: u8 = (KEY_VALUE_VALUE as u8) << 3 | 2;
    const STRING: u8 = (ANY_STRING as u8) << 3 | 2;
    let rest = kv.strip_prefix(&[KEY])?;
    let (_, key_end) = minimal_len(rest)?;
    let (key, rest) = rest.split_at(key_end);
    let rest = rest.strip_prefix(&[VALUE])?;
    // The value must be the last field, and the string all of it.
    let (any_start, any_end) = minimal_len(rest)?;
    if any_end != rest.len() {
        return None;
    }
    let value = rest[any_start..].strip_prefix(&[STRING])?;
    let (_, value_end) = minimal_len(value)?;
    (value_end == value.len()).then_some((key, value))
}

/// For `buf` starting with a length, a minimal varint (as LEB128 writes the number: not padded
/// with a trailing zero group) of at most 4 bytes, followed by at least that many bytes: where
/// those bytes start and end.
#[inline(always)]
fn minimal_len(buf: &[u8]) -> Option<(usize, usize)> {
    if let Some(&b) = buf.first()
        && b < 0x80
    {
        let end = 1 + usize::from(b);
        return (end <= buf.len()).then_some((1, end));
    }
    let n = buf.iter().take(4).position(|&b| b < 0x80)? + 1;
    if buf[n - 1] == 0 {
        return None;
    }
    let mut len = 0usize;
    for (i, &b) in buf[..n].iter().enumerate() {
        len |= usize::from(b & 0x7f) << (7 * i);
    }
    let end = n + len;
    (end <= buf.len()).then_some((n, end))
}

fn put_key_value_fields<'a>(out: &mut Vec<u8>, kv: &'a [u8], r: &mut Render<'a>) {
    // One pass over the `KeyValue`: its key (the last one wins), and its value, which is
    // almost always given once (when given more often, the occurrences merge).
    let mut key: &[u8] = &[];
    let mut value: &[u8] = &[];
    let mut values = 0usize;
    for f in Fields::new(kv) {
        match f {
            (KEY_VALUE_KEY, FieldValue::Len(k)) => key = k,
            (KEY_VALUE_VALUE, FieldValue::Len(v)) => {
                value = v;
                values += 1;
            }
            _ => {}
        }
    }
    put_bytes(out, key);
    let source = if values > 1 {
        AnySource::key_value(kv)
    } else {
        AnySource::Element(value)
    };
    put_any(out, source, r);
}

/// The `AnyValue` at `source` as a `String` column: `rows::value_string` of it.
pub(super) fn put_any<'a>(out: &mut Vec<u8>, source: AnySource<'a>, r: &mut Render<'a>) {
    match resolve(source) {
        // The common case, copied without the intermediate buffer.
        Any::String(s) => put_bytes(out, s),
        Any::Bytes(bytes) => {
            put_len(out, base64::encoded_len(bytes.len(), true).unwrap_or(0));
            base64_into(out, bytes);
        }
        any => {
            r.value.clear();
            render(&mut r.value, any, source, &mut r.entries);
            put_bytes(out, &r.value);
        }
    }
}

pub(super) fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len());
    out.extend_from_slice(s);
}

// ----- Reading ---------------------------------------------------------------------------------

/// Where an `AnyValue` is encoded.
#[derive(Clone, Copy)]
pub(super) enum AnySource<'a> {
    /// The `AnyValue` field numbered `.1` of the message body `.0` (a `KeyValue`'s `value`, a
    /// log record's `body`): every occurrence, merged.
    Field(&'a [u8], u32),
    /// One `AnyValue` body: an element of an `ArrayValue`, or the only occurrence of a field.
    Element(&'a [u8]),
}

impl<'a> AnySource<'a> {
    /// The `value` of a `KeyValue` body.
    pub(super) fn key_value(kv: &'a [u8]) -> Self {
        AnySource::Field(kv, KEY_VALUE_VALUE)
    }

    /// The fields of the `AnyValue`, its occurrences concatenated (which is how they merge).
    fn fields(self) -> impl Iterator<Item = (u32, FieldValue<'a>)> {
        let (message, number, element): (&[u8], u32, &[u8]) = match self {
            AnySource::Field(message, number) => (message, number, &[]),
            AnySource::Element(any) => (&[], 0, any),
        };
        Fields::new(element).chain(len_fields(message, number).flat_map(Fields::new))
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
    match source {
        // Almost every value: one `AnyValue`, read without chaining iterators.
        AnySource::Element(any) => resolve_fields(Fields::new(any)),
        AnySource::Field(..) => resolve_fields(source.fields()),
    }
}

/// [`resolve`] over the fields of [`AnySource::fields`].
#[inline(always)]
fn resolve_fields<'a>(fields: impl Iterator<Item = (u32, FieldValue<'a>)>) -> Any<'a> {
    let mut any = Any::Nothing;
    for (i, f) in fields.enumerate() {
        any = match (f, any) {
            ((ANY_STRING, FieldValue::Len(s)), _) => Any::String(s),
            ((ANY_BOOL, FieldValue::Varint(v)), _) => Any::Bool(v != 0),
            ((ANY_INT, FieldValue::Varint(v)), _) => Any::Int(v as i64),
            ((ANY_DOUBLE, FieldValue::Fixed64(v)), _) => Any::Double(f64::from_bits(v)),
            ((ANY_ARRAY, _), Any::Array(start)) => Any::Array(start),
            ((ANY_ARRAY, _), _) => Any::Array(i),
            ((ANY_KVLIST, _), Any::Kvlist(start)) => Any::Kvlist(start),
            ((ANY_KVLIST, _), _) => Any::Kvlist(i),
            ((ANY_BYTES, FieldValue::Len(bytes)), _) => Any::Bytes(bytes),
            ((ANY_STRING_STRINDEX, _), _) => Any::Nothing,
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
    source
        .fields()
        .skip(start)
        .filter_map(move |f| match f {
            (n, FieldValue::Len(list)) if n == member => Some(list),
            _ => None,
        })
        .flat_map(|list| len_fields(list, LIST_VALUES))
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
                let value = AnySource::key_value(kv);
                json(w, resolve(value), value, entries);
            }
            w.push(b'}');
            entries.truncate(base);
        }
    }
}
