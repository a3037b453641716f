//! Authenticator extensions end to end: the unmodified Python OTel SDK sends with a bearer
//! token (over HTTP and gRPC) and every span arrives, with the authenticated subject in the
//! batch's metadata; a wrong or missing token gets HTTP 401 / gRPC UNAUTHENTICATED and is
//! counted; one wasmcol's `otlp` exporter authenticates to another wasmcol's receiver; `oidc`
//! passes a JWT signed by its key and refuses expired ones, another audience and another key.

use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use serde_json::Value as Json;
use wasmcol_tests::sdk::output_json;
use wasmcol_tests::{
    Collector, all_spans, free_port, http_request, metric_value, python, read_json_lines,
    scrape_metrics, spans_request, wait_until, workspace_root,
};

const TOKEN: &str = "s3cret-token-4f9a";
const ROTATED: &str = "next-token-77c1";

/// A collector whose OTLP receiver requires `bearertokenauth/in` on both protocols, batching
/// by `auth.subject` into the file exporter and the detailed debug exporter (stderr).
fn gateway_config(grpc: u16, http: u16, metrics: u16) -> String {
    format!(
        r#"
extensions:
  bearertokenauth/in:
    tokens: ["{TOKEN}", "{ROTATED}"]
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        include_metadata: true
        auth: {{ authenticator: bearertokenauth/in }}
      http:
        endpoint: 127.0.0.1:{http}
        include_metadata: true
        auth: {{ authenticator: bearertokenauth/in }}
processors:
  batch:
    timeout: 50ms
    metadata_keys: [auth.subject]
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
  debug:
    verbosity: detailed
service:
  extensions: [bearertokenauth/in]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file, debug]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

/// Runs the Python SDK sender against `endpoint` with `headers` (as
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`); returns the spans it made.
fn send_with_sdk(c: &Collector, protocol: &str, endpoint: &str, headers: &str) -> Vec<Json> {
    let expected_path = c.path(&format!("expected-{protocol}.json"));
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_traces.py"))
        .args(["--protocol", protocol, "--endpoint", endpoint])
        .args(["--traces", "4", "--expected"])
        .arg(&expected_path)
        .env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", headers)
        .status()
        .expect("run python");
    assert!(status.success(), "the Python sender failed:\n{}", c.log());
    serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap()
}

/// Waits until `c`'s file output holds `n` spans, then checks it holds exactly `expected`.
fn assert_delivered(c: &Collector, expected: &[Json]) {
    let out = c.path("out.jsonl");
    let arrived = wait_until(Duration::from_secs(15), || {
        out.exists() && all_spans(&read_json_lines(&out)).len() >= expected.len()
    });
    assert!(arrived, "spans did not arrive:\n{}", c.log());
    let got = output_json(&read_json_lines(&out));
    assert_eq!(got.len(), expected.len(), "exactly the spans sent");
    for want in expected {
        let id = want["span_id"].as_str().unwrap();
        let have = got.get(id).unwrap_or_else(|| panic!("span {id} missing"));
        assert_eq!(have, want, "span {id} differs");
    }
}

#[test]
fn sdk_with_the_token_delivers_every_span_and_its_subject() {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let mut c = Collector::start(&gateway_config(grpc, http, metrics), http);
    // The client also tries to claim a subject of its own: it must not stick.
    let headers = format!("authorization=Bearer%20{TOKEN},auth.subject=mallory");
    let mut expected = send_with_sdk(&c, "http", &format!("127.0.0.1:{http}"), &headers);
    assert_eq!(expected.len(), 12, "the script makes 3 spans per trace");
    // gRPC too, with the second valid token.
    let headers = format!("authorization=Bearer%20{ROTATED}");
    expected.extend(send_with_sdk(
        &c,
        "grpc",
        &format!("127.0.0.1:{grpc}"),
        &headers,
    ));
    assert_delivered(&c, &expected);
    assert!(
        c.wait_for_log_line(
            &["Authenticated subject: bearertokenauth/in"],
            Duration::from_secs(5)
        ),
        "the subject did not reach the batch:\n{}",
        c.log()
    );
    assert_eq!(c.stop(), 0, "clean exit:\n{}", c.log());
    let log = c.log();
    assert!(
        !log.contains("mallory"),
        "a client-sent auth.subject was kept:\n{log}"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains(ROTATED),
        "a token was logged:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_or_missing_tokens_are_refused_and_counted() {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let c = Collector::start(&gateway_config(grpc, http, metrics), http);
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    let body = spans_request(1, 1, 5, 0).encode_to_vec();
    let proto = ("content-type", "application/x-protobuf");

    let wrong = http_request(
        "POST",
        &url,
        &[proto, ("authorization", "Bearer not-the-token")],
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        wrong.status,
        401,
        "{:?}",
        String::from_utf8_lossy(&wrong.body)
    );
    assert_eq!(
        wrong
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer realm=\"wasmcol\"")
    );
    let none = http_request("POST", &url, &[proto], body.clone())
        .await
        .unwrap();
    assert_eq!(none.status, 401);
    let spoof = http_request(
        "POST",
        &url,
        &[proto, ("auth.subject", "bearertokenauth/in")],
        body,
    )
    .await
    .unwrap();
    assert_eq!(spoof.status, 401, "a client-set subject is no credential");

    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect");
    let mut request = tonic::Request::new(spans_request(2, 1, 5, 0));
    request
        .metadata_mut()
        .insert("authorization", "Bearer not-the-token".parse().unwrap());
    let status = client.export(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    let text = scrape_metrics(metrics).await;
    let failures = |transport: &str, reason: &str| {
        metric_value(
            &text,
            &format!(
                "wasmcol_receiver_auth_failures_total{{receiver=\"otlp\",transport=\"{transport}\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(failures("http", "invalid"), Some(1.0), "{text}");
    assert_eq!(failures("http", "missing"), Some(2.0), "{text}");
    assert_eq!(failures("grpc", "invalid"), Some(1.0), "{text}");
    assert!(!text.contains("not-the-token"));
    assert_eq!(
        metric_value(
            &text,
            "wasmcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"http\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "refused spans were accepted"
    );
    assert!(!c.log().contains("not-the-token"), "a token was logged");
}

#[test]
fn an_exporter_authenticates_to_another_collector() {
    let (g_grpc, g_http, g_metrics) = (free_port(), free_port(), free_port());
    let gateway = Collector::start(&gateway_config(g_grpc, g_http, g_metrics), g_grpc);
    let (a_http, a_metrics) = (free_port(), free_port());
    let agent_config = format!(
        r#"
extensions:
  bearertokenauth/out:
    token: "{TOKEN}"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{a_http}
exporters:
  otlp:
    endpoint: 127.0.0.1:{g_grpc}
    tls: {{ insecure: true }}
    auth: {{ authenticator: bearertokenauth/out }}
    retry_on_failure: {{ enabled: false }}
service:
  extensions: [bearertokenauth/out]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
  telemetry:
    metrics:
      address: 127.0.0.1:{a_metrics}
"#
    );
    let mut agent = Collector::start(&agent_config, a_http);
    let expected = send_with_sdk(&agent, "http", &format!("127.0.0.1:{a_http}"), "");
    assert_delivered(&gateway, &expected);
    assert_eq!(agent.stop(), 0, "clean exit:\n{}", agent.log());
}

#[test]
fn an_otlphttp_exporter_with_basicauth_reaches_a_receiver_requiring_it() {
    let hash = bcrypt::hash("agent-password", 4).unwrap();
    let (g_http, g_metrics) = (free_port(), free_port());
    let gateway_config = format!(
        r#"
extensions:
  basicauth/in:
    htpasswd:
      inline: |
        agent-7:{hash}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{g_http}
        auth: {{ authenticator: basicauth/in }}
processors:
  batch:
    timeout: 50ms
    metadata_keys: [auth.subject]
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
  debug:
    verbosity: detailed
service:
  extensions: [basicauth/in]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file, debug]
  telemetry:
    metrics:
      address: 127.0.0.1:{g_metrics}
"#
    );
    let gateway = Collector::start(&gateway_config, g_http);
    let agent = |password: &str| {
        let (a_http, a_metrics) = (free_port(), free_port());
        let config = format!(
            r#"
extensions:
  basicauth/out:
    client_auth: {{ username: agent-7, password: "{password}" }}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{a_http}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{g_http}
    auth: {{ authenticator: basicauth/out }}
    retry_on_failure: {{ enabled: false }}
service:
  extensions: [basicauth/out]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlphttp]
  telemetry:
    metrics:
      address: 127.0.0.1:{a_metrics}
"#
        );
        (Collector::start(&config, a_http), a_http, a_metrics)
    };

    // A wrong password: the gateway refuses (401, permanent for the exporter), nothing lands.
    let (mut wrong, a_http, a_metrics) = agent("not-the-password");
    send_with_sdk(&wrong, "http", &format!("127.0.0.1:{a_http}"), "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let failed = wait_until(Duration::from_secs(10), || {
        let text = rt.block_on(scrape_metrics(a_metrics));
        metric_value(
            &text,
            "wasmcol_exporter_send_failed_spans_total{exporter=\"otlphttp\"}",
        )
        .is_some_and(|v| v >= 12.0)
    });
    assert!(
        failed,
        "the refused export was not counted:\n{}",
        wrong.log()
    );
    assert!(wrong.log().contains("401"), "{}", wrong.log());
    assert_eq!(wrong.stop(), 0);
    let text = rt.block_on(scrape_metrics(g_metrics));
    assert!(
        metric_value(
            &text,
            "wasmcol_receiver_auth_failures_total{receiver=\"otlp\",transport=\"http\",reason=\"invalid\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );

    let (mut right, a_http, _) = agent("agent-password");
    let expected = send_with_sdk(&right, "http", &format!("127.0.0.1:{a_http}"), "");
    assert_delivered(&gateway, &expected);
    assert!(
        gateway.wait_for_log_line(&["Authenticated subject: agent-7"], Duration::from_secs(5)),
        "the user name did not reach the batch:\n{}",
        gateway.log()
    );
    assert_eq!(right.stop(), 0, "clean exit:\n{}", right.log());
    assert!(!gateway.log().contains("agent-password") && !right.log().contains("agent-password"));
}

#[test]
fn an_authenticator_reference_must_name_an_enabled_extension_of_the_right_side() {
    let check = |yaml: &str| -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(wasmcol_tests::binary("wasmcol"))
            .arg("validate")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "accepted:\n{yaml}");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let config = |extensions: &str, enabled: &str, authenticator: &str| {
        format!(
            r#"
extensions:
{extensions}
receivers:
  otlp:
    protocols:
      http: {{ endpoint: 127.0.0.1:4318, auth: {{ authenticator: {authenticator} }} }}
exporters:
  nop:
service:
  extensions: [{enabled}]
  pipelines:
    traces: {{ receivers: [otlp], exporters: [nop] }}
"#
        )
    };
    let bearer = "  bearertokenauth: { token: x }";
    let client_only = "  basicauth/out: { client_auth: { username: u, password: p } }";
    let e = check(&config(bearer, "bearertokenauth", "oidc"));
    assert!(
        e.contains(
            "receivers.otlp.protocols.http.auth.authenticator: extension \"oidc\" is not defined"
        ),
        "{e}"
    );
    let e = check(&config(bearer, "", "bearertokenauth"));
    assert!(
        e.contains("extension \"bearertokenauth\" is not enabled"),
        "{e}"
    );
    let e = check(&config(client_only, "basicauth/out", "basicauth/out"));
    assert!(
        e.contains("\"basicauth/out\" is not a server (receiver) authenticator"),
        "{e}"
    );
}

#[test]
fn a_receiver_taking_credentials_in_plaintext_off_loopback_is_warned_about() {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    // On loopback: no warning.
    let mut c = Collector::start(&gateway_config(grpc, http, metrics), http);
    assert_eq!(c.stop(), 0);
    assert!(
        !c.log().contains("travel in plaintext"),
        "warned on loopback:\n{}",
        c.log()
    );
    // On every address, without TLS: one warning per protocol, naming the option.
    let open = gateway_config(grpc, http, metrics).replace("127.0.0.1:", "0.0.0.0:");
    let mut c = Collector::start(&open, http);
    assert_eq!(c.stop(), 0);
    let log = c.log();
    for option in ["protocols.grpc.auth", "protocols.http.auth"] {
        assert!(
            log.lines()
                .any(|l| l.contains("travel in plaintext") && l.contains(option)),
            "no warning for {option}:\n{log}"
        );
    }
}

/// A collector whose HTTP receiver requires `oidc` with `public_key_file`.
fn oidc_config(http: u16, metrics: u16, key: &std::path::Path) -> String {
    format!(
        r#"
extensions:
  oidc:
    issuer_url: https://issuer.example.com
    audience: wasmcol
    public_key_file: {key}
    username_claim: email
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
        auth: {{ authenticator: oidc }}
processors:
  batch:
    timeout: 50ms
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  extensions: [oidc]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        key = key.display()
    )
}

#[test]
fn oidc_passes_a_jwt_signed_by_the_key_and_refuses_expired_foreign_audience_and_key() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

    let dir = tempfile::tempdir().unwrap();
    let signer = rcgen::KeyPair::generate().unwrap();
    let stranger = rcgen::KeyPair::generate().unwrap();
    let public = dir.path().join("issuer.pem");
    std::fs::write(&public, signer.public_key_pem()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let jwt = |key: &rcgen::KeyPair, aud: &str, exp: i64| {
        let claims = serde_json::json!({
            "iss": "https://issuer.example.com", "aud": aud, "sub": "u-1",
            "email": "agent@example.com", "iat": now, "exp": exp,
        });
        let key = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
        encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
    };

    let (http, metrics) = (free_port(), free_port());
    let mut c = Collector::start(&oidc_config(http, metrics, &public), http);
    // The Python SDK with a valid token: every span arrives.
    let good = jwt(&signer, "wasmcol", now + 600);
    let headers = format!("authorization=Bearer%20{good}");
    let expected = send_with_sdk(&c, "http", &format!("127.0.0.1:{http}"), &headers);
    assert_delivered(&c, &expected);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    let post = |token: &str| {
        let auth = format!("Bearer {token}");
        rt.block_on(http_request(
            "POST",
            &url,
            &[
                ("content-type", "application/x-protobuf"),
                ("authorization", &auth),
            ],
            spans_request(1, 1, 1, 0).encode_to_vec(),
        ))
        .unwrap()
        .status
    };
    assert_eq!(post(&good), 200);
    for (what, token, reason) in [
        ("expired", jwt(&signer, "wasmcol", now - 600), "expired"),
        (
            "wrong audience",
            jwt(&signer, "other", now + 600),
            "invalid",
        ),
        ("wrong key", jwt(&stranger, "wasmcol", now + 600), "invalid"),
    ] {
        assert_eq!(post(&token), 401, "{what} was not refused");
        let text = rt.block_on(scrape_metrics(metrics));
        let series = format!(
            "wasmcol_receiver_auth_failures_total{{receiver=\"otlp\",transport=\"http\",reason=\"{reason}\"}}"
        );
        assert!(
            metric_value(&text, &series).unwrap_or(0.0) >= 1.0,
            "{what}: {series} not counted:\n{text}"
        );
    }
    assert_eq!(c.stop(), 0);
    assert!(!c.log().contains(&good), "the token was logged");
}
