//! The OTLP receiver over TLS, with real clients: the Python OpenTelemetry SDK over gRPC with
//! a client certificate (mutual TLS) and over HTTPS delivers every span; plaintext clients, a
//! missing, expired or foreign client certificate and TLS 1.1 are refused (and counted); a
//! certificate rotated on disk while spans flow is served to new connections, and nothing is
//! lost. Certificates are made per test by `wasmcol_tests::tls`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value as Json;
use wasmcol_tests::sdk::output_json;
use wasmcol_tests::tls::{Pair, Pki, SERVER_CN, SERVER_SERIAL, SERVER2_CN, SERVER2_SERIAL};
use wasmcol_tests::{
    Collector, free_port, metric_value, python, read_json_lines, scrape_metrics, wait_until,
    workspace_root,
};

struct Ports {
    grpc: u16,
    http: u16,
    metrics: u16,
    health: u16,
}

impl Ports {
    fn new() -> Self {
        Self {
            grpc: free_port(),
            http: free_port(),
            metrics: free_port(),
            health: free_port(),
        }
    }
}

/// gRPC with mutual TLS (`client_ca_file`), HTTP and the health check with server TLS only;
/// all serve `cert`.
fn config(pki: &Pki, cert: &Path, key: &Path, ports: &Ports, reload: &str) -> String {
    let (cert, key, ca) = (cert.display(), key.display(), pki.ca.display());
    let (grpc, http, metrics, health) = (ports.grpc, ports.http, ports.metrics, ports.health);
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        tls:
          cert_file: {cert}
          key_file: {key}
          client_ca_file: {ca}
          min_version: "1.2"
          reload_interval: {reload}
      http:
        endpoint: 127.0.0.1:{http}
        tls:
          cert_file: {cert}
          key_file: {key}
          reload_interval: {reload}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
    tls: {{ cert_file: {cert}, key_file: {key} }}
processors:
  batch:
    timeout: 50ms
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

fn script(name: &str) -> std::path::PathBuf {
    workspace_root().join("tests/python").join(name)
}

/// Runs `send_tls.py`; its output and the spans it says were acknowledged.
fn send(protocol: &str, port: u16, client: Option<&Pair>, pki: &Pki, extra: &[&str]) -> Sent {
    let dir = tempfile::tempdir().unwrap();
    let expected = dir.path().join("expected.json");
    let mut c = sender(protocol, port, client, pki, extra, &expected);
    let output = c.output().expect("run send_tls.py");
    Sent::read(output, &expected)
}

fn sender(
    protocol: &str,
    port: u16,
    client: Option<&Pair>,
    pki: &Pki,
    extra: &[&str],
    expected: &Path,
) -> Command {
    let mut c = Command::new(python());
    c.arg(script("send_tls.py"))
        .args(["--protocol", protocol, "--endpoint"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--ca")
        .arg(&pki.ca)
        .arg("--expected")
        .arg(expected)
        .args(extra)
        // requests (under the SDK's HTTP exporter) lets these override the CA it is given.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(client) = client {
        c.arg("--cert")
            .arg(&client.cert)
            .arg("--key")
            .arg(&client.key);
    }
    c
}

struct Sent {
    ok: bool,
    stderr: String,
    spans: Vec<Json>,
}

impl Sent {
    fn read(output: Output, expected: &Path) -> Self {
        let spans = std::fs::read_to_string(expected)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Self {
            ok: output.status.success(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            spans,
        }
    }
}

/// Runs `tls_probe.py` with `args` against `port`.
fn probe(port: u16, args: &[&str]) -> Json {
    let out = Command::new(python())
        .arg(script("tls_probe.py"))
        .arg("--endpoint")
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .output()
        .expect("run tls_probe.py");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tls_probe.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn paths<'a>(pki: &'a Pki, pair: &'a Pair) -> [&'a str; 6] {
    [
        "--ca",
        pki.ca.to_str().unwrap(),
        "--cert",
        pair.cert.to_str().unwrap(),
        "--key",
        pair.key.to_str().unwrap(),
    ]
}

fn handshake_failures(ports: &Ports, transport: &str) -> f64 {
    let text = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(scrape_metrics(ports.metrics));
    metric_value(
        &text,
        &format!(
            "wasmcol_receiver_tls_handshake_failures_total{{receiver=\"otlp\",transport=\"{transport}\"}}"
        ),
    )
    .unwrap_or(0.0)
}

/// Waits until the collector wrote at least `want` spans; then the span ids it wrote.
fn written(collector: &Collector, want: usize) -> Vec<Json> {
    let out = collector.path("out.jsonl");
    let arrived = wait_until(Duration::from_secs(15), || {
        out.exists() && output_json(&read_json_lines(&out)).len() >= want
    });
    assert!(arrived, "spans did not arrive:\n{}", collector.log());
    output_json(&read_json_lines(&out)).into_values().collect()
}

/// The spans sent and the spans written are the same, field by field.
fn assert_same(sent: &[Json], collector: &Collector) {
    let got = output_json(&read_json_lines(&collector.path("out.jsonl")));
    assert_eq!(got.len(), sent.len(), "exactly the spans sent");
    for want in sent {
        let id = want["span_id"].as_str().unwrap();
        let have = got
            .get(id)
            .unwrap_or_else(|| panic!("span {id} missing from the output"));
        // send_tls.py's resource carries only service.name and the SDK's own attributes.
        assert_eq!(have, want, "span {id} differs");
    }
}

fn delivered(protocol: &str) {
    let pki = Pki::new();
    let ports = Ports::new();
    let collector = Collector::start(
        &config(&pki, &pki.server.cert, &pki.server.key, &ports, "30s"),
        ports.grpc,
    );
    let port = if protocol == "grpc" {
        ports.grpc
    } else {
        ports.http
    };
    // gRPC requires a client certificate; HTTPS does not ask for one.
    let client = (protocol == "grpc").then_some(&pki.client);
    let sent = send(protocol, port, client, &pki, &["--traces", "4"]);
    assert!(sent.ok, "{}\n{}", sent.stderr, collector.log());
    assert_eq!(sent.spans.len(), 12, "the script makes 3 spans per trace");
    written(&collector, sent.spans.len());
    assert_same(&sent.spans, &collector);
    // The readiness check's bare connect (closed before any TLS) is not a failed handshake.
    assert_eq!(handshake_failures(&ports, protocol), 0.0);
    // The health check speaks HTTPS with the same certificate.
    let health = probe(
        ports.health,
        &["--ca", pki.ca.to_str().unwrap(), "--alpn", "http/1.1"],
    );
    assert_eq!(health["ok"], true, "{health}");
    assert_eq!(health["serial"], SERVER_SERIAL, "{health}");
}

#[test]
fn python_sdk_over_grpc_with_a_client_certificate() {
    delivered("grpc");
}

#[test]
fn python_sdk_over_https() {
    delivered("http");
}

#[test]
fn refused_clients_are_refused_and_counted() {
    let pki = Pki::new();
    let ports = Ports::new();
    let collector = Collector::start(
        &config(&pki, &pki.server.cert, &pki.server.key, &ports, "30s"),
        ports.grpc,
    );
    let grpc_failures = || handshake_failures(&ports, "grpc");
    let http_failures = || handshake_failures(&ports, "http");

    // The control: a good client certificate is accepted, over TLS 1.3 and ALPN h2.
    let good = probe(ports.grpc, &paths(&pki, &pki.client));
    assert_eq!(good["ok"], true, "{good}");
    assert_eq!(good["version"], "TLSv1.3", "{good}");
    assert_eq!(good["alpn"], "h2", "{good}");
    assert_eq!(grpc_failures(), 0.0);

    // Each refusal fails the connection and counts one failed handshake.
    let refusals: [(&str, Vec<&str>); 3] = [
        (
            "no client certificate",
            vec!["--ca", pki.ca.to_str().unwrap()],
        ),
        (
            "an expired client certificate",
            paths(&pki, &pki.expired_client).to_vec(),
        ),
        (
            "a client certificate from another CA",
            paths(&pki, &pki.other_client).to_vec(),
        ),
    ];
    for (n, (what, args)) in refusals.iter().enumerate() {
        let r = probe(ports.grpc, args);
        assert_eq!(r["ok"], false, "{what} was accepted: {r}");
        let counted = wait_until(Duration::from_secs(5), || grpc_failures() == (n + 1) as f64);
        assert!(counted, "{what}: failures {}", grpc_failures());
    }
    assert!(
        collector.wait_for_log_line(
            &["TLS handshake failed", "receivers.otlp grpc", "xpired"],
            Duration::from_secs(5)
        ),
        "the expired certificate is logged as the reason:\n{}",
        collector.log()
    );

    // TLS 1.1 is refused by the server (its alert, not a local refusal of the client), while
    // TLS 1.2 to the same listener is accepted.
    let old = probe(
        ports.grpc,
        &[
            &paths(&pki, &pki.client)[..],
            &["--min-version", "1.1", "--max-version", "1.1"],
        ]
        .concat(),
    );
    assert_eq!(old["ok"], false, "{old}");
    let error = old["error"].as_str().unwrap();
    assert!(
        error.contains("ALERT"),
        "TLS 1.1 should be refused by the server's alert, not by the client itself: {old}"
    );
    assert!(wait_until(Duration::from_secs(5), || grpc_failures() == 4.0));
    let tls12 = probe(
        ports.grpc,
        &[
            &paths(&pki, &pki.client)[..],
            &["--min-version", "1.2", "--max-version", "1.2"],
        ]
        .concat(),
    );
    assert_eq!(tls12["ok"], true, "{tls12}");
    assert_eq!(tls12["version"], "TLSv1.2", "{tls12}");

    // Plaintext to the TLS listeners: no HTTP answer, a failed handshake counted.
    let plain = probe(ports.http, &["--plaintext"]);
    assert_eq!(
        plain["ok"], false,
        "a plaintext request was answered: {plain}"
    );
    assert!(wait_until(Duration::from_secs(5), || http_failures() == 1.0));

    // The SDK, as a user would run it: plaintext and without a client certificate, nothing
    // is acknowledged and nothing reaches the pipeline.
    let plaintext = send(
        "grpc",
        ports.grpc,
        Some(&pki.client),
        &pki,
        &["--plaintext", "--timeout", "3"],
    );
    assert!(!plaintext.ok, "plaintext gRPC was acknowledged");
    let no_cert = send("grpc", ports.grpc, None, &pki, &["--timeout", "3"]);
    assert!(
        !no_cert.ok,
        "gRPC without a client certificate was acknowledged"
    );
    let plain_http = send(
        "http",
        ports.http,
        None,
        &pki,
        &["--plaintext", "--timeout", "3"],
    );
    assert!(!plain_http.ok, "plaintext HTTP was acknowledged");
    assert!(grpc_failures() > 5.0 && http_failures() > 1.0);

    // A good client still gets through afterwards, and only its spans were written.
    let sent = send("grpc", ports.grpc, Some(&pki.client), &pki, &[]);
    assert!(sent.ok, "{}", sent.stderr);
    written(&collector, sent.spans.len());
    std::thread::sleep(Duration::from_millis(300));
    assert_same(&sent.spans, &collector);
}

/// Points `dir/current` at a new `dir/..data_N` holding `pair` as `tls.crt` / `tls.key`, the
/// way Kubernetes updates a mounted secret: both files change in one rename.
fn install(dir: &Path, n: u32, pair: &Pair) {
    let data = dir.join(format!("..data_{n}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(&pair.cert, data.join("tls.crt")).unwrap();
    std::fs::copy(&pair.key, data.join("tls.key")).unwrap();
    let tmp = dir.join("current.tmp");
    std::os::unix::fs::symlink(&data, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("current")).unwrap();
}

#[test]
fn certificates_rotated_on_disk_are_served_without_losing_spans() {
    let pki = Pki::new();
    let ports = Ports::new();
    let secret = pki.dir.join("secret");
    std::fs::create_dir(&secret).unwrap();
    install(&secret, 1, &pki.server);
    let collector = Collector::start(
        &config(
            &pki,
            &secret.join("current/tls.crt"),
            &secret.join("current/tls.key"),
            &ports,
            "200ms",
        ),
        ports.grpc,
    );
    let client = paths(&pki, &pki.client);
    let served = |port: u16, alpn: &str| {
        let r = probe(port, &[&client[..], &["--alpn", alpn]].concat());
        assert_eq!(r["ok"], true, "{r}");
        (
            r["serial"].as_u64().unwrap(),
            r["subject_cn"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(served(ports.grpc, "h2"), (SERVER_SERIAL, SERVER_CN.into()));
    assert_eq!(
        served(ports.http, "http/1.1"),
        (SERVER_SERIAL, SERVER_CN.into())
    );

    // Spans flow over long-lived connections on both listeners while the certificate changes.
    let dir = tempfile::tempdir().unwrap();
    let flowing = |protocol: &str, port: u16, file: &str| {
        sender(
            protocol,
            port,
            Some(&pki.client),
            &pki,
            &["--traces", "2", "--batches", "25", "--pause", "0.1"],
            &dir.path().join(file),
        )
        .spawn()
        .expect("start send_tls.py")
    };
    let grpc_during = flowing("grpc", ports.grpc, "grpc.json");
    let http_during = flowing("http", ports.http, "http.json");
    std::thread::sleep(Duration::from_millis(700));
    install(&secret, 2, &pki.server2);

    // New connections get the new certificate (within a few reload intervals).
    for (port, alpn) in [(ports.grpc, "h2"), (ports.http, "http/1.1")] {
        let rotated = wait_until(Duration::from_secs(5), || {
            served(port, alpn) == (SERVER2_SERIAL, SERVER2_CN.into())
        });
        assert!(rotated, "port {port} still serves {:?}", served(port, alpn));
    }
    let mut sent = Vec::new();
    for (child, file) in [(grpc_during, "grpc.json"), (http_during, "http.json")] {
        let s = Sent::read(child.wait_with_output().unwrap(), &dir.path().join(file));
        assert!(
            s.ok,
            "a round during the rotation was not acknowledged: {}",
            s.stderr
        );
        assert_eq!(s.spans.len(), 25 * 2 * 3);
        sent.extend(s.spans);
    }
    // And after it, new clients (new connections, verifying the new certificate).
    for (protocol, port) in [("grpc", ports.grpc), ("http", ports.http)] {
        let s = send(protocol, port, Some(&pki.client), &pki, &[]);
        assert!(s.ok, "{}", s.stderr);
        sent.extend(s.spans);
    }
    let got = written(&collector, sent.len());
    let ids = |spans: &[Json]| -> BTreeSet<String> {
        spans
            .iter()
            .map(|s| s["span_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&got), ids(&sent), "every span sent, and only those");
    assert!(collector.log().contains("TLS certificates changed on disk"));
    assert_eq!(handshake_failures(&ports, "grpc"), 0.0);
    assert_eq!(handshake_failures(&ports, "http"), 0.0);
}
