//! Exporters over TLS, between two real `wasmcol` processes: a sidecar (OTLP in, `otlp` or
//! `otlphttp` exporter with a `tls` block) and a gateway (OTLP in, file out). Spans come from the
//! Python OpenTelemetry SDK.
//!
//! The first test uses the gateway's own TLS (`receivers.otlp.protocols.*.tls` with
//! `client_ca_file`). The others terminate TLS in front of a plaintext gateway in the test
//! (rustls, with a required client certificate), which lets them count handshakes and check the
//! exporter's side alone: its certificate, its trust in the server's CA, ALPN, and the errors
//! it gives when that goes wrong.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use wasmcol_tests::tls::{Pair, Pki};
use wasmcol_tests::{
    Collector, all_spans, free_port, python, read_json_lines, wait_until, workspace_root,
};

/// A rustls server with the test server certificate that requires a client certificate
/// signed by the test CA.
fn mutual_tls_server(pki: &Pki, alpn: &[u8]) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&pki.ca).unwrap())
        .unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_file(&pki.server.cert).unwrap()],
            PrivateKeyDer::from_pem_file(&pki.server.key).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// What the TLS front saw.
#[derive(Default)]
struct Handshakes {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

/// Terminates TLS on a free port and relays each connection to `backend` (the gateway's
/// plaintext listener), on a runtime of its own that lives as long as the returned handle.
fn tls_front(
    backend: u16,
    config: rustls::ServerConfig,
) -> (u16, Arc<Handshakes>, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let seen = Arc::new(Handshakes::default());
    let counts = seen.clone();
    let backend: SocketAddr = ([127, 0, 0, 1], backend).into();
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counts = counts.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        counts.ok.fetch_add(1, Ordering::SeqCst);
                        if let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                        }
                    }
                    Err(_) => {
                        counts.failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (port, seen, runtime)
}

/// The gateway: OTLP/gRPC and OTLP/HTTP in (plaintext, behind the TLS front), a file out.
fn gateway(grpc: u16, http: u16) -> Collector {
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        metrics = free_port()
    );
    Collector::start(&config, grpc)
}

/// The sidecar: OTLP/gRPC in, `exporter` (a YAML block for `exporters.<id>`) out.
fn sidecar(grpc: u16, id: &str, exporter: &str) -> Collector {
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  {id}:
{exporter}
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [{id}]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        metrics = free_port()
    );
    Collector::start(&config, grpc)
}

/// Sends `traces` traces (3 spans each) to `port` with the Python SDK over gRPC; returns the
/// span names the SDK exported.
fn send(port: u16, traces: u32, expected: &Path) -> Vec<String> {
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_traces.py"))
        .args([
            "--protocol",
            "grpc",
            "--endpoint",
            &format!("127.0.0.1:{port}"),
            "--traces",
            &traces.to_string(),
            "--expected",
        ])
        .arg(expected)
        .status()
        .expect("run python");
    assert!(status.success(), "the Python sender failed");
    let sent: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(expected).unwrap()).unwrap();
    sent.iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn received(gateway: &Collector) -> Vec<String> {
    let path = gateway.path("out.jsonl");
    if !path.exists() {
        return Vec::new();
    }
    let rs = read_json_lines(&path);
    all_spans(&rs).iter().map(|s| s.name.clone()).collect()
}

/// The exporter's `tls` block: trust `ca`, present `client`.
fn tls_block(ca: &Path, client: &Pair) -> String {
    format!(
        "    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
        ca.display(),
        client.cert.display(),
        client.key.display()
    )
}

/// Every span the SDK sent is in the gateway's file.
fn assert_all_arrive(sent: &[String], gateway: &Collector, sidecar: &Collector) {
    let arrived = wait_until(Duration::from_secs(20), || {
        received(gateway).len() >= sent.len()
    });
    let mut got = received(gateway);
    assert!(
        arrived,
        "{} of {} spans arrived; sidecar log:\n{}",
        got.len(),
        sent.len(),
        sidecar.log()
    );
    let mut want = sent.to_vec();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn sidecar_to_gateway_over_mutual_tls_between_two_wasmcol_processes() {
    let pki = Pki::new();
    let (cert, key, ca) = (
        pki.server.cert.display(),
        pki.server.key.display(),
        pki.ca.display(),
    );
    let (gw_grpc, gw_http) = (free_port(), free_port());
    let gateway = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{gw_grpc}
        tls: {{ cert_file: {cert}, key_file: {key}, client_ca_file: {ca} }}
      http:
        endpoint: 127.0.0.1:{gw_http}
        tls: {{ cert_file: {cert}, key_file: {key}, client_ca_file: {ca} }}
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
            metrics = free_port()
        ),
        gw_grpc,
    );
    let client_tls = format!(
        "    tls:\n      ca_file: {ca}\n      cert_file: {}\n      key_file: {}\n",
        pki.client.cert.display(),
        pki.client.key.display()
    );
    // gRPC to a bare host:port (TLS, as the Collector), and OTLP/HTTP to https://.
    let sc = free_port();
    let grpc_sidecar = sidecar(
        sc,
        "otlp/gateway",
        &format!("    endpoint: 127.0.0.1:{gw_grpc}\n{client_tls}"),
    );
    let mut sent = send(sc, 10, &grpc_sidecar.path("expected.json"));
    let sc_http = free_port();
    let http_sidecar = sidecar(
        sc_http,
        "otlphttp/gateway",
        &format!("    endpoint: https://localhost:{gw_http}\n{client_tls}"),
    );
    sent.extend(send(sc_http, 10, &http_sidecar.path("expected.json")));
    assert_eq!(sent.len(), 60);
    assert_all_arrive(&sent, &gateway, &grpc_sidecar);
}

#[test]
fn otlp_exporter_sends_every_span_over_mutual_tls() {
    let pki = Pki::new();
    let (gw_grpc, gw_http) = (free_port(), free_port());
    let gateway = gateway(gw_grpc, gw_http);
    let (front, handshakes, _rt) = tls_front(gw_grpc, mutual_tls_server(&pki, b"h2"));
    // A bare host:port: TLS, as the Collector.
    let sc = free_port();
    let sidecar = sidecar(
        sc,
        "otlp/gateway",
        &format!(
            "    endpoint: 127.0.0.1:{front}\n{}",
            tls_block(&pki.ca, &pki.client)
        ),
    );
    let sent = send(sc, 10, &sidecar.path("expected.json"));
    assert_eq!(sent.len(), 30);
    assert_all_arrive(&sent, &gateway, &sidecar);
    assert!(handshakes.ok.load(Ordering::SeqCst) >= 1);
    assert_eq!(handshakes.failed.load(Ordering::SeqCst), 0);
}

#[test]
fn otlphttp_exporter_sends_every_span_over_https_with_a_client_certificate() {
    let pki = Pki::new();
    let (gw_grpc, gw_http) = (free_port(), free_port());
    let gateway = gateway(gw_grpc, gw_http);
    let (front, handshakes, _rt) = tls_front(gw_http, mutual_tls_server(&pki, b"http/1.1"));
    let sc = free_port();
    let sidecar = sidecar(
        sc,
        "otlphttp",
        &format!(
            "    endpoint: https://localhost:{front}\n{}",
            tls_block(&pki.ca, &pki.client)
        ),
    );
    let sent = send(sc, 10, &sidecar.path("expected.json"));
    assert_all_arrive(&sent, &gateway, &sidecar);
    assert!(handshakes.ok.load(Ordering::SeqCst) >= 1);
}

#[test]
fn a_server_from_another_ca_is_refused_and_the_log_says_which_option_to_fix() {
    let pki = Pki::new();
    let (gw_grpc, gw_http) = (free_port(), free_port());
    let gateway = gateway(gw_grpc, gw_http);
    let (front, handshakes, _rt) = tls_front(gw_grpc, mutual_tls_server(&pki, b"h2"));
    let sc = free_port();
    // Trusts another CA than the one that signed the gateway's certificate.
    let sidecar = sidecar(
        sc,
        "otlp/gateway",
        &format!(
            "    endpoint: https://127.0.0.1:{front}\n{}",
            tls_block(&pki.other_ca, &pki.client)
        ),
    );
    send(sc, 2, &sidecar.path("expected.json"));
    assert!(
        sidecar.wait_for_log_line(
            &[
                "certificate is not trusted",
                "exporters.otlp/gateway.tls.ca_file"
            ],
            Duration::from_secs(20)
        ),
        "{}",
        sidecar.log()
    );
    assert_eq!(handshakes.ok.load(Ordering::SeqCst), 0);
    assert!(received(&gateway).is_empty());
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let (gw_grpc, gw_http) = (free_port(), free_port());
    let gateway = gateway(gw_grpc, gw_http);
    let (front, handshakes, _rt) = tls_front(gw_grpc, mutual_tls_server(&pki, b"h2"));
    let sc = free_port();
    let sidecar = sidecar(
        sc,
        "otlp/gateway",
        &format!(
            "    endpoint: 127.0.0.1:{front}\n{}",
            tls_block(&pki.ca, &pki.other_client)
        ),
    );
    send(sc, 2, &sidecar.path("expected.json"));
    assert!(
        wait_until(Duration::from_secs(20), || handshakes
            .failed
            .load(Ordering::SeqCst)
            >= 1),
        "{}",
        sidecar.log()
    );
    assert_eq!(handshakes.ok.load(Ordering::SeqCst), 0);
    assert!(received(&gateway).is_empty());
}

#[test]
fn tls_to_a_plaintext_gateway_says_to_set_insecure() {
    let pki = Pki::new();
    let (gw_grpc, gw_http) = (free_port(), free_port());
    let gateway = gateway(gw_grpc, gw_http);
    let sc = free_port();
    // The gateway listens in plaintext; the sidecar's bare endpoint means TLS.
    let sidecar = sidecar(
        sc,
        "otlp/gateway",
        &format!(
            "    endpoint: 127.0.0.1:{gw_grpc}\n{}",
            tls_block(&pki.ca, &pki.client)
        ),
    );
    send(sc, 2, &sidecar.path("expected.json"));
    assert!(
        sidecar.wait_for_log_line(
            &["exporters.otlp/gateway.tls.insecure: true"],
            Duration::from_secs(20)
        ),
        "{}",
        sidecar.log()
    );
    assert!(received(&gateway).is_empty());
}
