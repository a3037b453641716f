use serde::{Deserialize, Deserializer};

use crate::component::{Problem, Validate};
use crate::config::ByteSize;

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
    /// Attach each request's gRPC metadata to its batch (see `request_metadata` in the receiver for
    /// what is kept), for `processors.batch.metadata_keys` and
    /// `exporters.kafka.topic_from_metadata_key`.
    #[serde(default)]
    pub include_metadata: bool,
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
    /// Largest request body accepted, after decompression.
    #[serde(default = "default_max_request_body_size")]
    pub max_request_body_size: ByteSize,
    /// Attach each request's HTTP headers to its batch (see `request_metadata` in the receiver for
    /// what is kept), for `processors.batch.metadata_keys` and
    /// `exporters.kafka.topic_from_metadata_key`.
    #[serde(default)]
    pub include_metadata: bool,
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
fn default_traces_url_path() -> String {
    "/v1/traces".into()
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
            include_metadata: false,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            endpoint: default_http_endpoint(),
            traces_url_path: default_traces_url_path(),
            max_request_body_size: default_max_request_body_size(),
            include_metadata: false,
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
        }
        if let Some(h) = &self.protocols.http {
            if let Err(m) = crate::net::check_endpoint(&h.endpoint) {
                p.push(Problem::new("protocols.http.endpoint", m));
            }
            if !h.traces_url_path.starts_with('/') {
                p.push(Problem::new(
                    "protocols.http.traces_url_path",
                    format!("must start with '/', got {:?}", h.traces_url_path),
                ));
            }
            if h.max_request_body_size.bytes() == 0 {
                p.push(Problem::new(
                    "protocols.http.max_request_body_size",
                    "must be greater than 0",
                ));
            }
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
