//! One OTLP/gRPC `Export` call per attempt, over a single lazily connecting HTTP/2 channel.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};
use tonic::client::Grpc;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_prost::ProstCodec;
use tonic_types::StatusExt;

use crate::config::tls::client::{ClientTls, HttpsConnector};
use crate::exporters::sending_queue::{Accepted, SendError, Sender};
use crate::net::{Compression, error_chain};
use crate::otlp::OtlpSignal;
use crate::pipeline::Batch;
/// Responses are tiny; anything this large is not an OTLP response.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// An export request (`ExportTraceServiceRequest`, ...), already encoded.
///
/// The generated `TraceServiceClient::export` takes the request by value, which would mean a
/// deep copy of every span per attempt (and per exporter in a fan-out), and an encoding per
/// attempt. This type holds the request's bytes (those received, when no stage changed the
/// spans) and writes them as they are through `tonic::client::Grpc`.
#[derive(Debug, Clone, Default)]
pub struct SharedRequest(pub Bytes);

impl Message for SharedRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    /// Only ever sent, never received: fields are skipped.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// Sends signal `S` to one OTLP/gRPC server.
pub struct GrpcSender<S> {
    target: String,
    endpoint: Endpoint,
    connector: HttpsConnector,
    /// Created on first use, inside the runtime (tonic spawns the connection's task).
    channel: OnceLock<Channel>,
    compression: Option<CompressionEncoding>,
    metadata: MetadataMap,
    timeout: Duration,
    /// Adds credentials to each request (`auth`).
    auth: Option<std::sync::Arc<dyn crate::auth::ClientAuthenticator>>,
    signal: PhantomData<fn() -> S>,
}

impl<S: OtlpSignal> GrpcSender<S> {
    /// A sender to `authority` (`host:port`), over TLS when `tls` is given. Headers must have
    /// been validated.
    pub fn new(
        authority: &str,
        tls: Option<Arc<ClientTls>>,
        compression: Compression,
        headers: &BTreeMap<String, crate::config::opaque::Opaque>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let uri = format!("{scheme}://{authority}");
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .and_then(|e| e.user_agent(concat!("wasmcol/", env!("CARGO_PKG_VERSION"))))
            .map_err(|e| format!("endpoint {uri:?}: {}", error_chain(&e)))?;
        if !timeout.is_zero() {
            endpoint = endpoint.connect_timeout(timeout);
        }
        // Our connector, so TLS is rustls with the configuration current at each connection
        // (certificates rotated on disk apply to the next one).
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let connector = match &tls {
            Some(tls) => tls.connector(http),
            None => HttpsConnector::plaintext(http),
        };
        let mut metadata = MetadataMap::new();
        for (name, value) in headers {
            let key = AsciiMetadataKey::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers.{name}: not a valid metadata name"))?;
            let value = AsciiMetadataValue::try_from(value.expose())
                .map_err(|_| format!("headers.{name}: not a valid metadata value"))?;
            metadata.insert(key, value);
        }
        Ok(Self {
            target: uri,
            endpoint,
            connector,
            channel: OnceLock::new(),
            compression: match compression {
                Compression::Gzip => Some(CompressionEncoding::Gzip),
                Compression::Zstd => Some(CompressionEncoding::Zstd),
                Compression::None => None,
            },
            metadata,
            timeout,
            auth: None,
            signal: PhantomData,
        })
    }

    /// Adds `auth`'s headers (their current values) to every request.
    pub fn with_auth(
        mut self,
        auth: Option<std::sync::Arc<dyn crate::auth::ClientAuthenticator>>,
    ) -> Self {
        self.auth = auth;
        self
    }
}

#[async_trait]
impl<S: OtlpSignal> Sender for GrpcSender<S> {
    type Signal = S;
    type Payload = SharedRequest;

    fn prepare(&self, batch: &Batch<S>) -> SharedRequest {
        SharedRequest(batch.to_protobuf())
    }

    async fn send(&self, payload: &SharedRequest) -> Result<Accepted, SendError> {
        let channel = self
            .channel
            .get_or_init(|| {
                self.endpoint
                    .connect_with_connector_lazy(self.connector.clone())
            })
            .clone();
        let mut grpc = Grpc::new(channel)
            .max_encoding_message_size(usize::MAX)
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        if let Some(c) = self.compression {
            grpc = grpc.send_compressed(c);
        }
        grpc.ready().await.map_err(|e| {
            SendError::retryable(format!("cannot reach {}: {}", self.target, error_chain(&e)))
        })?;
        let mut request = Request::new(payload.clone());
        *request.metadata_mut() = self.metadata.clone();
        for (name, value) in self.auth.iter().flat_map(|a| a.headers()) {
            if let (Ok(k), Ok(v)) = (
                AsciiMetadataKey::from_bytes(name.as_str().as_bytes()),
                AsciiMetadataValue::try_from(value.as_bytes()),
            ) {
                request.metadata_mut().insert(k, v);
            }
        }
        if !self.timeout.is_zero() {
            request.set_timeout(self.timeout);
        }
        let codec = ProstCodec::<SharedRequest, S::Response>::default();
        match grpc
            .unary(
                request,
                PathAndQuery::from_static(S::GRPC_EXPORT_PATH),
                codec,
            )
            .await
        {
            Ok(response) => Ok(match S::rejected(response.get_ref()) {
                Some((rejected, message)) => Accepted { rejected, message },
                None => Accepted::all(),
            }),
            Err(status) => Err(classify(&status)),
        }
    }
}

/// Maps a gRPC status to retryable or permanent, as the OTLP specification lists them.
pub fn classify(status: &Status) -> SendError {
    let retry_info = status.get_details_retry_info();
    let retryable = match status.code() {
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => true,
        // Only a server that says when to come back is worth retrying; otherwise the request
        // itself is too large or the quota is gone for good.
        Code::ResourceExhausted => retry_info.is_some(),
        _ => false,
    };
    let mut reason = format!(
        "gRPC status {}: {}",
        code_name(status.code()),
        status.message()
    );
    if let Some(source) = status.source() {
        let chain = error_chain(source);
        // A transport error repeats itself as the status message; say it once.
        if !status.message().is_empty() && chain.contains(status.message()) {
            reason = format!("gRPC status {}: {chain}", code_name(status.code()));
        } else {
            reason.push_str(&format!(" ({chain})"));
        }
    }
    if retryable {
        SendError::Retryable {
            reason,
            retry_after: retry_info.and_then(|r| r.retry_delay),
        }
    } else {
        SendError::Permanent { reason }
    }
}

/// `InvalidArgument` → `INVALID_ARGUMENT`, as gRPC documentation spells codes.
fn code_name(code: Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}
