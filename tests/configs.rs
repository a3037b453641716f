//! Configuration files: every file in `configs/` and `tests/configs/valid/` loads; every file
//! in `tests/configs/invalid/` fails with exactly the problems its `# expect:` lines name.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmcol::Config;
use wasmcol_tests::{binary, workspace_root};

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {}", dir.display());
    files
}

#[test]
fn shipped_configs_are_valid() {
    // The files the shipped configs read (certificates, the token) come from environment
    // variables, as they would in a deployment; here they are made for the test.
    let dir = tempfile::tempdir().unwrap();
    let pki = wasmcol_tests::tls::Pki::write(dir.path());
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let files = [
        ("WASMCOL_TLS_CA", pki.ca.clone()),
        ("WASMCOL_TLS_CERT", pki.server.cert.clone()),
        ("WASMCOL_TLS_KEY", pki.server.key.clone()),
        ("WASMCOL_TOKEN_FILE", token),
    ];
    let lookup = |name: &str| {
        files
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, p)| p.display().to_string())
            .or_else(|| std::env::var(name).ok())
    };
    for f in yaml_files(&workspace_root().join("configs")) {
        let text = std::fs::read_to_string(&f).unwrap();
        if let Err(e) = Config::parse(&f.display().to_string(), &text, &lookup) {
            panic!("{e}");
        }
    }
}

#[test]
fn valid_cases_load() {
    for f in yaml_files(&workspace_root().join("tests/configs/valid")) {
        if let Err(e) = Config::load(&f) {
            panic!("{e}");
        }
    }
}

#[test]
fn invalid_cases_report_every_expected_problem() {
    for f in yaml_files(&workspace_root().join("tests/configs/invalid")) {
        let text = std::fs::read_to_string(&f).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            f.display()
        );
        let err = match Config::load(&f) {
            Ok(_) => panic!("{} loaded but should fail", f.display()),
            Err(e) => e,
        };
        let shown: Vec<String> = err
            .errors
            .iter()
            .map(|e| match e.line {
                Some(line) => format!("line {line}: {e}"),
                None => e.to_string(),
            })
            .collect();
        for want in &expected {
            assert!(
                shown.iter().any(|s| s.contains(want)),
                "{}: expected a problem containing {want:?}, got:\n{}",
                f.display(),
                shown.join("\n")
            );
        }
        assert_eq!(
            shown.len(),
            expected.len(),
            "{}: unexpected extra problems:\n{}",
            f.display(),
            shown.join("\n")
        );
    }
}

#[test]
fn validate_command_lists_all_problems_and_fails() {
    let f = workspace_root().join("tests/configs/invalid/many_errors.yaml");
    let out = Command::new(binary("wasmcol"))
        .args(["validate", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("6 problems"), "{stderr}");
    assert!(
        stderr.contains("many_errors.yaml:14: processors.batch.send_batch_max_size"),
        "{stderr}"
    );

    let ok = Command::new(binary("wasmcol"))
        .args(["validate", "--config"])
        .arg(workspace_root().join("configs/default.yaml"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn components_and_version() {
    let out = Command::new(binary("wasmcol"))
        .arg("components")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "otlp",
        "batch",
        "memory_limiter",
        "probabilistic_sampler",
        "file",
        "debug",
        "nop",
        "health_check",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let out = Command::new(binary("wasmcol"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wasmcol "));
}

/// Secrets (passwords, header values) may be wrong in every way a config allows, and still
/// never appear in a problem: not from a failed `${...}` reference, not from a value's type,
/// not from a value check. The other problems are there, so the file was checked.
#[test]
fn secrets_never_appear_in_problems() {
    let config = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "hunter2${oops"
exporters:
  kafka:
    brokers: [kafka-1]
    auth: { sasl: { mechanism: PLAIN, username: spans, password: "${env:KAFKA_PASSWORD}" } }
  clickhouse:
    endpoint: http://ch:8123
    password: "hunter2${vault:hunter2}"
  otlp:
    endpoint: gateway:4317
    headers: { authorization: "Bearer hunter2\u00e9" }
  otlphttp:
    endpoint: http://gateway:4318
    headers: { authorization: "Bearer hunter2\n" }
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [kafka, clickhouse, otlp, otlphttp]
"#;
    // A number-like secret is read as a number by `${env:...}`; a password takes it as text.
    let err = Config::parse("secrets.yaml", config, &|name| {
        (name == "KAFKA_PASSWORD").then(|| "12345".to_string())
    })
    .unwrap_err()
    .to_string();
    for problem in [
        "receivers.otlp.protocols.grpc.endpoint: unterminated reference",
        "exporters.kafka.brokers[0]",
        "exporters.clickhouse.password: unsupported reference ${vault:...}",
        "exporters.otlp.headers.authorization: the value is not valid metadata",
        "exporters.otlphttp.headers.authorization: the value is not a valid HTTP header value",
    ] {
        assert!(err.contains(problem), "{problem:?} missing from:\n{err}");
    }
    assert!(!err.contains("hunter2") && !err.contains("12345"), "{err}");
}
