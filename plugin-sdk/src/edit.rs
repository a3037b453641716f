//! Edits: what a plugin returns instead of a whole new batch, and how they are checked and
//! applied. The host runs [`prepare`] and [`apply`] on its own copy of the batch; the native
//! test harness runs the same code, so a plugin tested natively behaves the same in the
//! collector.

use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Status, TracesData, status};
use prost::Message;

use crate::attributes;
use crate::value::Value;

/// What an attribute edit applies to. Indices count in batch order (see the WIT `target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The n-th resource of the batch.
    Resource(u32),
    /// The n-th instrumentation scope of the batch, counted across resources.
    Scope(u32),
    /// The n-th span of the batch, counted across resources and scopes.
    Span(u32),
    /// An event of a span: (span, event).
    Event(u32, u32),
    /// A link of a span: (span, link).
    Link(u32, u32),
}

/// A span status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    /// Unset.
    Unset,
    /// Ok.
    Ok,
    /// Error.
    Error,
}

impl StatusCode {
    fn to_otlp(self) -> i32 {
        match self {
            StatusCode::Unset => status::StatusCode::Unset as i32,
            StatusCode::Ok => status::StatusCode::Ok as i32,
            StatusCode::Error => status::StatusCode::Error as i32,
        }
    }
}

/// One change to a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Insert or replace an attribute.
    SetAttribute {
        /// Where.
        target: Target,
        /// The attribute key.
        key: String,
        /// The new value.
        value: Value,
    },
    /// Remove an attribute.
    RemoveAttribute {
        /// Where.
        target: Target,
        /// The attribute key.
        key: String,
    },
    /// Rename a span.
    SetSpanName {
        /// The span index.
        span: u32,
        /// The new name.
        name: String,
    },
    /// Rename an event.
    SetEventName {
        /// The span index.
        span: u32,
        /// The event's position in the span.
        event: u32,
        /// The new name.
        name: String,
    },
    /// Set a span's status.
    SetStatus {
        /// The span index.
        span: u32,
        /// The status code.
        code: StatusCode,
        /// The status message.
        message: String,
    },
    /// Remove a span from the batch.
    DropSpan {
        /// The span index.
        span: u32,
    },
}

/// A plugin's answer for one batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Nothing changed.
    Unchanged,
    /// Apply these edits in order.
    Edits(Vec<Edit>),
    /// Replace the batch with this `TracesData` (protobuf).
    Replace(Vec<u8>),
}

/// An edit that passed every check, ready to apply.
#[derive(Debug)]
pub struct Checked {
    edits: Vec<Ready>,
    drops: usize,
}

#[derive(Debug)]
enum Ready {
    Set(Place, String, AnyValue),
    Remove(Place, String),
    SpanName(Pos, String),
    EventName(Pos, usize, String),
    Status(Pos, i32, String),
    Drop(Pos),
}

#[derive(Debug, Clone, Copy)]
struct Pos {
    resource: usize,
    scope: usize,
    span: usize,
}

#[derive(Debug, Clone, Copy)]
enum Place {
    Resource(usize),
    Scope(usize, usize),
    Span(Pos),
    Event(Pos, usize),
    Link(Pos, usize),
}

/// Positions of scopes and spans by batch index, built only when an edit needs them.
#[derive(Default)]
struct Index {
    scopes: Option<Vec<(usize, usize)>>,
    spans: Option<Vec<Pos>>,
}

impl Index {
    fn scope(&mut self, data: &[ResourceSpans], i: u32) -> Result<(usize, usize), String> {
        let scopes = self.scopes.get_or_insert_with(|| {
            data.iter()
                .enumerate()
                .flat_map(|(r, rs)| (0..rs.scope_spans.len()).map(move |s| (r, s)))
                .collect()
        });
        scopes.get(i as usize).copied().ok_or_else(|| {
            format!(
                "scope index {i} is out of range (the batch has {})",
                scopes.len()
            )
        })
    }

    fn span(&mut self, data: &[ResourceSpans], i: u32) -> Result<Pos, String> {
        let spans = self.spans.get_or_insert_with(|| {
            let mut v = Vec::new();
            for (r, rs) in data.iter().enumerate() {
                for (s, ss) in rs.scope_spans.iter().enumerate() {
                    v.extend((0..ss.spans.len()).map(|p| Pos {
                        resource: r,
                        scope: s,
                        span: p,
                    }));
                }
            }
            v
        });
        spans.get(i as usize).copied().ok_or_else(|| {
            format!(
                "span index {i} is out of range (the batch has {})",
                spans.len()
            )
        })
    }
}

fn span_at(data: &[ResourceSpans], p: Pos) -> &opentelemetry_proto::tonic::trace::v1::Span {
    &data[p.resource].scope_spans[p.scope].spans[p.span]
}

/// Checks every edit against `data` (indices in range, encoded values decodable) without
/// changing anything, so a bad answer leaves the batch untouched.
pub fn prepare(data: &[ResourceSpans], edits: Vec<Edit>) -> Result<Checked, String> {
    let mut index = Index::default();
    let mut ready = Vec::with_capacity(edits.len());
    let mut drops = 0;
    for edit in edits {
        let r = match edit {
            Edit::SetAttribute { target, key, value } => Ready::Set(
                resolve(data, &mut index, target)?,
                key,
                value.into_any_value(),
            ),
            Edit::RemoveAttribute { target, key } => {
                Ready::Remove(resolve(data, &mut index, target)?, key)
            }
            Edit::SetSpanName { span, name } => Ready::SpanName(index.span(data, span)?, name),
            Edit::SetEventName { span, event, name } => {
                let p = index.span(data, span)?;
                Ready::EventName(
                    p,
                    item(span_at(data, p).events.len(), event, "event", span)?,
                    name,
                )
            }
            Edit::SetStatus {
                span,
                code,
                message,
            } => Ready::Status(index.span(data, span)?, code.to_otlp(), message),
            Edit::DropSpan { span } => {
                drops += 1;
                Ready::Drop(index.span(data, span)?)
            }
        };
        ready.push(r);
    }
    Ok(Checked {
        edits: ready,
        drops,
    })
}

fn item(count: usize, i: u32, what: &str, span: u32) -> Result<usize, String> {
    if (i as usize) < count {
        Ok(i as usize)
    } else {
        Err(format!(
            "{what} index {i} of span {span} is out of range (the span has {count})"
        ))
    }
}

fn resolve(data: &[ResourceSpans], index: &mut Index, t: Target) -> Result<Place, String> {
    Ok(match t {
        Target::Resource(r) => {
            if (r as usize) >= data.len() {
                return Err(format!(
                    "resource index {r} is out of range (the batch has {})",
                    data.len()
                ));
            }
            Place::Resource(r as usize)
        }
        Target::Scope(s) => {
            let (r, s) = index.scope(data, s)?;
            Place::Scope(r, s)
        }
        Target::Span(s) => Place::Span(index.span(data, s)?),
        Target::Event(s, e) => {
            let p = index.span(data, s)?;
            Place::Event(p, item(span_at(data, p).events.len(), e, "event", s)?)
        }
        Target::Link(s, l) => {
            let p = index.span(data, s)?;
            Place::Link(p, item(span_at(data, p).links.len(), l, "link", s)?)
        }
    })
}

impl Checked {
    /// How many edits there are.
    pub fn len(&self) -> usize {
        self.edits.len()
    }

    /// True when there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }
}

/// Applies checked edits to the batch they were checked against. Dropped spans are removed
/// last (indices refer to the batch as the plugin saw it), and scopes and resources left
/// without spans go with them.
pub fn apply(data: &mut Vec<ResourceSpans>, checked: Checked) {
    let mut dropped: Vec<Pos> = Vec::with_capacity(checked.drops);
    for edit in checked.edits {
        match edit {
            Ready::Set(place, key, value) => {
                if let Some(attrs) = attributes_at(data, place) {
                    attributes::set(attrs, &key, value);
                }
            }
            Ready::Remove(place, key) => {
                if let Some(attrs) = attributes_at(data, place) {
                    attributes::remove(attrs, &key);
                }
            }
            Ready::SpanName(p, name) => span_mut(data, p).name = name,
            Ready::EventName(p, e, name) => span_mut(data, p).events[e].name = name,
            Ready::Status(p, code, message) => {
                span_mut(data, p).status = Some(Status { code, message });
            }
            Ready::Drop(p) => dropped.push(p),
        }
    }
    if dropped.is_empty() {
        return;
    }
    // Remove from the back so earlier positions stay valid.
    dropped.sort_by_key(|p| std::cmp::Reverse((p.resource, p.scope, p.span)));
    dropped.dedup_by_key(|p| (p.resource, p.scope, p.span));
    for p in dropped {
        data[p.resource].scope_spans[p.scope].spans.remove(p.span);
    }
    for rs in data.iter_mut() {
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    data.retain(|rs| !rs.scope_spans.is_empty());
}

fn span_mut(
    data: &mut [ResourceSpans],
    p: Pos,
) -> &mut opentelemetry_proto::tonic::trace::v1::Span {
    &mut data[p.resource].scope_spans[p.scope].spans[p.span]
}

fn attributes_at(
    data: &mut [ResourceSpans],
    place: Place,
) -> Option<&mut Vec<opentelemetry_proto::tonic::common::v1::KeyValue>> {
    Some(match place {
        Place::Resource(r) => {
            &mut data[r]
                .resource
                .get_or_insert_with(Default::default)
                .attributes
        }
        Place::Scope(r, s) => {
            &mut data[r].scope_spans[s]
                .scope
                .get_or_insert_with(Default::default)
                .attributes
        }
        Place::Span(p) => &mut span_mut(data, p).attributes,
        Place::Event(p, e) => &mut span_mut(data, p).events[e].attributes,
        Place::Link(p, l) => &mut span_mut(data, p).links[l].attributes,
    })
}

/// Decodes a replacement batch (`TracesData`, protobuf); prost checks UTF-8 and structure.
pub fn decode_replacement(bytes: &[u8]) -> Result<Vec<ResourceSpans>, String> {
    TracesData::decode(bytes)
        .map(|t| t.resource_spans)
        .map_err(|e| format!("the replacement batch is not valid OTLP protobuf: {e}"))
}

/// Encodes a batch the way the host hands it to a plugin.
pub fn encode_batch(data: &[ResourceSpans]) -> Vec<u8> {
    let len = prost::encoding::message::encoded_len_repeated(1, data);
    let mut buf = Vec::with_capacity(len);
    prost::encoding::message::encode_repeated(1, data, &mut buf);
    buf
}
