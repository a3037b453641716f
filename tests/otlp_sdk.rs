//! The unmodified OpenTelemetry Python SDK sends traces to wasmcol over gRPC, HTTP/protobuf and
//! HTTP/JSON; the file exporter's output must hold exactly those spans, field by field.

use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;
use wasmcol_tests::sdk::output_json;
use wasmcol_tests::{
    Collector, all_spans, file_pipeline_config, free_port, python, read_json_lines, wait_until,
    workspace_root,
};

fn round_trip(protocol: &str) {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let mut collector = Collector::start(
        &file_pipeline_config(grpc, http, metrics, "batch", ""),
        grpc,
    );
    let endpoint = match protocol {
        "grpc" => format!("127.0.0.1:{grpc}"),
        _ => format!("127.0.0.1:{http}"),
    };
    let expected_path = collector.path("expected.json");
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_traces.py"))
        .args([
            "--protocol",
            protocol,
            "--endpoint",
            &endpoint,
            "--traces",
            "4",
            "--expected",
        ])
        .arg(&expected_path)
        .status()
        .expect("run python");
    assert!(
        status.success(),
        "the Python sender failed:\n{}",
        collector.log()
    );
    let expected: Vec<Json> =
        serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
    assert_eq!(expected.len(), 12, "the script makes 3 spans per trace");

    let out = collector.path("out.jsonl");
    let arrived = wait_until(Duration::from_secs(10), || {
        out.exists() && all_spans(&read_json_lines(&out)).len() >= expected.len()
    });
    assert!(arrived, "spans did not arrive:\n{}", collector.log());
    assert_eq!(
        collector.stop(),
        0,
        "clean exit on SIGTERM:\n{}",
        collector.log()
    );

    let got = output_json(&read_json_lines(&out));
    assert_eq!(got.len(), expected.len(), "exactly the spans sent");
    for want in &expected {
        let id = want["span_id"].as_str().unwrap();
        let have = got
            .get(id)
            .unwrap_or_else(|| panic!("span {id} missing from the output"));
        assert_eq!(have, want, "span {id} differs");
    }
}

#[test]
fn python_sdk_over_grpc() {
    round_trip("grpc");
}

#[test]
fn python_sdk_over_http_protobuf() {
    round_trip("http");
}

#[test]
fn python_sdk_over_http_json() {
    round_trip("http-json");
}
