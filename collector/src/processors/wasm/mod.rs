//! `wasm`: a processor whose logic is a sandboxed WebAssembly component.
//!
//! ```yaml
//! processors:
//!   wasm/scrub:
//!     plugin: builtin:pii-scrub        # or a path to a .wasm component
//!     config: { ... }                  # any YAML, handed to the plugin (as JSON) at load
//!     tables:                          # read-only lookups for the plugin
//!       teams: { file: teams.csv, key: service }
//!     limits: { memory_mib: 64, call_timeout: 50ms, max_output_bytes: 64MiB }
//!     on_error: refuse                 # or pass, drop (default: refuse for pii-scrub, else pass)
//!     instances: 2                     # parallel instances
//! ```
//!
//! Traces, logs and metrics: each pipeline gets its own instances and workers, with the same
//! limits and `on_error`. Plugins built for `wasmcol:plugin@0.2.0` run on traces and logs,
//! those built for 0.1.0 on traces only.
//!
//! The batch crosses into the plugin as OTLP protobuf bytes, one copy; the plugin answers
//! with edits (checked, then applied here to the host's copy) or, rarely, a replacement batch.
//! Every instance runs on its own thread with a memory cap and a per-call deadline; a trap,
//! timeout or bad answer costs one instance, never the collector. A panic on the host side
//! costs the instance too, and the batch fails with a retryable error.

mod config;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::oneshot;

pub use config::WasmProcessorConfig;

use crate::component::{BuildContext, Lifecycle, Processor, ProcessorConfig};
use crate::pipeline::{
    Batch, ConsumeError, Consumer, Logs, Metrics, SharedConsumer, SignalKind, Signals, Traces,
};
use crate::plugin_host::Services;
use crate::plugin_host::instance::PluginSignal;
use crate::plugin_host::worker::{self, Job, PluginMetrics, Shared, Watchdog};
use crate::telemetry::ProcessorMetrics;

impl ProcessorConfig for WasmProcessorConfig {
    /// Traces, logs and metrics; traces and logs for a plugin built for
    /// `wasmcol:plugin@0.2.0`, traces only for one built for 0.1.0.
    fn signals(&self) -> Signals {
        match self.loaded.get() {
            Some((plugin, ..)) => plugin.signals(),
            None => Signals::of(&[SignalKind::Traces, SignalKind::Logs, SignalKind::Metrics]),
        }
    }

    fn unsupported_because(&self, signal: SignalKind) -> Option<String> {
        self.loaded
            .get()
            .and_then(|(plugin, ..)| plugin.lacks(signal))
    }

    fn build_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Processor<Traces>>> {
        self.build(ctx, next)
    }

    fn build_logs(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Logs>,
    ) -> anyhow::Result<Arc<dyn Processor<Logs>>> {
        self.build(ctx, next)
    }

    fn build_metrics(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Metrics>,
    ) -> anyhow::Result<Arc<dyn Processor<Metrics>>> {
        self.build(ctx, next)
    }
}

impl WasmProcessorConfig {
    fn build<S: PluginSignal>(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<S>,
    ) -> anyhow::Result<Arc<dyn Processor<S>>> {
        let (plugin, tables, config_json) = self
            .loaded
            .get()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the plugin was not loaded by validation"))?;
        if let Some(why) = plugin.lacks(S::KIND) {
            anyhow::bail!("{why}");
        }
        let id = ctx.id.to_string();
        let shared = Arc::new(Shared {
            plugin,
            services: Arc::new(Services::new(id.clone(), ctx.metrics.clone(), tables)),
            limits: self.limits.clone(),
            config_json,
            on_error: self.on_error(),
            metrics: PluginMetrics::new(ctx.metrics.clone(), &id),
            watchdog: Watchdog::default(),
        });
        // Room for one waiting batch per instance: enough to keep every worker busy, small
        // enough that back-pressure reaches the sender quickly.
        let (jobs, rx) = flume::bounded(self.instances);
        worker::start(shared, rx, self.instances)?;
        Ok(Arc::new(WasmProcessor {
            jobs,
            next,
            metrics: ctx
                .metrics
                .processor(&id, ctx.pipeline.as_deref().unwrap_or(""), S::KIND),
        }))
    }
}

struct WasmProcessor<S: PluginSignal> {
    jobs: flume::Sender<Job<S>>,
    next: SharedConsumer<S>,
    metrics: ProcessorMetrics,
}

#[async_trait]
impl<S: PluginSignal> Lifecycle for WasmProcessor<S> {}

#[async_trait]
impl<S: PluginSignal> Consumer<S> for WasmProcessor<S> {
    async fn consume(&self, batch: Batch<S>) -> Result<(), ConsumeError> {
        let before = batch.item_count() as u64;
        self.metrics.incoming.inc_by(before);
        let (reply, outcome) = oneshot::channel();
        self.jobs
            .send_async(Job { batch, reply })
            .await
            .map_err(|_| ConsumeError::retryable("the plugin workers have stopped"))?;
        let outcome = match outcome.await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                self.metrics.refused.inc_by(before);
                return Err(e);
            }
            Err(_) => {
                self.metrics.refused.inc_by(before);
                return Err(ConsumeError::retryable(
                    "a plugin worker stopped unexpectedly",
                ));
            }
        };
        let Some(batch) = outcome else {
            self.metrics.dropped.inc_by(before);
            return Ok(());
        };
        let after = batch.item_count() as u64;
        self.metrics.dropped.inc_by(before.saturating_sub(after));
        if after == 0 {
            return Ok(());
        }
        self.metrics.outgoing.inc_by(after);
        self.next.consume(batch).await
    }
}

#[cfg(test)]
mod tests;
