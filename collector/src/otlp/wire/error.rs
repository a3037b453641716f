//! [`WireError`], the reason bytes are not a valid request, worded as prost words it.

use std::fmt;

use super::cursor::{EGROUP, I64, LEN, SGROUP, VARINT};

/// The reason bytes are not a valid OTLP request.
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
    pub(super) fn new(kind: ErrorKind) -> Self {
        WireError(Box::new(ErrorInner {
            kind,
            path: Vec::new(),
        }))
    }

    #[cold]
    #[inline(never)]
    pub(super) fn at(mut self, message: &'static str, field: &'static str) -> Self {
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
