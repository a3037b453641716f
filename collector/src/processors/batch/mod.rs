//! `batch`: merges small batches into larger ones by size and time.
//!
//! `consume` only enqueues (a full queue is a retryable refusal); one task per instance merges
//! and sends on. When the next stage refuses with a retryable error, the task waits and tries
//! the same batch again, so back-pressure fills this queue and reaches the receiver instead of
//! losing data.

mod config;

pub use config::BatchConfig;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::component::{BuildContext, Lifecycle, Processor, ProcessorConfig};
use crate::pipeline::{ConsumeError, SharedConsumer, TraceBatch, TracesConsumer};
use crate::telemetry::ProcessorMetrics;

impl ProcessorConfig for BatchConfig {
    fn build(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer,
    ) -> anyhow::Result<Arc<dyn Processor>> {
        let (tx, rx) = flume::bounded(self.queue_size);
        let metrics = ctx
            .metrics
            .processor(&ctx.id.to_string(), ctx.pipeline.as_deref().unwrap_or(""));
        let worker = Worker {
            id: ctx.id.to_string(),
            config: self.clone(),
            next,
            rx,
            metrics: metrics.clone(),
        };
        Ok(Arc::new(BatchProcessor {
            id: ctx.id.to_string(),
            tx: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            task: Mutex::new(None),
            metrics,
        }))
    }
}

struct BatchProcessor {
    id: String,
    tx: Mutex<Option<flume::Sender<TraceBatch>>>,
    worker: Mutex<Option<Worker>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: ProcessorMetrics,
}

#[async_trait]
impl TracesConsumer for BatchProcessor {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.span_count() as u64;
        let tx = self.tx.lock().expect("batch lock").clone();
        let refused = |reason: String| {
            self.metrics.refused.inc_by(spans);
            Err(ConsumeError::Retryable {
                reason,
                retry_after: Some(Duration::from_secs(1)),
            })
        };
        let Some(tx) = tx else {
            return refused(format!("processors.{}: shutting down", self.id));
        };
        match tx.try_send(batch) {
            Ok(()) => {
                self.metrics.incoming.inc_by(spans);
                Ok(())
            }
            Err(_) => refused(format!("processors.{}: queue is full", self.id)),
        }
    }
}

#[async_trait]
impl Lifecycle for BatchProcessor {
    async fn start(&self) -> anyhow::Result<()> {
        if let Some(w) = self.worker.lock().expect("batch lock").take() {
            *self.task.lock().expect("batch lock") = Some(tokio::spawn(w.run()));
        }
        Ok(())
    }

    async fn shutdown(&self) {
        // Closing the queue makes the worker flush what it holds and exit.
        self.tx.lock().expect("batch lock").take();
        let task = self.task.lock().expect("batch lock").take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

struct Worker {
    id: String,
    config: BatchConfig,
    next: SharedConsumer,
    rx: flume::Receiver<TraceBatch>,
    metrics: ProcessorMetrics,
}

impl Worker {
    async fn run(self) {
        let mut pending = TraceBatch::default();
        let mut pending_spans = 0usize;
        let mut deadline: Option<Instant> = None;
        loop {
            let received = match deadline {
                Some(d) => tokio::select! {
                    r = self.rx.recv_async() => Some(r),
                    _ = tokio::time::sleep_until(d) => None,
                },
                None => Some(self.rx.recv_async().await),
            };
            match received {
                Some(Ok(batch)) => {
                    pending_spans += batch.span_count();
                    pending.merge(batch);
                    if deadline.is_none() && !self.config.timeout.is_zero() {
                        deadline = Some(Instant::now() + self.config.timeout.get());
                    }
                    if pending_spans >= self.config.send_batch_size {
                        self.flush(&mut pending, &mut pending_spans).await;
                        deadline = None;
                    }
                }
                // Timer fired.
                None => {
                    self.flush(&mut pending, &mut pending_spans).await;
                    deadline = None;
                }
                // Queue closed and drained: shutting down.
                Some(Err(_)) => {
                    self.flush(&mut pending, &mut pending_spans).await;
                    return;
                }
            }
        }
    }

    async fn flush(&self, pending: &mut TraceBatch, pending_spans: &mut usize) {
        let mut all = std::mem::take(pending);
        *pending_spans = 0;
        let max = self.config.send_batch_max_size;
        while !all.is_empty() {
            let chunk = if max > 0 && all.span_count() > max {
                all.split_front(max)
            } else {
                std::mem::take(&mut all)
            };
            self.send(chunk).await;
        }
    }

    /// Sends one batch on, waiting out retryable refusals (with a growing pause) so the queue
    /// in front of this worker fills and pushes back on the receivers.
    async fn send(&self, batch: TraceBatch) {
        let spans = batch.span_count() as u64;
        let mut pause = Duration::from_millis(5);
        loop {
            match self.next.consume(batch.clone()).await {
                Ok(()) => {
                    self.metrics.outgoing.inc_by(spans);
                    return;
                }
                Err(ConsumeError::Retryable {
                    reason,
                    retry_after,
                }) => {
                    tracing::debug!(processor = %self.id, %reason, "next stage refused; retrying");
                    let wait = retry_after.unwrap_or(pause).min(pause);
                    tokio::time::sleep(wait).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(ConsumeError::Permanent { reason }) => {
                    tracing::error!(processor = %self.id, %reason, spans, "next stage rejected a batch; dropping it");
                    batch.delivery.fail();
                    self.metrics.dropped.inc_by(spans);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
