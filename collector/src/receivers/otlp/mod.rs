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

use crate::auth::{Authenticated, Guard};
use crate::component::{BuildContext, Consumers, Lifecycle, ReceiverConfig};
use crate::otlp::intake::{Accepted, Budget};
use crate::pipeline::{
    ConsumeError, Delivery, DeliveryTracker, Metadata, Outcome, SharedConsumer, TraceBatch, Traces,
};
use crate::telemetry::ReceiverMetrics;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

impl ReceiverConfig for OtlpReceiverConfig {
    fn build(&self, ctx: &BuildContext, next: Consumers) -> anyhow::Result<Arc<dyn Lifecycle>> {
        let next = next.traces(ctx)?;
        let id = ctx.id.to_string();
        // Clients' tokens and passwords would reach a listener off this machine unencrypted.
        let component = format!("receivers.{id}");
        if let Some(g) = self.protocols.grpc.as_ref().filter(|g| g.auth.is_some()) {
            crate::net::warn_plaintext_credentials(
                &component,
                "protocols.grpc.auth",
                g.tls.is_some(),
                [g.endpoint.as_str()],
            );
        }
        if let Some(h) = self.protocols.http.as_ref().filter(|h| h.auth.is_some()) {
            crate::net::warn_plaintext_credentials(
                &component,
                "protocols.http.auth",
                h.tls.is_some(),
                [h.endpoint.as_str()],
            );
        }
        let guard = |a: Option<&crate::auth::AuthConfig>, transport| {
            a.map(|a| Guard::new(a, ctx, transport)).transpose()
        };
        let grpc_auth = guard(
            self.protocols.grpc.as_ref().and_then(|g| g.auth.as_ref()),
            "grpc",
        )?;
        let http_auth = guard(
            self.protocols.http.as_ref().and_then(|h| h.auth.as_ref()),
            "http",
        )?;
        Ok(Arc::new(OtlpReceiver {
            config: self.clone(),
            grpc: self.protocols.grpc.as_ref().map(|g| Ingest {
                id: id.clone(),
                next: next.clone(),
                metrics: ctx.metrics.receiver(&id, "grpc"),
                include_metadata: g.include_metadata,
                auth: grpc_auth,
                acknowledge_when_stored: ctx.acknowledge_when_stored,
                budget: Budget::for_limit(
                    usize::try_from(g.max_recv_msg_size_mib.saturating_mul(1 << 20))
                        .unwrap_or(usize::MAX),
                    "max_recv_msg_size_mib",
                ),
            }),
            http: self.protocols.http.as_ref().map(|h| Ingest {
                id: id.clone(),
                next: next.clone(),
                metrics: ctx.metrics.receiver(&id, "http"),
                include_metadata: h.include_metadata,
                auth: http_auth,
                acknowledge_when_stored: ctx.acknowledge_when_stored,
                budget: Budget::for_limit(
                    usize::try_from(h.max_request_body_size.bytes()).unwrap_or(usize::MAX),
                    "max_request_body_size",
                ),
            }),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    fn authenticators(&self) -> Vec<(String, String)> {
        let refs = self.auth().into_iter();
        refs.map(|(p, a)| (format!("{p}.authenticator"), a.authenticator.clone()))
            .collect()
    }
}

/// What both transports share: hand a decoded batch to the pipeline and count the outcome.
#[derive(Clone)]
pub(crate) struct Ingest {
    pub id: String,
    pub next: SharedConsumer<Traces>,
    pub metrics: ReceiverMetrics,
    /// Attach request metadata to batches (`include_metadata`).
    pub include_metadata: bool,
    /// Checks each request's credentials before its body is read (`auth`).
    pub auth: Option<Guard>,
    /// Answer only once every exporter has stored (or delivered) the data; see
    /// [`crate::component::BuildContext::acknowledge_when_stored`].
    pub acknowledge_when_stored: bool,
    /// What one request may take once decoded.
    pub budget: Budget,
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
/// [`TRANSPORT_HEADERS`] and `auth.*` keys (only authentication sets those).
pub(crate) fn request_metadata(headers: &::http::HeaderMap) -> Metadata {
    Metadata::new(headers.iter().filter_map(|(k, v)| {
        let k = k.as_str();
        if k.ends_with("-bin") || TRANSPORT_HEADERS.contains(&k) || crate::auth::is_reserved(k) {
            return None;
        }
        Some((k.to_string(), v.to_str().ok()?.to_string()))
    }))
}

/// How long a refused client should wait when the pipeline gives no hint.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Ingest {
    /// `batch` with the request's metadata when `include_metadata` is on, and the subject
    /// `who` of an authenticated request (without the credential's header).
    pub fn with_metadata(
        &self,
        batch: TraceBatch,
        headers: &::http::HeaderMap,
        who: Option<&Authenticated>,
    ) -> TraceBatch {
        let kept = || request_metadata(headers);
        match (&self.auth, who) {
            (Some(guard), Some(who)) => {
                let pairs = if self.include_metadata {
                    kept()
                } else {
                    Metadata::default()
                };
                let pairs = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
                batch.with_metadata(guard.metadata(pairs.collect::<Vec<_>>(), who))
            }
            _ if self.include_metadata => batch.with_metadata(kept()),
            _ => batch,
        }
    }

    pub async fn ingest(&self, mut batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.item_count() as u64;
        if spans == 0 {
            return Ok(());
        }
        let stored = if self.acknowledge_when_stored {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let tracker = DeliveryTracker::new(move |outcome| {
                let _ = tx.send(outcome);
            });
            batch.delivery.merge(Delivery::tracked(tracker));
            Some(rx)
        } else {
            None
        };
        let result = match self.next.consume(batch).await {
            Ok(()) => match stored {
                None => Ok(()),
                // Processors in between (a batch processor) may hold the data a while; the
                // answer waits for them and for the exporters' disk writes.
                Some(rx) => match rx.await {
                    Ok(Outcome::Delivered) => Ok(()),
                    Ok(Outcome::Rejected) => Err(ConsumeError::permanent(format!(
                        "receivers.{}: an exporter refused the data for good",
                        self.id
                    ))),
                    Ok(Outcome::Failed) | Err(_) => Err(ConsumeError::retryable(format!(
                        "receivers.{}: the data could not be stored",
                        self.id
                    ))),
                },
            },
            Err(e) => Err(e),
        };
        match result {
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

    /// Counts the spans `accepted` left out and says so in OTLP's terms.
    pub fn partial_success(&self, accepted: &Accepted) -> Option<ExportTracePartialSuccess> {
        let message = accepted.partial_success()?;
        self.metrics.invalid.inc_by(accepted.invalid_spans as u64);
        Some(ExportTracePartialSuccess {
            rejected_spans: i64::try_from(accepted.invalid_spans).unwrap_or(i64::MAX),
            error_message: message,
        })
    }

    /// Logs a request that could not be decoded (its spans are unknown, so not counted).
    pub fn malformed(&self, transport: &str, reason: &str) {
        crate::telemetry::log_limited!(warn, "malformed request refused", receiver = %self.id, transport, %reason);
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
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;

    use super::{Ingest, request_metadata};
    use crate::pipeline::{ConsumeError, Consumer, TraceBatch, Traces};
    use crate::telemetry::Metrics;

    /// A stage that keeps every batch until told what to do with it.
    #[derive(Default)]
    struct Holder(Mutex<Vec<TraceBatch>>);

    #[async_trait]
    impl Consumer<Traces> for Holder {
        async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
            self.0.lock().unwrap().push(batch);
            Ok(())
        }
    }

    fn ingest(next: Arc<Holder>, acknowledge_when_stored: bool) -> Ingest {
        Ingest {
            id: "otlp".into(),
            next,
            metrics: Metrics::new().receiver("otlp", "grpc"),
            include_metadata: false,
            auth: None,
            acknowledge_when_stored,
            budget: crate::otlp::intake::Budget::for_limit(1 << 20, "max_recv_msg_size_mib"),
        }
    }

    fn one_span() -> TraceBatch {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        TraceBatch::new(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default()],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[tokio::test]
    async fn answers_only_once_the_data_is_stored() {
        let holder = Arc::new(Holder::default());
        let ingest = ingest(holder.clone(), true);
        let answer = tokio::spawn(async move { ingest.ingest(one_span()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !answer.is_finished(),
            "answered while a stage still held the data"
        );
        holder.0.lock().unwrap().clear();
        assert_eq!(answer.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn data_that_could_not_be_stored_is_refused_retryably() {
        let holder = Arc::new(Holder::default());
        let ingest = ingest(holder.clone(), true);
        let answer = tokio::spawn(async move { ingest.ingest(one_span()).await });
        while holder.0.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let held = holder.0.lock().unwrap().pop().unwrap();
        held.delivery.fail();
        drop(held);
        assert!(answer.await.unwrap().unwrap_err().is_retryable());
    }

    #[tokio::test]
    async fn without_storage_the_answer_does_not_wait() {
        let holder = Arc::new(Holder::default());
        let ingest = ingest(holder.clone(), false);
        assert_eq!(ingest.ingest(one_span()).await, Ok(()));
        assert_eq!(holder.0.lock().unwrap().len(), 1);
    }

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
