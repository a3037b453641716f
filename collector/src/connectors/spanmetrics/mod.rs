//! `spanmetrics` (also `span_metrics`): a traces → metrics connector that counts spans and
//! records their durations per service, span name, span kind, status code and the configured
//! dimensions (R.E.D metrics), with the OpenTelemetry Collector's metric names, attributes,
//! buckets and defaults, so dashboards made for it work.
//!
//! Beyond the Collector: each span counts as many spans as its adjusted count, read from the
//! sampling threshold in its `tracestate` (`ot=th:...`, see [`crate::sampling::adjusted`]), so the counts stay
//! right behind samplers that record it.
//!
//! `consume` only adds the spans to the series (and reports them delivered); a task sends the
//! metrics every `metrics_flush_interval`, and shutdown sends them once more, retrying while
//! the next stage refuses with a retryable error (the service bounds how long), before the
//! pipelines it feeds shut down.

mod aggregate;
mod config;
#[cfg(test)]
mod tests;

pub use aggregate::{Aggregator, OVERFLOW_ATTRIBUTE, SCOPE_NAME};
pub use config::{SpanMetricsConfig, Temporality, Unit};

use crate::connectors::unix_nanos;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, Connector, ConnectorConfig, Lifecycle};
use crate::pipeline::{Batch, ConsumeError, Consumer, Metrics, SharedConsumer, SignalKind, Traces};
use crate::telemetry::ExporterMetrics;

impl ConnectorConfig for SpanMetricsConfig {
    fn pairs(&self) -> Vec<(SignalKind, SignalKind)> {
        vec![(SignalKind::Traces, SignalKind::Metrics)]
    }

    fn build_traces_to_metrics(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Metrics>,
    ) -> anyhow::Result<Arc<dyn Connector<Traces>>> {
        Ok(Arc::new(SpanMetrics {
            id: ctx.id.to_string(),
            aggregator: Arc::new(Mutex::new(Aggregator::new(self.clone(), unix_nanos()))),
            next,
            interval: self.metrics_flush_interval.get(),
            metrics: ctx
                .metrics
                .exporter(&ctx.id.to_string(), SignalKind::Traces),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        }))
    }
}

struct SpanMetrics {
    id: String,
    aggregator: Arc<Mutex<Aggregator>>,
    next: SharedConsumer<Metrics>,
    interval: Duration,
    /// Spans taken in (`sent`: counted into the series).
    metrics: ExporterMetrics,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The metrics now, as a batch (`None` when there are none).
fn take(aggregator: &Mutex<Aggregator>) -> Option<Batch<Metrics>> {
    let resources = aggregator
        .lock()
        .expect("spanmetrics lock")
        .flush(unix_nanos());
    (!resources.is_empty()).then(|| Batch::new(resources))
}

#[async_trait]
impl Consumer<Traces> for SpanMetrics {
    async fn consume(&self, batch: Batch<Traces>) -> Result<(), ConsumeError> {
        // The spans are read in place from the bytes unless a stage decoded the batch.
        let now = unix_nanos();
        let mut aggregator = self.aggregator.lock().expect("spanmetrics lock");
        let counted = match batch.protobuf_parts() {
            Some(parts) => aggregator.add_protobuf(parts.map(|p| &p[..]), now),
            None => aggregator.add(batch.resources(), now),
        };
        drop(aggregator);
        self.metrics.sent.inc_by(counted as u64);
        Ok(())
    }
}

#[async_trait]
impl Lifecycle for SpanMetrics {
    async fn start(&self) -> anyhow::Result<()> {
        let (aggregator, next, interval, stop, id) = (
            self.aggregator.clone(),
            self.next.clone(),
            self.interval,
            self.stop.clone(),
            self.id.clone(),
        );
        *self.task.lock().expect("spanmetrics lock") = Some(tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let Some(batch) = take(&aggregator) else {
                    continue;
                };
                // Cumulative series are sent in full at the next flush, so a refused batch
                // is late, not lost; delta intervals refused are lost, as in the Collector.
                if let Err(e) = next.consume(batch).await {
                    tracing::warn!(connector = %id, error = %e, "span metrics refused by the next stage");
                }
            }
        }));
        Ok(())
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        let task = self.task.lock().expect("spanmetrics lock").take();
        if let Some(t) = task {
            let _ = t.await;
        }
        // The last flush: retried while refused with a retryable error; the service cuts
        // this short at its shutdown timeout.
        let Some(batch) = take(&self.aggregator) else {
            return;
        };
        super::send_final(&self.id, &self.next, batch, "span metrics").await;
    }
}
