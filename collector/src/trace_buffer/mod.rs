//! The trace buffer: spans held by trace ID until their trace is decided.
//!
//! Spans are kept protobuf-encoded, as the `spans` entries of an OTLP `ScopeSpans`, grouped
//! by where they came from (resource and scope, encoded once per incoming batch and shared by
//! every trace with spans from it). Encoded spans take roughly their wire size, far less than
//! decoded ones (every attribute a separate allocation), and a batch for the policy plugin is
//! then assembled by copying bytes. Only kept traces are decoded again.
//!
//! A trace is *waiting* until it is due: `decision_wait` after its first span, earlier when
//! its root span has ended and it has been quiet for the early-decision period, or at once
//! when it is evicted (the buffer holds `num_traces` or its byte budget) or passes the
//! per-trace caps. Due traces are *taken* for a decision; spans arriving meanwhile join them.
//! Once decided, a trace leaves the buffer and its ID goes to the decision caches, which
//! route late spans: kept traces' spans are forwarded at once, dropped traces' are dropped.
//!
//! Shared by the `tail_sampling` processor (a decision keeps or drops a trace) and the
//! `trace_analysis` connector (a due trace is analysed).

pub mod cache;

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use wasmcol_plugin_sdk::policy::{SpanFacts, TraceSummary};

use crate::keyed_hash::KeyedHash;
use crate::otlp::wire;
use crate::otlp::wire::write_bytes_field;
use cache::{ExactCache, Kept, SampledCache};

/// A trace ID, the 16 bytes read big-endian.
pub type TraceId = u128;

/// Fixed cost charged per buffered trace on top of its spans: the map entry, the trace's
/// bookkeeping and its place in the arrival queue.
const TRACE_OVERHEAD: usize = size_of::<(TraceId, Trace)>() + 2 * size_of::<(TraceId, Instant)>();

/// Why a trace became due before its `decision_wait` ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// The buffer held `num_traces` traces.
    NumTraces,
    /// The buffer reached its byte budget.
    Bytes,
    /// The trace passed `max_spans_per_trace` or `max_bytes_per_trace`.
    TraceCap,
}

impl Eviction {
    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Eviction::NumTraces => "num_traces",
            Eviction::Bytes => "buffer_bytes",
            Eviction::TraceCap => "trace_cap",
        }
    }
}

/// Limits and timings of the buffer.
#[derive(Debug, Clone)]
pub struct BufferLimits {
    /// Time from a trace's first span to its decision.
    pub decision_wait: Duration,
    /// Most traces waiting at once.
    pub num_traces: usize,
    /// Byte budget of the whole buffer.
    pub max_bytes: usize,
    /// Per-trace caps: past either, the trace is decided at once.
    pub max_spans_per_trace: u32,
    /// See `max_spans_per_trace`.
    pub max_bytes_per_trace: usize,
    /// Decide a trace whose root span arrived once it has been quiet this long.
    pub early_quiet: Option<Duration>,
    /// Expected traces in the buffer, to size the map up front.
    pub expected_traces: usize,
}

/// A resource and scope, encoded once and shared by every trace with spans from them.
pub struct Origin {
    /// `ResourceSpans` fields `resource` and `schema_url`, encoded.
    resource: Vec<u8>,
    /// `ScopeSpans` fields `scope` and `schema_url`, encoded.
    scope: Vec<u8>,
    /// The buffer's count of bytes held by origins, kept exact by `Drop`.
    live: Arc<AtomicUsize>,
}

impl Origin {
    /// From checked protobuf: the fields copied as they are.
    fn from_wire(
        rs: &wire::ResourceSpansView<'_>,
        ss: &wire::ScopeSpansView<'_>,
        live: &Arc<AtomicUsize>,
    ) -> Arc<Self> {
        let mut resource = Vec::new();
        if let Some(r) = rs.resource() {
            write_bytes_field(1, &r, &mut resource);
        }
        if !rs.schema_url().is_empty() {
            write_bytes_field(3, rs.schema_url().as_bytes(), &mut resource);
        }
        let mut scope = Vec::new();
        if let Some(s) = ss.scope() {
            write_bytes_field(1, &s, &mut scope);
        }
        if !ss.schema_url().is_empty() {
            write_bytes_field(3, ss.schema_url().as_bytes(), &mut scope);
        }
        Self::with(resource, scope, live)
    }

    fn with(resource: Vec<u8>, scope: Vec<u8>, live: &Arc<AtomicUsize>) -> Arc<Self> {
        live.fetch_add(Self::cost(&resource, &scope), Ordering::Relaxed);
        Arc::new(Self {
            resource,
            scope,
            live: live.clone(),
        })
    }

    /// Length of one `ResourceSpans` holding `spans` (`ScopeSpans.spans` entries) under this
    /// origin, and of its inner `ScopeSpans`.
    fn encoded_lens(&self, spans: &[u8]) -> (usize, usize) {
        let scope_len = self.scope.len() + spans.len();
        let rs_len = self.resource.len() + 1 + encoded_len_varint(scope_len as u64) + scope_len;
        (rs_len, scope_len)
    }

    fn write_resource_spans(&self, spans: &[u8], scope_len: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.resource);
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(scope_len as u64, out);
        out.extend_from_slice(&self.scope);
        out.extend_from_slice(spans);
    }

    /// Writes `spans` (`ScopeSpans.spans` entries) under this origin as one
    /// `TracesData.resource_spans` entry (field 1).
    pub fn write_traces_data_entry(&self, spans: &[u8], out: &mut Vec<u8>) {
        let (rs_len, scope_len) = self.encoded_lens(spans);
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(rs_len as u64, out);
        self.write_resource_spans(spans, scope_len, out);
    }

    /// The `Resource` message body, if the spans came with one (read in place).
    pub fn resource(&self) -> Option<&[u8]> {
        wasmcol_plugin_sdk::wire::Fields::new(&self.resource).find_map(|field| match field {
            (1, wasmcol_plugin_sdk::wire::FieldValue::Len(body)) => Some(body),
            _ => None,
        })
    }

    fn cost(resource: &[u8], scope: &[u8]) -> usize {
        size_of::<Self>() + 2 * size_of::<usize>() + resource.len() + scope.len()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.live
            .fetch_sub(Self::cost(&self.resource, &self.scope), Ordering::Relaxed);
    }
}

/// Size of a `ScopeSpans.spans` entry whose span body is `len` bytes.
fn framed_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Spans of one trace from one origin: `ScopeSpans.spans` entries, encoded back to back.
pub struct Group {
    origin: Arc<Origin>,
    spans: Vec<u8>,
    count: u32,
}

impl Group {
    /// Spans in the group.
    pub fn span_count(&self) -> u64 {
        u64::from(self.count)
    }

    /// The group's spans: `ScopeSpans.spans` entries (field 2), encoded back to back.
    pub fn span_entries(&self) -> &[u8] {
        &self.spans
    }

    /// Writes the group as one `TracesData.resource_spans` entry (field 1).
    pub fn write_traces_data_entry(&self, out: &mut Vec<u8>) {
        self.origin.write_traces_data_entry(&self.spans, out);
    }

    /// Decodes the group back into OTLP.
    pub fn decode(&self) -> Result<ResourceSpans, prost::DecodeError> {
        let (rs_len, scope_len) = self.origin.encoded_lens(&self.spans);
        let mut buf = Vec::with_capacity(rs_len);
        self.origin
            .write_resource_spans(&self.spans, scope_len, &mut buf);
        ResourceSpans::decode(&buf[..])
    }

    /// The origin, to merge groups of several traces that share it.
    pub fn origin(&self) -> &Arc<Origin> {
        &self.origin
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Buffered, not due yet.
    Waiting,
    /// Due at once (evicted or over a cap), queued in `urgent`.
    Urgent,
    /// Taken for a decision; spans that arrive meanwhile wait in `groups`.
    Deciding,
}

/// One buffered trace.
struct Trace {
    groups: Vec<Group>,
    summary: TraceSummary,
    first_seen: Instant,
    last_seen: Instant,
    /// Bytes charged to the budget for this trace.
    bytes: usize,
    state: State,
}

/// A trace taken for a decision.
pub struct DueTrace {
    /// Its ID.
    pub id: TraceId,
    /// What the host gathered about it.
    pub summary: TraceSummary,
    /// Its spans.
    pub groups: Vec<Group>,
    /// When its first span arrived.
    pub first_seen: Instant,
}

/// Where [`Buffer::route`] sends a span.
enum Route {
    Buffer(TraceId),
    Forward,
    Gone,
}

/// What ingesting one batch produced besides buffered spans.
#[derive(Default)]
pub struct Ingested {
    /// Late spans of kept traces, to forward now.
    pub forward: Vec<ResourceSpans>,
    /// For each span of `forward`, in order, the verdict its trace was kept with (`None` from
    /// a Bloom cache, which remembers membership only).
    pub forward_marks: Vec<Option<Kept>>,
    /// Late spans of kept traces (count).
    pub late_sampled: u64,
    /// Late spans of dropped traces, dropped.
    pub late_dropped: u64,
    /// Traces made due early, by reason.
    pub evictions: Vec<Eviction>,
    /// Spans without a valid 16-byte trace ID, dropped.
    pub invalid: u64,
}

/// The buffer of one `tail_sampling` processor or `trace_analysis` connector.
pub struct Buffer {
    limits: BufferLimits,
    /// Randomly keyed: trace ids come from clients ([`KeyedHash`]).
    traces: HashMap<TraceId, Trace, KeyedHash>,
    /// Arrival order of traces, oldest first, for expiry and eviction. Entries of traces that
    /// left early are skipped when they come up (matched by first-seen time).
    arrivals: VecDeque<(TraceId, Instant)>,
    /// Traces due at once, in the order they became due.
    urgent: VecDeque<TraceId>,
    /// Traces whose root span arrived, for early decisions.
    rooted: VecDeque<(TraceId, Instant)>,
    /// Traces not yet taken for a decision.
    waiting: usize,
    /// Bytes charged for traces (spans and bookkeeping).
    trace_bytes: usize,
    /// Bytes held by origins (exact, maintained by [`Origin`]).
    origin_bytes: Arc<AtomicUsize>,
    sampled: SampledCache<Kept>,
    not_sampled: ExactCache<()>,
}

impl Buffer {
    /// An empty buffer.
    pub fn new(
        limits: BufferLimits,
        sampled: SampledCache<Kept>,
        not_sampled: ExactCache<()>,
    ) -> Self {
        Self {
            traces: HashMap::with_capacity_and_hasher(
                limits.expected_traces.min(limits.num_traces),
                KeyedHash::default(),
            ),
            limits,
            arrivals: VecDeque::new(),
            urgent: VecDeque::new(),
            rooted: VecDeque::new(),
            waiting: 0,
            trace_bytes: 0,
            origin_bytes: Arc::new(AtomicUsize::new(0)),
            sampled,
            not_sampled,
        }
    }

    /// Traces in the buffer (waiting or being decided).
    pub fn trace_count(&self) -> usize {
        self.traces.len()
    }

    /// Bytes the buffer holds: spans, bookkeeping and shared resources/scopes.
    pub fn bytes(&self) -> usize {
        self.trace_bytes + self.origin_bytes.load(Ordering::Relaxed)
    }

    /// Bytes held by the decision caches.
    pub fn cache_bytes(&self) -> usize {
        self.sampled.heap_bytes() + self.not_sampled.heap_bytes()
    }

    /// True when the byte budget is used up even after evicting: new data must be refused
    /// until decisions free memory.
    pub fn is_full(&self) -> bool {
        self.bytes() >= self.limits.max_bytes
    }

    /// Buffers decoded spans: encoded once, then as [`Buffer::ingest_protobuf`] (the receivers
    /// hand on protobuf, so this is the path of stages that decoded the batch before).
    pub fn ingest(
        &mut self,
        batch: &[ResourceSpans],
        now: Instant,
        now_unix_nano: u64,
    ) -> Ingested {
        let mut encoded =
            Vec::with_capacity(prost::encoding::message::encoded_len_repeated(1, batch));
        prost::encoding::message::encode_repeated(1, batch, &mut encoded);
        self.ingest_protobuf([&encoded[..]], now, now_unix_nano)
    }

    /// Buffers the spans of checked protobuf (`ExportTraceServiceRequest`s that
    /// [`wire::validate`] accepted), routes late spans per the decision caches and makes room by
    /// evicting the oldest waiting traces. Spans are copied as they are, never decoded, except
    /// late spans of kept traces, which are forwarded decoded.
    pub fn ingest_protobuf<'a>(
        &mut self,
        requests: impl IntoIterator<Item = &'a [u8]>,
        now: Instant,
        now_unix_nano: u64,
    ) -> Ingested {
        let mut out = Ingested::default();
        let all = requests.into_iter().map(wire::TracesView::new);
        for rs in all.flat_map(|r| r.resource_spans()) {
            let resource = rs.resource();
            let service = resource
                .as_deref()
                .and_then(|r| wire::resource_string_attribute(r, "service.name"));
            let mut forward: Option<ResourceSpans> = None;
            for ss in rs.scope_spans() {
                let mut origin: Option<Arc<Origin>> = None;
                let mut forward_scope: Option<ScopeSpans> = None;
                // A trace's spans mostly come one after another: the bytes of such a run are
                // reserved at its first span rather than the trace's buffer growing span by
                // span.
                let spans: Vec<wire::SpanView<'_>> = ss.spans().collect();
                for (i, &span) in spans.iter().enumerate() {
                    let run = if i > 0 && spans[i - 1].trace_id() == span.trace_id() {
                        0
                    } else {
                        spans[i..]
                            .iter()
                            .take_while(|s| s.trace_id() == span.trace_id())
                            .map(|s| framed_len(s.encoded().len()))
                            .sum()
                    };
                    let key = match self.route(span.trace_id(), now, now_unix_nano, &mut out) {
                        Route::Buffer(key) => key,
                        Route::Forward => {
                            // Rare (late spans of kept traces): decoding is fine here.
                            forward_scope
                                .get_or_insert_with(|| ScopeSpans {
                                    scope: ss
                                        .scope()
                                        .and_then(|s| InstrumentationScope::decode(&s[..]).ok()),
                                    spans: Vec::new(),
                                    schema_url: ss.schema_url().to_string(),
                                })
                                .spans
                                .push(Span::decode(span.encoded()).unwrap_or_default());
                            continue;
                        }
                        Route::Gone => continue,
                    };
                    let origin = origin
                        .get_or_insert_with(|| Origin::from_wire(&rs, &ss, &self.origin_bytes))
                        .clone();
                    let facts = SpanFacts {
                        start_unix_nano: span.start_time_unix_nano(),
                        end_unix_nano: span.end_time_unix_nano(),
                        status_code: span.status_code(),
                        root: span.parent_span_id().is_empty(),
                    };
                    self.add_span(
                        key,
                        span.encoded(),
                        run,
                        &facts,
                        origin,
                        service,
                        now,
                        &mut out,
                    );
                }
                if let Some(fs) = forward_scope {
                    forward
                        .get_or_insert_with(|| ResourceSpans {
                            resource: resource.as_deref().and_then(|r| Resource::decode(r).ok()),
                            scope_spans: Vec::new(),
                            schema_url: rs.schema_url().to_string(),
                        })
                        .scope_spans
                        .push(fs);
                }
            }
            out.forward.extend(forward);
        }
        out
    }

    /// Where a span with `trace_id` goes: into the buffer (its trace made room for if new),
    /// forwarded (late span of a kept trace) or gone (late span of a dropped trace, or an
    /// invalid ID); counted in `out`.
    fn route(
        &mut self,
        trace_id: &[u8],
        now: Instant,
        now_unix_nano: u64,
        out: &mut Ingested,
    ) -> Route {
        let Ok(id) = <[u8; 16]>::try_from(trace_id) else {
            out.invalid += 1;
            return Route::Gone;
        };
        let key = u128::from_be_bytes(id);
        if !self.traces.contains_key(&key) {
            let hit = self.sampled.lookup(key, now);
            if hit.is_hit() {
                out.late_sampled += 1;
                out.forward_marks.push(hit.payload());
                return Route::Forward;
            }
            if self.not_sampled.get(key).is_some() {
                out.late_dropped += 1;
                return Route::Gone;
            }
            self.make_room(&mut out.evictions);
            self.insert_new(key, id, now, now_unix_nano);
        }
        Route::Buffer(key)
    }

    fn insert_new(&mut self, key: TraceId, id: [u8; 16], now: Instant, now_unix_nano: u64) {
        self.traces.insert(
            key,
            Trace {
                groups: Vec::new(),
                summary: TraceSummary::new(id, now_unix_nano),
                first_seen: now,
                last_seen: now,
                bytes: TRACE_OVERHEAD,
                state: State::Waiting,
            },
        );
        self.trace_bytes += TRACE_OVERHEAD;
        self.arrivals.push_back((key, now));
        self.waiting += 1;
    }

    /// Adds one span (`span`: its encoded body) to the buffered trace `key`; `run` is the
    /// framed size of the spans of this trace that come next in the batch, this one included,
    /// to reserve at once (0 when they were reserved already).
    #[allow(clippy::too_many_arguments)]
    fn add_span(
        &mut self,
        key: TraceId,
        span: &[u8],
        run: usize,
        facts: &SpanFacts,
        origin: Arc<Origin>,
        service: Option<&str>,
        now: Instant,
        out: &mut Ingested,
    ) {
        let Some(trace) = self.traces.get_mut(&key) else {
            return;
        };
        let framed = framed_len(span.len());
        let group = match trace
            .groups
            .iter()
            .rposition(|g| Arc::ptr_eq(&g.origin, &origin))
        {
            Some(i) => &mut trace.groups[i],
            None => {
                trace.groups.push(Group {
                    origin,
                    spans: Vec::new(),
                    count: 0,
                });
                trace.bytes += size_of::<Group>();
                self.trace_bytes += size_of::<Group>();
                trace.groups.last_mut().expect("just pushed")
            }
        };
        let before = group.spans.capacity();
        if group.spans.capacity() - group.spans.len() < framed {
            // Grow by a quarter rather than doubling: a buffer of many small traces would
            // otherwise hold a third more memory than data, on average.
            let extra = framed.max(run).max(group.spans.len() / 4);
            group.spans.reserve_exact(extra);
        }
        write_bytes_field(2, span, &mut group.spans);
        group.count += 1;
        let grown = group.spans.capacity() - before;
        trace.bytes += grown;
        self.trace_bytes += grown;
        let had_root = trace.summary.has_root;
        trace.summary.add_facts(facts, service, framed);
        trace.last_seen = now;
        if !had_root
            && facts.root
            && self.limits.early_quiet.is_some()
            && trace.state == State::Waiting
        {
            self.rooted.push_back((key, trace.first_seen));
        }
        let over_cap = trace.summary.span_count > self.limits.max_spans_per_trace
            || trace.bytes > self.limits.max_bytes_per_trace;
        if over_cap && trace.state == State::Waiting {
            trace.state = State::Urgent;
            self.waiting -= 1;
            self.urgent.push_back(key);
            out.evictions.push(Eviction::TraceCap);
        }
    }

    /// Before a new trace comes in: makes the oldest waiting traces due while the buffer holds
    /// `num_traces` or is over its byte budget.
    fn make_room(&mut self, evictions: &mut Vec<Eviction>) {
        loop {
            let reason = if self.waiting >= self.limits.num_traces {
                Eviction::NumTraces
            } else if self.bytes() >= self.limits.max_bytes {
                Eviction::Bytes
            } else {
                return;
            };
            let Some(key) = self.pop_oldest_waiting(None) else {
                return;
            };
            if let Some(t) = self.traces.get_mut(&key) {
                t.state = State::Urgent;
                self.waiting -= 1;
                self.urgent.push_back(key);
                evictions.push(reason);
            }
        }
    }

    /// Pops the oldest arrival that is still a waiting trace (and, with `due_before`, only if
    /// it arrived before that instant).
    fn pop_oldest_waiting(&mut self, due_before: Option<Instant>) -> Option<TraceId> {
        while let Some(&(key, first_seen)) = self.arrivals.front() {
            let live = self
                .traces
                .get(&key)
                .is_some_and(|t| t.state == State::Waiting && t.first_seen == first_seen);
            if !live {
                self.arrivals.pop_front();
                continue;
            }
            if due_before.is_some_and(|d| first_seen > d) {
                return None;
            }
            self.arrivals.pop_front();
            return Some(key);
        }
        None
    }

    /// Takes up to `max_traces` due traces (or about `max_bytes` of them) for a decision:
    /// evicted and over-cap traces first, then those whose `decision_wait` ran out, then
    /// quiet traces with a root span (early decision).
    pub fn take_due(&mut self, now: Instant, max_traces: usize, max_bytes: usize) -> Vec<DueTrace> {
        let mut due = Vec::new();
        let mut bytes = 0usize;
        let full =
            |due: &Vec<DueTrace>, bytes: usize| due.len() >= max_traces || bytes >= max_bytes;
        while !full(&due, bytes) {
            let Some(key) = self.urgent.pop_front() else {
                break;
            };
            if let Some(t) = self.take(key, false) {
                bytes += t.summary.encoded_bytes as usize;
                due.push(t);
            }
        }
        let expired_before = now.checked_sub(self.limits.decision_wait);
        while !full(&due, bytes) {
            let Some(before) = expired_before else { break };
            let Some(key) = self.pop_oldest_waiting(Some(before)) else {
                break;
            };
            if let Some(t) = self.take(key, true) {
                bytes += t.summary.encoded_bytes as usize;
                due.push(t);
            }
        }
        if let Some(quiet) = self.limits.early_quiet {
            let mut keep = VecDeque::with_capacity(self.rooted.len());
            while let Some((key, first_seen)) = self.rooted.pop_front() {
                let Some(t) = self.traces.get(&key) else {
                    continue;
                };
                if t.state != State::Waiting || t.first_seen != first_seen {
                    continue;
                }
                if full(&due, bytes) || now.duration_since(t.last_seen) < quiet {
                    keep.push_back((key, first_seen));
                    continue;
                }
                if let Some(t) = self.take(key, true) {
                    bytes += t.summary.encoded_bytes as usize;
                    due.push(t);
                }
            }
            self.rooted = keep;
        }
        due
    }

    fn take(&mut self, key: TraceId, was_waiting: bool) -> Option<DueTrace> {
        let t = self.traces.get_mut(&key)?;
        if t.state == State::Deciding {
            return None;
        }
        t.state = State::Deciding;
        if was_waiting {
            self.waiting -= 1;
        }
        // The spans leave with the decision but stay charged until `finish`.
        Some(DueTrace {
            id: key,
            summary: std::mem::take(&mut t.summary),
            groups: std::mem::take(&mut t.groups),
            first_seen: t.first_seen,
        })
    }

    /// Records the decision on a taken trace, frees it, and returns the spans that arrived
    /// while it was being decided (to forward when kept).
    pub fn finish(&mut self, key: TraceId, kept: Option<Kept>, now: Instant) -> Vec<Group> {
        let Some(t) = self.traces.remove(&key) else {
            return Vec::new();
        };
        self.trace_bytes -= t.bytes;
        match kept {
            Some(k) => self.sampled.insert(key, k, now),
            None => self.not_sampled.insert(key, ()),
        }
        t.groups
    }

    /// Makes every waiting trace due (shutdown).
    pub fn expire_all(&mut self) {
        while let Some(key) = self.pop_oldest_waiting(None) {
            if let Some(t) = self.traces.get_mut(&key) {
                t.state = State::Urgent;
                self.waiting -= 1;
                self.urgent.push_back(key);
            }
        }
    }

    /// Drops every buffered trace; returns how many spans were dropped.
    pub fn clear(&mut self) -> u64 {
        let spans = self
            .traces
            .values()
            .map(|t| t.summary.span_count as u64)
            .sum();
        self.traces.clear();
        self.arrivals.clear();
        self.urgent.clear();
        self.rooted.clear();
        self.waiting = 0;
        self.trace_bytes = 0;
        spans
    }
}

/// Writes the `TracesData` handed to the policy plugin: every group of every trace, trace by
/// trace. Returns how many `ResourceSpans` each trace took.
pub fn encode_for_policy(traces: &[DueTrace], out: &mut Vec<u8>) -> Vec<u32> {
    traces
        .iter()
        .map(|t| {
            for g in &t.groups {
                g.write_traces_data_entry(out);
            }
            t.groups.len() as u32
        })
        .collect()
}

#[cfg(test)]
mod tests;
