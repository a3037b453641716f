//! The threads that run plugin instances, for any signal a plugin handles
//! ([`PluginSignal`]: traces, logs, metrics); a processor in several pipelines has workers per
//! pipeline. Each worker owns one instance and takes batches from a shared bounded channel, so
//! wasm never runs on the async reactor and `instances` batches are processed at once.
//!
//! A failed call discards the instance; the next batch gets a fresh one from the pre-linked
//! plugin. A batch too big for the plugin's limits (memory cap, output cap) is halved and
//! each half tried again with a fresh instance, down to single spans or log records ([`MAX_SPLIT_DEPTH`]
//! halvings at most); the batch succeeds only if every piece does. After repeated failures
//! the worker stops calling the plugin for a while (doubling up to [`MAX_BACKOFF`]) and
//! handles batches per `on_error`, so a crash-looping plugin costs almost nothing. With
//! `on_error: refuse` a failed batch, and every batch while paused, is refused with a
//! retryable error: nothing unprocessed is passed on.
//!
//! A watchdog makes sure the sender hears within `call_timeout` + [`WATCHDOG_GRACE`] whatever
//! the call does: guest code is interrupted at the deadline and blocking WASI waits end
//! there, but host-side work on a plugin's answer is not interruptible. When a call overruns,
//! the watchdog answers for the batch per `on_error` (counted as `reason="timeout"`), starts a
//! new worker in place of the stuck one, and the stuck worker discards its instance and ends
//! once the call returns.
//!
//! A panic while handling a batch (a host-side defect: the plugin's own panics are traps) is
//! caught here: it counts as a failure (`reason="panic"`), the instance is replaced, and the
//! batch fails with a retryable error instead of being passed on or dropped per `on_error`.
//! A panic that escapes a worker, or one in the watchdog, is caught by
//! [`panics::spawn_thread`], counted in `wasmcol_component_panics_total`, and the thread
//! restarted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::host::Services;
use super::instance::Instance;
use super::instance::PluginSignal;
use super::limits::{Limits, OnError};
use super::plugin::LoadedPlugin;
use crate::panics;
use crate::pipeline::{Batch, ConsumeError};
use crate::telemetry::Metrics;

/// Consecutive failures before the worker backs off.
const FAILURES_BEFORE_BACKOFF: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How far past `call_timeout` a call may run before the watchdog answers for it.
pub const WATCHDOG_GRACE: Duration = Duration::from_millis(40);
/// The watchdog's shortest nap, so that a deadline in the past cannot make it spin.
const WATCHDOG_MIN_NAP: Duration = Duration::from_millis(1);
/// Most times a batch is halved after failing for its size (1,024 pieces at most).
pub const MAX_SPLIT_DEPTH: u32 = 10;

/// One batch for a worker, and where to send the outcome: the batch to pass on, `None` when
/// it was dropped, or the error to answer (the worker panicked on it).
pub struct Job<S: PluginSignal> {
    /// The batch to run the plugin over.
    pub batch: Batch<S>,
    /// Where the outcome goes.
    pub reply: Reply<S>,
}

/// The outcome of one job: the batch to pass on, `None` when dropped, or the refusal.
pub type Reply<S> = oneshot::Sender<Result<Option<Batch<S>>, ConsumeError>>;

/// What every worker of one processor shares.
pub struct Shared<S: PluginSignal> {
    /// The calls in progress, for the watchdog.
    pub watchdog: Watchdog<S>,
    /// The compiled plugin each instance is made from.
    pub plugin: Arc<LoadedPlugin>,
    /// Logs, counters and tables for the plugin.
    pub services: Arc<Services>,
    /// Limits of each instance.
    pub limits: Limits,
    /// The plugin's configuration, handed to `init`.
    pub config_json: String,
    /// What happens to a batch the plugin failed on.
    pub on_error: OnError,
    /// The processor's plugin counters.
    pub metrics: PluginMetrics,
}

/// Counters of one `wasm` processor.
#[derive(Clone)]
pub struct PluginMetrics {
    /// Batches the plugin processed successfully.
    pub calls: Counter,
    /// Instances created (the first, and every replacement).
    pub instantiations: Counter,
    /// Instances replaced because their memory passed the high-water mark.
    pub recycles: Counter,
    /// Batches handled per `on_error` without calling the plugin, while backing off.
    pub skipped: Counter,
    /// Panics caught in the workers (`wasmcol_component_panics_total`).
    pub panics: Counter,
    metrics: Arc<Metrics>,
    id: String,
}

impl PluginMetrics {
    /// Counters for processor `id`.
    pub fn new(metrics: Arc<Metrics>, id: &str) -> Self {
        Self {
            calls: metrics.plugin_calls(id),
            instantiations: metrics.plugin_instantiations(id),
            recycles: metrics.plugin_recycles(id),
            skipped: metrics.plugin_skipped(id),
            panics: metrics.component_panics("processor", id),
            metrics,
            id: id.to_string(),
        }
    }

    fn failure(&self, reason: &str) {
        self.metrics.plugin_failures(&self.id, reason).inc();
    }
}

/// The calls in progress of one processor's workers.
pub struct Watchdog<S: PluginSignal> {
    epoch: Instant,
    calls: Mutex<Vec<Weak<Watched<S>>>>,
    replacements: AtomicU64,
}

impl<S: PluginSignal> Default for Watchdog<S> {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            calls: Mutex::new(Vec::new()),
            replacements: AtomicU64::new(0),
        }
    }
}

impl<S: PluginSignal> Watchdog<S> {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

/// One job under watch: whoever answers first (the worker or the watchdog) takes the reply.
struct Watched<S: PluginSignal> {
    reply: Mutex<Option<Reply<S>>>,
    /// The batch as it came in, for the watchdog to answer with per `on_error`.
    batch: Mutex<Option<Batch<S>>>,
    /// When the call in progress must be over (nanoseconds after the watchdog's epoch); 0
    /// while no call runs.
    due: AtomicU64,
    /// Set by whichever of the worker (its call returned) and the watchdog (the call overran)
    /// comes first; that one answers, and a worker that comes second stops.
    claimed: AtomicBool,
    /// When the worker took the job.
    started: Instant,
}

impl<S: PluginSignal> Watched<S> {
    /// Starts the watchdog's clock for `calls` plugin calls in a row.
    fn arm(&self, shared: &Shared<S>, calls: u32) {
        let due = Instant::now() + shared.limits.call_timeout.0 * calls + WATCHDOG_GRACE;
        self.due
            .store(shared.watchdog.nanos(due).max(1), Ordering::Release);
    }

    /// Sends the outcome unless the watchdog answered already.
    fn answer(&self, outcome: Result<Option<Batch<S>>, ConsumeError>) {
        let reply = self.reply.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}

/// Starts `instances` workers taking jobs from `jobs`, and the watchdog.
pub fn start<S: PluginSignal>(
    shared: Arc<Shared<S>>,
    jobs: flume::Receiver<Job<S>>,
    instances: usize,
) -> std::io::Result<()> {
    for n in 0..instances {
        spawn_worker(&shared, &jobs, n.to_string())?;
    }
    let (weak, id) = (Arc::downgrade(&shared), shared.services.id.clone());
    // Restarted should it panic: without it, no call would be bounded any more.
    panics::spawn_thread(
        format!("wasm-{id}-watchdog"),
        id,
        shared.metrics.panics.clone(),
        move || watchdog(weak.clone(), jobs.clone()),
    )?;
    Ok(())
}

fn spawn_worker<S: PluginSignal>(
    shared: &Arc<Shared<S>>,
    jobs: &flume::Receiver<Job<S>>,
    name: String,
) -> std::io::Result<()> {
    let id = shared.services.id.clone();
    let (shared, jobs) = (shared.clone(), jobs.clone());
    // The worker catches a panic per batch; this restarts it should one escape.
    panics::spawn_thread(
        format!("wasm-{id}-{name}"),
        id,
        shared.metrics.panics.clone(),
        move || run(shared.clone(), jobs.clone()),
    )
    .map(drop)
}

/// Answers for calls that overran their deadline; ends with the processor.
///
/// It sleeps until the earliest deadline of the calls in progress, and at most
/// `call_timeout` + [`WATCHDOG_GRACE`]: a call armed while it sleeps is due no earlier than
/// that, so the watchdog is always awake in time without being told of new calls, and an
/// idle processor costs a wake-up per `call_timeout`, not one every few milliseconds.
fn watchdog<S: PluginSignal>(shared: Weak<Shared<S>>, jobs: flume::Receiver<Job<S>>) {
    let mut nap = WATCHDOG_MIN_NAP;
    loop {
        std::thread::sleep(nap);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        #[cfg(test)]
        tests::maybe_panic(&format!("{}#watchdog", shared.services.id));
        let now = shared.watchdog.nanos(Instant::now());
        let longest = shared.limits.call_timeout.0 + WATCHDOG_GRACE;
        let mut next = now.saturating_add(longest.as_nanos() as u64);
        let overdue: Vec<Arc<Watched<S>>> = {
            let mut calls = shared
                .watchdog
                .calls
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            calls.retain(|w| w.strong_count() > 0);
            calls
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|w| {
                    let due = w.due.load(Ordering::Acquire);
                    if due > now {
                        next = next.min(due);
                    }
                    due != 0 && due <= now
                })
                .collect()
        };
        nap = Duration::from_nanos(next - now).max(WATCHDOG_MIN_NAP);
        for w in overdue {
            if w.claimed.swap(true, Ordering::AcqRel) {
                // The call returned meanwhile: its worker answers.
                continue;
            }
            shared.metrics.failure("timeout");
            let n = shared.watchdog.replacements.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::log_limited!(warn, "plugin call overran its deadline";
                processor = %shared.services.id,
                plugin = %shared.plugin.source,
                elapsed_ms = w.started.elapsed().as_millis() as u64,
                reason = %"timeout",
                "plugin call still running {WATCHDOG_GRACE:?} past limits.call_timeout (host-side work on its answer); answered per on_error ({}), the instance is discarded and a new worker started",
                shared.on_error.as_str()
            );
            let batch = w.batch.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(batch) = batch {
                let why = format!(
                    "processors.{}: the plugin call overran limits.call_timeout",
                    shared.services.id
                );
                w.answer(on_error(&shared, batch, &why, None));
            }
            if let Err(e) = spawn_worker(&shared, &jobs, format!("r{n}")) {
                tracing::error!(processor = %shared.services.id, "cannot start a plugin worker: {e}");
            }
        }
    }
}

/// Runs one worker until every sender of `jobs` is gone, or the watchdog gave up on it.
pub fn run<S: PluginSignal>(shared: Arc<Shared<S>>, jobs: flume::Receiver<Job<S>>) {
    let mut instance: Option<Instance> = None;
    let mut failures = 0u32;
    let mut paused_until: Option<Instant> = None;
    for job in jobs.iter() {
        let watched = Arc::new(Watched {
            reply: Mutex::new(Some(job.reply)),
            batch: Mutex::new(Some(job.batch.clone())),
            due: AtomicU64::new(0),
            claimed: AtomicBool::new(false),
            started: Instant::now(),
        });
        // Bound after the reply so that, should a panic escape, the batch drops (marked
        // failed) before the reply does (the caller's retryable error).
        let mut batch = job.batch;
        if let Some(until) = paused_until.filter(|t| Instant::now() < *t) {
            shared.metrics.skipped.inc();
            let why = format!(
                "processors.{}: the plugin is paused after failing {failures} times in a row",
                shared.services.id
            );
            watched.answer(on_error(&shared, batch, &why, Some(until - Instant::now())));
            continue;
        }
        shared
            .watchdog
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&watched));
        let started = Instant::now();
        let attempt = catch_unwind(AssertUnwindSafe(|| {
            call_or_split(&shared, &watched, &mut instance, &mut batch)
        }));
        watched.due.store(0, Ordering::Release);
        if watched.claimed.swap(true, Ordering::AcqRel) {
            // The watchdog answered for this batch and started a worker in our place.
            return;
        }
        // Only this worker answers now.
        drop(
            watched
                .batch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let result = match attempt {
            Ok(result) => result,
            Err(payload) => {
                // The instance may be half-way through anything: never call it again.
                instance = None;
                failures += 1;
                shared.metrics.failure("panic");
                let pause = pause_after(failures);
                if let Some(p) = pause {
                    paused_until = Some(Instant::now() + p);
                }
                let message = panics::message(&*payload);
                panics::report(
                    &shared.metrics.panics,
                    &shared.services.id,
                    std::thread::current().name().unwrap_or("wasm worker"),
                    &message,
                    &format!(
                        "the batch failed (retryable); the plugin instance is replaced{}",
                        pause.map_or(String::new(), |p| format!(
                            "; {failures} failures in a row, pausing the plugin for {p:?}"
                        ))
                    ),
                );
                // Failed and let go before the caller hears, so a tracker has its outcome.
                batch.delivery.fail();
                drop(batch);
                watched.answer(Err(ConsumeError::retryable(format!(
                    "processors.{}: a plugin worker panicked: {message}",
                    shared.services.id
                ))));
                continue;
            }
        };
        match result {
            Ok(()) => {
                failures = 0;
                paused_until = None;
                shared.metrics.calls.inc();
                if instance
                    .as_ref()
                    .is_some_and(|i| i.memory_bytes() > shared.limits.recycle_bytes())
                {
                    shared.metrics.recycles.inc();
                    tracing::debug!(processor = %shared.services.id, "plugin instance recycled (memory high-water mark)");
                    instance = None;
                }
                watched.answer(Ok(Some(batch)));
            }
            Err(e) => {
                instance = None;
                failures += 1;
                shared.metrics.failure(e.reason());
                let action = match shared.on_error {
                    OnError::Pass => "passing the batch on unchanged",
                    OnError::Drop => "dropping the batch",
                    OnError::Refuse => "refusing the batch (retryable)",
                };
                if let Some(pause) = pause_after(failures) {
                    paused_until = Some(Instant::now() + pause);
                    crate::telemetry::log_limited!(warn, "plugin call failed; pausing the plugin";
                        processor = %shared.services.id,
                        plugin = %shared.plugin.source,
                        failures,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        reason = %e.reason(),
                        "plugin {e}; {action}; {failures} failures in a row, pausing the plugin for {pause:?}"
                    );
                } else {
                    crate::telemetry::log_limited!(warn, "plugin call failed";
                        processor = %shared.services.id,
                        plugin = %shared.plugin.source,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        reason = %e.reason(),
                        "plugin {e}; {action}"
                    );
                }
                let why = format!(
                    "processors.{}: the plugin failed on this batch ({})",
                    shared.services.id,
                    e.reason()
                );
                watched.answer(on_error(&shared, batch, &why, None));
            }
        }
    }
}

/// [`call`], and when the batch was too big for the plugin's limits, the same in halves
/// (recursively), each with a fresh instance. Every failure on the way is counted; the one
/// returned is counted by the caller.
fn call_or_split<S: PluginSignal>(
    shared: &Shared<S>,
    watched: &Watched<S>,
    instance: &mut Option<Instance>,
    batch: &mut Batch<S>,
) -> Result<(), super::CallError> {
    match call(shared, watched, instance, batch) {
        Err(e) if e.exceeds_limits() && batch.item_count() > 1 => {
            *instance = None;
            shared.metrics.failure(e.reason());
            tracing::debug!(processor = %shared.services.id, signal = %S::KIND, items = batch.item_count(), "plugin {e}; retrying the batch in halves");
            let processed = call_in_halves(shared, watched, instance, batch, 1)?;
            batch.set_payload_of(processed);
            Ok(())
        }
        other => other,
    }
}

/// Runs the plugin over each half of `whole`'s items (spans or log records), halving again a
/// piece that fails for its size, and returns the processed items in order (without `whole`'s delivery tracking,
/// which stays with the caller's batch).
fn call_in_halves<S: PluginSignal>(
    shared: &Shared<S>,
    watched: &Watched<S>,
    instance: &mut Option<Instance>,
    whole: &Batch<S>,
    depth: u32,
) -> Result<Batch<S>, super::CallError> {
    let mut back = Batch::<S>::default();
    back.set_payload_of(whole.clone());
    let front = back.split_front(back.item_count() / 2);
    let mut out = Batch::<S>::default();
    for mut piece in [front, back] {
        match call(shared, watched, instance, &mut piece) {
            Ok(()) => {}
            Err(e) if e.exceeds_limits() && piece.item_count() > 1 && depth < MAX_SPLIT_DEPTH => {
                *instance = None;
                shared.metrics.failure(e.reason());
                piece = call_in_halves(shared, watched, instance, &piece, depth + 1)?;
            }
            Err(e) => return Err(e),
        }
        out.merge(piece);
    }
    Ok(out)
}

/// Runs the plugin over `batch`, creating the instance first if there is none.
fn call<S: PluginSignal>(
    shared: &Shared<S>,
    watched: &Watched<S>,
    instance: &mut Option<Instance>,
    batch: &mut Batch<S>,
) -> Result<(), super::CallError> {
    #[cfg(test)]
    tests::maybe_panic(&shared.services.id);
    let inst = match instance {
        Some(inst) => inst,
        None => {
            // Instantiation (start functions, then `init`) is two calls with a deadline each.
            watched.arm(shared, 2);
            shared.metrics.instantiations.inc();
            instance.insert(Instance::new(
                &shared.plugin,
                shared.services.clone(),
                &shared.limits,
                &shared.config_json,
            )?)
        }
    };
    watched.arm(shared, 1);
    #[cfg(test)]
    tests::maybe_stall(&shared.services.id);
    inst.process(batch)
}

/// How long to stop calling a plugin after `failures` failures in a row: nothing for the
/// first few, then `FIRST_BACKOFF` doubling up to `MAX_BACKOFF`.
pub fn pause_after(failures: u32) -> Option<Duration> {
    let exp = failures.checked_sub(FAILURES_BEFORE_BACKOFF)?.min(16);
    Some((FIRST_BACKOFF * 2u32.pow(exp)).min(MAX_BACKOFF))
}

/// What becomes of a batch the plugin failed on (or was not called for, while paused):
/// passed on unchanged, dropped, or refused with a retryable error saying `why`.
fn on_error<S: PluginSignal>(
    shared: &Shared<S>,
    batch: Batch<S>,
    why: &str,
    retry_after: Option<Duration>,
) -> Result<Option<Batch<S>>, ConsumeError> {
    match shared.on_error {
        OnError::Pass => Ok(Some(batch)),
        OnError::Drop => Ok(None),
        OnError::Refuse => {
            // Like any retryable refusal, the delivery is left unmarked: the caller keeps its
            // copy to retry with (the Kafka receiver retries with the same tracker, which a
            // failed mark would spoil for good).
            drop(batch);
            Err(ConsumeError::Retryable {
                reason: format!("{why}; refused (on_error: refuse)"),
                retry_after,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use crate::component::ProcessorConfig;
    use crate::config::parse_component;
    use crate::pipeline::{Delivery, DeliveryTracker, Outcome};
    use crate::testing::{Recorder, context, spans};

    /// Processors whose next call panics on the host side.
    static PANIC_NEXT: Mutex<Vec<String>> = Mutex::new(Vec::new());

    pub fn maybe_panic(id: &str) {
        let mut ids = PANIC_NEXT.lock().unwrap();
        if let Some(i) = ids.iter().position(|p| p == id) {
            ids.remove(i);
            drop(ids);
            panic!("injected host-side panic");
        }
    }

    /// Processors whose next call is held up on the host side for 2 s.
    static STALL_NEXT: Mutex<Vec<String>> = Mutex::new(Vec::new());

    pub fn maybe_stall(id: &str) {
        let mut ids = STALL_NEXT.lock().unwrap();
        if let Some(i) = ids.iter().position(|p| p == id) {
            ids.remove(i);
            drop(ids);
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_watchdog_answers_for_a_call_that_overruns_and_a_new_worker_takes_over() {
        let id = "wasm/stalls-once";
        let cfg: crate::processors::wasm::WasmProcessorConfig = parse_component(
            serde_yaml_ng::from_str("plugin: builtin:enrich\nlimits: { call_timeout: 100ms }")
                .unwrap(),
        )
        .unwrap();
        let ctx = context(id);
        let metrics = ctx.metrics.clone();
        let rec = Recorder::new();
        let p = cfg.build_traces(&ctx, rec.clone()).unwrap();
        p.consume(spans(1)).await.unwrap();

        STALL_NEXT.lock().unwrap().push(id.to_string());
        let started = std::time::Instant::now();
        p.consume(spans(2)).await.unwrap();
        let took = started.elapsed();
        // call_timeout + 50 ms, plus 20 ms for this test's own scheduling on a busy machine
        // (the watchdog answers 40-45 ms after the deadline).
        assert!(
            took < std::time::Duration::from_millis(150 + 20),
            "answered after {took:?}"
        );
        assert_eq!(
            rec.batch_sizes(),
            vec![1, 2],
            "passed on per on_error: pass"
        );
        assert_eq!(metrics.plugin_failures(id, "timeout").get(), 1);

        // The stuck worker still sleeps; its replacement handles the next batch.
        let started = std::time::Instant::now();
        p.consume(spans(3)).await.unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(rec.batch_sizes(), vec![1, 2, 3]);
        assert_eq!(metrics.plugin_calls(id).get(), 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_panicking_watchdog_is_restarted_and_still_bounds_calls() {
        let id = "wasm/watchdog-panics";
        let cfg: crate::processors::wasm::WasmProcessorConfig = parse_component(
            serde_yaml_ng::from_str("plugin: builtin:enrich\nlimits: { call_timeout: 100ms }")
                .unwrap(),
        )
        .unwrap();
        let ctx = context(id);
        let metrics = ctx.metrics.clone();
        let rec = Recorder::new();
        let p = cfg.build_traces(&ctx, rec.clone()).unwrap();
        p.consume(spans(1)).await.unwrap();

        PANIC_NEXT.lock().unwrap().push(format!("{id}#watchdog"));
        let panics = metrics.component_panics("processor", id);
        let started = std::time::Instant::now();
        while panics.get() == 0 {
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }

        // The restarted watchdog answers for a call that overruns.
        STALL_NEXT.lock().unwrap().push(id.to_string());
        let started = std::time::Instant::now();
        p.consume(spans(2)).await.unwrap();
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_millis(150 + 20),
            "answered after {took:?}"
        );
        assert_eq!(metrics.plugin_failures(id, "timeout").get(), 1);
        assert_eq!(rec.batch_sizes(), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_panic_fails_the_batch_retryably_and_the_next_gets_a_fresh_instance() {
        let id = "wasm/panics-once";
        let cfg: crate::processors::wasm::WasmProcessorConfig =
            parse_component(serde_yaml_ng::from_str("plugin: builtin:pii-scrub").unwrap()).unwrap();
        let ctx = context(id);
        let metrics = ctx.metrics.clone();
        let rec = Recorder::new();
        let p = cfg.build_traces(&ctx, rec.clone()).unwrap();

        // A first batch creates the instance.
        p.consume(spans(2)).await.unwrap();
        PANIC_NEXT.lock().unwrap().push(id.to_string());
        let seen = std::sync::Arc::new(Mutex::new(None));
        let s = seen.clone();
        let delivery =
            Delivery::tracked(DeliveryTracker::new(move |o| *s.lock().unwrap() = Some(o)));
        let err = p
            .consume(spans(3).with_delivery(delivery))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(
            err.to_string().contains("injected host-side panic"),
            "{err}"
        );
        assert_eq!(*seen.lock().unwrap(), Some(Outcome::Failed));
        assert_eq!(metrics.plugin_failures(id, "panic").get(), 1);
        assert_eq!(metrics.component_panics("processor", id).get(), 1);

        // The same worker carries on with a new instance.
        p.consume(spans(4)).await.unwrap();
        assert_eq!(rec.batch_sizes(), vec![2, 4]);
        assert_eq!(metrics.plugin_instantiations(id).get(), 2);
        assert_eq!(metrics.plugin_calls(id).get(), 2);
    }
}
