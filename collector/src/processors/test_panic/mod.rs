//! `test_panic`: a test facility, not a component to deploy. It passes batches on unchanged
//! from a worker thread, except that the worker panics on the first `panic_batches` batches,
//! so tests can watch a real process contain a panic: the worker is restarted, the batch
//! fails with a retryable error, the sender retries.
//!
//! It is registered only when the environment variable `WASMCOL_TEST_COMPONENTS=1` is set at
//! start-up (see [`crate::components::processors`]), so a normal configuration cannot use it.
//!
//! ```yaml
//! processors:
//!   test_panic:
//!     panic_batches: 3
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::component::{BuildContext, Lifecycle, Processor, ProcessorConfig, Validate};
use crate::pipeline::{ConsumeError, Consumer, SharedConsumer, TraceBatch, Traces};
use crate::telemetry::ProcessorMetrics;

/// `processors.test_panic`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestPanicConfig {
    /// How many batches, counted from the first, make the worker panic; later ones pass.
    pub panic_batches: u64,
}

impl Validate for TestPanicConfig {}

impl ProcessorConfig for TestPanicConfig {
    fn build_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Processor<Traces>>> {
        let id = ctx.id.to_string();
        let (jobs, rx) = flume::bounded::<Job>(1);
        let seen = Arc::new(AtomicU64::new(0));
        let panic_batches = self.panic_batches;
        crate::panics::spawn_thread(
            format!("test_panic-{id}"),
            id.clone(),
            ctx.metrics.component_panics("processor", &id),
            move || {
                for job in rx.iter() {
                    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                    if n <= panic_batches {
                        // `job` unwinds with the worker: its batch first (marked failed),
                        // then its reply (the caller's retryable error).
                        panic!("test_panic: batch {n} of the first {panic_batches} panics");
                    }
                    let _ = job.reply.send(job.batch);
                }
            },
        )?;
        Ok(Arc::new(TestPanic {
            id: id.clone(),
            jobs,
            next,
            metrics: ctx
                .metrics
                .processor(&id, ctx.pipeline.as_deref().unwrap_or("")),
        }))
    }
}

/// Fields drop in this order: the batch is failed before the caller hears.
struct Job {
    batch: TraceBatch,
    reply: oneshot::Sender<TraceBatch>,
}

struct TestPanic {
    id: String,
    jobs: flume::Sender<Job>,
    next: SharedConsumer<Traces>,
    metrics: ProcessorMetrics,
}

#[async_trait]
impl Lifecycle for TestPanic {}

#[async_trait]
impl Consumer<Traces> for TestPanic {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.item_count() as u64;
        self.metrics.incoming.inc_by(spans);
        let (reply, outcome) = oneshot::channel();
        let refused = |why: &str| {
            self.metrics.refused.inc_by(spans);
            ConsumeError::retryable(format!("processors.{}: {why}", self.id))
        };
        self.jobs
            .send_async(Job { batch, reply })
            .await
            .map_err(|_| refused("the worker has stopped"))?;
        let batch = outcome
            .await
            .map_err(|_| refused("the worker stopped while holding the batch"))?;
        self.metrics.outgoing.inc_by(spans);
        self.next.consume(batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Delivery, DeliveryTracker, Outcome};
    use crate::testing::{Recorder, context, spans};

    #[tokio::test]
    async fn the_first_batches_fail_retryably_then_batches_pass() {
        let ctx = context("test_panic");
        let metrics = ctx.metrics.clone();
        let rec = Recorder::new();
        let p = TestPanicConfig { panic_batches: 2 }
            .build_traces(&ctx, rec.clone())
            .unwrap();
        for _ in 0..2 {
            let seen = Arc::new(std::sync::Mutex::new(None));
            let s = seen.clone();
            let delivery =
                Delivery::tracked(DeliveryTracker::new(move |o| *s.lock().unwrap() = Some(o)));
            let err = p
                .consume(spans(3).with_delivery(delivery))
                .await
                .unwrap_err();
            assert!(err.is_retryable(), "{err}");
            assert_eq!(*seen.lock().unwrap(), Some(Outcome::Failed));
        }
        p.consume(spans(4)).await.unwrap();
        assert_eq!(rec.batch_sizes(), vec![4]);
        assert_eq!(metrics.component_panics("processor", "test_panic").get(), 2);
    }
}
