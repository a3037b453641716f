//! `otlp` receiver: OTLP/gRPC and OTLP/HTTP (protobuf and JSON), per the OTLP specification.
//!
//! Both transports decode once into a [`TraceBatch`] and hand it to the pipeline. Status codes
//! follow the spec: back-pressure → gRPC `UNAVAILABLE` with `RetryInfo` / HTTP 503 with
//! `Retry-After`; malformed → `INVALID_ARGUMENT` / 400; too large → `RESOURCE_EXHAUSTED` / 413;
//! unsupported media type → 415.

mod config;
mod grpc;
mod http;

pub use config::{GrpcConfig, HttpConfig, OtlpReceiverConfig, Protocols};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, Lifecycle, ReceiverConfig};
use crate::pipeline::{ConsumeError, SharedConsumer, TraceBatch};
use crate::telemetry::ReceiverMetrics;

impl ReceiverConfig for OtlpReceiverConfig {
    fn build(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer,
    ) -> anyhow::Result<Arc<dyn Lifecycle>> {
        let id = ctx.id.to_string();
        Ok(Arc::new(OtlpReceiver {
            config: self.clone(),
            grpc: self.protocols.grpc.as_ref().map(|_| Ingest {
                id: id.clone(),
                next: next.clone(),
                metrics: ctx.metrics.receiver(&id, "grpc"),
            }),
            http: self.protocols.http.as_ref().map(|_| Ingest {
                id: id.clone(),
                next: next.clone(),
                metrics: ctx.metrics.receiver(&id, "http"),
            }),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        }))
    }
}

/// What both transports share: hand a decoded batch to the pipeline and count the outcome.
#[derive(Clone)]
pub(crate) struct Ingest {
    pub id: String,
    pub next: SharedConsumer,
    pub metrics: ReceiverMetrics,
}

/// How long a refused client should wait when the pipeline gives no hint.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Ingest {
    pub async fn ingest(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.span_count() as u64;
        if spans == 0 {
            return Ok(());
        }
        match self.next.consume(batch).await {
            Ok(()) => {
                self.metrics.accepted.inc_by(spans);
                Ok(())
            }
            Err(e) => {
                self.metrics.refused.inc_by(spans);
                tracing::debug!(receiver = %self.id, error = %e, spans, "pipeline refused data");
                Err(e)
            }
        }
    }

    /// Logs a request that could not be decoded (its spans are unknown, so not counted).
    pub fn malformed(&self, transport: &str, reason: &str) {
        tracing::warn!(receiver = %self.id, transport, %reason, "malformed request refused");
    }
}

struct OtlpReceiver {
    config: OtlpReceiverConfig,
    grpc: Option<Ingest>,
    http: Option<Ingest>,
    stop: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

#[async_trait]
impl Lifecycle for OtlpReceiver {
    async fn start(&self) -> anyhow::Result<()> {
        let mut tasks = Vec::new();
        if let (Some(cfg), Some(ingest)) = (&self.config.protocols.grpc, &self.grpc) {
            tasks.push(grpc::serve(cfg, ingest.clone(), self.stop.clone()).await?);
        }
        if let (Some(cfg), Some(ingest)) = (&self.config.protocols.http, &self.http) {
            tasks.push(http::serve(cfg, ingest.clone(), self.stop.clone()).await?);
        }
        self.tasks.lock().expect("otlp receiver lock").extend(tasks);
        Ok(())
    }

    async fn shutdown(&self) {
        // Stop accepting; servers finish the requests in flight before their tasks end.
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("otlp receiver lock"));
        for t in tasks {
            let _ = t.await;
        }
    }
}
