//! OTLP/JSON for traces, as the OTLP specification defines it.
//!
//! OTLP/JSON is the proto3 JSON mapping with OTLP's own rules on top: trace and
//! span ids are hex strings (not base64 like other `bytes` fields), and
//! enums are written as integers. [`decode_traces`] accepts everything a
//! conformant sender may send: lowerCamelCase or original snake_case field
//! names, enums as integers or names, 64-bit integers as JSON numbers or
//! decimal strings, `null` for a default value, and unknown fields (skipped
//! whole). [`encode_traces`] writes the canonical form, the one the
//! OpenTelemetry Collector's file exporter writes.
//!
//! This runs on a receiver's hot path, so decoding drives hand-written serde
//! visitors straight into the prost structs, with no `serde_json::Value` in
//! between, and encoding appends bytes to the caller's buffer. The visitors
//! keep a stack of the fields and list indexes they are inside of, which costs
//! a push and a pop per field but lets an error say where it happened
//! (`resourceSpans[0].scopeSpans[1].spans[3].traceId: ...`).

use std::fmt;
use std::io::Write as _;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, Expected, IgnoredAny, MapAccess, SeqAccess, Unexpected,
    Visitor,
};
use serde_json::error::Category;

use super::ExportTraceServiceRequest;

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
///
/// Accepts both lowerCamelCase and snake_case field names, enums as integers
/// or names, 64-bit integers as numbers or decimal strings, `null` for
/// defaults, and ignores unknown fields. Trace and span ids must be hex
/// (either case) of the right length, or empty.
///
/// A malformed document yields serde_json's message; a well-formed one with a
/// bad value yields the path to that value and what is wrong with it, e.g.
/// `resourceSpans[0].scopeSpans[0].spans[2].traceId: invalid traceId "abc":
/// expected 32 hex digits at line 1 column 97`.
pub fn decode_traces(bytes: &[u8]) -> Result<ExportTraceServiceRequest, String> {
    let mut path = Path::default();
    decode(bytes, &mut path).map_err(|e| error_text(&path, &e))
}

/// What [`decode_traces_within`] decoded.
#[derive(Debug)]
pub struct Decoded {
    /// The request, without its invalid spans.
    pub request: ExportTraceServiceRequest,
    /// Spans left out for an invalid trace or span id (empty or all zeros).
    pub invalid_spans: usize,
}

/// Why [`decode_traces_within`] decoded nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not an OTLP/JSON request: the message [`decode_traces`] gives.
    Malformed(String),
    /// The decoded request would take more than the budget: `budget` bytes.
    OverBudget {
        /// The budget, in bytes.
        budget: usize,
    },
}

/// [`decode_traces`] for a receiver: spans with an invalid trace or span id (empty or all
/// zeros; a wrong length is malformed) are left out and counted, never held, and decoding stops
/// as soon as the elements of repeated fields kept so far take more than `budget` bytes (the
/// same measure as [`crate::otlp::wire::Validated::decoded_bytes`], less the strings, which
/// are never longer than the JSON text they come from).
pub fn decode_traces_within(bytes: &[u8], budget: usize) -> Result<Decoded, DecodeError> {
    let mut path = Path {
        bounded: true,
        budget,
        ..Path::default()
    };
    match decode(bytes, &mut path) {
        Ok(request) => Ok(Decoded {
            request,
            invalid_spans: path.invalid_spans,
        }),
        Err(_) if path.used > path.budget => Err(DecodeError::OverBudget { budget }),
        Err(e) => Err(DecodeError::Malformed(error_text(&path, &e))),
    }
}

fn decode(bytes: &[u8], path: &mut Path) -> Result<ExportTraceServiceRequest, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Root(path).deserialize(&mut de).and_then(|request| {
        de.end()?;
        Ok(request)
    })
}

fn error_text(path: &Path, e: &serde_json::Error) -> String {
    match e.classify() {
        // Only a bad value has a meaningful place in the message tree; a
        // syntax error's line and column say all there is to say.
        Category::Data if !path.steps.is_empty() => format!("{path}: {e}"),
        _ => e.to_string(),
    }
}

/// Appends `{"resourceSpans":[...]}` for `resource_spans` to `out`, on one line (no newline).
///
/// Field names are lowerCamelCase, ids lowercase hex, enums integers, 64-bit
/// integers decimal strings, `bytesValue` standard padded base64; fields with
/// default values are left out, as the proto3 JSON mapping does.
pub fn encode_traces(resource_spans: &[ResourceSpans], out: &mut Vec<u8>) {
    let mut request = Obj::start(out);
    // Written even when empty: the result is then still a recognisable request.
    let out = request.key("resourceSpans");
    out.push(b'[');
    for (i, rs) in resource_spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_resource_spans(out, rs);
    }
    out.push(b']');
    request.end();
}

// ---------------------------------------------------------------------------
// Decoding: where in the document we are.

/// The fields and list indexes enclosing the value being decoded.
///
/// Each step is pushed before its value is decoded and popped after it
/// succeeds; on an error nothing is popped, so the stack is left naming the
/// value that failed.
///
/// It also carries what [`decode_traces_within`] keeps track of.
#[derive(Default)]
struct Path {
    steps: Vec<Step>,
    /// Leave invalid spans out and stop past `budget`.
    bounded: bool,
    budget: usize,
    /// Bytes taken by the elements of repeated fields kept so far.
    used: usize,
    invalid_spans: usize,
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
enum Step {
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
fn shorten(s: &str) -> &str {
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
trait JsonMessage: Default {
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
    /// [`decode_traces_within`]).
    fn valid(&self) -> bool {
        true
    }
}

/// The known fields of one message.
trait Field: Copy {
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
        enum $name {
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

/// Reads an object key as one of `F`'s fields, `None` for an unknown key,
/// without allocating for it.
struct KeySeed<F>(PhantomData<F>);

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
struct Nested<'p, T> {
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
struct Repeated<'p, T> {
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
                self.path.invalid_spans += 1;
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
struct Root<'p>(&'p mut Path);

impl<'de> DeserializeSeed<'de> for Root<'_> {
    type Value = ExportTraceServiceRequest;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let request = d.deserialize_map(Nested::<ExportTraceServiceRequest>::new(self.0))?;
        Ok(request.unwrap_or_default())
    }
}

/// Reads a message-typed field; `None` if it is `null`.
fn nested<'de, A: MapAccess<'de>, T: JsonMessage>(
    map: &mut A,
    path: &mut Path,
) -> Result<Option<T>, A::Error> {
    map.next_value_seed(Nested::new(path))
}

/// Reads a repeated message field.
fn repeated<'de, A: MapAccess<'de>, T: JsonMessage>(
    map: &mut A,
    path: &mut Path,
) -> Result<Vec<T>, A::Error> {
    map.next_value_seed(Repeated {
        path,
        message: PhantomData,
    })
}

/// Reads a scalar field; `null` gives the default value.
fn scalar<'de, A: MapAccess<'de>, T: Default>(map: &mut A) -> Result<T, A::Error>
where
    Scalar<T>: Deserialize<'de>,
{
    Ok(map.next_value::<Scalar<T>>()?.0.unwrap_or_default())
}

fields! { RequestField { ResourceSpans = "resourceSpans" | "resource_spans" } }

impl JsonMessage for ExportTraceServiceRequest {
    const NAME: &'static str = "ExportTraceServiceRequest";
    type Field = RequestField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: RequestField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            RequestField::ResourceSpans => self.resource_spans = repeated(map, path)?,
        }
        Ok(())
    }
}

fields! {
    ResourceSpansField {
        Resource = "resource",
        ScopeSpans = "scopeSpans" | "scope_spans",
        SchemaUrl = "schemaUrl" | "schema_url",
    }
}

impl JsonMessage for ResourceSpans {
    const NAME: &'static str = "ResourceSpans";
    type Field = ResourceSpansField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ResourceSpansField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ResourceSpansField::Resource => self.resource = nested(map, path)?,
            ResourceSpansField::ScopeSpans => self.scope_spans = repeated(map, path)?,
            ResourceSpansField::SchemaUrl => self.schema_url = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    ResourceField {
        Attributes = "attributes",
        DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
        EntityRefs = "entityRefs" | "entity_refs",
    }
}

impl JsonMessage for Resource {
    const NAME: &'static str = "Resource";
    type Field = ResourceField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ResourceField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ResourceField::Attributes => self.attributes = repeated(map, path)?,
            ResourceField::DroppedAttributesCount => self.dropped_attributes_count = scalar(map)?,
            ResourceField::EntityRefs => self.entity_refs = repeated(map, path)?,
        }
        Ok(())
    }
}

fields! {
    EntityRefField {
        SchemaUrl = "schemaUrl" | "schema_url",
        Type = "type",
        IdKeys = "idKeys" | "id_keys",
        DescriptionKeys = "descriptionKeys" | "description_keys",
    }
}

impl JsonMessage for EntityRef {
    const NAME: &'static str = "EntityRef";
    type Field = EntityRefField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: EntityRefField,
        map: &mut A,
        _path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            EntityRefField::SchemaUrl => self.schema_url = scalar(map)?,
            EntityRefField::Type => self.r#type = scalar(map)?,
            EntityRefField::IdKeys => self.id_keys = map.next_value::<Strings>()?.0,
            EntityRefField::DescriptionKeys => {
                self.description_keys = map.next_value::<Strings>()?.0;
            }
        }
        Ok(())
    }
}

fields! {
    ScopeSpansField {
        Scope = "scope",
        Spans = "spans",
        SchemaUrl = "schemaUrl" | "schema_url",
    }
}

impl JsonMessage for ScopeSpans {
    const NAME: &'static str = "ScopeSpans";
    type Field = ScopeSpansField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ScopeSpansField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ScopeSpansField::Scope => self.scope = nested(map, path)?,
            ScopeSpansField::Spans => self.spans = repeated(map, path)?,
            ScopeSpansField::SchemaUrl => self.schema_url = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    ScopeField {
        Name = "name",
        Version = "version",
        Attributes = "attributes",
        DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
    }
}

impl JsonMessage for InstrumentationScope {
    const NAME: &'static str = "InstrumentationScope";
    type Field = ScopeField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ScopeField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ScopeField::Name => self.name = scalar(map)?,
            ScopeField::Version => self.version = scalar(map)?,
            ScopeField::Attributes => self.attributes = repeated(map, path)?,
            ScopeField::DroppedAttributesCount => self.dropped_attributes_count = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    SpanField {
        TraceId = "traceId" | "trace_id",
        SpanId = "spanId" | "span_id",
        TraceState = "traceState" | "trace_state",
        ParentSpanId = "parentSpanId" | "parent_span_id",
        Flags = "flags",
        Name = "name",
        Kind = "kind",
        StartTimeUnixNano = "startTimeUnixNano" | "start_time_unix_nano",
        EndTimeUnixNano = "endTimeUnixNano" | "end_time_unix_nano",
        Attributes = "attributes",
        DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
        Events = "events",
        DroppedEventsCount = "droppedEventsCount" | "dropped_events_count",
        Links = "links",
        DroppedLinksCount = "droppedLinksCount" | "dropped_links_count",
        Status = "status",
    }
}

impl JsonMessage for Span {
    const NAME: &'static str = "Span";
    type Field = SpanField;

    fn valid(&self) -> bool {
        crate::otlp::wire::valid_id(&self.trace_id, 16)
            && crate::otlp::wire::valid_id(&self.span_id, 8)
    }

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: SpanField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            SpanField::TraceId => self.trace_id = map.next_value_seed(HexId::TRACE_ID)?,
            SpanField::SpanId => self.span_id = map.next_value_seed(HexId::SPAN_ID)?,
            SpanField::TraceState => self.trace_state = scalar(map)?,
            SpanField::ParentSpanId => {
                self.parent_span_id = map.next_value_seed(HexId::PARENT_SPAN_ID)?;
            }
            SpanField::Flags => self.flags = scalar(map)?,
            SpanField::Name => self.name = scalar(map)?,
            SpanField::Kind => self.kind = map.next_value_seed(EnumSeed::SPAN_KIND)?,
            SpanField::StartTimeUnixNano => self.start_time_unix_nano = scalar(map)?,
            SpanField::EndTimeUnixNano => self.end_time_unix_nano = scalar(map)?,
            SpanField::Attributes => self.attributes = repeated(map, path)?,
            SpanField::DroppedAttributesCount => self.dropped_attributes_count = scalar(map)?,
            SpanField::Events => self.events = repeated(map, path)?,
            SpanField::DroppedEventsCount => self.dropped_events_count = scalar(map)?,
            SpanField::Links => self.links = repeated(map, path)?,
            SpanField::DroppedLinksCount => self.dropped_links_count = scalar(map)?,
            SpanField::Status => self.status = nested(map, path)?,
        }
        Ok(())
    }
}

fields! {
    EventField {
        TimeUnixNano = "timeUnixNano" | "time_unix_nano",
        Name = "name",
        Attributes = "attributes",
        DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
    }
}

impl JsonMessage for span::Event {
    const NAME: &'static str = "Span.Event";
    type Field = EventField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: EventField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            EventField::TimeUnixNano => self.time_unix_nano = scalar(map)?,
            EventField::Name => self.name = scalar(map)?,
            EventField::Attributes => self.attributes = repeated(map, path)?,
            EventField::DroppedAttributesCount => self.dropped_attributes_count = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    LinkField {
        TraceId = "traceId" | "trace_id",
        SpanId = "spanId" | "span_id",
        TraceState = "traceState" | "trace_state",
        Attributes = "attributes",
        DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
        Flags = "flags",
    }
}

impl JsonMessage for span::Link {
    const NAME: &'static str = "Span.Link";
    type Field = LinkField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: LinkField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            LinkField::TraceId => self.trace_id = map.next_value_seed(HexId::TRACE_ID)?,
            LinkField::SpanId => self.span_id = map.next_value_seed(HexId::SPAN_ID)?,
            LinkField::TraceState => self.trace_state = scalar(map)?,
            LinkField::Attributes => self.attributes = repeated(map, path)?,
            LinkField::DroppedAttributesCount => self.dropped_attributes_count = scalar(map)?,
            LinkField::Flags => self.flags = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    StatusField {
        Message = "message",
        Code = "code",
    }
}

impl JsonMessage for Status {
    const NAME: &'static str = "Status";
    type Field = StatusField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: StatusField,
        map: &mut A,
        _path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            StatusField::Message => self.message = scalar(map)?,
            StatusField::Code => self.code = map.next_value_seed(EnumSeed::STATUS_CODE)?,
        }
        Ok(())
    }
}

fields! {
    KeyValueField {
        Key = "key",
        Value = "value",
        KeyStrindex = "keyStrindex" | "key_strindex",
    }
}

impl JsonMessage for KeyValue {
    const NAME: &'static str = "KeyValue";
    type Field = KeyValueField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: KeyValueField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            KeyValueField::Key => self.key = scalar(map)?,
            KeyValueField::Value => self.value = nested(map, path)?,
            KeyValueField::KeyStrindex => self.key_strindex = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    AnyValueField {
        StringValue = "stringValue" | "string_value",
        BoolValue = "boolValue" | "bool_value",
        IntValue = "intValue" | "int_value",
        DoubleValue = "doubleValue" | "double_value",
        ArrayValue = "arrayValue" | "array_value",
        KvlistValue = "kvlistValue" | "kvlist_value",
        BytesValue = "bytesValue" | "bytes_value",
        StringValueStrindex = "stringValueStrindex" | "string_value_strindex",
    }
}

impl JsonMessage for AnyValue {
    const NAME: &'static str = "AnyValue";
    type Field = AnyValueField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: AnyValueField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        use any_value::Value;

        // The members of a oneof: `null` leaves the oneof unset (as in the
        // proto3 JSON mapping), a value sets it.
        fn member<'de, A: MapAccess<'de>, T>(map: &mut A) -> Result<Option<T>, A::Error>
        where
            Scalar<T>: Deserialize<'de>,
        {
            Ok(map.next_value::<Scalar<T>>()?.0)
        }
        let value = match field {
            AnyValueField::StringValue => member(map)?.map(Value::StringValue),
            AnyValueField::BoolValue => member(map)?.map(Value::BoolValue),
            AnyValueField::IntValue => member(map)?.map(Value::IntValue),
            AnyValueField::DoubleValue => member(map)?.map(Value::DoubleValue),
            AnyValueField::ArrayValue => nested(map, path)?.map(Value::ArrayValue),
            AnyValueField::KvlistValue => nested(map, path)?.map(Value::KvlistValue),
            AnyValueField::BytesValue => member(map)?.map(Value::BytesValue),
            AnyValueField::StringValueStrindex => member(map)?.map(Value::StringValueStrindex),
        };
        if let Some(value) = value {
            // A proto3 JSON parser rejects a oneof set twice rather than
            // silently keeping one of the values.
            if let Some(previous) = &self.value {
                return Err(de::Error::custom(format_args!(
                    "AnyValue has more than one value: {} and {}",
                    any_value_field_name(previous),
                    field.name(),
                )));
            }
            self.value = Some(value);
        }
        Ok(())
    }
}

/// The JSON name of the oneof member `value` is in.
fn any_value_field_name(value: &any_value::Value) -> &'static str {
    use any_value::Value;
    match value {
        Value::StringValue(_) => "stringValue",
        Value::BoolValue(_) => "boolValue",
        Value::IntValue(_) => "intValue",
        Value::DoubleValue(_) => "doubleValue",
        Value::ArrayValue(_) => "arrayValue",
        Value::KvlistValue(_) => "kvlistValue",
        Value::BytesValue(_) => "bytesValue",
        Value::StringValueStrindex(_) => "stringValueStrindex",
    }
}

fields! { ValuesField { Values = "values" } }

impl JsonMessage for ArrayValue {
    const NAME: &'static str = "ArrayValue";
    type Field = ValuesField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ValuesField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ValuesField::Values => self.values = repeated(map, path)?,
        }
        Ok(())
    }
}

impl JsonMessage for KeyValueList {
    const NAME: &'static str = "KeyValueList";
    type Field = ValuesField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ValuesField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ValuesField::Values => self.values = repeated(map, path)?,
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Decoding: scalars.

/// A proto3 JSON scalar of type `T`; `None` when the JSON value is `null`.
///
/// `Vec<u8>` is a `bytes` field, which proto3 JSON writes as base64 (the hex
/// ids are not `Scalar`s but [`HexId`]s).
struct Scalar<T>(Option<T>);

/// A visitor that produces a `Scalar<T>`'s content.
struct ScalarVisitor<T>(PhantomData<T>);

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
trait Int: TryFrom<i128> + std::str::FromStr {
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

/// A repeated string field; `null` (for the list or an element) means empty.
struct Strings(Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StringsVisitor;

        impl<'de> Visitor<'de> for StringsVisitor {
            type Value = Strings;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Strings, E> {
                Ok(Strings(Vec::new()))
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Strings, S::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Scalar<String>>()? {
                    items.push(item.0.unwrap_or_default());
                }
                Ok(Strings(items))
            }
        }

        d.deserialize_any(StringsVisitor)
    }
}

/// A trace or span id: OTLP/JSON writes these as hex, not base64 as proto3
/// JSON would, and only the exact length or empty (= unset) is valid.
#[derive(Clone, Copy)]
struct HexId {
    /// The field's name, for the error message.
    field: &'static str,
    /// The length in bytes.
    len: usize,
}

impl HexId {
    const TRACE_ID: HexId = HexId {
        field: "traceId",
        len: 16,
    };
    const SPAN_ID: HexId = HexId {
        field: "spanId",
        len: 8,
    };
    const PARENT_SPAN_ID: HexId = HexId {
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
struct EnumSeed {
    /// The field's name, for the error message.
    field: &'static str,
    /// The enum's name, for the error message.
    enum_name: &'static str,
    /// A valid name, for the error message.
    example: &'static str,
    /// The value a name stands for.
    from_name: fn(&str) -> Option<i32>,
}

impl EnumSeed {
    const SPAN_KIND: EnumSeed = EnumSeed {
        field: "kind",
        enum_name: "SpanKind",
        example: "SPAN_KIND_SERVER",
        from_name: span_kind_from_name,
    };
    const STATUS_CODE: EnumSeed = EnumSeed {
        field: "code",
        enum_name: "StatusCode",
        example: "STATUS_CODE_ERROR",
        from_name: status_code_from_name,
    };
}

fn span_kind_from_name(name: &str) -> Option<i32> {
    span::SpanKind::from_str_name(name).map(|kind| kind as i32)
}

fn status_code_from_name(name: &str) -> Option<i32> {
    status::StatusCode::from_str_name(name).map(|code| code as i32)
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
        write!(f, "a {} name or a 32-bit integer", self.enum_name)
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
            "invalid {} {:?}: expected a {} name such as \"{}\", or an integer",
            self.field,
            shorten(v),
            self.enum_name,
            self.example
        )))
    }
}

// ---------------------------------------------------------------------------
// Encoding.

/// Writes a JSON object's members, leaving out those with default values.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Obj<'a> {
    fn start(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, empty: true }
    }

    /// Writes the member name `name` (which needs no escaping) and returns
    /// the buffer for its value.
    fn key(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn string(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            write_str(self.key(name), value);
        }
    }

    fn strings(&mut self, name: &str, values: &[String]) {
        if !values.is_empty() {
            let out = self.key(name);
            out.push(b'[');
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, value);
            }
            out.push(b']');
        }
    }

    /// A 64-bit integer, as a decimal string.
    fn u64(&mut self, name: &str, value: u64) {
        if value != 0 {
            let out = self.key(name);
            out.push(b'"');
            write_u64(out, value);
            out.push(b'"');
        }
    }

    /// A 32-bit integer (or enum), as a number.
    fn i32(&mut self, name: &str, value: i32) {
        if value != 0 {
            write_i64(self.key(name), value.into());
        }
    }

    fn u32(&mut self, name: &str, value: u32) {
        if value != 0 {
            write_u64(self.key(name), value.into());
        }
    }

    /// A trace or span id, as lowercase hex.
    fn hex(&mut self, name: &str, value: &[u8]) {
        if !value.is_empty() {
            write_hex(self.key(name), value);
        }
    }

    fn message<T>(&mut self, name: &str, value: Option<&T>, write: fn(&mut Vec<u8>, &T)) {
        if let Some(value) = value {
            write(self.key(name), value);
        }
    }

    fn list<T>(&mut self, name: &str, items: &[T], write: fn(&mut Vec<u8>, &T)) {
        if !items.is_empty() {
            let out = self.key(name);
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item);
            }
            out.push(b']');
        }
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

fn write_resource_spans(out: &mut Vec<u8>, rs: &ResourceSpans) {
    let mut o = Obj::start(out);
    o.message("resource", rs.resource.as_ref(), write_resource);
    o.list("scopeSpans", &rs.scope_spans, write_scope_spans);
    o.string("schemaUrl", &rs.schema_url);
    o.end();
}

fn write_resource(out: &mut Vec<u8>, resource: &Resource) {
    let mut o = Obj::start(out);
    o.list("attributes", &resource.attributes, write_key_value);
    o.u32("droppedAttributesCount", resource.dropped_attributes_count);
    o.list("entityRefs", &resource.entity_refs, write_entity_ref);
    o.end();
}

fn write_entity_ref(out: &mut Vec<u8>, entity: &EntityRef) {
    let mut o = Obj::start(out);
    o.string("schemaUrl", &entity.schema_url);
    o.string("type", &entity.r#type);
    o.strings("idKeys", &entity.id_keys);
    o.strings("descriptionKeys", &entity.description_keys);
    o.end();
}

fn write_scope_spans(out: &mut Vec<u8>, ss: &ScopeSpans) {
    let mut o = Obj::start(out);
    o.message("scope", ss.scope.as_ref(), write_scope);
    o.list("spans", &ss.spans, write_span);
    o.string("schemaUrl", &ss.schema_url);
    o.end();
}

fn write_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    let mut o = Obj::start(out);
    o.string("name", &scope.name);
    o.string("version", &scope.version);
    o.list("attributes", &scope.attributes, write_key_value);
    o.u32("droppedAttributesCount", scope.dropped_attributes_count);
    o.end();
}

fn write_span(out: &mut Vec<u8>, span: &Span) {
    let mut o = Obj::start(out);
    o.hex("traceId", &span.trace_id);
    o.hex("spanId", &span.span_id);
    o.string("traceState", &span.trace_state);
    o.hex("parentSpanId", &span.parent_span_id);
    o.u32("flags", span.flags);
    o.string("name", &span.name);
    o.i32("kind", span.kind);
    o.u64("startTimeUnixNano", span.start_time_unix_nano);
    o.u64("endTimeUnixNano", span.end_time_unix_nano);
    o.list("attributes", &span.attributes, write_key_value);
    o.u32("droppedAttributesCount", span.dropped_attributes_count);
    o.list("events", &span.events, write_event);
    o.u32("droppedEventsCount", span.dropped_events_count);
    o.list("links", &span.links, write_link);
    o.u32("droppedLinksCount", span.dropped_links_count);
    o.message("status", span.status.as_ref(), write_status);
    o.end();
}

fn write_event(out: &mut Vec<u8>, event: &span::Event) {
    let mut o = Obj::start(out);
    o.u64("timeUnixNano", event.time_unix_nano);
    o.string("name", &event.name);
    o.list("attributes", &event.attributes, write_key_value);
    o.u32("droppedAttributesCount", event.dropped_attributes_count);
    o.end();
}

fn write_link(out: &mut Vec<u8>, link: &span::Link) {
    let mut o = Obj::start(out);
    o.hex("traceId", &link.trace_id);
    o.hex("spanId", &link.span_id);
    o.string("traceState", &link.trace_state);
    o.list("attributes", &link.attributes, write_key_value);
    o.u32("droppedAttributesCount", link.dropped_attributes_count);
    o.u32("flags", link.flags);
    o.end();
}

fn write_status(out: &mut Vec<u8>, status: &Status) {
    let mut o = Obj::start(out);
    o.string("message", &status.message);
    o.i32("code", status.code);
    o.end();
}

fn write_key_value(out: &mut Vec<u8>, kv: &KeyValue) {
    let mut o = Obj::start(out);
    o.string("key", &kv.key);
    o.message("value", kv.value.as_ref(), write_any_value);
    o.i32("keyStrindex", kv.key_strindex);
    o.end();
}

fn write_any_value(out: &mut Vec<u8>, value: &AnyValue) {
    use any_value::Value;

    let mut o = Obj::start(out);
    // A oneof member is written whenever it is set, default value or not:
    // `{"intValue":"0"}` and `{}` are different values.
    match &value.value {
        None => {}
        Some(Value::StringValue(s)) => write_str(o.key("stringValue"), s),
        Some(Value::BoolValue(b)) => {
            let text: &[u8] = if *b { b"true" } else { b"false" };
            o.key("boolValue").extend_from_slice(text);
        }
        Some(Value::IntValue(i)) => {
            let out = o.key("intValue");
            out.push(b'"');
            write_i64(out, *i);
            out.push(b'"');
        }
        Some(Value::DoubleValue(d)) => write_f64(o.key("doubleValue"), *d),
        Some(Value::ArrayValue(array)) => {
            let mut inner = Obj::start(o.key("arrayValue"));
            inner.list("values", &array.values, write_any_value);
            inner.end();
        }
        Some(Value::KvlistValue(list)) => {
            let mut inner = Obj::start(o.key("kvlistValue"));
            inner.list("values", &list.values, write_key_value);
            inner.end();
        }
        Some(Value::BytesValue(bytes)) => write_base64(o.key("bytesValue"), bytes),
        Some(Value::StringValueStrindex(i)) => write_i64(o.key("stringValueStrindex"), (*i).into()),
    }
    o.end();
}

/// Writes `s` as a JSON string.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Copies runs of bytes that need no escaping in one go.
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX_DIGITS[usize::from(b >> 4)]);
            out.push(HEX_DIGITS[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as a JSON string of lowercase hex digits.
fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() * 2 + 2);
    out.push(b'"');
    for &b in bytes {
        out.push(HEX_DIGITS[usize::from(b >> 4)]);
        out.push(HEX_DIGITS[usize::from(b & 0xf)]);
    }
    out.push(b'"');
}

/// Writes `bytes` as a JSON string of standard, padded base64.
fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).expect("base64 length overflows usize");
    out.resize(start + len, 0);
    general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .expect("buffer sized by encoded_len");
    out.push(b'"');
}

/// Writes `v` in decimal, without going through `fmt`.
fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// Writes a double: finite ones as the shortest number that reads back the
/// same, the others as the strings proto3 JSON uses for them.
fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v.is_infinite() {
        let text: &[u8] = if v > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        };
        out.extend_from_slice(text);
    } else {
        // `Debug` (unlike `Display`) switches to exponent notation for very
        // large and small magnitudes; both forms are valid JSON numbers.
        write!(out, "{v:?}").expect("writing to a Vec cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use any_value::Value;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            key_strindex: 0,
        }
    }

    fn encode(request: &ExportTraceServiceRequest) -> String {
        let mut out = Vec::new();
        encode_traces(&request.resource_spans, &mut out);
        String::from_utf8(out).expect("UTF-8")
    }

    fn decode(json: &str) -> ExportTraceServiceRequest {
        decode_traces(json.as_bytes()).unwrap_or_else(|e| panic!("decoding {json}: {e}"))
    }

    fn decode_err(json: &str) -> String {
        match decode_traces(json.as_bytes()) {
            Ok(request) => panic!("decoding {json} succeeded: {request:?}"),
            Err(e) => e,
        }
    }

    /// The first span of a request.
    fn span0(request: &ExportTraceServiceRequest) -> &Span {
        &request.resource_spans[0].scope_spans[0].spans[0]
    }

    /// A request with one span whose JSON is `span`.
    fn with_span(span: &str) -> String {
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#)
    }

    fn every_kind_of_value() -> Vec<KeyValue> {
        vec![
            kv(
                "s",
                Value::StringValue("quote \" backslash \\ nl \n tab \t nul \0 é ☃ 😀".into()),
            ),
            kv("empty-string", Value::StringValue(String::new())),
            kv("t", Value::BoolValue(true)),
            kv("f", Value::BoolValue(false)),
            kv("zero", Value::IntValue(0)),
            kv("neg", Value::IntValue(-42)),
            kv("min", Value::IntValue(i64::MIN)),
            kv("max", Value::IntValue(i64::MAX)),
            kv("d", Value::DoubleValue(0.1)),
            kv("d-neg", Value::DoubleValue(-2.5e-300)),
            kv("d-big", Value::DoubleValue(1.7976931348623157e308)),
            kv("d-int", Value::DoubleValue(3.0)),
            kv("d-zero", Value::DoubleValue(0.0)),
            kv("inf", Value::DoubleValue(f64::INFINITY)),
            kv("-inf", Value::DoubleValue(f64::NEG_INFINITY)),
            kv(
                "bytes",
                Value::BytesValue(vec![0, 1, 2, 0xfb, 0xff, 0xfe, 0x7f]),
            ),
            kv("no-bytes", Value::BytesValue(Vec::new())),
            kv(
                "array",
                Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(Value::IntValue(1)),
                        },
                        AnyValue { value: None },
                        AnyValue {
                            value: Some(Value::ArrayValue(ArrayValue {
                                values: vec![AnyValue {
                                    value: Some(Value::KvlistValue(KeyValueList {
                                        values: vec![kv("deep", Value::BoolValue(true))],
                                    })),
                                }],
                            })),
                        },
                        AnyValue {
                            value: Some(Value::ArrayValue(ArrayValue::default())),
                        },
                    ],
                }),
            ),
            kv(
                "kvlist",
                Value::KvlistValue(KeyValueList {
                    values: vec![
                        kv("a", Value::StringValue("x".into())),
                        KeyValue {
                            key: "unset".into(),
                            value: None,
                            key_strindex: 0,
                        },
                        kv(
                            "nested",
                            Value::KvlistValue(KeyValueList {
                                values: vec![kv("b", Value::DoubleValue(-1.5))],
                            }),
                        ),
                    ],
                }),
            ),
            kv("empty-kvlist", Value::KvlistValue(KeyValueList::default())),
            KeyValue {
                key: "empty-value".into(),
                value: Some(AnyValue { value: None }),
                key_strindex: 0,
            },
            kv("strindex", Value::StringValueStrindex(7)),
            KeyValue {
                key: String::new(),
                value: None,
                key_strindex: 3,
            },
        ]
    }

    fn full_request() -> ExportTraceServiceRequest {
        let span = Span {
            trace_id: (1..=16).collect(),
            span_id: vec![0xff; 8],
            trace_state: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into(),
            parent_span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
            flags: 0x301,
            name: "GET /things/{id}".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: 1_544_712_660_000_000_000,
            end_time_unix_nano: u64::MAX,
            attributes: every_kind_of_value(),
            dropped_attributes_count: 1,
            events: vec![
                span::Event {
                    time_unix_nano: u64::MAX,
                    name: "exception".into(),
                    attributes: vec![kv("exception.message", Value::StringValue("boom".into()))],
                    dropped_attributes_count: 2,
                },
                span::Event::default(),
            ],
            dropped_events_count: 3,
            links: vec![
                span::Link {
                    trace_id: vec![0xab; 16],
                    span_id: vec![0xcd; 8],
                    trace_state: "k=v".into(),
                    attributes: vec![kv("link", Value::IntValue(-1))],
                    dropped_attributes_count: 4,
                    flags: u32::MAX,
                },
                span::Link::default(),
            ],
            dropped_links_count: u32::MAX,
            status: Some(Status {
                message: "it failed".into(),
                code: status::StatusCode::Error as i32,
            }),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", Value::StringValue("svc".into()))],
                        dropped_attributes_count: 5,
                        entity_refs: vec![EntityRef {
                            schema_url: "https://opentelemetry.io/schemas/1.0.0".into(),
                            r#type: "service".into(),
                            id_keys: vec!["service.name".into(), String::new()],
                            description_keys: vec!["service.version".into()],
                        }],
                    }),
                    scope_spans: vec![
                        ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: "my.library".into(),
                                version: "1.0.0".into(),
                                attributes: vec![kv("scope.attr", Value::IntValue(1))],
                                dropped_attributes_count: 6,
                            }),
                            spans: vec![
                                span,
                                Span {
                                    kind: 99, // unknown to the enum, kept
                                    status: Some(Status::default()),
                                    ..Span::default()
                                },
                            ],
                            schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
                        },
                        ScopeSpans::default(),
                    ],
                    schema_url: "https://opentelemetry.io/schemas/1.22.0".into(),
                },
                ResourceSpans {
                    resource: Some(Resource::default()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope::default()),
                        spans: vec![Span::default()],
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                },
                ResourceSpans::default(),
            ],
        }
    }

    #[test]
    fn round_trips_a_fully_populated_request() {
        let request = full_request();
        let json = encode(&request);
        assert!(!json.contains('\n'), "one line: {json}");
        serde_json::from_str::<serde_json::Value>(&json).expect("valid JSON");
        let decoded = decode(&json);
        assert_eq!(decoded, request);
        assert_eq!(encode(&decoded), json);
    }

    #[test]
    fn round_trips_nan() {
        let json = with_span(r#"{"attributes":[{"key":"n","value":{"doubleValue":"NaN"}}]}"#);
        let request = decode(&json);
        let Some(Value::DoubleValue(d)) =
            &span0(&request).attributes[0].value.as_ref().unwrap().value
        else {
            panic!("not a double: {request:?}");
        };
        assert!(d.is_nan());
        assert!(encode(&request).contains(r#"{"doubleValue":"NaN"}"#));
    }

    #[test]
    fn encodes_the_canonical_form() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", Value::StringValue("svc".into()))],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        ..InstrumentationScope::default()
                    }),
                    spans: vec![Span {
                        trace_id: hex::decode("5B8EFFF798038103D269B633813FC60C").unwrap(),
                        span_id: hex::decode("EEE19B7EC3C1B174").unwrap(),
                        name: "op".into(),
                        kind: 2,
                        flags: 1,
                        start_time_unix_nano: 1_544_712_660_000_000_000,
                        end_time_unix_nano: 1_544_712_661_000_000_000,
                        attributes: vec![
                            kv("i", Value::IntValue(-3)),
                            kv("d", Value::DoubleValue(1e300)),
                            kv("b", Value::BytesValue(b"hi?>".to_vec())),
                            kv("z", Value::DoubleValue(0.0)),
                        ],
                        status: Some(Status {
                            message: String::new(),
                            code: 2,
                        }),
                        ..Span::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        assert_eq!(
            encode(&request),
            concat!(
                r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"#,
                r#""scopeSpans":[{"scope":{"name":"lib"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","#,
                r#""spanId":"eee19b7ec3c1b174","flags":1,"name":"op","kind":2,"#,
                r#""startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","#,
                r#""attributes":[{"key":"i","value":{"intValue":"-3"}},{"key":"d","value":{"doubleValue":1e300}},"#,
                r#"{"key":"b","value":{"bytesValue":"aGk/Pg=="}},{"key":"z","value":{"doubleValue":0.0}}],"#,
                r#""status":{"code":2}}]}]}]}"#,
            )
        );
    }

    #[test]
    fn encodes_defaults_as_absent() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![Span::default()],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        assert_eq!(
            encode(&request),
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{}]}]}]}"#
        );
        assert_eq!(
            encode(&ExportTraceServiceRequest::default()),
            r#"{"resourceSpans":[]}"#
        );
        let mut out = b"prefix ".to_vec();
        encode_traces(&[], &mut out);
        assert_eq!(out, b"prefix {\"resourceSpans\":[]}", "appends");
    }

    #[test]
    fn escapes_strings() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                schema_url: "\"\\/\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}é".into(),
                ..ResourceSpans::default()
            }],
        };
        let json = encode(&request);
        assert_eq!(
            json,
            "{\"resourceSpans\":[{\"schemaUrl\":\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}é\"}]}"
        );
        assert_eq!(decode(&json), request);
    }

    /// The example in the OTLP specification (opentelemetry-proto's examples/trace.json).
    #[test]
    fn decodes_the_spec_example() {
        let request = decode(
            r#"{
  "resourceSpans": [
    {
      "resource": {
        "attributes": [
          {
            "key": "service.name",
            "value": {
              "stringValue": "my.service"
            }
          }
        ]
      },
      "scopeSpans": [
        {
          "scope": {
            "name": "my.library",
            "version": "1.0.0",
            "attributes": [
              {
                "key": "my.scope.attribute",
                "value": {
                  "stringValue": "some scope attribute"
                }
              }
            ]
          },
          "spans": [
            {
              "traceId": "5B8EFFF798038103D269B633813FC60C",
              "spanId": "EEE19B7EC3C1B174",
              "parentSpanId": "EEE19B7EC3C1B173",
              "name": "I'm a server span",
              "startTimeUnixNano": 1544712660000000000,
              "endTimeUnixNano": 1544712661000000000,
              "kind": 2,
              "attributes": [
                {
                  "key": "my.span.attr",
                  "value": {
                    "stringValue": "some value"
                  }
                }
              ]
            }
          ]
        }
      ]
    }
  ]
}"#,
        );
        let expected = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", Value::StringValue("my.service".into()))],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "my.library".into(),
                        version: "1.0.0".into(),
                        attributes: vec![kv(
                            "my.scope.attribute",
                            Value::StringValue("some scope attribute".into()),
                        )],
                        dropped_attributes_count: 0,
                    }),
                    spans: vec![Span {
                        trace_id: vec![
                            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33,
                            0x81, 0x3f, 0xc6, 0x0c,
                        ],
                        span_id: vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74],
                        parent_span_id: vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73],
                        name: "I'm a server span".into(),
                        start_time_unix_nano: 1_544_712_660_000_000_000,
                        end_time_unix_nano: 1_544_712_661_000_000_000,
                        kind: span::SpanKind::Server as i32,
                        attributes: vec![kv(
                            "my.span.attr",
                            Value::StringValue("some value".into()),
                        )],
                        ..Span::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        assert_eq!(request, expected);
    }

    #[test]
    fn accepts_snake_case_names() {
        let camel = decode(&encode(&full_request()));
        let snake = decode(
            r#"{"resource_spans":[{"resource":{"attributes":[],"dropped_attributes_count":2,
                "entity_refs":[{"schema_url":"u","type":"t","id_keys":["a"],"description_keys":["b"]}]},
              "scope_spans":[{"scope":{"name":"n","version":"v","dropped_attributes_count":3},
                "schema_url":"s",
                "spans":[{"trace_id":"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708",
                  "trace_state":"ts","parent_span_id":"0807060504030201","flags":1,"name":"x",
                  "kind":3,"start_time_unix_nano":"5","end_time_unix_nano":"6",
                  "attributes":[{"key":"k","key_strindex":1,"value":{"kvlist_value":{"values":[
                    {"key":"s","value":{"string_value":"v"}},{"key":"b","value":{"bool_value":true}},
                    {"key":"i","value":{"int_value":"-1"}},{"key":"d","value":{"double_value":1.5}},
                    {"key":"y","value":{"bytes_value":"AQI="}},{"key":"r","value":{"string_value_strindex":4}},
                    {"key":"a","value":{"array_value":{"values":[]}}}]}}}],
                  "dropped_attributes_count":7,"dropped_events_count":8,"dropped_links_count":9,
                  "events":[{"time_unix_nano":"10","name":"e","dropped_attributes_count":11}],
                  "links":[{"trace_id":"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708",
                    "trace_state":"lts","dropped_attributes_count":12,"flags":13}],
                  "status":{"message":"m","code":1}}]}],
              "schema_url":"rs"}]}"#,
        );
        assert_eq!(camel, full_request(), "sanity");
        let rs = &snake.resource_spans[0];
        assert_eq!(rs.schema_url, "rs");
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(resource.dropped_attributes_count, 2);
        assert_eq!(
            resource.entity_refs,
            vec![EntityRef {
                schema_url: "u".into(),
                r#type: "t".into(),
                id_keys: vec!["a".into()],
                description_keys: vec!["b".into()],
            }]
        );
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.schema_url, "s");
        let scope = ss.scope.as_ref().unwrap();
        assert_eq!((scope.name.as_str(), scope.version.as_str()), ("n", "v"));
        assert_eq!(scope.dropped_attributes_count, 3);
        let span = &ss.spans[0];
        assert_eq!(span.trace_id, (1..=16).collect::<Vec<u8>>());
        assert_eq!(span.span_id, (1..=8).collect::<Vec<u8>>());
        assert_eq!(span.parent_span_id, (1..=8).rev().collect::<Vec<u8>>());
        assert_eq!(span.trace_state, "ts");
        assert_eq!((span.flags, span.kind), (1, 3));
        assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (5, 6));
        assert_eq!(
            (
                span.dropped_attributes_count,
                span.dropped_events_count,
                span.dropped_links_count
            ),
            (7, 8, 9)
        );
        assert_eq!(
            span.events,
            vec![span::Event {
                time_unix_nano: 10,
                name: "e".into(),
                attributes: vec![],
                dropped_attributes_count: 11,
            }]
        );
        assert_eq!(
            span.links,
            vec![span::Link {
                trace_id: (1..=16).collect(),
                span_id: (1..=8).collect(),
                trace_state: "lts".into(),
                attributes: vec![],
                dropped_attributes_count: 12,
                flags: 13,
            }]
        );
        assert_eq!(
            span.status,
            Some(Status {
                message: "m".into(),
                code: 1
            })
        );
        assert_eq!(span.attributes[0].key_strindex, 1);
        assert_eq!(
            span.attributes[0].value,
            Some(AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![
                        kv("s", Value::StringValue("v".into())),
                        kv("b", Value::BoolValue(true)),
                        kv("i", Value::IntValue(-1)),
                        kv("d", Value::DoubleValue(1.5)),
                        kv("y", Value::BytesValue(vec![1, 2])),
                        kv("r", Value::StringValueStrindex(4)),
                        kv("a", Value::ArrayValue(ArrayValue::default())),
                    ]
                }))
            })
        );
    }

    #[test]
    fn accepts_enum_names_and_numbers() {
        for (kind, expected) in [
            (r#""SPAN_KIND_UNSPECIFIED""#, 0),
            (r#""SPAN_KIND_INTERNAL""#, 1),
            (r#""SPAN_KIND_SERVER""#, 2),
            (r#""SPAN_KIND_CLIENT""#, 3),
            (r#""SPAN_KIND_PRODUCER""#, 4),
            (r#""SPAN_KIND_CONSUMER""#, 5),
            ("0", 0),
            ("2", 2),
            ("5", 5),
            ("42", 42), // unknown values are kept: proto3 enums are open
            ("-1", -1),
            (r#""3""#, 3),
            ("null", 0),
        ] {
            let request = decode(&with_span(&format!(r#"{{"kind":{kind}}}"#)));
            assert_eq!(span0(&request).kind, expected, "kind {kind}");
        }
        for (code, expected) in [
            (r#""STATUS_CODE_UNSET""#, 0),
            (r#""STATUS_CODE_OK""#, 1),
            (r#""STATUS_CODE_ERROR""#, 2),
            ("1", 1),
            ("2", 2),
            ("7", 7),
        ] {
            let request = decode(&with_span(&format!(r#"{{"status":{{"code":{code}}}}}"#)));
            assert_eq!(
                span0(&request).status.as_ref().unwrap().code,
                expected,
                "code {code}"
            );
        }
    }

    #[test]
    fn accepts_upper_and_mixed_case_hex_ids() {
        let request = decode(&with_span(
            r#"{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19b7ec3c1B174",
                "parentSpanId":"ABCDEF0123456789",
                "links":[{"traceId":"0A0B0C0D0E0F0A0B0C0D0E0F0A0B0C0D","spanId":"FFFFFFFFFFFFFFFF"}]}"#,
        ));
        let span = span0(&request);
        assert_eq!(
            hex::encode(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
        assert_eq!(hex::encode(&span.parent_span_id), "abcdef0123456789");
        assert_eq!(
            hex::encode(&span.links[0].trace_id),
            "0a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d"
        );
        assert_eq!(span.links[0].span_id, vec![0xff; 8]);
        // Written back in lowercase.
        let json = encode(&request);
        assert!(
            json.contains(r#""traceId":"5b8efff798038103d269b633813fc60c""#),
            "{json}"
        );
        assert!(
            json.contains(r#""parentSpanId":"abcdef0123456789""#),
            "{json}"
        );
    }

    #[test]
    fn empty_and_null_ids_are_unset() {
        let request = decode(&with_span(
            r#"{"traceId":"","spanId":null,"parentSpanId":""}"#,
        ));
        assert_eq!(span0(&request), &Span::default());
    }

    #[test]
    fn ignores_unknown_fields() {
        let request = decode(
            r#"{"unknown":{"a":[1,{"b":[[],{}]}],"traceId":"zz"},
              "resourceSpans":[{"futureField":[{"x":{"y":null}}],
                "resource":{"attributes":[{"key":"k","extra":{"deep":[{"deeper":{}}]},
                  "value":{"unknownValue":{"nested":[1,2,{"stringValue":"no"}]},"intValue":5,"more":[]}}],
                  "entityRefs":[{"unknown":true}]},
                "scopeSpans":[{"scope":{"name":"s","x":[]},"spans":[
                  {"name":"n","deprecatedCode":1,"status":{"deprecated_code":1,"code":2,"z":{"q":[]}},
                   "events":[{"name":"e","what":"ever"}],"links":[{"nope":1.5e10}]}],"y":"z"}]}],
              "trailing":[true,false,null,"s",-1.0e-5]}"#,
        );
        let rs = &request.resource_spans[0];
        assert_eq!(
            rs.resource.as_ref().unwrap().attributes,
            vec![kv("k", Value::IntValue(5))]
        );
        assert_eq!(
            rs.resource.as_ref().unwrap().entity_refs,
            vec![EntityRef::default()]
        );
        let span = span0(&request);
        assert_eq!(span.name, "n");
        assert_eq!(span.status.as_ref().unwrap().code, 2);
        assert_eq!(span.events[0].name, "e");
        assert_eq!(span.links, vec![span::Link::default()]);
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "s");
    }

    #[test]
    fn null_means_default() {
        let request = decode(
            r#"{"resourceSpans":[{"resource":null,"schemaUrl":null,"scopeSpans":[{"scope":null,"spans":[
                {"traceId":null,"name":null,"kind":null,"flags":null,"startTimeUnixNano":null,
                 "attributes":null,"events":null,"links":null,"status":null,"droppedLinksCount":null,
                 "droppedAttributesCount":null},
                {"attributes":[{"key":null,"value":null},{"key":"k","value":{"stringValue":null}},
                  {"key":"a","value":{"arrayValue":null}},{"key":"b","value":{"stringValue":null,"boolValue":false}}]}]}]}]}"#,
        );
        let rs = &request.resource_spans[0];
        assert_eq!(rs.resource, None);
        assert_eq!(rs.scope_spans[0].scope, None);
        assert_eq!(span0(&request), &Span::default());
        assert_eq!(
            rs.scope_spans[0].spans[1].attributes,
            vec![
                KeyValue::default(),
                KeyValue {
                    key: "k".into(),
                    value: Some(AnyValue::default()),
                    key_strindex: 0
                },
                KeyValue {
                    key: "a".into(),
                    value: Some(AnyValue::default()),
                    key_strindex: 0
                },
                kv("b", Value::BoolValue(false)),
            ]
        );
        assert_eq!(
            decode(r#"{"resourceSpans":null}"#),
            ExportTraceServiceRequest::default()
        );
        assert_eq!(decode("{}"), ExportTraceServiceRequest::default());
    }

    #[test]
    fn accepts_numbers_and_strings_for_integers() {
        let request = decode(&with_span(
            r#"{"startTimeUnixNano":"18446744073709551615","endTimeUnixNano":1544712661000000000,
                "flags":"257","droppedAttributesCount":"3","droppedEventsCount":4.0,
                "droppedLinksCount":5e0,
                "events":[{"timeUnixNano":"1544712660000000000"},{"timeUnixNano":1.5e9}],
                "attributes":[{"key":"a","value":{"intValue":-9223372036854775808}},
                  {"key":"b","value":{"intValue":"9223372036854775807"}},
                  {"key":"c","value":{"intValue":"-12"}},{"key":"d","value":{"intValue":12}},
                  {"key":"e","value":{"doubleValue":"2.5"}},{"key":"f","value":{"doubleValue":7}},
                  {"key":"g","value":{"doubleValue":"Infinity"}},{"key":"h","value":{"doubleValue":"-Infinity"}}]}"#,
        ));
        let span = span0(&request);
        assert_eq!(span.start_time_unix_nano, u64::MAX);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(span.flags, 257);
        assert_eq!(
            (
                span.dropped_attributes_count,
                span.dropped_events_count,
                span.dropped_links_count
            ),
            (3, 4, 5)
        );
        assert_eq!(span.events[0].time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.events[1].time_unix_nano, 1_500_000_000);
        let values: Vec<_> = span
            .attributes
            .iter()
            .map(|kv| kv.value.clone().unwrap().value.unwrap())
            .collect();
        assert_eq!(
            values,
            vec![
                Value::IntValue(i64::MIN),
                Value::IntValue(i64::MAX),
                Value::IntValue(-12),
                Value::IntValue(12),
                Value::DoubleValue(2.5),
                Value::DoubleValue(7.0),
                Value::DoubleValue(f64::INFINITY),
                Value::DoubleValue(f64::NEG_INFINITY),
            ]
        );
        // Written back in the canonical forms.
        let json = encode(&request);
        assert!(
            json.contains(r#""startTimeUnixNano":"18446744073709551615""#),
            "{json}"
        );
        assert!(
            json.contains(r#""endTimeUnixNano":"1544712661000000000""#),
            "{json}"
        );
        assert!(json.contains(r#""flags":257"#), "{json}");
        assert!(json.contains(r#"{"intValue":"12"}"#), "{json}");
    }

    #[test]
    fn accepts_url_safe_and_unpadded_base64() {
        for encoded in ["+/8=", "+/8", "-_8=", "-_8"] {
            let request = decode(&with_span(&format!(
                r#"{{"attributes":[{{"key":"b","value":{{"bytesValue":"{encoded}"}}}}]}}"#
            )));
            assert_eq!(
                span0(&request).attributes[0],
                kv("b", Value::BytesValue(vec![0xfb, 0xff])),
                "{encoded}"
            );
        }
    }

    #[test]
    fn rejects_a_trace_id_of_the_wrong_length() {
        let err = decode_err(&with_span(
            r#"{"traceId":"5b8efff798038103d269b633813fc6"}"#,
        ));
        assert!(
            err.starts_with(
                r#"resourceSpans[0].scopeSpans[0].spans[0].traceId: invalid traceId "5b8efff798038103d269b633813fc6": expected 32 hex digits"#
            ),
            "{err}"
        );
        let err = decode_err(&with_span(
            r#"{"spanId":"5b8efff798038103d269b633813fc60c"}"#,
        ));
        assert!(err.contains(r#"spans[0].spanId: invalid spanId"#), "{err}");
        assert!(err.contains("expected 16 hex digits"), "{err}");
        // Base64 of 16 bytes, which proto3 JSON would use for bytes: not OTLP.
        let err = decode_err(&with_span(r#"{"traceId":"W47/95gDgQPSabYzgT/GDA=="}"#));
        assert!(err.contains("traceId: invalid traceId"), "{err}");
    }

    #[test]
    fn rejects_bad_hex() {
        let err = decode_err(&with_span(
            r#"{"links":[{},{"spanId":"eee19b7ec3c1b17g"}]}"#,
        ));
        assert!(
            err.starts_with(
                r#"resourceSpans[0].scopeSpans[0].spans[0].links[1].spanId: invalid spanId "eee19b7ec3c1b17g": expected 16 hex digits"#
            ),
            "{err}"
        );
        let err = decode_err(&with_span(r#"{"parentSpanId":"xyz"}"#));
        assert!(
            err.contains(r#"parentSpanId: invalid parentSpanId "xyz": expected 16 hex digits"#),
            "{err}"
        );
        let err = decode_err(&with_span(r#"{"traceId":12}"#));
        assert!(err.contains("traceId: invalid type: integer `12`"), "{err}");
    }

    #[test]
    fn rejects_a_bad_enum_name() {
        let err = decode_err(&with_span(r#"{"kind":"SPAN_KIND_SERVR"}"#));
        assert!(
            err.starts_with(
                r#"resourceSpans[0].scopeSpans[0].spans[0].kind: invalid kind "SPAN_KIND_SERVR""#
            ),
            "{err}"
        );
        let err = decode_err(&with_span(r#"{"status":{"code":"ERROR"}}"#));
        assert!(
            err.contains(r#"spans[0].status.code: invalid code "ERROR""#),
            "{err}"
        );
        let err = decode_err(&with_span(r#"{"kind":4294967296}"#));
        assert!(err.contains("spans[0].kind: invalid value"), "{err}");
    }

    #[test]
    fn rejects_bad_integers() {
        let err = decode_err(&with_span(
            r#"{"attributes":[{"key":"a","value":{"intValue":"1"}},{"key":"b","value":{"intValue":"abc"}}]}"#,
        ));
        assert!(
            err.starts_with(
                r#"resourceSpans[0].scopeSpans[0].spans[0].attributes[1].value.intValue: invalid value: string "abc""#
            ),
            "{err}"
        );
        for (field, value) in [
            ("startTimeUnixNano", "-1"),
            ("startTimeUnixNano", r#""-1""#),
            ("startTimeUnixNano", "18446744073709551616"),
            ("endTimeUnixNano", r#""18446744073709551616""#),
            ("endTimeUnixNano", "1.5"),
            ("endTimeUnixNano", r#""""#),
            ("endTimeUnixNano", "true"),
            ("flags", "4294967296"),
            ("droppedLinksCount", r#""x""#),
        ] {
            let err = decode_err(&with_span(&format!(r#"{{"{field}":{value}}}"#)));
            assert!(
                err.starts_with(&format!(
                    "resourceSpans[0].scopeSpans[0].spans[0].{field}: invalid "
                )),
                "{field}={value}: {err}"
            );
        }
        let err = decode_err(&with_span(
            r#"{"attributes":[{"key":"k","value":{"kvlistValue":{"values":[{"key":"x","value":{"intValue":9223372036854775808}}]}}}]}"#,
        ));
        assert!(
            err.contains("attributes[0].value.kvlistValue.values[0].value.intValue: invalid value"),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_values() {
        for (value, message) in [
            (
                r#"{"doubleValue":"nan"}"#,
                "value.doubleValue: invalid value",
            ),
            (
                r#"{"doubleValue":"1.0x"}"#,
                "value.doubleValue: invalid value",
            ),
            (r#"{"boolValue":"true"}"#, "value.boolValue: invalid type"),
            (r#"{"stringValue":1}"#, "value.stringValue: invalid type"),
            (r#"{"bytesValue":"!!"}"#, "value.bytesValue: invalid base64"),
            (r#"{"arrayValue":[]}"#, "value.arrayValue: invalid type"),
            (
                r#"{"stringValue":"a","intValue":"1"}"#,
                "value.intValue: AnyValue has more than one value: stringValue and intValue",
            ),
        ] {
            let err = decode_err(&with_span(&format!(
                r#"{{"attributes":[{{"key":"k","value":{value}}}]}}"#
            )));
            assert!(
                err.starts_with(&format!(
                    "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].{message}"
                )),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn reports_malformed_json_as_serde_json_does() {
        for json in ["", "{", r#"{"resourceSpans":[}"#, "{} x", "{\"a\":tru}"] {
            let err = decode_err(json);
            let serde_err = serde_json::from_str::<serde::de::IgnoredAny>(json).unwrap_err();
            assert_eq!(err, serde_err.to_string(), "{json}");
        }
        // Deep inside too: no path, since a syntax error has no field.
        let err = decode_err(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"a",}]}]}]}"#);
        assert_eq!(err, "trailing comma at line 1 column 56");
        let err = decode_err("[]");
        assert!(
            err.starts_with(
                "invalid type: sequence, expected an OTLP/JSON ExportTraceServiceRequest object"
            ),
            "{err}"
        );
        let err = decode_err("null");
        assert!(err.starts_with("invalid type: null"), "{err}");
        let err = decode_err(r#"{"resourceSpans":{}}"#);
        assert!(err.starts_with("resourceSpans: invalid type: map, expected an array of OTLP/JSON ResourceSpans objects"), "{err}");
    }

    #[test]
    fn fails_cleanly_on_deep_nesting() {
        // serde_json's recursion limit stops this long before the stack runs out.
        let depth = 10_000;
        let json = with_span(&format!(
            r#"{{"attributes":[{{"key":"k","value":{}1{}}}]}}"#,
            r#"{"arrayValue":{"values":["#.repeat(depth),
            "]}}".repeat(depth)
        ));
        let err = decode_err(&json);
        assert!(err.starts_with("recursion limit exceeded"), "{err}");
    }

    #[test]
    fn shortens_huge_bad_values_in_errors() {
        let huge = "g".repeat(100_000);
        let err = decode_err(&with_span(&format!(r#"{{"traceId":"{huge}"}}"#)));
        assert!(err.len() < 300, "{err}");
        let err = decode_err(&with_span(&format!(r#"{{"startTimeUnixNano":"{huge}"}}"#)));
        assert!(err.len() < 300, "{err}");
    }
}
