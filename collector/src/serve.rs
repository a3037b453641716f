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
//!
//! Every connection is also bounded in time while it runs (see [`Http1Limits`] and
//! [`Http2Limits`]): a client that sends half a request and stalls, or keeps a connection open
//! doing nothing, is disconnected after the configured timeout, and a listener serves at most
//! `max_connections` at once; further clients wait in the kernel's accept backlog until one
//! closes.
//!
//! A listener with TLS ([`Listener::with_tls`]) does the handshake in the connection's task,
//! within [`TLS_HANDSHAKE_TIMEOUT`], with the configuration its files hold now (so a rotated
//! certificate is used by the next connection); the bounds above then apply to the decrypted
//! stream. A failed handshake is counted and logged (rate-limited), and the connection closed.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long requests already in progress at shutdown get to finish before their connections
/// are cut. An OTLP export on a working network is answered in milliseconds, so one second
/// lets every request that was going to succeed succeed, while a client that stalls (a
/// half-sent body, an HTTP/2 connection that never closes) costs at most this much of
/// `service.shutdown_timeout`, leaving the rest to the processors and exporters.
pub const IN_FLIGHT_GRACE: Duration = Duration::from_secs(1);

/// Pause after a failed `accept` (out of file descriptors, mostly), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How long an HTTP/2 client has to send its first bytes (the connection preface) after
/// connecting. A real client sends them at once; a socket that stays silent holds a
/// connection slot and is dropped.
pub const HTTP2_PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has, from connecting, to complete the TLS handshake. A real client
/// needs a few round trips; a socket that stalls mid-handshake holds a connection slot and
/// is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time bounds of an HTTP/1 connection, named and meant as in the OpenTelemetry Collector's
/// `confighttp` (Go's `http.Server`). `None` turns a bound off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http1Limits {
    /// From the connection's start (first request) or a request's first byte (later ones)
    /// until its headers are read; past it the connection is cut.
    pub read_header_timeout: Option<Duration>,
    /// From the same start until the request's body is read whole; past it the connection
    /// is cut and the request never answered.
    pub read_timeout: Option<Duration>,
    /// From a request's headers until its response is written; past it the connection is cut.
    pub write_timeout: Option<Duration>,
    /// How long a keep-alive connection may wait, with nothing in progress, for its next
    /// request; then it is closed.
    pub idle_timeout: Option<Duration>,
}

impl Http1Limits {
    /// Bounds for the collector's own small endpoints (`/metrics`, the health check).
    pub const INTERNAL: Self = Self {
        read_header_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(30)),
        write_timeout: Some(Duration::from_secs(30)),
        idle_timeout: Some(Duration::from_secs(60)),
    };
}

/// The connection cap of the collector's own small endpoints (`/metrics`, the health check):
/// enough for any number of scrapers and probes, small enough that a flood of connections
/// to them costs little.
pub const INTERNAL_MAX_CONNECTIONS: usize = 256;

/// Bounds of an HTTP/2 (gRPC) connection, named and meant as in the OpenTelemetry
/// Collector's `configgrpc` (grpc-go's `keepalive.ServerParameters` and
/// `EnforcementPolicy`). `None` turns a bound off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// Streams a client may open at once on one connection.
    pub max_concurrent_streams: u32,
    /// A connection with no request in progress for this long gets a GOAWAY.
    pub max_connection_idle: Option<Duration>,
    /// A connection open this long gets a GOAWAY, whatever it does.
    pub max_connection_age: Option<Duration>,
    /// After `max_connection_age`, how long its requests in progress get before the
    /// connection is cut (`None`: as long as they need).
    pub max_connection_age_grace: Option<Duration>,
    /// After this long without hearing from the client, the server pings it (`None`: never).
    pub keepalive_time: Option<Duration>,
    /// A ping unanswered for this long closes the connection.
    pub keepalive_timeout: Duration,
    /// The client's pings must come at least this far apart (`enforcement_policy.min_time`).
    pub ping_min_time: Duration,
    /// The client may ping while no RPC is in progress
    /// (`enforcement_policy.permit_without_stream`); otherwise such pings count as too soon.
    pub ping_without_stream: bool,
}

/// Pings too soon a client may send before its connection is closed (grpc-go's
/// `maxPingStrikes`).
const MAX_PING_STRIKES: u32 = 2;

/// How far apart pings must be while no RPC is in progress and `ping_without_stream` is off
/// (grpc-go's rule: once per two hours).
const PING_WITHOUT_STREAM_MIN_TIME: Duration = Duration::from_secs(2 * 3600);

/// The protocol a listener speaks, with the bounds of its connections.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// HTTP/1.1 (OTLP/HTTP, `/metrics`, the health check).
    Http1(Http1Limits),
    /// HTTP/2 with prior knowledge (gRPC).
    Http2(Http2Limits),
}

/// A listener's protocol, its cap on open connections, and where it counts them.
#[derive(Debug, Clone)]
pub struct Listener {
    /// What the listener speaks and how long its connections may take.
    pub protocol: Protocol,
    /// Connections served at once; while this many are open, new ones wait in the kernel's
    /// accept backlog (and past the backlog the kernel refuses or drops them).
    pub max_connections: usize,
    /// Connections open now.
    pub open: Gauge,
    /// Times the listener reached `max_connections` and stopped accepting until one closed.
    pub limit_reached: Counter,
    /// TLS, when the listener speaks it.
    pub tls: Option<Tls>,
}

/// A listener's TLS: the rustls configuration (re-read from its files when they change) and
/// where failed handshakes are counted.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The server configuration; each connection takes the current one.
    pub config: Arc<crate::config::tls::Reloading<rustls::ServerConfig>>,
    /// Handshakes that failed (refused certificates, protocol versions, plaintext clients,
    /// timeouts).
    pub handshake_failures: Counter,
}

impl Listener {
    /// A listener with no metrics.
    pub fn new(protocol: Protocol, max_connections: usize) -> Self {
        Self {
            protocol,
            max_connections,
            open: Gauge::default(),
            limit_reached: Counter::default(),
            tls: None,
        }
    }

    /// The same listener, speaking TLS with `config`, counting failed handshakes in
    /// `failures`.
    pub fn with_tls(
        mut self,
        config: Arc<crate::config::tls::Reloading<rustls::ServerConfig>>,
        failures: &Counter,
    ) -> Self {
        self.tls = Some(Tls {
            config,
            handshake_failures: failures.clone(),
        });
        self
    }

    /// The same listener, counting its connections in these metrics.
    pub fn counted(mut self, open: &Gauge, limit_reached: &Counter) -> Self {
        self.open = open.clone();
        self.limit_reached = limit_reached.clone();
        self
    }
}

/// The error type request handlers may return; hyper closes the stream or connection on it.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `service` on `listener` until `stop` is cancelled, then stops as the module
/// describes; the returned task ends once every connection is closed, at most
/// [`IN_FLIGHT_GRACE`] (plus the time to drop what was cut) after `stop`. `what` names the
/// server in logs.
pub fn spawn<S, B>(
    listener: TcpListener,
    config: Listener,
    service: S,
    stop: CancellationToken,
    what: String,
) -> JoinHandle<()>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    tokio::spawn(run(listener, config, service, stop, what))
}

async fn run<S, B>(
    listener: TcpListener,
    config: Listener,
    service: S,
    stop: CancellationToken,
    what: String,
) where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let cut = CancellationToken::new();
    let what: Arc<str> = what.into();
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        // A free slot first, then a connection: at the cap, clients wait in the backlog.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                config.limit_reached.inc();
                tracing::debug!(server = %what, max_connections = config.max_connections, "connection limit reached; new connections wait");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                }
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            // Reaps finished connections so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // Responses are small and sent whole: do not hold them back (Nagle).
                    let _ = tcp.set_nodelay(true);
                    let open = config.open.clone();
                    open.inc();
                    let (service, protocol, stop, cut) = (service.clone(), config.protocol, stop.clone(), cut.clone());
                    let (tls, what) = (config.tls.clone(), what.clone());
                    connections.spawn(async move {
                        match tls {
                            None => serve_connection(tcp, service, protocol, stop, cut).await,
                            Some(tls) => {
                                let stream = tokio::select! {
                                    s = handshake(tcp, &tls, peer, &what) => s,
                                    // Nothing was asked yet: nothing to finish.
                                    _ = stop.cancelled() => None,
                                };
                                if let Some(stream) = stream {
                                    serve_connection(stream, service, protocol, stop, cut).await;
                                }
                            }
                        }
                        open.dec();
                        drop(slot);
                    });
                }
                Err(e) => {
                    crate::telemetry::log_limited!(warn, "cannot accept a connection", server = %what, error = %e);
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

/// The TLS handshake of a connection to a TLS listener, bounded by [`TLS_HANDSHAKE_TIMEOUT`];
/// `None` if it failed (counted and logged, except for a client that closed before saying
/// anything: a port probe).
async fn handshake(
    tcp: TcpStream,
    tls: &Tls,
    peer: SocketAddr,
    what: &str,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let deadline = Instant::now() + TLS_HANDSHAKE_TIMEOUT;
    let failed = |error: &dyn std::fmt::Display| {
        tls.handshake_failures.inc();
        // rustls' errors name the alert or the certificate problem, never key material.
        crate::telemetry::log_limited!(warn, "TLS handshake failed", server = %what, %peer, error = %error);
    };
    let hello = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let start = match tokio::time::timeout_at(deadline, hello).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            tracing::debug!(server = %what, %peer, "connection closed before a TLS ClientHello");
            return None;
        }
        Ok(Err(e)) => {
            let garbled = e
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .is_some_and(|e| matches!(e, rustls::Error::InvalidMessage(_)));
            if garbled {
                failed(&format_args!(
                    "not a TLS ClientHello (a plaintext client?): {e}"
                ));
            } else {
                failed(&format_args!("ClientHello refused: {e}"));
            }
            return None;
        }
        Err(_) => {
            failed(&format_args!(
                "no ClientHello within {TLS_HANDSHAKE_TIMEOUT:?}"
            ));
            return None;
        }
    };
    match tokio::time::timeout_at(deadline, start.into_stream(tls.config.current())).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            failed(&e);
            None
        }
        Err(_) => {
            failed(&format_args!(
                "not complete within {TLS_HANDSHAKE_TIMEOUT:?}"
            ));
            None
        }
    }
}

/// Serves one connection until it ends, a bound ends it, `stop` asks it to finish, or `cut`
/// drops it.
async fn serve_connection<I, S, B>(
    io: I,
    service: S,
    protocol: Protocol,
    stop: CancellationToken,
    cut: CancellationToken,
) where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = Arc::new(Watch::new(Instant::now()));
    let frames = match protocol {
        Protocol::Http1(_) => None,
        Protocol::Http2(l) => Some(FrameScanner::new(l)),
    };
    let io = TokioIo::new(Watched {
        io,
        watch: watch.clone(),
        frames,
    });
    let svc = {
        let watch = watch.clone();
        hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let request = watch.begin(&req);
            let req = req.map(|inner| RequestBody {
                inner,
                watch: watch.clone(),
                ended: false,
            });
            answered(service.clone().oneshot(req), request)
        })
    };
    match protocol {
        Protocol::Http1(limits) => {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // The header timeout is kept here (see `Watch`): hyper's also runs on idle
                // keep-alive connections, where `idle_timeout` applies instead.
                .header_read_timeout(None)
                .serve_connection(io, svc);
            drive(
                conn,
                |c| c.graceful_shutdown(),
                &watch,
                Bounds::Http1(limits),
                stop,
                cut,
            )
            .await;
        }
        Protocol::Http2(limits) => {
            let conn = hyper::server::conn::http2::Builder::new(CutExecutor(cut.clone()))
                .timer(TokioTimer::new())
                .max_concurrent_streams(limits.max_concurrent_streams)
                .keep_alive_interval(limits.keepalive_time)
                .keep_alive_timeout(limits.keepalive_timeout)
                .serve_connection(io, svc);
            drive(
                conn,
                |c| c.graceful_shutdown(),
                &watch,
                Bounds::Http2(limits),
                stop,
                cut,
            )
            .await;
        }
    }
}

/// Runs `conn` under its time bounds; on `stop`, asks it to finish with `graceful`; on `cut`,
/// drops it.
async fn drive<C, E>(
    conn: C,
    graceful: impl Fn(Pin<&mut C>),
    watch: &Watch,
    bounds: Bounds,
    stop: CancellationToken,
    cut: CancellationToken,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = pin!(conn);
    let mut finishing: Option<(Instant, Option<Duration>)> = None;
    let result = loop {
        let now = Instant::now();
        let next = match watch.check(now, bounds, finishing) {
            Verdict::Wait(next) => next,
            Verdict::Finish(reason, grace) => {
                tracing::debug!(reason, "closing a connection");
                graceful(conn.as_mut());
                finishing = Some((now, grace));
                continue;
            }
            Verdict::Cut(reason) => {
                tracing::debug!(reason, "cutting a connection");
                return;
            }
        };
        let wake = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = stop.cancelled() => {
                graceful(conn.as_mut());
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = cut.cancelled() => return,
                }
            }
            _ = wake => {}
            _ = watch.changed.notified() => {}
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The bounds `drive` enforces.
#[derive(Debug, Clone, Copy)]
enum Bounds {
    Http1(Http1Limits),
    Http2(Http2Limits),
}

/// What a connection's bounds say now.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Nothing is over a bound; look again at this instant (or when something changes).
    Wait(Option<Instant>),
    /// Ask the connection to finish (HTTP/2: a GOAWAY), then cut it after the grace if given.
    Finish(&'static str, Option<Duration>),
    /// Drop the connection now.
    Cut(&'static str),
}

/// What one connection is doing, kept by its socket ([`Watched`]), its request handler
/// wrapper and its bodies ([`RequestBody`]), and checked against its bounds by `drive`.
struct Watch {
    state: Mutex<Activity>,
    /// Wakes `drive` when a bound may have become due sooner.
    changed: Notify,
}

#[derive(Debug)]
struct Activity {
    accepted: Instant,
    /// Bytes were ever read (HTTP/2: the preface has arrived).
    heard: bool,
    /// Requests whose handler has not answered yet.
    requests: usize,
    /// When the handlers last went quiet (or the connection started).
    quiet_since: Instant,
    /// HTTP/1: when the next request started, before its headers are read (the connection's
    /// start for the first request).
    head_started: Option<Instant>,
    /// HTTP/1: when the current request started (its first byte, or its headers if that is
    /// unknown) and when its headers were read.
    request: Option<(Instant, Instant)>,
    /// HTTP/1: the current request's body is read whole (or dropped by its handler).
    body_done: bool,
    /// The socket refused a write (the client is not reading).
    write_blocked: bool,
    /// HTTP/2: when the client last pinged, how many of its pings came too soon since the
    /// last request began or ended, and whether that is too many.
    last_ping: Option<Instant>,
    ping_strikes: u32,
    too_many_pings: bool,
}

impl Watch {
    fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(Activity {
                accepted: now,
                heard: false,
                requests: 0,
                quiet_since: now,
                head_started: Some(now),
                request: None,
                body_done: true,
                write_blocked: false,
                last_ping: None,
                ping_strikes: 0,
                too_many_pings: false,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Activity> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request's headers are read and its handler is about to run.
    fn begin(self: &Arc<Self>, req: &http::Request<Incoming>) -> InFlight {
        let now = Instant::now();
        let mut a = self.lock();
        let started = a.head_started.take().unwrap_or(now);
        a.request = Some((started, now));
        a.body_done = req.body().is_end_stream();
        a.requests += 1;
        // Pings around real traffic are fair (flow-control probes follow data).
        a.ping_strikes = 0;
        drop(a);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    fn read(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut a = self.lock();
        a.heard = true;
        if a.requests == 0 && a.body_done && a.head_started.is_none() {
            a.head_started = Some(Instant::now());
            drop(a);
            self.changed.notify_one();
        }
    }

    /// The client pinged at `now`: a ping sooner than the policy allows is a strike, and
    /// more than [`MAX_PING_STRIKES`] close the connection (grpc-go's rule).
    fn ping(&self, now: Instant, min_time: Duration, without_stream: bool) {
        let mut a = self.lock();
        let allowed = if a.requests == 0 && !without_stream {
            PING_WITHOUT_STREAM_MIN_TIME
        } else {
            min_time
        };
        if let Some(last) = a.last_ping
            && now.duration_since(last) < allowed
        {
            a.ping_strikes += 1;
        }
        a.last_ping = Some(now);
        if a.ping_strikes > MAX_PING_STRIKES && !a.too_many_pings {
            a.too_many_pings = true;
            drop(a);
            self.changed.notify_one();
        }
    }

    fn write_blocked(&self, blocked: bool) {
        let mut a = self.lock();
        if a.write_blocked != blocked {
            a.write_blocked = blocked;
            drop(a);
            if blocked {
                self.changed.notify_one();
            }
        }
    }

    fn body_done(&self) {
        self.lock().body_done = true;
    }

    /// Checks the bounds at `now`; `finishing` is when `drive` asked the connection to
    /// finish, with the grace it has.
    fn check(
        &self,
        now: Instant,
        bounds: Bounds,
        finishing: Option<(Instant, Option<Duration>)>,
    ) -> Verdict {
        let a = self.lock();
        let mut next: Option<Instant> = None;
        // True when `deadline` has passed; otherwise it is remembered if the earliest yet.
        let mut due = |deadline: Instant| -> bool {
            if now >= deadline {
                return true;
            }
            next = Some(next.map_or(deadline, |n| n.min(deadline)));
            false
        };
        if let Some((since, grace)) = finishing {
            if let Some(grace) = grace
                && due(since + grace)
            {
                return Verdict::Cut("grace after max_connection_age over");
            }
            // With nothing in progress, hyper still waits for the client to acknowledge the
            // GOAWAY's ping; a client that never does is not waited for long.
            if a.requests == 0 && due(since + IN_FLIGHT_GRACE) {
                return Verdict::Cut("nothing in progress after GOAWAY");
            }
            return Verdict::Wait(next);
        }
        match bounds {
            Bounds::Http1(l) => {
                let idle = a.requests == 0 && a.body_done;
                if idle && let Some(start) = a.head_started {
                    if let Some(t) = l.read_header_timeout.or(l.read_timeout)
                        && due(start + t)
                    {
                        return Verdict::Cut("read_header_timeout");
                    }
                } else if idle
                    && !a.write_blocked
                    && let Some(t) = l.idle_timeout.or(l.read_timeout)
                    && due(a.quiet_since + t)
                {
                    return Verdict::Cut("idle_timeout");
                }
                if let Some((started, headers)) = a.request {
                    if !a.body_done
                        && let Some(t) = l.read_timeout
                        && due(started + t)
                    {
                        return Verdict::Cut("read_timeout");
                    }
                    if (a.requests > 0 || a.write_blocked)
                        && let Some(t) = l.write_timeout
                        && due(headers + t)
                    {
                        return Verdict::Cut("write_timeout");
                    }
                }
            }
            Bounds::Http2(l) => {
                if !a.heard && due(a.accepted + HTTP2_PREFACE_TIMEOUT) {
                    return Verdict::Cut("no HTTP/2 preface");
                }
                if a.too_many_pings {
                    return Verdict::Finish(
                        "too many pings (keepalive.enforcement_policy)",
                        Some(IN_FLIGHT_GRACE),
                    );
                }
                if let Some(age) = l.max_connection_age
                    && due(a.accepted + age)
                {
                    return Verdict::Finish("max_connection_age", l.max_connection_age_grace);
                }
                if a.requests == 0
                    && let Some(t) = l.max_connection_idle
                    && due(a.quiet_since + t)
                {
                    return Verdict::Finish("max_connection_idle", None);
                }
            }
        }
        Verdict::Wait(next)
    }
}

/// One request in progress; its end (answered or dropped) is noted.
struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = self.0.lock();
        a.requests -= 1;
        a.ping_strikes = 0;
        if a.requests == 0 {
            a.quiet_since = Instant::now();
        }
        drop(a);
        self.0.changed.notify_one();
    }
}

/// Runs a request's handler; the request ends when it answers or is dropped.
async fn answered<F: Future>(handler: F, request: InFlight) -> F::Output {
    let out = handler.await;
    drop(request);
    out
}

/// The body of a request, as handlers see it: hyper's, with its end noted (the connection's
/// `read_timeout` stops counting there).
pub struct RequestBody {
    inner: Incoming,
    watch: Arc<Watch>,
    ended: bool,
}

impl RequestBody {
    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.watch.body_done();
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() || self.inner.is_end_stream() {
            self.end();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // A handler that drops the body no longer waits for it; hyper drains or closes.
        self.end();
    }
}

/// A connection's stream (the socket, or the TLS stream over it: what is seen here is the
/// plaintext), noting reads and refused writes in its [`Watch`].
struct Watched<I> {
    io: I,
    watch: Arc<Watch>,
    /// HTTP/2: finds the client's pings in what it sends.
    frames: Option<FrameScanner>,
}

/// Follows the HTTP/2 frames a client sends (headers only; payloads are skipped) to apply
/// the ping policy. hyper answers pings itself and does not report them.
struct FrameScanner {
    /// Bytes of the connection preface still to skip.
    preface: usize,
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    min_time: Duration,
    without_stream: bool,
}

impl FrameScanner {
    fn new(l: Http2Limits) -> Self {
        Self {
            preface: 24,
            header: [0; 9],
            have: 0,
            skip: 0,
            min_time: l.ping_min_time,
            without_stream: l.ping_without_stream,
        }
    }

    /// Scans `bytes`, the next ones the client sent; returns how many pings they held.
    fn scan(&mut self, mut bytes: &[u8]) -> usize {
        let mut pings = 0;
        let n = self.preface.min(bytes.len());
        self.preface -= n;
        bytes = &bytes[n..];
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                let h = self.header;
                // Type 6 is PING; flag 0x1 marks an acknowledgement (of the server's pings).
                if h[3] == 6 && h[4] & 1 == 0 {
                    pings += 1;
                }
                self.skip = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                self.have = 0;
            }
        }
        pings
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = ready!(Pin::new(&mut self.io).poll_read(cx, buf));
        self.watch.read(buf.filled().len() - before);
        let this = &mut *self;
        if let Some(frames) = &mut this.frames {
            for _ in 0..frames.scan(&buf.filled()[before..]) {
                this.watch
                    .ping(Instant::now(), frames.min_time, frames.without_stream);
            }
        }
        Poll::Ready(r)
    }
}

impl<I> Watched<I> {
    fn note_write<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.watch.write_blocked(r.is_pending());
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note_write(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note_write(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.note_write(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
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
        let task = spawn(
            listener,
            Listener::new(Protocol::Http1(Http1Limits::INTERNAL), 16),
            app,
            stop,
            "test".into(),
        );
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

    #[tokio::test]
    async fn over_max_connections_a_client_waits_until_one_closes() {
        let stop = CancellationToken::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/", axum::routing::post(|| async { "ok" }));
        let config = Listener::new(Protocol::Http1(Http1Limits::INTERNAL), 2);
        let reached = config.limit_reached.clone();
        let open = config.open.clone();
        let task = spawn(listener, config, app, stop.clone(), "test".into());

        let first = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let _second = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // The third connects (the kernel's backlog) but is not served while two are open.
        let mut third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        third
            .write_all(format!("{}abc", request(3)).as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
        assert!(early.is_err(), "served over the cap: {early:?}");
        assert_eq!(open.get(), 2);
        assert!(reached.get() >= 1);

        drop(first);
        let n = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf))
            .await
            .expect("served once a slot is free")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        stop.cancel();
        task.await.unwrap();
    }

    /// A TLS server (HTTP/1, ALPN `http/1.1`) on the test certificate; its port, task and
    /// failed-handshake counter.
    async fn tls_server(stop: CancellationToken) -> (u16, JoinHandle<()>, Counter) {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, include_str!("config/tls/testdata/server.crt")).unwrap();
        std::fs::write(&key, include_str!("config/tls/testdata/server.key")).unwrap();
        let tls = crate::config::tls::server::ServerTlsConfig {
            cert_file: cert.display().to_string(),
            key_file: key.display().to_string(),
            ..Default::default()
        }
        .build("test.tls", &["http/1.1"])
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/", axum::routing::post(|| async { "ok" }));
        let failures = Counter::default();
        let config = Listener::new(Protocol::Http1(Http1Limits::INTERNAL), 16)
            .with_tls(Arc::new(tls), &failures);
        let task = spawn(listener, config, app, stop, "test".into());
        (port, task, failures)
    }

    #[tokio::test]
    async fn tls_requests_are_served_and_failed_handshakes_counted() {
        let stop = CancellationToken::new();
        let (port, task, failures) = tls_server(stop.clone()).await;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(
                crate::config::tls::certificates(
                    "",
                    include_str!("config/tls/testdata/server.crt"),
                    "ca",
                )
                .unwrap()
                .remove(0),
            )
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(request(0).as_bytes()).await.unwrap();
        let mut buf = [0u8; 256];
        let n = tls.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        assert_eq!(failures.get(), 0);

        // Plaintext is a failed handshake; a connection closed before a word is not.
        let mut plain = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        plain.write_all(request(0).as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        let _ = plain.read_to_end(&mut reply).await;
        assert!(!reply.starts_with(b"HTTP"), "{reply:?}");
        drop(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(failures.get(), 1);

        // A client stalled mid-handshake does not hold up the stop.
        let _stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stopped = Instant::now();
        stop.cancel();
        task.await.unwrap();
        assert!(
            stopped.elapsed() < Duration::from_millis(200),
            "{:?}",
            stopped.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_tls_handshake_times_out() {
        let stop = CancellationToken::new();
        let (port, task, failures) = tls_server(stop.clone()).await;
        let mut stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // Sends nothing: the server gives up after TLS_HANDSHAKE_TIMEOUT (time is paused and
        // jumps ahead while everything waits).
        let mut buf = Vec::new();
        let n = stalled.read_to_end(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0);
        assert_eq!(failures.get(), 1);
        stop.cancel();
        task.await.unwrap();
    }

    fn limits() -> Bounds {
        Bounds::Http1(Http1Limits {
            read_header_timeout: Some(Duration::from_secs(1)),
            read_timeout: Some(Duration::from_secs(5)),
            write_timeout: Some(Duration::from_secs(3)),
            idle_timeout: Some(Duration::from_secs(10)),
        })
    }

    #[test]
    fn http1_bounds_follow_the_request() {
        let t0 = tokio::time::Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let w = Watch::new(t0);
        // A new connection: the header timeout runs from its start.
        assert_eq!(w.check(t0, limits(), None), Verdict::Wait(Some(s(1))));
        assert_eq!(
            w.check(s(1), limits(), None),
            Verdict::Cut("read_header_timeout")
        );

        // Headers read at 0.5 s, the body not yet: read and write timeouts run.
        {
            let mut a = w.lock();
            a.head_started = None;
            a.request = Some((t0, t0 + Duration::from_millis(500)));
            a.body_done = false;
            a.requests = 1;
        }
        assert_eq!(
            w.check(s(2), limits(), None),
            Verdict::Wait(Some(t0 + Duration::from_millis(3500)))
        );
        assert_eq!(w.check(s(4), limits(), None), Verdict::Cut("write_timeout"));
        {
            let mut a = w.lock();
            a.body_done = true;
            a.requests = 0;
            a.quiet_since = s(2);
        }
        // Answered at 2 s: idle until 12 s, unless a next request starts.
        assert_eq!(w.check(s(4), limits(), None), Verdict::Wait(Some(s(12))));
        assert_eq!(w.check(s(12), limits(), None), Verdict::Cut("idle_timeout"));
        w.read(10);
        let started = w.lock().head_started.expect("a request started");
        assert_eq!(
            w.check(started, limits(), None),
            Verdict::Wait(Some(started + Duration::from_secs(1)))
        );
    }

    #[test]
    fn http2_bounds_goaway_then_cut() {
        let t0 = tokio::time::Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let l = Bounds::Http2(Http2Limits {
            max_concurrent_streams: 10,
            max_connection_idle: Some(Duration::from_secs(5)),
            max_connection_age: Some(Duration::from_secs(60)),
            max_connection_age_grace: Some(Duration::from_secs(3)),
            keepalive_time: None,
            keepalive_timeout: Duration::from_secs(20),
            ping_min_time: Duration::from_secs(300),
            ping_without_stream: false,
        });
        let w = Watch::new(t0);
        assert_eq!(w.check(s(10), l, None), Verdict::Cut("no HTTP/2 preface"));
        w.read(24);
        assert_eq!(w.check(s(1), l, None), Verdict::Wait(Some(s(5))));
        assert_eq!(
            w.check(s(5), l, None),
            Verdict::Finish("max_connection_idle", None)
        );
        w.lock().requests = 1;
        assert_eq!(
            w.check(s(60), l, None),
            Verdict::Finish("max_connection_age", Some(Duration::from_secs(3)))
        );
        let finishing = Some((s(60), Some(Duration::from_secs(3))));
        assert_eq!(w.check(s(62), l, finishing), Verdict::Wait(Some(s(63))));
        assert_eq!(
            w.check(s(63), l, finishing),
            Verdict::Cut("grace after max_connection_age over")
        );
    }

    #[test]
    fn too_many_client_pings_end_the_connection() {
        let l = Http2Limits {
            max_concurrent_streams: 10,
            max_connection_idle: None,
            max_connection_age: None,
            max_connection_age_grace: None,
            keepalive_time: None,
            keepalive_timeout: Duration::from_secs(20),
            ping_min_time: Duration::from_secs(300),
            ping_without_stream: true,
        };
        let mut scanner = FrameScanner::new(l);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend([0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]); // SETTINGS
        let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let ack = [0, 0, 8, 6, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        bytes.extend(ping);
        bytes.extend(ack);
        bytes.extend(ping);
        // Split anywhere, the frames are found alike.
        let (a, b) = bytes.split_at(30);
        assert_eq!(scanner.scan(a) + scanner.scan(b), 2);

        let t0 = tokio::time::Instant::now();
        let w = Watch::new(t0);
        w.read(1);
        for i in 0..3 {
            w.ping(t0 + Duration::from_secs(i), l.ping_min_time, true);
        }
        assert_eq!(w.check(t0, Bounds::Http2(l), None), Verdict::Wait(None));
        w.ping(t0 + Duration::from_secs(3), l.ping_min_time, true);
        assert_eq!(
            w.check(t0, Bounds::Http2(l), None),
            Verdict::Finish(
                "too many pings (keepalive.enforcement_policy)",
                Some(IN_FLIGHT_GRACE)
            )
        );
    }
}
