use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::*;
use crate::component::{BuildContext, ComponentId, Lifecycle, Validate, nested};
use crate::config::Duration as ConfigDuration;
use crate::pipeline::{ConsumeError, Consumer, Delivery, DeliveryTracker, Outcome, TraceBatch};
use crate::telemetry::{ExporterMetrics, Metrics};

/// A scripted sender: answers each attempt with the next scripted result (then success),
/// records when attempts happen, and can be made to wait for permits.
struct FakeSender {
    script: Mutex<VecDeque<Result<Accepted, SendError>>>,
    attempts: Mutex<Vec<(Instant, usize)>>,
    /// When set, every attempt waits for a permit.
    gate: Option<Arc<Semaphore>>,
    /// Time each attempt takes.
    latency: Duration,
    /// When set, attempts fail retryably forever once the script is exhausted.
    always_fail: bool,
    /// What `payload_bytes` says of every payload.
    payload_bytes: Option<u64>,
}

impl FakeSender {
    fn new(script: Vec<Result<Accepted, SendError>>) -> Self {
        Self {
            script: Mutex::new(script.into()),
            attempts: Mutex::new(Vec::new()),
            gate: None,
            latency: Duration::ZERO,
            always_fail: false,
            payload_bytes: None,
        }
    }
    fn attempts(&self) -> Vec<(Instant, usize)> {
        self.attempts.lock().unwrap().clone()
    }
}

#[async_trait]
impl Sender for FakeSender {
    type Signal = crate::pipeline::Traces;

    type Payload = usize;

    fn prepare(&self, batch: &TraceBatch) -> usize {
        batch.item_count()
    }

    fn payload_bytes(&self, _payload: &usize) -> Option<u64> {
        self.payload_bytes
    }

    async fn send(&self, payload: &usize) -> Result<Accepted, SendError> {
        self.attempts
            .lock()
            .unwrap()
            .push((Instant::now(), *payload));
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let next = self.script.lock().unwrap().pop_front();
        match next {
            Some(r) => r,
            None if self.always_fail => Err(SendError::retryable("backend down")),
            None => Ok(Accepted::all()),
        }
    }
}

fn ctx() -> BuildContext {
    BuildContext {
        id: ComponentId::parse("otlp/test").unwrap(),
        pipeline: None,
        metrics: Arc::new(Metrics::new()),
        stores: Default::default(),
        authenticators: Default::default(),
        acknowledge_when_stored: false,
        shared: Default::default(),
    }
}

fn metrics(ctx: &BuildContext) -> ExporterMetrics {
    ctx.metrics
        .exporter("otlp/test", crate::pipeline::SignalKind::Traces)
}

/// Retries 1s, 2s, 4s, ... apart, no jitter, 60s budget.
fn retry() -> RetryConfig {
    RetryConfig {
        enabled: true,
        initial_interval: ConfigDuration::from_secs(1),
        max_interval: ConfigDuration::from_secs(30),
        max_elapsed_time: ConfigDuration::from_secs(60),
        multiplier: 2.0,
        randomization_factor: 0.0,
    }
}

fn queue(size: u64, consumers: usize) -> QueueConfig {
    QueueConfig {
        enabled: true,
        num_consumers: consumers,
        queue_size: size,
        sizer: Sizer::Requests,
        ..QueueConfig::default()
    }
}

type Seen = Arc<Mutex<Option<Outcome>>>;

/// A batch of `n` spans whose delivery outcome lands in the returned slot.
fn tracked(n: usize) -> (TraceBatch, Seen) {
    let seen: Seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let tracker = DeliveryTracker::new(move |o| *s.lock().unwrap() = Some(o));
    let batch = TraceBatch::new(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    name: format!("s{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
    .with_delivery(Delivery::tracked(tracker));
    (batch, seen)
}

async fn outcome(seen: &Seen) -> Outcome {
    for _ in 0..10_000 {
        if let Some(o) = *seen.lock().unwrap() {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no delivery outcome");
}

fn offsets(start: Instant, attempts: &[(Instant, usize)]) -> Vec<Duration> {
    attempts.iter().map(|(t, _)| *t - start).collect()
}

fn retryable(after: Option<u64>) -> Result<Accepted, SendError> {
    Err(SendError::Retryable {
        reason: "unavailable".into(),
        retry_after: after.map(Duration::from_secs),
    })
}

#[tokio::test(start_paused = true)]
async fn retries_with_backoff_then_succeeds() {
    let ctx = ctx();
    let q = SendingQueue::new(
        &ctx,
        FakeSender::new(vec![retryable(None), retryable(None)]),
        &queue(10, 1),
        &retry(),
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let start = Instant::now();
    let (batch, seen) = tracked(3);
    q.consume(batch).await.unwrap();
    assert_eq!(outcome(&seen).await, Outcome::Delivered);
    let attempts = q.sender().attempts();
    assert_eq!(
        offsets(start, &attempts),
        vec![
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(3)
        ]
    );
    let m = metrics(&ctx);
    assert_eq!(
        (m.sent.get(), m.send_failed.get(), m.retries.get()),
        (3, 0, 2)
    );
    q.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn permanent_error_is_not_retried() {
    let ctx = ctx();
    let q = SendingQueue::new(
        &ctx,
        FakeSender::new(vec![Err(SendError::permanent("bad request"))]),
        &queue(10, 1),
        &retry(),
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let (batch, seen) = tracked(4);
    q.consume(batch).await.unwrap();
    assert_eq!(outcome(&seen).await, Outcome::Rejected);
    assert_eq!(q.sender().attempts().len(), 1);
    let m = metrics(&ctx);
    assert_eq!(
        (m.sent.get(), m.send_failed.get(), m.retries.get()),
        (0, 4, 0)
    );
    q.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn server_delay_replaces_the_backoff_step() {
    let ctx = ctx();
    let q = SendingQueue::new(
        &ctx,
        FakeSender::new(vec![retryable(Some(7)), retryable(None)]),
        &queue(10, 1),
        &retry(),
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let start = Instant::now();
    let (batch, seen) = tracked(1);
    q.consume(batch).await.unwrap();
    assert_eq!(outcome(&seen).await, Outcome::Delivered);
    // 7s as asked, then the backoff's second step (2s): the server's delay did not reset it.
    assert_eq!(
        offsets(start, &q.sender().attempts()),
        vec![
            Duration::ZERO,
            Duration::from_secs(7),
            Duration::from_secs(9)
        ]
    );
    q.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn gives_up_at_max_elapsed_time_with_a_last_attempt_at_the_deadline() {
    let ctx = ctx();
    let mut sender = FakeSender::new(vec![retryable(Some(100))]);
    sender.always_fail = true;
    let retry = RetryConfig {
        max_elapsed_time: ConfigDuration::from_secs(10),
        ..retry()
    };
    let q = SendingQueue::new(
        &ctx,
        sender,
        &queue(10, 1),
        &retry,
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let start = Instant::now();
    let (batch, seen) = tracked(2);
    q.consume(batch).await.unwrap();
    assert_eq!(outcome(&seen).await, Outcome::Failed);
    // The server's 100s is capped at the 10s left; nothing is tried after the deadline.
    assert_eq!(
        offsets(start, &q.sender().attempts()),
        vec![Duration::ZERO, Duration::from_secs(10)]
    );
    let m = metrics(&ctx);
    assert_eq!(
        (m.sent.get(), m.send_failed.get(), m.retries.get()),
        (0, 2, 1)
    );
    q.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_times_out_and_is_retried() {
    let ctx = ctx();
    let mut sender = FakeSender::new(vec![]);
    sender.latency = Duration::from_secs(10);
    let retry = RetryConfig {
        max_elapsed_time: ConfigDuration::from_secs(3),
        ..retry()
    };
    let q = SendingQueue::new(
        &ctx,
        sender,
        &queue(10, 1),
        &retry,
        ConfigDuration::from_secs(2),
    );
    q.start().await.unwrap();
    let (batch, seen) = tracked(1);
    q.consume(batch).await.unwrap();
    assert_eq!(outcome(&seen).await, Outcome::Failed);
    // 0s (times out at 2s), retry at 3s (1s backoff, deadline), gives up at 5s.
    assert_eq!(q.sender().attempts().len(), 2);
    q.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn partial_rejection_counts_failed_spans_without_retrying() {
    let ctx = ctx();
    let q = SendingQueue::new(
        &ctx,
        FakeSender::new(vec![Ok(Accepted {
            rejected: 2,
            message: "2 spans had no trace id".into(),
        })]),
        &queue(10, 1),
        &retry(),
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let (batch, seen) = tracked(5);
    q.consume(batch).await.unwrap();
    assert_eq!(outcome(&seen).await, Outcome::Rejected);
    assert_eq!(q.sender().attempts().len(), 1);
    let m = metrics(&ctx);
    assert_eq!((m.sent.get(), m.send_failed.get()), (3, 2));
    q.shutdown().await;
}

#[tokio::test]
async fn full_queue_refuses_with_a_retryable_error() {
    let ctx = ctx();
    let gate = Arc::new(Semaphore::new(0));
    let mut sender = FakeSender::new(vec![]);
    sender.gate = Some(gate.clone());
    let q = SendingQueue::new(
        &ctx,
        sender,
        &queue(2, 1),
        &retry(),
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let (first, first_seen) = tracked(1);
    q.consume(first).await.unwrap();
    // Wait until the consumer holds the first batch: being sent, it still counts.
    while q.sender().attempts().is_empty() {
        tokio::task::yield_now().await;
    }
    let (second, second_seen) = tracked(1);
    q.consume(second).await.unwrap();
    let (third, _) = tracked(7);
    let err = q.consume(third).await.unwrap_err();
    assert_eq!(
        err,
        ConsumeError::retryable(
            "exporters.otlp/test: sending queue is full (queue_size: 2, sizer: requests)"
        )
    );
    let m = metrics(&ctx);
    assert_eq!(m.enqueue_failed.get(), 7);
    assert_eq!(m.queue_capacity.get(), 2);
    assert_eq!(m.queue_size.get(), 2, "one waiting, one being sent");
    gate.add_permits(2);
    assert_eq!(outcome(&first_seen).await, Outcome::Delivered);
    assert_eq!(outcome(&second_seen).await, Outcome::Delivered);
    q.shutdown().await;
    assert_eq!(m.sent.get(), 2);
    assert_eq!(m.queue_size.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn sizer_bytes_counts_what_the_payload_holds_once_encoded() {
    let ctx = ctx();
    let gate = Arc::new(Semaphore::new(0));
    let mut sender = FakeSender::new(vec![]);
    sender.gate = Some(gate.clone());
    // Each encoded payload holds 60 bytes, far more than its one span's protobuf.
    sender.payload_bytes = Some(60);
    let config = QueueConfig {
        sizer: Sizer::Bytes,
        ..queue(100, 1)
    };
    let q = SendingQueue::new(
        &ctx,
        sender,
        &config,
        &retry(),
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let (first, first_seen) = tracked(1);
    let (second, second_seen) = tracked(1);
    q.consume(first).await.unwrap();
    q.consume(second).await.unwrap();
    let (third, _) = tracked(1);
    assert_eq!(
        q.consume(third).await.unwrap_err(),
        ConsumeError::retryable(
            "exporters.otlp/test: sending queue is full (queue_size: 100B, sizer: bytes)"
        )
    );
    let m = metrics(&ctx);
    assert_eq!(m.queue_size.get(), 120);
    gate.add_permits(2);
    assert_eq!(outcome(&first_seen).await, Outcome::Delivered);
    assert_eq!(outcome(&second_seen).await, Outcome::Delivered);
    q.shutdown().await;
    assert_eq!(m.queue_size.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_the_queue_then_refuses() {
    let ctx = ctx();
    let mut sender = FakeSender::new(vec![]);
    sender.latency = Duration::from_millis(100);
    let q = SendingQueue::new(
        &ctx,
        sender,
        &queue(100, 2),
        &retry(),
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (b, s) = tracked(1);
        q.consume(b).await.unwrap();
        seen.push(s);
    }
    q.shutdown().await;
    for s in &seen {
        assert_eq!(*s.lock().unwrap(), Some(Outcome::Delivered));
    }
    assert_eq!(metrics(&ctx).sent.get(), 10);
    let (late, _) = tracked(1);
    let err = q.consume(late).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().contains("shutting down"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_retrying_against_a_dead_backend() {
    let ctx = ctx();
    let mut sender = FakeSender::new(vec![]);
    sender.always_fail = true;
    let retry = RetryConfig {
        max_elapsed_time: ConfigDuration::from_secs(0), // forever
        initial_interval: ConfigDuration::from_secs(20),
        ..retry()
    };
    let q = SendingQueue::new(
        &ctx,
        sender,
        &queue(100, 1),
        &retry,
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (b, s) = tracked(1);
        q.consume(b).await.unwrap();
        seen.push(s);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    q.shutdown().await;
    // The first batch: its 20s wait is cut short, then two more attempts 1s apart; the other
    // four get one attempt each.
    assert!(
        start.elapsed() <= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(q.sender().attempts().len(), 1 + 2 + 4);
    for s in &seen {
        assert_eq!(*s.lock().unwrap(), Some(Outcome::Failed));
    }
    assert_eq!(metrics(&ctx).send_failed.get(), 5);
}

#[tokio::test(start_paused = true)]
async fn without_a_queue_consume_sends_inline() {
    let ctx = ctx();
    let disabled = QueueConfig {
        enabled: false,
        ..QueueConfig::default()
    };
    let q = SendingQueue::new(
        &ctx,
        FakeSender::new(vec![
            retryable(None),
            Ok(Accepted::all()),
            Err(SendError::permanent("bad")),
        ]),
        &disabled,
        &retry(),
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let (batch, seen) = tracked(2);
    q.consume(batch).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(Outcome::Delivered));
    assert_eq!(q.sender().attempts().len(), 2);
    let (batch, _) = tracked(2);
    assert_eq!(
        q.consume(batch).await.unwrap_err(),
        ConsumeError::permanent("exporters.otlp/test: bad")
    );
    let m = metrics(&ctx);
    assert_eq!(
        (m.sent.get(), m.send_failed.get(), m.queue_capacity.get()),
        (2, 2, 0)
    );
    q.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retry_disabled_gives_up_at_the_first_failure() {
    let ctx = ctx();
    let retry = RetryConfig {
        enabled: false,
        ..retry()
    };
    let q = SendingQueue::new(
        &ctx,
        FakeSender::new(vec![retryable(None)]),
        &queue(10, 1),
        &retry,
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let (batch, seen) = tracked(1);
    q.consume(batch).await.unwrap();
    assert_eq!(outcome(&seen).await, Outcome::Failed);
    assert_eq!(q.sender().attempts().len(), 1);
    q.shutdown().await;
}

#[test]
fn config_defaults_mirror_the_opentelemetry_collector() {
    let q: QueueConfig = serde_yaml_ng::from_str("{}").unwrap();
    assert_eq!(q, QueueConfig::default());
    // Bounded in bytes unless told otherwise; a `queue_size` alone counts requests, as in the
    // Collector, and `sizer` alone takes the Collector's size for it.
    assert_eq!(
        (q.enabled, q.num_consumers, q.queue_size, q.sizer),
        (true, 10, 64 << 20, Sizer::Bytes)
    );
    let sized = |yaml: &str| {
        let q: QueueConfig = serde_yaml_ng::from_str(yaml).unwrap();
        (q.sizer, q.queue_size)
    };
    assert_eq!(sized("queue_size: 5000"), (Sizer::Requests, 5000));
    assert_eq!(sized("sizer: requests"), (Sizer::Requests, 1000));
    assert_eq!(sized("sizer: items"), (Sizer::Items, 1000));
    assert_eq!(sized("sizer: bytes"), (Sizer::Bytes, 64 << 20));
    assert_eq!(
        sized("{ sizer: bytes, queue_size: 16MiB }"),
        (Sizer::Bytes, 16 << 20)
    );
    assert_eq!(sized("storage: file_storage"), (Sizer::Bytes, 1 << 30));
    assert_eq!(
        sized("{ storage: file_storage, queue_size: 50 }"),
        (Sizer::Requests, 50)
    );
    let unknown = serde_yaml_ng::from_str::<QueueConfig>("queue_sizer: bytes").unwrap_err();
    assert!(
        unknown.to_string().contains("unknown field `queue_sizer`"),
        "{unknown}"
    );
    let r: RetryConfig = serde_yaml_ng::from_str("max_elapsed_time: 0").unwrap();
    assert_eq!(r.initial_interval, ConfigDuration::from_secs(5));
    assert_eq!(r.max_interval, ConfigDuration::from_secs(30));
    assert!(r.max_elapsed_time.is_zero());
    assert_eq!((r.multiplier, r.randomization_factor), (1.5, 0.5));
    assert!(q.validate().is_empty() && r.validate().is_empty());
}

#[test]
fn config_problems_name_the_option_and_value() {
    let q: QueueConfig = serde_yaml_ng::from_str("num_consumers: 0\nqueue_size: 0").unwrap();
    let paths: Vec<_> = nested("sending_queue", q.validate())
        .map(|p| p.path)
        .collect();
    assert_eq!(
        paths,
        vec!["sending_queue.num_consumers", "sending_queue.queue_size"]
    );
    let r: RetryConfig = serde_yaml_ng::from_str(
        "initial_interval: 10s\nmax_interval: 1s\nmultiplier: 0.5\nrandomization_factor: 2",
    )
    .unwrap();
    let problems = r.validate();
    let text: Vec<_> = problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert_eq!(
        text,
        vec![
            "max_interval: must be at least initial_interval (10s), got 1s",
            "multiplier: must be 1 or more, got 0.5",
            "randomization_factor: must be between 0 and 1, got 2",
        ]
    );
    assert!(serde_yaml_ng::from_str::<QueueConfig>("size: 3").is_err());
}

/// Panics on its first attempt, then delivers.
#[derive(Default)]
struct PanicsOnce {
    attempts: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Sender for PanicsOnce {
    type Signal = crate::pipeline::Traces;

    type Payload = usize;

    fn prepare(&self, batch: &TraceBatch) -> usize {
        batch.item_count()
    }

    async fn send(&self, _: &usize) -> Result<Accepted, SendError> {
        if self
            .attempts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            panic!("the sender broke");
        }
        Ok(Accepted::all())
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_sending_fails_that_batch_and_the_consumer_carries_on() {
    let ctx = ctx();
    let q = SendingQueue::new(
        &ctx,
        PanicsOnce::default(),
        &queue(10, 1),
        &retry(),
        ConfigDuration::from_secs(5),
    );
    q.start().await.unwrap();
    let (first, first_seen) = tracked(2);
    let (second, second_seen) = tracked(3);
    q.consume(first).await.unwrap();
    q.consume(second).await.unwrap();
    assert_eq!(outcome(&first_seen).await, Outcome::Failed);
    assert_eq!(outcome(&second_seen).await, Outcome::Delivered);
    let m = metrics(&ctx);
    assert_eq!(
        (m.sent.get(), m.send_failed.get(), m.panics.get()),
        (3, 2, 1)
    );
    q.shutdown().await;
}
