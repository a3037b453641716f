//! Connectors: components that are an exporter of some pipelines and a receiver of others
//! (see [`crate::component::ConnectorConfig`]).

pub mod forward;
pub mod servicegraph;
#[cfg(test)]
pub(crate) mod span_fixtures;
pub mod spanmetrics;
pub(crate) mod spans;
pub mod trace_analysis;

use std::time::{Duration, SystemTime};

use crate::pipeline::{Batch, Metrics, SharedConsumer};

/// The attribute of the series that takes what would start a series past a connector's
/// `aggregation_cardinality_limit`.
pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";

/// The time now, in nanoseconds since the Unix epoch (0 before it).
pub(crate) fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A connector's last metrics at shutdown, sent on to `next`: retried while refused with a
/// retryable error (the service cuts this short at its shutdown timeout), given up on a
/// permanent one. `what` names them in the log ("span metrics", "findings").
pub(crate) async fn send_final(
    id: &str,
    next: &SharedConsumer<Metrics>,
    batch: Batch<Metrics>,
    what: &str,
) {
    loop {
        match next.consume(batch.clone()).await {
            Ok(()) => return,
            Err(e) if e.is_retryable() => {
                tracing::debug!(connector = %id, error = %e, "final {what} refused; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::warn!(connector = %id, error = %e, "final {what} refused for good");
                return;
            }
        }
    }
}
