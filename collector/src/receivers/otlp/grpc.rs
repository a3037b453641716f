//! OTLP/gRPC transport.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderValue;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};

use super::config::GrpcConfig;
use super::{DEFAULT_RETRY_AFTER, Ingest};
use crate::compute;
use crate::otlp::OtlpSignal;
use crate::otlp::intake::{self, Refusal};
use crate::pipeline::{ConsumeError, Logs, Metrics, Traces};

/// A signal's service's `Export`, taking the request as the bytes the client sent: they are
/// checked, not decoded, and travel on as they are (see [`crate::pipeline::Batch`]). Shared by
/// every request, so a call costs a reference count, not a copy of the receiver's state.
struct Export<S>(Arc<Ingest>, PhantomData<S>);

// Not derived: `derive` would ask `S: Clone` of the signal marker.
impl<S> Clone for Export<S> {
    fn clone(&self) -> Self {
        Export(self.0.clone(), PhantomData)
    }
}

impl<S: OtlpSignal> UnaryService<Bytes> for Export<S> {
    type Response = S::Response;
    type Future = futures::future::BoxFuture<'static, Result<Response<Self::Response>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let ingest = self.0.clone();
        Box::pin(async move { export::<S>(&ingest, request).await })
    }
}

async fn export<S: OtlpSignal>(
    ingest: &Ingest,
    request: Request<Bytes>,
) -> Result<Response<S::Response>, Status> {
    let (metadata, extensions, body) = request.into_parts();
    let budget = ingest.budget;
    let accepted = match compute::run(body.len(), move || intake::protobuf::<S>(body, budget)).await
    {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(Refusal::Malformed(e))) => {
            let reason = format!("cannot decode the request: {e}");
            ingest.malformed("grpc", &reason);
            return Err(Status::invalid_argument(reason));
        }
        // No RetryInfo: the same request fails the same way again.
        Ok(Err(Refusal::OverBudget(reason))) => {
            ingest.transport_metrics().over_budget.inc();
            ingest.malformed("grpc", &reason);
            return Err(Status::resource_exhausted(reason));
        }
        Err(panicked) => return Err(Status::internal(panicked.to_string())),
    };
    let response = ingest.response(&accepted);
    let who = extensions.get::<crate::auth::Authenticated>();
    let batch = ingest.with_metadata(accepted.batch, &metadata.into_headers(), who);
    match ingest.ingest(batch).await {
        Ok(()) => Ok(Response::new(response)),
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

/// Request bodies as bytes, responses (of type `R`) through prost.
struct RawRequestCodec<R>(PhantomData<R>);

impl<R> Default for RawRequestCodec<R> {
    fn default() -> Self {
        RawRequestCodec(PhantomData)
    }
}

impl<R: prost::Message + Default + Send + 'static> Codec for RawRequestCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = ProstEncoder<R>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // Splits the message off tonic's read buffer without copying.
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// The OTLP services (trace, logs, metrics: those some pipeline takes) as one tower service:
/// what tonic's generated servers do, with [`RawRequestCodec`] in place of prost for the
/// request.
#[derive(Clone)]
struct OtlpServer {
    ingest: Arc<Ingest>,
    accept: EnabledCompressionEncodings,
    max_decoding: usize,
}

impl NamedService for OtlpServer {
    const NAME: &'static str = Traces::GRPC_SERVICE;
}

impl OtlpServer {
    /// Answers `req` with signal `S`'s `Export`.
    fn serve<S: OtlpSignal, B>(
        &self,
        mut req: http::Request<B>,
    ) -> futures::future::BoxFuture<'static, Result<http::Response<Body>, Infallible>>
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        let export = Export::<S>(self.ingest.clone(), PhantomData);
        let mut grpc = tonic::server::Grpc::new(RawRequestCodec::<S::Response>::default())
            .apply_compression_config(self.accept, EnabledCompressionEncodings::default())
            .apply_max_message_size_config(Some(self.max_decoding), None);
        Box::pin(async move {
            // Before the body is read: a refused client's message is never decoded.
            if let Some(guard) = &export.0.auth {
                match guard.check(req.headers()).await {
                    Ok(who) => {
                        req.extensions_mut().insert(who);
                    }
                    Err(r) => return Ok(Status::unauthenticated(r.message).into_http()),
                }
            }
            Ok(grpc.unary(export, req).await)
        })
    }
}

impl<B> tower::Service<http::Request<B>> for OtlpServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        let ingest = &self.ingest;
        if path == Traces::GRPC_EXPORT_PATH && ingest.takes::<Traces>() {
            self.serve::<Traces, B>(req)
        } else if path == Logs::GRPC_EXPORT_PATH && ingest.takes::<Logs>() {
            self.serve::<Logs, B>(req)
        } else if path == Metrics::GRPC_EXPORT_PATH && ingest.takes::<Metrics>() {
            self.serve::<Metrics, B>(req)
        } else {
            Box::pin(async { Ok(Status::unimplemented("").into_http()) })
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

/// Binds and serves until `stop` is cancelled; returns the server task, which ends once
/// requests in progress are answered or cut (see [`crate::serve`]).
pub async fn serve(
    cfg: &GrpcConfig,
    ingest: Ingest,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener =
        crate::net::bind(&cfg.endpoint, &format!("receivers.{} grpc", ingest.id)).await?;
    tracing::info!(receiver = %ingest.id, endpoint = %cfg.endpoint, tls = cfg.tls.is_some(), "OTLP/gRPC listening");
    let limit = (cfg.max_recv_msg_size_mib * 1024 * 1024) as usize;
    let mut accept = EnabledCompressionEncodings::default();
    accept.enable(CompressionEncoding::Gzip);
    accept.enable(CompressionEncoding::Zstd);
    let service = OtlpServer {
        ingest: Arc::new(ingest.clone()),
        accept,
        max_decoding: limit,
    };
    let fixer = ingest.clone();
    let service = tower::util::MapResponse::new(
        service,
        move |mut resp: http::Response<tonic::body::Body>| {
            fix_status(&fixer, resp.headers_mut());
            resp
        },
    );
    let listener_config = cfg
        .tls_listener(
            &ingest.id,
            &ingest.transport_metrics().tls_handshake_failures,
        )?
        .counted(
            &ingest.transport_metrics().open_connections,
            &ingest.transport_metrics().connection_limit_reached,
        );
    Ok(crate::serve::spawn(
        listener,
        listener_config,
        service,
        stop,
        format!("receivers.{} grpc", ingest.id),
    ))
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
