//! `trace_analysis` end to end: the Python OTel SDK sends traces with planted patterns (an N+1
//! of 12 identical database calls, 3 duplicate calls, a 30-way fan-out, an error raised 3
//! levels down and propagated to the root, 4 independent HTTP calls made one after the other;
//! tests/python/send_patterns.py) to an `otlp`
//! receiver whose traces pipeline exports to `trace_analysis`; one pipeline writes the
//! connector's analysed traces to a file, another its findings metric. Each pattern must be
//! found exactly once per trace, on the span it is about and marking exactly the spans
//! involved; a clean corpus of the same shapes must yield no finding at all. The critical
//! path's self times must add up to the traces' durations, the slow leaf ("charge card")
//! the largest share below the root; the dependency counts must show the payment failures
//! failing the frontend's requests.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    NumberDataPoint, ResourceMetrics, metric, number_data_point,
};
use wasmcol_tests::{
    Collector, DownPort, all_spans, free_port, metric_value, python, read_json_lines, run_loadgen,
    scrape_metrics, wait_until, workspace_root,
};

const TRACES: usize = 5;
/// Spans per trace: root, N+1 (2 + 12), duplicates (3 × 2), fan-out (30 × 2), payment (3),
/// serial calls (1 + 4).
const SPANS_PER_TRACE: usize = 1 + 14 + 6 + 60 + 3 + 5;
const CLEAN_SPANS_PER_TRACE: usize = 1 + 14 + 6 + 30 + 3 + 5;

/// OTLP → `trace_analysis` (with `options`: more YAML lines of the connector, indented as
/// its options) → analysed traces and findings to files.
fn config(grpc: u16, options: &str) -> String {
    config_with_metrics(grpc, "none", options)
}

/// [`config`], the collector's own metrics served on `metrics_address` (or `none`).
fn config_with_metrics(grpc: u16, metrics_address: &str, options: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  file/traces:
    path: "{{dir}}/traces.jsonl"
    flush_interval: 50ms
  file/metrics:
    path: "{{dir}}/metrics.jsonl"
    flush_interval: 50ms
connectors:
  trace_analysis:
    decision_wait: 1s
    metrics_flush_interval: 1h
{options}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [trace_analysis]
    traces/analysed:
      receivers: [trace_analysis]
      exporters: [file/traces]
    metrics:
      receivers: [trace_analysis]
      exporters: [file/metrics]
  telemetry:
    metrics:
      address: {metrics_address}
"#
    )
}

/// The detectors off natively, on as the analyser plugin `builtin:trace-analysis`.
const DETECTORS_AS_PLUGIN: &str = "    n_plus_one: { enabled: false }
    duplicate_call: { enabled: false }
    serial_calls: { enabled: false }
    fan_out: { enabled: false }
    error_origin: { enabled: false }
    analysers:
      - plugin: builtin:trace-analysis
        limits: { call_timeout: 10s }";

fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => format!("{other:?}"),
        }
    })
}

fn strings(attrs: &[KeyValue], key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kv in attrs.iter().filter(|kv| kv.key == key) {
        let Some(any_value::Value::ArrayValue(a)) =
            kv.value.as_ref().and_then(|v| v.value.as_ref())
        else {
            panic!("{key} is not a string array: {kv:?}")
        };
        for v in &a.values {
            if let Some(any_value::Value::StringValue(s)) = v.value.as_ref() {
                out.push(s.clone());
            }
        }
    }
    out
}

/// What one run produced.
struct Run {
    trace_ids: Vec<String>,
    /// Per trace id, per pattern: how many spans carry it.
    marked: BTreeMap<String, BTreeMap<String, usize>>,
    /// Spans per trace id.
    spans: BTreeMap<String, usize>,
    /// (pattern, service, span name) → (value, worst trace id).
    findings: BTreeMap<(String, String, String), (f64, String)>,
    /// Per trace id, the services an error origin's error propagated to.
    propagated: BTreeMap<String, Vec<String>>,
    /// (service, span name) → seconds of self time on the critical path.
    critical: BTreeMap<(String, String), f64>,
    /// (client, server) → {calls, failed_calls, failed_entries}.
    dependencies: BTreeMap<(String, String), BTreeMap<String, f64>>,
}

fn run(clean: bool) -> Run {
    run_with(clean, "")
}

/// [`run`] with more options of the connector.
fn run_with(clean: bool, options: &str) -> Run {
    let grpc = free_port();
    let config = config(grpc, options);
    let mut c = if options.is_empty() {
        Collector::start(&config, grpc)
    } else {
        start_validated(&config, grpc)
    };
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("tests/python/send_patterns.py"))
        .args(["--endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--traces", &TRACES.to_string()]);
    if clean {
        cmd.arg("--clean");
    }
    let out = cmd.output().expect("run send_patterns.py");
    assert!(
        out.status.success(),
        "send_patterns.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let trace_ids: Vec<String> = summary["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    // Traces are analysed `decision_wait` after their first span, while running.
    let sent = summary["spans"].as_u64().unwrap() as usize;
    let path = c.path("traces.jsonl");
    assert!(
        wait_until(Duration::from_secs(15), || path.exists()
            && all_spans(&read_json_lines(&path)).len() == sent),
        "analysed traces not passed on:\n{}",
        c.log()
    );
    // SIGTERM drains the metric.
    assert_eq!(c.stop(), 0, "{}", c.log());

    let mut marked: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut spans: BTreeMap<String, usize> = BTreeMap::new();
    let mut propagated = BTreeMap::new();
    let traces = read_json_lines(&c.path("traces.jsonl"));
    for span in all_spans(&traces) {
        let id = hex(&span.trace_id);
        *spans.entry(id.clone()).or_default() += 1;
        for p in strings(&span.attributes, "trace_analysis.findings") {
            *marked.entry(id.clone()).or_default().entry(p).or_default() += 1;
        }
        let reached = strings(&span.attributes, "trace_analysis.error.propagated_to");
        if !reached.is_empty() {
            assert_eq!(span.name, "charge card");
            propagated.insert(id, reached);
        }
    }

    let mut findings = BTreeMap::new();
    let text_file = std::fs::read_to_string(c.path("metrics.jsonl")).unwrap_or_default();
    let metrics: Vec<ResourceMetrics> = text_file
        .lines()
        .filter(|l| l.starts_with(r#"{"resourceMetrics""#))
        .flat_map(|l| {
            wasmcol::otlp::json::decode_metrics(l.as_bytes())
                .unwrap()
                .resource_metrics
        })
        .collect();
    let mut critical = BTreeMap::new();
    let mut dependencies = BTreeMap::new();
    for rm in &metrics {
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let Some(metric::Data::Sum(sum)) = &m.data else {
                panic!("{} is not a sum", m.name)
            };
            assert!(sum.is_monotonic);
            assert_eq!(sum.aggregation_temporality, 2, "cumulative");
            for p in &sum.data_points {
                let Some(number_data_point::Value::AsDouble(v)) = p.value else {
                    panic!("{p:?}")
                };
                let key = |k: &str| text(&p.attributes, k).unwrap_or_default();
                if let Some(which) = m.name.strip_prefix("trace_analysis.dependency.") {
                    let edge = (key("client"), key("server"));
                    dependencies
                        .entry(edge)
                        .or_insert_with(BTreeMap::new)
                        .insert(which.to_owned(), v);
                    continue;
                }
                if m.name == "trace_analysis.critical_path.self_time" {
                    assert_eq!(m.unit, "s");
                    critical.insert((key("service.name"), key("span.name")), v);
                    continue;
                }
                assert_eq!(m.name, "trace_analysis.findings");
                findings.insert(
                    (key("pattern"), key("service.name"), key("span.name")),
                    (v, key("trace_analysis.worst_trace_id")),
                );
            }
        }
    }
    Run {
        trace_ids,
        marked,
        spans,
        findings,
        propagated,
        critical,
        dependencies,
    }
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn planted_patterns_are_found_once_per_trace() {
    let run = run(false);
    assert_eq!(run.trace_ids.len(), TRACES);
    // Every span of every trace is passed on, analysed as one trace.
    assert_eq!(
        run.spans.keys().cloned().collect::<BTreeSet<_>>(),
        run.trace_ids.iter().cloned().collect()
    );
    assert!(
        run.spans.values().all(|n| *n == SPANS_PER_TRACE),
        "{:?}",
        run.spans
    );
    // Each pattern once per trace, on the span it is about.
    let expected: BTreeMap<(String, String, String), f64> = [
        ("n_plus_one", "orders", "GET /orders/{id}"),
        ("duplicate_call", "frontend", "GET /order"),
        ("fan_out", "frontend", "GET /order"),
        ("error_origin", "payments", "charge card"),
        ("serial_calls", "frontend", "render page"),
    ]
    .into_iter()
    .map(|(p, s, n)| ((p.into(), s.into(), n.into()), TRACES as f64))
    .collect();
    let found: BTreeMap<_, _> = run
        .findings
        .iter()
        .map(|(k, (v, _))| (k.clone(), *v))
        .collect();
    assert_eq!(found, expected);
    for (_, worst) in run.findings.values() {
        assert!(run.trace_ids.contains(worst), "worst trace {worst}");
    }
    // The spans involved: the parent and its 12 calls; the parent and the 3 duplicates; the
    // entry span and its 30 calls; the origin and the 3 spans the error reached; the parent
    // and its 4 serial calls.
    let marks: BTreeMap<String, usize> = [
        ("n_plus_one", 13),
        ("duplicate_call", 4),
        ("fan_out", 31),
        ("error_origin", 4),
        ("serial_calls", 5),
    ]
    .into_iter()
    .map(|(p, n)| (p.to_owned(), n))
    .collect();
    for id in &run.trace_ids {
        assert_eq!(run.marked.get(id), Some(&marks), "trace {id}");
        assert_eq!(
            run.propagated.get(id).map(Vec::as_slice),
            Some(&["frontend".to_owned()][..]),
            "trace {id}"
        );
    }
    // The critical path of each 400 ms trace: the root's own 95 ms (the gaps between the
    // calls it waits for last), the serial calls (40 ms each) and the 15 ms between them,
    // the payment, whose "charge card" (48 ms) is the slowest leaf on it, one of the 30
    // price calls (the others run alongside), the duplicates and the orders call.
    let seconds = |service: &str, span: &str| {
        run.critical
            .get(&(service.to_owned(), span.to_owned()))
            .copied()
            .unwrap_or_default()
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let n = TRACES as f64;
    let total: f64 = run.critical.values().sum();
    assert!(close(total, n * 0.4), "{:?}", run.critical);
    assert!(
        close(seconds("frontend", "GET /order"), n * 0.095),
        "{:?}",
        run.critical
    );
    assert!(
        close(seconds("frontend", "render page"), n * 0.015),
        "{:?}",
        run.critical
    );
    assert!(
        close(seconds("frontend", "GET /stock"), n * 0.040),
        "{:?}",
        run.critical
    );
    assert!(
        close(seconds("payments", "charge card"), n * 0.048),
        "{:?}",
        run.critical
    );
    assert!(
        close(seconds("pricing", "GET /price/{id}"), n * 0.018),
        "{:?}",
        run.critical
    );
    let slowest_leaf = run
        .critical
        .iter()
        .filter(|((_, span), _)| span != "GET /order")
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(k, _)| k.1.as_str());
    assert_eq!(slowest_leaf, Some("charge card"));
    // Dependencies: every failed payment failed the frontend's request (strong); nothing
    // else failed.
    let edge = |client: &str, server: &str| {
        let d = &run.dependencies[&(client.to_owned(), server.to_owned())];
        (d["calls"], d["failed_calls"], d["failed_entries"])
    };
    assert_eq!(edge("frontend", "payments"), (n, n, n));
    assert_eq!(edge("frontend", "pricing"), (30.0 * n, 0.0, 0.0));
    assert_eq!(edge("frontend", "users"), (3.0 * n, 0.0, 0.0));
    assert_eq!(edge("frontend", "orders"), (n, 0.0, 0.0));
    assert_eq!(edge("orders", "postgresql/shop"), (12.0 * n, 0.0, 0.0));
    for callee in ["inventory", "shipping", "reviews", "ads"] {
        assert_eq!(edge("frontend", callee), (n, 0.0, 0.0), "{callee}");
    }
    assert_eq!(run.dependencies.len(), 9, "{:?}", run.dependencies);
}

/// The detectors built to wasm and run as the analyser plugin `builtin:trace-analysis`, in
/// place of the native ones, find what the native ones find on the planted-pattern corpus:
/// the same patterns on the same spans of every trace, the same error propagation, the same
/// counts per pattern, service and span name; and nothing on the clean corpus.
#[test]
fn the_builtin_analyser_finds_what_the_native_detectors_find() {
    let native = run(false);
    let plugin = run_with(false, DETECTORS_AS_PLUGIN);
    assert!(!native.findings.is_empty() && !native.marked.is_empty());
    let counts = |r: &Run| -> BTreeMap<(String, String, String), f64> {
        r.findings
            .iter()
            .map(|(k, (v, _))| (k.clone(), *v))
            .collect()
    };
    assert_eq!(counts(&plugin), counts(&native));
    for (_, worst) in plugin.findings.values() {
        assert!(plugin.trace_ids.contains(worst), "worst trace {worst}");
    }
    // Trace ids differ between the runs; each run's traces have one shape.
    let per_trace = |r: &Run| {
        r.trace_ids
            .iter()
            .map(|id| (r.marked.get(id).cloned(), r.propagated.get(id).cloned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(per_trace(&plugin), per_trace(&native));
    assert_eq!(
        plugin.spans.values().collect::<Vec<_>>(),
        native.spans.values().collect::<Vec<_>>()
    );

    let clean = run_with(true, DETECTORS_AS_PLUGIN);
    assert!(clean.marked.is_empty(), "{:?}", clean.marked);
    assert!(clean.findings.is_empty(), "{:?}", clean.findings);
}

#[test]
fn a_clean_corpus_of_the_same_shapes_has_no_findings() {
    let run = run(true);
    assert_eq!(run.trace_ids.len(), TRACES);
    assert_eq!(run.spans.len(), TRACES);
    assert!(
        run.spans.values().all(|n| *n == CLEAN_SPANS_PER_TRACE),
        "{:?}",
        run.spans
    );
    assert!(run.marked.is_empty(), "{:?}", run.marked);
    assert!(run.findings.is_empty(), "{:?}", run.findings);
}

/// Traces offered at 1M per minute (one span each, from `wasmcol-loadgen`, which retries
/// refusals) to a `trace_analysis` whose buffer is far smaller than `decision_wait` of such
/// traffic needs: the buffer stays within its byte budget (plus at most one request) and trace
/// count, the traces analysed
/// early to make room are counted by reason, every span is taken in, and the process's memory
/// stays bounded by the budget, not by the traffic.
#[test]
fn a_million_traces_a_minute_stay_within_the_buffer_budget() {
    const BUDGET: f64 = 4.0 * 1024.0 * 1024.0;
    const NUM_TRACES: f64 = 50_000.0;
    const TRACES: u64 = 250_000;
    let (grpc, metrics_port) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  nop:
connectors:
  trace_analysis:
    decision_wait: 5s
    num_traces: {NUM_TRACES}
    max_buffer_bytes: 4MiB
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [trace_analysis]
    metrics:
      receivers: [trace_analysis]
      exporters: [nop]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
"#
    );
    let c = Collector::start(&config, grpc);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let scrape = || runtime.block_on(scrape_metrics(metrics_port));
    let value = |text: &str, series: &str| metric_value(text, series).unwrap_or(0.0);
    std::thread::sleep(Duration::from_millis(300));
    let baseline = c.peak_rss_bytes() as f64;

    let endpoint = format!("127.0.0.1:{grpc}");
    let started = std::time::Instant::now();
    let sender = std::thread::spawn(move || {
        run_loadgen(&[
            "--endpoint",
            &endpoint,
            "--traces",
            &TRACES.to_string(),
            "--rate",
            &(1_000_000.0 / 60.0).to_string(),
            "--batch-traces",
            "500",
            "--workers",
            "2",
            "--attributes",
            "2",
            "--retry",
        ])
    });
    let traces = r#"wasmcol_trace_analysis_traces{connector="trace_analysis"}"#;
    let bytes = r#"wasmcol_trace_analysis_buffer_bytes{connector="trace_analysis"}"#;
    let (mut max_traces, mut max_bytes) = (0f64, 0f64);
    while !sender.is_finished() {
        let text = scrape();
        max_traces = max_traces.max(value(&text, traces));
        max_bytes = max_bytes.max(value(&text, bytes));
        std::thread::sleep(Duration::from_millis(100));
    }
    let summary = sender.join().expect("loadgen thread");
    let send_secs = started.elapsed().as_secs_f64();
    let mut text = String::new();
    let drained = wait_until(Duration::from_secs(30), || {
        text = scrape();
        value(&text, traces) == 0.0
    });
    let evictions = |reason: &str| {
        value(
            &text,
            &format!(
                r#"wasmcol_trace_analysis_evictions_total{{connector="trace_analysis",reason="{reason}"}}"#
            ),
        )
    };
    let (by_count, by_bytes) = (evictions("num_traces"), evictions("buffer_bytes"));
    let peak = c.peak_rss_bytes() as f64;
    let mib = |b: f64| b / (1024.0 * 1024.0);
    eprintln!(
        "{TRACES} traces in {send_secs:.1} s ({:.0} traces/min offered 1M/min); buffer at most \
         {max_traces} traces, {:.2} MiB; evictions num_traces={by_count} \
         buffer_bytes={by_bytes}; RSS {:.1} MiB at start, peak {:.1} MiB",
        TRACES as f64 * 60.0 / send_secs,
        mib(max_bytes),
        mib(baseline),
        mib(peak)
    );
    assert!(drained, "the buffer did not drain:\n{text}");
    assert_eq!(
        summary["spans_accepted"].as_u64(),
        Some(TRACES),
        "every span is taken in (loadgen retries refusals): {summary}"
    );
    assert!(max_bytes > 0.0, "the buffer gauge moved:\n{text}");
    // A request is taken in whole while the buffer is under its budget, so the buffer passes
    // it by at most one request (500 one-span traces, well under 1 MiB).
    assert!(
        max_bytes <= BUDGET + 1024.0 * 1024.0,
        "buffer held {max_bytes} bytes, more than one request over max_buffer_bytes"
    );
    assert!(max_traces <= NUM_TRACES, "buffer held {max_traces} traces");
    assert!(
        by_count + by_bytes > 0.0,
        "5 s of this traffic does not fit the buffer, so traces were analysed early:\n{text}"
    );
    // The budget, the analysis' working set and the gRPC buffers; not the 250,000 traces
    // (about 100 MiB as sent).
    assert!(
        peak - baseline < 64.0 * 1024.0 * 1024.0,
        "RSS grew {:.1} MiB over its start",
        mib(peak - baseline)
    );
}

// ---------------------------------------------------------------------------------------------
// Analyser plugins

/// The SDK README's trace analyser example (`tests/plugins/slow-root`).
const SLOW_ROOT: &str = env!("WASMCOL_TEST_PLUGIN_SLOW_ROOT");
/// An analyser that finds every root and fails on purpose on a span named `trigger`
/// (`tests/plugins/analyser-hostile`).
const ANALYSER_HOSTILE: &str = env!("WASMCOL_TEST_PLUGIN_ANALYSER_HOSTILE");

/// OTLP → `trace_analysis` (`analysers`: the YAML list, indented as an option of the
/// connector) → analysed traces and findings to files; the collector's own metrics on
/// `metrics_port`.
fn analyser_config(grpc: u16, metrics_port: u16, analysers: &str) -> String {
    let analysers: String = analysers.lines().map(|l| format!("    {l}\n")).collect();
    config_with_metrics(
        grpc,
        &format!("127.0.0.1:{metrics_port}"),
        &format!("    analysers:\n{analysers}"),
    )
}

/// Runs `wasmcol validate` on `config` (`{dir}` replaced by a scratch directory).
fn validate(config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        config.replace("{dir}", &dir.path().display().to_string()),
    )
    .expect("write config");
    Command::new(wasmcol_tests::binary("wasmcol"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("run wasmcol validate")
}

/// Starts a collector on `config`, validated first with no time limit (that compiles the
/// plugins into the on-disk cache, so start-up is then quick).
fn start_validated(config: &str, grpc: u16) -> Collector {
    let checked = validate(config);
    assert!(
        checked.status.success(),
        "the test's config does not validate:\n{}\n{config}",
        String::from_utf8_lossy(&checked.stderr)
    );
    Collector::start(config, grpc)
}

/// Traces `send_tail.py` sent, by group: (trace id, span ids with the root's first).
type SentGroups = BTreeMap<String, Vec<(String, Vec<String>)>>;

/// Sends `spec` (see `tests/python/send_tail.py`) with the OpenTelemetry Python SDK; returns
/// what it sent and how many spans.
fn send_tail(grpc: u16, spec: serde_json::Value) -> (SentGroups, usize) {
    let (groups, summary) = send_tail_with(grpc, spec, &[]);
    (groups, summary["spans"].as_u64().expect("spans") as usize)
}

/// [`send_tail`] with more arguments for `send_tail.py`; returns what it sent and its summary.
/// It fails unless every request was answered OK: every span it sent was acknowledged.
fn send_tail_with(
    grpc: u16,
    spec: serde_json::Value,
    args: &[&str],
) -> (SentGroups, serde_json::Value) {
    let out = Command::new(python())
        .arg(workspace_root().join("tests/python/send_tail.py"))
        .args([
            "--protocol",
            "grpc",
            "--endpoint",
            &format!("127.0.0.1:{grpc}"),
        ])
        .args(["--spec", &spec.to_string()])
        .args(args)
        .output()
        .expect("run send_tail.py");
    assert!(
        out.status.success(),
        "send_tail.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let groups = summary["groups"]
        .as_object()
        .expect("groups")
        .iter()
        .map(|(name, traces)| {
            let traces = traces
                .as_array()
                .expect("a list")
                .iter()
                .map(|t| {
                    let ids = t["span_ids"].as_array().expect("span_ids");
                    (
                        t["trace_id"].as_str().expect("trace_id").to_owned(),
                        ids.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
                    )
                })
                .collect();
            (name.clone(), traces)
        })
        .collect();
    (groups, summary)
}

/// The analysed spans written so far: (trace id, span id) → the span.
fn analysed_spans(
    c: &Collector,
) -> BTreeMap<(String, String), opentelemetry_proto::tonic::trace::v1::Span> {
    let path = c.path("traces.jsonl");
    if !path.exists() {
        return BTreeMap::new();
    }
    all_spans(&read_json_lines(&path))
        .into_iter()
        .map(|s| ((hex(&s.trace_id), hex(&s.span_id)), s.clone()))
        .collect()
}

/// Waits until `spans` analysed spans were passed on, then stops the collector with SIGTERM
/// (which sends the metrics held).
fn stop_once_passed_on(c: &mut Collector, spans: usize) {
    assert!(
        wait_until(Duration::from_secs(15), || analysed_spans(c).len() == spans),
        "analysed traces not passed on:\n{}",
        c.log()
    );
    assert_eq!(c.stop(), 0, "{}", c.log());
}

/// Every sum point the connector sent, with its metric's name.
fn sum_points(c: &Collector) -> Vec<(String, NumberDataPoint)> {
    let file = std::fs::read_to_string(c.path("metrics.jsonl")).unwrap_or_default();
    file.lines()
        .filter(|l| l.starts_with(r#"{"resourceMetrics""#))
        .flat_map(|l| {
            wasmcol::otlp::json::decode_metrics(l.as_bytes())
                .unwrap()
                .resource_metrics
        })
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .flat_map(|m| {
            let Some(metric::Data::Sum(sum)) = m.data else {
                panic!("{} is not a sum", m.name)
            };
            sum.data_points
                .into_iter()
                .map(move |p| (m.name.clone(), p))
        })
        .collect()
}

/// The findings metric's points: (pattern, service, span name) → (value, worst trace id).
fn findings_metric(c: &Collector) -> BTreeMap<(String, String, String), (f64, String)> {
    sum_points(c)
        .into_iter()
        .filter(|(name, _)| name == "trace_analysis.findings")
        .map(|(_, p)| {
            let Some(number_data_point::Value::AsDouble(v)) = p.value else {
                panic!("{p:?}")
            };
            let key = |k: &str| text(&p.attributes, k).unwrap_or_default();
            (
                (key("pattern"), key("service.name"), key("span.name")),
                (v, key("trace_analysis.worst_trace_id")),
            )
        })
        .collect()
}

/// The SDK README's example analyser, built to wasm and configured in `analysers:`, finds the
/// slow traces a real OpenTelemetry SDK sent, and only those: on the traces side the root span
/// of each carries `slow_root` (and the attribute the plugin set), no other span does; the
/// findings metric counts one per slow trace under the root's service and name, its worst
/// trace one of them. Every span passes on, and the built-in detectors run beside it.
#[test]
fn a_custom_analyser_finds_slow_roots_end_to_end() {
    let (grpc, metrics_port) = (free_port(), free_port());
    let analysers = format!(
        "- plugin: {SLOW_ROOT}\n  config: {{ threshold_ms: 300 }}\n  limits: {{ memory_mib: 64, call_timeout: 1s }}"
    );
    let mut c = start_validated(&analyser_config(grpc, metrics_port, &analysers), grpc);
    let (sent, spans) = send_tail(
        grpc,
        serde_json::json!({
            "services": ["frontend", "checkout"],
            "groups": [
                {"name": "slow", "count": 3, "spans": 3, "duration_ms": 500, "service": "frontend"},
                {"name": "quick", "count": 4, "spans": 3, "duration_ms": 20, "service": "frontend"},
                {"name": "failing", "count": 2, "spans": 2, "duration_ms": 20, "error": true, "service": "frontend"},
            ]
        }),
    );
    stop_once_passed_on(&mut c, spans);

    let out = analysed_spans(&c);
    let patterns = |s: &opentelemetry_proto::tonic::trace::v1::Span| {
        strings(&s.attributes, "trace_analysis.findings")
    };
    let mut slow_roots = BTreeSet::new();
    for (trace_id, ids) in &sent["slow"] {
        let root = &out[&(trace_id.clone(), ids[0].clone())];
        assert_eq!(patterns(root), ["slow_root"], "{root:?}");
        let threshold = root
            .attributes
            .iter()
            .find(|kv| kv.key == "slow_root.threshold_ms")
            .and_then(|kv| kv.value.as_ref()?.value.clone());
        assert_eq!(threshold, Some(any_value::Value::IntValue(300)));
        slow_roots.insert(root.name.clone());
    }
    let marked: Vec<_> = out
        .values()
        .filter(|s| patterns(s).contains(&"slow_root".to_owned()))
        .collect();
    assert_eq!(marked.len(), 3, "only the slow roots: {marked:?}");
    // The detectors still run: each failing trace's error origin is marked.
    for (trace_id, ids) in &sent["failing"] {
        let origin = &out[&(trace_id.clone(), ids[1].clone())];
        assert_eq!(patterns(origin), ["error_origin"], "{origin:?}");
    }

    let metric = findings_metric(&c);
    let slow: BTreeMap<_, _> = metric
        .iter()
        .filter(|((p, _, _), _)| p == "slow_root")
        .collect();
    assert_eq!(
        slow.keys()
            .map(|(_, s, n)| (s.as_str(), n.clone()))
            .collect::<BTreeSet<_>>(),
        slow_roots.iter().map(|n| ("frontend", n.clone())).collect(),
        "{metric:?}"
    );
    let slow_ids: BTreeSet<&String> = sent["slow"].iter().map(|(t, _)| t).collect();
    for (value, worst) in slow.values() {
        assert_eq!(*value, 1.0);
        assert!(slow_ids.contains(worst), "worst trace {worst}");
    }
    let origins: f64 = metric
        .iter()
        .filter(|((p, _, _), _)| p == "error_origin")
        .map(|(_, (v, _))| v)
        .sum();
    assert_eq!(origins, 2.0, "{metric:?}");
}

/// The SDK README's "Trace analysers" example is the plugin the test above runs.
#[test]
fn the_sdk_readme_example_is_the_tested_analyser() {
    let readme = std::fs::read_to_string(workspace_root().join("plugin-sdk/README.md"))
        .expect("read the SDK README");
    let lib = std::fs::read_to_string(workspace_root().join("tests/plugins/slow-root/src/lib.rs"))
        .expect("read the example");
    assert!(
        readme.contains(&format!("```rust\n{lib}```\n")),
        "plugin-sdk/README.md does not show tests/plugins/slow-root/src/lib.rs as it is"
    );
}

/// Analysers that fail on a batch (a trap, a sleep past `call_timeout`, an error, a finding
/// naming a span that does not exist, memory past `memory_mib`) beside one that works: the
/// batch's traces all pass on, with the working analyser's findings and none of the failing
/// ones'; each failure is counted by reason, on each side of the connector; the next batch
/// gets findings from every analyser again (fresh instances).
#[test]
fn failing_analysers_cost_only_their_own_findings() {
    let (grpc, metrics_port) = (free_port(), free_port());
    let modes = [
        ("trap", "trap"),
        ("sleep", "timeout"),
        ("error", "error"),
        ("bad-index", "invalid_output"),
        ("memory", "memory_limit"),
    ];
    let mut analysers = String::new();
    for (mode, _) in modes {
        analysers.push_str(&format!(
            "- plugin: {ANALYSER_HOSTILE}\n  config: {{ mode: {mode} }}\n  limits: {{ memory_mib: 32, call_timeout: 300ms }}\n"
        ));
    }
    analysers.push_str(&format!(
        "- plugin: {SLOW_ROOT}\n  config: {{ threshold_ms: 300 }}\n"
    ));
    let mut c = start_validated(&analyser_config(grpc, metrics_port, &analysers), grpc);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let scrape = || runtime.block_on(scrape_metrics(metrics_port));

    // A batch with the trigger: every hostile analyser fails on it.
    let (first, first_spans) = send_tail(
        grpc,
        serde_json::json!({
            "services": ["frontend", "checkout"],
            "groups": [
                {"name": "trigger", "count": 1, "spans": 2, "span_name": "trigger", "duration_ms": 500, "service": "frontend"},
                {"name": "with", "count": 2, "spans": 2, "duration_ms": 500, "service": "frontend"},
            ]
        }),
    );
    assert!(
        wait_until(Duration::from_secs(20), || analysed_spans(&c).len()
            == first_spans),
        "the traces of the failed calls did not pass on:\n{}",
        c.log()
    );
    let failures = |analyser: usize, reason: &str, text: &str| {
        let mut n = 0.0;
        for side in ["metrics", "traces"] {
            n += metric_value(
                text,
                &format!(
                    r#"wasmcol_plugin_failures_total{{processor="trace_analysis.analysers[{analyser}].{side}",reason="{reason}"}}"#
                ),
            )
            .unwrap_or(0.0);
        }
        n
    };
    let mut text = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            text = scrape();
            modes
                .iter()
                .enumerate()
                .all(|(i, (_, reason))| failures(i, reason, &text) == 2.0)
        }),
        "each hostile analyser failed once per side, by its reason:\n{text}"
    );

    // The next batch: every analyser works again.
    let (second, second_spans) = send_tail(
        grpc,
        serde_json::json!({
            "services": ["frontend", "checkout"],
            "groups": [{"name": "plain", "count": 3, "spans": 2, "duration_ms": 500, "service": "frontend"}]
        }),
    );
    assert!(
        wait_until(Duration::from_secs(20), || analysed_spans(&c).len()
            == first_spans + second_spans),
        "later traces did not pass on:\n{}",
        c.log()
    );
    assert_eq!(c.stop(), 0, "{}", c.log());
    let out = analysed_spans(&c);
    let root_patterns = |group: &[(String, Vec<String>)]| -> Vec<Vec<String>> {
        group
            .iter()
            .map(|(t, ids)| {
                strings(
                    &out[&(t.clone(), ids[0].clone())].attributes,
                    "trace_analysis.findings",
                )
            })
            .collect()
    };
    // The failed call: only the working analyser's findings.
    for p in root_patterns(&first["trigger"])
        .into_iter()
        .chain(root_patterns(&first["with"]))
    {
        assert_eq!(p, ["slow_root"]);
    }
    // The next call: every analyser's.
    for p in root_patterns(&second["plain"]) {
        assert_eq!(p, ["hostile_root", "slow_root"]);
    }
    let metric = findings_metric(&c);
    let total = |pattern: &str| -> f64 {
        metric
            .iter()
            .filter(|((p, _, _), _)| p == pattern)
            .map(|(_, (v, _))| v)
            .sum()
    };
    assert_eq!(total("slow_root"), 6.0, "{metric:?}");
    assert_eq!(
        total("hostile_root"),
        3.0 * modes.len() as f64,
        "{metric:?}"
    );
}

/// `wasmcol validate` names the connector, the analyser's place in the list and the option:
/// an unknown option, a plugin that is not there, a processor plugin, a configuration the
/// plugin rejects (with its message), a limit out of range.
#[test]
fn validate_rejects_bad_analysers() {
    let (grpc, metrics_port) = (free_port(), free_port());
    let tagger = env!("WASMCOL_TEST_PLUGIN_TAGGER");
    for (analysers, want) in [
        (
            format!("- plugin: {SLOW_ROOT}\n  configs: {{ threshold_ms: 1 }}"),
            "unknown field `configs`".to_owned(),
        ),
        (
            "- plugin: /nonexistent/analyser.wasm".to_owned(),
            "connectors.trace_analysis.analysers[0].plugin: cannot read the plugin file \"/nonexistent/analyser.wasm\"".to_owned(),
        ),
        (
            format!("- plugin: {SLOW_ROOT}\n  config: {{ threshold_ms: 1 }}\n- plugin: {tagger}"),
            "connectors.trace_analysis.analysers[1].plugin: ".to_owned(),
        ),
        (
            format!("- plugin: {SLOW_ROOT}\n  config: {{ threshold: 1 }}"),
            "connectors.trace_analysis.analysers[0].config: the analyser plugin rejected its configuration: config.threshold: unknown field `threshold`, expected `threshold_ms`".to_owned(),
        ),
        (
            format!("- plugin: {SLOW_ROOT}\n  config: {{ threshold_ms: 1 }}\n  limits: {{ memory_mib: 0 }}"),
            "connectors.trace_analysis.analysers[0].limits.memory_mib: must be between 1 and 4096".to_owned(),
        ),
    ] {
        let config = analyser_config(grpc, metrics_port, &analysers);
        let out = validate(&config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "validate must fail:\n{stderr}\n{config}");
        assert!(stderr.contains(&want), "expected {want:?} in:\n{stderr}");
        if analysers.contains("tagger") {
            assert!(
                stderr.contains("is not a trace analyser plugin"),
                "a processor plugin is named as such:\n{stderr}"
            );
        }
    }
}

/// SIGTERM with every trace still waiting in `trace_analysis` (its traces side, `decision_wait:
/// 1h`): each span the Python SDK was answered for reaches the downstream `file` exporter, once,
/// analysed on the way out. The spans come from three services in requests of one service each
/// (`send_tail.py --by-service`), so a trace is put together from several requests. A pipeline
/// the connector feeds keeps its queue on disk, so the collector warns at start that clients of
/// the pipeline exporting to the connector are answered before their data is stored.
#[test]
fn sigterm_passes_on_the_traces_still_waiting() {
    const TRACES: usize = 30;
    let (grpc, metrics_port) = (free_port(), free_port());
    let down = DownPort::new();
    let config = format!(
        r#"
extensions:
  file_storage:
    directory: "{{dir}}/queue"
    create_directory: true
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  file/traces:
    path: "{{dir}}/traces.jsonl"
    flush_interval: 50ms
  otlphttp/stored:
    endpoint: http://127.0.0.1:{down}
    sending_queue: {{ storage: file_storage }}
connectors:
  trace_analysis:
    decision_wait: 1h
service:
  extensions: [file_storage]
  shutdown_timeout: 10s
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [trace_analysis]
    traces/analysed:
      receivers: [trace_analysis]
      exporters: [file/traces, otlphttp/stored]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
"#,
        down = down.port
    );
    let mut c = Collector::start(&config, grpc);

    let spec = serde_json::json!({
        "services": ["frontend", "checkout", "payments"],
        "groups": [
            {"name": "plain", "count": TRACES - 5, "spans": 4},
            {"name": "errors", "count": 5, "spans": 4, "error": true},
        ],
    });
    let (groups, summary) = send_tail_with(grpc, spec, &["--batch", "20", "--by-service"]);
    let mut sent: Vec<(String, String)> = groups
        .values()
        .flatten()
        .flat_map(|(trace, spans)| spans.iter().map(|s| (trace.clone(), s.clone())))
        .collect();
    sent.sort();
    assert_eq!(sent.len(), TRACES * 4);
    assert!(
        summary["requests"].as_u64().unwrap() > 3,
        "the traces came in several requests: {summary}"
    );

    // Every trace is in the buffer, none analysed, nothing written.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let traces = r#"wasmcol_trace_analysis_traces{connector="trace_analysis"}"#;
    let mut text = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            text = runtime.block_on(scrape_metrics(metrics_port));
            metric_value(&text, traces) == Some(TRACES as f64)
        }),
        "the buffer never held the {TRACES} traces:\n{text}"
    );
    let path = c.path("traces.jsonl");
    let written = || {
        if !path.exists() {
            return Vec::new();
        }
        let mut ids: Vec<(String, String)> = all_spans(&read_json_lines(&path))
            .iter()
            .map(|s| (hex(&s.trace_id), hex(&s.span_id)))
            .collect();
        ids.sort();
        ids
    };
    assert!(written().is_empty(), "nothing is due for an hour");

    // The warning names the pipeline that exports to the connector, and only that one.
    let log = c.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("these connectors count data as delivered once they take it in"))
        .collect();
    assert_eq!(warnings.len(), 1, "one start-up warning:\n{log}");
    assert!(
        warnings[0].contains("pipeline=traces ") && warnings[0].contains(r#"["trace_analysis"]"#),
        "the warning names the pipeline and the connector: {}",
        warnings[0]
    );

    assert_eq!(c.stop(), 0, "a clean exit:\n{}", c.log());
    assert_eq!(
        written(),
        sent,
        "every acknowledged span, once, in the file after SIGTERM:\n{}",
        c.log()
    );
    // They went through the analysis: each error trace's origin is marked.
    let origins = all_spans(&read_json_lines(&path))
        .iter()
        .filter(|s| {
            strings(&s.attributes, "trace_analysis.findings").contains(&"error_origin".to_owned())
        })
        .count();
    assert_eq!(origins, 5, "one error origin per error trace");
}

/// A client that puts ids in its span names (`GET /users/1`, `GET /users/2`, ...) makes a
/// series per id; with `aggregation_cardinality_limit: 3` the findings metric holds three
/// of them and sums the rest into the overflow series, its only attribute
/// `otel.metric.overflow="true"`. Nothing is lost from the totals, and every span passes on.
#[test]
fn span_names_with_ids_fill_the_cardinality_limit_and_the_rest_overflows() {
    const NAMES: usize = 8;
    let grpc = free_port();
    let mut c = start_validated(&config(grpc, "    aggregation_cardinality_limit: 3"), grpc);
    let groups: Vec<serde_json::Value> = (0..NAMES)
        .map(|i| {
            serde_json::json!({"name": format!("user{i}"), "count": 1, "spans": 1,
                "error": true, "span_name": format!("GET /users/{i}"), "service": "frontend"})
        })
        .collect();
    let (_, spans) = send_tail(
        grpc,
        serde_json::json!({"services": ["frontend"], "groups": groups}),
    );
    assert_eq!(spans, NAMES);
    // The metrics go out at shutdown (`metrics_flush_interval: 1h`).
    stop_once_passed_on(&mut c, spans);

    let metric = findings_metric(&c);
    let own: Vec<_> = metric
        .iter()
        .filter(|((p, _, _), _)| !p.is_empty())
        .collect();
    assert_eq!(own.len(), 3, "{metric:?}");
    for ((pattern, service, span), (value, _)) in &own {
        assert_eq!(
            (pattern.as_str(), service.as_str(), *value),
            ("error_origin", "frontend", 1.0)
        );
        assert!(span.starts_with("GET /users/"), "{span}");
    }
    // The overflow series: no pattern, service or span name; the other five findings.
    let overflow = &metric[&(String::new(), String::new(), String::new())];
    assert_eq!(overflow.0, (NAMES - 3) as f64, "{metric:?}");

    let overflow_points = sum_points(&c)
        .into_iter()
        .filter(|(_, p)| text(&p.attributes, "otel.metric.overflow").as_deref() == Some("true"))
        .map(|(name, p)| (name, p.attributes.len()))
        .collect::<BTreeMap<_, _>>();
    // Critical-path self time per span name overflows too; each overflow point has only the
    // overflow attribute.
    assert_eq!(
        overflow_points,
        BTreeMap::from([
            ("trace_analysis.critical_path.self_time".to_owned(), 1),
            ("trace_analysis.findings".to_owned(), 1),
        ])
    );
    // Each family that overflowed is named once in a warning.
    let log = c.log();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("holds aggregation_cardinality_limit (3) series"))
        .collect();
    assert_eq!(warned.len(), 2, "{log}");
    for metric in [
        "trace_analysis.findings",
        "trace_analysis.critical_path.self_time",
    ] {
        assert!(
            warned
                .iter()
                .any(|l| l.contains(&format!("{metric} holds"))),
            "{log}"
        );
    }
}
