//! `batch`: merges small batches into larger ones by size and time.
//!
//! `consume` only enqueues (a full queue is a retryable refusal); one task per instance merges
//! and sends on. When the next stage refuses with a retryable error, the task waits and tries
//! the same batch again, so back-pressure fills this queue and reaches the receiver instead of
//! losing data. In a pipeline whose senders all wait for their data to be stored on disk
//! (every exporter has `sending_queue.storage`), such a refusal instead fails the batch back
//! to them at once, so they get a retryable answer rather than a request that hangs. A panic in
//! the task fails what it held (retryable), counted as dropped, and a
//! new task takes over the queue.
//!
//! With `metadata_keys`, the worker keeps one pending batch (a shard, with its own timer) per
//! distinct combination of those keys' values in the request metadata, as the OpenTelemetry
//! Collector does; `consume` counts the combinations and refuses new ones beyond
//! `metadata_cardinality_limit`.

mod config;

pub use config::BatchConfig;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::component::{BuildContext, Lifecycle, Processor, ProcessorConfig};
use crate::pipeline::{ConsumeError, Metadata, SharedConsumer, TraceBatch, TracesConsumer};
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
        let mut config = self.clone();
        for k in &mut config.metadata_keys {
            k.make_ascii_lowercase();
        }
        let worker = Worker {
            id: ctx.id.to_string(),
            config: config.clone(),
            next,
            rx,
            metrics: metrics.clone(),
            held: Arc::default(),
            refuse_back: ctx.acknowledge_when_stored,
        };
        Ok(Arc::new(BatchProcessor {
            id: ctx.id.to_string(),
            tx: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            task: Mutex::new(None),
            metrics,
            panics: ctx
                .metrics
                .component_panics("processor", &ctx.id.to_string()),
            config,
            shards: Mutex::new(HashSet::new()),
        }))
    }
}

struct BatchProcessor {
    id: String,
    tx: Mutex<Option<flume::Sender<TraceBatch>>>,
    worker: Mutex<Option<Worker>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: ProcessorMetrics,
    /// Panics caught in the worker task.
    panics: Counter,
    /// Lower-cased `metadata_keys`.
    config: BatchConfig,
    /// Every `metadata_keys` combination seen so far (for the cardinality limit).
    shards: Mutex<HashSet<Metadata>>,
}

/// The part of `metadata` that `keys` select: a batch's shard, and its metadata on the way out.
fn shard_key(keys: &[String], metadata: &Metadata) -> Metadata {
    Metadata::new(
        keys.iter()
            .flat_map(|k| metadata.get_all(k).map(|v| (k.clone(), v.to_string()))),
    )
}

#[async_trait]
impl TracesConsumer for BatchProcessor {
    async fn consume(&self, mut batch: TraceBatch) -> Result<(), ConsumeError> {
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
        if !self.config.metadata_keys.is_empty() {
            batch.metadata = shard_key(&self.config.metadata_keys, &batch.metadata);
            let limit = self.config.metadata_cardinality_limit;
            let mut shards = self.shards.lock().expect("batch lock");
            if !shards.contains(&batch.metadata) {
                if limit != 0 && shards.len() >= limit {
                    return refused(format!(
                        "processors.{}: too many distinct metadata_keys combinations (metadata_cardinality_limit {limit})",
                        self.id
                    ));
                }
                shards.insert(batch.metadata.clone());
            }
        }
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
            let (id, panics) = (self.id.clone(), self.panics.clone());
            *self.task.lock().expect("batch lock") = Some(tokio::spawn(async move {
                crate::panics::supervise_task(id, "batch", panics, || w.clone().run()).await
            }));
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

/// The merging task's state. A panic in it (or in a next stage it calls) ends the task, whose
/// pending batches then fail (their `Delivery` is dropped while the thread unwinds); a fresh
/// clone takes over the same queue.
#[derive(Clone)]
struct Worker {
    id: String,
    config: BatchConfig,
    next: SharedConsumer,
    rx: flume::Receiver<TraceBatch>,
    metrics: ProcessorMetrics,
    /// Spans taken from the queue and not yet sent on or dropped, shared by the task and its
    /// replacement: what a panic lost, counted as dropped when the new task starts.
    held: Arc<AtomicU64>,
    /// Every sender of this pipeline waits for its data to be stored
    /// ([`BuildContext::acknowledge_when_stored`]): a retryable refusal of the next stage fails
    /// the batch back to them (they retry) instead of being waited out here, where their
    /// requests would hang.
    refuse_back: bool,
}

/// One pending batch and its timer.
#[derive(Default)]
struct Shard {
    pending: TraceBatch,
    spans: usize,
    deadline: Option<Instant>,
}

impl Worker {
    async fn run(self) {
        let lost = self.held.swap(0, Ordering::Relaxed);
        if lost > 0 {
            self.metrics.dropped.inc_by(lost);
        }
        // Keyed by the batch's `metadata_keys` values (set by `consume`); a single shard when
        // there are none. Shards are kept once made: `consume` bounds how many there can be.
        let mut shards: HashMap<Metadata, Shard> = HashMap::new();
        let by_metadata = !self.config.metadata_keys.is_empty();
        loop {
            let deadline = shards.values().filter_map(|s| s.deadline).min();
            let received = match deadline {
                Some(d) => tokio::select! {
                    r = self.rx.recv_async() => Some(r),
                    _ = tokio::time::sleep_until(d) => None,
                },
                None => Some(self.rx.recv_async().await),
            };
            match received {
                Some(Ok(batch)) => {
                    let key = if by_metadata {
                        batch.metadata.clone()
                    } else {
                        Metadata::default()
                    };
                    let shard = shards.entry(key).or_default();
                    shard.spans += batch.span_count();
                    self.held
                        .fetch_add(batch.span_count() as u64, Ordering::Relaxed);
                    shard.pending.merge(batch);
                    if shard.deadline.is_none() && !self.config.timeout.is_zero() {
                        shard.deadline = Some(Instant::now() + self.config.timeout.get());
                    }
                    if shard.spans >= self.config.send_batch_size {
                        self.flush(shard).await;
                    }
                }
                // A timer fired.
                None => {
                    let now = Instant::now();
                    for shard in shards.values_mut() {
                        if shard.deadline.is_some_and(|d| d <= now) {
                            self.flush(shard).await;
                        }
                    }
                }
                // Queue closed and drained: shutting down.
                Some(Err(_)) => {
                    for shard in shards.values_mut() {
                        self.flush(shard).await;
                    }
                    return;
                }
            }
        }
    }

    async fn flush(&self, shard: &mut Shard) {
        let mut all = std::mem::take(&mut shard.pending);
        shard.spans = 0;
        shard.deadline = None;
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
                    self.held.fetch_sub(spans, Ordering::Relaxed);
                    return;
                }
                Err(ConsumeError::Retryable {
                    reason,
                    retry_after,
                }) => {
                    if self.refuse_back {
                        tracing::debug!(processor = %self.id, %reason, spans, "next stage refused; refusing the batch's requests");
                        batch.delivery.fail();
                        self.metrics.refused.inc_by(spans);
                        self.held.fetch_sub(spans, Ordering::Relaxed);
                        return;
                    }
                    tracing::debug!(processor = %self.id, %reason, "next stage refused; retrying");
                    let wait = retry_after.unwrap_or(pause).min(pause);
                    tokio::time::sleep(wait).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(ConsumeError::Permanent { reason }) => {
                    tracing::error!(processor = %self.id, %reason, spans, "next stage rejected a batch; dropping it");
                    batch.delivery.reject_because(&reason);
                    self.metrics.dropped.inc_by(spans);
                    self.held.fetch_sub(spans, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
