use serde::{Deserialize, Deserializer};

use crate::component::{Problem, Validate};
use crate::config::tls::server::ServerTlsConfig;
use crate::config::{ByteSize, Duration};

/// `receivers.otlp`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// Which transports to serve; at least one.
    #[serde(default)]
    pub protocols: Protocols,
}

/// `receivers.otlp.protocols`. A protocol key with nothing under it (`grpc:`) turns that
/// protocol on with its defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// OTLP over gRPC.
    #[serde(default, deserialize_with = "present_means_default")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP over HTTP.
    #[serde(default, deserialize_with = "present_means_default")]
    pub http: Option<HttpConfig>,
}

/// A key that is present but empty means "on, with defaults".
fn present_means_default<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// `receivers.otlp.protocols.grpc`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// `host:port` to listen on.
    #[serde(default = "default_grpc_endpoint")]
    pub endpoint: String,
    /// Largest request message accepted, in MiB (after decompression).
    #[serde(default = "default_max_recv_msg_size_mib")]
    pub max_recv_msg_size_mib: u64,
    /// HTTP/2 streams one connection may have open at once.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Connections served at once (not a Collector option). While this many are open, new
    /// ones wait in the kernel's accept backlog until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Keep-alive and connection-lifetime bounds (the Collector's `configgrpc.keepalive`).
    #[serde(default)]
    pub keepalive: GrpcKeepalive,
    /// Attach each request's gRPC metadata to its batch (see `request_metadata` in the receiver for
    /// what is kept), for `processors.batch.metadata_keys` and
    /// `exporters.kafka.topic_from_metadata_key`.
    #[serde(default)]
    pub include_metadata: bool,
    /// Serve TLS (HTTP/2 over TLS, ALPN `h2`); mutual TLS with `client_ca_file`.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// Authenticate every request with this authenticator extension before its body is
    /// read (`auth: { authenticator: bearertokenauth/in }`).
    #[serde(default)]
    pub auth: Option<crate::auth::AuthConfig>,
}

/// `receivers.otlp.protocols.http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port` to listen on.
    #[serde(default = "default_http_endpoint")]
    pub endpoint: String,
    /// URL path for trace exports.
    #[serde(default = "default_traces_url_path")]
    pub traces_url_path: String,
    /// URL path for log exports.
    #[serde(default = "default_logs_url_path")]
    pub logs_url_path: String,
    /// URL path for metric exports.
    #[serde(default = "default_metrics_url_path")]
    pub metrics_url_path: String,
    /// Largest request body accepted, after decompression.
    #[serde(default = "default_max_request_body_size")]
    pub max_request_body_size: ByteSize,
    /// Longest time to read a whole request, headers and body, from its first byte; then
    /// the connection is cut and the request never answered. `0`: no bound.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: Duration,
    /// Longest time to read a request's headers, from the connection's start (first
    /// request) or the request's first byte; then the connection is cut. `0`: `read_timeout`.
    #[serde(default = "default_read_header_timeout")]
    pub read_header_timeout: Duration,
    /// Longest time from a request's headers until its response is written; then the
    /// connection is cut. `0`: no bound.
    #[serde(default = "default_write_timeout")]
    pub write_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request; then it is closed.
    /// `0`: `read_timeout`.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// Connections served at once (not a Collector option). While this many are open, new
    /// ones wait in the kernel's accept backlog until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Attach each request's HTTP headers to its batch (see `request_metadata` in the receiver for
    /// what is kept), for `processors.batch.metadata_keys` and
    /// `exporters.kafka.topic_from_metadata_key`.
    #[serde(default)]
    pub include_metadata: bool,
    /// Serve HTTPS (HTTP/1.1 over TLS, ALPN `http/1.1`); mutual TLS with `client_ca_file`.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// Cross-origin requests from browsers; absent = no CORS headers at all.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// Authenticate every request with this authenticator extension before its body is
    /// read (`auth: { authenticator: bearertokenauth/in }`).
    #[serde(default)]
    pub auth: Option<crate::auth::AuthConfig>,
}

/// `receivers.otlp.protocols.http.cors` (the Collector's `confighttp.CORSConfig`), for
/// browser SDKs on other origins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to send spans, as browsers write them (`https://app.example.com`); `*`
    /// stands for any run of characters (`https://*.example.com`; `"*"` alone: any origin).
    /// Empty: CORS is off.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Request headers allowed besides Accept, Accept-Language, Content-Type and
    /// Content-Language (and X-Requested-With when none are listed); `"*"`: any.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Seconds browsers may cache a preflight answer (`Access-Control-Max-Age`); 0: not sent.
    #[serde(default)]
    pub max_age: u64,
}

impl CorsConfig {
    fn problems(&self, p: &mut Vec<Problem>) {
        let path = "protocols.http.cors";
        if self.allowed_origins.is_empty() && !self.allowed_headers.is_empty() {
            p.push(Problem::new(
                format!("{path}.allowed_headers"),
                "has no effect without allowed_origins",
            ));
        }
        for (i, o) in self.allowed_origins.iter().enumerate() {
            let at = format!("{path}.allowed_origins[{i}]");
            let Some((_, host)) = o.split_once("://").filter(|(s, _)| !s.is_empty()) else {
                if o != "*" {
                    p.push(Problem::new(
                        at,
                        format!("expected scheme://host[:port] (e.g. https://*.example.com) or \"*\", got {o:?}"),
                    ));
                }
                continue;
            };
            if host.is_empty() || host.contains('/') {
                p.push(Problem::new(
                    at,
                    format!("{o:?} never matches: an origin is scheme://host[:port], with no path or final '/'"),
                ));
            }
        }
        for (i, h) in self.allowed_headers.iter().enumerate() {
            if h != "*" && axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                p.push(Problem::new(
                    format!("{path}.allowed_headers[{i}]"),
                    format!("{h:?} is not an HTTP header name"),
                ));
            }
        }
    }
}

/// `receivers.otlp.protocols.grpc.keepalive`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcKeepalive {
    /// Bounds on each connection's life and the server's pings.
    #[serde(default)]
    pub server_parameters: GrpcServerParameters,
    /// How often clients may ping.
    #[serde(default)]
    pub enforcement_policy: GrpcEnforcementPolicy,
}

/// `receivers.otlp.protocols.grpc.keepalive.enforcement_policy` (grpc-go's
/// `keepalive.EnforcementPolicy`). A client that pings more often gets, at its third ping too
/// soon, a GOAWAY and its connection closed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcEnforcementPolicy {
    /// Shortest time a client must leave between its pings.
    #[serde(default = "default_ping_min_time")]
    pub min_time: Duration,
    /// Allow pings while no RPC is in progress; otherwise such pings count as too soon.
    #[serde(default)]
    pub permit_without_stream: bool,
}

impl Default for GrpcEnforcementPolicy {
    fn default() -> Self {
        Self {
            min_time: default_ping_min_time(),
            permit_without_stream: false,
        }
    }
}

/// `receivers.otlp.protocols.grpc.keepalive.server_parameters` (grpc-go's
/// `keepalive.ServerParameters`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcServerParameters {
    /// A connection with no RPC in progress for this long gets a GOAWAY. `0`: no bound.
    #[serde(default)]
    pub max_connection_idle: Duration,
    /// A connection open this long gets a GOAWAY (clients reconnect, which spreads them
    /// over replicas). `0`: no bound.
    #[serde(default)]
    pub max_connection_age: Duration,
    /// After `max_connection_age`, how long RPCs in progress get before the connection is
    /// cut. `0`: as long as they need.
    #[serde(default)]
    pub max_connection_age_grace: Duration,
    /// After this long without hearing from the client, the server pings it. `0`: no pings.
    #[serde(default = "default_keepalive_time")]
    pub time: Duration,
    /// A ping unanswered for this long closes the connection.
    #[serde(default = "default_keepalive_timeout")]
    pub timeout: Duration,
}

impl Default for GrpcServerParameters {
    fn default() -> Self {
        Self {
            max_connection_idle: Duration::default(),
            max_connection_age: Duration::default(),
            max_connection_age_grace: Duration::default(),
            time: default_keepalive_time(),
            timeout: default_keepalive_timeout(),
        }
    }
}

/// `Some` for a bound, `None` for `0` (no bound).
fn bound(d: Duration) -> Option<std::time::Duration> {
    (!d.is_zero()).then_some(d.get())
}

/// `listener` with `tls` when set; `what` is the options' path for errors and logs.
fn with_tls(
    listener: crate::serve::Listener,
    tls: Option<&ServerTlsConfig>,
    what: String,
    alpn: &str,
    failures: &prometheus_client::metrics::counter::Counter,
) -> anyhow::Result<crate::serve::Listener> {
    Ok(match tls {
        None => listener,
        Some(tls) => {
            let config = tls.build(&what, &[alpn]).map_err(anyhow::Error::msg)?;
            listener.with_tls(std::sync::Arc::new(config), failures)
        }
    })
}

impl OtlpReceiverConfig {
    /// Each protocol's `auth`, with its path.
    pub fn auth(&self) -> Vec<(String, &crate::auth::AuthConfig)> {
        let grpc = self.protocols.grpc.as_ref().and_then(|g| g.auth.as_ref());
        let http = self.protocols.http.as_ref().and_then(|h| h.auth.as_ref());
        [("protocols.grpc.auth", grpc), ("protocols.http.auth", http)]
            .into_iter()
            .filter_map(|(p, a)| Some((p.to_string(), a?)))
            .collect()
    }
}

impl GrpcConfig {
    /// The listener of receiver `id`, with TLS when `tls` is set (reading the certificates).
    pub fn tls_listener(
        &self,
        id: &str,
        failures: &prometheus_client::metrics::counter::Counter,
    ) -> anyhow::Result<crate::serve::Listener> {
        let what = format!("receivers.{id}.protocols.grpc.tls");
        with_tls(self.listener(), self.tls.as_ref(), what, "h2", failures)
    }

    /// The listener these options describe.
    pub fn listener(&self) -> crate::serve::Listener {
        let k = &self.keepalive.server_parameters;
        let e = &self.keepalive.enforcement_policy;
        crate::serve::Listener::new(
            crate::serve::Protocol::Http2(crate::serve::Http2Limits {
                max_concurrent_streams: self.max_concurrent_streams,
                max_connection_idle: bound(k.max_connection_idle),
                max_connection_age: bound(k.max_connection_age),
                max_connection_age_grace: bound(k.max_connection_age_grace),
                keepalive_time: bound(k.time),
                keepalive_timeout: k.timeout.get(),
                ping_min_time: e.min_time.get(),
                ping_without_stream: e.permit_without_stream,
            }),
            self.max_connections,
        )
    }
}

impl HttpConfig {
    /// The listener of receiver `id`, with TLS when `tls` is set (reading the certificates).
    /// HTTP/1.1 only: the listener serves HTTP/1.
    pub fn tls_listener(
        &self,
        id: &str,
        failures: &prometheus_client::metrics::counter::Counter,
    ) -> anyhow::Result<crate::serve::Listener> {
        let what = format!("receivers.{id}.protocols.http.tls");
        with_tls(
            self.listener(),
            self.tls.as_ref(),
            what,
            "http/1.1",
            failures,
        )
    }

    /// The listener these options describe.
    pub fn listener(&self) -> crate::serve::Listener {
        crate::serve::Listener::new(
            crate::serve::Protocol::Http1(crate::serve::Http1Limits {
                read_header_timeout: bound(self.read_header_timeout),
                read_timeout: bound(self.read_timeout),
                write_timeout: bound(self.write_timeout),
                idle_timeout: bound(self.idle_timeout),
            }),
            self.max_connections,
        )
    }
}

fn default_grpc_endpoint() -> String {
    "localhost:4317".into()
}
fn default_http_endpoint() -> String {
    "localhost:4318".into()
}
fn default_max_recv_msg_size_mib() -> u64 {
    4
}
fn default_max_concurrent_streams() -> u32 {
    256
}
fn default_max_connections() -> usize {
    4096
}
fn default_keepalive_time() -> Duration {
    Duration::from_secs(30)
}
fn default_ping_min_time() -> Duration {
    Duration::from_secs(300)
}
fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_read_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_traces_url_path() -> String {
    "/v1/traces".into()
}
fn default_logs_url_path() -> String {
    "/v1/logs".into()
}
fn default_metrics_url_path() -> String {
    "/v1/metrics".into()
}
fn default_max_request_body_size() -> ByteSize {
    ByteSize::mib(20)
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            endpoint: default_grpc_endpoint(),
            max_recv_msg_size_mib: default_max_recv_msg_size_mib(),
            max_concurrent_streams: default_max_concurrent_streams(),
            max_connections: default_max_connections(),
            keepalive: GrpcKeepalive::default(),
            include_metadata: false,
            tls: None,
            auth: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            endpoint: default_http_endpoint(),
            traces_url_path: default_traces_url_path(),
            logs_url_path: default_logs_url_path(),
            metrics_url_path: default_metrics_url_path(),
            max_request_body_size: default_max_request_body_size(),
            read_timeout: default_read_timeout(),
            read_header_timeout: default_read_header_timeout(),
            write_timeout: default_write_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            include_metadata: false,
            tls: None,
            cors: None,
            auth: None,
        }
    }
}

impl Validate for OtlpReceiverConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            p.push(Problem::new(
                "protocols",
                "enable at least one protocol: grpc or http",
            ));
        }
        if let Some(g) = &self.protocols.grpc {
            if let Err(m) = crate::net::check_endpoint(&g.endpoint) {
                p.push(Problem::new("protocols.grpc.endpoint", m));
            }
            if g.max_recv_msg_size_mib == 0 {
                p.push(Problem::new(
                    "protocols.grpc.max_recv_msg_size_mib",
                    "must be at least 1, got 0",
                ));
            }
            if g.max_concurrent_streams == 0 {
                p.push(Problem::new(
                    "protocols.grpc.max_concurrent_streams",
                    "must be at least 1, got 0",
                ));
            }
            if g.max_connections == 0 {
                p.push(Problem::new(
                    "protocols.grpc.max_connections",
                    "must be at least 1, got 0",
                ));
            }
            if let Some(tls) = &g.tls {
                p.extend(tls.problems("protocols.grpc.tls."));
            }
            let k = &g.keepalive.server_parameters;
            if !k.time.is_zero() && k.timeout.is_zero() {
                p.push(Problem::new(
                    "protocols.grpc.keepalive.server_parameters.timeout",
                    format!(
                        "must be greater than 0 while pings are on (time: {}), got 0s",
                        k.time
                    ),
                ));
            }
            if !k.max_connection_age_grace.is_zero() && k.max_connection_age.is_zero() {
                p.push(Problem::new(
                    "protocols.grpc.keepalive.server_parameters.max_connection_age_grace",
                    format!(
                        "has no effect without max_connection_age, got {}",
                        k.max_connection_age_grace
                    ),
                ));
            }
        }
        if let Some(h) = &self.protocols.http {
            if let Err(m) = crate::net::check_endpoint(&h.endpoint) {
                p.push(Problem::new("protocols.http.endpoint", m));
            }
            let paths = [
                ("traces_url_path", &h.traces_url_path),
                ("logs_url_path", &h.logs_url_path),
                ("metrics_url_path", &h.metrics_url_path),
            ];
            for (i, (option, path)) in paths.iter().enumerate() {
                if !path.starts_with('/') {
                    p.push(Problem::new(
                        format!("protocols.http.{option}"),
                        format!("must start with '/', got {path:?}"),
                    ));
                } else if let Some((other, _)) = paths[..i].iter().find(|(_, p)| p == path) {
                    p.push(Problem::new(
                        format!("protocols.http.{option}"),
                        format!("{path:?} is already protocols.http.{other}"),
                    ));
                }
            }
            if h.max_request_body_size.bytes() == 0 {
                p.push(Problem::new(
                    "protocols.http.max_request_body_size",
                    "must be greater than 0",
                ));
            }
            if h.max_connections == 0 {
                p.push(Problem::new(
                    "protocols.http.max_connections",
                    "must be at least 1, got 0",
                ));
            }
            if let Some(tls) = &h.tls {
                p.extend(tls.problems("protocols.http.tls."));
            }
            if let Some(cors) = &h.cors {
                cors.problems(&mut p);
            }
        }
        for (path, a) in self.auth() {
            p.extend(a.validate(&path));
        }
        if let (Some(g), Some(h)) = (&self.protocols.grpc, &self.protocols.http)
            && g.endpoint == h.endpoint
        {
            p.push(Problem::new(
                "protocols.http.endpoint",
                format!("grpc and http cannot share the endpoint {:?}", h.endpoint),
            ));
        }
        p
    }
}
