//! `builtin:pii-scrub` on logs, end to end: the Python OTel SDK logs card numbers, e-mail
//! addresses and bearer tokens (in string bodies, in map bodies, in record and resource
//! attributes) over gRPC and HTTP to a logs pipeline whose `wasm` processor scrubs them, then
//! to a file exporter. None of the secrets may reach the file, and every record must arrive
//! with the rest of it intact. Then a plugin that fails (the hostile test plugin) in front of
//! the scrubber: with `on_error: refuse` or `drop` the record it failed on never reaches the
//! file, and every other record still arrives scrubbed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use serde_json::Value;
use wasmcol_tests::{Collector, free_port, http_request, python, wait_until, workspace_root};

const HOSTILE: &str = env!("WASMCOL_TEST_PLUGIN_HOSTILE");
const RECORDS: usize = 10;

/// OTLP (gRPC and HTTP) → logs pipeline with `processors` → file.
fn config(grpc: u16, http: u16, processors: &str, list: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
{processors}
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 20ms
service:
  pipelines:
    logs:
      receivers: [otlp]
      processors: [{list}]
      exporters: [file]
  telemetry:
    metrics:
      address: none
"#
    )
}

const SCRUB: &str = "  wasm/scrub:\n    plugin: builtin:pii-scrub\n";

/// Every log record in the file exporter's JSON lines.
fn read_logs(path: &Path) -> Vec<ResourceLogs> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && l.starts_with(r#"{"resourceLogs""#))
        .flat_map(|l| {
            wasmcol::otlp::json::decode_logs(l.as_bytes())
                .unwrap()
                .resource_logs
        })
        .collect()
}

fn attribute<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn string(v: Option<&any_value::Value>) -> Option<&str> {
    match v {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Runs the SDK script; returns what it says it sent.
fn send(c: &Collector, protocol: &str, port: u16, service: &str) -> Value {
    let expected = c.path(&format!("expected-{service}.json"));
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_pii_logs.py"))
        .args(["--protocol", protocol, "--endpoint"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--records", &RECORDS.to_string(), "--service", service])
        .arg("--expected")
        .arg(&expected)
        .status()
        .expect("run python");
    assert!(status.success(), "send_pii_logs.py failed:\n{}", c.log());
    serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap()
}

/// The records of `service` in `logs`, by their `rec` attribute.
fn records_of<'a>(logs: &'a [ResourceLogs], service: &str) -> Vec<(String, &'a LogRecord)> {
    logs.iter()
        .filter(|rl| {
            rl.resource
                .as_ref()
                .and_then(|r| string(attribute(&r.attributes, "service.name")))
                == Some(service)
        })
        .flat_map(|rl| rl.scope_logs.iter().flat_map(|sl| &sl.log_records))
        .filter_map(|r| Some((string(attribute(&r.attributes, "rec"))?.to_string(), r)))
        .collect()
}

/// Every record `expected` lists is in `logs` once, with its non-secret parts intact.
fn check_intact(logs: &[ResourceLogs], expected: &Value, service: &str) -> Result<(), String> {
    let found = records_of(logs, service);
    for (i, e) in expected["records"].as_array().unwrap().iter().enumerate() {
        let rec = e["rec"].as_str().unwrap();
        let matching: Vec<&LogRecord> = found
            .iter()
            .filter(|(r, _)| r == rec)
            .map(|(_, l)| *l)
            .collect();
        let [r] = matching[..] else {
            return Err(format!("{rec}: {} copies", matching.len()));
        };
        let body = format!("{:?}", r.body);
        for keep in e["keeps"].as_array().unwrap() {
            let keep = keep.as_str().unwrap();
            if !body.contains(keep) {
                return Err(format!("{rec}: {keep:?} missing from the body {body}"));
            }
        }
        match (
            e["kind"].as_str().unwrap(),
            r.body.as_ref().and_then(|b| b.value.as_ref()),
        ) {
            ("string", Some(any_value::Value::StringValue(s))) => {
                if !s.starts_with(&format!("{rec} paid with card ")) {
                    return Err(format!("{rec}: body {s:?}"));
                }
            }
            ("map", Some(any_value::Value::KvlistValue(m))) => {
                let amount = attribute(&m.values, "amount");
                if amount != Some(&any_value::Value::DoubleValue(12.5))
                    || string(attribute(&m.values, "rec")) != Some(rec)
                {
                    return Err(format!("{rec}: map body {m:?}"));
                }
            }
            (kind, other) => return Err(format!("{rec}: a {kind} body arrived as {other:?}")),
        }
        if attribute(&r.attributes, "order.id") != Some(&any_value::Value::IntValue(i as i64)) {
            return Err(format!("{rec}: order.id {:?}", r.attributes));
        }
        // The secret attributes stay, redacted.
        for key in [
            "customer.email",
            "http.request.header.authorization",
            "payment.note",
        ] {
            if string(attribute(&r.attributes, key)).is_none() {
                return Err(format!("{rec}: {key} missing"));
            }
        }
        let severity = if e["kind"] == "string" {
            "WARN"
        } else {
            "INFO"
        };
        if r.severity_text != severity || r.time_unix_nano == 0 {
            return Err(format!("{rec}: severity or time changed: {r:?}"));
        }
    }
    Ok(())
}

/// No secret from `secrets` anywhere in the file's bytes.
fn assert_no_secrets(c: &Collector, secrets: &[&str]) {
    let text = std::fs::read_to_string(c.path("out.jsonl")).unwrap_or_default();
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{secret:?} reached the file:\n{text}"
        );
    }
}

fn secrets(expected: &Value) -> Vec<String> {
    expected["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sdk_logs_arrive_without_their_secrets_and_otherwise_intact() {
    let (grpc, http) = (free_port(), free_port());
    let c = Collector::start(&config(grpc, http, SCRUB, "wasm/scrub"), http);
    let mut sent = Vec::new();
    for (protocol, port) in [("grpc", grpc), ("http", http)] {
        let service = format!("payments-{protocol}");
        sent.push((service.clone(), send(&c, protocol, port, &service)));
    }
    let mut last = Err(String::new());
    let arrived = wait_until(Duration::from_secs(20), || {
        let logs = read_logs(&c.path("out.jsonl"));
        last = sent
            .iter()
            .try_for_each(|(service, expected)| check_intact(&logs, expected, service));
        last.is_ok()
    });
    assert!(arrived, "{last:?}\n{}", c.log());
    for (_, expected) in &sent {
        let secrets = secrets(expected);
        assert_no_secrets(&c, &secrets.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let logs = read_logs(&c.path("out.jsonl"));
    let owner = logs[0].resource.as_ref().unwrap();
    assert!(
        string(attribute(&owner.attributes, "owner.email")).is_some(),
        "the resource attribute stays, redacted"
    );
}

/// One record whose body is `trigger` (the hostile plugin's cue), with an e-mail address in
/// an attribute and in the body's neighbour attribute.
fn trigger_request() -> Vec<u8> {
    let s = |v: &str| AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(s("trigger-service")),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_000,
                    body: Some(s("trigger")),
                    attributes: vec![KeyValue {
                        key: "customer.email".into(),
                        value: Some(s("trigger.person@example.com")),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

#[test]
fn a_plugin_failing_before_the_scrubber_lets_no_record_through_unscrubbed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // (mode, extra limits, on_error, whether the failed record passes on (to the scrubber)).
    let cases = [
        ("panic", "", "refuse", false),
        (
            "loop",
            "\n    limits: { call_timeout: 200ms }",
            "drop",
            false,
        ),
        ("wrong-signal", "", "refuse", false),
        ("bad-index", "", "drop", false),
        ("error", "", "pass", true),
    ];
    for (mode, limits, on_error, passes) in cases {
        let (grpc, http) = (free_port(), free_port());
        let processors = format!(
            "  wasm/hostile:\n    plugin: {HOSTILE}\n    config: {{ mode: {mode} }}\n    \
             on_error: {on_error}{limits}\n{SCRUB}"
        );
        let c = Collector::start(
            &config(grpc, http, &processors, "wasm/hostile, wasm/scrub"),
            http,
        );
        let status = rt.block_on(async {
            http_request(
                "POST",
                &format!("http://127.0.0.1:{http}/v1/logs"),
                &[("content-type", "application/x-protobuf")],
                trigger_request(),
            )
            .await
            .expect("the collector answers")
            .status
        });
        match on_error {
            "refuse" => assert!(
                status == 503 || status == 429,
                "{mode}: refused as retryable, got {status}"
            ),
            _ => assert_eq!(status, 200, "{mode}"),
        }
        let service = format!("payments-{mode}");
        let expected = send(&c, "http", http, &service);
        let mut last = Err(String::new());
        let arrived = wait_until(Duration::from_secs(20), || {
            last = check_intact(&read_logs(&c.path("out.jsonl")), &expected, &service);
            last.is_ok()
        });
        assert!(arrived, "{mode}: {last:?}\n{}", c.log());
        let mut secrets = secrets(&expected);
        secrets.push("trigger.person".into());
        assert_no_secrets(&c, &secrets.iter().map(String::as_str).collect::<Vec<_>>());
        let logs = read_logs(&c.path("out.jsonl"));
        let trigger = logs
            .iter()
            .flat_map(|rl| rl.scope_logs.iter().flat_map(|sl| &sl.log_records))
            .filter(|r| {
                r.body.as_ref().and_then(|b| b.value.as_ref())
                    == Some(&any_value::Value::StringValue("trigger".into()))
            })
            .count();
        assert_eq!(
            trigger,
            usize::from(passes),
            "{mode}, on_error: {on_error}: the failed record {}",
            if passes {
                "passes on, scrubbed"
            } else {
                "does not reach the file"
            }
        );
    }
}
