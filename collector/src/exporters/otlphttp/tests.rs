//! The exporter against a real HTTP server (axum) on 127.0.0.1.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::net::TcpListener;

use super::*;
use crate::component::{BuildContext, ComponentId, Exporter, ExporterConfig, Problem};
use crate::config::parse_component;
use crate::net::Compression;
use crate::otlp::compression::{Encoding as BodyEncoding, decompress};
use crate::otlp::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use crate::pipeline::Traces;
use crate::pipeline::{ConsumeError, Delivery, DeliveryTracker, Outcome, TraceBatch};
use crate::telemetry::{ExporterMetrics, Metrics};

/// A scripted answer: status, headers, body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn reply(status: u16, headers: &[(&'static str, &str)], body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body: body.into(),
    }
}

/// What the server saw.
struct Seen {
    at: Instant,
    path: String,
    headers: HeaderMap,
    request: ExportTraceServiceRequest,
    accepted: bool,
}

/// A recording OTLP/HTTP server: answers from a script, then 200 with an empty response.
#[derive(Default)]
struct Backend {
    script: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
    latency: Mutex<Duration>,
}

impl Backend {
    fn with(script: Vec<Reply>) -> Arc<Self> {
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

async fn handle(
    State(b): State<Arc<Backend>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = *b.latency.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let encoding = BodyEncoding::from_header(header("content-encoding").as_deref()).unwrap();
    let raw = decompress(encoding, &body, 64 << 20).unwrap();
    let request = if header("content-type").as_deref() == Some("application/json") {
        crate::otlp::json::decode_traces(&raw).unwrap()
    } else {
        ExportTraceServiceRequest::decode(raw.as_slice()).unwrap()
    };
    let answer = b.script.lock().unwrap().pop_front();
    let accepted = answer.as_ref().is_none_or(|r| r.status < 300);
    b.seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        path: uri.path().to_string(),
        headers: headers.clone(),
        request,
        accepted,
    });
    let r = answer.unwrap_or_else(|| {
        reply(
            200,
            &[("content-type", "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
    });
    let mut out = HeaderMap::new();
    for (k, v) in r.headers {
        out.insert(k, v.parse().unwrap());
    }
    (StatusCode::from_u16(r.status).unwrap(), out, r.body).into_response()
}

async fn serve_on(listener: TcpListener, backend: Arc<Backend>) {
    let app = Router::new().fallback(handle).with_state(backend);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

async fn serve(backend: Arc<Backend>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_on(listener, backend).await;
    addr
}

fn parse(yaml: &str) -> Result<OtlpHttpExporterConfig, Vec<Problem>> {
    parse_component::<OtlpHttpExporterConfig>(serde_yaml_ng::from_str(yaml).unwrap())
}

/// Builds and starts an exporter to `addr` with short retry intervals; `extra` adds YAML.
async fn exporter(addr: SocketAddr, extra: &str) -> (Arc<dyn Exporter<Traces>>, ExporterMetrics) {
    // Short intervals unless the test sets its own.
    let retry = if extra.contains("retry_on_failure") {
        ""
    } else {
        "retry_on_failure: { initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 5s }"
    };
    let yaml = format!("endpoint: http://{addr}\n{retry}\n{extra}");
    let cfg = parse(&yaml).unwrap();
    let ctx = BuildContext {
        id: ComponentId::parse("otlphttp/test").unwrap(),
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
            .exporter("otlphttp/test", crate::pipeline::SignalKind::Traces),
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

fn rpc_status(message: &str) -> Vec<u8> {
    tonic_types::Status {
        code: 3,
        message: message.into(),
        details: vec![],
    }
    .encode_to_vec()
}

#[tokio::test]
async fn posts_gzipped_protobuf_with_headers_to_v1_traces() {
    let backend = Backend::with(vec![]);
    let addr = serve(backend.clone()).await;
    let (exporter, metrics) = exporter(
        addr,
        "headers: { Authorization: Bearer s3cret, x-tenant: acme }",
    )
    .await;
    let (b, slot) = batch(&["a", "b"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(outcome(&slot).await, Outcome::Delivered);
    {
        let seen = backend.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "/v1/traces");
        let h = &seen[0].headers;
        assert_eq!(h["content-type"], "application/x-protobuf");
        assert_eq!(h["content-encoding"], "gzip");
        assert_eq!(h["authorization"], "Bearer s3cret");
        assert_eq!(h["x-tenant"], "acme");
        assert!(h["user-agent"].to_str().unwrap().starts_with("wasmcol/"));
    }
    assert_eq!(backend.accepted_span_names(), vec!["a", "b"]);
    assert_eq!(metrics.sent.get(), 2);
    exporter.shutdown().await;
}

#[tokio::test]
async fn json_and_zstd_to_a_custom_traces_endpoint() {
    let backend = Backend::with(vec![]);
    let addr = serve(backend.clone()).await;
    let extra =
        format!("traces_endpoint: http://{addr}/custom/traces\nencoding: json\ncompression: zstd");
    let (exporter, _) = exporter(addr, &extra).await;
    let (b, slot) = batch(&["j"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(outcome(&slot).await, Outcome::Delivered);
    {
        let seen = backend.seen.lock().unwrap();
        assert_eq!(seen[0].path, "/custom/traces");
        assert_eq!(seen[0].headers["content-type"], "application/json");
        assert_eq!(seen[0].headers["content-encoding"], "zstd");
        assert_eq!(
            seen[0].request.resource_spans[0].scope_spans[0].spans[0].trace_id,
            vec![1; 16]
        );
    }
    assert_eq!(backend.accepted_span_names(), vec!["j"]);
    exporter.shutdown().await;
}

#[tokio::test]
async fn uncompressed_when_asked() {
    let backend = Backend::with(vec![]);
    let addr = serve(backend.clone()).await;
    let (exporter, _) = exporter(addr, "compression: none").await;
    let (b, slot) = batch(&["plain"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(outcome(&slot).await, Outcome::Delivered);
    assert!(
        backend.seen.lock().unwrap()[0]
            .headers
            .get("content-encoding")
            .is_none()
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn status_503_is_retried_after_retry_after() {
    let backend = Backend::with(vec![reply(
        503,
        &[("retry-after", "1"), ("content-type", "text/plain")],
        "try again later",
    )]);
    let addr = serve(backend.clone()).await;
    let (exporter, metrics) = exporter(addr, "").await;
    let (b, slot) = batch(&["once"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(outcome(&slot).await, Outcome::Delivered);
    assert_eq!(backend.attempts(), 2);
    assert_eq!(backend.accepted_span_names(), vec!["once"]);
    {
        let seen = backend.seen.lock().unwrap();
        let gap = seen[1].at - seen[0].at;
        // Retry-After's second, not the 20ms backoff step.
        assert!(gap >= Duration::from_millis(990), "{gap:?}");
    }
    assert_eq!((metrics.sent.get(), metrics.retries.get()), (1, 1));
    exporter.shutdown().await;
}

#[tokio::test]
async fn status_400_is_permanent_and_quotes_the_rpc_status() {
    let backend = Backend::with(vec![reply(
        400,
        &[("content-type", "application/x-protobuf")],
        rpc_status("span 3 has no trace id"),
    )]);
    let addr = serve(backend.clone()).await;
    let (exporter, metrics) = exporter(addr, "sending_queue: { enabled: false }").await;
    let (b, slot) = batch(&["x", "y"]);
    let err = exporter.consume(b).await.unwrap_err();
    assert_eq!(
        err,
        ConsumeError::permanent(format!(
            "exporters.otlphttp/test: POST http://{addr}/v1/traces: HTTP 400 Bad Request: span 3 has no trace id"
        ))
    );
    assert_eq!(*slot.lock().unwrap(), Some(Outcome::Rejected));
    assert_eq!(backend.attempts(), 1);
    assert_eq!((metrics.send_failed.get(), metrics.retries.get()), (2, 0));
    exporter.shutdown().await;
}

#[tokio::test]
async fn status_400_through_the_queue_is_not_retried() {
    let backend = Backend::with(vec![reply(400, &[], "bad")]);
    let addr = serve(backend.clone()).await;
    let (exporter, metrics) = exporter(addr, "").await;
    let (b, slot) = batch(&["x"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(outcome(&slot).await, Outcome::Rejected);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.attempts(), 1);
    assert_eq!(metrics.send_failed.get(), 1);
    exporter.shutdown().await;
}

#[tokio::test]
async fn status_429_json_message_without_retries_is_a_retryable_refusal() {
    let backend = Backend::with(vec![reply(
        429,
        &[("content-type", "application/json")],
        r#"{"code":8,"message":"tenant over quota"}"#,
    )]);
    let addr = serve(backend.clone()).await;
    let (exporter, _) = exporter(
        addr,
        "sending_queue: { enabled: false }\nretry_on_failure: { enabled: false }",
    )
    .await;
    let (b, _) = batch(&["x"]);
    let err = exporter.consume(b).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(
        err.to_string()
            .contains("HTTP 429 Too Many Requests: tenant over quota"),
        "{err}"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_huge_error_page_is_read_capped_and_quoted_short() {
    let page = format!("<html>{}</html>", "x".repeat(1 << 20));
    let backend = Backend::with(vec![reply(500, &[("content-type", "text/html")], page)]);
    let addr = serve(backend.clone()).await;
    let (exporter, _) = exporter(addr, "sending_queue: { enabled: false }").await;
    let (b, _) = batch(&["x"]);
    let err = exporter.consume(b).await.unwrap_err().to_string();
    assert!(!err.contains("(retryable)"));
    assert!(
        err.contains("HTTP 500 Internal Server Error: <html>xxx"),
        "{}",
        &err[..200]
    );
    assert!(err.len() < 1400, "{}", err.len());
    assert!(err.ends_with('…'));
    exporter.shutdown().await;
}

#[tokio::test]
async fn partial_success_is_counted_and_not_retried() {
    let body = r#"{"partialSuccess":{"rejectedSpans":"1","errorMessage":"too old"}}"#;
    let backend = Backend::with(vec![reply(
        200,
        &[("content-type", "application/json")],
        body,
    )]);
    let addr = serve(backend.clone()).await;
    let (exporter, metrics) = exporter(addr, "encoding: json").await;
    let (b, slot) = batch(&["new", "old"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(outcome(&slot).await, Outcome::Rejected);
    assert_eq!(backend.attempts(), 1);
    assert_eq!((metrics.sent.get(), metrics.send_failed.get()), (1, 1));
    exporter.shutdown().await;
}

#[tokio::test]
async fn connection_refused_is_retried_until_the_server_appears() {
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
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (second, second_slot) = batch(&["2"]);
    exporter.consume(second).await.unwrap();
    let (third, _) = batch(&["3"]);
    let err = exporter.consume(third).await.unwrap_err();
    assert_eq!(
        err,
        ConsumeError::retryable(
            "exporters.otlphttp/test: sending queue is full (queue_size: 2, sizer: requests)"
        )
    );
    assert_eq!(metrics.enqueue_failed.get(), 1);
    assert_eq!(outcome(&first_slot).await, Outcome::Delivered);
    assert_eq!(outcome(&second_slot).await, Outcome::Delivered);
    exporter.shutdown().await;
    assert_eq!(backend.accepted_span_names(), vec!["1", "2"]);
}

#[test]
fn retry_after_in_seconds_or_as_a_date() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
    assert_eq!(
        parse_retry_after(&later, now),
        Some(Duration::from_secs(30))
    );
    let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
    assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-1", now), None);
}

#[test]
fn retryable_statuses_follow_the_specification() {
    for s in [429, 502, 503, 504] {
        assert!(is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
    }
    for s in [400, 401, 403, 404, 413, 500, 501] {
        assert!(!is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
    }
}

#[test]
fn error_bodies_are_decoded_by_content_type() {
    assert_eq!(
        error_message("application/x-protobuf", &rpc_status("bad")),
        "bad"
    );
    assert_eq!(
        error_message("application/json; charset=utf-8", br#"{"message":"quota"}"#),
        "quota"
    );
    assert_eq!(
        error_message("text/plain", b"  upstream down \n"),
        "upstream down"
    );
    // A protobuf content type with a body that is not a Status: quote it as text.
    assert_eq!(
        error_message("application/x-protobuf", b"\xff\xffoops"),
        "\u{fffd}\u{fffd}oops"
    );
    assert_eq!(error_message("", b""), "(empty body)");
    let partial = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 4,
            error_message: "bad".into(),
        }),
    };
    assert_eq!(
        accepted::<Traces>("application/x-protobuf", &partial.encode_to_vec()).rejected,
        4
    );
    assert_eq!(
        accepted::<Traces>(
            "application/json",
            br#"{"partialSuccess":{"rejectedSpans":3}}"#
        )
        .rejected,
        3
    );
    assert_eq!(accepted::<Traces>("application/json", b"{}").rejected, 0);
}

#[test]
fn defaults_and_urls() {
    let cfg = parse("endpoint: http://gw:4318").unwrap();
    assert_eq!(cfg.encoding, Encoding::Proto);
    assert_eq!(cfg.compression, Compression::Gzip);
    assert_eq!(cfg.timeout, crate::config::Duration::from_secs(30));
    assert_eq!(cfg.traces_url().unwrap(), "http://gw:4318/v1/traces");
    let cfg = parse("endpoint: http://gw:4318/prefix/").unwrap();
    assert_eq!(cfg.traces_url().unwrap(), "http://gw:4318/prefix/v1/traces");
    let cfg = parse("endpoint: http://gw:4318\ntraces_endpoint: http://other:80/t").unwrap();
    assert_eq!(cfg.traces_url().unwrap(), "http://other:80/t");
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
        messages("encoding: json"),
        vec![
            "endpoint: missing: set endpoint (http://host:4318; traces go to /v1/traces) or \
             traces_endpoint (the full URL)"
        ]
    );
    assert_eq!(
        messages("endpoint: https://gw:4318\ntls: { cert_file: /no/client.pem }"),
        vec![
            "tls.key_file: missing: a client certificate is given, so set key_file (or key_pem) too",
            "tls.cert_file: cannot read \"/no/client.pem\": No such file or directory (os error 2)"
        ]
    );
    assert_eq!(
        messages("endpoint: gw:4318"),
        vec![
            "endpoint: expected a URL such as http://gw:4318, got \"gw:4318\" (the scheme is required)"
        ]
    );
    let m = messages(
        "endpoint: ftp://gw\ntraces_endpoint: https://gw/v1/traces\nheaders: { \"bad name\": x }\n\
         sending_queue: { queue_size: 0 }\ntls: { min_version: \"1.1\" }",
    );
    assert_eq!(m.len(), 4, "{m:#?}");
    assert!(
        m[0].starts_with("tls.min_version: TLS 1.1 is not supported"),
        "{}",
        m[0]
    );
    assert!(
        m[1].starts_with("endpoint: unsupported scheme \"ftp\""),
        "{}",
        m[1]
    );
    assert_eq!(
        m[2],
        "headers.bad name: \"bad name\" is not a valid HTTP header name"
    );
    assert!(
        m[3].starts_with("sending_queue.queue_size: must be at least 1, got 0"),
        "{}",
        m[3]
    );
    let m = messages("endpoint: http://gw:4318\ncompression: snappy");
    assert!(
        m[0].starts_with("compression: unknown variant `snappy`"),
        "{m:?}"
    );
}

/// An HTTPS server in front of `backend`: terminates TLS with `config` and relays the bytes.
async fn tls_in_front_of(backend: SocketAddr, config: rustls::ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn posts_over_https_with_a_client_certificate() {
    use crate::config::tls::client::test_pki::Pki;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("test CA");
    pki.write(dir.path());
    let backend = Backend::with(vec![]);
    let plain = serve(backend.clone()).await;
    let addr = tls_in_front_of(plain, pki.server_config(true, &["http/1.1"])).await;
    let d = dir.path().display();
    let cfg = parse(&format!(
        "endpoint: https://localhost:{}\n\
         tls: {{ ca_file: {d}/ca.pem, cert_file: {d}/client.pem, key_file: {d}/client-key.pem }}\n\
         sending_queue: {{ enabled: false }}",
        addr.port()
    ))
    .unwrap();
    let ctx = BuildContext {
        id: ComponentId::parse("otlphttp/tls").unwrap(),
        pipeline: None,
        metrics: Arc::new(Metrics::new()),
        stores: Default::default(),
        authenticators: Default::default(),
        acknowledge_when_stored: false,
        shared: Default::default(),
    };
    let exporter = cfg.build_traces(&ctx).unwrap();
    exporter.start().await.unwrap();
    let (b, _) = batch(&["over-https"]);
    exporter.consume(b).await.unwrap();
    assert_eq!(backend.accepted_span_names(), vec!["over-https"]);

    // The same server, trusted through another CA: refused, and the error says why.
    std::fs::write(dir.path().join("other.pem"), Pki::new("other CA").ca.cert).unwrap();
    let cfg = parse(&format!(
        "endpoint: https://localhost:{}\ntls: {{ ca_file: {d}/other.pem }}\n\
         sending_queue: {{ enabled: false }}\nretry_on_failure: {{ enabled: false }}",
        addr.port()
    ))
    .unwrap();
    let exporter = cfg.build_traces(&ctx).unwrap();
    exporter.start().await.unwrap();
    let (b, _) = batch(&["refused"]);
    let err = format!("{:?}", exporter.consume(b).await.unwrap_err());
    assert!(err.contains("certificate is not trusted"), "{err}");
    assert_eq!(backend.attempts(), 1);
}
