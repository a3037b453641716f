//! Gathers pipeline batches (of any signal) into inserts by rows, bytes and time, in front of
//! the sending queue, and creates the signal's tables at start.
//!
//! `consume` only enqueues into a channel bounded by `batch.max_bytes` (full: a retryable
//! refusal, so back-pressure reaches the receivers). One task merges what arrives and hands
//! each insert-sized batch to the sending queue, waiting while that queue is full. So the
//! exporter holds at most `batch.max_bytes` waiting, one insert being gathered, and what its
//! sending queue holds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::client::ChError;
use super::config::BatchConfig;
use super::sender::{ChSignal, ClickHouseSender};
use crate::component::{BuildContext, Lifecycle};
use crate::config::ByteSize;
use crate::exporters::sending_queue::SendingQueue;
use crate::pipeline::{Batch, Bound, ConsumeError, Consumer, Held};

/// Batches waiting to be merged before `consume` refuses, however small they are (their bytes
/// are bounded by `batch.max_bytes`).
const CHANNEL_BATCHES: usize = 256;

/// A batch waiting to be merged, with its share of the channel's byte bound.
type Waiting<S> = (Batch<S>, Held);

/// The running `clickhouse` exporter of one signal.
pub struct Batcher<S: ChSignal> {
    id: String,
    queue: Arc<SendingQueue<ClickHouseSender<S>>>,
    /// `None` when batching is disabled: batches go straight to the queue.
    tx: Mutex<Option<flume::Sender<Waiting<S>>>>,
    /// Bytes (protobuf size) of the batches in the channel.
    waiting: Bound,
    worker: Mutex<Option<Worker<S>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    enabled: bool,
}

impl<S: ChSignal> Batcher<S> {
    /// Wraps `queue`.
    pub fn new(
        ctx: &BuildContext,
        queue: SendingQueue<ClickHouseSender<S>>,
        cfg: &BatchConfig,
    ) -> Self {
        let queue = Arc::new(queue);
        let (tx, rx) = flume::bounded(CHANNEL_BATCHES);
        let worker = Worker {
            id: ctx.id.to_string(),
            cfg: cfg.clone(),
            queue: queue.clone(),
            rx,
        };
        Self {
            id: ctx.id.to_string(),
            queue,
            tx: Mutex::new(cfg.enabled.then_some(tx)),
            waiting: Bound::new(cfg.max_bytes.bytes()),
            worker: Mutex::new(cfg.enabled.then_some(worker)),
            task: Mutex::new(None),
            enabled: cfg.enabled,
        }
    }
}

#[async_trait]
impl<S: ChSignal> Consumer<S> for Batcher<S> {
    async fn consume(&self, batch: Batch<S>) -> Result<(), ConsumeError> {
        if !self.enabled {
            return self.queue.consume(batch).await;
        }
        let tx = self.tx.lock().expect("batcher lock").clone();
        let Some(tx) = tx else {
            return Err(ConsumeError::retryable(format!(
                "exporters.{}: shutting down",
                self.id
            )));
        };
        let full = || ConsumeError::Retryable {
            reason: format!(
                "exporters.{}: batch queue is full (batch.max_bytes: {})",
                self.id,
                ByteSize(self.waiting.capacity())
            ),
            retry_after: Some(Duration::from_secs(1)),
        };
        let Some(held) = self.waiting.try_hold(batch.protobuf_len() as u64) else {
            return Err(full());
        };
        tx.try_send((batch, held)).map_err(|_| full())
    }
}

#[async_trait]
impl<S: ChSignal> Lifecycle for Batcher<S> {
    async fn start(&self) -> anyhow::Result<()> {
        self.queue.start().await?;
        // Created now when the server is there, so a wrong password or a schema the server
        // refuses stops the start with a clear message; when it is not there yet, the first
        // insert creates it.
        let sender = self.queue.sender();
        match tokio::time::timeout(Duration::from_secs(10), sender.ensure_schema()).await {
            Ok(Ok(())) => {}
            Ok(Err(e @ ChError::Certificate(_))) => {
                anyhow::bail!("exporters.{}: TLS with ClickHouse failed: {e}", self.id);
            }
            Ok(Err(e)) if !e.is_retryable() => {
                anyhow::bail!("exporters.{}: ClickHouse refused the schema: {e}", self.id);
            }
            Ok(Err(e)) => tracing::warn!(
                exporter = %self.id,
                error = %e,
                "ClickHouse is not reachable yet; the schema will be created before the first insert"
            ),
            Err(_) => tracing::warn!(
                exporter = %self.id,
                "ClickHouse did not answer within 10s; the schema will be created before the first insert"
            ),
        }
        if let Some(w) = self.worker.lock().expect("batcher lock").take() {
            *self.task.lock().expect("batcher lock") = Some(tokio::spawn(w.run()));
        }
        Ok(())
    }

    async fn shutdown(&self) {
        // Closing the channel makes the worker flush what it holds and exit; then the queue
        // drains.
        self.tx.lock().expect("batcher lock").take();
        let task = self.task.lock().expect("batcher lock").take();
        if let Some(t) = task {
            let _ = t.await;
        }
        self.queue.shutdown().await;
    }
}

struct Worker<S: ChSignal> {
    id: String,
    cfg: BatchConfig,
    queue: Arc<SendingQueue<ClickHouseSender<S>>>,
    rx: flume::Receiver<Waiting<S>>,
}

impl<S: ChSignal> Worker<S> {
    async fn run(self) {
        let mut pending = Batch::<S>::default();
        let (mut rows, mut bytes) = (0usize, 0u64);
        let mut deadline: Option<Instant> = None;
        loop {
            let received = match deadline {
                Some(d) => tokio::select! {
                    r = self.rx.recv_async() => Some(r),
                    () = tokio::time::sleep_until(d) => None,
                },
                None => Some(self.rx.recv_async().await),
            };
            match received {
                // Merged, the batch counts against the insert being gathered instead.
                Some(Ok((batch, _held))) => {
                    rows += batch.item_count();
                    bytes += batch.protobuf_len() as u64;
                    pending.merge(batch);
                    deadline.get_or_insert_with(|| Instant::now() + self.cfg.timeout.get());
                    if rows >= self.cfg.max_rows || bytes >= self.cfg.max_bytes.bytes() {
                        self.flush(std::mem::take(&mut pending)).await;
                        (rows, bytes, deadline) = (0, 0, None);
                    }
                }
                None => {
                    self.flush(std::mem::take(&mut pending)).await;
                    (rows, bytes, deadline) = (0, 0, None);
                }
                Some(Err(_)) => {
                    self.flush(pending).await;
                    return;
                }
            }
        }
    }

    /// Hands `all` to the queue in inserts of at most `max_rows`.
    async fn flush(&self, mut all: Batch<S>) {
        while !all.is_empty() {
            let chunk = if all.item_count() > self.cfg.max_rows {
                all.split_front(self.cfg.max_rows)
            } else {
                std::mem::take(&mut all)
            };
            self.send(chunk).await;
        }
    }

    /// Waits out a full queue (with a growing pause) so back-pressure fills the channel in
    /// front of this worker and reaches the receivers instead of losing data.
    async fn send(&self, batch: Batch<S>) {
        let mut pause = Duration::from_millis(5);
        loop {
            match self.queue.consume(batch.clone()).await {
                Ok(()) => return,
                Err(ConsumeError::Retryable { reason, .. }) => {
                    tracing::debug!(exporter = %self.id, %reason, "sending queue refused; waiting");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(ConsumeError::Permanent { reason }) => {
                    // Logged and counted by the queue.
                    tracing::debug!(exporter = %self.id, %reason, "batch dropped");
                    batch.delivery.reject_because(&reason);
                    return;
                }
            }
        }
    }
}
