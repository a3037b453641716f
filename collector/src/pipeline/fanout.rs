//! Fan-out: one batch to several consumers.

use async_trait::async_trait;

use super::{Batch, ConsumeError, Consumer, SharedConsumer, Signal};

/// Hands every batch to each of its consumers; the last one gets the original, the others a
/// copy.
///
/// If any consumer refuses, the refusal is returned (retryable wins over permanent, because
/// the sender should try again for the consumer that can still take the data). As in the
/// OpenTelemetry Collector, consumers that accepted are not rolled back, so a retried batch may
/// reach them twice.
pub struct FanOut<S: Signal> {
    consumers: Vec<SharedConsumer<S>>,
}

impl<S: Signal> FanOut<S> {
    /// A fan-out over `consumers`; with a single consumer, use it directly instead.
    pub fn new(consumers: Vec<SharedConsumer<S>>) -> Self {
        Self { consumers }
    }
}

#[async_trait]
impl<S: Signal> Consumer<S> for FanOut<S> {
    async fn consume(&self, batch: Batch<S>) -> Result<(), ConsumeError> {
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
pub fn fan_out<S: Signal>(mut consumers: Vec<SharedConsumer<S>>) -> SharedConsumer<S> {
    if consumers.len() == 1 {
        consumers.pop().expect("one consumer")
    } else {
        std::sync::Arc::new(FanOut::new(consumers))
    }
}
