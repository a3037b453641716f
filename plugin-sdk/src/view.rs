//! Read-only views straight over the protobuf the host sends: reading a batch this way
//! allocates nothing, where decoding it builds a `String` or `Vec` for every name, attribute
//! and value.
//!
//! The views mean exactly what prost decoding means: for a repeated singular field the last
//! occurrence wins, occurrences of a singular message field merge (their fields read as if
//! concatenated), and in a oneof the last member set wins. The host only sends bytes it
//! decoded itself, so input that does not parse just ends iteration: views never panic.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};

/// One field of a message as it is on the wire.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    I64(u64),
    Len(&'a [u8]),
    I32(u32),
}

#[inline(always)]
fn varint(buf: &mut &[u8]) -> Option<u64> {
    // Tags and most lengths are one byte: that case stays inline at every call.
    if let [b, rest @ ..] = *buf
        && *b < 0x80
    {
        *buf = rest;
        return Some(u64::from(*b));
    }
    long_varint(buf)
}

fn long_varint(buf: &mut &[u8]) -> Option<u64> {
    // Lengths up to 16 KiB: two bytes, the first with its continuation bit set.
    if let [b0, b1, rest @ ..] = *buf
        && *b1 < 0x80
    {
        *buf = rest;
        return Some(u64::from(b0 & 0x7f) | u64::from(*b1) << 7);
    }
    let mut v = 0u64;
    for shift in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (shift * 7);
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The fields of one message body.
#[derive(Clone, Copy)]
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn read(&mut self) -> Option<(u32, Wire<'a>)> {
        let key = varint(&mut self.buf)?;
        let number = u32::try_from(key >> 3).ok()?;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(&mut self.buf)?),
            1 => {
                let (b, rest) = self.buf.split_first_chunk::<8>()?;
                self.buf = rest;
                Wire::I64(u64::from_le_bytes(*b))
            }
            2 => {
                let len = usize::try_from(varint(&mut self.buf)?).ok()?;
                if len > self.buf.len() {
                    return None;
                }
                let (body, rest) = self.buf.split_at(len);
                self.buf = rest;
                Wire::Len(body)
            }
            5 => {
                let v = u32::from_le_bytes(self.buf.get(..4)?.try_into().ok()?);
                self.buf = self.buf.get(4..)?;
                Wire::I32(v)
            }
            // Groups are not part of OTLP.
            _ => return None,
        };
        Some((number, wire))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Wire<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.read();
        if item.is_none() {
            self.buf = &[];
        }
        item
    }
}

/// The bodies of every length-delimited field `number` in `buf`.
fn bodies(buf: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    Fields { buf }.filter_map(move |(n, w)| match w {
        Wire::Len(b) if n == number => Some(b),
        _ => None,
    })
}

fn last_bytes(buf: &[u8], number: u32) -> &[u8] {
    bodies(buf, number).last().unwrap_or_default()
}

/// Invalid UTF-8 cannot reach a plugin (prost rejects it in the host), so it reads as empty.
fn text(b: &[u8]) -> &str {
    simdutf8::basic::from_utf8(b).unwrap_or_default()
}

/// A message that may be split over several occurrences of a singular message field: the
/// bodies of every field `field` in `buf` read as one (or `buf` itself when `field` is 0).
#[derive(Clone, Copy)]
struct Msg<'a> {
    buf: &'a [u8],
    field: u32,
}

impl<'a> Msg<'a> {
    fn whole(buf: &'a [u8]) -> Self {
        Self { buf, field: 0 }
    }

    fn fields(self) -> MsgFields<'a> {
        MsgFields {
            outer: Fields { buf: self.buf },
            inner: None,
            field: self.field,
        }
    }
}

#[derive(Clone)]
struct MsgFields<'a> {
    outer: Fields<'a>,
    inner: Option<Fields<'a>>,
    field: u32,
}

impl<'a> Iterator for MsgFields<'a> {
    type Item = (u32, Wire<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.field == 0 {
            return self.outer.next();
        }
        loop {
            if let Some(f) = self.inner.as_mut().and_then(Iterator::next) {
                return Some(f);
            }
            match self.outer.next()? {
                (n, Wire::Len(b)) if n == self.field => self.inner = Some(Fields { buf: b }),
                _ => {}
            }
        }
    }
}

/// Repeated message field `number` of a (possibly merged) message, each element one body.
#[derive(Clone)]
struct Repeated<'a> {
    fields: MsgFields<'a>,
    number: u32,
}

impl<'a> Iterator for Repeated<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.fields.find_map(|(n, w)| match w {
            Wire::Len(b) if n == self.number => Some(b),
            _ => None,
        })
    }
}

/// A list of attributes (`repeated KeyValue`).
#[derive(Clone, Copy)]
pub struct AttributesView<'a> {
    msg: Msg<'a>,
    number: u32,
}

impl<'a> AttributesView<'a> {
    fn new(msg: Msg<'a>, number: u32) -> Self {
        Self { msg, number }
    }

    /// The attributes, in order.
    pub fn iter(&self) -> Attributes<'a> {
        Attributes {
            inner: Repeated {
                fields: self.msg.fields(),
                number: self.number,
            },
        }
    }

    /// The value of the first attribute named `key` (what [`crate::SpanMut::attribute`] finds).
    pub fn get(&self, key: &str) -> Option<ValueView<'a>> {
        self.iter()
            .find(|a| a.key == key.as_bytes())
            .and_then(|a| a.present.then_some(a.value))
    }

    /// The string value of attribute `key` (None if absent or not a string).
    pub fn get_str(&self, key: &str) -> Option<&'a str> {
        match self.get(key)? {
            ValueView::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether an attribute named `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.iter().any(|a| a.key == key.as_bytes())
    }

    /// The attributes, decoded.
    pub fn to_key_values(&self) -> Vec<KeyValue> {
        self.iter().map(|a| a.to_key_value()).collect()
    }
}

impl<'a> IntoIterator for AttributesView<'a> {
    type Item = AttributeView<'a>;
    type IntoIter = Attributes<'a>;

    fn into_iter(self) -> Attributes<'a> {
        self.iter()
    }
}

/// Iterator over [`AttributesView`].
#[derive(Clone)]
pub struct Attributes<'a> {
    inner: Repeated<'a>,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = AttributeView<'a>;

    fn next(&mut self) -> Option<AttributeView<'a>> {
        self.inner.next().map(AttributeView::parse)
    }
}

/// One attribute.
#[derive(Clone, Copy)]
pub struct AttributeView<'a> {
    /// The key's bytes: checked as UTF-8 only when [`Self::key`] is asked for, because most
    /// keys are only compared (the check is a byte-at-a-time loop for short text in wasm).
    key: &'a [u8],
    /// The value ([`ValueView::Empty`] when the attribute has none).
    pub value: ValueView<'a>,
    /// Whether the value field is there at all: decoding tells `None` from an empty value.
    present: bool,
    key_strindex: i32,
}

impl<'a> AttributeView<'a> {
    fn parse(body: &'a [u8]) -> Self {
        let mut key: &[u8] = &[];
        let mut values = 0u32;
        let mut value_body: &[u8] = &[];
        let mut key_strindex = 0;
        for (n, w) in (Fields { buf: body }) {
            match (n, w) {
                (1, Wire::Len(b)) => key = b,
                (2, Wire::Len(b)) => {
                    values += 1;
                    value_body = b;
                }
                (3, Wire::Varint(v)) => key_strindex = v as i32,
                _ => {}
            }
        }
        let present = values > 0;
        let value = match values {
            0 => ValueView::Empty,
            // The usual case: one value field, read on its own.
            1 => ValueView::parse(Msg::whole(value_body)),
            _ => ValueView::parse(Msg {
                buf: body,
                field: 2,
            }),
        };
        Self {
            key,
            value,
            present,
            key_strindex,
        }
    }

    /// The key.
    pub fn key(&self) -> &'a str {
        text(self.key)
    }

    /// The key's bytes, unchecked: for comparing keys, which needs no UTF-8 check.
    pub fn key_bytes(&self) -> &'a [u8] {
        self.key
    }

    /// The attribute, decoded: equal to what prost decodes.
    pub fn to_key_value(&self) -> KeyValue {
        KeyValue {
            key: self.key().to_string(),
            value: self.present.then(|| self.value.to_any_value()),
            key_strindex: self.key_strindex,
        }
    }
}

impl std::fmt::Debug for AttributeView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttributeView")
            .field("key", &self.key())
            .field("value", &self.value)
            .finish()
    }
}

/// A value.
#[derive(Clone, Copy, Debug)]
pub enum ValueView<'a> {
    /// No value set.
    Empty,
    /// A string.
    Str(&'a str),
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// Raw bytes.
    Bytes(&'a [u8]),
    /// An array of values.
    Array(ArrayView<'a>),
    /// A list of key-value pairs.
    KvList(KvListView<'a>),
    /// An index into a dictionary of strings (`string_value_strindex`).
    StrIndex(i32),
}

impl<'a> ValueView<'a> {
    fn parse(msg: Msg<'a>) -> Self {
        let mut value = ValueView::Empty;
        // Consecutive occurrences of the same message member merge, as prost merges into the
        // member already set; any other member starts afresh.
        for (i, (n, w)) in msg.fields().enumerate() {
            value = match (n, w) {
                (1, Wire::Len(b)) => ValueView::Str(text(b)),
                (2, Wire::Varint(v)) => ValueView::Bool(v != 0),
                (3, Wire::Varint(v)) => ValueView::Int(v as i64),
                (4, Wire::I64(v)) => ValueView::Double(f64::from_bits(v)),
                (5, Wire::Len(_)) => match value {
                    ValueView::Array(a) => ValueView::Array(a),
                    _ => ValueView::Array(ArrayView(List::new(msg, i, 5))),
                },
                (6, Wire::Len(_)) => match value {
                    ValueView::KvList(l) => ValueView::KvList(l),
                    _ => ValueView::KvList(KvListView(List::new(msg, i, 6))),
                },
                (7, Wire::Len(b)) => ValueView::Bytes(b),
                (8, Wire::Varint(v)) => ValueView::StrIndex(v as i32),
                _ => continue,
            };
        }
        value
    }

    /// The string inside, if the value is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            ValueView::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value, decoded: equal to what prost decodes.
    pub fn to_any_value(&self) -> AnyValue {
        use any_value::Value as V;
        let value = match *self {
            ValueView::Empty => None,
            ValueView::Str(s) => Some(V::StringValue(s.to_string())),
            ValueView::Bool(b) => Some(V::BoolValue(b)),
            ValueView::Int(i) => Some(V::IntValue(i)),
            ValueView::Double(d) => Some(V::DoubleValue(d)),
            ValueView::Bytes(b) => Some(V::BytesValue(b.to_vec())),
            ValueView::Array(a) => Some(V::ArrayValue(ArrayValue {
                values: a.iter().map(|v| v.to_any_value()).collect(),
            })),
            ValueView::KvList(l) => Some(V::KvlistValue(KeyValueList {
                values: l.iter().map(|a| a.to_key_value()).collect(),
            })),
            ValueView::StrIndex(i) => Some(V::StringValueStrindex(i)),
        };
        AnyValue { value }
    }
}

/// The elements of an array or key-value list member: field 1 of every occurrence of
/// `member` in `msg` from field position `skip` on (the run that prost merges).
#[derive(Clone, Copy)]
struct List<'a> {
    msg: Msg<'a>,
    skip: usize,
    member: u32,
}

impl<'a> List<'a> {
    fn new(msg: Msg<'a>, skip: usize, member: u32) -> Self {
        Self { msg, skip, member }
    }

    fn elements(self) -> ListIter<'a> {
        let mut fields = self.msg.fields();
        if self.skip > 0 {
            fields.nth(self.skip - 1);
        }
        ListIter {
            fields,
            member: self.member,
            inner: None,
        }
    }
}

impl std::fmt::Debug for List<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.elements().map(|b| b.len()))
            .finish()
    }
}

#[derive(Clone)]
struct ListIter<'a> {
    fields: MsgFields<'a>,
    member: u32,
    inner: Option<Fields<'a>>,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if let Some(inner) = &mut self.inner {
                for (n, w) in inner.by_ref() {
                    if let (1, Wire::Len(b)) = (n, w) {
                        return Some(b);
                    }
                }
            }
            match self.fields.next()? {
                (n, Wire::Len(b)) if n == self.member => self.inner = Some(Fields { buf: b }),
                _ => {}
            }
        }
    }
}

/// An array value.
#[derive(Clone, Copy, Debug)]
pub struct ArrayView<'a>(List<'a>);

impl<'a> ArrayView<'a> {
    /// The elements, in order.
    pub fn iter(&self) -> impl Iterator<Item = ValueView<'a>> + use<'a> {
        self.0.elements().map(|b| ValueView::parse(Msg::whole(b)))
    }
}

/// A key-value list value.
#[derive(Clone, Copy, Debug)]
pub struct KvListView<'a>(List<'a>);

impl<'a> KvListView<'a> {
    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = AttributeView<'a>> + use<'a> {
        self.0.elements().map(AttributeView::parse)
    }
}

/// A resource: its attributes, merged over every occurrence of the field.
#[derive(Clone, Copy)]
pub struct ResourceView<'a> {
    resource_spans: &'a [u8],
}

impl<'a> ResourceView<'a> {
    /// The resource's attributes.
    pub fn attributes(&self) -> AttributesView<'a> {
        AttributesView::new(
            Msg {
                buf: self.resource_spans,
                field: 1,
            },
            1,
        )
    }

    /// Whether the batch carries a resource message here at all.
    pub fn is_present(&self) -> bool {
        bodies(self.resource_spans, 1).next().is_some()
    }
}

/// An instrumentation scope.
#[derive(Clone, Copy)]
pub struct ScopeView<'a> {
    scope_spans: &'a [u8],
}

impl<'a> ScopeView<'a> {
    fn msg(&self) -> Msg<'a> {
        Msg {
            buf: self.scope_spans,
            field: 1,
        }
    }

    fn last(&self, number: u32) -> &'a str {
        let mut out: &[u8] = &[];
        for (n, w) in self.msg().fields() {
            if let (true, Wire::Len(b)) = (n == number, w) {
                out = b;
            }
        }
        text(out)
    }

    /// The scope's name.
    pub fn name(&self) -> &'a str {
        self.last(1)
    }

    /// The scope's version.
    pub fn version(&self) -> &'a str {
        self.last(2)
    }

    /// The scope's attributes.
    pub fn attributes(&self) -> AttributesView<'a> {
        AttributesView::new(self.msg(), 3)
    }
}

/// A span status.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatusView<'a> {
    /// The OTLP status code (0 unset, 1 ok, 2 error).
    pub code: i32,
    /// The status message.
    pub message: &'a str,
}

/// An event of a span.
#[derive(Clone, Copy)]
pub struct EventView<'a> {
    body: &'a [u8],
}

impl<'a> EventView<'a> {
    /// The event's time.
    pub fn time_unix_nano(&self) -> u64 {
        let mut t = 0;
        for (n, w) in (Fields { buf: self.body }) {
            if let (1, Wire::I64(v)) = (n, w) {
                t = v;
            }
        }
        t
    }

    /// The event's name.
    pub fn name(&self) -> &'a str {
        text(last_bytes(self.body, 2))
    }

    /// The event's attributes.
    pub fn attributes(&self) -> AttributesView<'a> {
        AttributesView::new(Msg::whole(self.body), 3)
    }
}

/// A link of a span.
#[derive(Clone, Copy)]
pub struct LinkView<'a> {
    body: &'a [u8],
}

impl<'a> LinkView<'a> {
    /// The linked trace id.
    pub fn trace_id(&self) -> &'a [u8] {
        last_bytes(self.body, 1)
    }

    /// The linked span id.
    pub fn span_id(&self) -> &'a [u8] {
        last_bytes(self.body, 2)
    }

    /// The link's attributes.
    pub fn attributes(&self) -> AttributesView<'a> {
        AttributesView::new(Msg::whole(self.body), 4)
    }
}

/// A span, with its resource and scope.
#[derive(Clone, Copy)]
pub struct SpanView<'a> {
    body: &'a [u8],
    resource: ResourceView<'a>,
    scope: ScopeView<'a>,
    index: u32,
    name: &'a str,
    trace_id: &'a [u8],
    span_id: &'a [u8],
    start: u64,
    end: u64,
    status: bool,
    events: u32,
    links: u32,
    /// Where the first attribute, event and link fields start in `body`: their lists are read
    /// from there, past the ids, name and times.
    attributes_at: u32,
    events_at: u32,
    links_at: u32,
}

impl<'a> SpanView<'a> {
    fn parse(body: &'a [u8], resource: ResourceView<'a>, scope: ScopeView<'a>, index: u32) -> Self {
        let mut s = Self {
            body,
            resource,
            scope,
            index,
            name: "",
            trace_id: &[],
            span_id: &[],
            start: 0,
            end: 0,
            status: false,
            events: 0,
            links: 0,
            attributes_at: u32::MAX,
            events_at: 0,
            links_at: 0,
        };
        let mut name: &[u8] = &[];
        let mut fields = Fields { buf: body };
        loop {
            // Bodies are far below 4 GiB (the host's request size limit).
            let at = (body.len() - fields.buf.len()) as u32;
            let Some((n, w)) = fields.next() else { break };
            match (n, w) {
                (1, Wire::Len(b)) => s.trace_id = b,
                (2, Wire::Len(b)) => s.span_id = b,
                (5, Wire::Len(b)) => name = b,
                (7, Wire::I64(v)) => s.start = v,
                (8, Wire::I64(v)) => s.end = v,
                (9, Wire::Len(_)) => s.attributes_at = s.attributes_at.min(at),
                (11, Wire::Len(_)) => {
                    if s.events == 0 {
                        s.events_at = at;
                    }
                    s.events += 1;
                }
                (13, Wire::Len(_)) => {
                    if s.links == 0 {
                        s.links_at = at;
                    }
                    s.links += 1;
                }
                (15, Wire::Len(_)) => s.status = true,
                _ => {}
            }
        }
        s.name = text(name);
        s
    }

    /// `body` from the first `at` on (empty when the field is absent).
    fn from(&self, at: u32, present: bool) -> &'a [u8] {
        match self.body.get(at as usize..) {
            Some(rest) if present => rest,
            _ => &[],
        }
    }

    /// The span's position in the batch.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The span name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The 16-byte trace id.
    pub fn trace_id(&self) -> &'a [u8] {
        self.trace_id
    }

    /// The 8-byte span id.
    pub fn span_id(&self) -> &'a [u8] {
        self.span_id
    }

    /// Duration in nanoseconds (0 when the end precedes the start).
    pub fn duration_nanos(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// The span's status, if set.
    pub fn status(&self) -> Option<StatusView<'a>> {
        if !self.status {
            return None;
        }
        let mut st = StatusView {
            code: 0,
            message: "",
        };
        let msg = Msg {
            buf: self.body,
            field: 15,
        };
        for (n, w) in msg.fields() {
            match (n, w) {
                (2, Wire::Len(b)) => st.message = text(b),
                (3, Wire::Varint(v)) => st.code = v as i32,
                _ => {}
            }
        }
        Some(st)
    }

    /// The span's attributes.
    pub fn attributes(&self) -> AttributesView<'a> {
        let body = self.from(self.attributes_at, self.attributes_at != u32::MAX);
        AttributesView::new(Msg::whole(body), 9)
    }

    /// How many events the span has.
    pub fn event_count(&self) -> usize {
        self.events as usize
    }

    /// The span's events, in order (positions match the `event` of the edit methods).
    pub fn events(&self) -> impl Iterator<Item = EventView<'a>> + use<'a> {
        bodies(self.from(self.events_at, self.events > 0), 11).map(|body| EventView { body })
    }

    /// How many links the span has.
    pub fn link_count(&self) -> usize {
        self.links as usize
    }

    /// The span's links, in order.
    pub fn links(&self) -> impl Iterator<Item = LinkView<'a>> + use<'a> {
        bodies(self.from(self.links_at, self.links > 0), 13).map(|body| LinkView { body })
    }

    /// The resource the span belongs to.
    pub fn resource(&self) -> ResourceView<'a> {
        self.resource
    }

    /// The resource's attributes.
    pub fn resource_attributes(&self) -> AttributesView<'a> {
        self.resource.attributes()
    }

    /// The resource's `service.name`.
    pub fn service_name(&self) -> Option<&'a str> {
        self.resource.attributes().get_str("service.name")
    }

    /// The instrumentation scope the span belongs to.
    pub fn scope(&self) -> ScopeView<'a> {
        self.scope
    }

    /// The scope's attributes.
    pub fn scope_attributes(&self) -> AttributesView<'a> {
        self.scope.attributes()
    }
}

/// Walks a `TracesData` body: `resource(i, view)`, `scope(i, resource, view)` and
/// `span(i, resource, scope, body)` in batch order, with the batch indices edits use.
pub(crate) fn walk<'a>(
    traces: &'a [u8],
    mut resource: impl FnMut(u32, ResourceView<'a>),
    mut scope: Option<&mut dyn FnMut(u32, ResourceView<'a>, ScopeView<'a>)>,
    mut span: Option<&mut dyn FnMut(SpanView<'a>)>,
) {
    let (mut r, mut s, mut p) = (0u32, 0u32, 0u32);
    for rs in bodies(traces, 1) {
        let rv = ResourceView { resource_spans: rs };
        resource(r, rv);
        r += 1;
        if scope.is_none() && span.is_none() {
            continue;
        }
        for ss in bodies(rs, 2) {
            let sv = ScopeView { scope_spans: ss };
            if let Some(f) = scope.as_mut() {
                f(s, rv, sv);
            }
            s += 1;
            if let Some(f) = span.as_mut() {
                for body in bodies(ss, 2) {
                    f(SpanView::parse(body, rv, sv, p));
                    p += 1;
                }
            }
        }
    }
}

/// A log record, with its resource and scope.
#[derive(Clone, Copy)]
pub struct LogRecordView<'a> {
    body: &'a [u8],
    resource: ResourceView<'a>,
    scope: ScopeView<'a>,
    index: u32,
    time: u64,
    observed_time: u64,
    severity_number: i32,
    severity_text: &'a str,
    flags: u32,
    trace_id: &'a [u8],
    span_id: &'a [u8],
    event_name: &'a str,
    has_body: bool,
}

impl<'a> LogRecordView<'a> {
    fn parse(body: &'a [u8], resource: ResourceView<'a>, scope: ScopeView<'a>, index: u32) -> Self {
        let mut r = Self {
            body,
            resource,
            scope,
            index,
            time: 0,
            observed_time: 0,
            severity_number: 0,
            severity_text: "",
            flags: 0,
            trace_id: &[],
            span_id: &[],
            event_name: "",
            has_body: false,
        };
        let (mut severity_text, mut event_name): (&[u8], &[u8]) = (&[], &[]);
        for (n, w) in (Fields { buf: body }) {
            match (n, w) {
                (1, Wire::I64(v)) => r.time = v,
                (2, Wire::Varint(v)) => r.severity_number = v as i32,
                (3, Wire::Len(b)) => severity_text = b,
                (5, Wire::Len(_)) => r.has_body = true,
                (8, Wire::I32(v)) => r.flags = v,
                (9, Wire::Len(b)) => r.trace_id = b,
                (10, Wire::Len(b)) => r.span_id = b,
                (11, Wire::I64(v)) => r.observed_time = v,
                (12, Wire::Len(b)) => event_name = b,
                _ => {}
            }
        }
        r.severity_text = text(severity_text);
        r.event_name = text(event_name);
        r
    }

    /// The record's position in the batch.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The body ([`ValueView::Empty`] when there is none).
    pub fn body(&self) -> ValueView<'a> {
        if !self.has_body {
            return ValueView::Empty;
        }
        ValueView::parse(Msg {
            buf: self.body,
            field: 5,
        })
    }

    /// The body when it is a string.
    pub fn body_str(&self) -> Option<&'a str> {
        self.body().as_str()
    }

    /// The severity number (`SeverityNumber`, 0 when unspecified).
    pub fn severity_number(&self) -> i32 {
        self.severity_number
    }

    /// The severity text as the source wrote it.
    pub fn severity_text(&self) -> &'a str {
        self.severity_text
    }

    /// When the event happened, nanoseconds since the Unix epoch (0 when unknown).
    pub fn time_unix_nano(&self) -> u64 {
        self.time
    }

    /// When the event was observed, nanoseconds since the Unix epoch.
    pub fn observed_time_unix_nano(&self) -> u64 {
        self.observed_time
    }

    /// The W3C trace flags.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// The 16-byte trace id (empty when not tied to a trace).
    pub fn trace_id(&self) -> &'a [u8] {
        self.trace_id
    }

    /// The 8-byte span id (empty when not tied to a span).
    pub fn span_id(&self) -> &'a [u8] {
        self.span_id
    }

    /// The event name (empty when the record is not an event).
    pub fn event_name(&self) -> &'a str {
        self.event_name
    }

    /// The record's attributes.
    pub fn attributes(&self) -> AttributesView<'a> {
        AttributesView::new(Msg::whole(self.body), 6)
    }

    /// The resource the record belongs to.
    pub fn resource(&self) -> ResourceView<'a> {
        self.resource
    }

    /// The resource's attributes.
    pub fn resource_attributes(&self) -> AttributesView<'a> {
        self.resource.attributes()
    }

    /// The resource's `service.name`.
    pub fn service_name(&self) -> Option<&'a str> {
        self.resource.attributes().get_str("service.name")
    }

    /// The instrumentation scope the record belongs to.
    pub fn scope(&self) -> ScopeView<'a> {
        self.scope
    }

    /// The scope's attributes.
    pub fn scope_attributes(&self) -> AttributesView<'a> {
        self.scope.attributes()
    }
}

/// Walks a `LogsData` body as [`walk`] walks `TracesData` (the same outline), with
/// `record(view)` for each log record.
pub(crate) fn walk_logs<'a>(
    logs: &'a [u8],
    mut resource: impl FnMut(u32, ResourceView<'a>),
    mut scope: Option<&mut dyn FnMut(u32, ResourceView<'a>, ScopeView<'a>)>,
    mut record: Option<&mut dyn FnMut(LogRecordView<'a>)>,
) {
    let (mut r, mut s, mut p) = (0u32, 0u32, 0u32);
    for rl in bodies(logs, 1) {
        let rv = ResourceView { resource_spans: rl };
        resource(r, rv);
        r += 1;
        if scope.is_none() && record.is_none() {
            continue;
        }
        for sl in bodies(rl, 2) {
            let sv = ScopeView { scope_spans: sl };
            if let Some(f) = scope.as_mut() {
                f(s, rv, sv);
            }
            s += 1;
            if let Some(f) = record.as_mut() {
                for body in bodies(sl, 2) {
                    f(LogRecordView::parse(body, rv, sv, p));
                    p += 1;
                }
            }
        }
    }
}

/// A metric's data point, read in place: what [`crate::MetricBatch::for_each_data_point_view`]
/// hands out.
#[derive(Clone, Copy)]
pub struct DataPointView<'a> {
    body: &'a [u8],
    /// The attribute list's field number in this point type.
    attributes: u32,
    metric: &'a [u8],
    resource: ResourceView<'a>,
    scope: ScopeView<'a>,
    index: u32,
}

impl<'a> DataPointView<'a> {
    /// The point's attributes.
    pub fn attributes(&self) -> AttributesView<'a> {
        AttributesView::new(Msg::whole(self.body), self.attributes)
    }

    /// The point's position in the batch (over all data points of all metrics).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The point's metric's name.
    pub fn metric_name(&self) -> &'a str {
        text(last_bytes(self.metric, 1))
    }

    /// The point's metric's unit.
    pub fn metric_unit(&self) -> &'a str {
        text(last_bytes(self.metric, 3))
    }

    /// The resource the point belongs to.
    pub fn resource(&self) -> ResourceView<'a> {
        self.resource
    }

    /// The resource's `service.name`.
    pub fn service_name(&self) -> Option<&'a str> {
        self.resource.attributes().get_str("service.name")
    }

    /// The instrumentation scope the point belongs to.
    pub fn scope(&self) -> ScopeView<'a> {
        self.scope
    }
}

/// The data points of a `Metric` body with their attribute list's field number: the points
/// (field 1) of its data field (gauge 5, sum 7, histogram 9, exponential histogram 10,
/// summary 11). As in decoding the `data` oneof, occurrences of the same data field merge
/// (their points concatenate) and a different one replaces what came before.
fn metric_points(metric: &[u8]) -> impl Iterator<Item = (&[u8], u32)> {
    let attributes = |n: u32| match n {
        5 | 7 | 11 => Some(7),
        9 => Some(9),
        10 => Some(1),
        _ => None,
    };
    let mut current = (0, Vec::new());
    for (n, w) in (Fields { buf: metric }) {
        if let (Some(_), Wire::Len(b)) = (attributes(n), w) {
            if n != current.0 {
                current = (n, Vec::new());
            }
            current.1.push(b);
        }
    }
    let attrs = attributes(current.0).unwrap_or(0);
    current
        .1
        .into_iter()
        .flat_map(move |data| bodies(data, 1).map(move |p| (p, attrs)))
}

/// Walks a metrics batch (`MetricsData` bytes, the same outline as logs' up to the scope)
/// calling `point` for each data point, in batch order.
pub(crate) fn walk_metric_points<'a>(metrics: &'a [u8], mut point: impl FnMut(DataPointView<'a>)) {
    let mut p = 0u32;
    for rm in bodies(metrics, 1) {
        let resource = ResourceView { resource_spans: rm };
        for sm in bodies(rm, 2) {
            let scope = ScopeView { scope_spans: sm };
            for metric in bodies(sm, 2) {
                for (body, attributes) in metric_points(metric) {
                    point(DataPointView {
                        body,
                        attributes,
                        metric,
                        resource,
                        scope,
                        index: p,
                    });
                    p += 1;
                }
            }
        }
    }
}
