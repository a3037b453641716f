//! One OTLP/HTTP POST per attempt, over a pooled hyper client.

use std::collections::BTreeMap;
use std::io::Write;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT,
};
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prost::Message;

use super::Encoding;
use crate::config::tls::client::{ClientTls, HttpsConnector};
use crate::exporters::sending_queue::{Accepted, SendError, Sender};
use crate::net::{Compression, error_chain};
use crate::otlp::OtlpSignal;
use crate::pipeline::Batch;

/// Most of a response body we read: OTLP answers are tiny, error pages need not be.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Most of an unparsed error body quoted in a log line.
const MAX_QUOTED_CHARS: usize = 1024;

/// Sends signal `S` to one OTLP/HTTP URL.
pub struct HttpSender<S> {
    client: Client<HttpsConnector, Full<Bytes>>,
    url: Uri,
    /// Every request's headers: the configured ones plus content type and encoding.
    headers: HeaderMap,
    encoding: Encoding,
    compression: Compression,
    /// Adds credentials to each request (`auth`).
    auth: Option<std::sync::Arc<dyn crate::auth::ClientAuthenticator>>,
    signal: PhantomData<fn() -> S>,
}

impl<S: OtlpSignal> HttpSender<S> {
    /// A sender posting to `url`, with `tls` for an `https://` one. Headers must have been
    /// validated.
    pub fn new(
        url: Uri,
        tls: Option<Arc<ClientTls>>,
        encoding: Encoding,
        compression: Compression,
        configured: &BTreeMap<String, crate::config::opaque::Opaque>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("wasmcol/", env!("CARGO_PKG_VERSION"))),
        );
        for (name, value) in configured {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers.{name}: not a valid HTTP header name"))?;
            let value = HeaderValue::from_str(value.expose())
                .map_err(|_| format!("headers.{name}: not a valid HTTP header value"))?;
            headers.insert(name, value);
        }
        // Set last: they must describe the body whatever the configured headers say.
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(match encoding {
                Encoding::Proto => "application/x-protobuf",
                Encoding::Json => "application/json",
            }),
        );
        match compression {
            Compression::Gzip => headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            Compression::Zstd => headers.insert(CONTENT_ENCODING, HeaderValue::from_static("zstd")),
            Compression::None => headers.remove(CONTENT_ENCODING),
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        if !timeout.is_zero() {
            connector.set_connect_timeout(Some(timeout));
        }
        let connector = match &tls {
            Some(tls) => tls.connector(connector),
            None => HttpsConnector::plaintext(connector),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Self {
            client,
            url,
            headers,
            encoding,
            compression,
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
impl<S: OtlpSignal> Sender for HttpSender<S> {
    type Signal = S;
    /// The encoded, compressed body: what the queue holds is what goes on the wire.
    type Payload = Bytes;

    fn prepare(&self, batch: &Batch<S>) -> Bytes {
        let body = match self.encoding {
            // The received bytes as they are, or the shared spans encoded without copying them.
            Encoding::Proto => {
                let mut out = Vec::with_capacity(batch.protobuf_len());
                batch.encode_protobuf(&mut out);
                out
            }
            Encoding::Json => {
                let mut out = Vec::new();
                S::encode_json(batch.resources(), &mut out);
                out
            }
        };
        Bytes::from(match self.compression {
            Compression::None => body,
            Compression::Gzip => {
                // Fastest level, as the OpenTelemetry Collector's gzip: collector CPU is the
                // scarcer resource, and OTLP compresses well even so.
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::fast(),
                );
                e.write_all(&body).expect("gzip into memory");
                e.finish().expect("gzip into memory")
            }
            Compression::Zstd => zstd::bulk::compress(&body, 3).expect("zstd into memory"),
        })
    }

    async fn send(&self, payload: &Bytes) -> Result<Accepted, SendError> {
        let mut request = Request::post(self.url.clone())
            .body(Full::new(payload.clone()))
            .expect("a POST with a valid URL");
        *request.headers_mut() = self.headers.clone();
        for (name, value) in self.auth.iter().flat_map(|a| a.headers()) {
            request.headers_mut().insert(name, value);
        }
        let response =
            self.client.request(request).await.map_err(|e| {
                SendError::retryable(format!("POST {}: {}", self.url, error_chain(&e)))
            })?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = crate::net::read_capped(response.into_body(), MAX_RESPONSE_BYTES).await;
        if status.is_success() {
            // The server took the data; an unreadable answer only loses the partial-success
            // details.
            return Ok(body.map_or_else(|_| Accepted::all(), |b| accepted::<S>(&content_type, &b)));
        }
        let message = match body {
            Ok(b) => error_message(&content_type, &b),
            Err(e) => format!("(the error body could not be read: {e})"),
        };
        let reason = format!("POST {}: HTTP {status}: {message}", self.url);
        if is_retryable(status) {
            Err(SendError::Retryable {
                reason,
                retry_after,
            })
        } else {
            Err(SendError::Permanent { reason })
        }
    }
}

/// The statuses the OTLP/HTTP specification says to retry.
pub fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// `Retry-After`: delay seconds, or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn is_json(content_type: &str) -> bool {
    content_type.contains("json")
}

fn is_protobuf(content_type: &str) -> bool {
    content_type.starts_with("application/x-protobuf")
        || content_type.starts_with("application/protobuf")
}

/// The partial success in a 2xx answer to an export of signal `S`, if any.
pub fn accepted<S: OtlpSignal>(content_type: &str, body: &[u8]) -> Accepted {
    if body.is_empty() {
        return Accepted::all();
    }
    if is_json(content_type) {
        // Read by hand: proto3 JSON may write the int64 count (`rejectedSpans`) as a string.
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Accepted::all();
        };
        let p = &v["partialSuccess"];
        let rejected = match &p[S::REJECTED_JSON] {
            serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
            serde_json::Value::String(s) => s.parse().unwrap_or(0),
            _ => 0,
        };
        return Accepted {
            rejected,
            message: p["errorMessage"].as_str().unwrap_or("").to_string(),
        };
    }
    match S::Response::decode(body)
        .ok()
        .as_ref()
        .and_then(S::rejected)
    {
        Some((rejected, message)) => Accepted { rejected, message },
        None => Accepted::all(),
    }
}

/// What an error answer says: the `google.rpc.Status` message when the body is one, else the
/// body's text, shortened.
pub fn error_message(content_type: &str, body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".into();
    }
    if is_protobuf(content_type) {
        if let Ok(s) = tonic_types::Status::decode(body)
            && !s.message.is_empty()
        {
            return s.message;
        }
    } else if is_json(content_type)
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v["message"].as_str().filter(|m| !m.is_empty())
    {
        return m.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
