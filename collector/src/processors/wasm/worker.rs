//! The threads that run plugin instances. Each worker owns one instance and takes batches
//! from a shared bounded channel, so wasm never runs on the async reactor and `instances`
//! batches are processed at once.
//!
//! A failed call discards the instance; the next batch gets a fresh one from the pre-linked
//! plugin. After repeated failures the worker stops calling the plugin for a while (doubling
//! up to [`MAX_BACKOFF`]) and handles batches per `on_error`, so a crash-looping plugin costs
//! almost nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;

use super::config::{Limits, OnError};
use super::host::Services;
use super::instance::Instance;
use super::plugin::LoadedPlugin;
use crate::pipeline::TraceBatch;
use crate::telemetry::Metrics;

/// Consecutive failures before the worker backs off.
const FAILURES_BEFORE_BACKOFF: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One batch for a worker, and where to send the outcome: the batch to pass on, or `None`
/// when it was dropped.
pub struct Job {
    pub batch: TraceBatch,
    pub reply: oneshot::Sender<Option<TraceBatch>>,
}

/// What every worker of one processor shares.
pub struct Shared {
    pub plugin: Arc<LoadedPlugin>,
    pub services: Arc<Services>,
    pub limits: Limits,
    pub config_json: String,
    pub on_error: OnError,
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
            metrics,
            id: id.to_string(),
        }
    }

    fn failure(&self, reason: &str) {
        self.metrics.plugin_failures(&self.id, reason).inc();
    }
}

/// Runs one worker until every sender of `jobs` is gone.
pub fn run(shared: Arc<Shared>, jobs: flume::Receiver<Job>) {
    let mut instance: Option<Instance> = None;
    let mut failures = 0u32;
    let mut paused_until: Option<Instant> = None;
    for Job { mut batch, reply } in jobs.iter() {
        if paused_until.is_some_and(|t| Instant::now() < t) {
            shared.metrics.skipped.inc();
            let _ = reply.send(on_error(&shared, batch));
            continue;
        }
        let started = Instant::now();
        let result = match instance.as_mut() {
            Some(inst) => Ok(inst),
            None => {
                shared.metrics.instantiations.inc();
                Instance::new(
                    &shared.plugin,
                    shared.services.clone(),
                    &shared.limits,
                    &shared.config_json,
                )
                .map(|i| instance.insert(i))
            }
        }
        .and_then(|inst| inst.process(&mut batch));
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
                let _ = reply.send(Some(batch));
            }
            Err(e) => {
                instance = None;
                failures += 1;
                shared.metrics.failure(e.reason());
                let action = match shared.on_error {
                    OnError::Pass => "passing the batch on unchanged",
                    OnError::Drop => "dropping the batch",
                };
                if let Some(pause) = pause_after(failures) {
                    paused_until = Some(Instant::now() + pause);
                    tracing::warn!(
                        processor = %shared.services.id,
                        plugin = %shared.plugin.source,
                        failures,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        reason = %e.reason(),
                        "plugin {e}; {action}; {failures} failures in a row, pausing the plugin for {pause:?}"
                    );
                } else {
                    tracing::warn!(
                        processor = %shared.services.id,
                        plugin = %shared.plugin.source,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        reason = %e.reason(),
                        "plugin {e}; {action}"
                    );
                }
                let _ = reply.send(on_error(&shared, batch));
            }
        }
    }
}

/// How long to stop calling a plugin after `failures` failures in a row: nothing for the
/// first few, then `FIRST_BACKOFF` doubling up to `MAX_BACKOFF`.
pub fn pause_after(failures: u32) -> Option<Duration> {
    let exp = failures.checked_sub(FAILURES_BEFORE_BACKOFF)?.min(16);
    Some((FIRST_BACKOFF * 2u32.pow(exp)).min(MAX_BACKOFF))
}

fn on_error(shared: &Shared, batch: TraceBatch) -> Option<TraceBatch> {
    match shared.on_error {
        OnError::Pass => Some(batch),
        OnError::Drop => None,
    }
}
