//! The queue, its consumer tasks and the retry loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::{Accepted, QueueConfig, RetryConfig, SendError, Sender};
use crate::component::{BuildContext, Lifecycle};
use crate::config::Duration as ConfigDuration;
use crate::pipeline::{ConsumeError, Delivery, TraceBatch, TracesConsumer};
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
/// (queue full, shutting down) is left to the caller, who gets the retryable error.
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

struct Queue<P> {
    /// Taken at shutdown: the consumers then drain what is left and stop.
    tx: RwLock<Option<flume::Sender<Item<P>>>>,
    /// Taken by `start`, which hands a clone to every consumer.
    rx: Mutex<Option<flume::Receiver<Item<P>>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    num_consumers: usize,
    capacity: usize,
}

/// One batch on its way. Dropping it while it still holds its delivery (the runtime stopped
/// with the batch queued) marks the data as lost.
struct Item<P> {
    payload: P,
    spans: u64,
    delivery: Option<Delivery>,
}

impl<P> Item<P> {
    /// Lets go of the delivery without marking it failed: the data was delivered, or was never
    /// accepted and the caller keeps responsibility for it.
    fn release(mut self) {
        self.delivery.take();
    }

    /// Marks the data as not delivered; `for_good` when the destination refused it (resending
    /// it would fail the same way), otherwise it is worth handing over again.
    fn fail(mut self, for_good: bool) {
        if let Some(d) = self.delivery.take() {
            if for_good {
                d.reject();
            } else {
                d.fail();
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
    /// with [`Lifecycle::start`].
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
            let (tx, rx) = flume::bounded(queue.queue_size);
            Queue {
                tx: RwLock::new(Some(tx)),
                rx: Mutex::new(Some(rx)),
                workers: Mutex::new(Vec::new()),
                num_consumers: queue.num_consumers.max(1),
                capacity: queue.queue_size,
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

    /// Encodes and queues a batch, or refuses it. Synchronous so the lock is never held
    /// across an await.
    fn enqueue(
        &self,
        q: &Queue<S::Payload>,
        batch: TraceBatch,
        spans: u64,
    ) -> Result<(), ConsumeError> {
        let guard = q.tx.read().expect("sending queue lock");
        let Some(tx) = guard.as_ref() else {
            return Err(self.shutting_down(spans));
        };
        let full = || {
            self.inner.metrics.enqueue_failed.inc_by(spans);
            ConsumeError::retryable(format!(
                "exporters.{}: sending queue is full ({} batches)",
                self.inner.id, q.capacity
            ))
        };
        // Checked first so a full queue costs no encoding.
        if tx.is_full() {
            return Err(full());
        }
        let item = Item {
            payload: self.inner.sender.prepare(&batch),
            spans,
            delivery: Some(batch.delivery),
        };
        match tx.try_send(item) {
            Ok(()) => {
                self.inner.metrics.queue_size.set(tx.len() as i64);
                Ok(())
            }
            Err(flume::TrySendError::Full(item)) => {
                item.release();
                Err(full())
            }
            Err(flume::TrySendError::Disconnected(item)) => {
                item.release();
                Err(self.shutting_down(spans))
            }
        }
    }
}

#[async_trait]
impl<S: Sender> TracesConsumer for SendingQueue<S> {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.span_count() as u64;
        if spans == 0 {
            return Ok(());
        }
        if self.inner.stopping.is_cancelled() {
            return Err(self.shutting_down(spans));
        }
        let Some(q) = &self.queue else {
            let item = Item {
                payload: self.inner.sender.prepare(&batch),
                spans,
                delivery: Some(batch.delivery),
            };
            let id = &self.inner.id;
            return self.inner.export(item).await.map_err(|e| match e {
                SendError::Permanent { reason } => {
                    ConsumeError::permanent(format!("exporters.{id}: {reason}"))
                }
                SendError::Retryable { reason, .. } => {
                    ConsumeError::retryable(format!("exporters.{id}: {reason}"))
                }
            });
        };
        self.enqueue(q, batch, spans)
    }
}

#[async_trait]
impl<S: Sender> Lifecycle for SendingQueue<S> {
    async fn start(&self) -> anyhow::Result<()> {
        let Some(q) = &self.queue else {
            return Ok(());
        };
        let Some(rx) = q.rx.lock().expect("sending queue lock").take() else {
            return Ok(());
        };
        let mut workers = q.workers.lock().expect("sending queue lock");
        for _ in 0..q.num_consumers {
            workers.push(tokio::spawn(consume_queue(self.inner.clone(), rx.clone())));
        }
        Ok(())
    }

    async fn shutdown(&self) {
        self.inner.stopping.cancel();
        let Some(q) = &self.queue else {
            return;
        };
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
        for w in workers {
            if let Err(e) = w.await {
                tracing::error!(exporter = %self.inner.id, error = %e, "sending queue consumer failed");
            }
        }
        self.inner.metrics.queue_size.set(0);
    }
}

/// One consumer task: sends batches until the queue is closed and empty. A panic while
/// sending one batch fails that batch (the `Item` is dropped still holding its delivery) and
/// the task carries on with the next, after a growing pause if it keeps panicking.
async fn consume_queue<S: Sender>(inner: Arc<Inner<S>>, rx: flume::Receiver<Item<S::Payload>>) {
    use futures::FutureExt;
    let mut restarts = crate::panics::Restarts::new();
    while let Ok(item) = rx.recv_async().await {
        inner.metrics.queue_size.set(rx.len() as i64);
        let spans = item.spans;
        // The outcome is logged and counted inside; nobody is waiting for it.
        let sent = std::panic::AssertUnwindSafe(inner.export(item))
            .catch_unwind()
            .await;
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

impl<S: Sender> Inner<S> {
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
                    self.give_up(item, format!("{error} (the exporter is shutting down)"));
                    return Err(error);
                }
                retries_while_stopping += 1;
                delay = delay.min(MAX_DELAY_WHILE_STOPPING);
            }
            self.metrics.retries.inc();
            tracing::info!(
                exporter = %self.id,
                error = %error,
                spans = item.spans,
                retry_in = ?Duration::from_millis(delay.as_millis() as u64),
                "exporting failed; will retry"
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
            tracing::warn!(
                exporter = %self.id,
                rejected,
                spans = item.spans,
                message = %accepted.message,
                "the destination rejected part of the batch; rejected spans are not retried"
            );
            self.metrics.send_failed.inc_by(rejected);
            item.fail(true);
            return;
        }
        if !accepted.message.is_empty() {
            tracing::warn!(
                exporter = %self.id,
                spans = item.spans,
                message = %accepted.message,
                "the destination accepted the batch with a warning"
            );
        }
        item.release();
    }

    /// Drops a batch that could not be delivered for now (retries exhausted, shutdown).
    fn give_up(&self, item: Item<S::Payload>, why: String) {
        tracing::error!(
            exporter = %self.id,
            reason = %why,
            spans = item.spans,
            "exporting failed; dropping the data"
        );
        self.metrics.send_failed.inc_by(item.spans);
        item.fail(false);
    }

    /// Drops a batch the destination refused for good.
    fn reject(&self, item: Item<S::Payload>, why: String) {
        tracing::error!(
            exporter = %self.id,
            reason = %why,
            spans = item.spans,
            "the destination rejected the data; dropping it"
        );
        self.metrics.send_failed.inc_by(item.spans);
        item.fail(true);
    }
}
