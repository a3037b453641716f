//! `memory_limiter`: refuses data (retryably) while the process uses too much memory.
//!
//! Usage is the process's resident set size (`/proc/self/statm` times the real page size),
//! read every `check_interval` by a background task. Above the soft limit (hard limit minus
//! the spike limit) new data is refused with a retryable error, so senders back off and retry,
//! until usage falls back under it. Between ticks, a reading within the spike margin of the
//! soft limit makes every call read usage again (at most once per [`INGEST_CHECK_EVERY`]), so a
//! burst is refused as it builds rather than at the next tick. `limit_percentage` is a
//! percentage of the smallest cgroup limit on the process (v1 or v2, own cgroup or any
//! ancestor) or of the machine's memory ([`cgroup`]). Put it first in a pipeline so refused
//! data is never decoded further.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, Lifecycle, Processor, ProcessorConfig};
use crate::pipeline::{ConsumeError, Consumer, SharedConsumer, TraceBatch, Traces};
use crate::telemetry::ProcessorMetrics;

pub mod cgroup;
mod config;
pub use config::MemoryLimiterConfig;

/// Shortest time between two readings made on ingest (a read of `/proc/self/statm` costs a
/// few microseconds).
pub const INGEST_CHECK_EVERY: Duration = Duration::from_millis(1);

const MIB: u64 = 1024 * 1024;

/// Reads the memory in use, in bytes.
type Measure = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

impl ProcessorConfig for MemoryLimiterConfig {
    fn build_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Processor<Traces>>> {
        let available = cgroup::available_memory(Path::new("/"));
        let (hard, soft) = self.limits(available.as_ref())?;
        let id = ctx.id.to_string();
        match &available {
            Some(a) if self.limit_mib > 0 && hard > a.bytes => tracing::warn!(
                processor = %id,
                limit_mib = self.limit_mib,
                available_mib = a.bytes / MIB,
                source = %a.source.display(),
                "limit_mib is above the memory available to the process: the kernel may kill it first"
            ),
            _ => {}
        }
        tracing::info!(
            processor = %id,
            hard_limit_mib = hard / MIB,
            soft_limit_mib = soft / MIB,
            available_mib = available.as_ref().map(|a| a.bytes / MIB),
            source = available.as_ref().map(|a| a.source.display().to_string()),
            page_size = cgroup::page_size(),
            "memory limits"
        );
        Ok(Arc::new(MemoryLimiter::new(
            id,
            next,
            hard,
            soft,
            self.check_interval.get(),
            Arc::new(cgroup::resident_bytes),
            ctx.metrics
                .processor(&ctx.id.to_string(), ctx.pipeline.as_deref().unwrap_or("")),
        )))
    }
}

/// Shared between the consumer and the background ticker.
struct State {
    refusing: AtomicBool,
    last_usage: AtomicU64,
    /// When usage was last read, in nanoseconds since `State::epoch`.
    last_read_ns: AtomicU64,
    epoch: Instant,
    measure: Measure,
    id: String,
    hard: u64,
    soft: u64,
    /// Usage at or above this makes each call read usage again (rate-limited).
    close: u64,
}

struct MemoryLimiter {
    next: SharedConsumer<Traces>,
    state: Arc<State>,
    check_interval: Duration,
    stop: CancellationToken,
    metrics: ProcessorMetrics,
}

impl MemoryLimiter {
    fn new(
        id: String,
        next: SharedConsumer<Traces>,
        hard: u64,
        soft: u64,
        check_interval: Duration,
        measure: Measure,
        metrics: ProcessorMetrics,
    ) -> Self {
        // The spike margin: hard - soft, but at least a fifth of the hard limit, so a
        // configuration without spike headroom still gets ingest checks before it refuses.
        let margin = (hard - soft).max(hard / 5);
        Self {
            next,
            state: Arc::new(State {
                refusing: AtomicBool::new(false),
                last_usage: AtomicU64::new(0),
                last_read_ns: AtomicU64::new(0),
                epoch: Instant::now(),
                measure,
                id,
                hard,
                soft,
                close: soft.saturating_sub(margin),
            }),
            check_interval,
            stop: CancellationToken::new(),
            metrics,
        }
    }
}

impl State {
    /// Reads usage and switches between accepting and refusing.
    fn check(&self) {
        self.last_read_ns
            .store(self.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let Some(usage) = (self.measure)() else {
            return;
        };
        self.last_usage.store(usage, Ordering::Relaxed);
        let over = usage >= self.soft;
        let was = self.refusing.swap(over, Ordering::Relaxed);
        if over && !was {
            tracing::warn!(
                processor = %self.id,
                rss_mib = usage / MIB,
                soft_limit_mib = self.soft / MIB,
                hard_limit_mib = self.hard / MIB,
                "memory use above the soft limit: refusing data"
            );
        } else if !over && was {
            tracing::info!(
                processor = %self.id,
                rss_mib = usage / MIB,
                "memory use back under the soft limit: accepting data"
            );
        }
    }

    /// On ingest: reads usage again when the last reading was close to (or over) the soft
    /// limit and is older than [`INGEST_CHECK_EVERY`]; one caller at a time does the read.
    fn check_on_ingest(&self) {
        if !self.refusing.load(Ordering::Relaxed)
            && self.last_usage.load(Ordering::Relaxed) < self.close
        {
            return;
        }
        let now = self.epoch.elapsed().as_nanos() as u64;
        let last = self.last_read_ns.load(Ordering::Relaxed);
        if now.saturating_sub(last) < INGEST_CHECK_EVERY.as_nanos() as u64 {
            return;
        }
        if self
            .last_read_ns
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.check();
        }
    }
}

#[async_trait]
impl Consumer<Traces> for MemoryLimiter {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.item_count() as u64;
        self.metrics.incoming.inc_by(spans);
        self.state.check_on_ingest();
        if self.state.refusing.load(Ordering::Relaxed) {
            self.metrics.refused.inc_by(spans);
            return Err(ConsumeError::Retryable {
                reason: format!(
                    "processors.{}: memory use {} MiB is above the soft limit {} MiB",
                    self.state.id,
                    self.state.last_usage.load(Ordering::Relaxed) / MIB,
                    self.state.soft / MIB
                ),
                retry_after: Some(self.check_interval.max(Duration::from_secs(1))),
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
        self.state.check();
        let (state, every, stop) = (self.state.clone(), self.check_interval, self.stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => state.check(),
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
    use crate::component::Validate;
    use crate::testing::{Recorder, context, spans};

    fn cfg(limit_mib: u64, spike: Option<u64>) -> MemoryLimiterConfig {
        MemoryLimiterConfig {
            check_interval: crate::config::Duration::from_millis(10),
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
            .build_traces(&context("memory_limiter"), rec.clone())
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
            .build_traces(&context("memory_limiter"), rec.clone())
            .unwrap();
        p.start().await.unwrap();
        p.consume(spans(3)).await.unwrap();
        assert_eq!(rec.batch_sizes(), vec![3]);
        p.shutdown().await;
    }

    /// A limiter over a usage the test sets; hard 100 MiB, soft 80 MiB, no ticks after start.
    fn scripted(rec: Arc<Recorder>) -> (MemoryLimiter, Arc<AtomicU64>) {
        let usage = Arc::new(AtomicU64::new(10 * MIB));
        let u = usage.clone();
        let ctx = context("memory_limiter");
        let limiter = MemoryLimiter::new(
            "memory_limiter".into(),
            rec,
            100 * MIB,
            80 * MIB,
            Duration::from_secs(3600),
            Arc::new(move || Some(u.load(Ordering::Relaxed))),
            ctx.metrics.processor("memory_limiter", "traces"),
        );
        (limiter, usage)
    }

    #[tokio::test]
    async fn close_to_the_limit_each_call_reads_usage_again() {
        let rec = Recorder::new();
        let (p, usage) = scripted(rec.clone());
        p.start().await.unwrap();
        p.consume(spans(1)).await.unwrap();
        // Far from the limit (last reading 10 MiB): only the ticker reads, so a jump between
        // ticks goes unseen until the next one.
        usage.store(70 * MIB, Ordering::Relaxed);
        p.consume(spans(1)).await.unwrap();
        p.state.check(); // the next tick: 70 MiB is within the spike margin of the soft limit
        assert_eq!(p.state.close, 60 * MIB);
        usage.store(90 * MIB, Ordering::Relaxed);
        tokio::time::sleep(2 * INGEST_CHECK_EVERY).await;
        let err = p.consume(spans(1)).await.unwrap_err();
        assert!(
            err.is_retryable() && err.to_string().contains("90 MiB"),
            "{err}"
        );
        // Refusing: calls keep reading, so acceptance resumes as soon as usage falls.
        usage.store(50 * MIB, Ordering::Relaxed);
        tokio::time::sleep(2 * INGEST_CHECK_EVERY).await;
        p.consume(spans(1)).await.unwrap();
        assert_eq!(rec.batch_sizes(), vec![1, 1, 1]);
        p.shutdown().await;
    }

    #[tokio::test]
    async fn ingest_reads_are_rate_limited() {
        let reads = Arc::new(AtomicU64::new(0));
        let r = reads.clone();
        let ctx = context("memory_limiter");
        let p = MemoryLimiter::new(
            "memory_limiter".into(),
            Recorder::new(),
            100 * MIB,
            80 * MIB,
            Duration::from_secs(3600),
            Arc::new(move || {
                r.fetch_add(1, Ordering::Relaxed);
                Some(95 * MIB)
            }),
            ctx.metrics.processor("memory_limiter", "traces"),
        );
        p.start().await.unwrap();
        for _ in 0..1000 {
            assert!(p.consume(spans(1)).await.is_err());
        }
        // One read at start plus at most one per millisecond of the loop.
        let elapsed_ms = p.state.epoch.elapsed().as_millis() as u64;
        let n = reads.load(Ordering::Relaxed);
        assert!(n <= 2 + elapsed_ms, "{n} reads in {elapsed_ms} ms");
        p.shutdown().await;
    }

    #[test]
    fn percentages_of_the_available_memory() {
        let c = MemoryLimiterConfig {
            check_interval: crate::config::Duration::from_secs(1),
            limit_mib: 0,
            spike_limit_mib: None,
            limit_percentage: 80,
            spike_limit_percentage: 25,
        };
        let a = cgroup::Limit {
            bytes: 1000 * MIB,
            source: "/sys/fs/cgroup/memory.max".into(),
        };
        assert_eq!(c.limits(Some(&a)).unwrap(), (800 * MIB, 550 * MIB));
        let e = c.limits(None).unwrap_err();
        assert!(e.to_string().starts_with("limit_percentage"), "{e}");
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
