//! `otlp_proto` messages cut straight from the protobuf bytes a batch was received as.
//!
//! Nothing is decoded. The batch is indexed once: each resource, scope and span as the byte
//! range it occupies, and, when partitioning, each trace as a chain through the span index.
//! A message is then written by copying those ranges and writing only the keys and lengths
//! around them, in the order prost writes the fields: `ResourceSpans` = the resource's bytes,
//! its `ScopeSpans` (the scope's bytes, the spans' bytes, `schema_url`), `schema_url`. Every
//! message of a batch goes into one buffer, and keys are slices of the received bytes, so
//! the allocations per batch do not grow with its spans but with its resources and scopes.
//!
//! The cuts are the decoded path's ([`Splitter::split_for`]): the same topics, keys, packing
//! and limit, measured on the bytes as received. When those bytes are encoded the way prost
//! encodes (as the OpenTelemetry SDKs do), the messages are byte for byte the ones the decoded
//! path writes; otherwise they hold the same spans, and unknown fields travel on (as with the
//! exporters that forward the bytes whole).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::messages::{NESTED_HEADER, OutMessage, Split, Splitter};
use crate::otlp::wire::{TracesView, raw_fields, resource_string_attribute};
use crate::pipeline::Metadata;

/// Not linked (yet) to a next span of its trace.
const END: u32 = u32::MAX;

/// A `Resource` of the batch.
struct ResourceEntry<'a> {
    /// Which received part holds it (trace ids are sliced from it for the keys).
    part: usize,
    /// The `Resource` message body; `None` when the field is absent.
    body: Option<Cow<'a, [u8]>>,
    schema_url: &'a [u8],
    /// Encoded length of `resource` and `schema_url` as fields of `ResourceSpans`.
    fields_len: usize,
}

/// A `ScopeSpans` of the batch.
struct ScopeEntry<'a> {
    resource: u32,
    /// The `InstrumentationScope` message body; `None` when the field is absent.
    body: Option<Cow<'a, [u8]>>,
    schema_url: &'a [u8],
    /// Encoded length of `scope` and `schema_url` as fields of `ScopeSpans`.
    fields_len: usize,
    /// Its spans in [`Index::spans`].
    spans: Range<u32>,
}

/// A span of the batch: its `Span` message body and its `ScopeSpans`.
struct SpanEntry<'a> {
    scope: u32,
    body: &'a [u8],
}

/// The batch as byte ranges, in order.
struct Index<'a> {
    parts: Vec<&'a Bytes>,
    resources: Vec<ResourceEntry<'a>>,
    /// For each resource, its scopes in `scopes`.
    resource_scopes: Vec<Range<u32>>,
    scopes: Vec<ScopeEntry<'a>>,
    spans: Vec<SpanEntry<'a>>,
    /// The largest resource header plus the largest scope header.
    max_headers: usize,
}

/// Encoded length of a length-delimited field with a one-byte key and a `len`-byte value.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Encoded length of an optional message field (absent: nothing; empty: key and length).
fn message_len(body: &Option<Cow<'_, [u8]>>) -> usize {
    body.as_ref().map_or(0, |b| field_len(b.len()))
}

/// Encoded length of a string field, which prost leaves out when empty.
fn string_len(s: &[u8]) -> usize {
    if s.is_empty() { 0 } else { field_len(s.len()) }
}

fn put_field(tag: u32, value: &[u8], buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.extend_from_slice(value);
}

/// A span's `trace_id`: the last occurrence wins, as in decoding.
fn trace_id(span: &[u8]) -> &[u8] {
    raw_fields(span)
        .filter(|f| f.number == 1)
        .last()
        .map_or(&[], |f| f.payload)
}

impl<'a> Index<'a> {
    fn new(parts: impl Iterator<Item = &'a Bytes>, spans: usize) -> Self {
        let mut index = Index {
            parts: Vec::new(),
            resources: Vec::new(),
            resource_scopes: Vec::new(),
            scopes: Vec::new(),
            spans: Vec::with_capacity(spans),
            max_headers: 0,
        };
        for part in parts {
            index.parts.push(part);
            for rs in TracesView::new(part).resource_spans() {
                let resource = index.resources.len() as u32;
                let body = rs.resource();
                let schema_url = rs.schema_url().as_bytes();
                index.resources.push(ResourceEntry {
                    part: index.parts.len() - 1,
                    fields_len: message_len(&body) + string_len(schema_url),
                    body,
                    schema_url,
                });
                let first_scope = index.scopes.len() as u32;
                for ss in rs.scope_spans() {
                    let first_span = index.spans.len() as u32;
                    let scope = index.scopes.len() as u32;
                    // `spans` is field 2 of `ScopeSpans`, length-delimited once checked.
                    index
                        .spans
                        .extend(raw_fields(ss.encoded()).filter(|f| f.number == 2).map(|f| {
                            SpanEntry {
                                scope,
                                body: f.payload,
                            }
                        }));
                    let body = ss.scope();
                    let schema_url = ss.schema_url().as_bytes();
                    index.scopes.push(ScopeEntry {
                        resource,
                        fields_len: message_len(&body) + string_len(schema_url),
                        body,
                        schema_url,
                        spans: first_span..index.spans.len() as u32,
                    });
                }
                index
                    .resource_scopes
                    .push(first_scope..index.scopes.len() as u32);
            }
        }
        let most = |lens: &mut dyn Iterator<Item = usize>| lens.max().unwrap_or(0) + NESTED_HEADER;
        index.max_headers = most(&mut index.resources.iter().map(|r| r.fields_len))
            + most(&mut index.scopes.iter().map(|s| s.fields_len));
        index
    }

    fn resource_of(&self, scope: u32) -> u32 {
        self.scopes[scope as usize].resource
    }

    /// What a new `ResourceSpans` entry costs besides its scopes, at most.
    fn resource_header(&self, resource: u32) -> usize {
        NESTED_HEADER + self.resources[resource as usize].fields_len
    }

    /// What a new `ScopeSpans` entry costs besides its spans, at most.
    fn scope_header(&self, scope: u32) -> usize {
        NESTED_HEADER + self.scopes[scope as usize].fields_len
    }

    /// The spans of `resources`, in order.
    fn spans_of<'r>(&'r self, resources: &'r [u32]) -> impl Iterator<Item = u32> + 'r {
        resources.iter().flat_map(move |&r| {
            let scopes = &self.scopes[self.resource_scopes[r as usize].start as usize
                ..self.resource_scopes[r as usize].end as usize];
            scopes.iter().flat_map(|s| s.spans.clone())
        })
    }
}

/// The spans of one message so far, grouped in parts (a run of spans of one `ScopeSpans`),
/// as the decoded path packs them. Reused from message to message.
#[derive(Default)]
struct Packer {
    /// The closed parts: scope, range in `picked`, and the encoded length of their spans.
    chunk: Vec<(u32, Range<usize>, usize)>,
    /// Indexes of the spans in the message, in order; the parts are ranges of it.
    picked: Vec<u32>,
    /// The scope of the open part, whose spans are `picked[open_start..]`.
    open: Option<u32>,
    open_start: usize,
    open_bytes: usize,
    /// Upper bound of the message's encoded length so far.
    size: usize,
}

/// Where messages go while a batch is cut: their bytes into one buffer.
#[derive(Default)]
struct Written {
    buf: Vec<u8>,
    messages: Vec<Pending>,
}

/// A message written, its value a range of [`Written::buf`].
struct Pending {
    topic: Arc<str>,
    key: Option<Bytes>,
    value: Range<usize>,
    spans: u64,
}

/// Where the spans being packed go.
struct Target<'t> {
    topic: &'t Arc<str>,
    key: Option<Bytes>,
    limit: usize,
}

impl Packer {
    /// Closes the open part (keeping it if it has spans); the next span starts a new one.
    fn close(&mut self) {
        if let Some(scope) = self.open
            && self.picked.len() > self.open_start
        {
            self.chunk
                .push((scope, self.open_start..self.picked.len(), self.open_bytes));
        }
        self.open_start = self.picked.len();
        self.open_bytes = 0;
    }

    /// Adds span `s`, first writing out the message when `s` does not fit in it.
    fn push(
        &mut self,
        s: u32,
        index: &Index<'_>,
        splitter: &Splitter,
        to: &Target<'_>,
        out: &mut Written,
        split: &mut Split,
    ) {
        let span = &index.spans[s as usize];
        if self.open != Some(span.scope) {
            self.close();
            self.open = Some(span.scope);
        }
        let len = field_len(span.body.len());
        let resource = index.resource_of(span.scope);
        let fresh = index.resource_header(resource) + index.scope_header(span.scope);
        let mut add = len
            + if self.picked.len() > self.open_start {
                0
            } else if self
                .chunk
                .last()
                .is_some_and(|(scope, ..)| index.resource_of(*scope) == resource)
            {
                index.scope_header(span.scope)
            } else {
                fresh
            };
        if self.size + add > to.limit && !self.picked.is_empty() {
            self.close();
            self.write(index, to, out);
            add = len + fresh;
        }
        if add > to.limit {
            splitter.reject(to.topic, split);
            return;
        }
        self.picked.push(s);
        self.open_bytes += len;
        self.size += add;
    }

    /// Writes out what is left at the end of a trace (or topic).
    fn finish(&mut self, index: &Index<'_>, to: &Target<'_>, out: &mut Written) {
        self.close();
        self.write(index, to, out);
        self.open = None;
    }

    /// Writes the closed parts as one `ExportTraceServiceRequest` and starts a new message.
    fn write(&mut self, index: &Index<'_>, to: &Target<'_>, out: &mut Written) {
        self.size = 0;
        if self.chunk.is_empty() {
            return;
        }
        let buf = &mut out.buf;
        let start = buf.len();
        let body_len = |scope: u32, spans: usize| index.scopes[scope as usize].fields_len + spans;
        let mut i = 0;
        while i < self.chunk.len() {
            // Consecutive parts of one resource share its `ResourceSpans`.
            let r = index.resource_of(self.chunk[i].0);
            let j = i + self.chunk[i..]
                .iter()
                .take_while(|(scope, ..)| index.resource_of(*scope) == r)
                .count();
            let resource = &index.resources[r as usize];
            let rs_len = resource.fields_len
                + self.chunk[i..j]
                    .iter()
                    .map(|(scope, _, spans)| field_len(body_len(*scope, *spans)))
                    .sum::<usize>();
            encode_key(1, WireType::LengthDelimited, buf);
            encode_varint(rs_len as u64, buf);
            if let Some(body) = &resource.body {
                put_field(1, body, buf);
            }
            for (scope, spans, spans_len) in &self.chunk[i..j] {
                let entry = &index.scopes[*scope as usize];
                encode_key(2, WireType::LengthDelimited, buf);
                encode_varint(body_len(*scope, *spans_len) as u64, buf);
                if let Some(body) = &entry.body {
                    put_field(1, body, buf);
                }
                for &s in &self.picked[spans.clone()] {
                    put_field(2, index.spans[s as usize].body, buf);
                }
                if !entry.schema_url.is_empty() {
                    put_field(3, entry.schema_url, buf);
                }
            }
            if !resource.schema_url.is_empty() {
                put_field(3, resource.schema_url, buf);
            }
            i = j;
        }
        out.messages.push(Pending {
            topic: to.topic.clone(),
            key: to.key.clone(),
            value: start..buf.len(),
            spans: self.picked.len() as u64,
        });
        self.chunk.clear();
        self.picked.clear();
        self.open_start = 0;
    }
}

/// A trace of a topic: its id (and the part it was read from) and its spans, chained through
/// `Chains::next`.
struct Trace<'a> {
    id: &'a [u8],
    part: usize,
    first: u32,
    last: u32,
}

impl Splitter {
    /// [`Splitter::split_batch`] for a batch of checked protobuf `parts` holding `spans`
    /// spans, with request `metadata`.
    pub(super) fn split_encoded<'a>(
        &self,
        parts: impl Iterator<Item = &'a Bytes>,
        spans: usize,
        metadata: &Metadata,
    ) -> Split {
        let index = Index::new(parts, spans);
        let mut split = Split::default();
        let all = || -> Vec<u32> { (0..index.resources.len() as u32).collect() };
        let groups = match self.topic_from_metadata(metadata) {
            Some(Ok(topic)) => vec![(topic, all())],
            Some(Err(refused)) => {
                split.topic_not_allowed = Some(refused);
                vec![(self.topic.clone(), all())]
            }
            None if self.topic_from_attribute.is_empty() => vec![(self.topic.clone(), all())],
            None => self.by_topic_encoded(&index),
        };
        let mut out = Written::default();
        let mut packer = Packer::default();
        // The span after each in its trace; read only up to the trace's last span, so it
        // needs no reset between topics.
        let mut next: Vec<u32> = Vec::new();
        let mut traces: Vec<Trace<'_>> = Vec::new();
        let mut by_id: HashMap<&[u8], u32> = HashMap::new();
        if self.partition_traces_by_id {
            next.resize(index.spans.len(), END);
        }
        for (topic, resources) in &groups {
            if !self.partition_traces_by_id {
                let to = Target {
                    topic,
                    key: None,
                    limit: self.limit(None),
                };
                let spans: usize = index
                    .spans_of(resources)
                    .map(|s| field_len(index.spans[s as usize].body.len()))
                    .sum();
                out.buf.reserve(spans + resources.len() * index.max_headers);
                for s in index.spans_of(resources) {
                    packer.push(s, &index, self, &to, &mut out, &mut split);
                }
                packer.finish(&index, &to, &mut out);
                continue;
            }
            // Chain each trace's spans, traces in order of first appearance.
            traces.clear();
            by_id.clear();
            let mut spans = 0;
            for s in index.spans_of(resources) {
                let span = &index.spans[s as usize];
                spans += field_len(span.body.len());
                let id = trace_id(span.body);
                let t = *by_id.entry(id).or_insert_with(|| {
                    let part = index.resources[index.resource_of(span.scope) as usize].part;
                    traces.push(Trace {
                        id,
                        part,
                        first: s,
                        last: s,
                    });
                    traces.len() as u32 - 1
                });
                let trace = &mut traces[t as usize];
                if trace.last != s {
                    next[trace.last as usize] = s;
                    trace.last = s;
                }
            }
            // Each message repeats its resource and scope: room for one of each per trace.
            out.buf.reserve(spans + traces.len() * index.max_headers);
            for trace in &traces {
                let key = index.parts[trace.part].slice_ref(trace.id);
                let to = Target {
                    topic,
                    limit: self.limit(Some(&key)),
                    key: Some(key),
                };
                let mut s = trace.first;
                loop {
                    packer.push(s, &index, self, &to, &mut out, &mut split);
                    if s == trace.last {
                        break;
                    }
                    s = next[s as usize];
                }
                packer.finish(&index, &to, &mut out);
            }
        }
        let buf = Bytes::from(out.buf);
        split.messages = out
            .messages
            .into_iter()
            .map(|m| OutMessage {
                topic: m.topic,
                key: m.key,
                value: buf.slice(m.value),
                spans: m.spans,
            })
            .collect();
        split
    }

    /// Groups resources by the topic `topic_from_attribute` names (or the default topic), in
    /// order of first appearance, as `by_topic` does for decoded spans.
    fn by_topic_encoded(&self, index: &Index<'_>) -> Vec<(Arc<str>, Vec<u32>)> {
        let mut groups: Vec<(Arc<str>, Vec<u32>)> = Vec::new();
        for (r, resource) in index.resources.iter().enumerate() {
            let named = resource
                .body
                .as_deref()
                .and_then(|body| resource_string_attribute(body, &self.topic_from_attribute))
                .filter(|t| !t.is_empty())
                .unwrap_or(&self.topic);
            match groups.iter_mut().find(|(t, _)| **t == *named) {
                Some((_, g)) => g.push(r as u32),
                None => groups.push((Arc::from(named), vec![r as u32])),
            }
        }
        groups
    }
}
