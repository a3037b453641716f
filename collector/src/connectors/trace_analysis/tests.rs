use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::detect::{self, Finding, Pattern, TraceSpan, normalize_path, normalize_query};
use super::*;
use crate::component::{ConnectorConfig, Validate};
use crate::connectors::OVERFLOW_ATTRIBUTE;
use crate::testing::{Recorder, context};
use prost::Message;

const MS: u64 = 1_000_000;

/// A trace under construction: (service, span).
#[derive(Default, Clone)]
struct Trace {
    spans: Vec<(&'static str, Span)>,
    trace_id: u8,
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

impl Trace {
    fn new(trace_id: u8) -> Self {
        Self {
            spans: Vec::new(),
            trace_id,
        }
    }

    /// Adds a span; returns its id.
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: &'static str,
        parent: u64,
        name: &str,
        kind: SpanKind,
        start_ms: u64,
        end_ms: u64,
        attrs: &[(&str, &str)],
    ) -> u64 {
        let id = self.spans.len() as u64 + 1;
        self.spans.push((
            service,
            Span {
                trace_id: vec![self.trace_id; 16],
                span_id: id.to_be_bytes().to_vec(),
                parent_span_id: if parent == 0 {
                    Vec::new()
                } else {
                    parent.to_be_bytes().to_vec()
                },
                name: name.into(),
                kind: kind as i32,
                start_time_unix_nano: start_ms * MS,
                end_time_unix_nano: end_ms * MS,
                attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            },
        ));
        id
    }

    fn error(&mut self, id: u64) {
        self.spans[id as usize - 1].1.status = Some(Status {
            code: 2,
            ..Default::default()
        });
    }

    /// Each span's protobuf body, with its service: what the buffer holds.
    fn bodies(&self) -> Vec<(&'static str, Vec<u8>)> {
        self.spans
            .iter()
            .map(|(service, span)| (*service, span.encode_to_vec()))
            .collect()
    }

    fn findings(&self, config: &TraceAnalysisConfig) -> Vec<Finding> {
        let bodies = self.bodies();
        detect::analyse(&read(&bodies), &config.detectors())
    }

    fn resources(&self) -> Vec<ResourceSpans> {
        self.spans
            .iter()
            .map(|(service, span)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span.clone()],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect()
    }
}

/// The spans read in place from their bodies.
fn read<'a>(bodies: &'a [(&'static str, Vec<u8>)]) -> Vec<TraceSpan<'a>> {
    bodies
        .iter()
        .map(|(service, body)| TraceSpan::read(body, service))
        .collect()
}

fn patterns(findings: &[Finding]) -> Vec<(Pattern, u32)> {
    findings.iter().map(|f| (f.pattern, f.magnitude)).collect()
}

/// A server span with `n` database calls, sequential or all at once, with statement `query(i)`.
fn db_calls(n: u64, sequential: bool, query: impl Fn(u64) -> String) -> Trace {
    let mut t = Trace::new(1);
    let root = t.span("shop", 0, "GET /orders", SpanKind::Server, 0, 1000, &[]);
    for i in 0..n {
        let (start, end) = if sequential {
            (1 + 10 * i, 9 + 10 * i)
        } else {
            (1, 9)
        };
        t.span(
            "shop",
            root,
            "SELECT shop.items",
            SpanKind::Client,
            start,
            end,
            &[
                ("db.system", "postgresql"),
                ("db.namespace", "shop"),
                ("db.query.text", &query(i)),
            ],
        );
    }
    t
}

#[test]
fn queries_and_paths_are_normalized() {
    assert_eq!(
        normalize_query("SELECT * FROM items  WHERE id = 42 AND name = 'it''s'"),
        "SELECT * FROM items WHERE id = ? AND name = ?"
    );
    assert_eq!(
        normalize_query("select a1 from t2 where x in (1, 2.5, 0x1f)"),
        "select a1 from t2 where x in (?, ?, ?)"
    );
    assert_eq!(
        normalize_path("/users/123/orders/a1b2"),
        "/users/?/orders/?"
    );
    assert_eq!(normalize_path("/health"), "/health");
}

#[test]
fn n_plus_one_is_a_run_of_sequential_calls_of_one_statement() {
    let config = TraceAnalysisConfig::default();
    let query = |i: u64| format!("SELECT * FROM items WHERE id = {i}");
    let found = db_calls(12, true, query).findings(&config);
    assert_eq!(patterns(&found), [(Pattern::NPlusOne, 12)]);
    assert_eq!(found[0].anchor, 0);
    assert_eq!(found[0].spans.len(), 13);
    // Fewer than 5, or all at once: not a serial loop.
    assert!(db_calls(4, true, query).findings(&config).is_empty());
    assert!(db_calls(12, false, query).findings(&config).is_empty());
    // Different statements: not one loop.
    let varied = db_calls(12, true, |i| {
        format!(
            "SELECT * FROM t{} WHERE id = 1",
            "abcdefghijkl".as_bytes()[i as usize] as char
        )
    });
    assert!(varied.findings(&config).is_empty());
    // Options.
    let mut strict: TraceAnalysisConfig =
        serde_yaml_ng::from_str("{n_plus_one: {min_calls: 13}}").unwrap();
    assert!(db_calls(12, true, query).findings(&strict).is_empty());
    strict.n_plus_one.min_calls = 4;
    assert_eq!(
        patterns(&db_calls(4, true, query).findings(&strict)),
        [(Pattern::NPlusOne, 4)]
    );
    let off: TraceAnalysisConfig =
        serde_yaml_ng::from_str("{n_plus_one: {enabled: false}}").unwrap();
    assert!(db_calls(12, true, query).findings(&off).is_empty());
}

#[test]
fn duplicate_calls_repeat_a_statement_with_its_parameters() {
    let config = TraceAnalysisConfig::default();
    let same = |_| "SELECT * FROM users WHERE id = 7".to_owned();
    let found = db_calls(3, true, same).findings(&config);
    assert_eq!(patterns(&found), [(Pattern::DuplicateCall, 3)]);
    // All at once is a duplicate too.
    assert_eq!(
        patterns(&db_calls(3, false, same).findings(&config)),
        [(Pattern::DuplicateCall, 3)]
    );
    // Other parameters: not duplicates.
    let distinct = |i| format!("SELECT * FROM users WHERE id = {i}");
    assert!(db_calls(3, true, distinct).findings(&config).is_empty());
    // A serial loop of identical calls is reported once, as n_plus_one.
    assert_eq!(
        patterns(&db_calls(6, true, same).findings(&config)),
        [(Pattern::NPlusOne, 6)]
    );
    let three: TraceAnalysisConfig =
        serde_yaml_ng::from_str("{duplicate_call: {min_calls: 4}}").unwrap();
    assert!(db_calls(3, true, same).findings(&three).is_empty());
}

/// A frontend server span calling `pricing` `n` times at once over HTTP, each answered by a
/// pricing server span.
fn fan_out(n: u64) -> Trace {
    let mut t = Trace::new(2);
    let root = t.span("frontend", 0, "GET /cart", SpanKind::Server, 0, 100, &[]);
    for i in 0..n {
        let url = format!("http://pricing/price/{i}");
        let call = t.span(
            "frontend",
            root,
            "GET",
            SpanKind::Client,
            1,
            50,
            &[("http.request.method", "GET"), ("url.full", &url)],
        );
        t.span(
            "pricing",
            call,
            "GET /price/{id}",
            SpanKind::Server,
            2,
            49,
            &[],
        );
    }
    t
}

#[test]
fn fan_out_counts_calls_per_callee_under_an_entry_span() {
    let config = TraceAnalysisConfig::default();
    let found = fan_out(30).findings(&config);
    assert_eq!(patterns(&found), [(Pattern::FanOut, 30)]);
    assert_eq!(found[0].anchor, 0);
    assert!(fan_out(20).findings(&config).is_empty());
    let low: TraceAnalysisConfig =
        serde_yaml_ng::from_str("{fan_out: {max_calls_per_callee: 5}}").unwrap();
    assert_eq!(patterns(&fan_out(6).findings(&low)), [(Pattern::FanOut, 6)]);
}

/// frontend → checkout → payments → database; the database call fails when `fail`, and the
/// error propagates up to the root.
fn propagated(fail: bool) -> Trace {
    let mut t = Trace::new(3);
    let root = t.span("frontend", 0, "POST /buy", SpanKind::Server, 0, 100, &[]);
    let c1 = t.span(
        "frontend",
        root,
        "POST checkout",
        SpanKind::Client,
        1,
        99,
        &[],
    );
    let s1 = t.span(
        "checkout",
        c1,
        "POST /checkout",
        SpanKind::Server,
        2,
        98,
        &[],
    );
    let c2 = t.span(
        "checkout",
        s1,
        "POST payments",
        SpanKind::Client,
        3,
        97,
        &[],
    );
    let s2 = t.span("payments", c2, "POST /pay", SpanKind::Server, 4, 96, &[]);
    let db = t.span(
        "payments",
        s2,
        "INSERT payments",
        SpanKind::Client,
        5,
        95,
        &[
            ("db.system", "postgresql"),
            ("db.query.text", "INSERT INTO payments VALUES (1)"),
        ],
    );
    t.span("checkout", s1, "GET stock", SpanKind::Client, 1, 2, &[]);
    if fail {
        for id in [root, c1, s1, c2, s2, db] {
            t.error(id);
        }
    }
    t
}

#[test]
fn error_origin_is_the_deepest_error_and_lists_where_it_went() {
    let config = TraceAnalysisConfig::default();
    let found = propagated(true).findings(&config);
    assert_eq!(patterns(&found), [(Pattern::ErrorOrigin, 2)]);
    assert_eq!(found[0].anchor, 5, "the database call");
    assert_eq!(found[0].propagated_to, ["checkout", "frontend"]);
    assert_eq!(found[0].spans, [5, 4, 3, 2, 1, 0]);
    assert!(propagated(false).findings(&config).is_empty());
    // Two errors in different branches: two origins; an error that stopped where it was
    // handled reached no other service.
    let mut t = propagated(false);
    t.error(7);
    t.error(6);
    let found = t.findings(&config);
    assert_eq!(
        patterns(&found),
        [(Pattern::ErrorOrigin, 0), (Pattern::ErrorOrigin, 0)]
    );
}

#[test]
fn findings_mark_the_spans_and_count_weighted_by_adjusted_counts() {
    let config = TraceAnalysisConfig::default();
    let mut t = db_calls(12, true, |i| format!("SELECT * FROM items WHERE id = {i}"));
    t.spans[0].1.trace_state = "ot=th:8".into();
    let mut resources = t.resources();
    let mut findings = Findings::new("trace_analysis", 0, 0, 0);
    let found = analyse_trace(&mut resources, "01", &config, &mut findings);
    assert_eq!(found.len(), 1);
    let marked = resources
        .iter()
        .flat_map(|rs| &rs.scope_spans[0].spans)
        .filter(|s| s.attributes.iter().any(|kv| kv.key == SPAN_ATTRIBUTE))
        .count();
    assert_eq!(marked, 13);
    let found = analyse_trace(&mut t.resources(), "02", &config, &mut findings);
    assert_eq!(found.len(), 1);
    let metrics = findings.flush(5);
    assert_eq!(metrics.len(), 1);
    let metric = &metrics[0].scope_metrics[0].metrics[0];
    assert_eq!(metric.name, METRIC);
    let Some(metric::Data::Sum(sum)) = &metric.data else {
        panic!()
    };
    let point = &sum.data_points[0];
    // Two traces, each anchored on a span standing for two.
    assert_eq!(point.value, Some(number_data_point::Value::AsDouble(4.0)));
    let attr = |k: &str| {
        point
            .attributes
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
    };
    assert_eq!(attr("pattern").as_deref(), Some("n_plus_one"));
    assert_eq!(attr("service.name").as_deref(), Some("shop"));
    assert_eq!(attr("span.name").as_deref(), Some("GET /orders"));
    assert_eq!(attr(WORST_TRACE_ATTRIBUTE).as_deref(), Some("01"));
}

#[tokio::test]
async fn the_connector_analyses_complete_traces_and_passes_them_on() {
    let config: TraceAnalysisConfig =
        serde_yaml_ng::from_str("{decision_wait: 50ms, metrics_flush_interval: 1h}").unwrap();
    assert!(config.validate().is_empty());
    let traces = Recorder::<Traces>::new();
    let metrics = Recorder::<Metrics>::new();
    let to_traces = config
        .build_traces_to_traces(&context("trace_analysis"), traces.clone())
        .unwrap();
    let to_metrics = config
        .build_traces_to_metrics(&context("trace_analysis"), metrics.clone())
        .unwrap();
    to_traces.start().await.unwrap();
    to_metrics.start().await.unwrap();
    // The error trace arrives in two halves: analysed as one.
    let t = propagated(true);
    let all = t.resources();
    for half in [all[..3].to_vec(), all[3..].to_vec()] {
        to_traces
            .consume(TraceBatch::new(half.clone()))
            .await
            .unwrap();
        to_metrics.consume(TraceBatch::new(half)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out: Vec<Span> = traces
        .batches()
        .iter()
        .flat_map(|b| b.resources().to_vec())
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect();
    assert_eq!(out.len(), 7);
    let marked = out
        .iter()
        .filter(|s| s.attributes.iter().any(|kv| kv.key == SPAN_ATTRIBUTE))
        .count();
    assert_eq!(marked, 6);
    // A late span of the analysed trace is passed on, not analysed again.
    to_traces
        .consume(TraceBatch::new(all[..1].to_vec()))
        .await
        .unwrap();
    assert_eq!(traces.batches().len(), 2);
    to_traces.shutdown().await;
    to_metrics.shutdown().await;
    let found: Vec<_> = metrics
        .batches()
        .iter()
        .flat_map(|b| b.resources().to_vec())
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .filter(|m| m.name == METRIC)
        .collect();
    assert_eq!(found.len(), 1, "one service: payments");
}

/// Traces `ids`, each a small N+1 trace with its own id.
fn numbered(id: u8) -> Vec<ResourceSpans> {
    let mut t = db_calls(5, true, |i| format!("SELECT * FROM items WHERE id = {i}"));
    t.trace_id = id;
    for (_, span) in &mut t.spans {
        span.trace_id = vec![id; 16];
    }
    t.resources()
}

#[tokio::test]
async fn the_buffer_holds_num_traces_and_refuses_past_its_byte_budget() {
    // At most 2 traces wait: the older ones are analysed at once, long before decision_wait.
    let config: TraceAnalysisConfig =
        serde_yaml_ng::from_str("{decision_wait: 1h, num_traces: 2}").unwrap();
    let traces = Recorder::<Traces>::new();
    let c = config
        .build_traces_to_traces(&context("trace_analysis"), traces.clone())
        .unwrap();
    c.start().await.unwrap();
    for id in 1..=5 {
        c.consume(TraceBatch::new(numbered(id))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let analysed = |rec: &Recorder<Traces>| -> std::collections::BTreeSet<u8> {
        rec.batches()
            .iter()
            .flat_map(|b| b.resources().to_vec())
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .map(|s| s.trace_id[0])
            .collect()
    };
    assert_eq!(analysed(&traces), [1, 2, 3].into());
    c.shutdown().await;
    assert_eq!(analysed(&traces), [1, 2, 3, 4, 5].into());

    // A byte budget smaller than one trace: once it is used up, new spans are refused with a
    // retryable error until analysis frees it.
    let config: TraceAnalysisConfig =
        serde_yaml_ng::from_str("{decision_wait: 1h, max_buffer_bytes: 512}").unwrap();
    let c = config
        .build_traces_to_traces(&context("trace_analysis"), Recorder::<Traces>::new())
        .unwrap();
    c.consume(TraceBatch::new(numbered(1))).await.unwrap();
    let refused = c.consume(TraceBatch::new(numbered(2))).await.unwrap_err();
    assert!(refused.is_retryable(), "{refused}");
}

#[test]
fn the_critical_path_gives_each_span_its_self_time_on_it() {
    // root 0-100: A 10-40 and B 30-90 (B's child C 40-80; D 85-95 starts inside B's end
    // and is clipped to it); E 95-99 ends last.
    let mut t = Trace::new(4);
    let root = t.span("front", 0, "root", SpanKind::Server, 0, 100, &[]);
    t.span("front", root, "A", SpanKind::Internal, 10, 40, &[]);
    let b = t.span("back", root, "B", SpanKind::Client, 30, 90, &[]);
    t.span("back", b, "C", SpanKind::Internal, 40, 80, &[]);
    t.span("back", b, "D", SpanKind::Internal, 85, 95, &[]);
    t.span("front", root, "E", SpanKind::Internal, 95, 99, &[]);
    let bodies = t.bodies();
    let spans = read(&bodies);
    let path: BTreeMap<&str, u64> = detect::critical_path(&spans)
        .into_iter()
        .map(|(i, nanos)| (spans[i].name, nanos / MS))
        .collect();
    // root: 99-100, 90-95, 0-10; E 95-99; B: 80-85 and 30-40, D 85-90, C 40-80; A 10-30.
    let expected: BTreeMap<&str, u64> = [
        ("root", 16),
        ("E", 4),
        ("B", 15),
        ("D", 5),
        ("C", 40),
        ("A", 20),
    ]
    .into();
    assert_eq!(path, expected);
    assert_eq!(path.values().sum::<u64>(), 100);
}

/// A trace whose ids are all 8 bytes is linked by comparing ids as numbers; one span with an
/// id of another length sends the whole trace down the byte-slice path. Both link alike,
/// ids repeated or missing, and a span naming itself as parent.
#[test]
fn span_ids_of_any_length_link_alike() {
    let mut t = Trace::new(9);
    let root = t.span("front", 0, "root", SpanKind::Server, 0, 100, &[]);
    let a = t.span("front", root, "A", SpanKind::Client, 10, 60, &[]);
    t.span("back", a, "B", SpanKind::Server, 20, 50, &[]);
    t.span("back", 77, "orphan", SpanKind::Internal, 30, 40, &[]);
    let me = t.span("front", root, "self", SpanKind::Internal, 60, 90, &[]);
    t.spans[me as usize - 1].1.parent_span_id = me.to_be_bytes().to_vec();
    // A second span with A's id: the last one is the parent of A's children.
    t.span("front", root, "A again", SpanKind::Internal, 62, 64, &[]);
    t.spans[5].1.span_id = a.to_be_bytes().to_vec();
    let linked = |t: &Trace| {
        let bodies = t.bodies();
        let spans = read(&bodies);
        let path: BTreeMap<String, u64> = detect::critical_path(&spans)
            .into_iter()
            .map(|(i, nanos)| (spans[i].name.to_owned(), nanos / MS))
            .collect();
        let deps: Vec<String> = detect::dependencies(&spans)
            .iter()
            .map(|d| d.callee.to_string())
            .collect();
        (path, deps)
    };
    let numbers = linked(&t);
    // A 3-byte id on a span nothing points at: the same links by bytes.
    let mut bytes = t.clone();
    bytes.span("front", 0, "odd", SpanKind::Internal, 200, 201, &[]);
    bytes.spans[6].1.span_id = vec![1, 2, 3];
    let (mut path, deps) = linked(&bytes);
    assert_eq!(path.remove("odd"), Some(1));
    assert_eq!((path, deps), numbers);
    // B hangs under the later span with A's id, so A's callee is its target (none);
    // the orphan and the span naming itself are roots of their own.
    assert_eq!(numbers.1, [""]);
    assert_eq!(numbers.0["orphan"], 10);
    assert_eq!(numbers.0["self"], 30);
}

#[test]
fn dependencies_tell_failures_that_failed_the_request_from_handled_ones() {
    let deps = |t: &Trace| -> Vec<(String, bool, bool)> {
        let bodies = t.bodies();
        detect::dependencies(&read(&bodies))
            .into_iter()
            .map(|d| (d.callee.to_string(), d.failed, d.failed_entry))
            .collect()
    };
    let row = |callee: &str, failed, entry| (callee.to_owned(), failed, entry);
    // The error went all the way up: every call on its way failed its caller's request.
    assert_eq!(
        deps(&propagated(true)),
        [
            row("checkout", true, true),
            row("payments", true, true),
            row("postgresql/", true, true),
            row("", false, false),
        ]
    );
    // Payments failed (its server span), checkout handled it: a weak dependency.
    let mut t = propagated(false);
    t.error(5);
    assert_eq!(
        deps(&t),
        [
            row("checkout", false, false),
            row("payments", true, false),
            row("postgresql/", false, false),
            row("", false, false),
        ]
    );
    // In the metrics: per caller → callee, weighted.
    let config = TraceAnalysisConfig::default();
    let mut findings = Findings::new("trace_analysis", 0, 0, 0);
    analyse_trace(&mut t.resources(), "01", &config, &mut findings);
    analyse_trace(
        &mut propagated(true).resources(),
        "02",
        &config,
        &mut findings,
    );
    assert_eq!(
        findings.dependencies.get("checkout", "payments"),
        Some(&[2.0, 2.0, 1.0])
    );
    let names: Vec<String> = findings
        .flush(1)
        .iter()
        .find(|rm| {
            rm.resource.as_ref().unwrap().attributes[0].value
                == Some(AnyValue {
                    value: Some(Value::StringValue("checkout".into())),
                })
        })
        .unwrap()
        .scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            CRITICAL_PATH_METRIC,
            DEPENDENCY_CALLS_METRIC,
            DEPENDENCY_FAILED_METRIC,
            DEPENDENCY_FAILED_ENTRIES_METRIC
        ]
    );
}

/// A frontend server span making one HTTP call per entry of `calls` (start and end in ms), to
/// a different service and path each, none answered.
fn serial(calls: &[(u64, u64)]) -> Trace {
    let mut t = Trace::new(5);
    let root = t.span("frontend", 0, "GET /page", SpanKind::Server, 0, 5000, &[]);
    let hosts = ["inventory", "shipping", "reviews", "ads", "search", "cart"];
    for (i, &(start, end)) in calls.iter().enumerate() {
        let host = hosts[i % hosts.len()];
        let url = format!("http://{host}/{host}/{i}");
        t.span(
            "frontend",
            root,
            "GET",
            SpanKind::Client,
            start,
            end,
            &[
                ("http.request.method", "GET"),
                ("url.full", &url),
                ("server.address", host),
            ],
        );
    }
    t
}

#[test]
fn serial_calls_are_independent_calls_one_after_the_other() {
    let config = TraceAnalysisConfig::default();
    // Four 50 ms calls, one after the other: 150 ms to save.
    let four = serial(&[(10, 60), (61, 111), (112, 162), (163, 213)]);
    let found = four.findings(&config);
    assert_eq!(patterns(&found), [(Pattern::SerialCalls, 4)]);
    assert_eq!(found[0].anchor, 0);
    assert_eq!(found[0].spans, [0, 1, 2, 3, 4]);
    // All at once, or overlapping in a chain: nothing to save by running them at once.
    let at_once = serial(&[(10, 60), (10, 60), (10, 60), (10, 60)]);
    assert!(at_once.findings(&config).is_empty());
    let overlapping = serial(&[(10, 60), (50, 100), (90, 140), (130, 180)]);
    assert!(overlapping.findings(&config).is_empty());
    // Two calls are not enough; four short ones save too little (90 ms).
    assert!(
        serial(&[(10, 110), (120, 220)])
            .findings(&config)
            .is_empty()
    );
    let short = serial(&[(10, 40), (41, 71), (72, 102), (103, 133)]);
    assert!(short.findings(&config).is_empty());
    // A gap over max_gap (500 ms) ends a run: 2 + 2 calls.
    let apart = serial(&[(0, 100), (101, 201), (800, 900), (901, 1001)]);
    assert!(apart.findings(&config).is_empty());
    // One overlapping call splits the run; the sequential rest still counts.
    let mixed = serial(&[(0, 100), (50, 150), (151, 251), (252, 352), (353, 453)]);
    let found = mixed.findings(&config);
    assert_eq!(patterns(&found), [(Pattern::SerialCalls, 4)]);
    assert_eq!(found[0].spans, [0, 2, 3, 4, 5]);
    // Options.
    let lax: TraceAnalysisConfig =
        serde_yaml_ng::from_str("{serial_calls: {min_calls: 2, min_saving: 50ms, max_gap: 1s}}")
            .unwrap();
    assert!(lax.validate().is_empty());
    assert_eq!(patterns(&short.findings(&lax)), [(Pattern::SerialCalls, 4)]);
    assert_eq!(patterns(&apart.findings(&lax)), [(Pattern::SerialCalls, 4)]);
    let off: TraceAnalysisConfig =
        serde_yaml_ng::from_str("{serial_calls: {enabled: false}}").unwrap();
    assert!(four.findings(&off).is_empty());
    let bad: TraceAnalysisConfig =
        serde_yaml_ng::from_str("{serial_calls: {min_calls: 1}}").unwrap();
    let problems = bad.validate();
    assert_eq!(problems.len(), 1);
    assert!(format!("{problems:?}").contains("serial_calls.min_calls"));
    assert!(serde_yaml_ng::from_str::<TraceAnalysisConfig>("{serial_calls: {min: 2}}").is_err());
}

#[test]
fn serial_calls_leave_repeats_of_one_statement_to_n_plus_one() {
    let config = TraceAnalysisConfig::default();
    // Twelve 50 ms queries of one statement, one after the other: a loop, not serial calls.
    let mut t = Trace::new(6);
    let root = t.span("shop", 0, "GET /orders", SpanKind::Server, 0, 1000, &[]);
    for i in 0..12u64 {
        let query = format!("SELECT * FROM items WHERE id = {i}");
        t.span(
            "shop",
            root,
            "SELECT shop.items",
            SpanKind::Client,
            1 + 60 * i,
            51 + 60 * i,
            &[
                ("db.system", "postgresql"),
                ("db.namespace", "shop"),
                ("db.query.text", &query),
            ],
        );
    }
    assert_eq!(patterns(&t.findings(&config)), [(Pattern::NPlusOne, 12)]);
    // Different tables: independent queries, one after the other.
    let mut t = Trace::new(7);
    let root = t.span("shop", 0, "GET /orders", SpanKind::Server, 0, 1000, &[]);
    for (i, table) in ["items", "users", "prices"].iter().enumerate() {
        let query = format!("SELECT * FROM {table} WHERE id = 1");
        let i = i as u64;
        t.span(
            "shop",
            root,
            "SELECT",
            SpanKind::Client,
            1 + 60 * i,
            51 + 60 * i,
            &[("db.system", "postgresql"), ("db.query.text", &query)],
        );
    }
    assert_eq!(patterns(&t.findings(&config)), [(Pattern::SerialCalls, 3)]);
}

#[test]
fn spans_read_in_place_match_the_decoded_spans() {
    // Attributes: the first of a key counts; a non-string value reads as absent, so the next
    // key is taken; parameters tell exact repeats apart.
    let mut span = Span {
        span_id: vec![1; 8],
        parent_span_id: vec![2; 8],
        name: "q".into(),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: 5,
        end_time_unix_nano: 9,
        trace_state: "ot=th:8".into(),
        status: Some(Status {
            code: 2,
            ..Default::default()
        }),
        attributes: vec![
            kv("db.system", "mysql"),
            kv("db.system", "postgresql"),
            KeyValue {
                key: "db.namespace".into(),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(3)),
                }),
                ..Default::default()
            },
            kv("db.name", "shop"),
        ],
        ..Default::default()
    };
    let body = span.encode_to_vec();
    let s = TraceSpan::read(&body, "svc");
    assert_eq!(
        (
            s.service,
            s.name,
            s.span_id,
            s.parent_span_id,
            s.trace_state
        ),
        ("svc", "q", &[1u8; 8][..], &[2u8; 8][..], "ot=th:8")
    );
    assert_eq!(
        (s.kind, s.start, s.end, s.status_code),
        (SpanKind::Client as i32, 5, 9, 2)
    );
    use super::spans::Key;
    assert_eq!(s.text(&[Key::DbSystem]), Some("mysql"));
    assert_eq!(s.text(&[Key::DbNamespace, Key::DbName]), Some("shop"));
    assert_eq!(s.parameters, 0);
    span.attributes.push(kv("db.query.parameter.id", "7"));
    let with_7 = span.encode_to_vec();
    span.attributes.pop();
    span.attributes.push(kv("db.query.parameter.id", "8"));
    let with_8 = span.encode_to_vec();
    let (a, b) = (TraceSpan::read(&with_7, ""), TraceSpan::read(&with_8, ""));
    assert!(a.parameters != 0 && a.parameters != b.parameters);
}

#[test]
fn the_metrics_side_buffers_only_what_the_analysis_reads() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    let mut t = db_calls(6, true, |i| format!("SELECT * FROM items WHERE id = {i}"));
    for (_, span) in &mut t.spans {
        span.attributes.push(kv("http.user_agent", "curl"));
        span.attributes.push(kv("db.query.parameter.id", "7"));
        span.events.push(Event {
            name: "retry".into(),
            ..Default::default()
        });
        span.links.push(Link {
            trace_id: vec![9; 16],
            span_id: vec![9; 8],
            ..Default::default()
        });
        span.flags = 0x100;
    }
    let request = ExportTraceServiceRequest {
        resource_spans: t.resources(),
    };
    let bytes = request.encode_to_vec();
    let mut stripped = Vec::new();
    super::strip::strip_request(&bytes, &mut stripped, &mut Vec::new());
    assert!(crate::otlp::wire::validate(&stripped).is_ok());
    assert!(stripped.len() < bytes.len());
    let back = ExportTraceServiceRequest::decode(&stripped[..]).unwrap();
    let mut expected = request.clone();
    for span in expected
        .resource_spans
        .iter_mut()
        .flat_map(|rs| &mut rs.scope_spans)
        .flat_map(|ss| &mut ss.spans)
    {
        span.attributes.retain(|kv| kv.key != "http.user_agent");
        span.events.clear();
        span.links.clear();
    }
    assert_eq!(back, expected);
    // The same findings either way.
    let config = TraceAnalysisConfig::default();
    let found = analyse_trace(
        &mut request.resource_spans.clone(),
        "01",
        &config,
        &mut Findings::new("trace_analysis", 0, 0, 0),
    );
    let from_stripped = analyse_trace(
        &mut back.resource_spans.clone(),
        "01",
        &config,
        &mut Findings::new("trace_analysis", 0, 0, 0),
    );
    assert_eq!(found, from_stripped);
    assert_eq!(patterns(&found), [(Pattern::NPlusOne, 6)]);
}

/// The points of `metric` in `resources`, as (value, whether it is the overflow series).
fn points_of(resources: &[ResourceMetrics], metric: &str) -> Vec<(f64, bool)> {
    resources
        .iter()
        .flat_map(|rm| &rm.scope_metrics[0].metrics)
        .filter(|m| m.name == metric)
        .flat_map(|m| match &m.data {
            Some(metric::Data::Sum(sum)) => sum.data_points.clone(),
            _ => panic!("{} is not a sum", m.name),
        })
        .map(|p| {
            let Some(number_data_point::Value::AsDouble(v)) = p.value else {
                panic!("{metric}: not a double")
            };
            let overflow = p.attributes.iter().any(|kv| kv.key == OVERFLOW_ATTRIBUTE);
            // The overflow series has no other attribute.
            assert!(!overflow || p.attributes.len() == 1, "{:?}", p.attributes);
            (v, overflow)
        })
        .collect()
}

#[test]
fn each_family_holds_at_most_the_cardinality_limit_and_the_rest_overflows() {
    let mut findings = Findings::new("trace_analysis", 0, 2, 10);
    // A client that puts ids in its span names: five series per family where two fit.
    let names: Vec<String> = (0..5).map(|i| format!("GET /users/{i}")).collect();
    let mut sums = Sums::default();
    for n in &names {
        sums.critical.insert(("shop", n), 1.0);
        sums.dependencies.insert(("shop", n, None), [1.0, 1.0, 0.0]);
        sums.add(("shop", "n_plus_one", n), 1.0, 1, &|| "01".to_owned());
    }
    findings.add(&mut sums, 1);
    assert_eq!(findings.series.len(), 2);
    assert_eq!(findings.critical.len(), 2);
    assert_eq!(findings.dependencies.len(), 2);
    // Again: the two known series take their own, the other three the overflow's.
    for n in &names {
        sums.critical.insert(("shop", n), 1.0);
    }
    findings.add(&mut sums, 2);
    assert_eq!(findings.critical.len(), 2);

    let metrics = findings.flush(3);
    let overflow_resources: Vec<_> = metrics
        .iter()
        .filter(|rm| rm.resource.as_ref().unwrap().attributes.is_empty())
        .collect();
    assert_eq!(
        overflow_resources.len(),
        1,
        "one resource holds the overflow"
    );
    for (metric, per_series) in [
        (METRIC, 1.0),
        (CRITICAL_PATH_METRIC, 2.0),
        (DEPENDENCY_CALLS_METRIC, 1.0),
        (DEPENDENCY_FAILED_METRIC, 1.0),
    ] {
        let points = points_of(&metrics, metric);
        let own: Vec<f64> = points.iter().filter(|p| !p.1).map(|p| p.0).collect();
        let overflow: Vec<f64> = points.iter().filter(|p| p.1).map(|p| p.0).collect();
        assert_eq!(own, [per_series, per_series], "{metric}");
        assert_eq!(overflow, [3.0 * per_series], "{metric}");
    }

    // Ten nanoseconds without an update: every series is forgotten, and new ones fit again.
    assert!(findings.flush(12).is_empty());
    sums.critical.insert(("shop", &names[4]), 1.0);
    findings.add(&mut sums, 13);
    assert_eq!(findings.critical.len(), 1);
    assert_eq!(
        points_of(&findings.flush(14), CRITICAL_PATH_METRIC),
        [(1.0, false)]
    );
}

#[test]
fn without_a_limit_or_expiration_every_series_is_kept() {
    let mut findings = Findings::new("trace_analysis", 0, 0, 0);
    let names: Vec<String> = (0..100).map(|i| format!("GET /users/{i}")).collect();
    let mut sums = Sums::default();
    for n in &names {
        sums.critical.insert(("shop", n), 1.0);
    }
    findings.add(&mut sums, 1);
    assert_eq!(findings.critical.len(), 100);
    let points = points_of(&findings.flush(u64::MAX), CRITICAL_PATH_METRIC);
    assert_eq!(points.len(), 100);
    assert!(points.iter().all(|p| !p.1));
}

#[test]
fn the_cardinality_limit_defaults_to_ten_thousand() {
    let config: TraceAnalysisConfig =
        serde_yaml_ng::from_str("metrics_expiration: 5m").expect("parses");
    assert_eq!(config.aggregation_cardinality_limit, 10_000);
    assert_eq!(config.metrics_expiration.0, Duration::from_secs(300));
    assert_eq!(
        TraceAnalysisConfig::default().metrics_expiration.0,
        Duration::ZERO
    );
}
