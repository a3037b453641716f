//! Which `wasmcol:plugin` versions the host runs: processor plugins built for 0.3.0 on traces,
//! logs and metrics, for 0.2.0 on traces and logs, for 0.1.0 on traces only (a pipeline of a
//! signal the version lacks refuses them at validation, naming the version), and any other
//! version refused at load with an error naming the version found and the ones it runs.
//!
//! `tests/plugins/fixtures/tagger-0.1.0.wasm` and `tagger-0.2.0.wasm` are the tagger test
//! plugin (`tests/plugins/tagger`) as built against the SDK of `wasmcol:plugin@0.1.0` and
//! `@0.2.0`: real plugins of those versions whose edits the host must still apply.

use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
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
fn a_current_plugin_takes_traces_logs_and_metrics() {
    let (code, stderr) = validate(&config(TAGGER, &["traces", "logs", "metrics"]));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_0_1_0_plugin_runs_on_traces_and_logs_and_metrics_pipelines_refuse_it_naming_the_version() {
    let plugin = v0_1_plugin();
    let path = plugin.to_str().unwrap();
    let (code, stderr) = validate(&config(path, &["traces"]));
    assert_eq!(code, 0, "{stderr}");
    for signal in ["logs", "metrics"] {
        let (code, stderr) = validate(&config(path, &["traces", signal]));
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("service.pipelines.{signal}.processors[0]"))
                && stderr.contains(&format!(
                    "does not support {signal} (it supports traces): the plugin {path:?} was \
                     built for wasmcol:plugin@0.1.0, which has no {signal}; {signal} need a \
                     plugin built for wasmcol:plugin@0.3.0"
                )),
            "{stderr}"
        );
    }
}

fn fixture(version: &str) -> String {
    workspace_root()
        .join(format!("tests/plugins/fixtures/tagger-{version}.wasm"))
        .display()
        .to_string()
}

#[test]
fn a_0_2_0_plugin_runs_on_traces_and_logs_and_a_metrics_pipeline_refuses_it_naming_the_version() {
    let path = fixture("0.2.0");
    let (code, stderr) = validate(&config(&path, &["traces", "logs"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = validate(&config(&path, &["traces", "logs", "metrics"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("service.pipelines.metrics.processors[0]")
            && stderr.contains(&format!(
                "does not support metrics (it supports traces, logs): the plugin {path:?} was \
                 built for wasmcol:plugin@0.2.0, which has no metrics; metrics need a plugin \
                 built for wasmcol:plugin@0.3.0 (rebuild it with the current wasmcol-plugin-sdk)"
            )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("pipelines.logs") && !stderr.contains("pipelines.traces"),
        "{stderr}"
    );
}

#[test]
fn another_version_is_refused_naming_the_version_found_and_the_one_needed() {
    let wit = std::fs::read_to_string(workspace_root().join("plugin-sdk/wit/0.1.0/plugin.wit"))
        .unwrap()
        .replace(
            "package wasmcol:plugin@0.1.0;",
            "package wasmcol:plugin@0.4.0;",
        );
    let wat = wat_plugin::processor(r#"(memory (export "memory") 1)"#, "").replace(
        "wasmcol:plugin/processor@0.1.0#",
        "wasmcol:plugin/processor@0.4.0#",
    );
    let plugin = wat_plugin::component_with_wit(&wat, &wit).unwrap();
    let (code, stderr) = validate(&config(plugin.to_str().unwrap(), &["traces"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("was built for wasmcol:plugin@0.4.0; this collector runs plugins built for wasmcol:plugin@0.3.0 (and processor plugins for @0.2.0, on traces and logs, and @0.1.0, on traces only)"),
        "{stderr}"
    );
}

#[test]
fn the_fixtures_are_0_1_0_and_0_2_0_plugins() {
    for (version, others) in [("0.1.0", ["0.2.0", "0.3.0"]), ("0.2.0", ["0.1.0", "0.3.0"])] {
        let bytes = std::fs::read(fixture(version)).unwrap();
        let has = |v: &str| {
            let needle = format!("wasmcol:plugin/processor@{v}");
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        };
        assert!(has(version), "{version}");
        for other in others {
            assert!(!has(other), "{version} names {other}");
        }
    }
}

#[test]
fn a_rust_plugin_built_for_0_2_0_still_edits_spans_and_passes_logs() {
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
    logs:
      receivers: [otlp]
      processors: [wasm/tag]
      exporters: [file]
  telemetry:
    metrics:
      address: none
"#,
        plugin = fixture("0.2.0")
    );
    let c = Collector::start(&yaml, http);
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..3)
                    .map(|i| LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("line {i}"))),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let statuses = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut statuses = Vec::new();
        for (path, body) in [
            ("traces", spans_request(1, 1, 5, 10).encode_to_vec()),
            ("logs", logs.encode_to_vec()),
        ] {
            statuses.push(
                http_request(
                    "POST",
                    &format!("http://127.0.0.1:{http}/v1/{path}"),
                    &[("content-type", "application/x-protobuf")],
                    body,
                )
                .await
                .unwrap()
                .status,
            );
        }
        statuses
    });
    assert_eq!(statuses, [200, 200], "{}", c.log());
    let path = c.path("out.jsonl");
    // Complete lines of the file, spans decoded, log records by their bodies.
    let read = || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut spans = Vec::new();
        let mut records = 0;
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            if line.starts_with(r#"{"resourceSpans""#) {
                for rs in wasmcol::otlp::json::decode_traces(line.as_bytes())
                    .unwrap()
                    .resource_spans
                {
                    spans.extend(rs.scope_spans.into_iter().flat_map(|ss| ss.spans));
                }
            } else if line.starts_with(r#"{"resourceLogs""#) {
                records += line.matches("line ").count();
            }
        }
        (spans, records)
    };
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (spans, records) = read();
            spans.len() == 5 && records == 3
        }),
        "{}",
        c.log()
    );
    for span in read().0 {
        assert_eq!(span.attributes.len(), 1, "tagged, pad removed");
        assert_eq!(span.attributes[0].key, "team");
    }
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
        plugin = fixture("0.1.0")
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

/// A policy plugin's core module for `version`: `init` answers `ok({needs-spans: false})`
/// (a zeroed return area), `decide` `ok([])`.
fn policy_wat(version: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "cabi_realloc")
        (param i32 i32 i32) (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $next))
    (global.set $next (i32.add (local.get $at) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    (local.get $at))
  (func (export "wasmcol:plugin/sampler@{version}#init") (param i32 i32) (result i32)
    (i32.const 0))
  (func (export "wasmcol:plugin/sampler@{version}#decide") (param i32 i32 i32 i32) (result i32)
    (i32.const 0))
)"#
    )
}

fn tail_sampling_config(plugin: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
processors:
  tail_sampling:
    decision_wait: 1s
    policies: [{{ name: all, type: always_sample }}]
    plugin: "{plugin}"
exporters:
  nop:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [nop]
"#
    )
}

#[test]
fn policy_plugins_built_for_0_2_0_still_load_and_0_1_0_ones_are_refused() {
    for (version, wit) in [
        ("0.2.0", "plugin-sdk/wit/0.2.0/plugin.wit"),
        ("0.3.0", "plugin-sdk/wit/plugin.wit"),
    ] {
        let wit = std::fs::read_to_string(workspace_root().join(wit)).unwrap();
        let plugin = wat_plugin::component_of_world(&policy_wat(version), &wit, "policy").unwrap();
        let (code, stderr) = validate(&tail_sampling_config(plugin.to_str().unwrap()));
        assert_eq!(code, 0, "{version}: {stderr}");
    }
    let wit =
        std::fs::read_to_string(workspace_root().join("plugin-sdk/wit/0.1.0/plugin.wit")).unwrap();
    let plugin = wat_plugin::component_of_world(&policy_wat("0.1.0"), &wit, "policy").unwrap();
    let (code, stderr) = validate(&tail_sampling_config(plugin.to_str().unwrap()));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("was built for wasmcol:plugin@0.1.0; policy plugins must be built for wasmcol:plugin@0.3.0 (or @0.2.0)"),
        "{stderr}"
    );
}
