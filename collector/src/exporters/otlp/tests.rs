//! The exporter against a real tonic `TraceService` server on 127.0.0.1.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::*;
use crate::component::{BuildContext, ComponentId, Exporter, ExporterConfig, Problem};
use crate::config::parse_component;
use crate::exporters::sending_queue::SendError;
use crate::net::Compression;
use crate::otlp::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use crate::pipeline::Traces;
use crate::pipeline::{ConsumeError, Delivery, DeliveryTracker, Outcome, TraceBatch};
use crate::telemetry::{ExporterMetrics, Metrics};

/// How the backend answers one request.
enum Answer {
    Fail(Status),
    Reject { spans: i64, message: &'static str },
}

/// What the backend saw.
struct Seen {
    at: Instant,
    metadata: MetadataMap,
    request: ExportTraceServiceRequest,
    accepted: bool,
}

/// A recording OTLP/gRPC server: answers from a script, then accepts.
#[derive(Default)]
struct Backend {
    script: Mutex<VecDeque<Answer>>,
    seen: Mutex<Vec<Seen>>,
    /// Time each answer takes.
    latency: Mutex<Duration>,
}

impl Backend {
    fn with(script: Vec<Answer>) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script.into()),
            ..Default::default()
        })
    }
    fn attempts(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn accepted_span_names(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.accepted)
            .flat_map(|s| &s.request.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.name.clone())
            .collect()
    }
}

struct Service(Arc<Backend>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let latency = *self.0.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let answer = self.0.script.lock().unwrap().pop_front();
        let (metadata, _, request) = request.into_parts();
        let mut seen = Seen {
            at: Instant::now(),
            metadata,
            request,
            accepted: true,
        };
        let result = match answer {
            None => Ok(Response::new(ExportTraceServiceResponse::default())),
            Some(Answer::Reject { spans, message }) => {
                Ok(Response::new(ExportTraceServiceResponse {
                    partial_success: Some(ExportTracePartialSuccess {
                        rejected_spans: spans,
                        error_message: message.into(),
                    }),
                }))
            }
            Some(Answer::Fail(status)) => {
                seen.accepted = false;
                Err(status)
            }
        };
        self.0.seen.lock().unwrap().push(seen);
        result
    }
}

async fn serve_on(listener: TcpListener, backend: Arc<Backend>) {
    let service = TraceServiceServer::new(Service(backend))
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
}

async fn serve(backend: Arc<Backend>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_on(listener, backend).await;
    addr
}

fn parse(yaml: &str) -> Result<OtlpExporterConfig, Vec<Problem>> {
    parse_component::<OtlpExporterConfig>(serde_yaml_ng::from_str(yaml).unwrap())
}

/// Builds and starts an exporter with short retry intervals; `extra` adds YAML lines.
async fn exporter(addr: SocketAddr, extra: &str) -> (Arc<dyn Exporter<Traces>>, ExporterMetrics) {
    // Short intervals unless the test sets its own.
    let retry = if extra.contains("retry_on_failure") {
        ""
    } else {
        "retry_on_failure: { initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 5s }"
    };
    let tls = if extra.contains("tls:") {
        ""
    } else {
        "tls: { insecure: true }"
    };
    let yaml = format!("endpoint: {addr}\n{tls}\n{retry}\n{extra}");
    let cfg = parse(&yaml).unwrap();
    let ctx = BuildContext {
        id: ComponentId::parse("otlp/test").unwrap(),
        pipeline: None,
        metrics: Arc::new(Metrics::new()),
        stores: Default::default(),
        authenticators: Default::default(),
        acknowledge_when_stored: false,
        shared: Default::default(),
    };
    let exporter = cfg.build_traces(&ctx).unwrap();
    exporter.start().await.unwrap();
    (
        exporter,
        ctx.metrics
            .exporter("otlp/test", crate::pipeline::SignalKind::Traces),
    )
}

type Slot = Arc<Mutex<Option<Outcome>>>;

fn batch(names: &[&str]) -> (TraceBatch, Slot) {
    let slot: Slot = Arc::new(Mutex::new(None));
    let s = slot.clone();
    let tracker = DeliveryTracker::new(move |o| *s.lock().unwrap() = Some(o));
    let spans = names
        .iter()
        .map(|n| Span {
            name: n.to_string(),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        })
        .collect();
    let batch = TraceBatch::new(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
    .with_delivery(Delivery::tracked(tracker));
    (batch, slot)
}

async fn outcome(slot: &Slot) -> Outcome {
    for _ in 0..500 {
        if let Some(o) = *slot.lock().unwrap() {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no delivery outcome within 5s");
}

#[tokio::test]
async fn delivers_with_metadata_and_gzip() {
    let backend = Backend::with(vec![]);
    let addr = serve(backend.clone()).await;
    let (exporter, metrics) = exporter(
        addr,
        "headers: { authorization: Bearer s3cret, X-Tenant: acme }",
    )
    .await;
    let (b, slot) = batch(&["a", "b"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(outcome(&slot).await, Outcome::Delivered);
    {
        let seen = backend.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let md = &seen[0].metadata;
        assert_eq!(md.get("authorization").unwrap(), "Bearer s3cret");
        assert_eq!(md.get("x-tenant").unwrap(), "acme");
        assert_eq!(md.get("grpc-encoding").unwrap(), "gzip");
        assert!(
            md.get("user-agent")
                .unwrap()
                .to_str()
                .unwrap()
                .contains("wasmcol/")
        );
        assert!(
            md.get("grpc-timeout").is_some(),
            "the per-attempt timeout is the deadline"
        );
    }
    assert_eq!(backend.accepted_span_names(), vec!["a", "b"]);
    assert_eq!(metrics.sent.get(), 2);
    exporter.shutdown().await;
}

#[tokio::test]
async fn zstd_and_no_compression() {
    for (setting, expected) in [("zstd", Some("zstd")), ("none", None)] {
        let backend = Backend::with(vec![]);
        let addr = serve(backend.clone()).await;
        let (exporter, _) = exporter(addr, &format!("compression: {setting}")).await;
        let (b, slot) = batch(&["z"]);
        exporter.consume(b).await.unwrap();
        assert_eq!(outcome(&slot).await, Outcome::Delivered);
        {
            let seen = backend.seen.lock().unwrap();
            let encoding = seen[0]
                .metadata
                .get("grpc-encoding")
                .map(|v| v.to_str().unwrap().to_string());
            assert_eq!(encoding.as_deref(), expected, "compression: {setting}");
        }
        exporter.shutdown().await;
    }
}

#[tokio::test]
async fn unavailable_with_retry_info_is_retried_after_the_servers_delay() {
    let delay = Duration::from_millis(300);
    let backend = Backend::with(vec![Answer::Fail(Status::with_error_details(
        Code::Unavailable,
        "overloaded",
        ErrorDetails::with_retry_info(Some(delay)),
    ))]);
    let addr = serve(backend.clone()).await;
    let (exporter, metrics) = exporter(addr, "").await;
    let (b, slot) = batch(&["once"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(outcome(&slot).await, Outcome::Delivered);
    assert_eq!(backend.attempts(), 2);
    // Exactly once, although it was sent twice.
    assert_eq!(backend.accepted_span_names(), vec!["once"]);
    {
        let seen = backend.seen.lock().unwrap();
        // The server's 300ms, not the 20ms backoff step.
        assert!(
            seen[1].at - seen[0].at >= delay,
            "{:?}",
            seen[1].at - seen[0].at
        );
    }
    assert_eq!(
        (
            metrics.sent.get(),
            metrics.retries.get(),
            metrics.send_failed.get()
        ),
        (1, 1, 0)
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn invalid_argument_is_not_retried() {
    let backend = Backend::with(vec![Answer::Fail(Status::invalid_argument(
        "span without trace id",
    ))]);
    let addr = serve(backend.clone()).await;
    let (exporter, metrics) = exporter(addr, "").await;
    let (b, slot) = batch(&["bad", "worse"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(outcome(&slot).await, Outcome::Rejected);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.attempts(), 1);
    assert_eq!(
        (
            metrics.sent.get(),
            metrics.send_failed.get(),
            metrics.retries.get()
        ),
        (0, 2, 0)
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn permanent_error_reaches_the_caller_without_a_queue() {
    let backend = Backend::with(vec![Answer::Fail(Status::permission_denied(
        "wrong tenant",
    ))]);
    let addr = serve(backend.clone()).await;
    let (exporter, _) = exporter(addr, "sending_queue: { enabled: false }").await;
    let (b, slot) = batch(&["x"]);
    let err = exporter.consume(b).await.unwrap_err();
    assert_eq!(
        err,
        ConsumeError::permanent("exporters.otlp/test: gRPC status PERMISSION_DENIED: wrong tenant")
    );
    assert_eq!(*slot.lock().unwrap(), Some(Outcome::Rejected));
    exporter.shutdown().await;
}

#[tokio::test]
async fn partial_success_is_counted_and_not_retried() {
    let backend = Backend::with(vec![Answer::Reject {
        spans: 1,
        message: "one span is too old",
    }]);
    let addr = serve(backend.clone()).await;
    let (exporter, metrics) = exporter(addr, "").await;
    let (b, slot) = batch(&["new", "old", "newer"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(outcome(&slot).await, Outcome::Rejected);
    assert_eq!(backend.attempts(), 1);
    assert_eq!((metrics.sent.get(), metrics.send_failed.get()), (2, 1));
    exporter.shutdown().await;
}

#[tokio::test]
async fn connection_refused_is_retried_until_the_server_appears() {
    // Reserve a port, then free it: nothing listens there until the server starts.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (exporter, metrics) = exporter(addr, "").await;
    let (b, slot) = batch(&["late"]);
    exporter.consume(b).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(metrics.retries.get() >= 1);
    assert_eq!(*slot.lock().unwrap(), None);
    let backend = Backend::with(vec![]);
    serve_on(TcpListener::bind(addr).await.unwrap(), backend.clone()).await;
    assert_eq!(outcome(&slot).await, Outcome::Delivered);
    assert_eq!(backend.accepted_span_names(), vec!["late"]);
    exporter.shutdown().await;
}

#[tokio::test]
async fn full_queue_refuses_with_a_retryable_error() {
    let backend = Backend::with(vec![]);
    *backend.latency.lock().unwrap() = Duration::from_millis(500);
    let addr = serve(backend.clone()).await;
    let (exporter, metrics) =
        exporter(addr, "sending_queue: { num_consumers: 1, queue_size: 2 }").await;
    let (first, first_slot) = batch(&["1"]);
    exporter.consume(first).await.unwrap();
    // Let the consumer take the first batch (being sent, it still counts).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (second, second_slot) = batch(&["2"]);
    exporter.consume(second).await.unwrap();
    let (third, _) = batch(&["3", "3"]);
    let err = exporter.consume(third).await.unwrap_err();
    assert_eq!(
        err,
        ConsumeError::retryable(
            "exporters.otlp/test: sending queue is full (queue_size: 2, sizer: requests)"
        )
    );
    assert_eq!(metrics.enqueue_failed.get(), 2);
    assert_eq!(outcome(&first_slot).await, Outcome::Delivered);
    assert_eq!(outcome(&second_slot).await, Outcome::Delivered);
    exporter.shutdown().await;
    assert_eq!(backend.accepted_span_names(), vec!["1", "2"]);
}

#[test]
fn statuses_map_as_the_otlp_specification_says() {
    let retryable = |s: Status| matches!(classify(&s), SendError::Retryable { .. });
    for code in [
        Code::Unavailable,
        Code::Cancelled,
        Code::DeadlineExceeded,
        Code::Aborted,
        Code::OutOfRange,
        Code::DataLoss,
    ] {
        assert!(retryable(Status::new(code, "x")), "{code:?}");
    }
    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::PermissionDenied,
        Code::Unauthenticated,
        Code::Unimplemented,
        Code::Internal,
        Code::Unknown,
        Code::ResourceExhausted,
    ] {
        assert!(!retryable(Status::new(code, "x")), "{code:?}");
    }
    let throttled = Status::with_error_details(
        Code::ResourceExhausted,
        "slow down",
        ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
    );
    assert_eq!(
        classify(&throttled),
        SendError::Retryable {
            reason: "gRPC status RESOURCE_EXHAUSTED: slow down".into(),
            retry_after: Some(Duration::from_secs(3)),
        }
    );
}

#[test]
fn defaults_follow_the_opentelemetry_collector() {
    let cfg = parse("endpoint: gateway:4317").unwrap();
    assert_eq!(cfg.compression, Compression::Gzip);
    assert_eq!(cfg.timeout, crate::config::Duration::from_secs(5));
    assert!(cfg.sending_queue.enabled);
    // Bounded in bytes (64 MiB) unless `queue_size` or `sizer` says otherwise.
    assert_eq!(cfg.sending_queue.queue_size, 64 << 20);
    // As the Collector: TLS unless told otherwise; the scheme wins over tls.insecure.
    assert_eq!(cfg.authority().unwrap(), ("gateway:4317".into(), true));
    let cfg = parse("endpoint: gateway:4317\ntls: { insecure: true }").unwrap();
    assert_eq!(cfg.authority().unwrap(), ("gateway:4317".into(), false));
    let cfg = parse("endpoint: http://gateway:4317/").unwrap();
    assert_eq!(cfg.authority().unwrap(), ("gateway:4317".into(), false));
    let cfg = parse("endpoint: https://gateway:4317\ntls: { insecure: true }").unwrap();
    assert_eq!(cfg.authority().unwrap(), ("gateway:4317".into(), true));
}

#[test]
fn config_problems_name_the_option_and_value() {
    let messages = |yaml: &str| -> Vec<String> {
        parse(yaml)
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    };
    assert_eq!(
        messages("compression: gzip"),
        vec![
            "endpoint: missing: set it to the host:port of an OTLP/gRPC server, e.g. gateway:4317"
        ]
    );
    assert_eq!(
        messages("endpoint: https://gateway:4317\ntls: { ca_file: /no/ca.pem }"),
        vec!["tls.ca_file: cannot read \"/no/ca.pem\": No such file or directory (os error 2)"]
    );
    // A plaintext hop does not read the tls block.
    parse("endpoint: http://gateway:4317\ntls: { ca_file: /no/ca.pem }").unwrap();
    let m = messages(
        "endpoint: gateway\ntls: { min_version: \"1.0\" }\nheaders: { x-bin: a, x-ok: \"caf\u{e9}\" }\n\
         sending_queue: { num_consumers: 0 }\nretry_on_failure: { multiplier: 0 }",
    );
    assert_eq!(m.len(), 5, "{m:#?}");
    assert!(m[0].starts_with("endpoint: expected host:port"), "{}", m[0]);
    let m = messages("endpoint: gateway:4317\ntls: { min_version: \"1.0\" }");
    assert!(
        m[0].starts_with("tls.min_version: TLS 1.0 is not supported"),
        "{}",
        m[0]
    );
    let m = messages(
        "endpoint: gateway:1\ntls: { insecure: true }\nheaders: { x-bin: a, x-ok: \"caf\u{e9}\" }\n\
         sending_queue: { num_consumers: 0 }\nretry_on_failure: { multiplier: 0 }",
    );
    assert!(
        m[0].starts_with("headers.x-bin: binary metadata"),
        "{}",
        m[0]
    );
    assert!(
        m[1].starts_with("headers.x-ok: the value is not valid metadata"),
        "{}",
        m[1]
    );
    assert_eq!(
        m[2],
        "sending_queue.num_consumers: must be at least 1, got 0"
    );
    assert_eq!(
        m[3],
        "retry_on_failure.multiplier: must be 1 or more, got 0"
    );
    let m = messages("endpoint: gw:4317\nbalancer_name: round_robin");
    assert!(m[0].contains("balancer_name"), "{m:?}");
}

/// A TLS endpoint in front of `backend` (plaintext): it terminates TLS with `config` and
/// relays the bytes, as a TLS-terminating proxy would. Counts handshakes that succeeded.
async fn tls_in_front_of(
    backend: SocketAddr,
    config: rustls::ServerConfig,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, handshakes)
}

fn tls_yaml(dir: &std::path::Path, ca: &str) -> String {
    format!(
        "tls: {{ ca_file: {}, cert_file: {}, key_file: {} }}",
        dir.join(ca).display(),
        dir.join("client.pem").display(),
        dir.join("client-key.pem").display()
    )
}

#[tokio::test]
async fn delivers_over_mutual_tls_to_a_bare_endpoint() {
    use crate::config::tls::client::test_pki::Pki;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("test CA");
    pki.write(dir.path());
    let backend = Backend::with(vec![]);
    let plain = serve(backend.clone()).await;
    let (addr, handshakes) = tls_in_front_of(plain, pki.server_config(true, &["h2"])).await;
    // A bare host:port is TLS, as in the Collector.
    let (exporter, metrics) = exporter(addr, &tls_yaml(dir.path(), "ca.pem")).await;
    let (b, slot) = batch(&["secret-a", "secret-b"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(outcome(&slot).await, Outcome::Delivered);
    assert_eq!(backend.accepted_span_names(), vec!["secret-a", "secret-b"]);
    assert_eq!(metrics.sent.get(), 2);
    assert_eq!(handshakes.load(std::sync::atomic::Ordering::SeqCst), 1);
    exporter.shutdown().await;
}

#[tokio::test]
async fn tls_to_a_plaintext_server_says_to_set_insecure() {
    use crate::config::tls::client::test_pki::Pki;
    let dir = tempfile::tempdir().unwrap();
    Pki::new("test CA").write(dir.path());
    let addr = serve(Backend::with(vec![])).await;
    let extra = format!(
        "{}\nsending_queue: {{ enabled: false }}\nretry_on_failure: {{ enabled: false }}",
        tls_yaml(dir.path(), "ca.pem")
    );
    let (exporter, _) = exporter(addr, &extra).await;
    let (b, _) = batch(&["x"]);
    let err = format!("{:?}", exporter.consume(b).await.unwrap_err());
    assert!(
        err.contains("exporters.otlp/test.tls.insecure: true"),
        "the error says what to do: {err}"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    use crate::config::tls::client::test_pki::Pki;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("test CA");
    pki.write(dir.path());
    std::fs::write(
        dir.path().join("other-ca.pem"),
        Pki::new("other CA").ca.cert,
    )
    .unwrap();
    let backend = Backend::with(vec![]);
    let plain = serve(backend.clone()).await;
    let (addr, handshakes) = tls_in_front_of(plain, pki.server_config(false, &["h2"])).await;
    let extra = format!(
        "{}\nsending_queue: {{ enabled: false }}\nretry_on_failure: {{ enabled: false }}",
        tls_yaml(dir.path(), "other-ca.pem")
    );
    let (exporter, _) = exporter(addr, &extra).await;
    let (b, _) = batch(&["x"]);
    let err = format!("{:?}", exporter.consume(b).await.unwrap_err());
    assert!(
        err.contains("certificate is not trusted") && err.contains("tls.ca_file"),
        "{err}"
    );
    assert_eq!(backend.attempts(), 0);
    assert_eq!(handshakes.load(std::sync::atomic::Ordering::SeqCst), 0);
    exporter.shutdown().await;
}
