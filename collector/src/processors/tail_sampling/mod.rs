//! `tail_sampling`: buffers spans by trace ID and keeps or drops whole traces, as policy
//! plugins decide.
//!
//! ```yaml
//! processors:
//!   tail_sampling:
//!     decision_wait: 10s
//!     num_traces: 50000
//!     max_buffer_bytes: 256MiB
//!     early_decision: { quiet: 2s }
//!     policies:                                  # evaluated by builtin:tail-policies
//!       - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
//!       - { name: slow, type: latency, latency: { threshold_ms: 500 } }
//!       - { name: rest, type: probabilistic, probabilistic: { sampling_percentage: 5 } }
//! ```
//!
//! The host owns the buffer (memory budget, eviction, late spans, decision caches); policies
//! run in a sandboxed plugin that sees a batch of complete traces at a time. Kept spans carry
//! the deciding policy (`sampling.policy`) and their sampling probability (`ot=th:...` in
//! `tracestate`). Spans count as delivered upstream once buffered.
//!
//! Panics are contained: one while buffering refuses that batch (retryable); one in a policy
//! call is a plugin failure (`reason="panic"`, the traces follow `on_error`); one elsewhere in
//! the decider loses the traces being decided (counted as dropped) and the loop carries on.

mod config;
mod decider;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

pub use config::{CacheType, DecisionCacheConfig, EarlyDecision, OnShutdown, TailSamplingConfig};
pub use decider::POLICY_ATTRIBUTE;

use decider::{DISCARD, DRAIN, Decider, PolicyRunner, RUNNING, Shared};

use crate::component::{BuildContext, Lifecycle, Processor, ProcessorConfig};
use crate::compute;
use crate::pipeline::{ConsumeError, Consumer, SharedConsumer, TraceBatch, Traces};
use crate::plugin_host::OnError;
use crate::plugin_host::Services;
use crate::trace_buffer::cache::{BloomWindowCache, BloomWindowSettings, ExactCache, SampledCache};
use crate::trace_buffer::{Buffer, BufferLimits, Eviction};
use prometheus_client::metrics::counter::Counter;

/// Late spans waiting to be forwarded past which new data is refused.
const MAX_PENDING_LATE_SPANS: usize = 100_000;

impl ProcessorConfig for TailSamplingConfig {
    fn passes_acknowledgement_on(&self) -> bool {
        // Buffered spans count as delivered (a trace may wait `decision_wait`).
        false
    }

    fn build_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Processor<Traces>>> {
        let loaded =
            self.loaded.get().cloned().ok_or_else(|| {
                anyhow::anyhow!("the policy plugins were not loaded by validation")
            })?;
        let id = ctx.id.to_string();
        let services = Arc::new(Services::new(
            id.clone(),
            ctx.metrics.clone(),
            Arc::new(Default::default()),
        ));
        let policies = loaded
            .into_iter()
            .map(|(policy, json)| {
                PolicyRunner::new(policy, json, services.clone(), self.limits.clone())
            })
            .collect();
        let now = Instant::now();
        let c = &self.decision_cache;
        let sampled = match (c.sampled_cache_type, c.sampled_cache_size) {
            (_, 0) => SampledCache::Disabled,
            (CacheType::Exact, n) => SampledCache::Exact(ExactCache::new(n)),
            (CacheType::Bloom, n) => SampledCache::Bloom(BloomWindowCache::new(
                BloomWindowSettings {
                    shards: c.shards,
                    window: c.window.0,
                    expected_items_per_window: n,
                    false_positive_rate: c.false_positive_rate,
                },
                now,
            )),
        };
        let wait = self.decision_wait.0;
        let limits = BufferLimits {
            decision_wait: wait,
            num_traces: self.num_traces,
            max_bytes: self.max_buffer_bytes.0 as usize,
            max_spans_per_trace: self.max_spans_per_trace,
            max_bytes_per_trace: self.max_bytes_per_trace.0 as usize,
            early_quiet: self.early_decision.as_ref().map(|e| e.quiet.0),
            expected_traces: (self.expected_new_traces_per_sec as usize)
                .saturating_mul(wait.as_secs().max(1) as usize),
        };
        // Decisions are due at most a tick late: a small fraction of the waits involved.
        let mut tick = wait / 20;
        if let Some(q) = limits.early_quiet {
            tick = tick.min(q / 4);
        }
        let tick = tick.clamp(Duration::from_millis(10), Duration::from_secs(1));
        let (wake, wake_rx) = flume::bounded(1);
        let shared = Arc::new(Shared {
            id: id.clone(),
            buffer: Mutex::new(Buffer::new(
                limits,
                sampled,
                ExactCache::new(c.non_sampled_cache_size),
            )),
            late: Mutex::new((Vec::new(), Vec::new())),
            wake,
            state: AtomicU8::new(RUNNING),
            policy_paused_until: Mutex::new(None),
            processor: ctx.metrics.processor(
                &id,
                ctx.pipeline.as_deref().unwrap_or(""),
                crate::pipeline::SignalKind::Traces,
            ),
            metrics: ctx.metrics.tail_sampling(&id),
        });
        let decider = Decider::new(
            shared.clone(),
            policies,
            self.on_error,
            next,
            tokio::runtime::Handle::try_current()
                .map_err(|_| anyhow::anyhow!("tail_sampling must be built inside the runtime"))?,
            wake_rx,
            tick,
            ctx.metrics.clone(),
        );
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (mut decider, mut done_tx) = (decider, Some(done_tx));
        // The decider catches panics while deciding; this restarts it should one escape.
        crate::panics::spawn_thread(
            format!("tail-{id}"),
            id.clone(),
            ctx.metrics.component_panics("processor", &id),
            move || {
                decider.run();
                if let Some(tx) = done_tx.take() {
                    let _ = tx.send(());
                }
            },
        )?;
        let evictions = [Eviction::NumTraces, Eviction::Bytes, Eviction::TraceCap]
            .map(|e| ctx.metrics.tail_evictions(&id, e.label()));
        Ok(Arc::new(TailSampling {
            shared,
            on_shutdown: self.on_shutdown,
            refuse_while_paused: self.on_error == OnError::Refuse,
            done: Mutex::new(Some(done_rx)),
            evictions,
            panics: ctx.metrics.component_panics("processor", &id),
        }))
    }
}

struct TailSampling {
    shared: Arc<Shared>,
    on_shutdown: OnShutdown,
    /// `on_error: refuse`: refuse new data while a policy plugin is paused after failures.
    refuse_while_paused: bool,
    done: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    /// Eviction counters, by [`Eviction`] in declaration order.
    evictions: [Counter; 3],
    /// Panics caught while buffering.
    panics: Counter,
}

#[async_trait]
impl Lifecycle for TailSampling {
    async fn shutdown(&self) {
        let state = match self.on_shutdown {
            OnShutdown::Decide => DRAIN,
            OnShutdown::Drop => DISCARD,
        };
        self.shared.state.store(state, Ordering::Release);
        self.shared.wake();
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(done) = done {
            let _ = done.await;
        }
    }
}

#[async_trait]
impl Consumer<Traces> for TailSampling {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.item_count() as u64;
        if self.refuse_while_paused {
            let paused = *self
                .shared
                .policy_paused_until
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(left) = paused.and_then(|t| t.checked_duration_since(Instant::now())) {
                self.shared.processor.refused.inc_by(spans);
                return Err(ConsumeError::Retryable {
                    reason: format!(
                        "processor {}: the policy plugin is paused after repeated failures \
                         (on_error: refuse)",
                        self.shared.id
                    ),
                    retry_after: Some(left),
                });
            }
        }
        let shared = self.shared.clone();
        let panics = self.panics.clone();
        // Buffering reads every span: a large batch is buffered off the reactor.
        let effort = compute::batch_effort(&batch);
        let ingested = compute::run(effort, move || buffer_batch(&shared, &panics, batch, spans))
            .await
            .map_err(|p| ConsumeError::retryable(format!("processor {}: {p}", self.shared.id)))??;
        let m = &self.shared.processor;
        m.incoming.inc_by(spans);
        let metrics = &self.shared.metrics;
        metrics.late_sampled.inc_by(ingested.late_sampled);
        metrics.late_dropped.inc_by(ingested.late_dropped);
        m.dropped.inc_by(ingested.late_dropped + ingested.invalid);
        if ingested.invalid > 0 {
            crate::telemetry::log_limited!(warn, "spans without a 16-byte trace id dropped", processor = %self.shared.id, spans = ingested.invalid);
        }
        for e in &ingested.evictions {
            self.evictions[*e as usize].inc();
        }
        let mut wake = !ingested.evictions.is_empty();
        if !ingested.forward.is_empty() {
            let mut late = self.shared.late.lock().unwrap_or_else(|e| e.into_inner());
            late.0.extend(ingested.forward);
            late.1.extend(ingested.forward_marks);
            wake = true;
        }
        if wake {
            self.shared.wake();
        }
        Ok(())
    }
}

/// Buffers `batch` (off the reactor when large; see [`compute`]).
fn buffer_batch(
    shared: &Shared,
    panics: &Counter,
    batch: TraceBatch,
    spans: u64,
) -> Result<crate::trace_buffer::Ingested, ConsumeError> {
    let m = &shared.processor;
    let pending_late = shared
        .late
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .1
        .len();
    let mut buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
    if buffer.is_full() || pending_late > MAX_PENDING_LATE_SPANS {
        drop(buffer);
        m.refused.inc_by(spans);
        return Err(ConsumeError::Retryable {
            reason: format!(
                "processor {}: the trace buffer is full (max_buffer_bytes) until pending \
                 decisions are made and forwarded",
                shared.id
            ),
            retry_after: Some(Duration::from_secs(1)),
        });
    }
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // A panic while buffering (a defect) refuses this batch, retryably, rather than
    // unwinding into the receiver; the buffer's lock is taken past poisoning.
    let ingest = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        #[cfg(test)]
        decider::tests::maybe_panic(&format!("{}#buffer", shared.id));
        match batch.protobuf_parts() {
            Some(parts) => buffer.ingest_protobuf(parts.map(|p| &p[..]), Instant::now(), now_unix),
            None => buffer.ingest(batch.resources(), Instant::now(), now_unix),
        }
    }));
    match ingest {
        Ok(ingested) => Ok(ingested),
        Err(payload) => {
            drop(buffer);
            let message = crate::panics::message(&*payload);
            crate::panics::report(
                panics,
                &shared.id,
                "tail_sampling buffer",
                &message,
                "the batch is refused (retryable)",
            );
            m.refused.inc_by(spans);
            batch.delivery.fail();
            Err(ConsumeError::retryable(format!(
                "processor {}: buffering the batch panicked: {message}",
                shared.id
            )))
        }
    }
}
