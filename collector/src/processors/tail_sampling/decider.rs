//! The decision loop: one thread per `tail_sampling` processor takes due traces from the
//! buffer, asks the policy plugins, forwards the kept traces (marked with their policy and
//! sampling probability) and records every decision for late spans.
//!
//! It runs on its own thread so that plugin calls never block the async reactor; forwarding
//! waits for the next stage, retrying refusals, so a stalled exporter fills the buffer and
//! the buffer's budget pushes back on receivers.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prometheus_client::metrics::counter::Counter;
use wasmcol_plugin_sdk::policy::Decision;

use crate::otlp::wire;
use crate::otlp::wire::write_bytes_field;
use crate::panics;
use crate::pipeline::{ConsumeError, SharedConsumer, TraceBatch, Traces};
use crate::plugin_host::policy::{LoadedPolicy, PolicyInstance};
use crate::plugin_host::supervised::Supervised;
use crate::plugin_host::{Limits, OnError, Services};
use crate::sampling::tracestate;
use crate::telemetry::{Metrics, ProcessorMetrics, TailSamplingMetrics};
use crate::trace_buffer::cache::Kept;
use crate::trace_buffer::{Buffer, DueTrace, Group, Origin, encode_for_policy};

/// Most traces handed to the policy plugin in one call.
pub const MAX_TRACES_PER_CALL: usize = 4096;
/// About how many span bytes go into one call.
pub const MAX_BYTES_PER_CALL: usize = 8 << 20;
/// Distinct policy names tracked for metrics and the kept-trace cache; more are folded into
/// `other` so a plugin cannot blow up label cardinality.
const MAX_POLICY_NAMES: usize = 256;
/// Attribute written on kept spans: the deciding policy.
pub const POLICY_ATTRIBUTE: &str = "sampling.policy";

/// The decider's run state, set by the processor.
pub const RUNNING: u8 = 0;
/// Shutting down: decide everything pending, then stop.
pub const DRAIN: u8 = 1;
/// Shutting down: drop everything pending, then stop.
pub const DISCARD: u8 = 2;

/// What the processor and its decider share.
pub struct Shared {
    /// The processor id, for logs and metrics.
    pub id: String,
    /// The trace buffer.
    pub buffer: Mutex<Buffer>,
    /// Late spans of kept traces, waiting to be forwarded, and for each span (in order) the
    /// verdict its trace was kept with, when the cache remembers it.
    pub late: Mutex<(Vec<ResourceSpans>, Vec<Option<Kept>>)>,
    /// Wakes the decider (evictions, late spans, shutdown).
    pub wake: flume::Sender<()>,
    /// [`RUNNING`], [`DRAIN`] or [`DISCARD`].
    pub state: AtomicU8,
    /// Until when a policy plugin is paused after failing repeatedly (set by the decider);
    /// with `on_error: refuse`, new data is refused meanwhile.
    pub policy_paused_until: Mutex<Option<Instant>>,
    /// The processor's span counters.
    pub processor: ProcessorMetrics,
    /// Buffer and decision metrics.
    pub metrics: TailSamplingMetrics,
}

impl Shared {
    /// Wakes the decider without blocking (a pending wake-up is enough).
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }
}

/// One policy plugin, called under supervision: a failed call is counted and logged, and
/// its traces follow `on_error`.
pub struct PolicyRunner {
    plugin: Supervised<PolicyInstance>,
}

impl PolicyRunner {
    /// A runner for `policy` with its configuration.
    pub fn new(
        policy: Arc<LoadedPolicy>,
        config_json: String,
        services: Arc<Services>,
        limits: Limits,
    ) -> Self {
        Self {
            plugin: Supervised::new(policy, config_json, services, limits),
        }
    }

    /// Asks the plugin; `None` when it failed or is paused after failing (the caller then
    /// applies `on_error`).
    fn decide(
        &mut self,
        due: &[DueTrace],
        spans: &mut Option<(Vec<u8>, Vec<u32>)>,
    ) -> Option<Vec<Decision>> {
        if self.plugin.paused_until().is_some() {
            return None;
        }
        #[cfg(test)]
        let id = self.plugin.services().id.clone();
        let answer = self.plugin.call(
            "processor",
            "tail_sampling policy call",
            "the policy instance is replaced; these traces are decided per on_error",
            |inst| {
                #[cfg(test)]
                tests::maybe_panic(&id);
                let summaries: Vec<_> = due.iter().map(|t| t.summary.clone()).collect();
                if inst.needs_spans() {
                    let (bytes, counts) = spans.get_or_insert_with(|| {
                        let mut bytes = Vec::new();
                        let counts = encode_for_policy(due, &mut bytes);
                        (bytes, counts)
                    });
                    inst.decide(bytes, &summaries, counts)
                } else {
                    inst.decide(&[], &summaries, &vec![0; due.len()])
                }
            },
        );
        match answer {
            Ok(decisions) => Some(decisions),
            Err(failure) => {
                let e = failure.error;
                tracing::warn!(
                    processor = %self.plugin.services().id,
                    plugin = %self.plugin.plugin().source,
                    traces = due.len(),
                    failures = failure.failures,
                    elapsed_ms = failure.elapsed.as_millis() as u64,
                    reason = %e.reason(),
                    paused_for = ?failure.pause,
                    "policy plugin {e}; deciding these traces per on_error"
                );
                None
            }
        }
    }
}

/// The decision loop's own state.
pub struct Decider {
    shared: Arc<Shared>,
    policies: Vec<PolicyRunner>,
    on_error: OnError,
    next: SharedConsumer<Traces>,
    runtime: tokio::runtime::Handle,
    wake: flume::Receiver<()>,
    tick: Duration,
    /// Policy names seen, by index (the kept-trace cache stores the index).
    names: Vec<String>,
    name_index: HashMap<String, u16>,
    counters: HashMap<(u16, bool), Counter>,
    metrics: Arc<Metrics>,
}

impl Decider {
    /// A decider over `shared`'s buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shared: Arc<Shared>,
        policies: Vec<PolicyRunner>,
        on_error: OnError,
        next: SharedConsumer<Traces>,
        runtime: tokio::runtime::Handle,
        wake: flume::Receiver<()>,
        tick: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            shared,
            policies,
            on_error,
            next,
            runtime,
            wake,
            tick,
            names: Vec::new(),
            name_index: HashMap::new(),
            counters: HashMap::new(),
            metrics,
        }
    }

    /// Runs until shutdown has drained (or discarded) the buffer. Called again after a panic
    /// escaped it (see [`crate::panics::spawn_thread`]): policy instances start afresh.
    pub fn run(&mut self) {
        for p in &mut self.policies {
            p.plugin.reset();
        }
        let mut restarts = panics::Restarts::new();
        loop {
            let state = self.shared.state.load(Ordering::Acquire);
            if state == DISCARD {
                let dropped = self.lock().clear();
                self.shared.processor.dropped.inc_by(dropped);
                if dropped > 0 {
                    tracing::info!(processor = %self.shared.id, spans = dropped, "shutdown: pending traces dropped (on_shutdown: drop)");
                }
                self.flush_late();
                return;
            }
            if state == DRAIN {
                self.lock().expire_all();
            }
            self.flush_late();
            let due = self
                .lock()
                .take_due(Instant::now(), MAX_TRACES_PER_CALL, MAX_BYTES_PER_CALL);
            self.update_gauges();
            if due.is_empty() {
                if state == DRAIN && self.lock().trace_count() == 0 {
                    return;
                }
                let _ = self.wake.recv_timeout(self.tick);
                continue;
            }
            // Spans of traces being decided are acknowledged upstream once buffered, so a
            // panic here cannot hand them back: they are counted as dropped, and the loop
            // carries on (after a pause when it keeps panicking).
            let spans: u64 = due.iter().map(|t| u64::from(t.summary.span_count)).sum();
            let traces = due.len();
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.decide_and_forward(due))) {
                self.shared.processor.dropped.inc_by(spans);
                for p in &mut self.policies {
                    p.plugin.reset();
                }
                let wait = restarts.panicked();
                panics::report(
                    &self.metrics.component_panics("processor", &self.shared.id),
                    &self.shared.id,
                    "tail_sampling decider",
                    &panics::message(&*payload),
                    &format!(
                        "{traces} traces ({spans} spans) being decided are lost; {}",
                        panics::restarting(wait)
                    ),
                );
                std::thread::sleep(wait);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_gauges(&self) {
        let b = self.lock();
        self.shared.metrics.traces.set(b.trace_count() as i64);
        self.shared.metrics.bytes.set(b.bytes() as i64);
        self.shared.metrics.cache_bytes.set(b.cache_bytes() as i64);
    }

    fn decide_and_forward(&mut self, due: Vec<DueTrace>) {
        let decisions = self.decide(&due);
        let now = Instant::now();
        let mut out = Merger::default();
        let mut dropped = 0u64;
        // Record decisions first: spans that arrived while deciding come back from `finish`.
        let mut late_groups = Vec::with_capacity(due.len());
        {
            let mut buffer = self.lock();
            for (t, d) in due.iter().zip(&decisions) {
                let kept = d.sample.then(|| Kept {
                    policy: self.name_index.get(&d.policy).copied().unwrap_or(u16::MAX),
                    probability: d.probability as f32,
                });
                late_groups.push(buffer.finish(t.id, kept, now));
            }
        }
        for ((t, d), late) in due.into_iter().zip(&decisions).zip(late_groups) {
            let spans =
                u64::from(t.summary.span_count) + late.iter().map(|g| g.span_count()).sum::<u64>();
            self.shared
                .metrics
                .decision_latency
                .observe(now.duration_since(t.first_seen).as_secs_f64());
            if !d.sample {
                dropped += spans;
                continue;
            }
            for g in t.groups.iter().chain(&late) {
                out.add(g, d);
            }
        }
        self.shared.processor.dropped.inc_by(dropped);
        if let Some(batch) = out.finish() {
            self.forward(batch);
        }
    }

    /// One decision per trace: the first plugin that keeps a trace decides it; when none does,
    /// the first plugin's verdict stands. A failed plugin's traces follow `on_error`.
    fn decide(&mut self, due: &[DueTrace]) -> Vec<Decision> {
        let mut spans = None;
        let mut result: Option<Vec<Decision>> = None;
        let on_error = self.on_error;
        // The traces were accepted (acknowledged upstream) when buffered, so they cannot be
        // refused any more: `refuse` keeps them, losing nothing, and refuses new data while
        // the plugin is paused (see `policy_paused_until`).
        let fallback = || match on_error {
            OnError::Pass | OnError::Refuse => Decision::sample("on_error", 1.0),
            OnError::Drop => Decision::drop("on_error"),
        };
        let mut answers = Vec::with_capacity(self.policies.len());
        for runner in &mut self.policies {
            answers.push(runner.decide(due, &mut spans));
        }
        let paused = self
            .policies
            .iter()
            .filter_map(|r| r.plugin.paused_until())
            .max();
        *self
            .shared
            .policy_paused_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = paused;
        for answer in answers {
            let answer = answer.unwrap_or_else(|| due.iter().map(|_| fallback()).collect());
            match &mut result {
                None => result = Some(answer),
                Some(r) => {
                    for (mine, theirs) in r.iter_mut().zip(answer) {
                        if !mine.sample && theirs.sample {
                            *mine = theirs;
                        }
                    }
                }
            }
        }
        let decisions = result.unwrap_or_default();
        for d in &decisions {
            let index = self.intern(&d.policy);
            self.counters
                .entry((index, d.sample))
                .or_insert_with(|| {
                    let name = self
                        .names
                        .get(index as usize)
                        .map_or("other", |s| s.as_str());
                    self.metrics.tail_decisions(&self.shared.id, name, d.sample)
                })
                .inc();
        }
        decisions
    }

    fn intern(&mut self, name: &str) -> u16 {
        if let Some(&i) = self.name_index.get(name) {
            return i;
        }
        if self.names.len() >= MAX_POLICY_NAMES {
            return u16::MAX;
        }
        let i = self.names.len() as u16;
        self.names.push(name.to_string());
        self.name_index.insert(name.to_string(), i);
        i
    }

    /// Forwards late spans of kept traces collected by the receivers' threads, marked like
    /// the rest of their trace where the cache remembered the verdict.
    fn flush_late(&mut self) {
        let (mut late, marks) =
            std::mem::take(&mut *self.shared.late.lock().unwrap_or_else(|e| e.into_inner()));
        if late.is_empty() {
            return;
        }
        let mut marks = marks.into_iter();
        for span in late
            .iter_mut()
            .flat_map(|rs| rs.scope_spans.iter_mut())
            .flat_map(|ss| ss.spans.iter_mut())
        {
            if let Some(Some(kept)) = marks.next() {
                let policy = self
                    .names
                    .get(usize::from(kept.policy))
                    .map_or("other", |s| s.as_str());
                mark(span, &Decision::sample(policy, f64::from(kept.probability)));
            }
        }
        self.forward(TraceBatch::new(late));
    }

    /// Hands kept spans to the next stage, waiting out retryable refusals (that back-pressure
    /// fills the buffer, whose budget then refuses new data upstream).
    fn forward(&self, batch: TraceBatch) {
        let spans = batch.item_count() as u64;
        let mut backoff = Duration::from_millis(10);
        let mut attempts = 0u32;
        loop {
            match self.runtime.block_on(self.next.consume(batch.clone())) {
                Ok(()) => {
                    self.shared.processor.outgoing.inc_by(spans);
                    return;
                }
                Err(ConsumeError::Retryable {
                    reason,
                    retry_after,
                }) => {
                    attempts += 1;
                    // On shutdown, give up after a few tries rather than hold the process.
                    if self.shared.state.load(Ordering::Acquire) != RUNNING && attempts > 20 {
                        tracing::warn!(processor = %self.shared.id, spans, "shutdown: the next stage still refuses ({reason}); kept spans dropped");
                        self.shared.processor.dropped.inc_by(spans);
                        return;
                    }
                    tracing::debug!(processor = %self.shared.id, "next stage refused kept spans ({reason}); retrying");
                    std::thread::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(1)));
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(ConsumeError::Permanent { reason }) => {
                    tracing::error!(processor = %self.shared.id, spans, "the next stage refused kept spans for good: {reason}");
                    self.shared.processor.dropped.inc_by(spans);
                    return;
                }
            }
        }
    }
}

/// Builds the outgoing batch as protobuf, never decoding: kept groups' spans are copied and
/// marked, and groups of different traces that share a resource and scope are gathered under
/// one `ResourceSpans`.
#[derive(Default)]
struct Merger {
    /// Per origin: its span entries and how many.
    out: Vec<(Arc<Origin>, Vec<u8>, usize)>,
    by_origin: HashMap<*const Origin, usize>,
    span: Vec<u8>,
    attribute: Vec<u8>,
}

impl Merger {
    fn add(&mut self, group: &Group, decision: &Decision) {
        let key = Arc::as_ptr(group.origin());
        let i = *self.by_origin.entry(key).or_insert_with(|| {
            self.out.push((group.origin().clone(), Vec::new(), 0));
            self.out.len() - 1
        });
        policy_attribute(&decision.policy, &mut self.attribute);
        let (_, entries, count) = &mut self.out[i];
        for field in wire::raw_fields(group.span_entries()) {
            self.span.clear();
            mark_encoded(
                field.payload,
                &self.attribute,
                decision.probability,
                &mut self.span,
            );
            write_bytes_field(2, &self.span, entries);
            *count += 1;
        }
    }

    fn finish(self) -> Option<TraceBatch> {
        let spans: usize = self.out.iter().map(|(_, _, n)| n).sum();
        if spans == 0 {
            return None;
        }
        let mut bytes = Vec::new();
        for (origin, entries, _) in &self.out {
            origin.write_traces_data_entry(entries, &mut bytes);
        }
        Some(TraceBatch::from_trusted_protobuf(bytes.into(), spans))
    }
}

/// The encoded `KeyValue` of the policy attribute.
fn policy_attribute(policy: &str, out: &mut Vec<u8>) {
    out.clear();
    write_bytes_field(1, POLICY_ATTRIBUTE.as_bytes(), out);
    let value_len = 1 + prost::encoding::encoded_len_varint(policy.len() as u64) + policy.len();
    prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(value_len as u64, out);
    write_bytes_field(1, policy.as_bytes(), out);
}

/// [`mark`] on an encoded span body, written to `out`: every field is copied except the
/// trace state and any earlier policy attribute, then the policy attribute (`attribute`, an
/// encoded `KeyValue`) and the trace state with the threshold are appended. Decoders read
/// the same span `mark` would produce (repeated fields append; the last trace state wins).
fn mark_encoded(span: &[u8], attribute: &[u8], probability: f64, out: &mut Vec<u8>) {
    let mut trace_state = "";
    for field in wire::raw_fields(span) {
        match field.number {
            3 => trace_state = std::str::from_utf8(field.payload).unwrap_or_default(),
            9 if wire::key_value_key(field.payload) == Some(POLICY_ATTRIBUTE) => {}
            _ => out.extend_from_slice(field.bytes),
        }
    }
    write_bytes_field(9, attribute, out);
    let state = tracestate::with_threshold(trace_state, probability);
    if !state.is_empty() {
        write_bytes_field(3, state.as_bytes(), out);
    }
}

/// Writes the deciding policy and the sampling probability on a kept span.
fn mark(span: &mut opentelemetry_proto::tonic::trace::v1::Span, decision: &Decision) {
    let value = Some(AnyValue {
        value: Some(any_value::Value::StringValue(decision.policy.clone())),
    });
    match span
        .attributes
        .iter_mut()
        .find(|kv| kv.key == POLICY_ATTRIBUTE)
    {
        Some(kv) => kv.value = value,
        None => span.attributes.push(KeyValue {
            key: POLICY_ATTRIBUTE.to_string(),
            value,
            ..Default::default()
        }),
    }
    span.trace_state = tracestate::with_threshold(&span.trace_state, decision.probability);
}

#[cfg(test)]
pub(super) mod tests {
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    use super::*;

    /// Processors whose next policy call panics on the host side (`ID#buffer`: whose next
    /// batch panics while buffering).
    static PANIC_NEXT: Mutex<Vec<String>> = Mutex::new(Vec::new());

    pub fn maybe_panic(id: &str) {
        let mut ids = PANIC_NEXT.lock().unwrap();
        if let Some(i) = ids.iter().position(|p| p == id) {
            ids.remove(i);
            drop(ids);
            panic!("injected host-side panic");
        }
    }

    /// `tail_sampling` processor `id` keeping every trace after 50ms, in front of `next`.
    fn build(
        id: &str,
        next: SharedConsumer<Traces>,
    ) -> (
        Arc<dyn crate::component::Processor<crate::pipeline::Traces>>,
        Arc<Metrics>,
    ) {
        build_with(id, "", next)
    }

    /// [`build`] with `extra` YAML lines.
    fn build_with(
        id: &str,
        extra: &str,
        next: SharedConsumer<Traces>,
    ) -> (
        Arc<dyn crate::component::Processor<crate::pipeline::Traces>>,
        Arc<Metrics>,
    ) {
        use crate::component::ProcessorConfig;
        let cfg: super::super::TailSamplingConfig = crate::config::parse_component(
            serde_yaml_ng::from_str(&format!(
                "decision_wait: 50ms\n\
                 policies: [{{ name: all, type: probabilistic, probabilistic: {{ sampling_percentage: 100 }} }}]\n\
                 {extra}"
            ))
            .unwrap(),
        )
        .unwrap();
        let ctx = crate::testing::context(id);
        let metrics = ctx.metrics.clone();
        (cfg.build_traces(&ctx, next).unwrap(), metrics)
    }

    /// Waits up to 5 s for `cond`.
    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// `n` spans of trace `trace`.
    fn trace(trace: u8, n: usize) -> TraceBatch {
        let mut b = crate::testing::spans(n);
        for rs in b.resources_mut() {
            for ss in &mut rs.scope_spans {
                for s in &mut ss.spans {
                    s.trace_id = vec![trace; 16];
                }
            }
        }
        b
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_a_policy_call_is_a_plugin_failure_and_on_error_decides() {
        let id = "tail_sampling/policy-panics";
        let rec = crate::testing::Recorder::new();
        let (p, metrics) = build(id, rec.clone());
        PANIC_NEXT.lock().unwrap().push(id.to_string());
        p.consume(trace(1, 2)).await.unwrap();
        eventually("the first trace", || rec.batch_sizes() == vec![2]).await;
        // on_error: pass keeps the trace, marked as decided by on_error.
        let batches = rec.batches();
        let span = &batches[0].resources()[0].scope_spans[0].spans[0];
        let policy = span.attributes.iter().find(|kv| kv.key == POLICY_ATTRIBUTE);
        assert_eq!(
            policy.and_then(|kv| kv.value.clone()),
            Some(AnyValue {
                value: Some(any_value::Value::StringValue("on_error".into()))
            })
        );
        assert_eq!(metrics.plugin_failures(id, "panic").get(), 1);
        assert_eq!(metrics.component_panics("processor", id).get(), 1);
        // The next trace is decided by a fresh instance.
        p.consume(trace(2, 3)).await.unwrap();
        eventually("the second trace", || rec.batch_sizes() == vec![2, 3]).await;
        assert_eq!(metrics.plugin_calls(id).get(), 1);
        p.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_error_refuse_keeps_failed_traces_and_refuses_while_paused() {
        let id = "tail_sampling/policy-refuse";
        let rec = crate::testing::Recorder::new();
        let (p, metrics) = build_with(id, "on_error: refuse", rec.clone());
        for n in 1..=3u8 {
            PANIC_NEXT.lock().unwrap().push(id.to_string());
            p.consume(trace(n, 1)).await.unwrap();
            eventually("the failed trace, kept", || {
                rec.batch_sizes().len() == n as usize
            })
            .await;
        }
        assert_eq!(metrics.plugin_failures(id, "panic").get(), 3);
        // Three failures in a row pause the plugin; meanwhile new data is refused.
        let err = p.consume(trace(9, 1)).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("on_error: refuse"), "{err}");
        assert_eq!(rec.batch_sizes(), vec![1, 1, 1], "kept, never dropped");
        p.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_while_buffering_refuses_the_batch_retryably() {
        use crate::pipeline::{Delivery, DeliveryTracker, Outcome};
        let id = "tail_sampling/buffer-panics";
        let rec = crate::testing::Recorder::new();
        let (p, metrics) = build(id, rec.clone());
        PANIC_NEXT.lock().unwrap().push(format!("{id}#buffer"));
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let delivery =
            Delivery::tracked(DeliveryTracker::new(move |o| *s.lock().unwrap() = Some(o)));
        let err = p
            .consume(trace(1, 2).with_delivery(delivery))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(*seen.lock().unwrap(), Some(Outcome::Failed));
        assert_eq!(metrics.component_panics("processor", id).get(), 1);
        // The buffer still works.
        p.consume(trace(2, 3)).await.unwrap();
        eventually("the second trace", || rec.batch_sizes() == vec![3]).await;
        p.shutdown().await;
    }

    /// Panics on its first batch, then records.
    struct PanicsFirst {
        panicked: std::sync::atomic::AtomicBool,
        rec: Arc<crate::testing::Recorder>,
    }

    #[async_trait::async_trait]
    impl crate::pipeline::Consumer<crate::pipeline::Traces> for PanicsFirst {
        async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
            if !self.panicked.swap(true, Ordering::SeqCst) {
                panic!("the next stage broke");
            }
            self.rec.consume(batch).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_while_forwarding_loses_those_traces_and_the_decider_carries_on() {
        let id = "tail_sampling/forward-panics";
        let rec = crate::testing::Recorder::new();
        let next = Arc::new(PanicsFirst {
            panicked: false.into(),
            rec: rec.clone(),
        });
        let (p, metrics) = build(id, next);
        p.consume(trace(1, 2)).await.unwrap();
        let panics = metrics.component_panics("processor", id);
        eventually("the panic", || panics.get() == 1).await;
        let dropped = metrics
            .processor(id, "traces", crate::pipeline::SignalKind::Traces)
            .dropped;
        assert_eq!(dropped.get(), 2);
        p.consume(trace(2, 3)).await.unwrap();
        eventually("the second trace", || rec.batch_sizes() == vec![3]).await;
        assert_eq!(panics.get(), 1);
        p.shutdown().await;
    }

    fn string_kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    /// The byte-level marking and the decoded one give the same span.
    #[test]
    fn marking_bytes_matches_marking_the_decoded_span() {
        let spans = [
            Span::default(),
            Span {
                trace_id: vec![7; 16],
                name: "GET /".into(),
                trace_state: "vendor=a,ot=rv:0123456789abcd".into(),
                attributes: vec![string_kv("http.route", "/"), string_kv("n", "1")],
                ..Default::default()
            },
            Span {
                trace_state: "ot=th:8".into(),
                attributes: vec![string_kv(POLICY_ATTRIBUTE, "upstream"), string_kv("x", "y")],
                ..Default::default()
            },
        ];
        for probability in [1.0, 0.25, 0.001] {
            let decision = Decision::sample("errors", probability);
            for span in &spans {
                let mut expected = span.clone();
                mark(&mut expected, &decision);

                let mut attribute = Vec::new();
                policy_attribute(&decision.policy, &mut attribute);
                let mut out = Vec::new();
                mark_encoded(&span.encode_to_vec(), &attribute, probability, &mut out);
                let mut got = Span::decode(&out[..]).unwrap();
                // `mark` replaces an earlier policy attribute in place; the bytes version
                // drops it and appends: same set, different position.
                got.attributes.sort_by(|a, b| a.key.cmp(&b.key));
                expected.attributes.sort_by(|a, b| a.key.cmp(&b.key));
                assert_eq!(got, expected, "p={probability}");
            }
        }
    }
}
