//! README "Securing wasmcol", run as written: its openssl commands make a CA, the gateway's
//! and a sidecar's certificates and a token; then `configs/sidecar.yaml` and
//! `configs/gateway.yaml`, unchanged but for the addresses and paths their environment
//! variables set, carry every span an OTel SDK sends the sidecar to the gateway over mutual
//! TLS with the token. The Python SDK talking to the gateway itself, over gRPC and HTTPS with
//! the sidecar's certificate and the token, delivers every span; without the token, or with
//! no client certificate, it is refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wasmcol::exporters::file::{Compression, Format, read_length_prefixed};
use wasmcol_tests::{Collector, free_port, python, span_ids, wait_until, workspace_root};

/// The first ```sh block of the README's "Securing wasmcol" section.
fn readme_commands() -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = readme
        .split_once("### Securing wasmcol")
        .expect("README has a \"Securing wasmcol\" section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the section has a ```sh block")
        .1;
    block.split_once("```").unwrap().0.to_string()
}

/// Runs the README's commands in `dir`; the directory they made (`tls`).
fn make_certificates(dir: &Path) -> PathBuf {
    let out = Command::new("bash")
        .args(["-eu", "-c", &readme_commands()])
        .current_dir(dir)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the README's commands failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tls = dir.join("tls");
    for f in [
        "ca.crt",
        "gateway.crt",
        "gateway.key",
        "sidecar.crt",
        "sidecar.key",
        "token",
    ] {
        assert!(tls.join(f).exists(), "the README's commands made no {f}");
    }
    tls
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("configs").join(name)).unwrap()
}

fn path(p: PathBuf) -> String {
    p.display().to_string()
}

/// Span ids the gateway has written so far; `None` while the file is absent or ends in a
/// record still being written.
fn gateway_span_ids(out: &Path) -> Option<Vec<u64>> {
    let bytes = std::fs::read(out).ok()?;
    let records = read_length_prefixed(&bytes, Format::Proto, Compression::Zstd).ok()?;
    let mut ids: Vec<u64> = records
        .iter()
        .flat_map(|r| span_ids(&r.resource_spans))
        .collect();
    ids.sort_unstable();
    Some(ids)
}

/// Runs `send_tls.py` (the Python SDK) against `endpoint`; whether every round was
/// acknowledged, the span ids it sent, and its stderr.
fn send(
    protocol: &str,
    endpoint: &str,
    tls: &Path,
    args: &[&str],
    expected: &Path,
) -> (bool, BTreeSet<u64>, String) {
    let out = Command::new(python())
        .arg(workspace_root().join("tests/python/send_tls.py"))
        .args(["--protocol", protocol, "--endpoint", endpoint])
        .arg("--ca")
        .arg(tls.join("ca.crt"))
        .arg("--expected")
        .arg(expected)
        .args(args)
        // requests (under the SDK's HTTP exporter) lets these override the CA it is given.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run send_tls.py");
    let spans: Vec<serde_json::Value> = std::fs::read_to_string(expected)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let ids = spans
        .iter()
        .map(|s| u64::from_str_radix(s["span_id"].as_str().unwrap(), 16).unwrap())
        .collect();
    (
        out.status.success(),
        ids,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sidecar_to_gateway_over_mutual_tls_with_a_token_as_the_readme_says() {
    let work = tempfile::tempdir().unwrap();
    let tls = make_certificates(work.path());
    let token = std::fs::read_to_string(tls.join("token")).unwrap();
    let token = token.trim();

    let (gw_grpc, gw_http) = (free_port(), free_port());
    let gw_health = free_port();
    let gateway_env = [
        ("WASMCOL_GRPC_ENDPOINT", format!("127.0.0.1:{gw_grpc}")),
        ("WASMCOL_HTTP_ENDPOINT", format!("127.0.0.1:{gw_http}")),
        ("WASMCOL_HEALTH_ENDPOINT", format!("127.0.0.1:{gw_health}")),
        (
            "WASMCOL_METRICS_ADDRESS",
            format!("127.0.0.1:{}", free_port()),
        ),
        (
            "WASMCOL_OUTPUT",
            path(work.path().join("gateway/traces.pb")),
        ),
        ("WASMCOL_TLS_CERT", path(tls.join("gateway.crt"))),
        ("WASMCOL_TLS_KEY", path(tls.join("gateway.key"))),
        ("WASMCOL_TLS_CA", path(tls.join("ca.crt"))),
        ("WASMCOL_TOKEN_FILE", path(tls.join("token"))),
    ];
    let env: Vec<(&str, &str)> = gateway_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut gateway = Collector::start_with_env(&shipped("gateway.yaml"), gw_health, &env);

    let (sc_grpc, sc_http, sc_health) = (free_port(), free_port(), free_port());
    let sidecar_env = [
        ("WASMCOL_GRPC_ENDPOINT", format!("127.0.0.1:{sc_grpc}")),
        ("WASMCOL_HTTP_ENDPOINT", format!("127.0.0.1:{sc_http}")),
        ("WASMCOL_HEALTH_ENDPOINT", format!("127.0.0.1:{sc_health}")),
        (
            "WASMCOL_METRICS_ADDRESS",
            format!("127.0.0.1:{}", free_port()),
        ),
        ("WASMCOL_GATEWAY_ENDPOINT", format!("localhost:{gw_grpc}")),
        ("WASMCOL_TLS_CERT", path(tls.join("sidecar.crt"))),
        ("WASMCOL_TLS_KEY", path(tls.join("sidecar.key"))),
        ("WASMCOL_TLS_CA", path(tls.join("ca.crt"))),
        ("WASMCOL_TOKEN_FILE", path(tls.join("token"))),
    ];
    let env: Vec<(&str, &str)> = sidecar_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut sidecar = Collector::start_with_env(&shipped("sidecar.yaml"), sc_health, &env);

    let expected = |name: &str| work.path().join(name);
    let client = [
        "--cert",
        tls.join("sidecar.crt").to_str().unwrap(),
        "--key",
        tls.join("sidecar.key").to_str().unwrap(),
    ]
    .map(str::to_string);
    let bearer = format!("authorization=Bearer {token}");
    let with = |extra: &[&str]| -> Vec<String> {
        client
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };

    // An application's SDK to the sidecar (plaintext on loopback), which forwards over mTLS.
    let mut want = BTreeSet::new();
    for protocol in ["grpc", "http"] {
        let port = if protocol == "grpc" { sc_grpc } else { sc_http };
        let (ok, ids, err) = send(
            protocol,
            &format!("127.0.0.1:{port}"),
            &tls,
            &["--plaintext", "--traces", "5"],
            &expected(&format!("sidecar-{protocol}.json")),
        );
        assert!(ok && ids.len() == 15, "the sidecar refused spans: {err}");
        want.extend(ids);
    }
    // The SDK to the gateway itself, with the sidecar's certificate and the token.
    for (protocol, port) in [("grpc", gw_grpc), ("http", gw_http)] {
        let args = with(&["--header", &bearer, "--traces", "4"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, ids, err) = send(
            protocol,
            &format!("localhost:{port}"),
            &tls,
            &args,
            &expected(&format!("direct-{protocol}.json")),
        );
        assert!(
            ok && ids.len() == 12,
            "the gateway refused {protocol}: {err}"
        );
        want.extend(ids);
    }
    // Refused: no token; a token but no client certificate.
    for (protocol, port) in [("grpc", gw_grpc), ("http", gw_http)] {
        let args = with(&["--timeout", "3"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, ids, _) = send(
            protocol,
            &format!("localhost:{port}"),
            &tls,
            &args,
            &expected(&format!("no-token-{protocol}.json")),
        );
        assert!(
            !ok && ids.is_empty(),
            "{protocol} without a token was accepted"
        );
        let (ok, ids, _) = send(
            protocol,
            &format!("localhost:{port}"),
            &tls,
            &["--header", &bearer, "--timeout", "3"],
            &expected(&format!("no-cert-{protocol}.json")),
        );
        assert!(
            !ok && ids.is_empty(),
            "{protocol} without a client certificate was accepted"
        );
    }

    let out = work.path().join("gateway/traces.pb");
    let arrived = wait_until(Duration::from_secs(20), || {
        gateway_span_ids(&out)
            .is_some_and(|got| want.iter().all(|id| got.binary_search(id).is_ok()))
    });
    assert!(
        arrived,
        "spans missing at the gateway\nsidecar:\n{}\ngateway:\n{}",
        sidecar.log(),
        gateway.log()
    );
    assert_eq!(sidecar.stop(), 0);
    assert_eq!(gateway.stop(), 0);
    let got = gateway_span_ids(&out).unwrap();
    assert_eq!(
        got,
        want.into_iter().collect::<Vec<_>>(),
        "exactly the acknowledged spans, once each"
    );
    for log in [sidecar.log(), gateway.log()] {
        assert!(!log.contains(token), "the token appeared in a log");
    }
}
