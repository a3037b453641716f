//! OTLP/gRPC transport.

use std::time::Duration;

use http::HeaderValue;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::config::GrpcConfig;
use super::{DEFAULT_RETRY_AFTER, Ingest};
use crate::pipeline::ConsumeError;

struct Service {
    ingest: Ingest,
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let batch = self
            .ingest
            .batch(request.resource_spans, &metadata.into_headers());
        match self.ingest.ingest(batch).await {
            Ok(()) => Ok(Response::new(ExportTraceServiceResponse::default())),
            Err(ConsumeError::Retryable {
                reason,
                retry_after,
            }) => {
                let delay = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
                Err(Status::with_error_details(
                    Code::Unavailable,
                    reason,
                    ErrorDetails::with_retry_info(Some(delay)),
                ))
            }
            Err(ConsumeError::Permanent { reason }) => Err(Status::invalid_argument(reason)),
        }
    }
}

/// tonic reports an oversize message as `OUT_OF_RANGE` and an undecodable one as `INTERNAL`;
/// the OTLP spec wants `RESOURCE_EXHAUSTED` and `INVALID_ARGUMENT`. Our handler never returns
/// either code, so every such status in a response came from tonic's decoding and is rewritten
/// (and logged, with the reason tonic gave). tonic already answers `RESOURCE_EXHAUSTED` when a
/// compressed message inflates past the limit; our handler never returns that code either, so
/// it is logged too, unchanged.
fn fix_status(ingest: &Ingest, headers: &mut http::HeaderMap) {
    let code = match headers.get("grpc-status").and_then(|v| v.to_str().ok()) {
        Some("11") => "8",
        Some("13") => "3",
        Some("8") => "8",
        _ => return,
    };
    let reason = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    ingest.malformed("grpc", &reason);
    headers.insert("grpc-status", HeaderValue::from_static(code));
}

/// gRPC percent-encodes `grpc-message`; decode it for the log.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Binds and serves until `stop` is cancelled; returns the server task.
pub async fn serve(
    cfg: &GrpcConfig,
    ingest: Ingest,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener =
        crate::net::bind(&cfg.endpoint, &format!("receivers.{} grpc", ingest.id)).await?;
    tracing::info!(receiver = %ingest.id, endpoint = %cfg.endpoint, "OTLP/gRPC listening");
    let limit = (cfg.max_recv_msg_size_mib * 1024 * 1024) as usize;
    let service = TraceServiceServer::new(Service {
        ingest: ingest.clone(),
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .accept_compressed(CompressionEncoding::Zstd)
    .max_decoding_message_size(limit);
    let fixer = ingest.clone();
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(tower::util::MapResponseLayer::new(
            move |mut resp: http::Response<tonic::body::Body>| {
                fix_status(&fixer, resp.headers_mut());
                resp
            },
        ))
        .add_service(service);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Ok(tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
        {
            tracing::error!(receiver = %ingest.id, error = %e, "OTLP/gRPC server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_grpc_message() {
        assert_eq!(percent_decode("a%20b%25"), "a b%");
        assert_eq!(percent_decode("trailing%2"), "trailing%2");
    }
}
