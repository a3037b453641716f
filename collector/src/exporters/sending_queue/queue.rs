//! The queue, its consumer tasks and the retry loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::config::Sizer;
use super::persistent::{self, StoredRecord};
use super::{Accepted, QueueConfig, RetryConfig, SendError, Sender};
use crate::component::{BuildContext, Lifecycle};
use crate::compute;
use crate::config::Duration as ConfigDuration;
use crate::pipeline::{Bound, ConsumeError, Consumer, Delivery, Held, TraceBatch, Traces};
use crate::storage::{DEFAULT_SEGMENT_BYTES, DiskQueue, PushError, QueueOptions, Store};
use crate::telemetry::ExporterMetrics;

/// Attempts a failing batch still gets once shutdown has begun (besides the one in flight).
const RETRIES_WHILE_STOPPING: u32 = 2;
/// Longest wait between those attempts.
const MAX_DELAY_WHILE_STOPPING: Duration = Duration::from_secs(1);

/// An exporter built from a [`Sender`]: a bounded queue drained by `num_consumers` tasks, each
/// sending with retries and a per-attempt timeout (or, with the queue disabled, the same retry
/// loop run inline in `consume`).
///
/// Delivery: a batch's [`Delivery`] is released once the destination took it, and marked
/// failed when the batch is given up (permanent error, partial rejection, retries exhausted,
/// shutdown, or the process stopping with the batch still queued). A batch refused at the door
/// (queue full, shutting down) is left to the caller, who gets the retryable error. With an
/// on-disk queue the delivery is released once the batch is stored; the record is removed
/// when it is sent or given up for good, and kept for the next start when the exporter stops
/// first.
///
/// Shutdown stops accepting, lets the consumers drain the queue and returns when they are
/// done. While stopping, a batch that fails with a retryable error gets at most
/// `RETRIES_WHILE_STOPPING` more attempts, at most `MAX_DELAY_WHILE_STOPPING` apart; once
/// one batch has been given up that way the destination is taken to be down and every
/// remaining batch gets a single attempt, so draining a full queue towards a dead back end
/// ends quickly. The service bounds the whole drain with its own timeout.
pub struct SendingQueue<S: Sender> {
    inner: Arc<Inner<S>>,
    /// `None` when `sending_queue.enabled` is false.
    queue: Option<Queue<S::Payload>>,
}

/// Where queued batches wait.
enum Queue<P> {
    /// In memory: lost if the process stops before they are sent.
    Memory(MemoryQueue<P>),
    /// On disk (`sending_queue.storage`).
    Disk(DiskBackend),
}

struct MemoryQueue<P> {
    /// Taken at shutdown: the consumers then drain what is left and stop.
    tx: RwLock<Option<flume::Sender<Item<P>>>>,
    /// Taken by `start`, which hands a clone to every consumer.
    rx: Mutex<Option<flume::Receiver<Item<P>>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    num_consumers: usize,
    sizer: Sizer,
    /// `queue_size` in `sizer` units, held by every batch from the moment it is accepted until
    /// it is delivered or given up (so batches being sent count too).
    bound: Bound,
}

struct DiskBackend {
    /// `None` when the named extension is not enabled (a config built by hand); `start` fails.
    store: Option<Store>,
    storage_id: String,
    owner: String,
    /// How `queue_size` counts, for refusals' messages (the queue's own copy is in `options`).
    sizer: Sizer,
    options: QueueOptions,
    num_consumers: usize,
    /// Opened by `start`.
    queue: OnceLock<Arc<DiskQueue>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// One batch on its way. Dropping it while it still holds its delivery (the runtime stopped
/// with the batch queued) marks the data as lost; dropping it while it holds its on-disk record
/// hands the record out again.
struct Item<P> {
    payload: P,
    spans: u64,
    /// Its share of the memory queue's bound, given back when the item is dropped.
    _held: Option<Held>,
    delivery: Option<Delivery>,
    stored: Option<StoredRecord>,
}

impl<P> Item<P> {
    /// Lets go of the delivery without marking it failed: the data was delivered, or was never
    /// accepted and the caller keeps responsibility for it.
    fn release(mut self) {
        self.delivery.take();
        if let Some(r) = self.stored.take() {
            r.ack();
        }
    }

    /// Marks the data as not delivered; `rejected` (why) when the destination refused it
    /// (resending it would fail the same way), otherwise it is worth handing over again.
    fn fail(mut self, rejected: Option<&str>) {
        if let Some(d) = self.delivery.take() {
            match rejected {
                Some(reason) => d.reject_because(reason),
                None => d.fail(),
            }
        }
        if let Some(r) = self.stored.take() {
            r.ack();
        }
    }

    /// The exporter is stopping and the batch was not sent: an on-disk record stays for the next
    /// start (true); a batch in memory is lost (false, and marked failed).
    fn keep_for_next_start(mut self) -> bool {
        match self.stored.take() {
            Some(r) => {
                r.keep();
                true
            }
            None => {
                self.fail(None);
                false
            }
        }
    }
}

impl<P> Drop for Item<P> {
    fn drop(&mut self) {
        if let Some(d) = self.delivery.take() {
            d.fail();
        }
    }
}

struct Inner<S> {
    id: String,
    sender: S,
    retry: RetryConfig,
    timeout: Duration,
    metrics: ExporterMetrics,
    stopping: CancellationToken,
    /// A batch was given up while stopping: the destination is down, stop retrying.
    gave_up_while_stopping: AtomicBool,
}

impl<S: Sender> SendingQueue<S> {
    /// Wraps `sender`; `timeout` bounds each attempt (zero: no bound). Consumer tasks start
    /// (and an on-disk queue opens) with [`Lifecycle::start`].
    pub fn new(
        ctx: &BuildContext,
        sender: S,
        queue: &QueueConfig,
        retry: &RetryConfig,
        timeout: ConfigDuration,
    ) -> Self {
        let id = ctx.id.to_string();
        let metrics = ctx.metrics.exporter(&id);
        let queue = queue.enabled.then(|| {
            metrics.queue_capacity.set(queue.queue_size as i64);
            let num_consumers = queue.num_consumers.max(1);
            match queue.storage_id() {
                Some(storage) => Queue::Disk(DiskBackend {
                    store: ctx.stores.get(&storage).cloned(),
                    storage_id: storage.to_string(),
                    owner: persistent::owner(&ctx.id),
                    sizer: queue.sizer,
                    options: QueueOptions {
                        capacity: queue.queue_size,
                        sizer: persistent::sizer(queue.sizer),
                        fsync: false,
                        max_segment_bytes: DEFAULT_SEGMENT_BYTES,
                    },
                    num_consumers,
                    queue: OnceLock::new(),
                    workers: Mutex::new(Vec::new()),
                }),
                None => {
                    let (tx, rx) = flume::unbounded();
                    Queue::Memory(MemoryQueue {
                        tx: RwLock::new(Some(tx)),
                        rx: Mutex::new(Some(rx)),
                        workers: Mutex::new(Vec::new()),
                        num_consumers,
                        sizer: queue.sizer,
                        bound: Bound::new(queue.queue_size),
                    })
                }
            }
        });
        Self {
            inner: Arc::new(Inner {
                id,
                sender,
                retry: retry.clone(),
                timeout: timeout.get(),
                metrics,
                stopping: CancellationToken::new(),
                gave_up_while_stopping: AtomicBool::new(false),
            }),
            queue,
        }
    }

    /// The wrapped sender.
    pub fn sender(&self) -> &S {
        &self.inner.sender
    }

    fn shutting_down(&self, spans: u64) -> ConsumeError {
        self.inner.metrics.enqueue_failed.inc_by(spans);
        ConsumeError::retryable(format!("exporters.{}: shutting down", self.inner.id))
    }

    fn full(&self, spans: u64, capacity: u64, sizer: Sizer) -> ConsumeError {
        self.inner.metrics.enqueue_failed.inc_by(spans);
        let (size, unit) = match sizer {
            Sizer::Requests => (capacity.to_string(), "requests"),
            Sizer::Items => (capacity.to_string(), "items"),
            // As a user would write it: 64MiB.
            Sizer::Bytes => (crate::config::ByteSize(capacity).to_string(), "bytes"),
        };
        ConsumeError::retryable(format!(
            "exporters.{}: sending queue is full (queue_size: {size}, sizer: {unit})",
            self.inner.id
        ))
    }

    /// Encodes and queues a batch, or refuses it. The lock on the channel is never held across
    /// an await: the capacity is reserved first (so a full queue costs no encoding), then the
    /// batch encoded, then queued.
    async fn enqueue(
        &self,
        q: &MemoryQueue<S::Payload>,
        batch: TraceBatch,
        spans: u64,
    ) -> Result<(), ConsumeError> {
        if q.tx.read().expect("sending queue lock").is_none() {
            return Err(self.shutting_down(spans));
        }
        let units = match q.sizer {
            Sizer::Requests => 1,
            Sizer::Items => spans,
            Sizer::Bytes => batch.protobuf_len() as u64,
        };
        // An empty queue takes a batch larger than its capacity, which would otherwise never
        // get through.
        let Some(mut held) = q.bound.try_hold(units) else {
            return Err(self.full(spans, q.bound.capacity(), q.sizer));
        };
        let (payload, batch) = match prepare(&self.inner, batch).await {
            Ok(prepared) => prepared,
            Err(panicked) => {
                self.inner.metrics.enqueue_failed.inc_by(spans);
                return Err(ConsumeError::retryable(format!(
                    "exporters.{}: {panicked}",
                    self.inner.id
                )));
            }
        };
        if q.sizer == Sizer::Bytes
            && let Some(bytes) = self.inner.sender.payload_bytes(&payload)
        {
            held.resize(bytes);
        }
        let item = Item {
            payload,
            spans,
            _held: Some(held),
            delivery: Some(batch.delivery),
            stored: None,
        };
        let guard = q.tx.read().expect("sending queue lock");
        let Some(tx) = guard.as_ref() else {
            item.release();
            return Err(self.shutting_down(spans));
        };
        match tx.send(item) {
            Ok(()) => {
                self.inner.metrics.queue_size.set(q.bound.used() as i64);
                Ok(())
            }
            Err(flume::SendError(item)) => {
                item.release();
                Err(self.shutting_down(spans))
            }
        }
    }

    /// Writes a batch to the on-disk queue; the batch's delivery is released once it is there
    /// (and, with `fsync`, on stable storage).
    async fn store(
        &self,
        d: &DiskBackend,
        batch: TraceBatch,
        spans: u64,
    ) -> Result<(), ConsumeError> {
        let Some(queue) = d.queue.get().cloned() else {
            return Err(self.shutting_down(spans));
        };
        let record = persistent::encode(&batch);
        let q = queue.clone();
        let pushed = tokio::task::spawn_blocking(move || q.push(spans as u32, &record))
            .await
            .map_err(|e| {
                ConsumeError::retryable(format!(
                    "exporters.{}: writing to the queue failed: {e}",
                    self.inner.id
                ))
            })?;
        let written = match pushed {
            Ok(w) => w,
            Err(PushError::Full { capacity }) => {
                return Err(self.full(spans, capacity, d.sizer));
            }
            Err(PushError::Closed) => return Err(self.shutting_down(spans)),
            Err(PushError::Io(e)) => {
                self.inner.metrics.enqueue_failed.inc_by(spans);
                crate::telemetry::log_limited!(error, "cannot write to the on-disk sending queue; refusing the data", exporter = %self.inner.id, error = %e, spans);
                return Err(ConsumeError::retryable(format!(
                    "exporters.{}: cannot write to the on-disk queue: {e}",
                    self.inner.id
                )));
            }
        };
        if let Err(e) = queue.synced(written.seq).await {
            self.inner.metrics.enqueue_failed.inc_by(spans);
            return Err(ConsumeError::retryable(format!(
                "exporters.{}: fsync of the on-disk queue failed: {e}",
                self.inner.id
            )));
        }
        self.inner.update_disk_metrics(&queue);
        drop(batch);
        Ok(())
    }
}

#[async_trait]
impl<S: Sender> Consumer<Traces> for SendingQueue<S> {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.item_count() as u64;
        if spans == 0 {
            return Ok(());
        }
        if self.inner.stopping.is_cancelled() {
            return Err(self.shutting_down(spans));
        }
        match &self.queue {
            None => {
                let (payload, batch) = prepare(&self.inner, batch).await.map_err(|p| {
                    self.inner.metrics.enqueue_failed.inc_by(spans);
                    ConsumeError::retryable(format!("exporters.{}: {p}", self.inner.id))
                })?;
                let item = Item {
                    payload,
                    spans,
                    _held: None,
                    delivery: Some(batch.delivery),
                    stored: None,
                };
                let id = &self.inner.id;
                self.inner.export(item).await.map_err(|e| match e {
                    SendError::Permanent { reason } => {
                        ConsumeError::permanent(format!("exporters.{id}: {reason}"))
                    }
                    SendError::Retryable { reason, .. } => {
                        ConsumeError::retryable(format!("exporters.{id}: {reason}"))
                    }
                })
            }
            Some(Queue::Memory(q)) => self.enqueue(q, batch, spans).await,
            Some(Queue::Disk(d)) => self.store(d, batch, spans).await,
        }
    }
}

#[async_trait]
impl<S: Sender> Lifecycle for SendingQueue<S> {
    async fn start(&self) -> anyhow::Result<()> {
        match &self.queue {
            None => Ok(()),
            Some(Queue::Memory(q)) => {
                let Some(rx) = q.rx.lock().expect("sending queue lock").take() else {
                    return Ok(());
                };
                let mut workers = q.workers.lock().expect("sending queue lock");
                for _ in 0..q.num_consumers {
                    workers.push(tokio::spawn(consume_queue(
                        self.inner.clone(),
                        rx.clone(),
                        q.bound.clone(),
                    )));
                }
                Ok(())
            }
            Some(Queue::Disk(d)) => self.start_disk(d).await,
        }
    }

    async fn shutdown(&self) {
        self.inner.stopping.cancel();
        match &self.queue {
            None => {}
            Some(Queue::Memory(q)) => {
                // Without the sender, the consumers stop once the queue is empty.
                drop(q.tx.write().expect("sending queue lock").take());
                let never_started = q.rx.lock().expect("sending queue lock").take();
                if let Some(rx) = never_started {
                    for item in rx.drain() {
                        self.inner
                            .give_up(item, "the exporter was stopped before it started".into());
                    }
                }
                let workers = std::mem::take(&mut *q.workers.lock().expect("sending queue lock"));
                self.inner.join(workers).await;
                self.inner.metrics.queue_size.set(0);
            }
            Some(Queue::Disk(d)) => {
                let Some(queue) = d.queue.get() else {
                    return;
                };
                // Consumers send what they can and stop at the first batch the destination
                // will not take; the rest stays on disk for the next start.
                queue.close();
                let workers = std::mem::take(&mut *d.workers.lock().expect("sending queue lock"));
                self.inner.join(workers).await;
                let left = queue.stats();
                if left.size > 0 {
                    tracing::info!(exporter = %self.inner.id, pending = left.size, "data not yet sent stays in the on-disk queue for the next start");
                }
                self.inner.update_disk_metrics(queue);
            }
        }
    }
}

impl<S: Sender> SendingQueue<S> {
    async fn start_disk(&self, d: &DiskBackend) -> anyhow::Result<()> {
        let Some(store) = d.store.clone() else {
            anyhow::bail!(
                "sending_queue.storage: extension {:?} is not enabled in service.extensions",
                d.storage_id
            );
        };
        let owner = d.owner.clone();
        let options = d.options.clone();
        let (queue, recovered) =
            tokio::task::spawn_blocking(move || store.open_queue(&owner, options))
                .await
                .map_err(|e| anyhow::anyhow!("opening the on-disk queue failed: {e}"))?
                .map_err(|e| anyhow::anyhow!("sending_queue.storage {:?}: {e:#}", d.storage_id))?;
        if recovered.records > 0 || recovered.corrupt_records > 0 || recovered.torn_tail_bytes > 0 {
            tracing::info!(
                exporter = %self.inner.id,
                batches = recovered.records,
                spans = recovered.items,
                bytes = recovered.bytes,
                corrupt_records = recovered.corrupt_records,
                torn_tail_bytes = recovered.torn_tail_bytes,
                "on-disk sending queue recovered; pending data is sent first"
            );
        }
        self.inner
            .metrics
            .queue_corrupt
            .inc_by(recovered.corrupt_records);
        let queue = Arc::new(queue);
        self.inner.update_disk_metrics(&queue);
        let _ = d.queue.set(queue.clone());
        let mut workers = d.workers.lock().expect("sending queue lock");
        for _ in 0..d.num_consumers {
            workers.push(tokio::spawn(consume_disk(
                self.inner.clone(),
                queue.clone(),
            )));
        }
        Ok(())
    }
}

/// One consumer task: sends batches until the queue is closed and empty. A panic while
/// sending one batch fails that batch (the `Item` is dropped still holding its delivery) and
/// the task carries on with the next, after a growing pause if it keeps panicking.
/// Encodes `batch` for sending, off the reactor when it is large (see [`compute`]); gives the
/// batch back for its delivery tracking.
async fn prepare<S: Sender>(
    inner: &Arc<Inner<S>>,
    batch: TraceBatch,
) -> Result<(S::Payload, TraceBatch), compute::Panicked> {
    let effort = compute::batch_effort(&batch);
    let inner = inner.clone();
    compute::run(effort, move || (inner.sender.prepare(&batch), batch)).await
}

async fn consume_queue<S: Sender>(
    inner: Arc<Inner<S>>,
    rx: flume::Receiver<Item<S::Payload>>,
    bound: Bound,
) {
    use futures::FutureExt;
    let mut restarts = crate::panics::Restarts::new();
    while let Ok(item) = rx.recv_async().await {
        let spans = item.spans;
        // The outcome is logged and counted inside; nobody is waiting for it.
        let sent = std::panic::AssertUnwindSafe(inner.export(item))
            .catch_unwind()
            .await;
        // The item (and its share of the bound) is gone now, sent or not.
        inner.metrics.queue_size.set(bound.used() as i64);
        if let Err(payload) = sent {
            inner.metrics.send_failed.inc_by(spans);
            let wait = restarts.panicked();
            crate::panics::report(
                &inner.metrics.panics,
                &inner.id,
                "sending queue consumer",
                &crate::panics::message(&*payload),
                &format!(
                    "the batch failed ({spans} spans); {}",
                    crate::panics::restarting(wait)
                ),
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// One consumer task of an on-disk queue: sends records until the queue is closed and
/// drained, or (while stopping) until the destination stops taking data.
async fn consume_disk<S: Sender>(inner: Arc<Inner<S>>, queue: Arc<DiskQueue>) {
    use futures::FutureExt;
    let mut restarts = crate::panics::Restarts::new();
    while let Some((id, items, record)) = queue.pop().await {
        let stored = StoredRecord::new(queue.clone(), id);
        let batch = match persistent::decode(record) {
            Ok(b) => b,
            Err(e) => {
                crate::telemetry::log_limited!(error, "a record of the on-disk queue is damaged; skipping it", exporter = %inner.id, error = %e, spans = items);
                inner.metrics.queue_corrupt.inc();
                inner.metrics.send_failed.inc_by(u64::from(items));
                stored.ack();
                continue;
            }
        };
        let (payload, batch) = match prepare(&inner, batch).await {
            Ok(prepared) => prepared,
            Err(panicked) => {
                // Left in the queue: read again after a restart.
                tracing::error!(exporter = %inner.id, error = %panicked, "encoding a stored batch failed; it stays in the queue");
                stored.keep();
                continue;
            }
        };
        let item = Item {
            payload,
            spans: batch.item_count() as u64,
            _held: None,
            delivery: None,
            stored: Some(stored),
        };
        let spans = item.spans;
        let sent = std::panic::AssertUnwindSafe(inner.export(item))
            .catch_unwind()
            .await;
        if let Err(payload) = sent {
            // The record was handed back as the item unwound: it is sent again.
            let wait = restarts.panicked();
            crate::panics::report(
                &inner.metrics.panics,
                &inner.id,
                "sending queue consumer",
                &crate::panics::message(&*payload),
                &format!(
                    "the batch ({spans} spans) stays queued; {}",
                    crate::panics::restarting(wait)
                ),
            );
            tokio::time::sleep(wait).await;
        }
        inner.update_disk_metrics(&queue);
        if inner.stopping.is_cancelled() && inner.gave_up_while_stopping.load(Ordering::Relaxed) {
            break;
        }
    }
}

impl<S: Sender> Inner<S> {
    /// Waits for consumer tasks to end, logging any that failed.
    async fn join(&self, workers: Vec<JoinHandle<()>>) {
        for w in workers {
            if let Err(e) = w.await {
                tracing::error!(exporter = %self.id, error = %e, "sending queue consumer failed");
            }
        }
    }

    fn update_disk_metrics(&self, queue: &DiskQueue) {
        let stats = queue.stats();
        self.metrics.queue_size.set(stats.size as i64);
        self.metrics
            .queue_disk_bytes
            .set(stats.bytes_on_disk as i64);
    }

    async fn attempt(&self, payload: &S::Payload) -> Result<Accepted, SendError> {
        if self.timeout.is_zero() {
            return self.sender.send(payload).await;
        }
        match tokio::time::timeout(self.timeout, self.sender.send(payload)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::retryable(format!(
                "no answer within the timeout ({})",
                ConfigDuration(self.timeout)
            ))),
        }
    }

    /// Sends one batch until it is delivered or given up; returns the last error when given
    /// up (already logged and counted).
    async fn export(&self, item: Item<S::Payload>) -> Result<(), SendError> {
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.retry);
        let mut retries_while_stopping = 0;
        loop {
            let error = match self.attempt(&item.payload).await {
                Ok(accepted) => {
                    self.delivered(item, accepted);
                    return Ok(());
                }
                Err(e) => e,
            };
            let retry_after = match &error {
                SendError::Permanent { .. } => {
                    self.reject(item, format!("{error} (permanent error, not retried)"));
                    return Err(error);
                }
                SendError::Retryable { retry_after, .. } => *retry_after,
            };
            if !self.retry.enabled {
                self.give_up(item, format!("{error} (retry_on_failure is disabled)"));
                return Err(error);
            }
            // The backoff advances even when the server names the delay, so a server that
            // stops naming one does not reset us to the initial interval.
            let step = backoff.next_delay();
            let mut delay = retry_after.unwrap_or(step);
            let max_elapsed = self.retry.max_elapsed_time.get();
            if !max_elapsed.is_zero() {
                let remaining = max_elapsed.saturating_sub(started.elapsed());
                if remaining.is_zero() {
                    self.give_up(
                        item,
                        format!(
                            "{error} (still failing after max_elapsed_time {})",
                            self.retry.max_elapsed_time
                        ),
                    );
                    return Err(error);
                }
                // One last attempt right at the deadline rather than none.
                delay = delay.min(remaining);
            }
            let stopping = self.stopping.is_cancelled();
            if stopping {
                if retries_while_stopping >= RETRIES_WHILE_STOPPING
                    || self.gave_up_while_stopping.load(Ordering::Relaxed)
                {
                    self.gave_up_while_stopping.store(true, Ordering::Relaxed);
                    let spans = item.spans;
                    if item.keep_for_next_start() {
                        tracing::info!(exporter = %self.id, error = %error, spans, "not sent before shutdown; kept in the on-disk queue");
                    } else {
                        crate::telemetry::log_limited!(error, "exporting failed; dropping the data", exporter = %self.id, reason = %format!("{error} (the exporter is shutting down)"), spans);
                        self.metrics.send_failed.inc_by(spans);
                    }
                    return Err(error);
                }
                retries_while_stopping += 1;
                delay = delay.min(MAX_DELAY_WHILE_STOPPING);
            }
            self.metrics.retries.inc();
            crate::telemetry::log_limited!(info, "exporting failed; will retry",
                exporter = %self.id,
                error = %error,
                spans = item.spans,
                retry_in = ?Duration::from_millis(delay.as_millis() as u64)
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                // Shutdown cuts a long wait short; the attempt it brings forward is the first
                // of the few a batch gets while stopping.
                () = self.stopping.cancelled(), if !stopping => retries_while_stopping += 1,
            }
        }
    }

    fn delivered(&self, item: Item<S::Payload>, accepted: Accepted) {
        let rejected = accepted.rejected_spans.min(item.spans);
        self.metrics.sent.inc_by(item.spans - rejected);
        if rejected > 0 {
            crate::telemetry::log_limited!(warn, "the destination rejected part of the batch; rejected spans are not retried",
                exporter = %self.id,
                rejected,
                spans = item.spans,
                message = %accepted.message
            );
            self.metrics.send_failed.inc_by(rejected);
            let why = format!(
                "{}: the destination rejected {rejected} of {} spans: {}",
                self.id, item.spans, accepted.message
            );
            item.fail(Some(&why));
            return;
        }
        if !accepted.message.is_empty() {
            crate::telemetry::log_limited!(warn, "the destination accepted the batch with a warning",
                exporter = %self.id,
                spans = item.spans,
                message = %accepted.message
            );
        }
        item.release();
    }

    /// Drops a batch that could not be delivered for now (retries exhausted, shutdown).
    fn give_up(&self, item: Item<S::Payload>, why: String) {
        crate::telemetry::log_limited!(error, "exporting failed; dropping the data",
            exporter = %self.id,
            reason = %why,
            spans = item.spans
        );
        self.metrics.send_failed.inc_by(item.spans);
        item.fail(None);
    }

    /// Drops a batch the destination refused for good.
    fn reject(&self, item: Item<S::Payload>, why: String) {
        crate::telemetry::log_limited!(error, "the destination rejected the data for good; dropping the data",
            exporter = %self.id,
            reason = %why,
            spans = item.spans
        );
        self.metrics.send_failed.inc_by(item.spans);
        item.fail(Some(&why));
    }
}
