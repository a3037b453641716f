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
//! `metadata_cardinality_limit`. Unlike the Collector, a shard that receives nothing for
//! `metadata_expiration` is sent on and freed, so clients choosing new values (tenants come
//! and go) neither lock each other out for good nor grow the process's memory.

mod config;

pub use config::BatchConfig;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::component::{BuildContext, Lifecycle, Processor, ProcessorConfig};
use crate::config::ByteSize;
use crate::pipeline::{
    Bound, ConsumeError, Consumer, Held, Metadata, SharedConsumer, TraceBatch, Traces,
};
use crate::telemetry::ProcessorMetrics;

impl ProcessorConfig for BatchConfig {
    fn build_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Processor<Traces>>> {
        let (tx, rx) = flume::bounded(self.queue_size);
        let waiting = Bound::new(self.queue_bytes.bytes());
        let metrics = ctx
            .metrics
            .processor(&ctx.id.to_string(), ctx.pipeline.as_deref().unwrap_or(""));
        let mut config = self.clone();
        for k in &mut config.metadata_keys {
            k.make_ascii_lowercase();
        }
        let live = Arc::new(Mutex::new(HashMap::new()));
        let worker = Worker {
            id: ctx.id.to_string(),
            config: config.clone(),
            live: live.clone(),
            next,
            rx,
            metrics: metrics.clone(),
            held: Arc::default(),
            refuse_back: ctx.acknowledge_when_stored,
        };
        Ok(Arc::new(BatchProcessor {
            id: ctx.id.to_string(),
            tx: Mutex::new(Some(tx)),
            waiting,
            worker: Mutex::new(Some(worker)),
            task: Mutex::new(None),
            metrics,
            panics: ctx
                .metrics
                .component_panics("processor", &ctx.id.to_string()),
            config,
            live,
        }))
    }
}

struct BatchProcessor {
    id: String,
    tx: Mutex<Option<flume::Sender<Waiting>>>,
    /// Bytes (protobuf size) of the batches in the queue (`queue_bytes`).
    waiting: Bound,
    worker: Mutex<Option<Worker>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: ProcessorMetrics,
    /// Panics caught in the worker task.
    panics: Counter,
    /// Lower-cased `metadata_keys`.
    config: BatchConfig,
    /// The worker's shards, shared with it (see [`Live`]).
    live: Live,
}

/// With `metadata_keys`: every combination that has a shard in the worker or a batch on its way
/// there (what `metadata_cardinality_limit` counts), with the number of batches queued for it
/// and not yet taken by the worker. `consume` adds entries; the worker removes an entry with its
/// shard once the shard has been idle for `metadata_expiration` and no batch for it is queued.
type Live = Arc<Mutex<HashMap<Metadata, usize>>>;

/// A batch in the queue, with its share of `queue_bytes`.
type Waiting = (TraceBatch, Held);

/// The part of `metadata` that `keys` select: a batch's shard, and its metadata on the way out.
fn shard_key(keys: &[String], metadata: &Metadata) -> Metadata {
    Metadata::new(
        keys.iter()
            .flat_map(|k| metadata.get_all(k).map(|v| (k.clone(), v.to_string()))),
    )
}

#[async_trait]
impl Consumer<Traces> for BatchProcessor {
    async fn consume(&self, mut batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.item_count() as u64;
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
        let Some(held) = self.waiting.try_hold(batch.protobuf_len() as u64) else {
            return refused(format!(
                "processors.{}: queue is full (queue_bytes: {})",
                self.id,
                ByteSize(self.waiting.capacity())
            ));
        };
        if !self.config.metadata_keys.is_empty() {
            batch.metadata = shard_key(&self.config.metadata_keys, &batch.metadata);
            let limit = self.config.metadata_cardinality_limit;
            // Held across the send so the worker, which takes the lock to count the batch
            // out, cannot see it before it is counted in.
            let mut live = self.live.lock().expect("batch lock");
            if limit != 0 && live.len() >= limit && !live.contains_key(&batch.metadata) {
                return refused(format!(
                    "processors.{}: too many distinct metadata_keys combinations (metadata_cardinality_limit {limit}); idle ones are freed after metadata_expiration",
                    self.id
                ));
            }
            let key = batch.metadata.clone();
            return match tx.try_send((batch, held)) {
                Ok(()) => {
                    *live.entry(key).or_insert(0) += 1;
                    self.metrics.incoming.inc_by(spans);
                    Ok(())
                }
                Err(_) => refused(self.full_in_batches()),
            };
        }
        match tx.try_send((batch, held)) {
            Ok(()) => {
                self.metrics.incoming.inc_by(spans);
                Ok(())
            }
            Err(_) => refused(self.full_in_batches()),
        }
    }
}

impl BatchProcessor {
    fn full_in_batches(&self) -> String {
        format!(
            "processors.{}: queue is full (queue_size: {})",
            self.id, self.config.queue_size
        )
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
    /// Shared with `consume` (see [`Live`]).
    live: Live,
    next: SharedConsumer<Traces>,
    rx: flume::Receiver<Waiting>,
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
struct Shard {
    pending: TraceBatch,
    spans: usize,
    deadline: Option<Instant>,
    /// When data last arrived (for `metadata_expiration`).
    last_data: Instant,
}

impl Shard {
    fn new(now: Instant) -> Self {
        Self {
            pending: TraceBatch::default(),
            spans: 0,
            deadline: None,
            last_data: now,
        }
    }
}

impl Worker {
    async fn run(self) {
        let lost = self.held.swap(0, Ordering::Relaxed);
        if lost > 0 {
            self.metrics.dropped.inc_by(lost);
        }
        // Keyed by the batch's `metadata_keys` values (set by `consume`); a single shard when
        // there are none. `consume` bounds how many there can be; idle ones expire.
        let mut shards: HashMap<Metadata, Shard> = HashMap::new();
        let by_metadata = !self.config.metadata_keys.is_empty();
        let expiration = self.config.expiration();
        // Expiry is checked a few times per `metadata_expiration`, not at every wake-up.
        let sweep_every = expiration.map(|e| (e / 4).max(Duration::from_millis(10)));
        let mut next_sweep = sweep_every.map(|s| Instant::now() + s);
        if by_metadata {
            // A task taking over after a panic adopts its predecessor's shards (now empty),
            // so they expire like any other.
            let now = Instant::now();
            for key in self.live.lock().expect("batch lock").keys() {
                shards.insert(key.clone(), Shard::new(now));
            }
        }
        loop {
            let deadline = shards
                .values()
                .filter_map(|s| s.deadline)
                .chain(next_sweep.filter(|_| !shards.is_empty()))
                .min();
            let received = match deadline {
                Some(d) => tokio::select! {
                    r = self.rx.recv_async() => Some(r),
                    _ = tokio::time::sleep_until(d) => None,
                },
                None => Some(self.rx.recv_async().await),
            };
            match received {
                // Taken from the queue, the batch no longer counts against `queue_bytes`.
                Some(Ok((batch, _held))) => {
                    let now = Instant::now();
                    let key = if by_metadata {
                        if let Some(queued) = self
                            .live
                            .lock()
                            .expect("batch lock")
                            .get_mut(&batch.metadata)
                        {
                            *queued = queued.saturating_sub(1);
                        }
                        batch.metadata.clone()
                    } else {
                        Metadata::default()
                    };
                    let shard = shards.entry(key).or_insert_with(|| Shard::new(now));
                    shard.last_data = now;
                    shard.spans += batch.item_count();
                    self.held
                        .fetch_add(batch.item_count() as u64, Ordering::Relaxed);
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
                    if let (Some(e), Some(every)) = (expiration, sweep_every)
                        && next_sweep.is_some_and(|t| t <= now)
                    {
                        self.expire(&mut shards, e).await;
                        next_sweep = Some(Instant::now() + every);
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

    /// Sends on and frees every shard that received nothing for `expiration`, unless a batch
    /// for it is still queued (it will arrive and refresh it).
    async fn expire(&self, shards: &mut HashMap<Metadata, Shard>, expiration: Duration) {
        let now = Instant::now();
        let idle: Vec<Metadata> = shards
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_data) >= expiration)
            .map(|(k, _)| k.clone())
            .collect();
        if idle.is_empty() {
            return;
        }
        let mut freed = 0usize;
        for key in idle {
            if let Some(shard) = shards.get_mut(&key)
                && !shard.pending.is_empty()
            {
                self.flush(shard).await;
            }
            let mut live = self.live.lock().expect("batch lock");
            if live.get(&key).is_some_and(|&queued| queued > 0) {
                continue;
            }
            live.remove(&key);
            shards.remove(&key);
            freed += 1;
        }
        // Maps keep their peak capacity: give it back once most of it is unused.
        if shards.capacity() > 64 && shards.capacity() > 4 * shards.len() {
            shards.shrink_to_fit();
            let mut live = self.live.lock().expect("batch lock");
            live.shrink_to_fit();
        }
        tracing::debug!(processor = %self.id, freed, left = shards.len(), "idle metadata_keys shards expired");
    }

    async fn flush(&self, shard: &mut Shard) {
        let mut all = std::mem::take(&mut shard.pending);
        shard.spans = 0;
        shard.deadline = None;
        let max = self.config.send_batch_max_size;
        while !all.is_empty() {
            let chunk = if max > 0 && all.item_count() > max {
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
        let spans = batch.item_count() as u64;
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
                    crate::telemetry::log_limited!(error, "next stage rejected a batch; dropping it", processor = %self.id, %reason, spans);
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
