use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::component::ProcessorConfig;
use crate::testing::{Recorder, context, spans};

fn build(cfg: BatchConfig, next: Arc<Recorder>) -> Arc<dyn Processor> {
    cfg.build(&context("batch"), next).unwrap()
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
