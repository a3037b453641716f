//! Reading protobuf message bodies field by field, without decoding them, and [`edit`]:
//! a plugin's edits applied to the protobuf bytes of its batch.
//!
//! This is the collector's own code: its OTLP views and its plugin host read and edit batches
//! with it, and the native test harness ([`crate::testing::Harness`]) applies a plugin's edits
//! with the same [`edit::apply`], so an edit means the same thing under `cargo test` as in the
//! collector. Plugins need not call it; inside a plugin the SDK runs [`edit::apply`]
//! only to fold view-mode edits into a replacement batch.
//!
//! The readers trust that the bytes are valid (the host checks every batch before it gets
//! here) and do not check again. On any other input they stop at the first thing they cannot
//! read, and they never panic: every read is bounds-checked, and groups are skipped by counting
//! levels instead of by recursion.

pub mod edit;
pub(crate) mod edit_metrics;

/// A field value as [`Fields`] reads it.
#[derive(Clone, Copy, Debug)]
pub enum FieldValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: the bytes of the value, without the length prefix.
    Len(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
    /// A group (wire types 3 and 4), skipped whole.
    Group,
}

/// The fields of one message body, in order, as (field number, value). Reading stops at the
/// first field that cannot be read.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    /// The fields of `buf`.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        let rest = self.buf.get(self.pos..)?;
        if let Some(&b) = rest.first()
            && b < 0x80
        {
            self.pos += 1;
            return Some(u64::from(b));
        }
        let mut value = 0u64;
        for (i, &b) in rest.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Some(value);
            }
        }
        None
    }

    #[inline(always)]
    fn take(&mut self, len: u64) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(usize::try_from(len).ok()?)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    #[inline]
    fn skip_group(&mut self) -> Option<()> {
        let mut level = 1usize;
        loop {
            let key = self.varint()?;
            match key & 7 {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    let len = self.varint()?;
                    self.take(len)?;
                }
                3 => level += 1,
                4 => {
                    level -= 1;
                    if level == 0 {
                        return Some(());
                    }
                }
                5 => {
                    self.take(4)?;
                }
                _ => return None,
            }
        }
    }

    #[inline(always)]
    fn read(&mut self) -> Option<(u32, FieldValue<'a>)> {
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).ok()?;
        let value = match key & 7 {
            0 => FieldValue::Varint(self.varint()?),
            1 => FieldValue::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let len = self.varint()?;
                FieldValue::Len(self.take(len)?)
            }
            3 => {
                self.skip_group()?;
                FieldValue::Group
            }
            5 => FieldValue::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            _ => return None,
        };
        Some((tag, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, FieldValue<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let field = self.read();
        if field.is_none() {
            self.pos = self.buf.len();
        }
        field
    }
}

/// One top-level field of a message body, as encoded.
#[derive(Debug, Clone, Copy)]
pub struct RawField<'a> {
    /// The field number.
    pub number: u32,
    /// The whole field: key and value, to copy it as it is.
    pub bytes: &'a [u8],
    /// The value of a length-delimited field (empty for other wire types).
    pub payload: &'a [u8],
}

/// The top-level fields of a checked message body, in order, for rewriting a message
/// without decoding it (copy what stays, append what changes).
#[inline]
pub fn raw_fields(body: &[u8]) -> impl Iterator<Item = RawField<'_>> + '_ {
    let mut fields = Fields::new(body);
    std::iter::from_fn(move || {
        let start = fields.pos;
        let (number, value) = fields.next()?;
        Some(RawField {
            number,
            bytes: &body[start..fields.pos],
            payload: match value {
                FieldValue::Len(b) => b,
                _ => &[],
            },
        })
    })
}

/// The occurrences of field `number` among the top-level fields of a checked message body.
#[inline]
pub fn raw_fields_numbered(body: &[u8], number: u32) -> impl Iterator<Item = RawField<'_>> + '_ {
    raw_fields(body).filter(move |f| f.number == number)
}

/// The key of an encoded `KeyValue` (the last occurrence wins, as in decoding).
#[inline]
pub fn key_value_key(kv: &[u8]) -> Option<&str> {
    let key = Fields::new(kv)
        .filter_map(|f| match f {
            (1, FieldValue::Len(b)) => Some(b),
            _ => None,
        })
        .last()?;
    std::str::from_utf8(key).ok()
}
