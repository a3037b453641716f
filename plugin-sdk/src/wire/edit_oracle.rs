//! The decoded reference for `wasmcol_plugin_sdk::wire::edit::apply`: the same edits checked
//! and applied to the decoded batch (`Vec<ResourceSpans>`), written plainly. The differential
//! tests (`edit_tests.rs`), the `wire_edit` fuzz target and the `plugin_edits` bench hold the
//! byte-level applier to it; nothing else runs it.
//!
//! It names the SDK by its crate name, so the fuzz target and the bench compile this file as it
//! is (`#[path]`).

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, Status, status};
use wasmcol_plugin_sdk::edit::{Edit, StatusCode, Target};

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

fn span_at(data: &[ResourceSpans], p: Pos) -> &Span {
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
            Edit::SetBody { .. } => return Err("set-body does not apply to a trace batch".into()),
            Edit::DropLogRecord { .. } => {
                return Err("drop-log-record does not apply to a trace batch".into());
            }
            Edit::DropDataPoint { .. } => {
                return Err("drop-data-point does not apply to a trace batch".into());
            }
            Edit::DropMetric { .. } => {
                return Err("drop-metric does not apply to a trace batch".into());
            }
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
            } => Ready::Status(index.span(data, span)?, otlp_code(code), message),
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
        Target::LogRecord(_) | Target::DataPoint(_) => {
            return Err(format!("target {t:?} does not apply to a trace batch"));
        }
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

/// Applies checked edits to the batch they were checked against. Dropped spans are removed
/// last (indices refer to the batch as the plugin saw it), and scopes and resources left
/// without spans go with them.
pub fn apply(data: &mut Vec<ResourceSpans>, checked: Checked) {
    let mut dropped: Vec<Pos> = Vec::with_capacity(checked.drops);
    for edit in checked.edits {
        match edit {
            Ready::Set(place, key, value) => {
                if let Some(attrs) = attributes_at(data, place) {
                    set(attrs, &key, value);
                }
            }
            Ready::Remove(place, key) => {
                if let Some(attrs) = attributes_at(data, place) {
                    remove(attrs, &key);
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

fn span_mut(data: &mut [ResourceSpans], p: Pos) -> &mut Span {
    &mut data[p.resource].scope_spans[p.scope].spans[p.span]
}

fn attributes_at(data: &mut [ResourceSpans], place: Place) -> Option<&mut Vec<KeyValue>> {
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

fn otlp_code(code: StatusCode) -> i32 {
    match code {
        StatusCode::Unset => status::StatusCode::Unset as i32,
        StatusCode::Ok => status::StatusCode::Ok as i32,
        StatusCode::Error => status::StatusCode::Error as i32,
    }
}

/// Sets `key` to `value`: replaces the first attribute with that key, or appends one.
fn set(attributes: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match attributes.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = Some(value),
        None => attributes.push(KeyValue {
            key: key.to_string(),
            value: Some(value),
            ..Default::default()
        }),
    }
}

/// Removes every attribute named `key`.
fn remove(attributes: &mut Vec<KeyValue>, key: &str) {
    attributes.retain(|kv| kv.key != key);
}
