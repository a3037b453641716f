//! Plugins on metrics, end to end: the Python OTel SDK's `MeterProvider` (a counter, an
//! up-down counter, a histogram and a gauge) sends data points whose attributes carry e-mail
//! addresses, card numbers and bearer tokens, over gRPC and HTTP, through `wasm/enrich`
//! (`builtin:enrich`) and `wasm/scrub` (`builtin:pii-scrub`) into the file exporter.
//!
//! Checked: none of the secrets reaches the file; the scrubbed attributes hold their
//! placeholders; every data point the SDK sent arrives with its value (in each of the SDK's
//! exports); enrich's resource and data-point attributes are there.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric, number_data_point};
use serde_json::Value;
use wasmcol_tests::{Collector, free_port, python, wait_until, workspace_root};

const RECORDS: usize = 10;

fn config(grpc: u16, http: u16) -> String {
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
  wasm/enrich:
    plugin: builtin:enrich
    tables:
      teams: {{ rows: {{ checkout-grpc: {{ team: payments }}, checkout-http: {{ team: payments }} }} }}
      routes: {{ rows: {{ /r0: {{ owner: cart-team }} }} }}
    config:
      resource:
        - lookup: {{ table: teams, key: service.name, columns: {{ team.name: team }} }}
      span:
        - lookup: {{ table: routes, key: route, columns: {{ route.owner: owner }} }}
        - set: {{ attribute: enriched, value: true }}
  wasm/scrub:
    plugin: builtin:pii-scrub
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 20ms
service:
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [wasm/enrich, wasm/scrub]
      exporters: [file]
    logs:
      receivers: [otlp]
      processors: [wasm/enrich, wasm/scrub]
      exporters: [file]
  telemetry:
    metrics:
      address: none
"#
    )
}

/// Every resource's metrics in the file exporter's JSON lines (complete lines only).
fn read_metrics(path: &Path) -> (String, Vec<ResourceMetrics>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let metrics = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && l.starts_with(r#"{"resourceMetrics""#))
        .flat_map(|l| {
            wasmcol::otlp::json::decode_metrics(l.as_bytes())
                .unwrap()
                .resource_metrics
        })
        .collect();
    (text, metrics)
}

fn attribute<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn string<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// One data point as it arrived: (service, metric, series key) → (value, attributes).
type Points = BTreeMap<(String, String, String), Vec<(Value, Vec<KeyValue>)>>;

fn points(metrics: &[ResourceMetrics]) -> Points {
    let mut out = Points::new();
    for rm in metrics {
        let resource = rm.resource.clone().unwrap_or_default();
        let service = string(&resource.attributes, "service.name")
            .unwrap_or_default()
            .to_string();
        for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
            let mut add = |attrs: &[KeyValue], value: Value| {
                let key = string(attrs, "route")
                    .or_else(|| string(attrs, "room"))
                    .unwrap_or_default()
                    .to_string();
                out.entry((service.clone(), m.name.clone(), key))
                    .or_default()
                    .push((value, attrs.to_vec()));
            };
            let number = |v: &Option<number_data_point::Value>| match v {
                Some(number_data_point::Value::AsInt(i)) => serde_json::json!(i),
                Some(number_data_point::Value::AsDouble(d)) => serde_json::json!(d),
                None => Value::Null,
            };
            match m.data.as_ref() {
                Some(metric::Data::Sum(s)) => {
                    for p in &s.data_points {
                        add(&p.attributes, number(&p.value));
                    }
                }
                Some(metric::Data::Gauge(g)) => {
                    for p in &g.data_points {
                        add(&p.attributes, number(&p.value));
                    }
                }
                Some(metric::Data::Histogram(h)) => {
                    for p in &h.data_points {
                        add(
                            &p.attributes,
                            serde_json::json!({"count": p.count, "sum": p.sum.unwrap_or_default()}),
                        );
                    }
                }
                other => panic!("{}: unexpected data {other:?}", m.name),
            }
        }
    }
    out
}

/// Every point the SDK says it sent arrived, with its value, scrubbed and enriched.
fn check(points: &Points, service: &str, expected: &Value) -> Result<(), String> {
    for (name, m) in expected["metrics"].as_object().unwrap() {
        for (key, want) in m["points"].as_object().unwrap() {
            let got = points
                .get(&(service.to_string(), name.clone(), key.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            if got.is_empty() {
                return Err(format!("{service} {name} {key}: no point"));
            }
            // The SDK exports at its flush and again at shutdown: cumulative, the same point.
            for (value, attrs) in got {
                check_point(service, name, key, want, value, attrs)?;
            }
        }
    }
    Ok(())
}

/// One point as it arrived: its value, placeholders and enrichment.
fn check_point(
    service: &str,
    name: &str,
    key: &str,
    want: &Value,
    value: &Value,
    attrs: &[KeyValue],
) -> Result<(), String> {
    let same = match (value, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a["count"] == b["count"] && a["sum"].as_f64() == b["sum"].as_f64(),
    };
    if !same {
        return Err(format!("{service} {name} {key}: {value} != {want}"));
    }
    // The scrubbed attributes hold placeholders.
    let email = string(attrs, "user.email").unwrap_or_default();
    let card = string(attrs, "payment.card").unwrap_or_default();
    let auth = string(attrs, "auth").unwrap_or_default();
    if email.is_empty() || !email.chars().all(|c| c == '*') {
        return Err(format!("{service} {name} {key}: user.email {email:?}"));
    }
    if !card.starts_with("card ") || !card.contains('*') {
        return Err(format!("{service} {name} {key}: payment.card {card:?}"));
    }
    if !auth.starts_with("Bearer ") || !auth.contains('*') {
        return Err(format!("{service} {name} {key}: auth {auth:?}"));
    }
    // Enrich's data-point attributes.
    if attribute(attrs, "enriched") != Some(&any_value::Value::BoolValue(true)) {
        return Err(format!("{service} {name} {key}: not enriched: {attrs:?}"));
    }
    let owner = string(attrs, "route.owner");
    if owner != (key == "/r0").then_some("cart-team") {
        return Err(format!("{service} {name} {key}: route.owner {owner:?}"));
    }
    Ok(())
}

#[test]
fn metrics_from_the_python_sdk_are_scrubbed_and_enriched_and_every_point_arrives() {
    let (grpc, http) = (free_port(), free_port());
    let c = Collector::start(&config(grpc, http), http);
    let mut sent = Vec::new();
    for (protocol, port) in [("grpc", grpc), ("http", http)] {
        let service = format!("checkout-{protocol}");
        let expected = c.path(&format!("expected-{protocol}.json"));
        let status = Command::new(python())
            .arg(workspace_root().join("tests/python/send_logs_metrics.py"))
            .args(["--protocol", protocol, "--endpoint"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--records", &RECORDS.to_string(), "--service", &service])
            .arg("--pii")
            .arg("--expected")
            .arg(&expected)
            .status()
            .expect("run python");
        assert!(
            status.success(),
            "send_logs_metrics.py failed:\n{}",
            c.log()
        );
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
        sent.push((service, expected));
    }

    let path = c.path("out.jsonl");
    let mut last = Err(String::new());
    let arrived = wait_until(Duration::from_secs(30), || {
        let (_, metrics) = read_metrics(&path);
        let points = points(&metrics);
        last = sent
            .iter()
            .try_for_each(|(service, expected)| check(&points, service, expected));
        last.is_ok()
    });
    assert!(arrived, "{last:?}\n{}", c.log());

    // No secret anywhere in the file, whatever the signal.
    let (text, metrics) = read_metrics(&path);
    for (_, expected) in &sent {
        for series in expected["pii"].as_object().unwrap().values() {
            for value in series.as_object().unwrap().values() {
                let value = value.as_str().unwrap();
                // The secret part: the address, the card's digits, the token.
                let secret = value
                    .strip_prefix("card ")
                    .or_else(|| value.strip_prefix("Bearer "))
                    .unwrap_or(value);
                assert!(!text.contains(secret), "{secret} reached the file");
                let digits: String = secret.chars().filter(char::is_ascii_digit).collect();
                if digits.len() >= 12 {
                    assert!(!text.contains(&digits), "{digits} reached the file");
                }
            }
        }
    }
    // Enrich's resource attribute.
    for rm in &metrics {
        let attrs = &rm.resource.as_ref().unwrap().attributes;
        assert_eq!(string(attrs, "team.name"), Some("payments"), "{attrs:?}");
    }
    // Exactly the series sent, 7 per service, each in every export (none lost from one).
    let points = points(&metrics);
    assert_eq!(points.len(), 14, "{:?}", points.keys().collect::<Vec<_>>());
    let copies: Vec<usize> = points.values().map(Vec::len).collect();
    assert!(copies.iter().all(|n| *n == copies[0]), "{copies:?}");
}
