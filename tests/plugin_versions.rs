//! Which `wasmcol:plugin` versions the host runs: processor plugins built for 0.2.0 on traces
//! and logs, for 0.1.0 on traces only (a logs pipeline refuses them at validation), and any
//! other version refused at load with an error naming the version found and the one needed.
//!
//! `tests/plugins/fixtures/tagger-0.1.0.wasm` is the tagger test plugin (`tests/plugins/tagger`)
//! as built against the SDK of `wasmcol:plugin@0.1.0`: a real 0.1.0 plugin whose edits the
//! host must still apply.

use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use wasmcol_tests::{
    Collector, binary, free_port, http_request, read_json_lines, spans_request, wait_until,
    wat_plugin, workspace_root,
};

const TAGGER: &str = env!("WASMCOL_TEST_PLUGIN_TAGGER");

fn config(plugin: &str, pipelines: &[&str]) -> String {
    let mut yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
processors:
  wasm/p:
    plugin: "{plugin}"
exporters:
  nop:
service:
  pipelines:
"#
    );
    for p in pipelines {
        yaml.push_str(&format!(
            "    {p}:\n      receivers: [otlp]\n      processors: [wasm/p]\n      exporters: [nop]\n"
        ));
    }
    yaml
}

/// `wasmcol validate` on a config; returns (exit code, stderr).
fn validate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(binary("wasmcol"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn v0_1_plugin() -> tempfile::TempPath {
    wat_plugin::component(&wat_plugin::processor(
        r#"(memory (export "memory") 1)"#,
        "",
    ))
    .unwrap()
}

#[test]
fn a_current_plugin_takes_traces_and_logs() {
    let (code, stderr) = validate(&config(TAGGER, &["traces", "logs"]));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_0_1_0_plugin_runs_on_traces_and_a_logs_pipeline_refuses_it() {
    let plugin = v0_1_plugin();
    let path = plugin.to_str().unwrap();
    let (code, stderr) = validate(&config(path, &["traces"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = validate(&config(path, &["traces", "logs"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("service.pipelines.logs.processors[0]")
            && stderr.contains("does not support logs (it supports traces)"),
        "{stderr}"
    );
}

#[test]
fn another_version_is_refused_naming_the_version_found_and_the_one_needed() {
    let wit = std::fs::read_to_string(workspace_root().join("plugin-sdk/wit/0.1.0/plugin.wit"))
        .unwrap()
        .replace(
            "package wasmcol:plugin@0.1.0;",
            "package wasmcol:plugin@0.3.0;",
        );
    let wat = wat_plugin::processor(r#"(memory (export "memory") 1)"#, "").replace(
        "wasmcol:plugin/processor@0.1.0#",
        "wasmcol:plugin/processor@0.3.0#",
    );
    let plugin = wat_plugin::component_with_wit(&wat, &wit).unwrap();
    let (code, stderr) = validate(&config(plugin.to_str().unwrap(), &["traces"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("was built for wasmcol:plugin@0.3.0; this collector runs plugins built for wasmcol:plugin@0.2.0 (and processor plugins for @0.1.0, on traces only)"),
        "{stderr}"
    );
}

fn tagger_0_1_0() -> String {
    workspace_root()
        .join("tests/plugins/fixtures/tagger-0.1.0.wasm")
        .display()
        .to_string()
}

#[test]
fn the_fixture_is_a_0_1_0_plugin() {
    let bytes = std::fs::read(tagger_0_1_0()).unwrap();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"wasmcol:plugin/processor@0.1.0"));
    assert!(!has(b"wasmcol:plugin/processor@0.2.0"));
}

#[test]
fn a_rust_plugin_built_for_0_1_0_still_edits_spans() {
    let (http, grpc) = (free_port(), free_port());
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  wasm/tag:
    plugin: "{plugin}"
    config: {{ teams: {{ wasmcol-tests: platform }}, remove: [pad] }}
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 20ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [wasm/tag]
      exporters: [file]
  telemetry:
    metrics:
      address: none
"#,
        plugin = tagger_0_1_0()
    );
    let c = Collector::start(&yaml, http);
    let status = tokio::runtime::Runtime::new().unwrap().block_on(async {
        http_request(
            "POST",
            &format!("http://127.0.0.1:{http}/v1/traces"),
            &[("content-type", "application/x-protobuf")],
            spans_request(1, 1, 5, 10).encode_to_vec(),
        )
        .await
        .unwrap()
        .status
    });
    assert_eq!(status, 200, "{}", c.log());
    let path = c.path("out.jsonl");
    assert!(
        wait_until(Duration::from_secs(10), || path.exists()
            && read_json_lines(&path)
                .iter()
                .map(|rs| rs
                    .scope_spans
                    .iter()
                    .map(|ss| ss.spans.len())
                    .sum::<usize>())
                .sum::<usize>()
                == 5),
        "{}",
        c.log()
    );
    let team = KeyValue {
        key: "team".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue("platform".into())),
        }),
        ..Default::default()
    };
    for rs in read_json_lines(&path) {
        for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            assert_eq!(span.attributes, vec![team.clone()], "tagged, pad removed");
        }
    }
}
