//! The cursor the validators read with: varints, keys, wire types, strings, skipping unknown
//! fields, nesting within prost's recursion budget, and the readers of the messages every
//! signal shares (`Resource`, `InstrumentationScope`, `KeyValue`, `AnyValue`, `EntityRef`).

use super::error::{ErrorKind, WireError};

pub(super) const VARINT: u8 = 0;
pub(super) const I64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const SGROUP: u8 = 3;
pub(super) const EGROUP: u8 = 4;
pub(super) const I32: u8 = 5;

/// prost's `RECURSION_LIMIT`. The workspace does not enable prost's `no-recursion-limit`.
pub(super) const RECURSION_LIMIT: u32 = 100;

/// Element sizes of the repeated fields the shared messages hold, as prost lays them out.
pub(super) mod sizes {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, KeyValue};
    use std::mem::size_of;

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

/// A position in the bytes being checked, the decoded size counted so far, and what the
/// signal's validator counts (`S`).
pub(super) struct Cursor<'a, S> {
    pub(super) buf: &'a [u8],
    /// Always `<= buf.len()`.
    pub(super) pos: usize,
    /// See [`super::Validated::decoded_bytes`].
    pub(super) decoded_bytes: usize,
    pub(super) state: S,
}

impl<S> Cursor<'_, S> {
    /// Counts one element of a repeated field of `size` bytes.
    #[inline(always)]
    pub(super) fn element(&mut self, size: usize) {
        self.decoded_bytes = self.decoded_bytes.saturating_add(size);
    }
}

/// Reads a whole request as `Message::decode` does: top-level fields until the input ends,
/// each with the whole budget. Returns the signal's counts and the decoded size.
#[inline(always)]
pub(super) fn read_request<S>(
    buf: &[u8],
    state: S,
    mut field: impl FnMut(&mut Cursor<'_, S>, u32, u8, u32) -> Step,
) -> Result<(S, usize), WireError> {
    let mut c = Cursor {
        buf,
        pos: 0,
        decoded_bytes: 0,
        state,
    };
    while c.pos < buf.len() {
        let (tag, wire_type) = c.key()?;
        field(&mut c, tag, wire_type, RECURSION_LIMIT)?;
    }
    Ok((c.state, c.decoded_bytes))
}

pub(super) type Step = Result<(), WireError>;

pub(super) fn fail<T>(kind: ErrorKind) -> Result<T, WireError> {
    Err(WireError::new(kind))
}

#[inline(always)]
pub(super) fn check_wire_type(actual: u8, expected: u8) -> Step {
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
pub(super) fn all_ascii(s: &[u8]) -> bool {
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

impl<'a, S> Cursor<'a, S> {
    #[inline(always)]
    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline(always)]
    pub(super) fn varint(&mut self) -> Result<u64, WireError> {
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
    pub(super) fn varint_long(&mut self) -> Result<u64, WireError> {
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
    pub(super) fn key(&mut self) -> Result<(u32, u8), WireError> {
        // Nearly every key is one byte (fields 1 to 15): one below 0x80 with a field number
        // (`b >= 8`) and a wire type of 0 to 5 passes every check below.
        if let Some(&b) = self.buf.get(self.pos)
            && (8..0x80).contains(&b)
            && b & 7 <= I32
        {
            self.pos += 1;
            return Ok((u32::from(b >> 3), b & 7));
        }
        self.key_long()
    }

    /// [`Self::key`] for the rest: longer keys and the ones that fail.
    #[inline]
    fn key_long(&mut self) -> Result<(u32, u8), WireError> {
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
    pub(super) fn delimited(&mut self, wire_type: u8) -> Result<&'a [u8], WireError> {
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
    pub(super) fn bytes(&mut self, wire_type: u8) -> Step {
        let b = self.delimited(wire_type)?;
        self.element(b.len());
        Ok(())
    }

    /// A bytes field holding an id of `len` bytes; returns whether it is a valid one.
    #[inline(always)]
    pub(super) fn id(&mut self, wire_type: u8, len: usize) -> Result<bool, WireError> {
        let b = self.delimited(wire_type)?;
        self.element(b.len());
        Ok(valid_id(b, len))
    }

    #[inline(always)]
    pub(super) fn string(&mut self, wire_type: u8) -> Step {
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
    pub(super) fn int(&mut self, wire_type: u8) -> Step {
        check_wire_type(wire_type, VARINT)?;
        self.varint().map(|_| ())
    }

    #[inline(always)]
    pub(super) fn fixed(&mut self, wire_type: u8, expected: u8, width: usize) -> Step {
        check_wire_type(wire_type, expected)?;
        if self.remaining() < width {
            return fail(ErrorKind::BufferUnderflow);
        }
        self.pos += width;
        Ok(())
    }

    /// A repeated `fixed64`, `sfixed64` or `double` field (`width` 8) or a 32-bit one (`width`
    /// 4), as `merge_repeated` reads it: one element with the declared wire type, or a packed
    /// run in a length-delimited field. A packed run is read like prost's `merge_loop` with
    /// no budget check: elements are read against the whole buffer, so a run whose length is
    /// not a multiple of `width` fails on its last element, with "buffer underflow" when the
    /// input ends first and "delimited length exceeded" otherwise.
    #[inline(always)]
    pub(super) fn repeated_fixed(&mut self, wire_type: u8, expected: u8, width: usize) -> Step {
        if wire_type != LEN {
            self.fixed(wire_type, expected, width)?;
            self.element(width);
            return Ok(());
        }
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return fail(ErrorKind::BufferUnderflow);
        }
        let len = len as usize;
        let whole = len - len % width;
        self.pos += whole;
        self.element(whole);
        if whole != len {
            // The last element starts inside the run and is read past its end.
            if self.remaining() < width {
                return fail(ErrorKind::BufferUnderflow);
            }
            return fail(ErrorKind::DelimitedLengthExceeded);
        }
        Ok(())
    }

    /// A repeated varint field (`uint64` and the like; elements of `element` bytes), packed or
    /// not, as `merge_repeated` reads it.
    #[inline(always)]
    pub(super) fn repeated_varint(&mut self, wire_type: u8, element: usize) -> Step {
        if wire_type != LEN {
            self.int(wire_type)?;
            self.element(element);
            return Ok(());
        }
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return fail(ErrorKind::BufferUnderflow);
        }
        let end = self.pos + len as usize;
        // As in `merge_loop`, a varint may run past `end`; the check after the loop fails then.
        while self.pos < end {
            self.varint()?;
            self.element(element);
        }
        if self.pos != end {
            return fail(ErrorKind::DelimitedLengthExceeded);
        }
        Ok(())
    }

    /// `prost::encoding::message::merge`. `depth` is the budget left where the field occurs;
    /// the message's own fields get one less.
    #[inline(always)]
    pub(super) fn message(
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

    /// A `KeyValue` field: `self.message(wire_type, depth, key_value_field)`, with the same
    /// outcome, counts and errors. Nearly every attribute is laid out as encoders write it (the
    /// key, then a value holding only a `string_value`); such a one is read in one go, and
    /// anything else (or a string that is not ASCII) the long way.
    #[inline(always)]
    pub(super) fn key_value(&mut self, wire_type: u8, depth: u32) -> Step {
        let start = self.pos;
        // The value is a message inside this one: it needs a budget left, as in `message`.
        if wire_type == LEN
            && depth >= 2
            && let Some((key, value, end)) = self.plain_string_key_value()
            && all_ascii(key)
            && all_ascii(value)
        {
            self.pos = end;
            self.element(key.len());
            self.element(value.len());
            return Ok(());
        }
        self.pos = start;
        self.message(wire_type, depth, key_value_field)
    }

    /// At the length of a `KeyValue` laid out as `[0x0a, len, key, 0x12, len, 0x0a, len,
    /// string]` and nothing else, within the input: the key, the string, and where the
    /// `KeyValue` ends. Moves `pos` (the caller puts it back or past the end).
    #[inline(always)]
    fn plain_string_key_value(&mut self) -> Option<(&'a [u8], &'a [u8], usize)> {
        const KEY: u8 = 1 << 3 | LEN;
        const VALUE: u8 = 2 << 3 | LEN;
        const STRING: u8 = 1 << 3 | LEN;
        let end = self.length_end()?;
        self.tag_byte(KEY)?;
        let key_end = self.length_end()?;
        let key = &self.buf[self.pos..key_end];
        self.pos = key_end;
        self.tag_byte(VALUE)?;
        (self.length_end()? == end).then_some(())?;
        self.tag_byte(STRING)?;
        (self.length_end()? == end).then_some(())?;
        Some((key, &self.buf[self.pos..end], end))
    }

    /// Moves past the byte `tag` when it is next.
    #[inline(always)]
    fn tag_byte(&mut self, tag: u8) -> Option<()> {
        (self.buf.get(self.pos) == Some(&tag)).then(|| self.pos += 1)
    }

    /// Reads a length and returns where the bytes it counts end, when they are within the
    /// input.
    #[inline(always)]
    fn length_end(&mut self) -> Option<usize> {
        let len = self.varint().ok()?;
        (len <= self.remaining() as u64).then(|| self.pos + len as usize)
    }

    /// `prost::encoding::skip_field`. The budget check comes first, so an unknown field of any
    /// wire type fails when no budget is left.
    pub(super) fn skip(&mut self, wire_type: u8, tag: u32, depth: u32) -> Step {
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

// One function per shared message type, named after the message. The `at` names are the prost
// struct and field names, which prost uses in its error path.

pub(super) fn resource_field<S>(
    c: &mut Cursor<'_, S>,
    tag: u32,
    wire_type: u8,
    depth: u32,
) -> Step {
    const M: &str = "Resource";
    match tag {
        1 => {
            c.element(sizes::KEY_VALUE);
            c.key_value(wire_type, depth)
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

pub(super) fn entity_ref_field<S>(
    c: &mut Cursor<'_, S>,
    tag: u32,
    wire_type: u8,
    depth: u32,
) -> Step {
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

pub(super) fn scope_field<S>(c: &mut Cursor<'_, S>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "InstrumentationScope";
    match tag {
        1 => c.string(wire_type).map_err(|e| e.at(M, "name")),
        2 => c.string(wire_type).map_err(|e| e.at(M, "version")),
        3 => {
            c.element(sizes::KEY_VALUE);
            c.key_value(wire_type, depth)
                .map_err(|e| e.at(M, "attributes"))
        }
        4 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_attributes_count")),
        _ => c.skip(wire_type, tag, depth),
    }
}

// Inlined (with `any_value_field` and the span's fields) into the loop of the message that
// holds them: attributes are most of what a request's check reads, and a call per field cost
// about a twentieth of it.
#[inline(always)]
pub(super) fn key_value_field<S>(
    c: &mut Cursor<'_, S>,
    tag: u32,
    wire_type: u8,
    depth: u32,
) -> Step {
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

#[inline(always)]
pub(super) fn any_value_field<S>(
    c: &mut Cursor<'_, S>,
    tag: u32,
    wire_type: u8,
    depth: u32,
) -> Step {
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

pub(super) fn array_value_field<S>(
    c: &mut Cursor<'_, S>,
    tag: u32,
    wire_type: u8,
    depth: u32,
) -> Step {
    match tag {
        1 => {
            c.element(sizes::ANY_VALUE);
            c.message(wire_type, depth, any_value_field)
                .map_err(|e| e.at("ArrayValue", "values"))
        }
        _ => c.skip(wire_type, tag, depth),
    }
}

pub(super) fn key_value_list_field<S>(
    c: &mut Cursor<'_, S>,
    tag: u32,
    wire_type: u8,
    depth: u32,
) -> Step {
    match tag {
        1 => {
            c.element(sizes::KEY_VALUE);
            c.key_value(wire_type, depth)
                .map_err(|e| e.at("KeyValueList", "values"))
        }
        _ => c.skip(wire_type, tag, depth),
    }
}
