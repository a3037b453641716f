//! `otlp` receiver: OTLP/gRPC and OTLP/HTTP (protobuf and JSON), per the OTLP specification.
//!
//! Protobuf bodies are checked and kept as bytes, JSON bodies decoded; either way the
//! transport hands a [`TraceBatch`] to the pipeline. Status codes
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
use crate::pipeline::{ConsumeError, Metadata, SharedConsumer, TraceBatch};
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
            grpc: self.protocols.grpc.as_ref().map(|g| Ingest {
                id: id.clone(),
                next: next.clone(),
                metrics: ctx.metrics.receiver(&id, "grpc"),
                include_metadata: g.include_metadata,
            }),
            http: self.protocols.http.as_ref().map(|h| Ingest {
                id: id.clone(),
                next: next.clone(),
                metrics: ctx.metrics.receiver(&id, "http"),
                include_metadata: h.include_metadata,
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
    /// Attach request metadata to batches (`include_metadata`).
    pub include_metadata: bool,
}

/// Headers never kept as request metadata: they describe the transport and the body's
/// encoding, not the request, and some (`content-length`, `grpc-timeout`) differ from request
/// to request, which would keep the batch processor from ever merging requests' metadata.
const TRANSPORT_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "te",
    "grpc-encoding",
    "grpc-accept-encoding",
    "grpc-timeout",
];

/// A request's headers (HTTP) or metadata (gRPC) as batch metadata: keys lower-cased; values
/// that are not visible ASCII and binary gRPC metadata (`-bin` keys) are skipped, and so are
/// [`TRANSPORT_HEADERS`].
pub(crate) fn request_metadata(headers: &::http::HeaderMap) -> Metadata {
    Metadata::new(headers.iter().filter_map(|(k, v)| {
        let k = k.as_str();
        if k.ends_with("-bin") || TRANSPORT_HEADERS.contains(&k) {
            return None;
        }
        Some((k.to_string(), v.to_str().ok()?.to_string()))
    }))
}

/// How long a refused client should wait when the pipeline gives no hint.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Ingest {
    /// `batch` with the request's metadata when `include_metadata` is on.
    pub fn with_metadata(&self, batch: TraceBatch, headers: &::http::HeaderMap) -> TraceBatch {
        if self.include_metadata {
            batch.with_metadata(request_metadata(headers))
        } else {
            batch
        }
    }

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
        // Stop accepting; servers answer the requests in flight, or cut them after a short
        // grace, before their tasks end (see `crate::serve`).
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("otlp receiver lock"));
        for t in tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::request_metadata;

    #[test]
    fn request_metadata_keeps_ascii_request_headers_only() {
        let mut h = ::http::HeaderMap::new();
        h.insert("x-tenant", "acme".parse().unwrap());
        h.append("x-tenant", "second".parse().unwrap());
        h.insert("content-type", "application/x-protobuf".parse().unwrap());
        h.insert("content-length", "42".parse().unwrap());
        h.insert("trace-bin", "AAEC".parse().unwrap());
        h.insert(
            "x-latin1",
            ::http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        let m = request_metadata(&h);
        assert_eq!(m.get("x-tenant"), Some("acme"));
        assert_eq!(
            m.get_all("x-tenant").collect::<Vec<_>>(),
            ["acme", "second"]
        );
        assert_eq!(
            m.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["x-tenant", "x-tenant"]
        );
    }
}
