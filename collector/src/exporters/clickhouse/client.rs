//! The part of ClickHouse's HTTP interface the exporter speaks: one `POST /` per statement.
//!
//! - DDL: the statement is the request body, no `query` parameter.
//! - Inserts: `?query=INSERT INTO db.table (columns) FORMAT RowBinary`, the rows in the body
//!   (`Content-Encoding: lz4|zstd|gzip` when compressed), settings as URL parameters
//!   (`insert_deduplication_token`, `async_insert`, `wait_for_async_insert`,
//!   `async_insert_deduplicate`).
//! - Credentials by HTTP basic authentication.
//! - Errors: a non-2xx status, `X-ClickHouse-Exception-Code`, and a body
//!   `Code: N. DB::Exception: ...`, read up to [`MAX_ERROR_BYTES`].

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_ENCODING, HeaderValue, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::exporters::otlp::error_chain;

/// Most of an answer the exporter reads: its statements answer with nothing, and an error page
/// need not cost memory.
pub const MAX_ERROR_BYTES: usize = 64 * 1024;
/// Most of an error quoted in a log line.
const MAX_QUOTED_CHARS: usize = 2048;

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChError {
    /// No answer: connection refused or reset, TLS failure, ...
    Transport(String),
    /// The server answered with an error.
    Server {
        /// HTTP status.
        status: u16,
        /// ClickHouse's error code (`X-ClickHouse-Exception-Code`, else `Code: N.` in the body).
        code: Option<u32>,
        /// The error text, shortened.
        message: String,
    },
}

impl std::fmt::Display for ChError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => f.write_str(e),
            Self::Server {
                status, message, ..
            } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

impl ChError {
    /// Whether the same statement may succeed later. Connection failures, gateway errors
    /// and the ClickHouse errors that describe load or a passing state are retryable; the
    /// rest (syntax, unknown table or column, authentication, bad data) are not: sending the
    /// same request again would fail the same way.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Server { status, code, .. } => match code {
                Some(code) => RETRYABLE_CODES.contains(code),
                // No ClickHouse code: a proxy or load balancer answered.
                None => matches!(status, 408 | 429 | 502 | 503 | 504),
            },
        }
    }
}

/// ClickHouse error codes worth retrying (names from `src/Common/ErrorCodes.cpp`).
const RETRYABLE_CODES: &[u32] = &[
    159, // TIMEOUT_EXCEEDED
    210, // NETWORK_ERROR
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    225, // NO_ZOOKEEPER
    236, // ABORTED
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS
    279, // ALL_CONNECTION_TRIES_FAILED
    285, // TOO_FEW_LIVE_REPLICAS
    319, // UNKNOWN_STATUS_OF_INSERT
    439, // CANNOT_SCHEDULE_TASK
    999, // KEEPER_EXCEPTION
];

/// A pooled HTTP/1.1 client for one ClickHouse endpoint (plaintext or TLS).
pub struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    auth: Option<HeaderValue>,
}

impl Client {
    /// A client for `endpoint` (validated: scheme, host, port). TLS uses the system's root
    /// certificates.
    pub fn new(
        endpoint: Uri,
        username: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        if !timeout.is_zero() {
            http.set_connect_timeout(Some(timeout));
        }
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| format!("TLS set-up: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(tls);
        let auth = (!username.is_empty() || !password.is_empty()).then(|| {
            let user = if username.is_empty() {
                "default"
            } else {
                username
            };
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                .expect("base64 is a valid header value");
            v.set_sensitive(true);
            v
        });
        let base = format!(
            "{}://{}/",
            endpoint.scheme_str().unwrap_or("http"),
            endpoint.authority().map_or("", |a| a.as_str())
        );
        Ok(Self { http, base, auth })
    }

    /// Runs a statement with no data (DDL).
    pub async fn execute(&self, statement: &str) -> Result<(), ChError> {
        self.post(self.base.clone(), Bytes::from(statement.to_owned()), None)
            .await
    }

    /// Runs `query` (an `INSERT ... FORMAT`) with `body` as its data and `settings` as URL
    /// parameters.
    pub async fn insert(
        &self,
        query: &str,
        settings: &[(&str, &str)],
        body: Bytes,
        content_encoding: Option<&'static str>,
    ) -> Result<(), ChError> {
        let mut url = format!("{}?query={}", self.base, url_encode(query));
        for (k, v) in settings {
            url.push('&');
            url.push_str(k);
            url.push('=');
            url.push_str(&url_encode(v));
        }
        self.post(url, body, content_encoding).await
    }

    async fn post(
        &self,
        url: String,
        body: Bytes,
        content_encoding: Option<&'static str>,
    ) -> Result<(), ChError> {
        let mut builder =
            Request::post(&url).header(USER_AGENT, concat!("wasmcol/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        if let Some(enc) = content_encoding {
            builder = builder.header(CONTENT_ENCODING, enc);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| ChError::Transport(format!("building the request: {e}")))?;
        let where_ = || url.split('?').next().unwrap_or_default().to_string();
        let response =
            self.http.request(request).await.map_err(|e| {
                ChError::Transport(format!("POST {}: {}", where_(), error_chain(&e)))
            })?;
        let status = response.status();
        let header_code = response
            .headers()
            .get("x-clickhouse-exception-code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        let body = read_capped(response.into_body(), MAX_ERROR_BYTES).await;
        if status.is_success() && header_code.is_none() {
            return Ok(());
        }
        let text = match &body {
            Ok(b) => String::from_utf8_lossy(b).trim().to_string(),
            Err(e) => format!("(the error body could not be read: {e})"),
        };
        let code = header_code.or_else(|| body_code(&text));
        Err(ChError::Server {
            status: if status.is_success() {
                StatusCode::INTERNAL_SERVER_ERROR.as_u16()
            } else {
                status.as_u16()
            },
            code,
            message: shorten(&text),
        })
    }
}

/// `Code: 60. DB::Exception: ...` → 60.
fn body_code(text: &str) -> Option<u32> {
    let rest = text.trim_start().strip_prefix("Code:")?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn shorten(text: &str) -> String {
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Reads at most `cap` bytes of a body; the rest is left unread (and the connection closed).
async fn read_capped(mut body: Incoming, cap: usize) -> Result<Bytes, hyper::Error> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let room = cap - out.len();
        if data.len() >= room {
            out.extend_from_slice(&data[..room]);
            break;
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_code_of_an_error_body() {
        assert_eq!(
            body_code("Code: 60. DB::Exception: Table default.x does not exist. (UNKNOWN_TABLE)"),
            Some(60)
        );
        assert_eq!(body_code("Bad Gateway"), None);
    }

    #[test]
    fn classifies_errors() {
        let server = |status, code| ChError::Server {
            status,
            code,
            message: String::new(),
        };
        assert!(ChError::Transport("refused".into()).is_retryable());
        assert!(server(500, Some(252)).is_retryable(), "TOO_MANY_PARTS");
        assert!(server(503, None).is_retryable(), "a proxy's 503");
        assert!(
            !server(403, Some(516)).is_retryable(),
            "AUTHENTICATION_FAILED"
        );
        assert!(!server(404, Some(60)).is_retryable(), "UNKNOWN_TABLE");
        assert!(!server(400, Some(62)).is_retryable(), "SYNTAX_ERROR");
        assert!(!server(500, None).is_retryable());
    }

    #[test]
    fn encodes_urls() {
        assert_eq!(url_encode("INSERT INTO `a`.b"), "INSERT%20INTO%20%60a%60.b");
    }
}
