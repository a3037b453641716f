//! Endpoint strings (`host:port`) as written in configs, and reading HTTP responses safely.

use std::net::SocketAddr;

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

/// Binds a TCP listener on `endpoint`, naming the endpoint and the component on failure.
pub async fn bind(endpoint: &str, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = resolve(endpoint).await?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{what}: cannot listen on {endpoint} ({addr}): {e}"))
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
