//! WASM plugins in a running collector: hostile plugins cannot take it down, plugin config
//! errors stop start-up with the plugin's own reason, and an attribute-editing plugin edits
//! the spans a real OpenTelemetry SDK sent exactly as intended.

use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value as Json, json};
use wasmcol_tests::sdk::output_json;
use wasmcol_tests::{
    Collector, all_spans, binary, free_port, http_request, metric_value, python, read_json_lines,
    scrape_metrics, wait_until, wat_plugin, workspace_root,
};

const HOSTILE: &str = env!("WASMCOL_TEST_PLUGIN_HOSTILE");
const TAGGER: &str = env!("WASMCOL_TEST_PLUGIN_TAGGER");

/// OTLP/HTTP → one `wasm` processor → file. `processor` is the YAML under `wasm/p:`.
fn config(http: u16, metrics: u16, processor: &str) -> String {
    let processor = processor
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>();
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  wasm/p:
{processor}
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 20ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [wasm/p]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

fn string(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// One request with spans named `names`; span ids start at `first`.
fn request(first: u64, names: &[&str]) -> Vec<u8> {
    let spans = names
        .iter()
        .enumerate()
        .map(|(i, n)| Span {
            trace_id: vec![7; 16],
            span_id: (first + i as u64).to_be_bytes().to_vec(),
            name: n.to_string(),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![string("keep", "me")],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string("service.name", "svc")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

async fn post(http: u16, body: Vec<u8>) -> u16 {
    http_request(
        "POST",
        &format!("http://127.0.0.1:{http}/v1/traces"),
        &[("content-type", "application/x-protobuf")],
        body,
    )
    .await
    .expect("the collector answers")
    .status
}

/// The output spans by id.
fn output(c: &Collector) -> Vec<Span> {
    let out = c.path("out.jsonl");
    if !out.exists() {
        return Vec::new();
    }
    all_spans(&read_json_lines(&out))
        .into_iter()
        .cloned()
        .collect()
}

fn wait_for_span(c: &Collector, id: u64) -> Span {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = output(c)
            .into_iter()
            .find(|s| s.span_id == id.to_be_bytes());
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("span {id} never arrived:\n{}", c.log()))
}

fn int_attr(s: &Span, key: &str) -> Option<i64> {
    s.attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::IntValue(i) => Some(*i),
            _ => None,
        }
    })
}

async fn failures(metrics: u16, reason: &str) -> f64 {
    let text = scrape_metrics(metrics).await;
    metric_value(
        &text,
        &format!("wasmcol_plugin_failures_total{{processor=\"wasm/p\",reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Starts a collector with the hostile plugin in `mode`, sends a batch that triggers the
/// misbehaviour, then a normal one. Checks: the collector answered both, the failure was
/// counted under `reason`, the triggering batch passed unchanged, and a fresh instance
/// processed the next batch. Returns the collector for further checks.
async fn survives(mode: &str, limits: &str, reason: &str) -> Collector {
    let (http, metrics) = (free_port(), free_port());
    let c = Collector::start(
        &config(
            http,
            metrics,
            &format!("plugin: {HOSTILE}\nconfig: {{ mode: {mode} }}\nlimits: {limits}"),
        ),
        http,
    );
    assert_eq!(
        post(http, request(100, &["trigger"])).await,
        200,
        "{}",
        c.log()
    );
    let passed = wait_for_span(&c, 100);
    assert_eq!(
        passed.attributes,
        vec![string("keep", "me")],
        "passed on unchanged"
    );
    assert!(
        c.wait_for_log_line(
            &["wasm/p", &format!("reason={reason}")],
            Duration::from_secs(5)
        ),
        "no failure logged for {mode}:\n{}",
        c.log()
    );
    assert_eq!(failures(metrics, reason).await, 1.0, "{}", c.log());

    assert_eq!(post(http, request(200, &["normal"])).await, 200);
    let next = wait_for_span(&c, 200);
    assert_eq!(
        int_attr(&next, "hostile.instance_calls"),
        Some(1),
        "a fresh instance processed the next batch"
    );
    c
}

/// How long the failed call took, from its `elapsed_ms` in the failure's log line.
fn failed_call_ms(c: &Collector, reason: &str) -> u64 {
    let line = c
        .log()
        .lines()
        .find(|l| l.contains(&format!("reason={reason}")))
        .map(str::to_string)
        .unwrap();
    line.split("elapsed_ms=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no elapsed_ms in {line}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_is_stopped_at_the_deadline() {
    let c = survives("loop", "{ call_timeout: 100ms }", "timeout").await;
    let elapsed = failed_call_ms(&c, "timeout");
    assert!(
        (100..=150).contains(&elapsed),
        "stopped after {elapsed} ms; the deadline is 100 ms (+50 ms allowed)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocking_sleep_is_stopped_at_the_deadline() {
    // `std::thread::sleep(20 s)` waits in host code (WASI poll), out of the epoch's reach;
    // the host bounds that wait by the call's deadline too.
    let c = survives("sleep", "{ call_timeout: 200ms }", "timeout").await;
    let elapsed = failed_call_ms(&c, "timeout");
    assert!(
        (200..=250).contains(&elapsed),
        "stopped after {elapsed} ms; the deadline is 200 ms (+50 ms allowed)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sender_hears_within_the_deadline_whatever_the_answer_costs_the_host() {
    // 200,000 edits cost the guest little and the host a lot (lifting, applying); whatever
    // that costs, the watchdog answers by call_timeout + 50 ms. `max_edits` lets them through
    // to the applier here; `too_many_edits_are_refused_as_on_error_says` covers the default.
    let (http, metrics) = (free_port(), free_port());
    let c = Collector::start(
        &config(
            http,
            metrics,
            &format!(
                "plugin: {HOSTILE}\nconfig: {{ mode: edits }}\n\
                 limits: {{ call_timeout: 200ms, max_edits: 1000000 }}"
            ),
        ),
        http,
    );
    assert_eq!(post(http, request(50, &["warm-up"])).await, 200);
    wait_for_span(&c, 50);
    let started = std::time::Instant::now();
    assert_eq!(post(http, request(100, &["trigger"])).await, 200);
    let took = started.elapsed();
    // call_timeout + 50 ms, plus 30 ms for the HTTP round trip on a busy machine.
    assert!(
        took < Duration::from_millis(280),
        "answered after {took:?}:\n{}",
        c.log()
    );
    let span = wait_for_span(&c, 100);
    let timeouts = failures(metrics, "timeout").await;
    if timeouts == 1.0 {
        assert_eq!(
            span.attributes,
            vec![string("keep", "me")],
            "passed on unchanged"
        );
    } else {
        assert_eq!(timeouts, 0.0);
        assert_eq!(span.attributes.len(), 200_001, "processed in time");
    }
    // The collector carries on: the next batch is processed (by a new worker, if the
    // watchdog gave up on the old one).
    assert_eq!(post(http, request(200, &["normal"])).await, 200);
    assert!(int_attr(&wait_for_span(&c, 200), "hostile.instance_calls").is_some());
}

/// `spans` spans from id `first` on, each with a `note` of about `bytes` bytes of card numbers.
fn card_request(first: u64, spans: usize, bytes: usize) -> Vec<u8> {
    let note = format!("card {CARD}; ").repeat(bytes / (CARD.len() + 7) + 1);
    let mut req =
        ExportTraceServiceRequest::decode(&request(first, &vec!["pay"; spans])[..]).unwrap();
    for s in &mut req.resource_spans[0].scope_spans[0].spans {
        s.attributes.push(string("note", &note));
    }
    req.encode_to_vec()
}

const CARD: &str = "4111 1111 1111 1111";

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_scrubber_leaks_nothing_and_loses_nothing() {
    let (http, metrics) = (free_port(), free_port());
    // The scrubber's defaults (on_error: refuse) with a memory cap far below the requests.
    let c = Collector::start(
        &config(
            http,
            metrics,
            "plugin: builtin:pii-scrub\nlimits: { memory_mib: 8, call_timeout: 2s }",
        ),
        http,
    );
    // One span of 12 MB cannot be scrubbed in 8 MiB, whole or split: the sender is told to
    // retry, and nothing is written.
    assert_eq!(
        post(http, card_request(1, 1, 12 << 20)).await,
        503,
        "{}",
        c.log()
    );
    assert!(failures(metrics, "memory_limit").await >= 1.0);
    // 1,000 spans of 10 KB (10 MB) fail whole, then go through in pieces, all scrubbed.
    assert_eq!(
        post(http, card_request(100, 1000, 10_000)).await,
        200,
        "{}",
        c.log()
    );
    wait_until(Duration::from_secs(20), || output(&c).len() == 1000);
    let spans = output(&c);
    assert_eq!(spans.len(), 1000, "{}", c.log());
    let mut ids: Vec<u64> = spans
        .iter()
        .map(|s| u64::from_be_bytes(s.span_id[..].try_into().unwrap()))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        (100..1100).collect::<Vec<_>>(),
        "the refused span never arrived"
    );
    let text = std::fs::read_to_string(c.path("out.jsonl")).unwrap();
    assert!(!text.contains(CARD), "a card number reached the exporter");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_is_refused_at_the_cap() {
    let c = survives("alloc", "{ memory_mib: 64 }", "memory_limit").await;
    // The plugin asked for 4 GiB in 64 MiB blocks; the host never gave it more than the cap.
    let peak = c.peak_rss_bytes();
    assert!(
        peak < 160 << 20,
        "peak RSS {} MiB: the 64 MiB cap did not hold",
        peak >> 20
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_traps() {
    let c = survives("recurse", "{}", "trap").await;
    // Depending on frame sizes the wasm call stack or the shadow stack in linear memory runs
    // out first; either way the call traps.
    let log = c.log();
    assert!(
        log.contains("call stack exhausted") || log.contains("out of bounds memory access"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_is_logged_with_its_message() {
    let c = survives("panic", "{}", "trap").await;
    assert!(c.log().contains("panicking on purpose"), "{}", c.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_error_is_counted() {
    let c = survives("error", "{}", "error").await;
    assert!(c.log().contains("failing on purpose"), "{}", c.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_out_of_range_index_is_rejected() {
    let c = survives("bad-index", "{}", "invalid_output").await;
    assert!(c.log().contains("out of range"), "{}", c.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_is_rejected() {
    let c = survives("bad-utf8", "{}", "invalid_output").await;
    assert!(c.log().to_lowercase().contains("utf-8"), "{}", c.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_replacement_is_rejected() {
    let c = survives("bad-replacement", "{}", "invalid_output").await;
    assert!(c.log().contains("not valid OTLP protobuf"), "{}", c.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_output_is_rejected() {
    let c = survives("oversize", "{ max_output_bytes: 1MiB }", "invalid_output").await;
    assert!(c.log().contains("limits.max_output_bytes"), "{}", c.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_error_drop_drops_the_failed_batch() {
    let (http, metrics) = (free_port(), free_port());
    let c = Collector::start(
        &config(
            http,
            metrics,
            &format!("plugin: {HOSTILE}\nconfig: {{ mode: panic }}\non_error: drop"),
        ),
        http,
    );
    assert_eq!(post(http, request(100, &["trigger", "other"])).await, 200);
    assert_eq!(post(http, request(200, &["normal"])).await, 200);
    wait_for_span(&c, 200);
    assert!(
        output(&c)
            .iter()
            .all(|s| s.name != "trigger" && s.name != "other"),
        "the failed batch was dropped"
    );
    let text = scrape_metrics(metrics).await;
    assert_eq!(
        metric_value(
            &text,
            "wasmcol_processor_dropped_spans_total{processor=\"wasm/p\",pipeline=\"traces\"}"
        ),
        Some(2.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_traps_do_not_grow_memory() {
    let (http, metrics) = (free_port(), free_port());
    // Every second batch panics: failures never come three in a row, so the plugin is called
    // (and an instance discarded and re-created) every time, with no back-off.
    let c = Collector::start(
        &config(
            http,
            metrics,
            // A generous deadline: on a busy machine a call must not time out instead of
            // trapping, which would shift the every-second-call pattern.
            &format!(
                "plugin: {HOSTILE}\nconfig: {{ mode: \"every:2\" }}\nlimits: {{ call_timeout: 10s }}"
            ),
        ),
        http,
    );
    let mut rss_after_warmup = 0;
    for i in 0..2000u64 {
        assert_eq!(post(http, request(1000 + i, &["s"])).await, 200);
        if i == 199 {
            rss_after_warmup = c.rss_bytes();
        }
    }
    let traps = failures(metrics, "trap").await;
    assert_eq!(
        traps,
        1000.0,
        "timeouts: {}, last log line: {}",
        failures(metrics, "timeout").await,
        c.log().lines().last().unwrap_or("")
    );
    let rss_end = c.rss_bytes();
    let growth = rss_end as f64 / rss_after_warmup as f64 - 1.0;
    assert!(
        growth <= 0.05,
        "RSS grew {:.1}% over 900 traps ({} → {} KiB)",
        growth * 100.0,
        rss_after_warmup >> 10,
        rss_end >> 10
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failures_back_off() {
    let (http, metrics) = (free_port(), free_port());
    let c = Collector::start(
        &config(
            http,
            metrics,
            &format!("plugin: {HOSTILE}\nconfig: {{ mode: panic }}"),
        ),
        http,
    );
    for i in 0..10u64 {
        assert_eq!(post(http, request(100 + i, &["trigger"])).await, 200);
    }
    let text = scrape_metrics(metrics).await;
    let skipped = metric_value(
        &text,
        "wasmcol_plugin_skipped_batches_total{processor=\"wasm/p\"}",
    )
    .unwrap_or(0.0);
    assert_eq!(failures(metrics, "trap").await + skipped, 10.0, "{text}");
    assert!(
        skipped >= 5.0,
        "after 3 failures in a row the plugin is paused: {text}"
    );
    assert!(c.log().contains("pausing the plugin"), "{}", c.log());
    // Every batch still went through (on_error: pass).
    wait_until(Duration::from_secs(5), || output(&c).len() == 10);
    assert_eq!(output(&c).len(), 10);
}

/// `wasmcol validate` on a config; returns (exit code, stderr).
fn validate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        yaml.replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    let out = Command::new(binary("wasmcol"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).replace(&dir.path().display().to_string(), "{dir}"),
    )
}

#[test]
fn plugin_config_errors_stop_validation_and_startup() {
    let cases = [
        (
            format!("plugin: {HOSTILE}\nconfig: {{ mode: reject }}"),
            "c.yaml:10: processors.wasm/p.config: the plugin rejected its configuration: mode `reject`: this plugin refuses every configuration",
        ),
        (
            format!("plugin: {HOSTILE}\nconfig: {{ mood: noop }}"),
            "c.yaml:10: processors.wasm/p.config: the plugin rejected its configuration: config: missing field `mode`",
        ),
        (
            "plugin: /nonexistent/p.wasm".to_string(),
            "c.yaml:9: processors.wasm/p.plugin: cannot read the plugin file \"/nonexistent/p.wasm\": No such file or directory (os error 2)",
        ),
        (
            "plugin: builtin:nope".to_string(),
            "c.yaml:9: processors.wasm/p.plugin: no built-in plugin named \"nope\"",
        ),
        (
            "plugin: \"{dir}/c.yaml\"".to_string(),
            "c.yaml:9: processors.wasm/p.plugin: \"{dir}/c.yaml\" is not a WebAssembly component",
        ),
        (
            format!(
                "plugin: {HOSTILE}\nconfig: {{ mode: noop }}\nlimits: {{ memory_mib: 0, call_timeout: 0s }}\ninstances: 0"
            ),
            "processors.wasm/p.instances: must be between 1 and 256, got 0",
        ),
        (
            format!("plugin: {HOSTILE}\ntables: {{ t: {{ file: \"{{dir}}/missing.csv\" }} }}"),
            "processors.wasm/p.tables.t.file: cannot read {dir}/missing.csv",
        ),
    ];
    for (processor, want) in cases {
        let yaml = config(free_port(), free_port(), &processor);
        let (code, stderr) = validate(&yaml);
        assert_eq!(code, 1, "{processor}: {stderr}");
        assert!(
            stderr.contains(want),
            "{processor}\nwant: {want}\ngot: {stderr}"
        );
    }

    // Start-up stops with the same message, before listening.
    let yaml = config(
        free_port(),
        free_port(),
        &format!("plugin: {HOSTILE}\nconfig: {{ mode: reject }}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        yaml.replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    let out = Command::new(binary("wasmcol"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the plugin rejected its configuration"));
}

#[test]
fn a_malformed_table_file_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("teams.csv");
    std::fs::write(&csv, "service,team\ncheckout,payments\nsearch\n").unwrap();
    let yaml = config(
        free_port(),
        free_port(),
        &format!(
            "plugin: {TAGGER}\ntables: {{ teams: {{ file: \"{}\" }} }}",
            csv.display()
        ),
    );
    let (code, stderr) = validate(&yaml);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "processors.wasm/p.tables.teams.file: {}:3: ",
            csv.display()
        )),
        "{stderr}"
    );
}

#[test]
fn the_tagger_edits_python_sdk_spans_exactly_as_intended() {
    let (http, metrics) = (free_port(), free_port());
    let mut c = Collector::start(
        &config(
            http,
            metrics,
            &format!(
                "plugin: {TAGGER}\nconfig:\n  teams: {{ checkout: payments }}\n  remove: [http.request.method, ratio]\ninstances: 2"
            ),
        ),
        http,
    );
    let expected_path = c.path("expected.json");
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_traces.py"))
        .args([
            "--protocol",
            "http",
            "--endpoint",
            &format!("127.0.0.1:{http}"),
        ])
        .args(["--traces", "4", "--service", "checkout", "--expected"])
        .arg(&expected_path)
        .status()
        .expect("run python");
    assert!(status.success(), "the Python sender failed:\n{}", c.log());
    let expected: Vec<Json> =
        serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
    assert_eq!(expected.len(), 12);
    let out = c.path("out.jsonl");
    assert!(
        wait_until(Duration::from_secs(10), || out.exists()
            && all_spans(&read_json_lines(&out)).len() >= expected.len()),
        "spans did not arrive:\n{}",
        c.log()
    );
    assert_eq!(c.stop(), 0);
    let got = output_json(&read_json_lines(&out));
    assert_eq!(got.len(), expected.len());
    for want in &expected {
        // The intended edit: `team` added, two attributes removed, nothing else touched.
        let mut want = want.clone();
        let attrs = want["attributes"].as_object_mut().unwrap();
        attrs.remove("http.request.method");
        attrs.remove("ratio");
        attrs.insert("team".into(), json!({ "string": "payments" }));
        let id = want["span_id"].as_str().unwrap().to_string();
        assert_eq!(got.get(&id), Some(&want), "span {id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_are_recycled_past_the_memory_high_water_mark() {
    let (http, metrics) = (free_port(), free_port());
    // Each batch makes the instance keep 8 MiB more; past 20 MiB it is replaced between
    // batches, so no call ever fails.
    let c = Collector::start(
        &config(
            http,
            metrics,
            &format!(
                "plugin: {HOSTILE}\nconfig: {{ mode: \"hoard:8\" }}\nlimits: {{ memory_mib: 64, recycle_memory_mib: 20 }}"
            ),
        ),
        http,
    );
    let mut calls = Vec::new();
    for i in 0..6u64 {
        assert_eq!(post(http, request(100 + i, &["s"])).await, 200);
        calls.push(int_attr(&wait_for_span(&c, 100 + i), "hostile.instance_calls").unwrap());
    }
    // Instance memory: ~1 MiB + 8 MiB per batch, so the third batch pushes it past 20 MiB.
    assert_eq!(calls, vec![1, 2, 3, 1, 2, 3], "{}", c.log());
    let text = scrape_metrics(metrics).await;
    assert_eq!(
        metric_value(&text, "wasmcol_plugin_recycles_total{processor=\"wasm/p\"}"),
        Some(2.0),
        "{text}"
    );
    assert!(!text.contains("wasmcol_plugin_failures_total{"), "{text}");
}

#[test]
fn compiled_plugins_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        config(free_port(), free_port(), &format!("plugin: {TAGGER}")),
    )
    .unwrap();
    let files = || {
        fn count(p: &std::path::Path) -> usize {
            std::fs::read_dir(p)
                .map(|d| {
                    d.flatten()
                        .map(|e| {
                            if e.path().is_dir() {
                                count(&e.path())
                            } else {
                                1
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        count(cache.path())
    };
    let run = || {
        let started = std::time::Instant::now();
        let out = Command::new(binary("wasmcol"))
            .args(["validate", "--config"])
            .arg(&path)
            .env("WASMCOL_PLUGIN_CACHE", cache.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed()
    };
    assert_eq!(files(), 0);
    let cold = run();
    // The cache is written by a background worker of the engine; give it a moment.
    assert!(
        wait_until(Duration::from_secs(10), || files() > 0),
        "nothing cached"
    );
    let warm = run();
    assert!(
        warm < cold,
        "loading from the cache ({warm:?}) should beat compiling ({cold:?})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_flood_is_limited_escaped_and_counted() {
    let (http, metrics) = (free_port(), free_port());
    let c = Collector::start(
        &config(
            http,
            metrics,
            &format!(
                "plugin: {HOSTILE}\nconfig: {{ mode: log-flood }}\nlimits: {{ call_timeout: 5s }}"
            ),
        ),
        http,
    );
    // 10,000 lines with line breaks and escape sequences in one call.
    assert_eq!(
        post(http, request(100, &["trigger"])).await,
        200,
        "{}",
        c.log()
    );
    let span = wait_for_span(&c, 100);
    assert_eq!(int_attr(&span, "hostile.instance_calls"), Some(1));

    let text = scrape_metrics(metrics).await;
    let suppressed = metric_value(
        &text,
        "wasmcol_plugin_log_lines_suppressed_total{processor=\"wasm/p\"}",
    );
    assert_eq!(suppressed, Some(10_000.0 - 20.0), "{text}");
    let log = c.log();
    let written: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("plugin: flood "))
        .collect();
    assert_eq!(written.len(), 20, "{log}");
    for line in &written {
        assert!(
            line.contains("\\n2026-01-01T00:00:00Z ERROR forged line\\r\\n\\u{1b}[2J"),
            "{line}"
        );
        assert!(line.len() < 4096 + 512, "{} bytes", line.len());
    }
    assert!(
        !log.contains("\n2026-01-01T00:00:00Z ERROR forged"),
        "a forged line got through"
    );
    assert!(!log.contains('\u{1b}'), "an escape sequence got through");

    // Still up and healthy: the next batch is processed by the same instance.
    assert_eq!(post(http, request(200, &["normal"])).await, 200);
    let next = wait_for_span(&c, 200);
    assert_eq!(int_attr(&next, "hostile.instance_calls"), Some(2));
}

/// The cache holds native code run outside the sandbox: one that others can write is not
/// used (`compiled_plugins_are_cached_on_disk` shows a private one is).
#[test]
fn a_cache_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = tmp.path().join("c.yaml");
    std::fs::write(
        &path,
        config(free_port(), free_port(), &format!("plugin: {TAGGER}")),
    )
    .unwrap();
    let out = Command::new(binary("wasmcol"))
        .args(["validate", "--config"])
        .arg(&path)
        .env("WASMCOL_PLUGIN_CACHE", &cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The engine writes its cache from a background worker; give it the time it takes when
    // it does (see `compiled_plugins_are_cached_on_disk`).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "compiled code was written where others can swap it"
    );
}

/// What became of one batch that triggered a hostile plugin.
struct Hostile {
    c: Collector,
    metrics: u16,
    /// The HTTP status the sender got for the triggering batch, and after how long.
    status: u16,
    took: Duration,
    /// How much the collector's peak resident memory (`VmHWM`) rose with it.
    peak_growth: u64,
}

/// Starts the hostile plugin in `mode` (`processor` adds lines under `wasm/p`), warms it up,
/// then sends one batch that triggers it; `fails` says whether the call is to fail.
async fn trigger(mode: &str, processor: &str, fails: bool) -> Hostile {
    let (http, metrics) = (free_port(), free_port());
    let c = Collector::start(
        &config(
            http,
            metrics,
            &format!("plugin: {HOSTILE}\nconfig: {{ mode: {mode} }}\n{processor}"),
        ),
        http,
    );
    assert_eq!(post(http, request(50, &["warm-up"])).await, 200);
    wait_for_span(&c, 50);
    let peak_before = c.peak_rss_bytes();
    let started = std::time::Instant::now();
    let status = post(http, request(100, &["trigger"])).await;
    let took = started.elapsed();
    // The call is over once its failure is logged, or its output written; the peak is read
    // after that.
    if fails {
        assert!(
            c.wait_for_log_line(&["wasm/p", "reason="], Duration::from_secs(5)),
            "no failure logged for {mode}:\n{}",
            c.log()
        );
    } else {
        wait_for_span(&c, 100);
    }
    let peak_growth = c.peak_rss_bytes().saturating_sub(peak_before);
    // The collector carries on: the next batch is processed by a fresh instance.
    assert_eq!(post(http, request(200, &["normal"])).await, 200);
    assert!(int_attr(&wait_for_span(&c, 200), "hostile.instance_calls").is_some());
    Hostile {
        c,
        metrics,
        status,
        took,
        peak_growth,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_aliasing_one_large_string_are_refused_before_they_are_copied() {
    // 10,000 values that all point at one 1 MiB string: 10 GiB if lifted string by string.
    // The host stops lifting at what max_output_bytes and max_edits allow.
    let h = trigger(
        "alias",
        "limits: { memory_mib: 64, call_timeout: 500ms }\non_error: pass",
        true,
    )
    .await;
    let log = h.c.log();
    assert_eq!(h.status, 200, "{log}");
    assert!(
        h.took < Duration::from_millis(580),
        "answered after {:?}; call_timeout is 500 ms (+50 ms, +30 ms for HTTP):\n{log}",
        h.took
    );
    assert_eq!(failures(h.metrics, "invalid_output").await, 1.0, "{log}");
    assert!(
        log.contains("lifting it out of the plugin's memory would take more than"),
        "{log}"
    );
    assert_eq!(
        wait_for_span(&h.c, 100).attributes,
        vec![string("keep", "me")],
        "passed on unchanged (on_error: pass)"
    );
    assert!(
        h.peak_growth < 2 * (64 << 20),
        "peak RSS rose by {} MiB; memory_mib is 64:\n{log}",
        h.peak_growth >> 20
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_edits_are_refused_as_on_error_says() {
    // 200,000 edits on one span, past the default limits.max_edits (100,000): refused before
    // any is applied, and the batch (one span, nothing to split) refused to the sender.
    let h = trigger(
        "edits",
        "limits: { memory_mib: 64, call_timeout: 3s }\non_error: refuse",
        true,
    )
    .await;
    let log = h.c.log();
    assert_eq!(
        h.status, 503,
        "refused, retryable (on_error: refuse):\n{log}"
    );
    // The list is lifted (bounded by max_output_bytes) before it is counted, which takes a
    // while in an unoptimised build; the deadline still holds.
    assert!(
        h.took < Duration::from_millis(3080),
        "answered after {:?}; call_timeout is 3 s (+50 ms, +30 ms for HTTP):\n{log}",
        h.took
    );
    assert_eq!(failures(h.metrics, "invalid_output").await, 1.0, "{log}");
    assert!(
        log.contains("200000 edits, more than limits.max_edits (100000)"),
        "{log}"
    );
    assert!(
        !output(&h.c)
            .iter()
            .any(|s| s.span_id == 100u64.to_be_bytes()),
        "the refused span never reaches the output"
    );
    assert!(
        h.peak_growth < 2 * (64 << 20),
        "peak RSS rose by {} MiB; memory_mib is 64:\n{log}",
        h.peak_growth >> 20
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_thousand_edits_on_one_span_are_applied_in_time() {
    // Within a raised max_edits, the host applies 200,000 distinct keys on one span (in
    // O(n log n); quadratic, this took minutes): the span arrives with all of them, and the
    // host's memory stays bounded. The generous deadline is for unoptimised builds.
    let h = trigger(
        "edits",
        "limits: { memory_mib: 64, call_timeout: 20s, max_edits: 200000 }\non_error: drop",
        false,
    )
    .await;
    let log = h.c.log();
    assert_eq!(h.status, 200, "{log}");
    assert_eq!(failures(h.metrics, "timeout").await, 0.0, "{log}");
    assert_eq!(wait_for_span(&h.c, 100).attributes.len(), 200_001);
    assert!(
        h.peak_growth < 2 * (64 << 20),
        "peak RSS rose by {} MiB; memory_mib is 64:\n{log}",
        h.peak_growth >> 20
    );
}

// ---------------------------------------------------------------------------------------------
// Plugins written in WebAssembly text (`wasmcol_tests::wat_plugin`), for what a Rust plugin
// cannot do: a second linear memory, a memory with a huge declared maximum, `table.grow`.

/// The processor of a WAT plugin that answers `ok(unchanged)`, running `on_trigger` first
/// on a batch holding a span named `trigger`; `declarations` add memories and tables.
fn wat_plugin(declarations: &str, on_trigger: &str) -> tempfile::TempPath {
    wat_plugin::component(&wat_plugin::processor(declarations, on_trigger))
        .expect("the WAT plugin builds")
}

/// [`config`] with a `health_check` extension on `health`.
fn config_with_health(http: u16, metrics: u16, health: u16, processor: &str) -> String {
    config(http, metrics, processor).replace(
        "service:\n  pipelines:",
        &format!(
            "extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\n\
             service:\n  extensions: [health_check]\n  pipelines:"
        ),
    )
}

/// What became of one batch that made a plugin fail, in a collector with a health check.
struct Failed {
    c: Collector,
    metrics: u16,
    /// The HTTP status the sender got for the triggering batch, and after how long.
    status: u16,
    took: Duration,
    /// How much the collector's peak resident memory (`VmHWM`) rose with it.
    peak_growth: u64,
}

/// Starts a collector with `processor` (the lines under `wasm/p`), warms it up (span 50),
/// sends one batch holding a span named `trigger` (span 100) and waits for its failure to be
/// logged. Then checks the collector carries on: the health check answers, and the next
/// batch (span 200) is processed, `next` saying how it must look.
async fn fails_on_trigger(processor: &str, next: impl Fn(&Span) -> bool) -> Failed {
    let (http, metrics, health) = (free_port(), free_port(), free_port());
    let c = Collector::start(&config_with_health(http, metrics, health, processor), http);
    assert_eq!(
        post(http, request(50, &["warm-up"])).await,
        200,
        "{}",
        c.log()
    );
    wait_for_span(&c, 50);
    let peak_before = c.peak_rss_bytes();
    let started = std::time::Instant::now();
    let status = post(http, request(100, &["trigger"])).await;
    let took = started.elapsed();
    assert!(
        c.wait_for_log_line(&["wasm/p", "reason="], Duration::from_secs(5)),
        "no failure logged:\n{}",
        c.log()
    );
    let peak_growth = c.peak_rss_bytes().saturating_sub(peak_before);
    let healthy = http_request(
        "GET",
        &format!("http://127.0.0.1:{health}/"),
        &[],
        Vec::new(),
    )
    .await
    .map(|r| r.status)
    .ok();
    assert_eq!(healthy, Some(200), "the health check answers:\n{}", c.log());
    assert_eq!(post(http, request(200, &["normal"])).await, 200);
    let span = wait_for_span(&c, 200);
    assert!(next(&span), "the next batch: {span:?}\n{}", c.log());
    Failed {
        c,
        metrics,
        status,
        took,
        peak_growth,
    }
}

impl Failed {
    /// The checks every hostile case shares: one failure counted under `reason` (and no
    /// other), the call and the sender's answer within `call_timeout_ms` + 50 ms (+30 ms for
    /// HTTP), peak RSS growth below 2 × `memory_mib`, and the triggering batch handled as
    /// `on_error` says.
    async fn assert_handled(
        &self,
        reason: &str,
        call_timeout_ms: u64,
        memory_mib: u64,
        on_error: &str,
    ) {
        let log = self.c.log();
        let text = scrape_metrics(self.metrics).await;
        assert_eq!(failures(self.metrics, reason).await, 1.0, "{text}\n{log}");
        assert_eq!(
            text.matches("wasmcol_plugin_failures_total{").count(),
            1,
            "failures under another reason:\n{text}"
        );
        let elapsed = failed_call_ms(&self.c, reason);
        assert!(
            elapsed <= call_timeout_ms + 50,
            "the call took {elapsed} ms; call_timeout is {call_timeout_ms} ms (+50 ms)"
        );
        assert!(
            self.took < Duration::from_millis(call_timeout_ms + 80),
            "answered after {:?}; call_timeout is {call_timeout_ms} ms (+50 ms, +30 ms for HTTP)",
            self.took
        );
        assert!(
            self.peak_growth < 2 * (memory_mib << 20),
            "peak RSS rose by {} MiB; memory_mib is {memory_mib}:\n{log}",
            self.peak_growth >> 20
        );
        let arrived = output(&self.c)
            .into_iter()
            .find(|s| s.span_id == 100u64.to_be_bytes());
        match on_error {
            "pass" => {
                assert_eq!(self.status, 200, "{log}");
                assert_eq!(
                    arrived.map(|s| s.attributes),
                    Some(vec![string("keep", "me")]),
                    "passed on unchanged (on_error: pass)"
                );
            }
            "drop" => {
                assert_eq!(self.status, 200, "{log}");
                assert!(arrived.is_none(), "dropped (on_error: drop)");
                assert_eq!(
                    metric_value(
                        &text,
                        "wasmcol_processor_dropped_spans_total{processor=\"wasm/p\",pipeline=\"traces\"}"
                    ),
                    Some(1.0),
                    "{text}"
                );
            }
            "refuse" => {
                assert_eq!(
                    self.status, 503,
                    "refused, retryable (on_error: refuse):\n{log}"
                );
                assert!(
                    arrived.is_none(),
                    "the refused span never reaches the output"
                );
            }
            other => panic!("on_error {other}?"),
        }
    }
}

/// The WAT plugin answered `ok(unchanged)`.
fn unchanged(s: &Span) -> bool {
    s.attributes == vec![string("keep", "me")]
}

#[test]
fn a_second_memory_stops_validation_and_startup() {
    // Two linear memories would be two budgets: the limiter allows one, so the instance the
    // start-up check makes is refused, and the collector never starts.
    let plugin = wat_plugin(r#"(memory (export "memory") 1) (memory $second 1)"#, "");
    let http = free_port();
    let yaml = config(
        http,
        free_port(),
        &format!(
            "plugin: \"{}\"\nlimits: {{ memory_mib: 8 }}",
            plugin.display()
        ),
    );
    let want = format!(
        "c.yaml:9: processors.wasm/p.plugin: {:?} failed while starting: needs more than a \
         plugin instance may have (memory count too high at 2): at most 1 linear memory, 4 \
         tables and 16 core instances",
        plugin.display().to_string()
    );
    let (code, stderr) = validate(&yaml);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&want), "want: {want}\ngot: {stderr}");

    // Start-up stops with the same message, before listening.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        yaml.replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(binary("wasmcol"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&want), "want: {want}\ngot: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", http)).is_err(),
        "nothing listens"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_with_a_huge_maximum_still_stops_at_memory_mib() {
    // The one memory declares a 4 GiB maximum; the plugin grows it 1 MiB at a time, touching
    // every page, until the host stops it at memory_mib.
    let plugin = wat_plugin(
        r#"(memory (export "memory") 1 65536)"#,
        "(block $out
           (loop $grow
             (local.set $a (memory.grow 0 (i32.const 16)))
             (br_if $out (i32.eq (local.get $a) (i32.const -1)))
             (local.set $b (i32.add (local.get $a) (i32.const 16)))
             (loop $touch
               (i32.store8 (i32.shl (local.get $a) (i32.const 16)) (i32.const 1))
               (local.set $a (i32.add (local.get $a) (i32.const 1)))
               (br_if $touch (i32.lt_u (local.get $a) (local.get $b))))
             (br $grow)))",
    );
    let f = fails_on_trigger(
        &format!(
            "plugin: \"{}\"\nlimits: {{ memory_mib: 64, call_timeout: 2s }}\non_error: drop",
            plugin.display()
        ),
        unchanged,
    )
    .await;
    f.assert_handled("memory_limit", 2000, 64, "drop").await;
    assert!(
        f.c.log()
            .contains("plugin tried to grow its memory past limits.memory_mib; dropping the batch"),
        "{}",
        f.c.log()
    );
}

/// A plugin whose `process` grows its own table by 2^28 elements (2 GiB of host memory, were
/// it allowed).
fn table_grow_plugin() -> tempfile::TempPath {
    wat_plugin(
        r#"(memory (export "memory") 1) (table $t 1 funcref)"#,
        "(drop (table.grow $t (ref.null func) (i32.const 0x10000000)))",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn table_grow_to_2_pow_28_is_a_memory_limit_refused_as_on_error_says() {
    let plugin = table_grow_plugin();
    let f = fails_on_trigger(
        &format!(
            "plugin: \"{}\"\nlimits: {{ memory_mib: 32, call_timeout: 300ms }}\non_error: refuse",
            plugin.display()
        ),
        unchanged,
    )
    .await;
    f.assert_handled("memory_limit", 300, 32, "refuse").await;
    assert!(
        f.c.log()
            .contains("plugin tried to grow its memory past limits.memory_mib; refusing the batch"),
        "{}",
        f.c.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn table_grow_to_2_pow_28_is_a_memory_limit_passed_as_on_error_says() {
    let plugin = table_grow_plugin();
    let f = fails_on_trigger(
        &format!(
            "plugin: \"{}\"\nlimits: {{ memory_mib: 32, call_timeout: 300ms }}\non_error: pass",
            plugin.display()
        ),
        unchanged,
    )
    .await;
    f.assert_handled("memory_limit", 300, 32, "pass").await;
}

/// The hostile plugin's spans: tagged with `hostile.instance_calls`.
fn tagged(s: &Span) -> bool {
    int_attr(s, "hostile.instance_calls").is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_with_a_value_nested_100_deep_is_invalid_output() {
    let f = fails_on_trigger(
        &format!(
            "plugin: {HOSTILE}\nconfig: {{ mode: nested }}\n\
             limits: {{ memory_mib: 32, call_timeout: 500ms }}\non_error: pass"
        ),
        tagged,
    )
    .await;
    f.assert_handled("invalid_output", 500, 32, "pass").await;
    let log = f.c.log();
    assert!(
        log.contains(
            "returned an invalid answer: attribute \"nested\": the encoded value is not an \
             OTLP AnyValue"
        ) && log.contains("recursion limit reached"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replacement_with_a_value_nested_100_deep_is_invalid_output() {
    let f = fails_on_trigger(
        &format!(
            "plugin: {HOSTILE}\nconfig: {{ mode: nested-replace }}\n\
             limits: {{ memory_mib: 32, call_timeout: 500ms }}\non_error: refuse"
        ),
        tagged,
    )
    .await;
    f.assert_handled("invalid_output", 500, 32, "refuse").await;
    let log = f.c.log();
    assert!(
        log.contains("the replacement batch is not valid OTLP protobuf")
            && log.contains("recursion limit reached"),
        "{log}"
    );
}

/// The hostile modes written in Rust, each checked as the hostile suite asks: the collector
/// stays up and healthy, the call ends within `call_timeout` + 50 ms, peak RSS rises by less
/// than 2 × `memory_mib`, the failure is counted under its reason, and the batch is passed,
/// dropped or refused as `on_error` says (each mode with a different `on_error`).
async fn contained(
    mode: &str,
    call_timeout_ms: u64,
    memory_mib: u64,
    extra_limits: &str,
    reason: &str,
    on_error: &str,
) {
    let f = fails_on_trigger(
        &format!(
            "plugin: {HOSTILE}\nconfig: {{ mode: {mode} }}\n\
             limits: {{ call_timeout: {call_timeout_ms}ms, memory_mib: {memory_mib}{extra_limits} }}\n\
             on_error: {on_error}"
        ),
        // A fresh instance took the next batch.
        |s| int_attr(s, "hostile.instance_calls") == Some(1),
    )
    .await;
    f.assert_handled(reason, call_timeout_ms, memory_mib, on_error)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_busy_loop_is_contained() {
    contained("loop", 100, 64, "", "timeout", "refuse").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_sleep_is_contained() {
    contained("sleep", 200, 64, "", "timeout", "drop").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_4_gib_allocation_is_contained() {
    contained("alloc", 500, 64, "", "memory_limit", "pass").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_stack_overflow_is_contained() {
    contained("recurse", 500, 64, "", "trap", "refuse").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_panic_is_contained() {
    contained("panic", 500, 64, "", "trap", "drop").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_error_is_contained() {
    contained("error", 500, 64, "", "error", "pass").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_out_of_range_edit_is_contained() {
    contained("bad-index", 500, 64, "", "invalid_output", "refuse").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_non_utf8_key_is_contained() {
    contained("bad-utf8", 500, 64, "", "invalid_output", "pass").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_malformed_replacement_is_contained() {
    contained("bad-replacement", 500, 64, "", "invalid_output", "drop").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_oversized_answer_is_contained() {
    contained(
        "oversize",
        500,
        64,
        ", max_output_bytes: 1MiB",
        "invalid_output",
        "refuse",
    )
    .await;
}
