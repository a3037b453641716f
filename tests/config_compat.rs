//! Configurations as OpenTelemetry Collector users write them.
//!
//! Every file in `tests/configs/compat/` passes `wasmcol validate`, with exactly the infos and
//! warnings its `# expect: LEVEL: PATH: MESSAGE` lines name (each a prefix of one note). The
//! process tests start `wasmcol` with several `--config` sources, `--set`, and check what the
//! merged configuration does; `print-config` shows it with secrets redacted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_yaml_ng::Value;
use wasmcol_tests::{Collector, binary, free_port, wait_until, workspace_root};

fn compat_files() -> Vec<PathBuf> {
    let dir = workspace_root().join("tests/configs/compat");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn wasmcol(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary("wasmcol"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run wasmcol")
}

/// The `info: ...` and `warning: ...` lines `validate` printed for `name`.
fn notes(stderr: &str, name: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .filter_map(|rest| {
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            let rest = rest.strip_prefix(": ").unwrap_or(rest).trim_start();
            (rest.starts_with("info: ") || rest.starts_with("warning: ")).then(|| rest.to_string())
        })
        .collect()
}

#[test]
fn the_corpus_validates_with_exactly_the_expected_notes() {
    let files = compat_files();
    assert!(files.len() >= 20, "only {} compat configs", files.len());
    let queue = tempfile::tempdir().unwrap();
    let queue_dir = queue.path().display().to_string();
    let env = [
        ("MY_POD_IP", "127.0.0.1"),
        ("QUEUE_DIR", queue_dir.as_str()),
    ];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        let name = f.display().to_string();
        let out = wasmcol(&["validate", "--config", &name], &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name} was refused:\n{stderr}");
        let got = notes(&stderr, &name);
        for want in &expected {
            assert_eq!(
                got.iter().filter(|n| n.starts_with(want)).count(),
                1,
                "{name}: expected one note starting {want:?}, got:\n{}",
                got.join("\n")
            );
        }
        assert_eq!(
            got.len(),
            expected.len(),
            "{name}: notes not listed in `# expect:` lines:\n{}",
            got.join("\n")
        );
    }
}

#[test]
fn components_not_in_this_distribution_name_an_alternative() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "receivers:\n  zipkin:\n  otlp:\n    protocols: {grpc: {endpoint: localhost:4317}}\n\
         processors:\n  attributes/x:\n    actions: []\n  filter:\n\
         exporters:\n  load_balancing:\n    protocol: {otlp: {}}\n  prometheusremotewrite:\n    endpoint: http://x\n\
         service:\n  pipelines:\n    traces:\n      receivers: [zipkin, otlp]\n      processors: [attributes/x, filter]\n      exporters: [load_balancing, prometheusremotewrite]\n",
    )
    .unwrap();
    let out = wasmcol(&["validate", "-c", &path.display().to_string()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "receivers.zipkin: receiver type \"zipkin\" is not in this distribution; instead use send OTLP",
        "processors.attributes/x: processor type \"attributes\" is not in this distribution; instead use the wasm processor: builtin:enrich",
        "processors.filter: processor type \"filter\" is not in this distribution; instead use the wasm processor",
        "exporters.load_balancing: exporter type \"load_balancing\" is not in this distribution; instead use the kafka exporter with partition_traces_by_id",
        "exporters.prometheusremotewrite: exporter type \"prometheusremotewrite\" is not in this distribution",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    // Only the missing types are problems: the pipeline's references to them are not
    // reported again.
    assert!(stderr.contains("5 problems"), "{stderr}");
}

#[test]
fn two_spellings_of_one_option_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "receivers:\n  otlp:\n    protocols: {grpc: {endpoint: localhost:4317}}\n\
         exporters:\n  kafka:\n    auth:\n      plain_text: {username: a, password: b}\n      sasl: {mechanism: PLAIN, username: a, password: b}\n\
         service:\n  telemetry:\n    metrics:\n      address: localhost:8888\n      readers: [{pull: {exporter: {prometheus: {host: localhost, port: 9999}}}}]\n\
         \x20 pipelines:\n    traces: {receivers: [otlp], exporters: [kafka]}\n",
    )
    .unwrap();
    let out = wasmcol(&["validate", "-c", &path.display().to_string()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exporters.kafka.auth.plain_text: cannot be set together with auth.sasl"),
        "{stderr}"
    );
    assert!(
        stderr.contains("service.telemetry.metrics.address: cannot be set together with readers"),
        "{stderr}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn print_config_merges_sources_in_order_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(
        dir.path(),
        "base.yaml",
        "receivers:\n  otlp:\n    protocols: {grpc: {endpoint: localhost:4317}}\n\
         exporters:\n  otlp_http:\n    endpoint: ${env:BACKEND:-http://localhost:4318}\n    headers:\n      authorization: Bearer ${env:TOKEN}\n\
         \x20 kafka:\n    brokers: [a:9092, b:9092]\n    auth: {sasl: {mechanism: PLAIN, username: u, password: hunter2}}\n\
         extensions:\n  bearertokenauth: {token: t0psecret}\n\
         service:\n  extensions: [bearertokenauth]\n  pipelines:\n    traces: {receivers: [otlp], exporters: [otlp_http, kafka]}\n",
    );
    let over = write(
        dir.path(),
        "over.yaml",
        "exporters:\n  kafka:\n    brokers: [c:9092]\n    client_id: second\n",
    );
    let out = wasmcol(
        &[
            "print-config",
            "--config",
            &base,
            "--config",
            &format!("file:{over}"),
            "--config",
            "env:WASMCOL_OVERLAY",
            "--config",
            "yaml:processors::batch::timeout: 2s",
            "--set",
            "exporters.kafka.client_id=third",
            "--set",
            "exporters::otlp_http::headers::x.tenant=acme",
        ],
        &[
            ("TOKEN", "abc.def"),
            (
                "WASMCOL_OVERLAY",
                "service:\n  pipelines:\n    traces: {exporters: [kafka]}\n",
            ),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in ["hunter2", "t0psecret", "abc.def", "acme"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    let v: Value = serde_yaml_ng::from_str(&stdout).unwrap();
    let kafka = &v["exporters"]["kafka"];
    // Lists are replaced, mappings merged; later sources win; --set comes last.
    assert_eq!(
        kafka["brokers"],
        serde_yaml_ng::from_str::<Value>("[c:9092]").unwrap()
    );
    assert_eq!(kafka["client_id"], Value::from("third"));
    assert_eq!(kafka["auth"]["sasl"]["username"], Value::from("u"));
    assert_eq!(kafka["auth"]["sasl"]["password"], Value::from("[REDACTED]"));
    assert_eq!(
        v["extensions"]["bearertokenauth"]["token"],
        Value::from("[REDACTED]")
    );
    let headers = &v["exporters"]["otlp_http"]["headers"];
    assert_eq!(headers["authorization"], Value::from("[REDACTED]"));
    assert_eq!(headers["x.tenant"], Value::from("[REDACTED]"));
    assert_eq!(
        v["exporters"]["otlp_http"]["endpoint"],
        Value::from("http://localhost:4318")
    );
    assert_eq!(
        v["service"]["pipelines"]["traces"]["exporters"],
        serde_yaml_ng::from_str::<Value>("[kafka]").unwrap()
    );
    assert_eq!(
        v["service"]["pipelines"]["traces"]["receivers"],
        serde_yaml_ng::from_str::<Value>("[otlp]").unwrap()
    );
    assert_eq!(v["processors"]["batch"]["timeout"], Value::from("2s"));
}

#[test]
fn a_missing_env_source_is_an_error_naming_it() {
    let out = wasmcol(
        &["validate", "--config", "env:WASMCOL_NO_SUCH_VARIABLE"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("--config=env:WASMCOL_NO_SUCH_VARIABLE: WASMCOL_NO_SUCH_VARIABLE is not set"),
        "{stderr}"
    );
}

/// The base configuration of the process tests: OTLP/gRPC in, a health check, metrics off,
/// the pipeline exporting to `exporter` (only `nop` is defined).
fn base_config(grpc: u16, health: u16, exporter: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols: {{grpc: {{endpoint: 127.0.0.1:{grpc}}}}}\n\
         exporters:\n  nop:\n\
         extensions:\n  health_check: {{endpoint: 127.0.0.1:{health}}}\n\
         service:\n  extensions: [health_check]\n  telemetry:\n    metrics:\n      level: none\n\
         \x20 pipelines:\n    traces: {{receivers: [otlp], exporters: [{exporter}]}}\n"
    )
}

fn connects(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn merged_sources_and_set_take_effect_in_the_running_collector() {
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    // The base alone does not load: its pipeline names an exporter no source defines. The
    // overlay turns metrics on through a Prometheus pull reader; `yaml:` adds the debug
    // exporter and `--set` replaces the pipeline's exporter list with it, so the collector
    // starts only if every source was merged.
    let overlay = format!(
        "service:\n  telemetry:\n    metrics:\n      level: detailed\n      readers:\n        - pull: {{exporter: {{prometheus: {{host: 127.0.0.1, port: {metrics}}}}}}}\n"
    );
    let script = "exec \"$@\" --config env:WASMCOL_OVERLAY --config 'yaml:exporters::debug::verbosity: basic' --set 'service.pipelines.traces.exporters=[debug]'";
    let mut c = Collector::start_wrapped(
        &base_config(grpc, health, "missing"),
        metrics,
        &[("WASMCOL_OVERLAY", &overlay)],
        &["sh", "-c", script, "sh"],
    );
    let text = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(wasmcol_tests::scrape_metrics(metrics));
    assert!(text.contains("# TYPE"), "{text}");
    assert!(
        c.wait_for_log_line(
            &["service.telemetry.metrics.readers[0]", "metrics served at"],
            Duration::from_secs(5)
        ),
        "{}",
        c.log()
    );
    assert_eq!(c.stop(), 0, "{}", c.log());
}

#[test]
fn metrics_level_none_serves_no_metrics() {
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    // Readers name a port, but level none turns the endpoint off.
    let script = format!(
        "exec \"$@\" --set 'service.telemetry.metrics.readers=[{{pull: {{exporter: {{prometheus: {{host: 127.0.0.1, port: {metrics}}}}}}}}}]'"
    );
    let mut c = Collector::start_wrapped(
        &base_config(grpc, health, "nop"),
        health,
        &[],
        &["sh", "-c", &script, "sh"],
    );
    assert!(wait_until(Duration::from_secs(5), || connects(grpc)));
    assert!(!connects(metrics), "metrics port is open:\n{}", c.log());
    assert!(
        c.log().contains("the metrics endpoint is off"),
        "{}",
        c.log()
    );
    assert_eq!(c.stop(), 0, "{}", c.log());
}

#[test]
fn a_problem_in_merged_sources_names_the_source_and_line_that_set_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(
        dir.path(),
        "base.yaml",
        "receivers:\n  otlp:\n    protocols: {grpc: {endpoint: localhost:4317}}\n\
         exporters:\n  kafka:\n    brokers: [a:9092]\n\
         service:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [kafka]}\n",
    );
    let over = write(
        dir.path(),
        "over.yaml",
        "# overrides\nexporters:\n  kafka:\n    protocol_version: 2.0.0\n    brokers: []\n",
    );
    let out = wasmcol(&["validate", "-c", &base, "-c", &over], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{over}:5: exporters.kafka.brokers: must list at least one broker"
        )),
        "{stderr}"
    );

    let fixed = wasmcol(
        &[
            "validate",
            "-c",
            &base,
            "-c",
            &over,
            "--set",
            "exporters.kafka.brokers=[b:9092]",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&fixed.stderr);
    assert!(fixed.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{over}:4: info: exporters.kafka.protocol_version: accepted and ignored"
        )),
        "{stderr}"
    );
}
