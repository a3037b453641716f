//! The consumer task: read, decode, hand to the pipeline, and commit only what was delivered.
//!
//! Every message read gets a [`Ticket`] and its batch a [`DeliveryTracker`]; the tracker
//! reports back once every exporter of the pipeline has finished with the data. Offsets are
//! stored (for librdkafka's periodic commit) only over a contiguous run of delivered messages,
//! so a collector killed at any moment re-reads what was not yet delivered and skips nothing.
//! Data an exporter gave up on for now is handed to the pipeline again after a pause; data
//! refused for good (a permanent error, a partial rejection) would be refused again on every
//! re-read, so it is counted, logged and skipped, or written to the dead-letter topic first.
//!
//! librdkafka does the committing itself (`enable.auto.commit`, every `commit_interval`) from
//! offsets this task stores (`enable.auto.offset.store` off); it also commits them when
//! partitions are revoked and when the consumer closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use prometheus_client::metrics::counter::Counter;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::offsets::{Offsets, Ticket};
use super::payloads::Payloads;
use crate::compute;
use crate::kafka::Encoding;
use crate::otlp::OtlpSignal;
use crate::otlp::intake::{Budget, Refusal};
use crate::pipeline::{
    Batch, ConsumeError, Delivery, DeliveryTracker, Logs, Metrics, Outcome, SharedConsumer,
    SignalKind, Traces,
};
use crate::telemetry::ReceiverMetrics;

/// Pause before data an exporter gave up on is handed to the pipeline again.
const REDELIVERY_PAUSE: Duration = Duration::from_secs(1);
/// Longest pause between attempts while the pipeline refuses with a retryable error.
const MAX_REFUSAL_PAUSE: Duration = Duration::from_secs(1);
/// How long shutdown waits for data in flight to be delivered before the final commit.
/// Whatever is still in flight then is read again by the next consumer (at least once).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The reason given for rejected data when the stage that refused it did not say why here
/// (it logged why itself).
const REJECTED_BY_EXPORTER: &str = "an exporter refused the data for good";

/// Keeps the offset bookkeeping in step with the group's partition assignment.
pub(super) struct GroupContext {
    pub id: String,
    pub offsets: Arc<Mutex<Offsets>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                // librdkafka commits the stored offsets now; messages still in flight on these
                // partitions will be read again by their next owner.
                let mut offsets = self.offsets.lock().expect("offsets lock");
                for e in tpl.elements() {
                    offsets.revoke(e.topic(), e.partition());
                }
                tracing::info!(receiver = %self.id, partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(receiver = %self.id, partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Error(e) => {
                tracing::warn!(receiver = %self.id, error = %e, "consumer group rebalance failed");
            }
        }
    }
}

/// What is kept of a message while its data is in the pipeline: enough to hand it on again,
/// or to write it unchanged to the dead-letter topic.
#[derive(Clone, Default)]
struct Kept {
    payload: Bytes,
    /// Only kept when there is a dead-letter topic.
    key: Option<Bytes>,
    /// The signal its topic carries (what it is decoded as).
    signal: Option<SignalKind>,
    /// Items (spans, log records, data points) in it.
    items: u64,
}

/// News about one message, sent by trackers and dead-letter tasks to the consumer task.
struct Finished {
    ticket: Ticket,
    outcome: Outcome,
    message: Kept,
    /// Why the data was refused for good, when the receiver was told.
    reason: Option<String>,
}

/// Counters of messages whose data the pipeline refused for good.
#[derive(Clone)]
pub(super) struct RejectedMetrics {
    pub messages: Counter,
    pub spans: Counter,
}

/// The dead-letter destination for undecodable and rejected messages.
pub(super) struct DeadLetter {
    pub producer: FutureProducer,
    pub topic: String,
}

/// Where one signal's messages go: its pipelines, how its topics are encoded, its counters.
pub(super) struct Route<S: OtlpSignal> {
    pub next: SharedConsumer<S>,
    pub encoding: Encoding,
    pub metrics: ReceiverMetrics,
}

impl<S: OtlpSignal> Route<S> {
    pub fn new(next: SharedConsumer<S>, (encoding, metrics): (Encoding, ReceiverMetrics)) -> Self {
        Self {
            next,
            encoding,
            metrics,
        }
    }
}

/// The routes of the signals the receiver's pipelines carry.
pub(super) struct Routes {
    pub traces: Option<Route<Traces>>,
    pub logs: Option<Route<Logs>>,
    pub metrics: Option<Route<Metrics>>,
}

impl Routes {
    /// The signals that have pipelines.
    pub fn signals(&self) -> Vec<SignalKind> {
        let mut out = Vec::new();
        if self.traces.is_some() {
            out.push(SignalKind::Traces);
        }
        if self.logs.is_some() {
            out.push(SignalKind::Logs);
        }
        if self.metrics.is_some() {
            out.push(SignalKind::Metrics);
        }
        out
    }
}

/// Everything the consumer task needs.
pub(super) struct Worker {
    pub id: String,
    pub routes: Arc<Routes>,
    /// The signal of each topic read.
    pub by_topic: HashMap<String, SignalKind>,
    /// The size limit on messages the decoding budget is derived from (librdkafka's
    /// `message.max.bytes`; a larger message the broker took gets its own size).
    pub max_message_bytes: usize,
    pub malformed: Counter,
    pub rejected: RejectedMetrics,
    pub consumer: StreamConsumer<GroupContext>,
    pub offsets: Arc<Mutex<Offsets>>,
    pub dead_letter: Option<Arc<DeadLetter>>,
    pub stop: CancellationToken,
    finished_tx: flume::Sender<Finished>,
    finished_rx: flume::Receiver<Finished>,
    redeliver_tx: flume::Sender<Finished>,
    redeliver_rx: flume::Receiver<Finished>,
    /// Buffers the payloads are copied into.
    payloads: Arc<Payloads>,
}

/// Builds the consumer for `config` (librdkafka properties) and subscribes it to `topics`.
pub(super) fn subscribe(
    config: &ClientConfig,
    context: GroupContext,
    topics: &[String],
) -> anyhow::Result<StreamConsumer<GroupContext>> {
    let consumer: StreamConsumer<GroupContext> = config
        .create_with_context(context)
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka consumer: {e}"))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {topics:?}: {e}"))?;
    Ok(consumer)
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        id: String,
        routes: Arc<Routes>,
        by_topic: HashMap<String, SignalKind>,
        max_message_bytes: usize,
        malformed: Counter,
        rejected: RejectedMetrics,
        consumer: StreamConsumer<GroupContext>,
        offsets: Arc<Mutex<Offsets>>,
        dead_letter: Option<Arc<DeadLetter>>,
        stop: CancellationToken,
    ) -> Self {
        let (finished_tx, finished_rx) = flume::unbounded();
        let (redeliver_tx, redeliver_rx) = flume::unbounded();
        Self {
            id,
            routes,
            by_topic,
            max_message_bytes,
            malformed,
            rejected,
            consumer,
            offsets,
            dead_letter,
            stop,
            finished_tx,
            finished_rx,
            redeliver_tx,
            redeliver_rx,
            payloads: Arc::default(),
        }
    }

    /// Reads until stopped, then waits (bounded) for data in flight and commits.
    pub(super) async fn run(self: Arc<Self>) {
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                Ok(f) = self.finished_rx.recv_async() => self.on_finished(f),
                Ok(f) = self.redeliver_rx.recv_async() => self.redeliver(f).await,
                m = self.consumer.recv() => match m {
                    Ok(m) => self.on_message(&m).await,
                    Err(e) => {
                        crate::telemetry::log_limited!(warn, "Kafka consumer error", receiver = %self.id, error = %e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while self.in_flight() > 0 {
            tokio::select! {
                Ok(f) = self.finished_rx.recv_async() => self.on_finished(f),
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        receiver = %self.id,
                        messages = self.in_flight(),
                        "stopping with messages not yet delivered; they will be read again"
                    );
                    break;
                }
            }
        }
        // Commit and close (leave the group) off the async threads: both block on the broker.
        let id = self.id.clone();
        let _ = tokio::task::spawn_blocking(move || {
            match self.consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => {}
                // Nothing stored since the last commit.
                Err(e)
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::NoOffset) => {}
                Err(e) => tracing::warn!(receiver = %id, error = %e, "final offset commit failed"),
            }
            self.consumer.unsubscribe();
            drop(self);
        })
        .await;
    }

    fn in_flight(&self) -> usize {
        self.offsets.lock().expect("offsets lock").in_flight()
    }

    async fn on_message(&self, m: &BorrowedMessage<'_>) {
        let topic: Arc<str> = Arc::from(m.topic());
        let ticket =
            self.offsets
                .lock()
                .expect("offsets lock")
                .begin(&topic, m.partition(), m.offset());
        let mut message = Kept {
            payload: self.payloads.copy(m.payload().unwrap_or_default()),
            key: None,
            signal: self.by_topic.get(m.topic()).copied(),
            items: 0,
        };
        if self.dead_letter.is_some() {
            message.key = m.key().map(Bytes::copy_from_slice);
        }
        self.take(ticket, message).await;
    }

    /// Decodes a message as the signal of its topic and hands it to that signal's pipelines.
    async fn take(&self, ticket: Ticket, message: Kept) {
        let routes = self.routes.clone();
        match message.signal {
            Some(SignalKind::Traces) => self.take_as(routes.traces.as_ref(), ticket, message).await,
            Some(SignalKind::Logs) => self.take_as(routes.logs.as_ref(), ticket, message).await,
            Some(SignalKind::Metrics) => {
                self.take_as(routes.metrics.as_ref(), ticket, message).await
            }
            None => self.take_as::<Traces>(None, ticket, message).await,
        }
    }

    async fn take_as<S: OtlpSignal>(
        &self,
        route: Option<&Route<S>>,
        ticket: Ticket,
        message: Kept,
    ) {
        let Some(route) = route else {
            // Only subscribed topics are read, each for a signal with pipelines.
            let reason = format!("topic {:?} is not read for any signal", ticket.topic);
            self.on_malformed(ticket, message, &reason);
            return;
        };
        match self.decode(route, &message.payload).await {
            Ok(batch) => self.dispatch(route, ticket, batch, message).await,
            Err(reason) => self.on_malformed(ticket, message, &reason),
        }
    }

    /// A message's items, within the budget its size allows (see [`crate::otlp::intake`]):
    /// decoded off the reactor when large, items with invalid ids dropped and counted.
    async fn decode<S: OtlpSignal>(
        &self,
        route: &Route<S>,
        payload: &Bytes,
    ) -> Result<Batch<S>, String> {
        let budget = Budget::for_limit(
            payload.len().max(self.max_message_bytes),
            "message.max.bytes",
        );
        let encoding = route.encoding;
        let bytes = payload.clone();
        match compute::run(bytes.len(), move || {
            encoding.decode_batch::<S>(&bytes, budget)
        })
        .await
        {
            Ok(Ok(accepted)) => {
                if accepted.invalid > 0 {
                    route.metrics.invalid.inc_by(accepted.invalid as u64);
                }
                Ok(accepted.batch)
            }
            Ok(Err(refusal)) => {
                if let Refusal::OverBudget(_) = refusal {
                    route.metrics.over_budget.inc();
                }
                Err(refusal.to_string())
            }
            Err(panicked) => Err(panicked.to_string()),
        }
    }

    /// Hands one message's items to its signal's pipelines, waiting out retryable refusals.
    async fn dispatch<S: OtlpSignal>(
        &self,
        route: &Route<S>,
        ticket: Ticket,
        mut batch: Batch<S>,
        mut message: Kept,
    ) {
        let spans = batch.item_count() as u64;
        if spans == 0 {
            self.delivered(&ticket);
            return;
        }
        message.items = spans;
        let tx = self.finished_tx.clone();
        let tracked = ticket.clone();
        let tracker = DeliveryTracker::with_reason(move |outcome, reason| {
            // The consumer task may be gone (shutdown); the message is then read again.
            let _ = tx.send(Finished {
                ticket: tracked,
                outcome,
                message,
                reason,
            });
        });
        batch.delivery = Delivery::tracked(tracker);
        let mut pause = Duration::from_millis(5);
        let mut counted_refusal = false;
        loop {
            match route.next.consume(batch.clone()).await {
                Ok(()) => {
                    route.metrics.accepted.inc_by(spans);
                    return;
                }
                Err(ConsumeError::Permanent { reason }) => {
                    // It would be refused again on every re-read: handled like data an
                    // exporter rejects (see `on_rejected`) once the tracker reports.
                    route.metrics.refused.inc_by(spans);
                    batch.delivery.reject_because(&reason);
                    return;
                }
                Err(ConsumeError::Retryable {
                    reason,
                    retry_after,
                }) => {
                    if !counted_refusal {
                        route.metrics.refused.inc_by(spans);
                        counted_refusal = true;
                    }
                    tracing::debug!(receiver = %self.id, %reason, "pipeline refused; retrying");
                    let wait = retry_after.map_or(pause, |r| r.min(pause));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.stop.cancelled() => {}
                    }
                    if self.stop.is_cancelled() {
                        // Not delivered: the tracker must not report success.
                        batch.delivery.fail();
                        return;
                    }
                    // Keep committing what the exporters finish meanwhile.
                    while let Ok(f) = self.finished_rx.try_recv() {
                        self.on_finished(f);
                    }
                    pause = (pause * 2).min(MAX_REFUSAL_PAUSE);
                }
            }
        }
    }

    fn on_finished(&self, f: Finished) {
        match f.outcome {
            Outcome::Delivered => self.delivered(&f.ticket),
            Outcome::Rejected => self.on_rejected(f),
            Outcome::Failed => {
                if !self
                    .offsets
                    .lock()
                    .expect("offsets lock")
                    .is_current(&f.ticket)
                {
                    return;
                }
                crate::telemetry::log_limited!(warn, "an exporter gave up on a message's data; handing it to the pipeline again",
                    receiver = %self.id,
                    topic = %f.ticket.topic,
                    partition = f.ticket.partition,
                    offset = f.ticket.offset
                );
                let tx = self.redeliver_tx.clone();
                let stop = self.stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(REDELIVERY_PAUSE) => { let _ = tx.send(f); }
                        () = stop.cancelled() => {}
                    }
                });
            }
        }
    }

    async fn redeliver(&self, f: Finished) {
        if !self
            .offsets
            .lock()
            .expect("offsets lock")
            .is_current(&f.ticket)
        {
            return;
        }
        // Decoded fine the first time; it cannot fail now, but would be skipped like any
        // message that cannot be decoded, never stall the partition.
        self.take(f.ticket, f.message).await;
    }

    /// Marks a message done and stores the offset librdkafka will commit.
    fn delivered(&self, ticket: &Ticket) {
        let next = self.offsets.lock().expect("offsets lock").complete(ticket);
        let Some(next) = next else { return };
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&ticket.topic, ticket.partition, Offset::Offset(next))
            .is_err()
        {
            return;
        }
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            // The partition was revoked meanwhile; its next owner reads from the last commit.
            tracing::debug!(receiver = %self.id, error = %e, "offset not stored");
        }
    }

    /// Data refused for good: reading it again would fail the same way, so it is counted,
    /// logged and skipped, or written to the dead-letter topic before its offset moves on.
    fn on_rejected(&self, f: Finished) {
        if !self
            .offsets
            .lock()
            .expect("offsets lock")
            .is_current(&f.ticket)
        {
            // The partition was revoked; its next owner reads the message again.
            return;
        }
        self.rejected.messages.inc();
        // The item counter is named for spans (wasmcol_receiver_rejected_spans_total).
        if f.message.signal == Some(SignalKind::Traces) {
            self.rejected.spans.inc_by(f.message.items);
        }
        let reason = f.reason.unwrap_or_else(|| REJECTED_BY_EXPORTER.to_string());
        let next_step = if self.dead_letter.is_some() {
            "writing it to the dead-letter topic"
        } else {
            "skipping it"
        };
        let signal = f.message.signal.unwrap_or(SignalKind::Traces);
        crate::telemetry::log_limited!(error, "the pipeline refused a message's data for good";
            receiver = %self.id,
            topic = %f.ticket.topic,
            partition = f.ticket.partition,
            offset = f.ticket.offset,
            items = f.message.items,
            %signal,
            %reason,
            "the pipeline refused a message's {} for good; {next_step}", signal.items()
        );
        self.dead_letter_or_skip(f.ticket, f.message, reason);
    }

    fn on_malformed(&self, ticket: Ticket, message: Kept, reason: &str) {
        self.malformed.inc();
        crate::telemetry::log_limited!(warn, "skipping a message that cannot be decoded",
            receiver = %self.id,
            topic = %ticket.topic,
            partition = ticket.partition,
            offset = ticket.offset,
            bytes = message.payload.len(),
            error = %reason
        );
        self.dead_letter_or_skip(ticket, message, reason.to_string());
    }

    /// Writes a message unchanged to the dead-letter topic, its origin and `reason` in
    /// headers, and commits it only once the topic has it; without a dead-letter topic,
    /// commits it at once.
    fn dead_letter_or_skip(&self, ticket: Ticket, message: Kept, reason: String) {
        let Some(dl) = self.dead_letter.clone() else {
            self.delivered(&ticket);
            return;
        };
        let tx = self.finished_tx.clone();
        let stop = self.stop.clone();
        let id = self.id.clone();
        // A failed write is retried until it succeeds or the receiver stops; the offset waits,
        // so a stop leaves the message to be read again (handing it to the pipeline again
        // instead would only have it refused again, and duplicate it at exporters that took it).
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                let partition = ticket.partition.to_string();
                let offset = ticket.offset.to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "wasmcol.source.topic",
                        value: Some(&*ticket.topic),
                    })
                    .insert(Header {
                        key: "wasmcol.source.partition",
                        value: Some(&partition),
                    })
                    .insert(Header {
                        key: "wasmcol.source.offset",
                        value: Some(&offset),
                    })
                    .insert(Header {
                        key: "wasmcol.error",
                        value: Some(&reason),
                    });
                let mut record = FutureRecord::to(&dl.topic)
                    .payload(&*message.payload)
                    .headers(headers);
                if let Some(k) = &message.key {
                    record = record.key(&**k);
                }
                match dl.producer.send(record, Duration::from_secs(5)).await {
                    Ok(_) => {
                        let _ = tx.send(Finished {
                            ticket,
                            outcome: Outcome::Delivered,
                            message: Kept::default(),
                            reason: None,
                        });
                        return;
                    }
                    Err((e, _)) => {
                        crate::telemetry::log_limited!(warn, "cannot write to the dead-letter topic; retrying", receiver = %id, topic = %dl.topic, error = %e);
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = stop.cancelled() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        });
    }
}
