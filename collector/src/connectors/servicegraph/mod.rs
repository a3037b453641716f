//! `servicegraph`: a traces → metrics connector that pairs the client and server spans of
//! each request (by trace id and the client span's id, the server span's parent) into edges
//! between services, with the OpenTelemetry Collector's metric names, so Grafana's service
//! graph works on them: `traces_service_graph_request_total`, `..._request_failed_total`,
//! and the latency histograms `..._request_server_seconds` and `..._request_client_seconds`.
//!
//! A client span with a database name attribute is a request to that database on its own;
//! a producer/consumer pair is a messaging edge. A span whose other side does not arrive
//! within `store.ttl` becomes an edge to or from a virtual node (the peer the client span
//! names, or `user` for a root server span). As `spanmetrics` does, each request counts as
//! many requests as the client span's adjusted count (`ot=th` in `tracestate`).
//!
//! At shutdown the requests still waiting are settled as if they had expired, and the
//! metrics are sent once more (retried while the next stage refuses with a retryable error),
//! before the pipelines the connector feeds shut down.

mod config;
mod graph;
#[cfg(test)]
mod tests;

pub use config::{ServiceGraphConfig, StoreConfig};
pub use graph::{Graph, SCOPE_NAME};

use crate::connectors::unix_nanos;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, Connector, ConnectorConfig, Lifecycle};
use crate::pipeline::{Batch, ConsumeError, Consumer, Metrics, SharedConsumer, SignalKind, Traces};
use crate::telemetry::ExporterMetrics;

impl ConnectorConfig for ServiceGraphConfig {
    fn pairs(&self) -> Vec<(SignalKind, SignalKind)> {
        vec![(SignalKind::Traces, SignalKind::Metrics)]
    }

    fn build_traces_to_metrics(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Metrics>,
    ) -> anyhow::Result<Arc<dyn Connector<Traces>>> {
        Ok(Arc::new(ServiceGraph {
            id: ctx.id.to_string(),
            graph: Arc::new(Mutex::new(Graph::new(self.clone(), unix_nanos()))),
            next,
            flush_interval: self.metrics_flush_interval.get(),
            expiration_loop: self.store_expiration_loop.get(),
            metrics: ctx
                .metrics
                .exporter(&ctx.id.to_string(), SignalKind::Traces),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        }))
    }
}

struct ServiceGraph {
    id: String,
    graph: Arc<Mutex<Graph>>,
    next: SharedConsumer<Metrics>,
    /// Zero: flush after every batch.
    flush_interval: Duration,
    expiration_loop: Duration,
    /// Spans taken in (`sent`).
    metrics: ExporterMetrics,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The metrics now, as a batch (`None` before the first edge).
fn take(graph: &Mutex<Graph>) -> Option<Batch<Metrics>> {
    let resources = graph
        .lock()
        .expect("servicegraph lock")
        .metrics(unix_nanos());
    (!resources.is_empty()).then(|| Batch::new(resources))
}

/// Sends `batch` on; the metrics are cumulative, so one refused is only late.
async fn send(id: &str, next: &SharedConsumer<Metrics>, batch: Batch<Metrics>) {
    if let Err(e) = next.consume(batch).await {
        tracing::warn!(connector = %id, error = %e, "service graph metrics refused by the next stage");
    }
}

#[async_trait]
impl Consumer<Traces> for ServiceGraph {
    async fn consume(&self, batch: Batch<Traces>) -> Result<(), ConsumeError> {
        // The spans are read in place from the bytes unless a stage decoded the batch.
        {
            let now = unix_nanos();
            let mut graph = self.graph.lock().expect("servicegraph lock");
            match batch.protobuf_parts() {
                Some(parts) => graph.add_protobuf(parts.map(|p| &p[..]), now),
                None => graph.add(batch.resources(), now),
            }
        }
        self.metrics.sent.inc_by(batch.item_count() as u64);
        if self.flush_interval.is_zero()
            && let Some(m) = take(&self.graph)
        {
            send(&self.id, &self.next, m).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Lifecycle for ServiceGraph {
    async fn start(&self) -> anyhow::Result<()> {
        let (graph, next, stop, id) = (
            self.graph.clone(),
            self.next.clone(),
            self.stop.clone(),
            self.id.clone(),
        );
        let (flush_every, expire_every) = (self.flush_interval, self.expiration_loop);
        *self.task.lock().expect("servicegraph lock") = Some(tokio::spawn(async move {
            let now = tokio::time::Instant::now();
            let mut expiry = tokio::time::interval_at(now + expire_every, expire_every);
            // With `metrics_flush_interval: 0s` the flushes follow the batches instead.
            let flush_every = if flush_every.is_zero() {
                Duration::from_secs(86_400 * 365)
            } else {
                flush_every
            };
            let mut flush = tokio::time::interval_at(now + flush_every, flush_every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = expiry.tick() => {
                        graph.lock().expect("servicegraph lock").expire(Some(unix_nanos()));
                    }
                    _ = flush.tick() => {
                        if let Some(m) = take(&graph) {
                            send(&id, &next, m).await;
                        }
                    }
                }
            }
        }));
        Ok(())
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        let task = self.task.lock().expect("servicegraph lock").take();
        if let Some(t) = task {
            let _ = t.await;
        }
        {
            let mut graph = self.graph.lock().expect("servicegraph lock");
            graph.expire(None);
            if graph.dropped_spans > 0 || graph.expired > 0 {
                tracing::info!(
                    connector = %self.id,
                    dropped_spans = graph.dropped_spans,
                    unpaired_requests = graph.expired,
                    "spans that made no edge"
                );
            }
        }
        let Some(batch) = take(&self.graph) else {
            return;
        };
        super::send_final(&self.id, &self.next, batch, "service graph metrics").await;
    }
}
