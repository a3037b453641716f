//! Endpoint strings (`host:port`) as written in configs, reading HTTP responses safely, the
//! warning for credentials sent in plaintext, the `compression` option of the OTLP exporters,
//! and error messages that name an error's sources.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

/// Compression of each request body (the OpenTelemetry Collector's `compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip, the OpenTelemetry Collector's default.
    #[default]
    Gzip,
    /// Zstandard.
    Zstd,
    /// Uncompressed.
    #[serde(alias = "")]
    None,
}

/// Checks that `endpoint` looks like `host:port` with a numeric port.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| format!("expected host:port, got {endpoint:?}"))?;
    port.parse::<u16>()
        .map_err(|_| format!("expected host:port with a port number, got {endpoint:?}"))?;
    if host.is_empty() {
        return Err(format!(
            "expected host:port with a host (use 0.0.0.0 for all interfaces), got {endpoint:?}"
        ));
    }
    Ok(())
}

/// Resolves `host:port` to the address to bind or connect to (the first one the resolver
/// gives, so `localhost` binds the loopback interface only).
pub async fn resolve(endpoint: &str) -> anyhow::Result<SocketAddr> {
    check_endpoint(endpoint).map_err(anyhow::Error::msg)?;
    let mut addrs = tokio::net::lookup_host(endpoint).await?;
    addrs
        .next()
        .ok_or_else(|| anyhow::anyhow!("{endpoint}: the name resolves to no address"))
}

/// The accept queue asked of the kernel, which caps it at `net.core.somaxconn` (4096 on
/// current Linux). Tokio's default of 1024 overflows when a few thousand clients connect at
/// once (sidecars reconnecting after a gateway restarts): their SYNs are then dropped and
/// retried seconds later. Go's listeners (and so the Collector's) use `somaxconn` too.
const LISTEN_BACKLOG: u32 = 65_535;

/// Binds a TCP listener on `endpoint`, naming the endpoint and the component on failure.
pub async fn bind(endpoint: &str, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = resolve(endpoint).await?;
    let listen = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restarted collector can bind while the old
        // connections are in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|e: std::io::Error| {
        anyhow::anyhow!("{what}: cannot listen on {endpoint} ({addr}): {e}")
    })
}

/// Reads at most `cap` bytes of an HTTP response body; the rest is left unread (and the
/// connection closed), so a huge error page costs no memory.
pub async fn read_capped(
    mut body: hyper::body::Incoming,
    cap: usize,
) -> Result<bytes::Bytes, hyper::Error> {
    use http_body_util::BodyExt as _;

    let mut out = bytes::BytesMut::new();
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

/// The host of an endpoint as configs write it: `host:port`, `[::1]:port`, a bare host, or a
/// URL (`https://user@host:port/path`).
fn host_of(endpoint: &str) -> &str {
    let e = endpoint.trim();
    let e = e.split_once("://").map_or(e, |(_, rest)| rest);
    let authority = e.split(['/', '?', '#']).next().unwrap_or(e);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match authority.rsplit_once(':') {
        // One colon: host:port. More: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => authority,
    }
}

/// True when `endpoint` names this machine: `localhost` (or a name under it), or a loopback
/// address. Other names are not resolved: they count as remote.
pub fn is_loopback(endpoint: &str) -> bool {
    let host = host_of(endpoint);
    let lower = host.to_ascii_lowercase();
    let lower = lower.trim_end_matches('.');
    lower == "localhost"
        || lower.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The first endpoint credentials would reach in plaintext: `None` when the connection is
/// `encrypted` or every endpoint is on this machine.
pub fn plaintext_credentials_target<'a>(
    encrypted: bool,
    endpoints: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if encrypted {
        return None;
    }
    endpoints.into_iter().find(|e| !is_loopback(e))
}

/// Logs one warning when credentials configured at `option` of `component` (e.g.
/// `exporters.kafka`, `auth.sasl`) would travel unencrypted to an endpoint off this machine.
/// Call it once, when the component is built. Returns true when it warned.
pub fn warn_plaintext_credentials<'a>(
    component: &str,
    option: &str,
    encrypted: bool,
    endpoints: impl IntoIterator<Item = &'a str>,
) -> bool {
    let Some(endpoint) = plaintext_credentials_target(encrypted, endpoints) else {
        return false;
    };
    tracing::warn!(
        component,
        option,
        endpoint,
        "{component}: the credentials of {option} travel in plaintext to {endpoint}: anyone on \
         the path can read them; enable TLS"
    );
    true
}

/// An error and its sources, `outer: inner: innermost` (transport errors hide the useful part
/// in the sources).
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// More clients than tokio's default backlog connect at once to a collector that has not
    /// accepted any of them yet: each handshake completes at once, none waits for a SYN retry.
    #[tokio::test]
    async fn a_burst_of_connections_beyond_1024_is_queued_not_dropped() {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let clients = somaxconn.min(2_000);
        let limit = getrlimit(Resource::Nofile);
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
        let files = getrlimit(Resource::Nofile).current;
        assert!(
            clients > 1_100 && files.is_none_or(|n| n > clients as u64 + 100),
            "this test needs net.core.somaxconn > 1100 (it is {somaxconn}) and more open \
             files than {clients} (the limit is {files:?})"
        );

        let listener = bind("127.0.0.1:0", "test").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connected = tokio::task::spawn_blocking(move || {
            (0..clients)
                .map(|i| {
                    // A dropped SYN is retried after 1 s: 900 ms tells queued from dropped.
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(900))
                        .unwrap_or_else(|e| panic!("client {i} of {clients}: {e}"))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        assert_eq!(connected.len(), clients);
        drop(listener);
    }

    #[test]
    fn loopback_endpoints() {
        for e in [
            "localhost:9092",
            "LOCALHOST",
            "kafka.localhost:9092",
            "127.0.0.1:4317",
            "127.1.2.3",
            "[::1]:4317",
            "::1",
            "http://localhost:4318/v1/traces",
            "https://user@127.0.0.1:8123",
        ] {
            assert!(is_loopback(e), "{e}");
        }
        for e in [
            "kafka-1:9092",
            "10.0.0.1:9092",
            "0.0.0.0:4317",
            "[2001:db8::1]:4317",
            "http://gateway:4318",
            "http://localhost.example.com:4318",
            "",
        ] {
            assert!(!is_loopback(e), "{e}");
        }
    }

    #[test]
    fn plaintext_target_is_the_first_remote_endpoint() {
        let brokers = ["localhost:9092", "kafka-2:9092", "kafka-3:9092"];
        assert_eq!(
            plaintext_credentials_target(false, brokers),
            Some("kafka-2:9092")
        );
        assert_eq!(plaintext_credentials_target(true, brokers), None);
        assert_eq!(
            plaintext_credentials_target(false, ["127.0.0.1:9092", "localhost:9093"]),
            None
        );
        assert!(!warn_plaintext_credentials(
            "exporters.kafka",
            "auth.sasl",
            false,
            ["localhost:9092"]
        ));
        assert!(warn_plaintext_credentials(
            "exporters.kafka",
            "auth.sasl",
            false,
            ["kafka:9092"]
        ));
    }
}
