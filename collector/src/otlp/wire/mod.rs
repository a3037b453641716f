//! Validating and reading protobuf-encoded OTLP trace requests without decoding them.
//!
//! A receiver that passes on what a client sent has no need for prost's heap structures (an
//! allocation per id, string, attribute and list). It does need two things: to know that prost
//! would accept the bytes, and to know how many spans they hold. [`validate`] finds both in one
//! pass that allocates nothing. [`TracesView`] then reads fields straight out of the validated
//! bytes.
//!
//! [`validate`] accepts exactly the inputs that
//! `opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode` (prost
//! 0.14, opentelemetry-proto 0.33) accepts. The bytes will be decoded again downstream, and
//! every place that decodes them must agree. When it rejects an input, its error message matches
//! prost's. To get that, it copies prost's rules one for one:
//!
//! - A varint is at most ten bytes, and the tenth byte may not overflow a `u64`. A key must fit
//!   in 32 bits, have wire type 0 to 5 and a nonzero field number.
//! - A known field must have its declared wire type. The schema has no repeated numeric fields,
//!   so packed encoding is never accepted. Strings must be UTF-8. Enums take any varint.
//! - A nested message is read the way prost's `merge_loop` reads one: fields are read against the
//!   whole buffer, and the message's end is checked only between fields. A field that runs past
//!   the end of its message therefore fails where prost fails and with the same error, which is
//!   often "delimited length exceeded" instead of "buffer underflow".
//! - The recursion budget works like prost's `DecodeContext`: 100 at the top level. Each nested
//!   message and each level of an unknown group spends one, and skipping any unknown field
//!   needs budget left.
//! - Unknown fields, groups included, are skipped the way `prost::encoding::skip_field` skips
//!   them.
//!
//! The schema includes the fields that opentelemetry-proto 0.33 adds and receivers never read:
//! `KeyValue.key_strindex`, `AnyValue.string_value_strindex`, `Resource.entity_refs`. They must
//! still be validated, because a bad value in them makes prost fail.
//!
//! The views read fields with the plugin SDK's reader (`wasmcol_plugin_sdk::wire`), the one the
//! byte-level edit applier there (`wasmcol_plugin_sdk::wire::edit`) uses on validated batches.

use std::borrow::Cow;
use std::fmt;

use wasmcol_plugin_sdk::wire::{FieldValue, Fields};
/// The field reader the plugin SDK's byte-level edit applier (`wasmcol_plugin_sdk::wire::edit`)
/// walks batches with: one reader for the views here, the host and the SDK.
pub use wasmcol_plugin_sdk::wire::{RawField, key_value_key, raw_fields, raw_fields_numbered};

#[cfg(test)]
mod tests;

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const I32: u8 = 5;

/// prost's `RECURSION_LIMIT`. The workspace does not enable prost's `no-recursion-limit`.
const RECURSION_LIMIT: u32 = 100;

/// The reason bytes are not a valid OTLP trace request.
///
/// Its `Display` output is the text of prost's `DecodeError` for the same bytes, for example
/// `failed to decode Protobuf message: Span.name: ScopeSpans.spans: ResourceSpans.scope_spans:
/// ExportTraceServiceRequest.resource_spans: invalid string value: data is not UTF-8 encoded`.
/// Like prost, it lists the innermost (message, field) pair first.
#[derive(Clone, PartialEq, Eq)]
pub struct WireError(Box<ErrorInner>);

#[derive(Clone, PartialEq, Eq)]
struct ErrorInner {
    kind: ErrorKind,
    path: Vec<(&'static str, &'static str)>,
}

/// What is wrong at the innermost point. These are the kinds of prost's `DecodeErrorKind` that
/// this schema can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A varint longer than ten bytes, one that overflows a `u64`, or one cut off by the end of
    /// the input.
    InvalidVarint,
    /// Nesting deeper than prost's recursion limit allows.
    RecursionLimitReached,
    /// A key whose wire type is 6 or 7.
    InvalidWireType {
        /// The wire type.
        value: u64,
    },
    /// A key that does not fit in 32 bits.
    InvalidKey {
        /// The key.
        key: u64,
    },
    /// A key with field number 0.
    InvalidTag,
    /// A known field with the wrong wire type. Wire types are given as numbers (0 = varint,
    /// 1 = 64-bit, 2 = length-delimited, 3/4 = start/end group, 5 = 32-bit).
    UnexpectedWireType {
        /// The wire type found.
        actual: u8,
        /// The wire type the field is declared with.
        expected: u8,
    },
    /// A length or fixed-width value that runs past the end of the input.
    BufferUnderflow,
    /// A field that runs past the end of the message that contains it.
    DelimitedLengthExceeded,
    /// An end-group key with no matching start group.
    UnexpectedEndGroupTag,
    /// A string field that is not UTF-8.
    InvalidString,
}

impl WireError {
    // Cold and out of line, so that the validator's hot path carries only a branch per check.
    #[cold]
    #[inline(never)]
    fn new(kind: ErrorKind) -> Self {
        WireError(Box::new(ErrorInner {
            kind,
            path: Vec::new(),
        }))
    }

    #[cold]
    #[inline(never)]
    fn at(mut self, message: &'static str, field: &'static str) -> Self {
        self.0.path.push((message, field));
        self
    }

    /// The innermost reason.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The (message, field) pairs that lead to the error, innermost first, as prost lists
    /// them: `("Span", "name"), ("ScopeSpans", "spans"), ...`. The list is empty when the
    /// error is in a top-level key or in an unknown field.
    pub fn path(&self) -> &[(&'static str, &'static str)] {
        &self.0.path
    }
}

fn wire_type_name(wire_type: u8) -> &'static str {
    // prost prints its `WireType` with `Debug`, so these are its variant names.
    match wire_type {
        VARINT => "Varint",
        I64 => "SixtyFourBit",
        LEN => "LengthDelimited",
        SGROUP => "StartGroup",
        EGROUP => "EndGroup",
        _ => "ThirtyTwoBit",
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::InvalidVarint => f.write_str("invalid varint"),
            Self::RecursionLimitReached => f.write_str("recursion limit reached"),
            Self::InvalidWireType { value } => write!(f, "invalid wire type value: {value}"),
            Self::InvalidKey { key } => write!(f, "invalid key value: {key}"),
            Self::InvalidTag => f.write_str("invalid tag value: 0"),
            Self::UnexpectedWireType { actual, expected } => write!(
                f,
                "invalid wire type: {} (expected {})",
                wire_type_name(actual),
                wire_type_name(expected)
            ),
            Self::BufferUnderflow => f.write_str("buffer underflow"),
            Self::DelimitedLengthExceeded => f.write_str("delimited length exceeded"),
            Self::UnexpectedEndGroupTag => f.write_str("unexpected end group tag"),
            Self::InvalidString => f.write_str("invalid string value: data is not UTF-8 encoded"),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failed to decode Protobuf message: ")?;
        for (message, field) in &self.0.path {
            write!(f, "{message}.{field}: ")?;
        }
        write!(f, "{}", self.0.kind)
    }
}

impl fmt::Debug for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireError")
            .field("kind", &self.0.kind)
            .field("path", &self.0.path)
            .finish()
    }
}

impl std::error::Error for WireError {}

/// Returned by [`validate`] for bytes that decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validated {
    /// The number of `ResourceSpans`.
    pub resource_spans: usize,
    /// The number of spans, counting all `ResourceSpans` and `ScopeSpans`.
    pub spans: usize,
    /// Spans whose trace id is not 16 bytes with one of them nonzero, or whose span id is not
    /// 8 bytes with one of them nonzero: the OTLP specification calls them invalid.
    pub invalid_spans: usize,
    /// An upper bound on the heap memory prost's structures take once the bytes are decoded:
    /// the size of every element of every repeated field plus the bytes of every string and
    /// bytes field (allocator overhead and spare `Vec` capacity not counted). Protobuf is
    /// compact where those structures are not: an empty span is two bytes on the wire and
    /// about 250 in memory, so this, not the length of the bytes, is what a decoding stage
    /// costs.
    pub decoded_bytes: usize,
}

/// Element sizes of the repeated fields, as prost lays them out.
mod sizes {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
    use std::mem::size_of;

    pub const RESOURCE_SPANS: usize = size_of::<ResourceSpans>();
    pub const SCOPE_SPANS: usize = size_of::<ScopeSpans>();
    pub const SPAN: usize = size_of::<Span>();
    pub const EVENT: usize = size_of::<span::Event>();
    pub const LINK: usize = size_of::<span::Link>();
    pub const KEY_VALUE: usize = size_of::<KeyValue>();
    pub const ANY_VALUE: usize = size_of::<AnyValue>();
    pub const ENTITY_REF: usize = size_of::<EntityRef>();
    pub const STRING: usize = size_of::<String>();
}

/// Whether `id` is a valid trace id (`len` 16) or span id (`len` 8): the right length and
/// not all zeros.
#[inline(always)]
pub fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|&b| b != 0)
}

/// Checks that `buf` is an `ExportTraceServiceRequest` (encoded the same way as `TracesData`)
/// that prost would decode, and counts its spans. It accepts exactly the inputs for which
/// `ExportTraceServiceRequest::decode(buf)` is `Ok`, and when it rejects one, the error message
/// is the one prost gives. It does not allocate unless it fails.
pub fn validate(buf: &[u8]) -> Result<Validated, WireError> {
    let mut c = Cursor {
        buf,
        pos: 0,
        counts: Validated::default(),
        trace_id_ok: false,
        span_id_ok: false,
    };
    // `Message::decode` reads top-level fields until the input ends, with the whole budget.
    while c.pos < buf.len() {
        let (tag, wire_type) = c.key()?;
        request_field(&mut c, tag, wire_type, RECURSION_LIMIT)?;
    }
    Ok(c.counts)
}

struct Cursor<'a> {
    buf: &'a [u8],
    /// Always `<= buf.len()`.
    pos: usize,
    counts: Validated,
    /// Whether the span being read has a valid trace id and span id so far (a field that
    /// occurs twice counts as its last occurrence, as in prost).
    trace_id_ok: bool,
    span_id_ok: bool,
}

impl Cursor<'_> {
    /// Counts one element of a repeated field of `size` bytes.
    #[inline(always)]
    fn element(&mut self, size: usize) {
        self.counts.decoded_bytes = self.counts.decoded_bytes.saturating_add(size);
    }
}

type Step = Result<(), WireError>;

fn fail<T>(kind: ErrorKind) -> Result<T, WireError> {
    Err(WireError::new(kind))
}

#[inline(always)]
fn check_wire_type(actual: u8, expected: u8) -> Step {
    if actual == expected {
        Ok(())
    } else {
        fail(ErrorKind::UnexpectedWireType { actual, expected })
    }
}

/// Keys, names and most values are ASCII, and this clears them faster than `from_utf8` or
/// `<[u8]>::is_ascii` for the sizes OTLP carries: 16 bytes at a time with no early exit, and
/// the tail as one overlapping load rather than a byte loop. Anything else goes on to
/// `from_utf8`.
#[inline(always)]
fn all_ascii(s: &[u8]) -> bool {
    const HIGH: u128 = 0x8080_8080_8080_8080_8080_8080_8080_8080;
    let n = s.len();
    if n >= 16 {
        let last = u128::from_le_bytes(s[n - 16..].try_into().unwrap_or([0; 16]));
        let mut acc = last;
        for chunk in s.chunks_exact(16) {
            acc |= u128::from_le_bytes(chunk.try_into().unwrap_or([0; 16]));
        }
        acc & HIGH == 0
    } else if n >= 8 {
        let head = u64::from_le_bytes(s[..8].try_into().unwrap_or([0; 8]));
        let tail = u64::from_le_bytes(s[n - 8..].try_into().unwrap_or([0; 8]));
        (head | tail) & HIGH as u64 == 0
    } else if n >= 4 {
        let head = u32::from_le_bytes(s[..4].try_into().unwrap_or([0; 4]));
        let tail = u32::from_le_bytes(s[n - 4..].try_into().unwrap_or([0; 4]));
        (head | tail) & HIGH as u32 == 0
    } else {
        s.iter().all(|&b| b < 0x80)
    }
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Most keys and lengths are one byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_long()
    }

    #[inline]
    fn varint_long(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &b) in self.buf[self.pos..].iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                // prost (after protobuf-go's ConsumeVarint) rejects a tenth byte above 1: it
                // would overflow a u64.
                if i == 9 && b > 1 {
                    break;
                }
                self.pos += i + 1;
                return Ok(value);
            }
        }
        fail(ErrorKind::InvalidVarint)
    }

    /// prost's `decode_key`, with its checks in its order.
    #[inline(always)]
    fn key(&mut self) -> Result<(u32, u8), WireError> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return fail(ErrorKind::InvalidKey { key });
        }
        let wire_type = (key & 7) as u8;
        if wire_type > I32 {
            return fail(ErrorKind::InvalidWireType { value: key & 7 });
        }
        let tag = key as u32 >> 3;
        if tag == 0 {
            return fail(ErrorKind::InvalidTag);
        }
        Ok((tag, wire_type))
    }

    #[inline(always)]
    fn delimited(&mut self, wire_type: u8) -> Result<&'a [u8], WireError> {
        check_wire_type(wire_type, LEN)?;
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return fail(ErrorKind::BufferUnderflow);
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    #[inline(always)]
    fn bytes(&mut self, wire_type: u8) -> Step {
        let b = self.delimited(wire_type)?;
        self.element(b.len());
        Ok(())
    }

    /// A bytes field holding an id of `len` bytes; returns whether it is a valid one.
    #[inline(always)]
    fn id(&mut self, wire_type: u8, len: usize) -> Result<bool, WireError> {
        let b = self.delimited(wire_type)?;
        self.element(b.len());
        Ok(valid_id(b, len))
    }

    #[inline(always)]
    fn string(&mut self, wire_type: u8) -> Step {
        let s = self.delimited(wire_type)?;
        self.element(s.len());
        if all_ascii(s) || std::str::from_utf8(s).is_ok() {
            Ok(())
        } else {
            fail(ErrorKind::InvalidString)
        }
    }

    /// int32, int64, uint32, bool and enum fields: prost takes any varint for all of them.
    #[inline(always)]
    fn int(&mut self, wire_type: u8) -> Step {
        check_wire_type(wire_type, VARINT)?;
        self.varint().map(|_| ())
    }

    #[inline(always)]
    fn fixed(&mut self, wire_type: u8, expected: u8, width: usize) -> Step {
        check_wire_type(wire_type, expected)?;
        if self.remaining() < width {
            return fail(ErrorKind::BufferUnderflow);
        }
        self.pos += width;
        Ok(())
    }

    /// `prost::encoding::message::merge`. `depth` is the budget left where the field occurs;
    /// the message's own fields get one less.
    #[inline(always)]
    fn message(
        &mut self,
        wire_type: u8,
        depth: u32,
        mut field: impl FnMut(&mut Self, u32, u8, u32) -> Step,
    ) -> Step {
        check_wire_type(wire_type, LEN)?;
        if depth == 0 {
            return fail(ErrorKind::RecursionLimitReached);
        }
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return fail(ErrorKind::BufferUnderflow);
        }
        let end = self.pos + len as usize;
        // As in `merge_loop`, a field is read against the whole buffer and may overrun `end`.
        // If it does, the loop ends and the check after it fails.
        while self.pos < end {
            let (tag, wire_type) = self.key()?;
            field(self, tag, wire_type, depth - 1)?;
        }
        if self.pos != end {
            return fail(ErrorKind::DelimitedLengthExceeded);
        }
        Ok(())
    }

    /// `prost::encoding::skip_field`. The budget check comes first, so an unknown field of any
    /// wire type fails when no budget is left.
    fn skip(&mut self, wire_type: u8, tag: u32, depth: u32) -> Step {
        if depth == 0 {
            return fail(ErrorKind::RecursionLimitReached);
        }
        let len = match wire_type {
            VARINT => {
                self.varint()?;
                0
            }
            I64 => 8,
            LEN => self.varint()?,
            SGROUP => loop {
                let (inner_tag, inner_wire_type) = self.key()?;
                if inner_wire_type == EGROUP {
                    if inner_tag != tag {
                        return fail(ErrorKind::UnexpectedEndGroupTag);
                    }
                    break 0;
                }
                self.skip(inner_wire_type, inner_tag, depth - 1)?;
            },
            EGROUP => return fail(ErrorKind::UnexpectedEndGroupTag),
            // `key` lets through only wire types 0 to 5.
            _ => 4,
        };
        if len > self.remaining() as u64 {
            return fail(ErrorKind::BufferUnderflow);
        }
        self.pos += len as usize;
        Ok(())
    }
}

// One function per message type, named after the message. The `at` names are the prost struct
// and field names, which prost uses in its error path.

fn request_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    match tag {
        1 => {
            c.counts.resource_spans += 1;
            c.element(sizes::RESOURCE_SPANS);
            c.message(wire_type, depth, resource_spans_field)
                .map_err(|e| e.at("ExportTraceServiceRequest", "resource_spans"))
        }
        _ => c.skip(wire_type, tag, depth),
    }
}

fn resource_spans_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "ResourceSpans";
    match tag {
        1 => c
            .message(wire_type, depth, resource_field)
            .map_err(|e| e.at(M, "resource")),
        2 => {
            c.element(sizes::SCOPE_SPANS);
            c.message(wire_type, depth, scope_spans_field)
                .map_err(|e| e.at(M, "scope_spans"))
        }
        3 => c.string(wire_type).map_err(|e| e.at(M, "schema_url")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn resource_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Resource";
    match tag {
        1 => {
            c.element(sizes::KEY_VALUE);
            c.message(wire_type, depth, key_value_field)
                .map_err(|e| e.at(M, "attributes"))
        }
        2 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_attributes_count")),
        3 => {
            c.element(sizes::ENTITY_REF);
            c.message(wire_type, depth, entity_ref_field)
                .map_err(|e| e.at(M, "entity_refs"))
        }
        _ => c.skip(wire_type, tag, depth),
    }
}

fn entity_ref_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "EntityRef";
    match tag {
        1 => c.string(wire_type).map_err(|e| e.at(M, "schema_url")),
        // prost-derive names the field with `stringify!`, which keeps the raw identifier.
        2 => c.string(wire_type).map_err(|e| e.at(M, "r#type")),
        3 => {
            c.element(sizes::STRING);
            c.string(wire_type).map_err(|e| e.at(M, "id_keys"))
        }
        4 => {
            c.element(sizes::STRING);
            c.string(wire_type).map_err(|e| e.at(M, "description_keys"))
        }
        _ => c.skip(wire_type, tag, depth),
    }
}

fn scope_spans_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "ScopeSpans";
    match tag {
        1 => c
            .message(wire_type, depth, scope_field)
            .map_err(|e| e.at(M, "scope")),
        2 => {
            c.counts.spans += 1;
            c.element(sizes::SPAN);
            c.trace_id_ok = false;
            c.span_id_ok = false;
            c.message(wire_type, depth, span_field)
                .map_err(|e| e.at(M, "spans"))?;
            if !(c.trace_id_ok && c.span_id_ok) {
                c.counts.invalid_spans += 1;
            }
            Ok(())
        }
        3 => c.string(wire_type).map_err(|e| e.at(M, "schema_url")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn scope_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "InstrumentationScope";
    match tag {
        1 => c.string(wire_type).map_err(|e| e.at(M, "name")),
        2 => c.string(wire_type).map_err(|e| e.at(M, "version")),
        3 => {
            c.element(sizes::KEY_VALUE);
            c.message(wire_type, depth, key_value_field)
                .map_err(|e| e.at(M, "attributes"))
        }
        4 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_attributes_count")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn span_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Span";
    match tag {
        1 => {
            c.trace_id_ok = c.id(wire_type, 16).map_err(|e| e.at(M, "trace_id"))?;
            Ok(())
        }
        2 => {
            c.span_id_ok = c.id(wire_type, 8).map_err(|e| e.at(M, "span_id"))?;
            Ok(())
        }
        3 => c.string(wire_type).map_err(|e| e.at(M, "trace_state")),
        4 => c.bytes(wire_type).map_err(|e| e.at(M, "parent_span_id")),
        5 => c.string(wire_type).map_err(|e| e.at(M, "name")),
        6 => c.int(wire_type).map_err(|e| e.at(M, "kind")),
        7 => c
            .fixed(wire_type, I64, 8)
            .map_err(|e| e.at(M, "start_time_unix_nano")),
        8 => c
            .fixed(wire_type, I64, 8)
            .map_err(|e| e.at(M, "end_time_unix_nano")),
        9 => {
            c.element(sizes::KEY_VALUE);
            c.message(wire_type, depth, key_value_field)
                .map_err(|e| e.at(M, "attributes"))
        }
        10 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_attributes_count")),
        11 => {
            c.element(sizes::EVENT);
            c.message(wire_type, depth, event_field)
                .map_err(|e| e.at(M, "events"))
        }
        12 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_events_count")),
        13 => {
            c.element(sizes::LINK);
            c.message(wire_type, depth, link_field)
                .map_err(|e| e.at(M, "links"))
        }
        14 => c.int(wire_type).map_err(|e| e.at(M, "dropped_links_count")),
        15 => c
            .message(wire_type, depth, status_field)
            .map_err(|e| e.at(M, "status")),
        16 => c.fixed(wire_type, I32, 4).map_err(|e| e.at(M, "flags")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn event_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Event";
    match tag {
        1 => c
            .fixed(wire_type, I64, 8)
            .map_err(|e| e.at(M, "time_unix_nano")),
        2 => c.string(wire_type).map_err(|e| e.at(M, "name")),
        3 => {
            c.element(sizes::KEY_VALUE);
            c.message(wire_type, depth, key_value_field)
                .map_err(|e| e.at(M, "attributes"))
        }
        4 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_attributes_count")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn link_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Link";
    match tag {
        1 => c.bytes(wire_type).map_err(|e| e.at(M, "trace_id")),
        2 => c.bytes(wire_type).map_err(|e| e.at(M, "span_id")),
        3 => c.string(wire_type).map_err(|e| e.at(M, "trace_state")),
        4 => {
            c.element(sizes::KEY_VALUE);
            c.message(wire_type, depth, key_value_field)
                .map_err(|e| e.at(M, "attributes"))
        }
        5 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_attributes_count")),
        6 => c.fixed(wire_type, I32, 4).map_err(|e| e.at(M, "flags")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn status_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Status";
    match tag {
        2 => c.string(wire_type).map_err(|e| e.at(M, "message")),
        3 => c.int(wire_type).map_err(|e| e.at(M, "code")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn key_value_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "KeyValue";
    match tag {
        1 => c.string(wire_type).map_err(|e| e.at(M, "key")),
        2 => c
            .message(wire_type, depth, any_value_field)
            .map_err(|e| e.at(M, "value")),
        3 => c.int(wire_type).map_err(|e| e.at(M, "key_strindex")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn any_value_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    // Every member of the `value` oneof is reported as the field `value`.
    let step = match tag {
        1 => c.string(wire_type),
        2 | 3 | 8 => c.int(wire_type),
        4 => c.fixed(wire_type, I64, 8),
        5 => c.message(wire_type, depth, array_value_field),
        6 => c.message(wire_type, depth, key_value_list_field),
        7 => c.bytes(wire_type),
        _ => return c.skip(wire_type, tag, depth),
    };
    step.map_err(|e| e.at("AnyValue", "value"))
}

fn array_value_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    match tag {
        1 => {
            c.element(sizes::ANY_VALUE);
            c.message(wire_type, depth, any_value_field)
                .map_err(|e| e.at("ArrayValue", "values"))
        }
        _ => c.skip(wire_type, tag, depth),
    }
}

fn key_value_list_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    match tag {
        1 => {
            c.element(sizes::KEY_VALUE);
            c.message(wire_type, depth, key_value_field)
                .map_err(|e| e.at("KeyValueList", "values"))
        }
        _ => c.skip(wire_type, tag, depth),
    }
}

// ---------------------------------------------------------------------------------------------
// Views.
//
// The views trust that `validate` accepted their bytes and do not check again. On any other
// input they stop at the first thing they cannot read, and they never panic: every read is
// bounds-checked, and groups are skipped by counting levels instead of by recursion.

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
