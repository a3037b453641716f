//! `memory_limiter`: refuses data (retryably) while the process uses too much memory.
//!
//! A background task reads the resident set size every `check_interval`. Above the soft limit
//! (`limit_mib - spike_limit_mib`) new data is refused with a retryable error, so senders back
//! off and retry, until usage falls back under it. Put it first in a pipeline so refused data
//! is never decoded further.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, Lifecycle, Processor, ProcessorConfig};
use crate::pipeline::{ConsumeError, SharedConsumer, TraceBatch, TracesConsumer};
use crate::telemetry::ProcessorMetrics;
use crate::telemetry::process::read_sample;

mod config;
pub use config::MemoryLimiterConfig;

impl ProcessorConfig for MemoryLimiterConfig {
    fn build(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer,
    ) -> anyhow::Result<Arc<dyn Processor>> {
        let (hard, soft) = self.limits()?;
        Ok(Arc::new(MemoryLimiter {
            id: ctx.id.to_string(),
            next,
            state: Arc::new(State {
                refusing: AtomicBool::new(false),
                last_rss: AtomicU64::new(0),
            }),
            hard,
            soft,
            check_interval: self.check_interval.get(),
            stop: CancellationToken::new(),
            metrics: ctx
                .metrics
                .processor(&ctx.id.to_string(), ctx.pipeline.as_deref().unwrap_or("")),
        }))
    }
}

struct State {
    refusing: AtomicBool,
    last_rss: AtomicU64,
}

struct MemoryLimiter {
    id: String,
    next: SharedConsumer,
    state: Arc<State>,
    hard: u64,
    soft: u64,
    check_interval: std::time::Duration,
    stop: CancellationToken,
    metrics: ProcessorMetrics,
}

impl MemoryLimiter {
    fn check(state: &State, id: &str, soft: u64, hard: u64) {
        let Some(sample) = read_sample("self") else {
            return;
        };
        let rss = sample.rss_bytes;
        state.last_rss.store(rss, Ordering::Relaxed);
        let was = state.refusing.swap(rss >= soft, Ordering::Relaxed);
        const MIB: u64 = 1024 * 1024;
        if rss >= soft && !was {
            tracing::warn!(
                processor = id,
                rss_mib = rss / MIB,
                soft_limit_mib = soft / MIB,
                hard_limit_mib = hard / MIB,
                "memory use above the soft limit: refusing data"
            );
        } else if rss < soft && was {
            tracing::info!(
                processor = id,
                rss_mib = rss / MIB,
                "memory use back under the soft limit: accepting data"
            );
        }
    }
}

#[async_trait]
impl TracesConsumer for MemoryLimiter {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.span_count() as u64;
        self.metrics.incoming.inc_by(spans);
        if self.state.refusing.load(Ordering::Relaxed) {
            self.metrics.refused.inc_by(spans);
            const MIB: u64 = 1024 * 1024;
            return Err(ConsumeError::Retryable {
                reason: format!(
                    "processors.{}: memory use {} MiB is above the soft limit {} MiB",
                    self.id,
                    self.state.last_rss.load(Ordering::Relaxed) / MIB,
                    self.soft / MIB
                ),
                retry_after: Some(self.check_interval.max(std::time::Duration::from_secs(1))),
            });
        }
        let r = self.next.consume(batch).await;
        if r.is_ok() {
            self.metrics.outgoing.inc_by(spans);
        }
        r
    }
}

#[async_trait]
impl Lifecycle for MemoryLimiter {
    async fn start(&self) -> anyhow::Result<()> {
        Self::check(&self.state, &self.id, self.soft, self.hard);
        let (state, id, soft, hard, every, stop) = (
            self.state.clone(),
            self.id.clone(),
            self.soft,
            self.hard,
            self.check_interval,
            self.stop.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => Self::check(&state, &id, soft, hard),
                    _ = stop.cancelled() => return,
                }
            }
        });
        Ok(())
    }

    async fn shutdown(&self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Recorder, context, spans};

    fn cfg(limit_mib: u64, spike: Option<u64>) -> MemoryLimiterConfig {
        MemoryLimiterConfig {
            check_interval: Duration::from_millis(10),
            limit_mib,
            spike_limit_mib: spike,
            limit_percentage: 0,
            spike_limit_percentage: 0,
        }
    }

    #[tokio::test]
    async fn refuses_retryably_above_the_soft_limit() {
        let rec = Recorder::new();
        // A 2 MiB limit is below any real process's RSS: always refusing.
        let p = cfg(2, Some(1))
            .build(&context("memory_limiter"), rec.clone())
            .unwrap();
        p.start().await.unwrap();
        let err = p.consume(spans(3)).await.unwrap_err();
        assert!(err.is_retryable());
        assert!(
            err.to_string().contains("above the soft limit 1 MiB"),
            "{err}"
        );
        assert!(rec.batch_sizes().is_empty());
        p.shutdown().await;
    }

    #[tokio::test]
    async fn passes_data_below_the_limit() {
        let rec = Recorder::new();
        let p = cfg(64 * 1024, None)
            .build(&context("memory_limiter"), rec.clone())
            .unwrap();
        p.start().await.unwrap();
        p.consume(spans(3)).await.unwrap();
        assert_eq!(rec.batch_sizes(), vec![3]);
        p.shutdown().await;
    }

    #[test]
    fn validation_names_options() {
        let p = cfg(0, None).validate();
        assert_eq!(p[0].path, "limit_mib");
        let p = cfg(100, Some(100)).validate();
        assert_eq!(p[0].path, "spike_limit_mib");
        assert!(p[0].message.contains("got 100"));
    }
}
