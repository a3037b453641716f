use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::component::ProcessorConfig;
use crate::pipeline::Metadata;
use crate::testing::{Recorder, context, spans};

fn build(cfg: BatchConfig, next: Arc<Recorder>) -> Arc<dyn Processor<Traces>> {
    cfg.build_traces(&context("batch"), next).unwrap()
}

#[tokio::test(start_paused = true)]
async fn sends_on_size_and_splits_at_max() {
    let rec = Recorder::new();
    let p = build(
        BatchConfig {
            send_batch_size: 10,
            send_batch_max_size: 15,
            timeout: crate::config::Duration::from_secs(60),
            queue_size: 8,
            ..Default::default()
        },
        rec.clone(),
    );
    p.start().await.unwrap();
    p.consume(spans(6)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rec.batch_sizes(), Vec::<usize>::new());
    p.consume(spans(14)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rec.batch_sizes(), vec![15, 5]);
    p.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn sends_partial_batch_on_timeout_and_on_shutdown() {
    let rec = Recorder::new();
    let p = build(
        BatchConfig {
            send_batch_size: 100,
            timeout: crate::config::Duration::from_millis(200),
            ..Default::default()
        },
        rec.clone(),
    );
    p.start().await.unwrap();
    p.consume(spans(3)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(rec.batch_sizes().is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.batch_sizes(), vec![3]);
    p.consume(spans(2)).await.unwrap();
    p.shutdown().await;
    assert_eq!(rec.batch_sizes(), vec![3, 2]);
    assert!(p.consume(spans(1)).await.unwrap_err().is_retryable());
}

#[tokio::test(start_paused = true)]
async fn back_pressure_fills_the_queue_then_refuses_and_loses_nothing() {
    let rec = Recorder::new();
    rec.refuse(true);
    let p = build(
        BatchConfig {
            send_batch_size: 1,
            queue_size: 2,
            ..Default::default()
        },
        rec.clone(),
    );
    p.start().await.unwrap();
    let mut accepted = 0;
    let mut refused = 0;
    for _ in 0..10 {
        match p.consume(spans(1)).await {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert!(e.is_retryable());
                refused += 1
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(refused > 0, "a blocked next stage must lead to refusals");
    rec.refuse(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.shutdown().await;
    assert_eq!(rec.batch_sizes().iter().sum::<usize>(), accepted);
}

#[tokio::test(start_paused = true)]
async fn queue_bytes_bounds_the_queue_whatever_the_count_of_batches() {
    let rec = Recorder::new();
    rec.refuse(true);
    // Room for three one-span batches (their sizes differ by a byte or two), not four.
    let room = 3 * spans(1).protobuf_len() as u64 + 8;
    let p = build(
        BatchConfig {
            send_batch_size: 1,
            queue_size: 100,
            queue_bytes: crate::config::ByteSize(room),
            ..Default::default()
        },
        rec.clone(),
    );
    p.start().await.unwrap();
    let mut accepted = 0;
    let mut refusals = Vec::new();
    for _ in 0..10 {
        match p.consume(spans(1)).await {
            Ok(()) => accepted += 1,
            Err(e) => refusals.push(e),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Three in the queue, plus at most the one the worker has taken and is retrying.
    assert!((3..=4).contains(&accepted), "{accepted} accepted");
    assert_eq!(
        refusals[0],
        ConsumeError::Retryable {
            reason: format!("processors.batch: queue is full (queue_bytes: {room}B)"),
            retry_after: Some(Duration::from_secs(1)),
        }
    );
    rec.refuse(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.shutdown().await;
    assert_eq!(rec.batch_sizes().iter().sum::<usize>(), accepted);
}

#[tokio::test(start_paused = true)]
async fn with_stored_answers_a_refusal_fails_the_batch_back_at_once() {
    use crate::pipeline::{Delivery, DeliveryTracker, Outcome};
    let rec = Recorder::new();
    rec.refuse(true);
    let mut ctx = context("batch");
    ctx.acknowledge_when_stored = true;
    let p = BatchConfig {
        send_batch_size: 1,
        ..Default::default()
    }
    .build_traces(&ctx, rec.clone())
    .unwrap();
    p.start().await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tracker = DeliveryTracker::new(move |o| {
        let _ = tx.send(o);
    });
    p.consume(spans(1).with_delivery(Delivery::tracked(tracker)))
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(1), rx).await;
    assert_eq!(outcome.unwrap().unwrap(), Outcome::Failed);
    p.shutdown().await;
    assert!(rec.batch_sizes().is_empty());
}

fn with_md(n: usize, pairs: &[(&str, &str)]) -> TraceBatch {
    spans(n).with_metadata(Metadata::new(
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    ))
}

/// (tenant, spans) of every batch sent on, sorted (shards flush in no set order).
fn by_tenant(rec: &Recorder) -> Vec<(Option<String>, usize)> {
    let mut v: Vec<_> = rec
        .batches()
        .iter()
        .map(|b| {
            (
                b.metadata.get("x-tenant").map(str::to_string),
                b.item_count(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(start_paused = true)]
async fn metadata_keys_batch_each_combination_apart() {
    let rec = Recorder::new();
    let p = build(
        BatchConfig {
            send_batch_size: 5,
            timeout: crate::config::Duration::from_millis(200),
            metadata_keys: vec!["X-Tenant".into()],
            ..Default::default()
        },
        rec.clone(),
    );
    p.start().await.unwrap();
    // Other headers differ; only x-tenant splits, and only x-tenant is kept.
    p.consume(with_md(3, &[("x-tenant", "acme"), ("user-agent", "a")]))
        .await
        .unwrap();
    p.consume(with_md(3, &[("x-tenant", "beta")]))
        .await
        .unwrap();
    p.consume(spans(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(rec.batches().is_empty(), "no shard is full yet");
    // acme reaches send_batch_size on its own; beta's 3 + none's 1 would have, merged.
    p.consume(with_md(2, &[("X-TENANT", "acme"), ("user-agent", "b")]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(by_tenant(&rec), vec![(Some("acme".into()), 5)]);
    let acme = &rec.batches()[0];
    assert_eq!(
        acme.metadata.iter().count(),
        1,
        "only metadata_keys are kept"
    );
    // The other shards go on their own timers.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        by_tenant(&rec),
        vec![
            (None, 1),
            (Some("acme".into()), 5),
            (Some("beta".into()), 3)
        ]
    );
    p.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn metadata_cardinality_limit_refuses_new_combinations_retryably() {
    let rec = Recorder::new();
    let p = build(
        BatchConfig {
            send_batch_size: 100,
            metadata_keys: vec!["x-tenant".into()],
            metadata_cardinality_limit: 2,
            ..Default::default()
        },
        rec.clone(),
    );
    p.start().await.unwrap();
    p.consume(with_md(1, &[("x-tenant", "a")])).await.unwrap();
    p.consume(with_md(1, &[("x-tenant", "b")])).await.unwrap();
    let err = p
        .consume(with_md(1, &[("x-tenant", "c")]))
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains("metadata_cardinality_limit 2"),
        "{err}"
    );
    // Known combinations still pass.
    p.consume(with_md(1, &[("x-tenant", "a")])).await.unwrap();
    p.shutdown().await;
    assert_eq!(
        by_tenant(&rec),
        vec![(Some("a".into()), 2), (Some("b".into()), 1)]
    );
}

#[tokio::test(start_paused = true)]
async fn idle_combinations_expire_and_free_their_place_under_the_limit() {
    let rec = Recorder::new();
    let p = build(
        BatchConfig {
            send_batch_size: 100,
            timeout: crate::config::Duration::from_millis(100),
            metadata_keys: vec!["x-tenant".into()],
            metadata_cardinality_limit: 2,
            metadata_expiration: Some(crate::config::Duration::from_secs(1)),
            ..Default::default()
        },
        rec.clone(),
    );
    p.start().await.unwrap();
    p.consume(with_md(1, &[("x-tenant", "a")])).await.unwrap();
    p.consume(with_md(1, &[("x-tenant", "b")])).await.unwrap();
    assert!(p.consume(with_md(1, &[("x-tenant", "c")])).await.is_err());
    // "a" keeps sending; "b" falls silent and expires.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        p.consume(with_md(1, &[("x-tenant", "a")])).await.unwrap();
    }
    p.consume(with_md(1, &[("x-tenant", "c")])).await.unwrap();
    assert!(
        p.consume(with_md(1, &[("x-tenant", "d")])).await.is_err(),
        "a and c hold both places"
    );
    // "b" comes back as a new combination once "c" has expired too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.consume(with_md(1, &[("x-tenant", "b")])).await.unwrap();
    p.shutdown().await;
    let total: usize = by_tenant(&rec).iter().map(|(_, n)| n).sum();
    assert_eq!(
        total,
        10,
        "every accepted span is sent on: {:?}",
        by_tenant(&rec)
    );
}

#[tokio::test(start_paused = true)]
async fn an_expiring_shard_sends_what_it_holds_first() {
    let rec = Recorder::new();
    let p = build(
        BatchConfig {
            send_batch_size: 100,
            // No timer: only size, expiry or shutdown send a batch.
            timeout: crate::config::Duration::from_millis(0),
            metadata_keys: vec!["x-tenant".into()],
            metadata_expiration: Some(crate::config::Duration::from_millis(500)),
            ..Default::default()
        },
        rec.clone(),
    );
    p.start().await.unwrap();
    p.consume(with_md(3, &[("x-tenant", "a")])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rec.batches().is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(by_tenant(&rec), vec![(Some("a".into()), 3)]);
    p.shutdown().await;
}

#[test]
fn metadata_expiration_defaults_to_ten_timeouts_and_zero_disables_it() {
    let mut c = BatchConfig {
        metadata_keys: vec!["x-tenant".into()],
        ..Default::default()
    };
    assert_eq!(c.expiration(), Some(Duration::from_secs(2)));
    c.timeout = crate::config::Duration::from_millis(10);
    assert_eq!(c.expiration(), Some(Duration::from_secs(1)));
    c.metadata_expiration = Some(crate::config::Duration::from_millis(0));
    assert_eq!(c.expiration(), None);
    c.metadata_expiration = Some(crate::config::Duration::from_millis(5));
    let problems = crate::component::Validate::validate(&c);
    assert_eq!(problems.len(), 1);
    assert!(format!("{:?}", problems[0]).contains("metadata_expiration"));
    c.metadata_keys.clear();
    c.metadata_expiration = None;
    assert_eq!(c.expiration(), None, "no shards, nothing to expire");
}

#[tokio::test(start_paused = true)]
async fn without_metadata_keys_metadata_survives_only_agreement() {
    let rec = Recorder::new();
    let p = build(
        BatchConfig {
            send_batch_size: 100,
            ..Default::default()
        },
        rec.clone(),
    );
    p.start().await.unwrap();
    p.consume(with_md(1, &[("x-tenant", "a")])).await.unwrap();
    p.consume(with_md(1, &[("x-tenant", "a")])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.consume(with_md(1, &[("x-tenant", "a")])).await.unwrap();
    p.consume(with_md(1, &[("x-tenant", "b")])).await.unwrap();
    p.shutdown().await;
    assert_eq!(by_tenant(&rec), vec![(None, 2), (Some("a".into()), 2)]);
}

/// Panics on the first `n` batches, then passes them to the recorder.
struct PanicsFirst {
    left: std::sync::atomic::AtomicUsize,
    rec: Arc<Recorder>,
}

#[async_trait::async_trait]
impl crate::pipeline::Consumer<crate::pipeline::Traces> for PanicsFirst {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        use std::sync::atomic::Ordering;
        if self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("the next stage broke");
        }
        self.rec.consume(batch).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_task_fails_what_it_held_and_a_new_task_takes_over() {
    use crate::pipeline::{Delivery, DeliveryTracker, Outcome};
    let rec = Recorder::new();
    let ctx = context("batch");
    let metrics = ctx.metrics.clone();
    let p = BatchConfig {
        send_batch_size: 1,
        ..Default::default()
    }
    .build_traces(
        &ctx,
        Arc::new(PanicsFirst {
            left: 1.into(),
            rec: rec.clone(),
        }),
    )
    .unwrap();
    p.start().await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    let tracked = |n| {
        let s = s.clone();
        spans(n).with_delivery(Delivery::tracked(DeliveryTracker::new(move |o| {
            *s.lock().unwrap() = Some(o)
        })))
    };
    p.consume(tracked(2)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(*seen.lock().unwrap(), Some(Outcome::Failed));
    assert_eq!(metrics.component_panics("processor", "batch").get(), 1);

    // The restarted task takes the next batch from the same queue, and counts what the
    // panic lost as dropped.
    p.consume(spans(3)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rec.batch_sizes(), vec![3]);
    let m = metrics.processor("batch", "traces");
    assert_eq!((m.outgoing.get(), m.dropped.get()), (3, 2));
    p.shutdown().await;
    assert_eq!(metrics.component_panics("processor", "batch").get(), 1);
}
