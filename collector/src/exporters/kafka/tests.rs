//! The producer against librdkafka's mock cluster: delivery reports decide the outcome.

use std::time::Duration;

use rdkafka::mocking::MockCluster;

use super::*;
use crate::exporters::sending_queue::{SendError, Sender};
use crate::testing;

fn config(brokers: &str) -> KafkaExporterConfig {
    let mut cfg: KafkaExporterConfig = serde_yaml_ng::from_str(&format!(
        "brokers: [{brokers}]\ntopic: spans\npartition_traces_by_id: true\ntimeout: 1s"
    ))
    .unwrap();
    cfg.producer.linger = crate::config::Duration::from_millis(1);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_delivered_only_when_the_broker_acks_every_message() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("spans", 3, 1).unwrap();
    let sender = KafkaSender::new(
        &config(&mock.bootstrap_servers()),
        "kafka",
        Default::default(),
    )
    .unwrap();

    // (The first attempt may time out while the producer starts up on a busy machine.)
    let payload = sender.prepare(&testing::spans(5));
    assert_eq!(eventually(&sender, &payload).await.rejected, 0);

    // With the broker gone, no report is a success: the attempt fails as retryable...
    mock.broker_down(1).unwrap();
    let payload = sender.prepare(&testing::spans(4));
    match sender.send(&payload).await {
        Err(SendError::Retryable { reason, .. }) => {
            assert!(
                reason.contains("4 of 4 messages not acknowledged"),
                "{reason}"
            )
        }
        other => panic!("expected a retryable failure, got {other:?}"),
    }
    // ...and the same payload goes through once the broker is back.
    mock.broker_up(1).unwrap();
    assert_eq!(eventually(&sender, &payload).await.rejected, 0);
}

async fn eventually(
    sender: &KafkaSender,
    payload: &<KafkaSender as Sender>::Payload,
) -> crate::exporters::sending_queue::Accepted {
    for _ in 0..20 {
        if let Ok(a) = sender.send(payload).await {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("not delivered within 20 attempts");
}
