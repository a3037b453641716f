//! The part of ClickHouse's HTTP interface the exporter speaks: one `POST /` per statement.
//!
//! - DDL: the statement is the request body, no `query` parameter.
//! - Inserts: `?query=INSERT INTO db.table (columns) FORMAT RowBinary`, the rows in the body
//!   (`Content-Encoding: lz4|zstd|gzip` when compressed), settings as URL parameters
//!   (`insert_deduplication_token`, `async_insert`, `wait_for_async_insert`,
//!   `async_insert_deduplicate`).
//! - Credentials by HTTP basic authentication.
//! - TLS (`https://`) with rustls and the shared client `tls` options
//!   ([`crate::config::tls::client`]); certificates rotated on disk apply to new connections.
//! - Errors: a non-2xx status, `X-ClickHouse-Exception-Code`, and a body
//!   `Code: N. DB::Exception: ...`, read up to [`MAX_ERROR_BYTES`].

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, HeaderValue, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::tls::client::{ClientTls, HttpsConnector};
use crate::net::error_chain;

/// Most of an answer the exporter reads: its statements answer with nothing, and an error page
/// need not cost memory.
pub const MAX_ERROR_BYTES: usize = 64 * 1024;
/// Most of an error quoted in a log line.
const MAX_QUOTED_CHARS: usize = 2048;

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChError {
    /// No answer: connection refused or reset, timeout, a TLS failure other than a refused
    /// certificate, ...
    Transport(String),
    /// The TLS handshake failed on a certificate: the server's was not trusted (unknown CA,
    /// wrong name, expired) or the server refused ours. Permanent: every attempt would meet
    /// the same certificates, and only a configuration change (`tls.ca_file`, the server's
    /// certificate, `tls.cert_file`) helps; retrying would only repeat the error.
    Certificate(String),
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
            Self::Transport(e) | Self::Certificate(e) => f.write_str(e),
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
    /// same request again would fail the same way, and so would a handshake on a refused
    /// certificate.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Certificate(_) => false,
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
    http: HyperClient<HttpsConnector, Full<Bytes>>,
    base: String,
    auth: Option<HeaderValue>,
}

impl Client {
    /// A client for `endpoint` (validated: scheme, host, port), with `tls` for an `https://`
    /// one.
    pub fn new(
        endpoint: Uri,
        username: &str,
        password: &str,
        timeout: Duration,
        tls: Option<Arc<ClientTls>>,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        if !timeout.is_zero() {
            http.set_connect_timeout(Some(timeout));
        }
        let connector = match &tls {
            Some(tls) => tls.connector(http),
            None => HttpsConnector::plaintext(http),
        };
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
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
        Self { http, base, auth }
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
        let response = self.http.request(request).await.map_err(|e| {
            let text = format!("POST {}: {}", where_(), error_chain(&e));
            match certificate_problem(&e) {
                Some(hint) => ChError::Certificate(format!("{text} ({hint})")),
                None => ChError::Transport(text),
            }
        })?;
        let status = response.status();
        let header_code = response
            .headers()
            .get("x-clickhouse-exception-code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        let body = crate::net::read_capped(response.into_body(), MAX_ERROR_BYTES).await;
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

/// When `e` is a TLS handshake that failed on a certificate, what to do about it.
fn certificate_problem(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use rustls::AlertDescription as A;

    let mut next = Some(e);
    while let Some(err) = next {
        let rustls_error = find_rustls_error(err);
        match rustls_error {
            Some(rustls::Error::InvalidCertificate(_)) => {
                return Some(
                    "ClickHouse's TLS certificate is not trusted: set tls.ca_file to the CA that \
                     signed it, or fix the certificate; not retried",
                );
            }
            Some(rustls::Error::AlertReceived(
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired,
            )) => {
                return Some(
                    "ClickHouse refused the client certificate (tls.cert_file/tls.key_file); \
                     not retried",
                );
            }
            _ => {}
        }
        next = err.source();
    }
    None
}

/// The `rustls::Error` that `e` is or wraps in `io::Error`s (tokio-rustls hands it over inside
/// one and hyper-rustls wraps that in another; `io::Error::source()` skips the wrapped error).
fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    find_rustls_error(inner)
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
    fn a_refused_certificate_is_found_inside_the_io_errors_and_is_permanent() {
        use rustls::{AlertDescription, CertificateError, Error as TlsError};
        // As hyper-rustls hands it over: io::Error(Other, io::Error(InvalidData, rustls)).
        let wrapped = |e: TlsError| {
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        };
        let untrusted = wrapped(TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(
            certificate_problem(&untrusted)
                .is_some_and(|h| h.contains("tls.ca_file") && h.contains("not retried"))
        );
        let refused = wrapped(TlsError::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert!(certificate_problem(&refused).is_some_and(|h| h.contains("tls.cert_file")));
        let other = wrapped(TlsError::AlertReceived(AlertDescription::HandshakeFailure));
        assert_eq!(certificate_problem(&other), None);
        let refused_connection = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(certificate_problem(&refused_connection), None);
        assert!(!ChError::Certificate("x".into()).is_retryable());
    }

    #[test]
    fn tls_settings_build_a_client_configuration() {
        use crate::config::tls::client::ClientTlsConfig;
        let config = |tls: ClientTlsConfig| tls.build("tls", &[]);
        assert!(
            config(ClientTlsConfig {
                insecure_skip_verify: true,
                ..Default::default()
            })
            .is_ok()
        );
        let err = config(ClientTlsConfig {
            ca_file: "/nonexistent/ca.pem".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.starts_with("tls.ca_file: cannot read \"/nonexistent/ca.pem\""),
            "{err}"
        );
    }

    #[test]
    fn encodes_urls() {
        assert_eq!(url_encode("INSERT INTO `a`.b"), "INSERT%20INTO%20%60a%60.b");
    }
}
