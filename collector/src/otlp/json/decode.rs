//! Decoding: serde visitors that read OTLP/JSON straight into prost structs,
//! keeping the path to the value being read for error messages.

use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, Expected, IgnoredAny, MapAccess, SeqAccess, Unexpected,
    Visitor,
};
use serde_json::error::Category;

/// Decodes a whole document as the request message `T`, with nothing after it.
pub(super) fn decode<T: JsonMessage>(
    bytes: &[u8],
    path: &mut Path,
) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Root::<T>(path, PhantomData)
        .deserialize(&mut de)
        .and_then(|request| {
            de.end()?;
            Ok(request)
        })
}

/// The message for a failed [`decode`]: serde_json's, with the path to the bad value.
pub(super) fn error_text(path: &Path, e: &serde_json::Error) -> String {
    match e.classify() {
        // Only a bad value has a meaningful place in the message tree; a
        // syntax error's line and column say all there is to say.
        Category::Data if !path.steps.is_empty() => format!("{path}: {e}"),
        _ => e.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Decoding: where in the document we are.

/// The fields and list indexes enclosing the value being decoded.
///
/// Each step is pushed before its value is decoded and popped after it
/// succeeds; on an error nothing is popped, so the stack is left naming the
/// value that failed.
///
/// It also carries what a bounded decoding ([`super::decode_traces_within`]) keeps track of.
#[derive(Default)]
pub(super) struct Path {
    pub(super) steps: Vec<Step>,
    /// Leave invalid elements out and stop past `budget`.
    pub(super) bounded: bool,
    pub(super) budget: usize,
    /// Bytes taken by the elements of repeated fields kept so far.
    pub(super) used: usize,
    /// Elements left out because [`JsonMessage::valid`] said no.
    pub(super) invalid: usize,
}

impl Path {
    /// Counts one element of `size` bytes against the budget.
    fn charge<E: de::Error>(&mut self, size: usize) -> Result<(), E> {
        self.used = self.used.saturating_add(size);
        if self.bounded && self.used > self.budget {
            return Err(E::custom(format_args!(
                "the request takes more than {} bytes decoded",
                self.budget
            )));
        }
        Ok(())
    }
}

/// One step of a [`Path`].
pub(super) enum Step {
    Field(&'static str),
    Index(usize),
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Field(name) if i == 0 => f.write_str(name)?,
                Step::Field(name) => write!(f, ".{name}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Shortens a string echoed back in an error message, so that a huge bad
/// value cannot blow up the error response.
pub(super) fn shorten(s: &str) -> &str {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// serde's "invalid value: string ..., expected ..." error, with the string shortened.
fn invalid_str<E: de::Error>(value: &str, expected: &dyn Expected) -> E {
    E::invalid_value(Unexpected::Str(shorten(value)), expected)
}

// ---------------------------------------------------------------------------
// Decoding: messages.

/// A protobuf message, decoded from a JSON object field by field. (Not
/// `prost::Message`, which is about the binary encoding.)
pub(super) trait JsonMessage: Default {
    /// The message's name in errors, e.g. `Span`.
    const NAME: &'static str;
    /// The message's known fields.
    type Field: Field;
    /// Reads the value of `field` from `map` into `self`.
    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: Self::Field,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error>;

    /// Whether a bounded decoding keeps this element of a list (see
    /// [`super::decode_traces_within`]).
    fn valid(&self) -> bool {
        true
    }
}

/// The known fields of one message.
pub(super) trait Field: Copy {
    /// The field a JSON key names, if the message has it.
    fn from_key(key: &str) -> Option<Self>;
    /// The field's canonical (lowerCamelCase) name, for error paths.
    fn name(self) -> &'static str;
}

/// Declares a [`Field`] enum: each variant with its lowerCamelCase JSON name
/// and, where it differs, its original proto (snake_case) name, both of which
/// proto3 JSON parsers must accept.
macro_rules! fields {
    ($name:ident { $($variant:ident = $camel:literal $(| $snake:literal)?),* $(,)? }) => {
        #[derive(Clone, Copy)]
        pub(super) enum $name {
            $($variant),*
        }

        impl Field for $name {
            fn from_key(key: &str) -> Option<Self> {
                match key {
                    $($camel $(| $snake)? => Some(Self::$variant),)*
                    _ => None,
                }
            }

            fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $camel),*
                }
            }
        }
    };
}
pub(super) use fields;

/// Reads an object key as one of `F`'s fields, `None` for an unknown key,
/// without allocating for it.
pub(super) struct KeySeed<F>(PhantomData<F>);

impl<'de, F: Field> DeserializeSeed<'de> for KeySeed<F> {
    type Value = Option<F>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<F>, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de, F: Field> Visitor<'de> for KeySeed<F> {
    type Value = Option<F>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<F>, E> {
        Ok(F::from_key(v))
    }
}

/// Decodes a message-typed value: an object, or `null` for "not present".
pub(super) struct Nested<'p, T> {
    path: &'p mut Path,
    message: PhantomData<fn() -> T>,
}

impl<'p, T> Nested<'p, T> {
    fn new(path: &'p mut Path) -> Self {
        Nested {
            path,
            message: PhantomData,
        }
    }
}

impl<'de, T: JsonMessage> DeserializeSeed<'de> for Nested<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        // `deserialize_any`, not `deserialize_map`, so that `null` reaches `visit_unit`.
        d.deserialize_any(self)
    }
}

impl<'de, T: JsonMessage> Visitor<'de> for Nested<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an OTLP/JSON {} object", T::NAME)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut message = T::default();
        while let Some(key) = map.next_key_seed(KeySeed::<T::Field>(PhantomData))? {
            match key {
                Some(field) => {
                    self.path.steps.push(Step::Field(field.name()));
                    message.decode_field(field, &mut map, self.path)?;
                    self.path.steps.pop();
                }
                // Skipped whole, nested objects and arrays included.
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(message))
    }
}

/// Decodes a repeated message field: an array, or `null` for an empty one.
pub(super) struct Repeated<'p, T> {
    path: &'p mut Path,
    message: PhantomData<fn() -> T>,
}

impl<'de, T: JsonMessage> DeserializeSeed<'de> for Repeated<'_, T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: JsonMessage> Visitor<'de> for Repeated<'_, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of OTLP/JSON {} objects", T::NAME)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Vec<T>, S::Error> {
        let mut items = Vec::new();
        for index in 0.. {
            self.path.steps.push(Step::Index(index));
            let Some(item) = seq.next_element_seed(Nested::<T>::new(self.path))? else {
                break;
            };
            self.path.steps.pop();
            // A `null` element is taken leniently as an empty message.
            let item = item.unwrap_or_default();
            if self.path.bounded && !item.valid() {
                self.path.invalid += 1;
                continue;
            }
            self.path.charge(std::mem::size_of::<T>())?;
            items.push(item);
        }
        self.path.steps.pop();
        Ok(items)
    }
}

/// The top level: unlike a nested message, it must be an object.
struct Root<'p, T>(&'p mut Path, PhantomData<fn() -> T>);

impl<'de, T: JsonMessage> DeserializeSeed<'de> for Root<'_, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        let request = d.deserialize_map(Nested::<T>::new(self.0))?;
        Ok(request.unwrap_or_default())
    }
}

/// Reads a message-typed field; `None` if it is `null`.
pub(super) fn nested<'de, A: MapAccess<'de>, T: JsonMessage>(
    map: &mut A,
    path: &mut Path,
) -> Result<Option<T>, A::Error> {
    map.next_value_seed(Nested::new(path))
}

/// Reads a repeated message field.
pub(super) fn repeated<'de, A: MapAccess<'de>, T: JsonMessage>(
    map: &mut A,
    path: &mut Path,
) -> Result<Vec<T>, A::Error> {
    map.next_value_seed(Repeated {
        path,
        message: PhantomData,
    })
}

/// Reads a scalar field; `null` gives the default value.
pub(super) fn scalar<'de, A: MapAccess<'de>, T: Default>(map: &mut A) -> Result<T, A::Error>
where
    Scalar<T>: Deserialize<'de>,
{
    Ok(map.next_value::<Scalar<T>>()?.0.unwrap_or_default())
}

/// Reads a scalar field as it is: `None` if it is `null`. For proto3 `optional` fields and
/// the members of a oneof, where "not set" differs from the default value.
pub(super) fn optional<'de, A: MapAccess<'de>, T>(map: &mut A) -> Result<Option<T>, A::Error>
where
    Scalar<T>: Deserialize<'de>,
{
    Ok(map.next_value::<Scalar<T>>()?.0)
}

/// Reads a repeated number field (`bucketCounts`, `explicitBounds`): an array, or `null` for
/// an empty one; each element counts against a bounded decoding's budget.
pub(super) fn numbers<'de, A: MapAccess<'de>, T: Default>(
    map: &mut A,
    path: &mut Path,
) -> Result<Vec<T>, A::Error>
where
    Scalar<T>: Deserialize<'de>,
{
    map.next_value_seed(Scalars {
        path,
        expecting: "an array of numbers",
        scalar: PhantomData,
    })
}

/// Reads a repeated string field, like [`numbers`].
pub(super) fn strings<'de, A: MapAccess<'de>>(
    map: &mut A,
    path: &mut Path,
) -> Result<Vec<String>, A::Error> {
    map.next_value_seed(Scalars {
        path,
        expecting: "an array of strings",
        scalar: PhantomData,
    })
}

/// Sets the oneof `oneof` to `value`, the value of its member `member` (`None` when the
/// JSON value was `null`, which leaves the oneof as it is). `describe` names the oneof in
/// the message when a second member arrives: proto3 JSON parsers reject a oneof set twice
/// rather than silently keep one of the values.
pub(super) fn set_oneof<T, E: de::Error>(
    oneof: &mut Option<T>,
    value: Option<T>,
    member: &'static str,
    describe: Oneof<T>,
) -> Result<(), E> {
    let Some(value) = value else {
        return Ok(());
    };
    if let Some(previous) = oneof {
        return Err(E::custom(format_args!(
            "{} has more than one {}: {} and {member}",
            describe.message,
            describe.oneof,
            (describe.member_name)(previous),
        )));
    }
    *oneof = Some(value);
    Ok(())
}

/// A oneof, for the message when two of its members are set (see [`set_oneof`]).
pub(super) struct Oneof<T> {
    /// The message it is in, e.g. `AnyValue`.
    pub(super) message: &'static str,
    /// The oneof's name, e.g. `value`.
    pub(super) oneof: &'static str,
    /// The JSON name of the member a value is in.
    pub(super) member_name: fn(&T) -> &'static str,
}

/// Decodes a repeated scalar field; see [`numbers`] and [`strings`].
struct Scalars<'p, T> {
    path: &'p mut Path,
    /// What the field must be, for the error message.
    expecting: &'static str,
    scalar: PhantomData<fn() -> T>,
}

impl<'de, T: Default> DeserializeSeed<'de> for Scalars<'_, T>
where
    Scalar<T>: Deserialize<'de>,
{
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Default> Visitor<'de> for Scalars<'_, T>
where
    Scalar<T>: Deserialize<'de>,
{
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Vec<T>, S::Error> {
        let mut items = Vec::new();
        for index in 0.. {
            self.path.steps.push(Step::Index(index));
            let Some(item) = seq.next_element::<Scalar<T>>()? else {
                break;
            };
            self.path.steps.pop();
            self.path.charge(std::mem::size_of::<T>())?;
            // Leniently, as for message lists, `null` is the default value.
            items.push(item.0.unwrap_or_default());
        }
        self.path.steps.pop();
        Ok(items)
    }
}

// ---------------------------------------------------------------------------
// Decoding: scalars.

/// A proto3 JSON scalar of type `T`; `None` when the JSON value is `null`.
///
/// `Vec<u8>` is a `bytes` field, which proto3 JSON writes as base64 (the hex
/// ids are not `Scalar`s but [`HexId`]s).
pub(super) struct Scalar<T>(pub(super) Option<T>);

/// A visitor that produces a `Scalar<T>`'s content.
pub(super) struct ScalarVisitor<T>(PhantomData<T>);

impl<'de, T> Deserialize<'de> for Scalar<T>
where
    ScalarVisitor<T>: Visitor<'de, Value = Option<T>>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `deserialize_any` lets each visitor take the JSON types it allows,
        // `null` included.
        d.deserialize_any(ScalarVisitor(PhantomData)).map(Scalar)
    }
}

impl<'de> Visitor<'de> for ScalarVisitor<String> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
}

impl<'de> Visitor<'de> for ScalarVisitor<bool> {
    type Value = Option<bool>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
}

impl<'de> Visitor<'de> for ScalarVisitor<f64> {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, or \"NaN\", \"Infinity\" or \"-Infinity\"")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        // JSON has no literals for these, so proto3 JSON spells them as strings;
        // it also allows any number as a string.
        match v {
            "NaN" => Ok(Some(f64::NAN)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            // Rust also parses "inf", "nan" and the like, which are not JSON numbers.
            _ => match v.parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(Some(n)),
                _ => Err(invalid_str(v, &self)),
            },
        }
    }
}

/// Decoding config: proto3 JSON parsers take base64 with or without padding,
/// and (like Go's decoder) do not insist that unused trailing bits be zero.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

impl<'de> Visitor<'de> for ScalarVisitor<Vec<u8>> {
    type Value = Option<Vec<u8>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        // proto3 JSON parsers accept the URL-safe alphabet too; its two
        // distinct characters tell it apart from the standard one.
        let engine = if v.contains(['-', '_']) {
            &BASE64_URL_SAFE
        } else {
            &BASE64_STANDARD
        };
        match engine.decode(v) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) => Err(E::custom(format_args!(
                "invalid base64 {:?}: {e}",
                shorten(v)
            ))),
        }
    }
}

/// An integer type of a proto3 scalar field.
pub(super) trait Int: TryFrom<i128> + std::str::FromStr {
    /// What a JSON value for it must be.
    const EXPECTING: &'static str;
}

impl Int for u64 {
    const EXPECTING: &'static str =
        "an unsigned 64-bit integer (a JSON number or a decimal string)";
}

impl Int for i64 {
    const EXPECTING: &'static str = "a 64-bit integer (a JSON number or a decimal string)";
}

impl Int for u32 {
    const EXPECTING: &'static str = "an unsigned 32-bit integer";
}

impl Int for i32 {
    const EXPECTING: &'static str = "a 32-bit integer";
}

/// Integer scalars. proto3 JSON writes 64-bit integers as strings (JavaScript
/// cannot hold them in a number) and parsers must accept either form, for
/// every integer type; a number with an exponent or a zero fraction is fine if
/// its value is a whole number in range.
macro_rules! int_scalar {
    ($($t:ty),*) => {$(
        impl<'de> Visitor<'de> for ScalarVisitor<$t> {
            type Value = Option<$t>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(<$t as Int>::EXPECTING)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                <$t>::try_from(v)
                    .map(Some)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                <$t>::try_from(v)
                    .map(Some)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // `fract` is NaN for infinities and NaN, so they fail here too;
                // `as` saturates, so a huge value fails `try_from`.
                if v.fract() == 0.0
                    && let Ok(n) = <$t>::try_from(v as i128)
                {
                    return Ok(Some(n));
                }
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse::<$t>().map(Some).map_err(|_| invalid_str(v, &self))
            }
        }
    )*};
}

int_scalar!(u64, i64, u32, i32);

/// A trace or span id: OTLP/JSON writes these as hex, not base64 as proto3
/// JSON would, and only the exact length or empty (= unset) is valid.
#[derive(Clone, Copy)]
pub(super) struct HexId {
    /// The field's name, for the error message.
    field: &'static str,
    /// The length in bytes.
    len: usize,
}

impl HexId {
    pub(super) const TRACE_ID: HexId = HexId {
        field: "traceId",
        len: 16,
    };
    pub(super) const SPAN_ID: HexId = HexId {
        field: "spanId",
        len: 8,
    };
    pub(super) const PARENT_SPAN_ID: HexId = HexId {
        field: "parentSpanId",
        len: 8,
    };
}

impl<'de> DeserializeSeed<'de> for HexId {
    type Value = Vec<u8>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HexId {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} of {} hex digits", self.field, self.len * 2)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<u8>, E> {
        Ok(Vec::new())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        if v.is_empty() {
            return Ok(Vec::new());
        }
        if v.len() == self.len * 2 {
            // Decoding into a stack buffer first is measurably faster than
            // `hex::decode`; `hex` takes either case.
            let mut buf = [0u8; 16];
            let buf = &mut buf[..self.len];
            if hex::decode_to_slice(v, buf).is_ok() {
                return Ok(buf.to_vec());
            }
        }
        Err(E::custom(format_args!(
            "invalid {} {:?}: expected {} hex digits",
            self.field,
            shorten(v),
            self.len * 2
        )))
    }
}

/// An enum field: proto3 JSON parsers take the value's name or its number,
/// and keep numbers the enum does not know (proto3 enums are open).
#[derive(Clone, Copy)]
pub(super) struct EnumSeed {
    /// The field's name, for the error message.
    pub(super) field: &'static str,
    /// The enum's name, for the error message.
    pub(super) enum_name: &'static str,
    /// A valid name, for the error message.
    pub(super) example: &'static str,
    /// The value a name stands for.
    pub(super) from_name: fn(&str) -> Option<i32>,
}

impl<'de> DeserializeSeed<'de> for EnumSeed {
    type Value = i32;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i32, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EnumSeed {
    type Value = i32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "one of the {} names or a 32-bit integer", self.enum_name)
    }

    fn visit_unit<E: de::Error>(self) -> Result<i32, E> {
        Ok(0)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
        i32::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
        i32::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i32, E> {
        ScalarVisitor::<i32>(PhantomData)
            .visit_f64(v)
            .map(Option::unwrap_or_default)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i32, E> {
        if let Some(value) = (self.from_name)(v) {
            return Ok(value);
        }
        // Leniently, a number in a string as for the integer fields.
        if let Ok(value) = v.parse::<i32>() {
            return Ok(value);
        }
        Err(E::custom(format_args!(
            "invalid {} {:?}: expected one of the {} names, such as \"{}\", or an integer",
            self.field,
            shorten(v),
            self.enum_name,
            self.example
        )))
    }
}
