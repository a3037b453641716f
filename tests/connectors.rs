//! Connectors end to end: the Python OTel SDK sends traces of a known topology (frontend →
//! checkout → payments, with a database and a messaging call) to an `otlp` receiver whose
//! traces pipeline exports to a file, to two span-metrics connectors, to `servicegraph` and
//! to `forward`; a metrics pipeline receives from the span-metrics and service-graph
//! connectors and writes to a file, a second traces pipeline receives from `forward`. The
//! span metrics must count exactly what was sent (spans carrying a 50% sampling threshold
//! count twice), the fast connector while running, the slow one (which never flushes on its
//! own in the test's time) from the drain after SIGTERM, sent right after the spans; the
//! service graph must hold exactly the topology's edges with those counts.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric, number_data_point};
use wasmcol_tests::{
    Collector, all_spans, free_port, python, read_json_lines, wait_until, workspace_root,
};

/// Traces sent as recorded, traces sent with `ot=th:8`, and every how many of the first a
/// payment fails.
const TRACES: usize = 10;
const SAMPLED: usize = 5;
const ERRORS_EVERY: usize = 5;
const SPANS_PER_TRACE: usize = 7;

fn config(grpc: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  file/spans:
    path: "{{dir}}/spans.jsonl"
    flush_interval: 50ms
  file/copy:
    path: "{{dir}}/copy.jsonl"
    flush_interval: 50ms
  file/metrics:
    path: "{{dir}}/metrics.jsonl"
    flush_interval: 50ms
connectors:
  spanmetrics:
    metrics_flush_interval: 1h
  span_metrics/fast:
    metrics_flush_interval: 200ms
    namespace: fast
    dimensions:
      - name: db.system
      - name: messaging.system
        default: none
  servicegraph:
    metrics_flush_interval: 1h
    store: {{ ttl: 1s }}
    virtual_node_peer_attributes: [peer.service, db.name, db.system, messaging.system]
  forward:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/spans, spanmetrics, span_metrics/fast, servicegraph, forward]
    traces/copy:
      receivers: [forward]
      exporters: [file/copy]
    metrics:
      receivers: [spanmetrics, span_metrics/fast, servicegraph]
      processors: [batch]
      exporters: [file/metrics]
  telemetry:
    metrics:
      address: none
processors:
  batch:
    timeout: 100ms
"#
    )
}

fn send(grpc: u16) {
    let out = Command::new(python())
        .arg(workspace_root().join("tests/python/send_topology.py"))
        .args(["--endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--traces", &TRACES.to_string()])
        .args(["--sampled", &SAMPLED.to_string()])
        .args(["--errors-every", &ERRORS_EVERY.to_string()])
        .output()
        .expect("run send_topology.py");
    assert!(
        out.status.success(),
        "send_topology.py failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["spans"], (TRACES + SAMPLED) * SPANS_PER_TRACE);
}

/// Runs tests/python/send_sampled.py: `spans` SDK spans to `grpc`, the SDK keeping `fraction`
/// of them; returns its JSON summary (`kept`, `th`).
fn send_sampled(grpc: u16, spans: i64, fraction: &str) -> serde_json::Value {
    let out = Command::new(python())
        .arg(workspace_root().join("tests/python/send_sampled.py"))
        .args(["--endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--spans", &spans.to_string(), "--fraction", fraction])
        .output()
        .expect("run send_sampled.py");
    assert!(
        out.status.success(),
        "send_sampled.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("send_sampled.py prints JSON")
}

/// The metrics in a file exporter's JSON lines, in the order written.
fn read_metrics(path: &Path) -> Vec<ResourceMetrics> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && l.starts_with(r#"{"resourceMetrics""#))
        .flat_map(|l| {
            wasmcol::otlp::json::decode_metrics(l.as_bytes())
                .unwrap()
                .resource_metrics
        })
        .collect()
}

fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => format!("{other:?}"),
        }
    })
}

/// A series: service, span name, kind, status, then the extra dimensions asked for.
type Series = Vec<String>;

/// The latest value of each series of the sum `name` (cumulative: the latest is the total),
/// and of the count of the histogram `duration` beside it.
fn totals(
    metrics: &[ResourceMetrics],
    namespace: &str,
    extra: &[&str],
) -> BTreeMap<Series, (i64, u64)> {
    let mut calls: BTreeMap<Series, i64> = BTreeMap::new();
    let mut counts: BTreeMap<Series, u64> = BTreeMap::new();
    let series = |attrs: &[KeyValue]| -> Series {
        ["service.name", "span.name", "span.kind", "status.code"]
            .iter()
            .chain(extra)
            .map(|k| text(attrs, k).unwrap_or_else(|| "-".into()))
            .collect()
    };
    for rm in metrics {
        let service = text(&rm.resource.as_ref().unwrap().attributes, "service.name");
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            if m.name == format!("{namespace}.calls") {
                let Some(metric::Data::Sum(sum)) = &m.data else {
                    panic!("{} is not a sum", m.name)
                };
                assert!(sum.is_monotonic);
                assert_eq!(sum.aggregation_temporality, 2, "cumulative");
                for p in &sum.data_points {
                    assert_eq!(text(&p.attributes, "service.name"), service);
                    let Some(number_data_point::Value::AsInt(v)) = p.value else {
                        panic!("{p:?}")
                    };
                    calls.insert(series(&p.attributes), v);
                }
            } else if m.name == format!("{namespace}.duration") {
                assert_eq!(m.unit, "ms");
                let Some(metric::Data::Histogram(h)) = &m.data else {
                    panic!("{} is not a histogram", m.name)
                };
                for p in &h.data_points {
                    assert_eq!(p.explicit_bounds.len(), 16);
                    assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
                    counts.insert(series(&p.attributes), p.count);
                }
            }
        }
    }
    calls
        .into_iter()
        .map(|(k, v)| {
            let c = counts.get(&k).copied().unwrap_or(0);
            (k, (v, c))
        })
        .collect()
}

/// What was sent, per series: `extra` gives each span's extra dimension values.
fn expected(extra: &dyn Fn(&str) -> Vec<&'static str>) -> BTreeMap<Series, (i64, u64)> {
    // Every span of a sampled trace stands for two.
    let all = (TRACES + 2 * SAMPLED) as i64;
    let failed = TRACES.div_ceil(ERRORS_EVERY) as i64;
    let rows: [(&str, &str, &str, &str, i64); 8] = [
        (
            "frontend",
            "GET /checkout",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_UNSET",
            all,
        ),
        (
            "frontend",
            "POST /checkout",
            "SPAN_KIND_CLIENT",
            "STATUS_CODE_UNSET",
            all,
        ),
        (
            "checkout",
            "POST /checkout",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_UNSET",
            all,
        ),
        (
            "checkout",
            "SELECT orders",
            "SPAN_KIND_CLIENT",
            "STATUS_CODE_UNSET",
            all,
        ),
        (
            "checkout",
            "POST /pay",
            "SPAN_KIND_CLIENT",
            "STATUS_CODE_UNSET",
            all,
        ),
        (
            "checkout",
            "orders publish",
            "SPAN_KIND_PRODUCER",
            "STATUS_CODE_UNSET",
            all,
        ),
        (
            "payments",
            "POST /pay",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_UNSET",
            all - failed,
        ),
        (
            "payments",
            "POST /pay",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_ERROR",
            failed,
        ),
    ];
    rows.into_iter()
        .map(|(service, name, kind, status, n)| {
            let mut key: Series = [service, name, kind, status].map(String::from).to_vec();
            key.extend(extra(name).into_iter().map(String::from));
            (key, (n, n as u64))
        })
        .collect()
}

/// `(client, server, connection_type) -> (requests, failed)`: the latest cumulative values.
type Edges = BTreeMap<(String, String, String), (i64, i64)>;

fn edges(metrics: &[ResourceMetrics]) -> Edges {
    let mut out = Edges::new();
    for m in metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        let failed = match m.name.as_str() {
            "traces_service_graph_request_total" => false,
            "traces_service_graph_request_failed_total" => true,
            _ => continue,
        };
        let Some(metric::Data::Sum(sum)) = &m.data else {
            panic!("{} is not a sum", m.name)
        };
        for p in &sum.data_points {
            let Some(number_data_point::Value::AsInt(v)) = p.value else {
                panic!("{p:?}")
            };
            let key = ["client", "server", "connection_type"]
                .map(|k| text(&p.attributes, k).unwrap_or_default());
            let entry = out.entry(key.into()).or_default();
            if failed {
                entry.1 = v;
            } else {
                entry.0 = v;
            }
        }
    }
    out
}

fn expected_edges() -> Edges {
    let all = (TRACES + 2 * SAMPLED) as i64;
    let failed = TRACES.div_ceil(ERRORS_EVERY) as i64;
    [
        ("user", "frontend", "virtual_node", 0),
        ("frontend", "checkout", "", 0),
        ("checkout", "payments", "", failed),
        ("checkout", "orders", "database", 0),
        ("checkout", "kafka", "virtual_node", 0),
    ]
    .into_iter()
    .map(|(c, s, t, f)| ((c.into(), s.into(), t.into()), (all, f)))
    .collect()
}

#[test]
fn span_metrics_count_what_was_sent_and_are_drained_on_sigterm() {
    let grpc = free_port();
    let mut c = Collector::start(&config(grpc), grpc);
    send(grpc);
    let sent = (TRACES + SAMPLED) * SPANS_PER_TRACE;

    // The fast connector flushes while running: its totals reach what was sent.
    let fast_extra = |name: &str| match name {
        "SELECT orders" => vec!["postgresql", "none"],
        "orders publish" => vec!["-", "kafka"],
        _ => vec!["-", "none"],
    };
    let want_fast = expected(&fast_extra);
    let metrics = c.path("metrics.jsonl");
    let reached = wait_until(Duration::from_secs(20), || {
        totals(
            &read_metrics(&metrics),
            "fast",
            &["db.system", "messaging.system"],
        ) == want_fast
    });
    assert!(
        reached,
        "fast span metrics never matched what was sent:\n got {:#?}\nwant {want_fast:#?}\n{}",
        totals(
            &read_metrics(&metrics),
            "fast",
            &["db.system", "messaging.system"]
        ),
        c.log()
    );
    // The slow one has not flushed yet.
    assert!(totals(&read_metrics(&metrics), "traces.span.metrics", &[]).is_empty());

    // The spans themselves went to the file, and through `forward` to the copy, unchanged.
    assert!(wait_until(Duration::from_secs(10), || {
        all_spans(&read_json_lines(&c.path("copy.jsonl"))).len() == sent
    }));
    assert_eq!(
        all_spans(&read_json_lines(&c.path("spans.jsonl"))).len(),
        sent
    );

    assert_eq!(c.stop(), 0, "{}", c.log());
    let written = read_metrics(&metrics);
    let drained = totals(&written, "traces.span.metrics", &[]);
    assert_eq!(drained, expected(&|_| vec![]), "{}", c.log());
    assert_eq!(edges(&written), expected_edges(), "{}", c.log());
}

#[test]
fn a_sigterm_right_after_sending_still_writes_the_metrics() {
    let grpc = free_port();
    let mut c = Collector::start(&config(grpc), grpc);
    send(grpc);
    // No waiting: the spans may still be in the batch processor when the signal comes.
    assert_eq!(c.stop(), 0, "{}", c.log());
    let metrics = read_metrics(&c.path("metrics.jsonl"));
    assert_eq!(
        totals(&metrics, "traces.span.metrics", &[]),
        expected(&|_| vec![]),
        "{}",
        c.log()
    );
    let sent = (TRACES + SAMPLED) * SPANS_PER_TRACE;
    assert_eq!(
        all_spans(&read_json_lines(&c.path("copy.jsonl"))).len(),
        sent
    );
}

#[test]
fn components_lists_the_connectors() {
    let out = Command::new(wasmcol_tests::binary("wasmcol"))
        .arg("components")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let connectors = text
        .split("connectors:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no connectors section in:\n{text}"));
    for name in ["forward", "spanmetrics", "span_metrics", "servicegraph"] {
        assert!(connectors.contains(name), "{name} missing from:\n{text}");
    }
}

/// Behind a 10% consistent probability sampler (in the SDK, recording `ot=th` as the
/// OpenTelemetry specification says), the weighted calls estimate the spans made, not the
/// spans kept: within 5% over 100k spans. The sampled trace ids are seeded, so the run is
/// repeatable.
#[test]
fn weighted_counts_estimate_the_traffic_before_sampling() {
    const MADE: i64 = 100_000;
    let grpc = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  file:
    path: "{{dir}}/metrics.jsonl"
    flush_interval: 50ms
connectors:
  spanmetrics:
    metrics_flush_interval: 1h
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [spanmetrics]
    metrics:
      receivers: [spanmetrics]
      exporters: [file]
  telemetry:
    metrics:
      address: none
"#
    );
    let mut c = Collector::start(&config, grpc);
    let summary = send_sampled(grpc, MADE, "0.1");
    assert_eq!(summary["th"], "e6666666666666");
    let kept = summary["kept"].as_i64().unwrap();
    assert!(kept > 0 && kept < MADE / 5, "{summary}");
    assert_eq!(c.stop(), 0, "{}", c.log());

    let totals = totals(
        &read_metrics(&c.path("metrics.jsonl")),
        "traces.span.metrics",
        &[],
    );
    let (calls, count) = totals
        .values()
        .copied()
        .reduce(|a, b| (a.0 + b.0, a.1 + b.1))
        .expect("no span metrics");
    // Each kept span stands for 10: exactly 10 × kept (rounded), close to what was made.
    assert_eq!(calls, kept * 10, "{summary}");
    assert_eq!(count, calls as u64);
    let error = (calls - MADE).abs() as f64 / MADE as f64;
    eprintln!(
        "estimate {calls} of {MADE} made ({kept} kept): {:.2}% off",
        error * 100.0
    );
    assert!(
        error < 0.05,
        "estimate {calls} of {MADE} made ({kept} kept)"
    );
}

/// Behind wasmcol's own `probabilistic_sampler` at 10%, in each of its modes, the weighted
/// calls of the span metrics estimate the spans made within 5% over 100k spans: the sampler
/// records its threshold in each kept span's `tracestate`. The SDK keeps every span
/// (`ot=th:0`), so without that record the calls would be a tenth of the traffic.
#[test]
fn weighted_counts_behind_the_probabilistic_sampler_estimate_the_traffic() {
    const MADE: i64 = 100_000;
    const MODES: [&str; 3] = ["hash_seed", "proportional", "equalizing"];
    let grpc = free_port();
    let mut config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
service:
  telemetry:
    metrics:
      address: none
  pipelines:
"#
    );
    let (mut processors, mut connectors, mut exporters) = (
        String::from("processors:\n"),
        String::from("connectors:\n"),
        String::from("exporters:\n"),
    );
    for mode in MODES {
        config.push_str(&format!(
            "    traces/{mode}:\n      receivers: [otlp]\n      processors: [probabilistic_sampler/{mode}]\n      exporters: [spanmetrics/{mode}]\n    metrics/{mode}:\n      receivers: [spanmetrics/{mode}]\n      exporters: [file/{mode}]\n"
        ));
        processors.push_str(&format!(
            "  probabilistic_sampler/{mode}:\n    sampling_percentage: 10\n    mode: {mode}\n    hash_seed: 7\n"
        ));
        connectors.push_str(&format!(
            "  spanmetrics/{mode}:\n    metrics_flush_interval: 1h\n"
        ));
        exporters.push_str(&format!(
            "  file/{mode}:\n    path: \"{{dir}}/{mode}.jsonl\"\n    flush_interval: 50ms\n"
        ));
    }
    let config = format!("{config}{processors}{connectors}{exporters}");
    let mut c = Collector::start(&config, grpc);
    let summary = send_sampled(grpc, MADE, "1");
    assert_eq!(summary["kept"], MADE, "{summary}");
    assert_eq!(c.stop(), 0, "{}", c.log());

    for mode in MODES {
        let totals = totals(
            &read_metrics(&c.path(&format!("{mode}.jsonl"))),
            "traces.span.metrics",
            &[],
        );
        let (calls, count) = totals
            .values()
            .copied()
            .reduce(|a, b| (a.0 + b.0, a.1 + b.1))
            .unwrap_or_else(|| panic!("{mode}: no span metrics"));
        assert_eq!(count, calls as u64, "{mode}");
        let error = (calls - MADE).abs() as f64 / MADE as f64;
        eprintln!(
            "{mode}: estimate {calls} of {MADE} made: {:.2}% off",
            error * 100.0
        );
        assert!(error < 0.05, "{mode}: estimate {calls} of {MADE} made");
    }
}

/// Behind `tail_sampling` with a 10% `probabilistic` policy, the weighted calls of the span
/// metrics estimate the spans made within 5% over 100k spans, per series: the processor records
/// the deciding policy's probability in each kept span's `tracestate` (`ot=th`), so every kept
/// span counts for about 10. The SDK keeps every span (`ot=th:0`).
#[test]
fn weighted_counts_behind_tail_sampling_estimate_the_traffic() {
    const MADE: i64 = 100_000;
    let grpc = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  tail_sampling:
    decision_wait: 1s
    num_traces: 200000
    policies:
      - {{ name: baseline, type: probabilistic, probabilistic: {{ sampling_percentage: 10 }} }}
connectors:
  spanmetrics:
    metrics_flush_interval: 1h
exporters:
  file:
    path: "{{dir}}/metrics.jsonl"
    flush_interval: 50ms
service:
  telemetry:
    metrics:
      address: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [spanmetrics]
    metrics:
      receivers: [spanmetrics]
      exporters: [file]
"#
    );
    let mut c = Collector::start(&config, grpc);
    let summary = send_sampled(grpc, MADE, "1");
    assert_eq!(summary["kept"], MADE, "{summary}");
    // Shutdown decides the traces still waiting, then the connector reports.
    assert_eq!(c.stop(), 0, "{}", c.log());

    let totals = totals(
        &read_metrics(&c.path("metrics.jsonl")),
        "traces.span.metrics",
        &[],
    );
    assert!(!totals.is_empty(), "no span metrics:\n{}", c.log());
    let made_per_series = MADE / totals.len() as i64;
    for (series, (calls, count)) in &totals {
        assert_eq!(*count, *calls as u64, "{series:?}");
        // Unweighted, the calls would be about a tenth of the spans made.
        let error = (calls - made_per_series).abs() as f64 / made_per_series as f64;
        eprintln!(
            "{series:?}: estimate {calls} of {made_per_series} made: {:.2}% off",
            error * 100.0
        );
        assert!(
            error < 0.05,
            "{series:?}: estimate {calls} of {made_per_series} made"
        );
    }
}
