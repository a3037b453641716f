//! Serving HTTP/1 and HTTP/2 (gRPC) listeners with a shutdown that always ends.
//!
//! tonic's `serve_with_incoming_shutdown` and axum's `with_graceful_shutdown` wait, after the
//! stop signal, for every connection to close on its own: one client holding a half-sent
//! request, or an idle HTTP/2 connection that never answers the server's GOAWAY ping, keeps
//! them waiting for ever. Here connections are served one task each, and stopping goes:
//! 1. the listener closes (no new connections);
//! 2. every connection is asked to finish gracefully: an idle HTTP/1 connection closes at
//!    once, a request in progress is answered and then the connection closes, an HTTP/2
//!    connection gets a GOAWAY and finishes its open streams;
//! 3. after [`IN_FLIGHT_GRACE`], whatever is still open is cut: the connection and every
//!    request handler it runs are dropped. A cut request was never answered, so nothing it
//!    carried was acknowledged; the client sees the connection close and retries elsewhere
//!    or later.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// How long requests already in progress at shutdown get to finish before their connections
/// are cut. An OTLP export on a working network is answered in milliseconds, so one second
/// lets every request that was going to succeed succeed, while a client that stalls (a
/// half-sent body, an HTTP/2 connection that never closes) costs at most this much of
/// `service.shutdown_timeout`, leaving the rest to the processors and exporters.
pub const IN_FLIGHT_GRACE: Duration = Duration::from_secs(1);

/// Pause after a failed `accept` (out of file descriptors, mostly), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// HTTP/1.1 (OTLP/HTTP, `/metrics`, the health check).
    Http1,
    /// HTTP/2 with prior knowledge (gRPC).
    Http2 {
        /// Streams a client may open at once on one connection.
        max_concurrent_streams: u32,
        /// Interval of the server's keep-alive pings (`None`: no pings).
        keepalive_interval: Option<Duration>,
    },
}

/// The error type request handlers may return; hyper closes the stream or connection on it.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `service` on `listener` until `stop` is cancelled, then stops as the module
/// describes; the returned task ends once every connection is closed, at most
/// [`IN_FLIGHT_GRACE`] (plus the time to drop what was cut) after `stop`. `what` names the
/// server in logs.
pub fn spawn<S, B>(
    listener: TcpListener,
    protocol: Protocol,
    service: S,
    stop: CancellationToken,
    what: String,
) -> JoinHandle<()>
where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    tokio::spawn(run(listener, protocol, service, stop, what))
}

async fn run<S, B>(
    listener: TcpListener,
    protocol: Protocol,
    service: S,
    stop: CancellationToken,
    what: String,
) where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let cut = CancellationToken::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            // Reaps finished connections so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    // Responses are small and sent whole: do not hold them back (Nagle).
                    let _ = tcp.set_nodelay(true);
                    let io = TokioIo::new(tcp);
                    let svc = TowerToHyperService::new(service.clone());
                    connections.spawn(serve_connection(io, svc, protocol, stop.clone(), cut.clone()));
                }
                Err(e) => {
                    tracing::warn!(server = %what, error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    if connections.is_empty() {
        return;
    }
    let open = connections.len();
    tracing::debug!(server = %what, open, "listener closed; finishing requests in progress");
    let drained = tokio::time::timeout(IN_FLIGHT_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        tracing::info!(
            server = %what,
            connections = connections.len(),
            grace = ?IN_FLIGHT_GRACE,
            "closing connections still open after the grace period (their requests were not answered)"
        );
        cut.cancel();
        while connections.join_next().await.is_some() {}
    }
}

/// Serves one connection until it ends, `stop` asks it to finish, or `cut` drops it.
async fn serve_connection<S, B>(
    io: TokioIo<tokio::net::TcpStream>,
    service: TowerToHyperService<S>,
    protocol: Protocol,
    stop: CancellationToken,
    cut: CancellationToken,
) where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match protocol {
        Protocol::Http1 => {
            let conn = hyper::server::conn::http1::Builder::new()
                // With a timer, hyper enforces its header read timeout (30 s): a client that
                // never finishes its headers does not hold the connection for ever.
                .timer(TokioTimer::new())
                .serve_connection(io, service);
            drive(conn, |c| c.graceful_shutdown(), stop, cut).await;
        }
        Protocol::Http2 {
            max_concurrent_streams,
            keepalive_interval,
        } => {
            let conn = hyper::server::conn::http2::Builder::new(CutExecutor(cut.clone()))
                .timer(TokioTimer::new())
                .max_concurrent_streams(max_concurrent_streams)
                .keep_alive_interval(keepalive_interval)
                .serve_connection(io, service);
            drive(conn, |c| c.graceful_shutdown(), stop, cut).await;
        }
    }
}

/// Runs `conn`; on `stop`, asks it to finish with `graceful`; on `cut`, drops it.
async fn drive<C, E>(
    conn: C,
    graceful: impl FnOnce(Pin<&mut C>),
    stop: CancellationToken,
    cut: CancellationToken,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            graceful(conn.as_mut());
            tokio::select! {
                r = conn.as_mut() => r,
                _ = cut.cancelled() => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Spawns HTTP/2 stream handlers (hyper runs each stream as its own task) so that cutting the
/// server also drops them: a handler cut mid-request never answers.
#[derive(Clone)]
struct CutExecutor(CancellationToken);

impl<F> hyper::rt::Executor<F> for CutExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let cut = self.0.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                _ = cut.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// A server whose one route answers after `delay`.
    async fn server(delay: Duration, stop: CancellationToken) -> (u16, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                tokio::time::sleep(delay).await;
                format!("got {}", body.len())
            }),
        );
        let task = spawn(listener, Protocol::Http1, app, stop, "test".into());
        (port, task)
    }

    fn request(len: usize) -> String {
        format!("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {len}\r\n\r\n")
    }

    #[tokio::test]
    async fn a_request_in_progress_is_answered_and_a_stalled_one_cut() {
        let stop = CancellationToken::new();
        let (port, task) = server(Duration::from_millis(300), stop.clone()).await;

        // Sends a whole request, answered 300 ms later: after the stop, within the grace.
        let mut answered = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        answered
            .write_all(format!("{}abc", request(3)).as_bytes())
            .await
            .unwrap();
        // Promises 10 bytes, sends 5.
        let mut stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stalled
            .write_all(format!("{}12345", request(10)).as_bytes())
            .await
            .unwrap();
        // An idle keep-alive connection.
        let idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        let stopped = Instant::now();
        stop.cancel();
        // The listener closes at once.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());

        let mut reply = String::new();
        answered.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("got 3"), "{reply}");

        task.await.unwrap();
        let took = stopped.elapsed();
        assert!(
            took >= IN_FLIGHT_GRACE && took < IN_FLIGHT_GRACE + Duration::from_millis(500),
            "{took:?}"
        );
        let mut cut = Vec::new();
        let _ = stalled.read_to_end(&mut cut).await;
        assert!(cut.is_empty(), "{}", String::from_utf8_lossy(&cut));
        drop(idle);
    }

    #[tokio::test]
    async fn with_nothing_in_progress_the_server_stops_at_once() {
        let stop = CancellationToken::new();
        let (port, task) = server(Duration::ZERO, stop.clone()).await;
        let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        idle.write_all(format!("{}abc", request(3)).as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // Now idle between requests (keep-alive).
        let stopped = Instant::now();
        stop.cancel();
        task.await.unwrap();
        assert!(
            stopped.elapsed() < Duration::from_millis(200),
            "{:?}",
            stopped.elapsed()
        );
    }
}
