//! The unmodified OpenTelemetry Python SDK sends traces to wasmcol over gRPC, HTTP/protobuf and
//! HTTP/JSON; the file exporter's output must hold exactly those spans, field by field.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde_json::{Value as Json, json};
use wasmcol_tests::{
    Collector, all_spans, file_pipeline_config, free_port, python, read_json_lines, wait_until,
    workspace_root,
};

fn any_json(v: Option<&AnyValue>) -> Json {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => json!({ "string": s }),
        Some(Value::BoolValue(b)) => json!({ "bool": b }),
        Some(Value::IntValue(i)) => json!({ "int": i }),
        Some(Value::DoubleValue(d)) => json!({ "double": d }),
        Some(Value::ArrayValue(a)) => {
            json!({ "array": a.values.iter().map(|v| any_json(Some(v))).collect::<Vec<_>>() })
        }
        other => json!({ "unexpected": format!("{other:?}") }),
    }
}

fn attrs_json(attrs: &[KeyValue]) -> Json {
    Json::Object(
        attrs
            .iter()
            .map(|kv| (kv.key.clone(), any_json(kv.value.as_ref())))
            .collect(),
    )
}

/// The collector's output in the same shape as the Python script's record of what it sent.
fn output_json(rs: &[ResourceSpans]) -> HashMap<String, Json> {
    let mut out = HashMap::new();
    for r in rs {
        let resource = attrs_json(
            &r.resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default(),
        );
        for ss in &r.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| json!([s.name, s.version]))
                .unwrap_or(json!(["", ""]));
            for s in &ss.spans {
                let status = s.status.clone().unwrap_or_default();
                let span_id = hex::encode(&s.span_id);
                let prev = out.insert(
                    span_id.clone(),
                    json!({
                        "trace_id": hex::encode(&s.trace_id),
                        "span_id": span_id,
                        "parent_span_id": hex::encode(&s.parent_span_id),
                        "name": s.name,
                        "kind": s.kind,
                        "start_time_unix_nano": s.start_time_unix_nano,
                        "end_time_unix_nano": s.end_time_unix_nano,
                        "attributes": attrs_json(&s.attributes),
                        "events": s.events.iter().map(|e| json!({
                            "name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": attrs_json(&e.attributes)
                        })).collect::<Vec<_>>(),
                        "links": s.links.iter().map(|l| json!({
                            "trace_id": hex::encode(&l.trace_id), "span_id": hex::encode(&l.span_id), "attributes": attrs_json(&l.attributes)
                        })).collect::<Vec<_>>(),
                        "status_code": status.code,
                        "status_message": status.message,
                        "resource": resource,
                        "scope": scope,
                    }),
                );
                assert!(
                    prev.is_none(),
                    "span {} written twice",
                    hex::encode(&s.span_id)
                );
            }
        }
    }
    out
}

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
