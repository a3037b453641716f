//! A plugin's edits applied to the protobuf bytes of the batch it was given, without decoding
//! the batch. This is the one edit applier: the collector's plugin host runs it on every
//! plugin's output, and the native test harness ([`crate::testing::Harness`]) runs it too.
//!
//! The result decodes to exactly what the plainly written reference in the tests
//! (`edit_oracle.rs`: check every edit, then apply them to the decoded batch) makes of the
//! decoded batch; only the order of fields in the bytes may differ. Messages no edit reaches are copied
//! as whole byte ranges, and rewritten messages are written straight into the output with their
//! length prefix fixed up afterwards, so nothing is decoded and, per span, nothing is allocated.

use std::collections::BTreeMap;

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::edit::{Edit, Target};
use crate::wire::{self, RawField};

/// A batch after its edits.
#[derive(Debug)]
pub struct Edited {
    /// The edited `ExportTraceServiceRequest` (or `ExportLogsServiceRequest`), protobuf.
    pub bytes: Vec<u8>,
    /// Its span count (log record count, for a logs batch).
    pub spans: usize,
}

/// Which signal a batch holds. Both have the same outline (field 1 resources, in each field 1
/// the resource and field 2 the scopes, in each scope field 1 the scope and field 2 the items),
/// so one walk serves both; they differ in the items' fields and in which edits apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Spans,
    Logs,
}

impl Kind {
    /// The attribute list of an item (`Span.attributes`, `LogRecord.attributes`).
    fn attributes(self) -> u32 {
        match self {
            Kind::Spans => 9,
            Kind::Logs => 6,
        }
    }

    fn item(self) -> &'static str {
        match self {
            Kind::Spans => "span",
            Kind::Logs => "log record",
        }
    }

    fn batch(self) -> &'static str {
        match self {
            Kind::Spans => "a trace batch",
            Kind::Logs => "a logs batch",
        }
    }
}

/// Applies `edits` to `request`, the protobuf bytes of a valid `ExportLogsServiceRequest` (or
/// `LogsData`), as [`apply`] does for spans: resource, scope and log-record attributes,
/// bodies, and dropped records (scopes and resources left empty go with them). Span edits fail.
pub fn apply_logs(request: &[u8], edits: Vec<Edit>) -> Result<Edited, String> {
    apply_kind(Kind::Logs, request, edits)
}

/// Applies `edits` (as the plugin returned them, in order) to `request`, the protobuf bytes of
/// a valid `ExportTraceServiceRequest` (or `TracesData`: the same field 1); the host passes only
/// bytes its validator (`wasmcol::otlp::wire::validate`) accepted. Returns the edited request
/// and its span count, or an error naming the first bad edit (index out of range etc.), in
/// which case nothing is applied. The error text is what the host reports for the plugin.
pub fn apply(request: &[u8], edits: Vec<Edit>) -> Result<Edited, String> {
    apply_kind(Kind::Spans, request, edits)
}

fn apply_kind(kind: Kind, request: &[u8], edits: Vec<Edit>) -> Result<Edited, String> {
    let layout = Layout::new(request, kind);
    let mut ops = Ops::check(&layout, edits)?;
    // Stable sorts: edits on one target keep the order the plugin gave them, and every list is
    // in batch order, so one walk over the batch meets them front to back. Plugins usually emit
    // edits in batch order already, which the sort detects as a single run.
    ops.resource.sort_by_key(|(r, _)| *r);
    ops.scope.sort_by_key(|(s, _)| *s);
    ops.span.sort_by_key(|(k, _)| *k);
    let mut w = Writer {
        out: Vec::with_capacity(request.len() + request.len() / 8 + ops.values.len() + 64),
        values: &ops.values,
        layout: &layout,
        resource_ops: &ops.resource,
        scope_ops: &ops.scope,
        span_ops: &ops.span,
        drops: ops.drops,
        dropped: 0,
        kind,
        entries: Vec::new(),
        inner: Vec::new(),
    };
    w.request(request);
    Ok(Edited {
        bytes: w.out,
        spans: layout.spans.len() - w.dropped,
    })
}

/// Where every resource, scope and span of the batch is, by batch index.
struct Layout<'a> {
    /// The scopes of resource `r` are `resource_scopes[r]..resource_scopes[r + 1]`.
    resource_scopes: Vec<usize>,
    /// The spans of scope `s` are `scope_spans[s]..scope_spans[s + 1]`.
    scope_spans: Vec<usize>,
    /// Span (or log record) bodies, to count events and links when an edit names one.
    spans: Vec<&'a [u8]>,
    kind: Kind,
}

impl<'a> Layout<'a> {
    fn new(request: &'a [u8], kind: Kind) -> Self {
        let mut layout = Layout {
            resource_scopes: vec![0],
            scope_spans: vec![0],
            spans: Vec::new(),
            kind,
        };
        // The writer walks the batch with the same `raw_fields` filters, so its counters agree
        // with these indices.
        for rs in wire::raw_fields_numbered(request, 1) {
            for ss in wire::raw_fields_numbered(rs.payload, 2) {
                layout
                    .spans
                    .extend(wire::raw_fields_numbered(ss.payload, 2).map(|span| span.payload));
                layout.scope_spans.push(layout.spans.len());
            }
            layout.resource_scopes.push(layout.scope_spans.len() - 1);
        }
        layout
    }

    fn resources(&self) -> usize {
        self.resource_scopes.len() - 1
    }

    fn scopes(&self) -> usize {
        self.scope_spans.len() - 1
    }
}

/// Set (`value` is a range of `Ops::values`, an encoded `AnyValue`) or remove (`None`).
struct AttrOp {
    key: String,
    value: Option<(usize, usize)>,
}

enum SpanOp {
    Attr(AttrOp),
    Name(String),
    Status(i32, String),
    /// A log record's new body: a range of `Ops::values`, an encoded `AnyValue`.
    Body((usize, usize)),
    Drop,
}

/// Which part of a span an op is for. Sorting by it puts a span's ops into three runs (its own,
/// its events', its links'), each in position order, which is how `span` consumes them.
const OWN: u8 = 0;
const EVENT: u8 = 1;
const LINK: u8 = 2;

/// (span, part, event or link position).
type SpanKey = (usize, u8, usize);

struct Ops {
    resource: Vec<(usize, AttrOp)>,
    scope: Vec<(usize, AttrOp)>,
    span: Vec<(SpanKey, SpanOp)>,
    /// Every new value, encoded back to back, so that edits do not each own a buffer.
    values: Vec<u8>,
    drops: bool,
}

impl Ops {
    /// Every edit checked in order (the reference's `prepare` checks the same, with the same
    /// messages).
    fn check(layout: &Layout<'_>, edits: Vec<Edit>) -> Result<Self, String> {
        let mut ops = Ops {
            resource: Vec::new(),
            scope: Vec::new(),
            span: Vec::with_capacity(edits.len()),
            values: Vec::new(),
            drops: false,
        };
        let mut counts = ItemCounts::default();
        for edit in edits {
            if !applies_to(layout.kind == Kind::Logs, &edit) {
                return Err(wrong_signal(layout.kind, &edit));
            }
            match edit {
                Edit::SetAttribute { target, key, value } => {
                    let start = ops.values.len();
                    // Encoding into a Vec cannot fail.
                    value.into_any_value().encode_raw(&mut ops.values);
                    let op = AttrOp {
                        key,
                        value: Some((start, ops.values.len())),
                    };
                    ops.attr(layout, &mut counts, target, op)?;
                }
                Edit::RemoveAttribute { target, key } => {
                    let op = AttrOp { key, value: None };
                    ops.attr(layout, &mut counts, target, op)?;
                }
                Edit::SetSpanName { span, name } => {
                    let p = span_index(layout, span)?;
                    ops.span.push(((p, OWN, 0), SpanOp::Name(name)));
                }
                Edit::SetEventName { span, event, name } => {
                    let p = span_index(layout, span)?;
                    let e = counts.item(layout, p, span, event, EVENT)?;
                    ops.span.push(((p, EVENT, e), SpanOp::Name(name)));
                }
                Edit::SetStatus {
                    span,
                    code,
                    message,
                } => {
                    let p = span_index(layout, span)?;
                    ops.span
                        .push(((p, OWN, 0), SpanOp::Status(code.to_otlp(), message)));
                }
                Edit::DropSpan { span } => {
                    let p = span_index(layout, span)?;
                    ops.drops = true;
                    ops.span.push(((p, OWN, 0), SpanOp::Drop));
                }
                Edit::SetBody { record, value } => {
                    let p = span_index(layout, record)?;
                    let start = ops.values.len();
                    value.into_any_value().encode_raw(&mut ops.values);
                    let range = (start, ops.values.len());
                    ops.span.push(((p, OWN, 0), SpanOp::Body(range)));
                }
                Edit::DropLogRecord { record } => {
                    let p = span_index(layout, record)?;
                    ops.drops = true;
                    ops.span.push(((p, OWN, 0), SpanOp::Drop));
                }
                Edit::DropDataPoint { .. } | Edit::DropMetric { .. } => {
                    unreachable!("refused by applies_to")
                }
            }
        }
        Ok(ops)
    }

    fn attr(
        &mut self,
        layout: &Layout<'_>,
        counts: &mut ItemCounts,
        target: Target,
        op: AttrOp,
    ) -> Result<(), String> {
        let on_item = matches!(
            target,
            Target::Span(_) | Target::Event(..) | Target::Link(..)
        );
        if (on_item && layout.kind == Kind::Logs)
            || (matches!(target, Target::LogRecord(_)) && layout.kind == Kind::Spans)
            || matches!(target, Target::DataPoint(_))
        {
            return Err(format!(
                "target {target:?} does not apply to {}",
                layout.kind.batch()
            ));
        }
        match target {
            Target::Resource(r) => {
                if r as usize >= layout.resources() {
                    return Err(format!(
                        "resource index {r} is out of range (the batch has {})",
                        layout.resources()
                    ));
                }
                self.resource.push((r as usize, op));
            }
            Target::Scope(s) => {
                if s as usize >= layout.scopes() {
                    return Err(format!(
                        "scope index {s} is out of range (the batch has {})",
                        layout.scopes()
                    ));
                }
                self.scope.push((s as usize, op));
            }
            Target::Span(s) => {
                let p = span_index(layout, s)?;
                self.span.push(((p, OWN, 0), SpanOp::Attr(op)));
            }
            Target::Event(s, e) => {
                let p = span_index(layout, s)?;
                let e = counts.item(layout, p, s, e, EVENT)?;
                self.span.push(((p, EVENT, e), SpanOp::Attr(op)));
            }
            Target::Link(s, l) => {
                let p = span_index(layout, s)?;
                let l = counts.item(layout, p, s, l, LINK)?;
                self.span.push(((p, LINK, l), SpanOp::Attr(op)));
            }
            Target::LogRecord(s) => {
                let p = span_index(layout, s)?;
                self.span.push(((p, OWN, 0), SpanOp::Attr(op)));
            }
            Target::DataPoint(_) => unreachable!("refused above"),
        }
        Ok(())
    }
}

/// Whether `edit` is one for a logs batch (`logs`) or a trace batch; attribute edits are for
/// both (their target is checked on its own).
pub(crate) fn applies_to(logs: bool, edit: &Edit) -> bool {
    match edit {
        Edit::SetAttribute { .. } | Edit::RemoveAttribute { .. } => true,
        Edit::SetBody { .. } | Edit::DropLogRecord { .. } => logs,
        // Metrics batches have their own applier (`apply_metrics`).
        Edit::DropDataPoint { .. } | Edit::DropMetric { .. } => false,
        _ => !logs,
    }
}

/// The error for an edit that belongs to another signal (the references' are the same);
/// `batch` names the batch ("a trace batch").
pub(crate) fn wrong_signal_message(batch: &str, edit: &Edit) -> String {
    let name = match edit {
        Edit::SetAttribute { .. } => "set-attribute",
        Edit::RemoveAttribute { .. } => "remove-attribute",
        Edit::SetSpanName { .. } => "set-span-name",
        Edit::SetEventName { .. } => "set-event-name",
        Edit::SetStatus { .. } => "set-status",
        Edit::DropSpan { .. } => "drop-span",
        Edit::SetBody { .. } => "set-body",
        Edit::DropLogRecord { .. } => "drop-log-record",
        Edit::DropDataPoint { .. } => "drop-data-point",
        Edit::DropMetric { .. } => "drop-metric",
    };
    format!("{name} does not apply to {batch}")
}

fn wrong_signal(kind: Kind, edit: &Edit) -> String {
    wrong_signal_message(kind.batch(), edit)
}

fn span_index(layout: &Layout<'_>, span: u32) -> Result<usize, String> {
    if (span as usize) < layout.spans.len() {
        Ok(span as usize)
    } else {
        Err(format!(
            "{} index {span} is out of range (the batch has {})",
            layout.kind.item(),
            layout.spans.len()
        ))
    }
}

/// Event and link counts of the spans that edits name, each span counted at most once: counting
/// is a pass over the span, and a plugin that alternates between two large spans must not make
/// every edit pay for one.
#[derive(Default)]
struct ItemCounts {
    /// (events, links) by span index, `None` until asked; empty until an edit needs one.
    spans: Vec<Option<(usize, usize)>>,
}

impl ItemCounts {
    fn item(
        &mut self,
        layout: &Layout<'_>,
        p: usize,
        span: u32,
        i: u32,
        part: u8,
    ) -> Result<usize, String> {
        if self.spans.is_empty() {
            self.spans = vec![None; layout.spans.len()];
        }
        let (events, links) = *self.spans[p].get_or_insert_with(|| {
            let (mut events, mut links) = (0, 0);
            for f in wire::raw_fields(layout.spans[p]) {
                match f.number {
                    11 => events += 1,
                    13 => links += 1,
                    _ => {}
                }
            }
            (events, links)
        });
        let (count, what) = if part == EVENT {
            (events, "event")
        } else {
            (links, "link")
        };
        if (i as usize) < count {
            Ok(i as usize)
        } else {
            Err(format!(
                "{what} index {i} of span {span} is out of range (the span has {count})"
            ))
        }
    }
}

/// One attribute of a list being edited, in the list's final order.
#[derive(Clone, Copy)]
struct Entry<'a> {
    key: &'a [u8],
    /// The original `KeyValue`: the whole field, and its body.
    original: Option<(&'a [u8], &'a [u8])>,
    /// The new value (encoded `AnyValue`), if the attribute was set.
    value: Option<&'a [u8]>,
    /// Removed by an op: left in place (taking it out would move every later entry) and
    /// skipped when the list is written.
    removed: bool,
}

impl<'a> Entry<'a> {
    /// An attribute the ops add.
    fn new(key: &'a [u8], value: &'a [u8]) -> Self {
        Entry {
            key,
            original: None,
            value: Some(value),
            removed: false,
        }
    }

    fn original(f: RawField<'a>) -> Self {
        Entry {
            key: key_value_key(f.payload),
            original: Some((f.bytes, f.payload)),
            value: None,
            removed: false,
        }
    }
}

/// Lists up to this long are searched from the front for each op; a longer one gets a
/// [`KeyIndex`], so that n ops on a list of m attributes cost O((n + m) log(n + m)) instead
/// of O(n × m) (a plugin can send 200,000 distinct keys for one span).
const SCAN_AT_MOST: usize = 16;

/// Where the live (not removed) entries of a long list are, by key: the first and last entry
/// with each key, and from each entry the next one with the same key. A `BTreeMap` keeps
/// every lookup O(log n) whatever the keys are.
struct KeyIndex<'a> {
    first_last: BTreeMap<&'a [u8], (usize, usize)>,
    next: Vec<usize>,
}

/// No next entry with the same key.
const NONE: usize = usize::MAX;

impl<'a> KeyIndex<'a> {
    fn new(entries: &[Entry<'a>]) -> Self {
        let mut index = KeyIndex {
            first_last: BTreeMap::new(),
            next: Vec::with_capacity(entries.len()),
        };
        for (i, e) in entries.iter().enumerate() {
            index.next.push(NONE);
            if !e.removed {
                index.link(e.key, i);
            }
        }
        index
    }

    /// Entry `i` (the newest) has `key`.
    fn link(&mut self, key: &'a [u8], i: usize) {
        match self.first_last.get_mut(key) {
            Some((_, last)) => {
                self.next[*last] = i;
                *last = i;
            }
            None => {
                self.first_last.insert(key, (i, i));
            }
        }
    }
}

/// The key of a `KeyValue` body. Encoders write `key` then `value` and nothing else, which is
/// recognised here without a general walk over the fields; anything else takes the walk, where
/// the last `key` wins and a missing one is the empty key, as in decoding.
fn key_value_key(kv: &[u8]) -> &[u8] {
    if let [0x0a, n, rest @ ..] = kv
        && *n < 0x80
        && let Some((key, after)) = rest.split_at_checked(usize::from(*n))
    {
        match after {
            [] => return key,
            [0x12, value @ ..] if is_one_len_prefixed(value) => return key,
            _ => {}
        }
    }
    wire::key_value_key(kv).unwrap_or_default().as_bytes()
}

/// Key equality, with the first byte compared before `memcmp` is called: most keys that differ
/// already differ there, and a list is searched once per op.
#[inline(always)]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.first() == b.first() && a == b
}

/// Whether `b` is a varint length followed by exactly that many bytes.
fn is_one_len_prefixed(b: &[u8]) -> bool {
    let mut len = 0u64;
    for (i, &byte) in b.iter().take(9).enumerate() {
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return (b.len() - i - 1) as u64 == len;
        }
    }
    false
}

/// The fields of one body that stay as they are, copied in runs: fields follow each other
/// without gaps, so consecutive kept fields are one range of the body and one copy.
struct Runs<'a> {
    body: &'a [u8],
    start: usize,
    end: usize,
}

impl<'a> Runs<'a> {
    fn new(body: &'a [u8]) -> Self {
        Runs {
            body,
            start: 0,
            end: 0,
        }
    }

    /// The next field stays.
    fn keep(&mut self, f: &RawField<'_>) {
        self.end += f.bytes.len();
    }

    /// The next field does not stay (it is left out or rewritten): the run before it goes out
    /// now, so that whatever replaces the field comes after it.
    fn cut(&mut self, out: &mut Vec<u8>, f: &RawField<'_>) {
        out.extend_from_slice(&self.body[self.start..self.end]);
        self.end += f.bytes.len();
        self.start = self.end;
    }

    fn finish(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.body[self.start..self.end]);
    }
}

struct Writer<'a> {
    out: Vec<u8>,
    values: &'a [u8],
    layout: &'a Layout<'a>,
    /// What is left of each op list: ops for everything before the writer's position have been
    /// taken off the front.
    resource_ops: &'a [(usize, AttrOp)],
    scope_ops: &'a [(usize, AttrOp)],
    span_ops: &'a [(SpanKey, SpanOp)],
    /// Whether any span is dropped, which is when the reference's `apply` prunes empty scopes and
    /// resources (even ones that were empty before).
    drops: bool,
    dropped: usize,
    kind: Kind,
    /// Scratch attribute lists, kept to reuse their allocations: one for a span (or resource
    /// or scope), one for an event or link, which is rewritten while its span's list is open.
    entries: Vec<Entry<'a>>,
    inner: Vec<Entry<'a>>,
}

/// The leading ops of `ops` that `mine` accepts, taken off `ops`.
fn take<'a, K: Copy, T>(ops: &mut &'a [(K, T)], mine: impl Fn(K) -> bool) -> &'a [(K, T)] {
    let n = ops.iter().take_while(|(k, _)| mine(*k)).count();
    let (taken, rest) = ops.split_at(n);
    *ops = rest;
    taken
}

/// A length-delimited field being written: its length is reserved and filled in at the end.
struct Open {
    start: usize,
    len_at: usize,
    body_at: usize,
}

impl<'a> Writer<'a> {
    /// Starts field `number`, reserving room for a length like `guess`, which saves moving the
    /// body when the final length needs as many bytes.
    fn open(&mut self, number: u32, guess: usize) -> Open {
        let start = self.out.len();
        encode_key(number, WireType::LengthDelimited, &mut self.out);
        let len_at = self.out.len();
        self.out
            .resize(len_at + encoded_len_varint(guess as u64), 0);
        Open {
            start,
            len_at,
            body_at: self.out.len(),
        }
    }

    fn close(&mut self, open: Open) {
        let len = self.out.len() - open.body_at;
        let need = encoded_len_varint(len as u64);
        let body_at = open.len_at + need;
        if body_at != open.body_at {
            if body_at > open.body_at {
                self.out.resize(body_at + len, 0);
            }
            self.out
                .copy_within(open.body_at..open.body_at + len, body_at);
            self.out.truncate(body_at + len);
        }
        let mut slot = &mut self.out[open.len_at..body_at];
        encode_varint(len as u64, &mut slot);
    }

    fn discard(&mut self, open: Open) {
        self.out.truncate(open.start);
    }

    fn bytes_field(&mut self, number: u32, bytes: &[u8]) {
        encode_key(number, WireType::LengthDelimited, &mut self.out);
        encode_varint(bytes.len() as u64, &mut self.out);
        self.out.extend_from_slice(bytes);
    }

    fn value(&self, range: (usize, usize)) -> &'a [u8] {
        &self.values[range.0..range.1]
    }

    fn request(&mut self, request: &'a [u8]) {
        let layout = self.layout;
        let mut runs = Runs::new(request);
        let mut r = 0;
        for f in wire::raw_fields(request) {
            if f.number != 1 {
                runs.keep(&f);
                continue;
            }
            let (s0, s1) = (layout.resource_scopes[r], layout.resource_scopes[r + 1]);
            let p1 = layout.scope_spans[s1];
            let own = take(&mut self.resource_ops, |i| i == r);
            let touched = !own.is_empty()
                || self.scope_ops.first().is_some_and(|(s, _)| *s < s1)
                || self.span_ops.first().is_some_and(|((p, ..), _)| *p < p1);
            let prunes = self.drops
                && (s0 == s1
                    || (s0..s1).any(|s| layout.scope_spans[s] == layout.scope_spans[s + 1]));
            if touched || prunes {
                runs.cut(&mut self.out, &f);
                self.resource_spans(f.payload, s0, own);
            } else {
                runs.keep(&f);
            }
            r += 1;
        }
        runs.finish(&mut self.out);
    }

    fn resource_spans(&mut self, body: &'a [u8], first_scope: usize, own: &'a [(usize, AttrOp)]) {
        let layout = self.layout;
        let open = self.open(1, body.len());
        let mut runs = Runs::new(body);
        let mut s = first_scope;
        let mut kept = 0;
        for f in wire::raw_fields(body) {
            match f.number {
                // With edits, every occurrence of `resource` goes into one, written below.
                1 if !own.is_empty() => runs.cut(&mut self.out, &f),
                2 => {
                    let (p0, p1) = (layout.scope_spans[s], layout.scope_spans[s + 1]);
                    let scope_own = take(&mut self.scope_ops, |i| i == s);
                    let untouched = scope_own.is_empty()
                        && self.span_ops.first().is_none_or(|((p, ..), _)| *p >= p1);
                    if untouched && !(self.drops && p0 == p1) {
                        runs.keep(&f);
                        kept += 1;
                    } else {
                        runs.cut(&mut self.out, &f);
                        if !untouched && self.scope_spans(f.payload, p0, scope_own) {
                            kept += 1;
                        }
                    }
                    s += 1;
                }
                _ => runs.keep(&f),
            }
        }
        runs.finish(&mut self.out);
        if !own.is_empty() {
            // `apply` inserts a default resource when there is none.
            self.merged(body, 1, 1, own);
        }
        if self.drops && kept == 0 {
            self.discard(open);
        } else {
            self.close(open);
        }
    }

    /// Writes the occurrences of singular message field `number` of `body` as one message
    /// (the concatenation of their bodies is what protobuf merges them into), with the ops
    /// applied to its attribute list `attributes`.
    fn merged(&mut self, body: &'a [u8], number: u32, attributes: u32, ops: &'a [(usize, AttrOp)]) {
        let guess = wire::raw_fields_numbered(body, number)
            .map(|f| f.payload.len())
            .sum();
        let open = self.open(number, guess);
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        for occurrence in wire::raw_fields_numbered(body, number) {
            let mut runs = Runs::new(occurrence.payload);
            for f in wire::raw_fields(occurrence.payload) {
                if f.number == attributes {
                    runs.cut(&mut self.out, &f);
                    entries.push(Entry::original(f));
                } else {
                    runs.keep(&f);
                }
            }
            runs.finish(&mut self.out);
        }
        self.attributes(attributes, &mut entries, ops.iter().map(|(_, op)| op));
        self.entries = entries;
        self.close(open);
    }

    /// A scope with ops in it or under it. Returns whether it is kept.
    fn scope_spans(
        &mut self,
        body: &'a [u8],
        first_span: usize,
        own: &'a [(usize, AttrOp)],
    ) -> bool {
        let open = self.open(2, body.len());
        let mut runs = Runs::new(body);
        let mut p = first_span;
        let mut kept = 0;
        for f in wire::raw_fields(body) {
            match f.number {
                1 if !own.is_empty() => runs.cut(&mut self.out, &f),
                2 => {
                    let ops = take(&mut self.span_ops, |(i, ..)| i == p);
                    p += 1;
                    if ops.is_empty() {
                        runs.keep(&f);
                        kept += 1;
                    } else if ops.iter().any(|(_, op)| matches!(op, SpanOp::Drop)) {
                        runs.cut(&mut self.out, &f);
                        self.dropped += 1;
                    } else {
                        runs.cut(&mut self.out, &f);
                        self.span(f.payload, ops);
                        kept += 1;
                    }
                }
                _ => runs.keep(&f),
            }
        }
        runs.finish(&mut self.out);
        if !own.is_empty() {
            self.merged(body, 1, 3, own);
        }
        if self.drops && kept == 0 {
            self.discard(open);
            false
        } else {
            self.close(open);
            true
        }
    }

    fn span(&mut self, body: &'a [u8], ops: &'a [(SpanKey, SpanOp)]) {
        let n = ops
            .iter()
            .take_while(|((_, part, _), _)| *part == OWN)
            .count();
        let (own, items) = ops.split_at(n);
        // Apart, because events and links may interleave in the bytes.
        let n = items
            .iter()
            .take_while(|((_, part, _), _)| *part == EVENT)
            .count();
        let (mut events, mut links) = items.split_at(n);
        // Each of these replaces the whole field, so the last one counts.
        let name = own.iter().rev().find_map(|(_, op)| match op {
            SpanOp::Name(name) => Some(name),
            _ => None,
        });
        let status = own.iter().rev().find_map(|(_, op)| match op {
            SpanOp::Status(code, message) => Some((*code, message)),
            _ => None,
        });
        let body_value = own.iter().rev().find_map(|(_, op)| match op {
            SpanOp::Body(range) => Some(*range),
            _ => None,
        });
        let attributes = own.iter().any(|(_, op)| matches!(op, SpanOp::Attr(_)));
        let attributes_field = self.kind.attributes();
        let spans = self.kind == Kind::Spans;

        let open = self.open(2, body.len());
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        let mut runs = Runs::new(body);
        let (mut event, mut link) = (0, 0);
        for f in wire::raw_fields(body) {
            match f.number {
                // A span's name, or a log record's body.
                5 if name.is_some() || body_value.is_some() => runs.cut(&mut self.out, &f),
                15 if spans && status.is_some() => runs.cut(&mut self.out, &f),
                n if n == attributes_field && attributes => {
                    runs.cut(&mut self.out, &f);
                    entries.push(Entry::original(f));
                }
                11 if spans => {
                    let mine = take(&mut events, |(.., i)| i == event);
                    event += 1;
                    if mine.is_empty() {
                        runs.keep(&f);
                    } else {
                        runs.cut(&mut self.out, &f);
                        self.item(f, mine, 2, 3);
                    }
                }
                13 if spans => {
                    let mine = take(&mut links, |(.., i)| i == link);
                    link += 1;
                    if mine.is_empty() {
                        runs.keep(&f);
                    } else {
                        runs.cut(&mut self.out, &f);
                        // Links have no name, and no op renames one.
                        self.item(f, mine, 0, 4);
                    }
                }
                _ => runs.keep(&f),
            }
        }
        runs.finish(&mut self.out);
        if let Some(name) = name {
            self.bytes_field(5, name.as_bytes());
        }
        if let Some(range) = body_value {
            let value = self.value(range);
            self.bytes_field(5, value);
        }
        if let Some((code, message)) = status {
            // Status { message = 2, code = 3 }, written like prost writes it.
            let open = self.open(15, message.len() + 3);
            if !message.is_empty() {
                self.bytes_field(2, message.as_bytes());
            }
            if code != 0 {
                encode_key(3, WireType::Varint, &mut self.out);
                encode_varint(i64::from(code) as u64, &mut self.out);
            }
            self.close(open);
        }
        if attributes {
            let ops = own.iter().filter_map(|(_, op)| match op {
                SpanOp::Attr(op) => Some(op),
                _ => None,
            });
            self.attributes(attributes_field, &mut entries, ops);
        }
        self.entries = entries;
        self.close(open);
    }

    /// An event or link with ops: `name` is its name field (0 for none), `attributes` its
    /// attribute list.
    fn item(&mut self, f: RawField<'a>, ops: &'a [(SpanKey, SpanOp)], name: u32, attributes: u32) {
        let new_name = ops.iter().rev().find_map(|(_, op)| match op {
            SpanOp::Name(name) => Some(name),
            _ => None,
        });
        let has_attributes = ops.iter().any(|(_, op)| matches!(op, SpanOp::Attr(_)));
        let open = self.open(f.number, f.payload.len());
        let mut entries = std::mem::take(&mut self.inner);
        entries.clear();
        let mut runs = Runs::new(f.payload);
        for g in wire::raw_fields(f.payload) {
            if g.number == name && new_name.is_some() {
                runs.cut(&mut self.out, &g);
            } else if g.number == attributes && has_attributes {
                runs.cut(&mut self.out, &g);
                entries.push(Entry::original(g));
            } else {
                runs.keep(&g);
            }
        }
        runs.finish(&mut self.out);
        if let Some(new_name) = new_name {
            self.bytes_field(name, new_name.as_bytes());
        }
        if has_attributes {
            let attr_ops = ops.iter().filter_map(|(_, op)| match op {
                SpanOp::Attr(op) => Some(op),
                _ => None,
            });
            self.attributes(attributes, &mut entries, attr_ops);
        }
        self.inner = entries;
        self.close(open);
    }

    /// Writes attribute list `number`, whose original `KeyValue`s are in `entries`, after
    /// `ops`, with `attributes::set` / `attributes::remove` semantics: set replaces the value
    /// of the first attribute with the key or appends one, remove removes every attribute with
    /// the key. O(n) for short lists, O(n log n) for long ones, n being ops plus attributes.
    fn attributes(
        &mut self,
        number: u32,
        entries: &mut Vec<Entry<'a>>,
        ops: impl Iterator<Item = &'a AttrOp>,
    ) {
        let mut index = (entries.len() > SCAN_AT_MOST).then(|| KeyIndex::new(entries));
        for op in ops {
            let key = op.key.as_bytes();
            let value = op.value.map(|range| self.value(range));
            if let Some(index) = index.as_mut() {
                match value {
                    Some(value) => match index.first_last.get(key) {
                        Some(&(first, _)) => entries[first].value = Some(value),
                        None => {
                            entries.push(Entry::new(key, value));
                            index.next.push(NONE);
                            index.link(key, entries.len() - 1);
                        }
                    },
                    None => {
                        if let Some((first, _)) = index.first_last.remove(key) {
                            let mut i = first;
                            while i != NONE {
                                entries[i].removed = true;
                                i = index.next[i];
                            }
                        }
                    }
                }
                continue;
            }
            match value {
                Some(value) => match entries
                    .iter_mut()
                    .find(|e| !e.removed && same_key(e.key, key))
                {
                    Some(e) => e.value = Some(value),
                    None => {
                        entries.push(Entry::new(key, value));
                        if entries.len() > SCAN_AT_MOST {
                            index = Some(KeyIndex::new(entries));
                        }
                    }
                },
                None => {
                    for e in entries.iter_mut().filter(|e| same_key(e.key, key)) {
                        e.removed = true;
                    }
                }
            }
        }
        for e in entries.iter().filter(|e| !e.removed) {
            match (e.original, e.value) {
                (Some((field, _)), None) => self.out.extend_from_slice(field),
                (Some((_, body)), Some(value)) => {
                    // The original's other fields (`key_strindex`, unknown ones) stay; every
                    // occurrence of `value` goes, since prost would merge them.
                    let open = self.open(number, body.len() + value.len());
                    let mut runs = Runs::new(body);
                    for g in wire::raw_fields(body) {
                        if g.number == 2 {
                            runs.cut(&mut self.out, &g);
                        } else {
                            runs.keep(&g);
                        }
                    }
                    runs.finish(&mut self.out);
                    self.bytes_field(2, value);
                    self.close(open);
                }
                (None, value) => {
                    let value = value.unwrap_or_default();
                    let key = e.key.len();
                    let len = 2
                        + encoded_len_varint(key as u64)
                        + key
                        + encoded_len_varint(value.len() as u64)
                        + value.len();
                    encode_key(number, WireType::LengthDelimited, &mut self.out);
                    encode_varint(len as u64, &mut self.out);
                    self.bytes_field(1, e.key);
                    self.bytes_field(2, value);
                }
            }
        }
    }
}

pub use super::edit_metrics::apply_metrics;

#[cfg(test)]
#[path = "edit_logs_tests.rs"]
mod logs_tests;
#[cfg(test)]
#[path = "edit_oracle.rs"]
mod oracle;
#[cfg(test)]
#[path = "edit_oracle_logs.rs"]
mod oracle_logs;
#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
