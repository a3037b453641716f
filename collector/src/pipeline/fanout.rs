//! Fan-out: one batch to several consumers.

use async_trait::async_trait;

use super::{ConsumeError, SharedConsumer, TraceBatch, TracesConsumer};

/// Hands every batch to each of its consumers; the last one gets the original, the others a
/// copy.
///
/// If any consumer refuses, the refusal is returned (retryable wins over permanent, because
/// the sender should try again for the consumer that can still take the data). As in the
/// OpenTelemetry Collector, consumers that accepted are not rolled back, so a retried batch may
/// reach them twice.
pub struct FanOut {
    consumers: Vec<SharedConsumer>,
}

impl FanOut {
    /// A fan-out over `consumers`; with a single consumer, use it directly instead.
    pub fn new(consumers: Vec<SharedConsumer>) -> Self {
        Self { consumers }
    }
}

#[async_trait]
impl TracesConsumer for FanOut {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let Some((last, rest)) = self.consumers.split_last() else {
            return Ok(());
        };
        let mut first_err: Option<ConsumeError> = None;
        let mut record = |r: Result<(), ConsumeError>| {
            if let Err(e) = r {
                match &first_err {
                    Some(prev) if prev.is_retryable() || !e.is_retryable() => {}
                    _ => first_err = Some(e),
                }
            }
        };
        for c in rest {
            record(c.consume(batch.clone()).await);
        }
        record(last.consume(batch).await);
        first_err.map_or(Ok(()), Err)
    }
}

/// Builds the consumer for a list: the single consumer itself, or a [`FanOut`].
pub fn fan_out(mut consumers: Vec<SharedConsumer>) -> SharedConsumer {
    if consumers.len() == 1 {
        consumers.pop().expect("one consumer")
    } else {
        std::sync::Arc::new(FanOut::new(consumers))
    }
}
