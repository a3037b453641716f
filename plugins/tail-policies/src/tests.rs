//! Unit tests through the native policy harness: traces summarised as the host summarises
//! them, or crafted summaries decided batch by batch on a fake clock (`begin(now)` then one
//! `decide` per trace, as the host's runtime does).

use serde_json::{Value as Json, json};
use wasmcol_plugin_sdk::Value;
use wasmcol_plugin_sdk::policy::{Decision, Policy, Trace, TraceSummary};
use wasmcol_plugin_sdk::proto::resource::Resource;
use wasmcol_plugin_sdk::proto::trace::{ResourceSpans, Span, Status, status::StatusCode};
use wasmcol_plugin_sdk::testing::{PolicyHarness, kv, resource_spans, span};

use crate::TailPolicies;
use crate::adaptive::share;
use crate::duration::parse_duration;

const SECOND: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// The fake clock's start: a whole second.
const T0: u64 = 1_700_000_000 * SECOND;

fn harness(config: Json) -> PolicyHarness<TailPolicies> {
    match PolicyHarness::<TailPolicies>::new(config) {
        Ok(h) => h,
        Err(e) => panic!("the configuration should be accepted: {e}"),
    }
}

fn config_error(config: Json) -> String {
    PolicyHarness::<TailPolicies>::new(config)
        .err()
        .expect("the configuration should be rejected")
}

/// One policy of `type` named `name`, with `options` as its block (null for none).
fn one(name: &str, kind: &str, options: Json) -> Json {
    let mut p = json!({"name": name, "type": kind});
    if !options.is_null() {
        p[kind] = options;
    }
    json!({"policies": [p]})
}

/// Deterministic pseudo-random trace IDs (splitmix64), uniform over the W3C randomness.
struct Ids(u64);

impl Ids {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        id
    }

    /// A shuffle (Fisher-Yates) of `items`.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// A trace of `spans` spans (`errors` of them ERROR) lasting `duration_ms`, of `service`.
fn summary(id: [u8; 16], spans: u32, errors: u32, duration_ms: u64, service: &str) -> TraceSummary {
    TraceSummary {
        trace_id: id,
        span_count: spans,
        encoded_bytes: spans * 100,
        start_unix_nano: T0,
        end_unix_nano: T0 + duration_ms * MS,
        has_root: true,
        error_spans: errors,
        ok_spans: 0,
        service_name: service.to_string(),
        first_seen_unix_nano: T0,
    }
}

/// Decides `batch` at `now` as the host does: `begin`, then one decision per trace.
fn decide_at(
    h: &mut PolicyHarness<TailPolicies>,
    now: u64,
    batch: &[TraceSummary],
) -> Vec<Decision> {
    let p = h.policy();
    p.begin(now);
    batch
        .iter()
        .map(|summary| {
            p.decide(&Trace {
                summary,
                resource_spans: &[],
            })
        })
        .collect()
}

/// One trace: one resource of `service` holding `spans`.
fn trace(service: &str, spans: Vec<Span>) -> Vec<ResourceSpans> {
    vec![resource_spans(service, spans)]
}

fn with_status(mut s: Span, code: StatusCode) -> Span {
    s.status = Some(Status {
        code: code as i32,
        ..Default::default()
    });
    s
}

fn kept(decisions: &[Decision]) -> Vec<bool> {
    decisions.iter().map(|d| d.sample).collect()
}

/// Kept spans in `batch` by policy name.
fn kept_spans(batch: &[TraceSummary], decisions: &[Decision], policy: &str) -> u32 {
    batch
        .iter()
        .zip(decisions)
        .filter(|(_, d)| d.sample && d.policy == policy)
        .map(|(s, _)| s.span_count)
        .sum()
}

/// `n` successes out of `trials` at probability `p`, within 5 standard deviations.
fn assert_binomial(n: usize, trials: usize, p: f64, what: &str) {
    let mean = trials as f64 * p;
    let sd = (trials as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (n as f64 - mean).abs() <= 5.0 * sd,
        "{what}: {n} of {trials}, expected {mean:.0} ± {:.0}",
        5.0 * sd
    );
}

// ---- deterministic policies ----

#[test]
fn status_code_keeps_traces_with_an_error_span() {
    let mut h = harness(one(
        "errors",
        "status_code",
        json!({"status_codes": ["ERROR"]}),
    ));
    assert!(!h.policy().needs_spans(), "the summary has the statuses");
    let d = h.decide(&[
        trace(
            "checkout",
            vec![
                span("a", &[]),
                with_status(span("b", &[]), StatusCode::Error),
            ],
        ),
        trace(
            "checkout",
            vec![with_status(span("a", &[]), StatusCode::Ok)],
        ),
        trace("checkout", vec![span("a", &[])]),
    ]);
    assert_eq!(d[0], Decision::sample("errors", 1.0));
    assert_eq!(
        d[1],
        Decision::drop(""),
        "no policy sampled: the decision names none"
    );
    assert!(!d[2].sample);
}

#[test]
fn status_code_ok_and_unset() {
    let mut h = harness(one(
        "ok-or-unset",
        "status_code",
        json!({"status_codes": ["OK", "UNSET"]}),
    ));
    let d = h.decide(&[
        trace("s", vec![with_status(span("a", &[]), StatusCode::Error)]),
        trace("s", vec![with_status(span("a", &[]), StatusCode::Ok)]),
        trace(
            "s",
            vec![
                with_status(span("a", &[]), StatusCode::Error),
                span("b", &[]),
            ],
        ),
    ]);
    assert_eq!(kept(&d), [false, true, true]);
}

#[test]
fn latency_keeps_traces_from_the_threshold_to_the_upper_bound() {
    let mut ids = Ids(1);
    let batch: Vec<TraceSummary> = [499, 500, 999, 1000, 5000]
        .iter()
        .map(|&ms| summary(ids.next(), 1, 0, ms, "s"))
        .collect();
    let mut h = harness(one("slow", "latency", json!({"threshold_ms": 500})));
    let d = h.decide_summaries(&batch);
    assert_eq!(kept(&d), [false, true, true, true, true]);
    assert_eq!(d[1], Decision::sample("slow", 1.0));

    let mut h = harness(one(
        "band",
        "latency",
        json!({"threshold_ms": 500, "upper_threshold_ms": 1000}),
    ));
    assert_eq!(
        kept(&h.decide_summaries(&batch)),
        [false, true, true, false, false]
    );

    // Fractions of a millisecond count.
    let mut h = harness(one("slow", "latency", json!({"threshold_ms": 0.5})));
    let d = h.decide(&[trace("s", vec![span("a", &[])])]); // the test span lasts 1 ms
    assert!(d[0].sample);
}

#[test]
fn always_sample_keeps_everything() {
    let mut h = harness(one("all", "always_sample", Json::Null));
    let d = h.decide_summaries(&[summary([7; 16], 3, 0, 1, "s")]);
    assert_eq!(d[0], Decision::sample("all", 1.0));
}

#[test]
fn span_count_between_min_and_max() {
    let mut ids = Ids(2);
    let batch: Vec<TraceSummary> = [1, 2, 3, 4]
        .iter()
        .map(|&n| summary(ids.next(), n, 0, 1, "s"))
        .collect();
    let mut h = harness(one(
        "c",
        "span_count",
        json!({"min_spans": 2, "max_spans": 3}),
    ));
    assert_eq!(
        kept(&h.decide_summaries(&batch)),
        [false, true, true, false]
    );
    let mut h = harness(one("c", "span_count", json!({"min_spans": 2})));
    assert_eq!(kept(&h.decide_summaries(&batch)), [false, true, true, true]);
}

// ---- probabilistic ----

#[test]
fn probabilistic_keeps_its_share_consistently_by_trace_id() {
    let mut ids = Ids(3);
    let batch: Vec<TraceSummary> = (0..20_000)
        .map(|_| summary(ids.next(), 1, 0, 1, "s"))
        .collect();
    let ten = |salt: &str| {
        harness(one(
            "some",
            "probabilistic",
            json!({"sampling_percentage": 10, "hash_salt": salt}),
        ))
        .decide_summaries(&batch)
    };

    let d10 = ten("");
    let n10 = d10.iter().filter(|d| d.sample).count();
    assert_binomial(n10, batch.len(), 0.1, "10%");
    let kept_one = d10.iter().find(|d| d.sample).unwrap();
    assert_eq!(*kept_one, Decision::sample("some", 0.1));
    assert_eq!(d10, ten(""), "the same traces every time");
    for (d, s) in d10.iter().zip(&batch) {
        assert_eq!(d.sample, s.keeps_at(0.1), "by the W3C randomness");
    }

    // Consistent: what 10% keeps, 20% keeps too.
    let d20 = harness(one(
        "more",
        "probabilistic",
        json!({"sampling_percentage": 20}),
    ))
    .decide_summaries(&batch);
    assert_binomial(
        d20.iter().filter(|d| d.sample).count(),
        batch.len(),
        0.2,
        "20%",
    );
    assert!(d10.iter().zip(&d20).all(|(a, b)| !a.sample || b.sample));

    // A salt picks another, independent, set of the same size.
    let salted = ten("tenant-a");
    let n_salted = salted.iter().filter(|d| d.sample).count();
    assert_binomial(n_salted, batch.len(), 0.1, "10% salted");
    assert_eq!(salted, ten("tenant-a"));
    let both = d10
        .iter()
        .zip(&salted)
        .filter(|(a, b)| a.sample && b.sample)
        .count();
    assert_binomial(both, batch.len(), 0.01, "independent of the unsalted set");
    let other = ten("tenant-b");
    assert_ne!(salted, other);
}

#[test]
fn probabilistic_at_0_and_100_percent() {
    let mut ids = Ids(4);
    let batch: Vec<TraceSummary> = (0..1000)
        .map(|_| summary(ids.next(), 1, 0, 1, "s"))
        .collect();
    for (pct, expected) in [(0, 0), (100, 1000)] {
        for salt in ["", "x"] {
            let d = harness(one(
                "p",
                "probabilistic",
                json!({"sampling_percentage": pct, "hash_salt": salt}),
            ))
            .decide_summaries(&batch);
            assert_eq!(d.iter().filter(|d| d.sample).count(), expected);
        }
    }
}

// ---- attributes ----

#[test]
fn string_attribute_matches_exact_values_on_spans_and_resources() {
    let mut h = harness(one(
        "routes",
        "string_attribute",
        json!({"key": "http.route", "values": ["/a", "/b"]}),
    ));
    assert!(h.policy().needs_spans());
    let mut on_resource = resource_spans("s", vec![span("x", &[])]);
    on_resource
        .resource
        .get_or_insert_with(Resource::default)
        .attributes
        .push(kv("http.route", "/b".into()));
    let d = h.decide(&[
        trace(
            "s",
            vec![span("x", &[]), span("y", &[("http.route", "/a".into())])],
        ),
        trace("s", vec![span("x", &[("http.route", "/c".into())])]),
        vec![on_resource],
        trace("s", vec![span("x", &[("http.route", "/a/b".into())])]),
        trace("s", vec![span("x", &[("http.route", Value::Int(1))])]),
    ]);
    assert_eq!(kept(&d), [true, false, true, false, false]);
    assert_eq!(d[0], Decision::sample("routes", 1.0));
}

/// The attribute the `trace_analysis` connector writes: a string array of patterns.
fn findings(patterns: &[&str]) -> Value {
    use wasmcol_plugin_sdk::proto::common::{AnyValue, ArrayValue, any_value};
    Value::Any(AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue {
            values: patterns
                .iter()
                .map(|p| AnyValue {
                    value: Some(any_value::Value::StringValue(p.to_string())),
                })
                .collect(),
        })),
    })
}

#[test]
fn trace_analysis_keeps_traces_with_findings_of_the_listed_patterns() {
    let traces = || {
        vec![
            // Clean.
            trace("s", vec![span("x", &[]), span("y", &[])]),
            // An N+1 marked on one span of several.
            trace(
                "s",
                vec![
                    span("x", &[]),
                    span(
                        "y",
                        &[("trace_analysis.findings", findings(&["n_plus_one"]))],
                    ),
                ],
            ),
            // Two patterns on one span.
            trace(
                "s",
                vec![span(
                    "x",
                    &[(
                        "trace_analysis.findings",
                        findings(&["fan_out", "error_origin"]),
                    )],
                )],
            ),
            // An empty array is no finding.
            trace(
                "s",
                vec![span("x", &[("trace_analysis.findings", findings(&[]))])],
            ),
            // A single string, as a hand-written attribute.
            trace(
                "s",
                vec![span(
                    "x",
                    &[("trace_analysis.findings", "duplicate_call".into())],
                )],
            ),
        ]
    };
    let mut any = harness(one("findings", "trace_analysis", Json::Null));
    assert!(any.policy().needs_spans());
    let d = any.decide(&traces());
    assert_eq!(kept(&d), [false, true, true, false, true]);
    assert_eq!(d[1], Decision::sample("findings", 1.0));

    let mut some = harness(one(
        "errors",
        "trace_analysis",
        json!({"patterns": ["error_origin", "duplicate_call"]}),
    ));
    assert_eq!(
        kept(&some.decide(&traces())),
        [false, false, true, false, true]
    );

    // The empty list is "any", as no block.
    let mut empty = harness(one("f", "trace_analysis", json!({"patterns": []})));
    assert_eq!(
        kept(&empty.decide(&traces())),
        [false, true, true, false, true]
    );

    // Inside `and`: findings of services that matter.
    let mut and = harness(json!({"policies": [{
    "name": "checkout-findings", "type": "and", "and": {"and_sub_policy": [
        {"name": "f", "type": "trace_analysis"},
        {"name": "c", "type": "string_attribute",
         "string_attribute": {"key": "service.name", "values": ["checkout"]}},
    ]}}]}));
    let marked = || {
        vec![span(
            "x",
            &[("trace_analysis.findings", findings(&["fan_out"]))],
        )]
    };
    let d = and.decide(&[trace("checkout", marked()), trace("search", marked())]);
    assert_eq!(kept(&d), [true, false]);
}

#[test]
fn trace_analysis_refuses_what_is_not_a_pattern_name() {
    let e = config_error(one(
        "f",
        "trace_analysis",
        json!({"patterns": ["n_plus_one", "N+1", ""]}),
    ));
    assert!(
        e.contains("config.policies[0].trace_analysis.patterns[1]: \"N+1\" is not a pattern name"),
        "{e}"
    );
    assert!(e.contains("patterns[2]: \"\" is not a pattern name"), "{e}");
    assert!(!e.contains("patterns[0]"), "{e}");
    let e = config_error(one("f", "trace_analysis", json!({"pattern": ["fan_out"]})));
    assert!(e.contains("unknown field `pattern`"), "{e}");
}

#[test]
fn string_attribute_regexes_and_invert_match() {
    let routes = |v: &str| trace("s", vec![span("x", &[("http.route", v.into())])]);
    let traces = [
        routes("/a"),
        routes("/bcd"),
        routes("/x/a"),
        routes("/c"),
        trace("s", vec![span("x", &[])]),
    ];
    let mut h = harness(one(
        "s",
        "string_attribute",
        json!({"key": "http.route", "values": ["^/a$", "^/b.*"], "enabled_regex_matching": true}),
    ));
    assert_eq!(kept(&h.decide(&traces)), [true, true, false, false, false]);

    // Unanchored, as in the Collector.
    let mut h = harness(one(
        "s",
        "string_attribute",
        json!({"key": "http.route", "values": ["/a"], "enabled_regex_matching": true, "cache_max_size": 100}),
    ));
    assert_eq!(kept(&h.decide(&traces)), [true, false, true, false, false]);

    // Inverted: keeps what does not match, including traces without the attribute.
    let mut h = harness(one(
        "not-ab",
        "string_attribute",
        json!({"key": "http.route", "values": ["^/a$", "^/b.*"], "enabled_regex_matching": true, "invert_match": true}),
    ));
    let d = h.decide(&traces);
    assert_eq!(kept(&d), [false, false, true, true, true]);
    assert_eq!(d[3], Decision::sample("not-ab", 1.0));
}

#[test]
fn numeric_attribute_matches_ints_and_doubles_in_range() {
    let code = |v: Value| trace("s", vec![span("x", &[("http.status_code", v)])]);
    let traces = [
        code(Value::Int(503)),
        code(Value::Int(404)),
        code(Value::Double(550.5)),
        code(Value::Int(599)),
        code(Value::Int(600)),
        code("503".into()),
        trace("s", vec![span("x", &[])]),
    ];
    let mut h = harness(one(
        "n",
        "numeric_attribute",
        json!({"key": "http.status_code", "min_value": 500, "max_value": 599}),
    ));
    assert!(h.policy().needs_spans());
    assert_eq!(
        kept(&h.decide(&traces)),
        [true, false, true, true, false, false, false]
    );

    let mut h = harness(one(
        "n",
        "numeric_attribute",
        json!({"key": "http.status_code", "min_value": 550.5}),
    ));
    assert_eq!(
        kept(&h.decide(&traces)),
        [false, false, true, true, true, false, false]
    );

    let mut h = harness(one(
        "n",
        "numeric_attribute",
        json!({"key": "http.status_code", "min_value": 500, "max_value": 599, "invert_match": true}),
    ));
    assert_eq!(
        kept(&h.decide(&traces)),
        [false, true, false, false, true, true, true]
    );
}

#[test]
fn boolean_attribute() {
    let flag = |v: Value| trace("s", vec![span("x", &[("debug", v)])]);
    let traces = [
        flag(Value::Bool(true)),
        flag(Value::Bool(false)),
        flag("true".into()),
    ];
    let mut h = harness(one(
        "b",
        "boolean_attribute",
        json!({"key": "debug", "value": true}),
    ));
    assert_eq!(kept(&h.decide(&traces)), [true, false, false]);
    let mut h = harness(one(
        "b",
        "boolean_attribute",
        json!({"key": "debug", "value": false}),
    ));
    assert_eq!(kept(&h.decide(&traces)), [false, true, false]);
    let mut h = harness(one(
        "b",
        "boolean_attribute",
        json!({"key": "debug", "value": true, "invert_match": true}),
    ));
    assert_eq!(kept(&h.decide(&traces)), [false, true, true]);
}

#[test]
fn trace_state_key_with_one_of_the_values() {
    let ts = |state: &str| {
        let mut s = span("x", &[]);
        s.trace_state = state.to_string();
        trace("s", vec![span("root", &[]), s])
    };
    let mut h = harness(one(
        "t",
        "trace_state",
        json!({"key": "vendor", "values": ["a", "b"]}),
    ));
    assert!(h.policy().needs_spans());
    let d = h.decide(&[
        ts("vendor=a"),
        ts("ot=th:8, vendor=b"),
        ts("vendor=c"),
        ts("xvendor=a"),
        ts(""),
    ]);
    assert_eq!(kept(&d), [true, true, false, false, false]);
    assert_eq!(d[0], Decision::sample("t", 1.0));
}

// ---- and, drop, evaluation order ----

#[test]
fn and_samples_when_every_sub_policy_does() {
    let mut h = harness(json!({"policies": [{
        "name": "slow-checkout", "type": "and", "and": {"and_sub_policy": [
            {"name": "slow", "type": "latency", "latency": {"threshold_ms": 1}},
            {"name": "checkout", "type": "string_attribute",
             "string_attribute": {"key": "service.name", "values": ["checkout"]}},
        ]}
    }]}));
    assert!(h.policy().needs_spans(), "a sub-policy reads attributes");
    let long = |service: &str, ms: u64| {
        let mut s = span("x", &[]);
        s.end_time_unix_nano = s.start_time_unix_nano + ms * MS;
        trace(service, vec![s])
    };
    let d = h.decide(&[long("checkout", 5), long("checkout", 0), long("search", 5)]);
    assert_eq!(kept(&d), [true, false, false]);
    assert_eq!(d[0], Decision::sample("slow-checkout", 1.0));
}

#[test]
fn and_combines_probabilities() {
    let mut ids = Ids(5);
    let batch: Vec<TraceSummary> = (0..5000)
        .map(|_| summary(ids.next(), 1, 0, 1, "s"))
        .collect();
    let mut h = harness(json!({"policies": [{
        "name": "both", "type": "and", "and": {"and_sub_policy": [
            {"name": "p20", "type": "probabilistic", "probabilistic": {"sampling_percentage": 20}},
            {"name": "p10", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}},
            {"name": "salted", "type": "probabilistic", "probabilistic": {"sampling_percentage": 50, "hash_salt": "s"}},
        ]}
    }]}));
    let d = h.decide_summaries(&batch);
    let n = d.iter().filter(|d| d.sample).count();
    // Trace-ID thresholds nest (10% of traces), the salted hash is independent (half).
    assert_binomial(n, batch.len(), 0.05, "10% and 50%");
    for d in d.iter().filter(|d| d.sample) {
        assert!((d.probability - 0.05).abs() < 1e-12, "{d:?}");
    }
}

#[test]
fn drop_overrides_every_other_policy() {
    let mut h = harness(json!({"policies": [
        {"name": "all", "type": "always_sample"},
        {"name": "no-health", "type": "drop", "drop": {"drop_sub_policy": [
            {"name": "health", "type": "string_attribute",
             "string_attribute": {"key": "http.route", "values": ["/health"]}},
            {"name": "ok", "type": "status_code", "status_code": {"status_codes": ["UNSET", "OK"]}},
        ]}},
    ]}));
    let route = |r: &str| span("x", &[("http.route", r.into())]);
    let d = h.decide(&[
        trace("s", vec![route("/health")]),
        trace("s", vec![with_status(route("/health"), StatusCode::Error)]),
        trace("s", vec![route("/cart")]),
    ]);
    assert_eq!(d[0], Decision::drop("no-health"));
    assert_eq!(
        d[1],
        Decision::sample("all", 1.0),
        "every sub-policy must match"
    );
    assert_eq!(d[2], Decision::sample("all", 1.0));
}

#[test]
fn the_first_policy_that_samples_names_the_decision() {
    let mut h = harness(json!({"policies": [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "slow", "type": "latency", "latency": {"threshold_ms": 100}},
        {"name": "all", "type": "always_sample"},
    ]}));
    let d = h.decide_summaries(&[
        summary([1; 16], 2, 1, 500, "s"),
        summary([2; 16], 2, 0, 500, "s"),
        summary([3; 16], 2, 0, 5, "s"),
    ]);
    let names: Vec<&str> = d.iter().map(|d| d.policy.as_str()).collect();
    assert_eq!(names, ["errors", "slow", "all"]);
}

#[test]
fn sample_on_first_match_spares_later_limiters() {
    let config = |first: bool| {
        json!({"sample_on_first_match": first, "policies": [
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "rl", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 10}},
        ]})
    };
    let mut batch: Vec<TraceSummary> = (1..=5).map(|i| summary([i; 16], 10, 1, 1, "s")).collect();
    batch.push(summary([9; 16], 10, 0, 1, "s"));

    let mut h = harness(config(true));
    let d = decide_at(&mut h, T0, &batch);
    assert!(d[..5].iter().all(|d| d.policy == "errors" && d.sample));
    assert_eq!(
        d[5],
        Decision::sample("rl", 1.0),
        "the limiter saw only this trace"
    );

    // Without it the limiter also counts the first error trace (as in the Collector), and
    // has no room left.
    let mut h = harness(config(false));
    let d = decide_at(&mut h, T0, &batch);
    assert!(d[..5].iter().all(|d| d.policy == "errors" && d.sample));
    assert_eq!(d[5], Decision::drop(""));
}

// ---- limiters ----

#[test]
fn rate_limiting_caps_spans_per_second() {
    let mut h = harness(one("rl", "rate_limiting", json!({"spans_per_second": 100})));
    assert!(!h.policy().needs_spans());
    let mut ids = Ids(6);
    let mut batch = || -> Vec<TraceSummary> {
        (0..10)
            .map(|_| summary(ids.next(), 10, 0, 1, "s"))
            .collect()
    };
    // Three batches in the first second, 300 spans offered: 100 kept.
    let mut total = 0;
    for k in 0..3 {
        let b = batch();
        let d = decide_at(&mut h, T0 + k * 300 * MS, &b);
        total += kept_spans(&b, &d, "rl");
    }
    assert_eq!(total, 100);
    // The next second starts afresh; with 300 spans offered last second, a kept trace
    // stands for three.
    let b = batch();
    let d = decide_at(&mut h, T0 + SECOND, &b);
    assert_eq!(kept_spans(&b, &d, "rl"), 100);
    assert!((d[0].probability - 1.0 / 3.0).abs() < 1e-9, "{:?}", d[0]);
    let b = batch();
    let d = decide_at(&mut h, T0 + SECOND + 500 * MS, &b);
    assert_eq!(kept_spans(&b, &d, "rl"), 0);
}

#[test]
fn rate_limiting_leaves_room_for_smaller_traces() {
    let mut h = harness(one("rl", "rate_limiting", json!({"spans_per_second": 100})));
    let b = [
        summary([1; 16], 90, 0, 1, "s"),
        summary([2; 16], 20, 0, 1, "s"),
        summary([3; 16], 10, 0, 1, "s"),
        summary([4; 16], 1, 0, 1, "s"),
    ];
    assert_eq!(kept(&decide_at(&mut h, T0, &b)), [true, false, true, false]);
}

#[test]
fn bytes_limiting_is_a_token_bucket_on_encoded_bytes() {
    let mut h = harness(one(
        "y",
        "bytes_limiting",
        json!({"bytes_per_second": 1000, "burst_capacity": 2000}),
    ));
    let mut ids = Ids(7);
    // `summary` makes 100 encoded bytes per span.
    let mut batch =
        || -> Vec<TraceSummary> { (0..30).map(|_| summary(ids.next(), 1, 0, 1, "s")).collect() };
    let count = |d: Vec<Decision>| d.iter().filter(|d| d.sample).count();
    let b = batch();
    assert_eq!(count(decide_at(&mut h, T0, &b)), 20, "the full bucket");
    let b = batch();
    assert_eq!(
        count(decide_at(&mut h, T0 + 500 * MS, &b)),
        5,
        "refilled 500 bytes"
    );
    let b = batch();
    assert_eq!(
        count(decide_at(&mut h, T0 + 60 * SECOND, &b)),
        20,
        "never more than the burst"
    );

    // Defaults to a burst of twice the rate.
    let mut h = harness(one(
        "y",
        "bytes_limiting",
        json!({"bytes_per_second": 1000}),
    ));
    let b = batch();
    assert_eq!(count(decide_at(&mut h, T0, &b)), 20);
}

#[test]
fn composite_respects_each_allocation_and_the_total() {
    let mut h = harness(
        json!({"policies": [{"name": "comp", "type": "composite", "composite": {
            "max_total_spans_per_second": 1000,
            "policy_order": ["p1", "p2", "p3"],
            "composite_sub_policy": [
                {"name": "p1", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
                {"name": "p2", "type": "latency", "latency": {"threshold_ms": 500}},
                {"name": "p3", "type": "always_sample"},
            ],
            "rate_allocation": [{"policy": "p1", "percent": 50}, {"policy": "p2", "percent": 25}],
        }}]}),
    );
    assert!(!h.policy().needs_spans());
    let mut ids = Ids(8);
    for second in 0..3 {
        // 1000 spans each of errors, slow and other traces: 3x the cap.
        let mut b: Vec<TraceSummary> = (0..100)
            .flat_map(|_| {
                [
                    summary(ids.next(), 10, 1, 1, "s"),
                    summary(ids.next(), 10, 0, 900, "s"),
                    summary(ids.next(), 10, 0, 1, "s"),
                ]
            })
            .collect();
        ids.shuffle(&mut b);
        let d = decide_at(&mut h, T0 + second * SECOND, &b);
        assert_eq!(kept_spans(&b, &d, "comp:p1"), 500, "second {second}");
        assert_eq!(kept_spans(&b, &d, "comp:p2"), 250);
        // p3 gets the 25% left, taken by whatever the first two passed on.
        assert_eq!(kept_spans(&b, &d, "comp:p3"), 250);
        if second > 0 {
            let p1 = d.iter().find(|d| d.policy == "comp:p1").unwrap();
            assert!((p1.probability - 0.5).abs() < 1e-9, "{p1:?}");
        }
    }
}

#[test]
fn composite_evaluates_in_policy_order_and_shares_unallocated_rates() {
    let mut h = harness(
        json!({"policies": [{"name": "comp", "type": "composite", "composite": {
            "max_total_spans_per_second": 90,
            "policy_order": ["any", "errors"],
            "composite_sub_policy": [
                {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
                {"name": "any", "type": "always_sample"},
            ],
        }}]}),
    );
    let b: Vec<TraceSummary> = (1..=10).map(|i| summary([i; 16], 10, 1, 1, "s")).collect();
    let d = decide_at(&mut h, T0, &b);
    // 45 spans each: "any" comes first and fits four traces; "errors" takes the next four.
    assert_eq!(kept_spans(&b, &d, "comp:any"), 40);
    assert_eq!(kept_spans(&b, &d, "comp:errors"), 40);
    assert_eq!(d.iter().filter(|d| d.sample).count(), 8);
}

// ---- budget ----

fn budget_burst(ids: &mut Ids, errors: usize, slow: usize, other: usize) -> Vec<TraceSummary> {
    let kinds = [(errors, 1, 1), (slow, 0, 2000), (other, 0, 1)];
    let mut b: Vec<TraceSummary> = kinds
        .iter()
        .flat_map(|&(n, errors, ms)| std::iter::repeat_n((errors, ms), n))
        .map(|(errors, ms)| summary(ids.next(), 10, errors, ms, "s"))
        .collect();
    ids.shuffle(&mut b);
    b
}

#[test]
fn budget_never_exceeds_its_cap_and_keeps_errors_first() {
    let mut h = harness(one(
        "budget",
        "budget",
        json!({"spans_per_second": 1000, "slow_threshold_ms": 1000, "random_percentage": 50}),
    ));
    assert!(!h.policy().needs_spans());
    let mut ids = Ids(9);
    for second in 0..6u64 {
        let mut kept_by_lane = [0u32; 3];
        let mut errors_offered = 0;
        // 3000 spans per second (200 in errors, 1000 slow, 1800 other), in five batches.
        for k in 0..5 {
            let b = budget_burst(&mut ids, 4, 20, 36);
            errors_offered += 40;
            let d = decide_at(&mut h, T0 + second * SECOND + k * 200 * MS, &b);
            for (i, lane) in ["errors", "slow", "random"].iter().enumerate() {
                kept_by_lane[i] += kept_spans(&b, &d, &format!("budget:{lane}"));
            }
            assert!(
                d.iter()
                    .all(|d| !d.sample || d.policy.starts_with("budget:"))
            );
        }
        let total: u32 = kept_by_lane.iter().sum();
        assert!(total <= 1000, "second {second}: {kept_by_lane:?}");
        if second > 0 {
            // With last second's errors reserved, every error fits, and slow traces use most
            // of the rest, leaving nothing for the random share.
            assert_eq!(kept_by_lane[0], errors_offered, "second {second}");
            assert!(total >= 900, "second {second}: {kept_by_lane:?}");
            assert_eq!(kept_by_lane[2], 0, "second {second}: {kept_by_lane:?}");
        }
    }
}

#[test]
fn budget_gives_errors_the_whole_budget() {
    let mut h = harness(one(
        "budget",
        "budget",
        json!({"spans_per_second": 1000, "slow_threshold_ms": 1000}),
    ));
    let mut ids = Ids(10);
    for second in 0..3u64 {
        // 1500 spans of errors alone: 1000 kept, nothing for the slow traces (but in the
        // first second, with no history to reserve by, where slow traces come first).
        let b = budget_burst(&mut ids, 150, 50, 0);
        let d = decide_at(&mut h, T0 + second * SECOND, &b);
        let errors = kept_spans(&b, &d, "budget:errors");
        let slow = kept_spans(&b, &d, "budget:slow");
        assert_eq!(errors + slow, 1000, "second {second}");
        if second > 0 {
            assert_eq!((errors, slow), (1000, 0), "second {second}");
            let e = d.iter().find(|d| d.sample).unwrap();
            assert!((e.probability - 1000.0 / 1500.0).abs() < 1e-9, "{e:?}");
        }
    }
}

#[test]
fn budget_offers_what_remains_to_the_random_share() {
    let mut h = harness(one(
        "budget",
        "budget",
        json!({"spans_per_second": 10000, "slow_threshold_ms": 1000, "random_percentage": 10}),
    ));
    let mut ids = Ids(11);
    let mut random = 0;
    let mut other = 0;
    for second in 0..3u64 {
        let b = budget_burst(&mut ids, 10, 10, 2000);
        let d = decide_at(&mut h, T0 + second * SECOND, &b);
        assert_eq!(kept_spans(&b, &d, "budget:errors"), 100);
        assert_eq!(kept_spans(&b, &d, "budget:slow"), 100);
        for (s, d) in b.iter().zip(&d) {
            if s.error_spans == 0 && s.duration_nanos() < SECOND {
                other += 1;
                if d.sample {
                    random += 1;
                    assert_eq!(d.policy, "budget:random");
                    assert!((d.probability - 0.1).abs() < 1e-9, "{d:?}");
                    assert!(s.keeps_at(0.1));
                }
            }
        }
    }
    assert_binomial(random, other, 0.1, "the random share, within budget");
}

// ---- adaptive ----

#[test]
fn adaptive_keeps_small_services_whole_and_shares_the_rest() {
    let mut h = harness(one(
        "adaptive",
        "adaptive",
        json!({"target_traces_per_second": 100, "min_percentage": 0.1, "max_percentage": 100, "window": "1s"}),
    ));
    assert!(!h.policy().needs_spans());
    let mut ids = Ids(12);
    // 2000 traces/s of "big", 20 of "small", in batches every 100 ms.
    let (mut big_kept, mut big_seen, mut small_kept, mut small_seen) = (0, 0, 0, 0);
    for k in 0..100u64 {
        let mut b: Vec<TraceSummary> = (0..202)
            .map(|i| summary(ids.next(), 3, 0, 1, if i < 200 { "big" } else { "small" }))
            .collect();
        ids.shuffle(&mut b);
        let d = decide_at(&mut h, T0 + k * 100 * MS, &b);
        if k < 10 {
            // Nothing is known before the first window ends: the maximum.
            assert!(d.iter().all(|d| *d == Decision::sample("adaptive", 1.0)));
            continue;
        }
        for (s, d) in b.iter().zip(&d) {
            if s.service_name == "big" {
                big_seen += 1;
                big_kept += usize::from(d.sample);
                if d.sample {
                    // Fair share 50/s; small takes 20, big gets the other 80 of 2000.
                    assert!((d.probability - 0.04).abs() < 1e-9, "{d:?}");
                }
            } else {
                small_seen += 1;
                small_kept += usize::from(d.sample);
            }
        }
    }
    assert_eq!(small_kept, small_seen, "the small service keeps 100%");
    assert_binomial(big_kept, big_seen, 0.04, "big");
    // About the target, over the 9 seconds after the first window.
    let per_second = (big_kept + small_kept) as f64 / 9.0;
    assert!((per_second - 100.0).abs() < 15.0, "{per_second} traces/s");
}

#[test]
fn adaptive_follows_traffic_changes_and_respects_the_floor() {
    let mut h = harness(one(
        "adaptive",
        "adaptive",
        json!({"target_traces_per_second": 10, "min_percentage": 5, "max_percentage": 50, "window": "2s"}),
    ));
    let mut ids = Ids(13);
    let batch = |ids: &mut Ids, service: &str, n: usize| -> Vec<TraceSummary> {
        (0..n)
            .map(|_| summary(ids.next(), 1, 0, 1, service))
            .collect()
    };
    let ratio_kept = |d: &[Decision]| d.iter().filter(|d| d.sample).count() as f64 / d.len() as f64;
    // First window: 1000 traces/s of "a"; nothing known, so the maximum (50%).
    let d = decide_at(&mut h, T0, &batch(&mut ids, "a", 1000));
    assert!((ratio_kept(&d) - 0.5).abs() < 0.08);
    decide_at(&mut h, T0 + SECOND, &batch(&mut ids, "a", 1000));
    // 10/1000 = 1% is below the 5% floor.
    let d = decide_at(&mut h, T0 + 2 * SECOND, &batch(&mut ids, "a", 1000));
    assert!(
        d.iter()
            .filter(|d| d.sample)
            .all(|d| (d.probability - 0.05).abs() < 1e-9)
    );
    // A service not seen in the last window gets the maximum.
    let d = decide_at(&mut h, T0 + 2 * SECOND, &batch(&mut ids, "new", 1000));
    assert!(d.iter().filter(|d| d.sample).all(|d| d.probability == 0.5));
}

#[test]
fn water_filling() {
    let p = |rates: &[(&'static str, f64)], target| {
        let mut out = share(rates, target, 0.0, 1.0);
        out.sort_by(|a, b| a.0.cmp(b.0));
        out.into_iter().map(|(_, p)| p).collect::<Vec<_>>()
    };
    // All below the fair share: everything kept.
    assert_eq!(p(&[("a", 10.0), ("b", 20.0)], 100.0), [1.0, 1.0]);
    // a (10) is under its share of 100/3; b and c split the other 90: 45 each.
    let got = p(&[("a", 10.0), ("b", 90.0), ("c", 900.0)], 100.0);
    assert_eq!(got[0], 1.0);
    assert!((got[1] - 0.5).abs() < 1e-12);
    assert!((got[2] - 0.05).abs() < 1e-12);
    // The floor holds even past the target.
    let floor = share(&[("a", 1000.0)], 1.0, 0.01, 1.0);
    assert_eq!(floor[0].1, 0.01);
}

// ---- needs_spans ----

#[test]
fn needs_spans_only_when_a_policy_reads_them() {
    let needs = |config: Json| harness(config).policy().needs_spans();
    assert!(!needs(json!({"policies": [
        {"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "a", "type": "and", "and": {"and_sub_policy": [
            {"name": "l", "type": "latency", "latency": {"threshold_ms": 1}},
            {"name": "p", "type": "probabilistic", "probabilistic": {"sampling_percentage": 1}},
        ]}},
    ]})));
    assert!(needs(
        json!({"policies": [{"name": "c", "type": "composite", "composite": {
            "max_total_spans_per_second": 10,
            "composite_sub_policy": [
                {"name": "t", "type": "trace_state", "trace_state": {"key": "k", "values": ["v"]}},
            ],
        }}]})
    ));
    assert!(needs(json!({"policies": [
        {"name": "all", "type": "always_sample"},
        {"name": "d", "type": "drop", "drop": {"drop_sub_policy": [
            {"name": "b", "type": "boolean_attribute", "boolean_attribute": {"key": "k", "value": true}},
        ]}},
    ]})));
}

// ---- configuration ----

#[test]
fn every_policy_type_from_the_documented_example_builds() {
    let yaml = r#"
sample_on_first_match: false
policies:
  - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
  - { name: slow, type: latency, latency: { threshold_ms: 500, upper_threshold_ms: 0 } }
  - { name: all, type: always_sample }
  - { name: some, type: probabilistic, probabilistic: { sampling_percentage: 10, hash_salt: "" } }
  - { name: s, type: string_attribute, string_attribute: { key: http.route, values: ["/a", "/b.*"], enabled_regex_matching: true, invert_match: false } }
  - { name: n, type: numeric_attribute, numeric_attribute: { key: http.status_code, min_value: 500, max_value: 599, invert_match: false } }
  - { name: b, type: boolean_attribute, boolean_attribute: { key: debug, value: true, invert_match: false } }
  - { name: c, type: span_count, span_count: { min_spans: 2, max_spans: 100 } }
  - { name: t, type: trace_state, trace_state: { key: vendor, values: [a, b] } }
  - { name: r, type: rate_limiting, rate_limiting: { spans_per_second: 1000 } }
  - { name: y, type: bytes_limiting, bytes_limiting: { bytes_per_second: 1048576, burst_capacity: 2097152 } }
  - name: a
    type: and
    and:
      and_sub_policy:
        - { name: a1, type: latency, latency: { threshold_ms: 100 } }
        - { name: a2, type: rate_limiting, rate_limiting: { spans_per_second: 10 } }
  - name: d
    type: drop
    drop:
      drop_sub_policy:
        - { name: d1, type: string_attribute, string_attribute: { key: http.route, values: [/health] } }
  - name: comp
    type: composite
    composite:
      max_total_spans_per_second: 1000
      policy_order: [p1, p2, p3]
      composite_sub_policy:
        - { name: p1, type: status_code, status_code: { status_codes: [ERROR] } }
        - { name: p2, type: latency, latency: { threshold_ms: 1000 } }
        - { name: p3, type: always_sample }
      rate_allocation: [ { policy: p1, percent: 50 }, { policy: p2, percent: 25 } ]
  - name: budget
    type: budget
    budget:
      spans_per_second: 200000
      slow_threshold_ms: 1000
      random_percentage: 1
  - name: adaptive
    type: adaptive
    adaptive:
      target_traces_per_second: 100
      min_percentage: 0.1
      max_percentage: 100
      window: 10s
"#;
    let config: Json = serde_yaml_ng::from_str(yaml).unwrap();
    let mut h = harness(config);
    assert!(h.policy().needs_spans());
    let d = h.decide(&[
        trace("s", vec![span("x", &[("http.route", "/health".into())])]),
        trace("s", vec![span("x", &[])]),
    ]);
    assert_eq!(d[0], Decision::drop("d"));
    assert_eq!(d[1], Decision::sample("all", 1.0));
}

#[test]
fn config_errors_name_the_option() {
    let e = config_error(json!({"policies": []}));
    assert_eq!(e, "config.policies: list at least one policy");
    assert_eq!(config_error(json!({})), e);
    assert_eq!(config_error(Json::Null), e);

    let e = config_error(json!({"policies": [
        {"name": "all", "type": "always_sample"},
        {"name": "x", "type": "foo"},
    ]}));
    assert!(
        e.starts_with(r#"config.policies[1].type: unknown policy type "foo", expected one of always_sample, latency,"#),
        "{e}"
    );

    let e = config_error(one("slow", "latency", Json::Null));
    assert_eq!(
        e,
        "config.policies[0].latency: required for a policy of type latency"
    );

    let e = config_error(json!({"policies": [
        {"name": "slow", "type": "latency", "status_code": {"status_codes": ["ERROR"]}},
    ]}));
    assert_eq!(
        e,
        "config.policies[0].status_code: only a policy of type status_code takes this block; this one's type is latency"
    );

    let e = config_error(one("slow", "latency", json!({"threshold_ms": "500"})));
    assert!(
        e.starts_with("config.policies[0].latency.threshold_ms: invalid type"),
        "{e}"
    );
    let e = config_error(one("slow", "latency", json!({"treshold_ms": 500})));
    assert!(
        e.starts_with("config.policies[0].latency.treshold_ms: unknown field"),
        "{e}"
    );
    let e = config_error(json!({"policies": [{"type": "always_sample"}]}));
    assert!(e.contains("missing field `name`"), "{e}");
    let e = config_error(json!({"sample_on_first_macth": true, "policies": []}));
    assert!(
        e.starts_with("config.sample_on_first_macth: unknown field"),
        "{e}"
    );

    let e = config_error(one(
        "errors",
        "status_code",
        json!({"status_codes": ["ERROR", "FAILED"]}),
    ));
    assert!(
        e.starts_with("config.policies[0].status_code.status_codes[1]: unknown variant `FAILED`"),
        "{e}"
    );

    let e = config_error(one(
        "slow",
        "latency",
        json!({"threshold_ms": 500, "upper_threshold_ms": 100}),
    ));
    assert!(
        e.starts_with(
            "config.policies[0].latency.upper_threshold_ms: must be more than threshold_ms"
        ),
        "{e}"
    );
}

#[test]
fn a_bad_regex_names_the_policy_and_the_pattern() {
    let e = config_error(json!({"policies": [
        {"name": "all", "type": "always_sample"},
        {"name": "routes", "type": "string_attribute", "string_attribute": {
            "key": "http.route", "values": ["/a", "/b(", "["], "enabled_regex_matching": true}},
    ]}));
    assert!(
        e.starts_with(r#"config.policies[1].string_attribute.values[1]: invalid regex "/b(" in policy "routes": "#),
        "{e}"
    );
    assert!(
        e.contains(r#"config.policies[1].string_attribute.values[2]: invalid regex "[""#),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
    // Without regex matching the same values are plain strings.
    harness(one(
        "routes",
        "string_attribute",
        json!({"key": "http.route", "values": ["/b(", "["]}),
    ));
}

#[test]
fn nested_config_errors_name_their_path() {
    let e = config_error(
        json!({"policies": [{"name": "a", "type": "and", "and": {"and_sub_policy": [
            {"name": "ok", "type": "always_sample"},
            {"name": "bad", "type": "nope"},
        ]}}]}),
    );
    assert!(
        e.starts_with(
            r#"config.policies[0].and.and_sub_policy[1].type: unknown policy type "nope""#
        ),
        "{e}"
    );

    let e = config_error(
        json!({"policies": [{"name": "a", "type": "and", "and": {"and_sub_policy": [
            {"name": "d", "type": "drop", "drop": {"drop_sub_policy": [{"name": "x", "type": "always_sample"}]}},
        ]}}]}),
    );
    assert!(
        e.starts_with("config.policies[0].and.and_sub_policy[0].type: a drop policy"),
        "{e}"
    );

    let e = config_error(
        json!({"policies": [{"name": "a", "type": "and", "and": {"and_sub_policy": [
            {"name": "r", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 0}},
        ]}}]}),
    );
    assert_eq!(
        e,
        "config.policies[0].and.and_sub_policy[0].rate_limiting.spans_per_second: must be more than 0, got 0"
    );

    let e = config_error(
        json!({"policies": [{"name": "a", "type": "and", "and": {"and_sub_policy": []}}]}),
    );
    assert_eq!(
        e,
        "config.policies[0].and.and_sub_policy: list at least one sub-policy"
    );
}

#[test]
fn composite_config_errors() {
    let comp = |order: Json, allocation: Json| {
        config_error(
            json!({"policies": [{"name": "comp", "type": "composite", "composite": {
                "max_total_spans_per_second": 100,
                "policy_order": order,
                "composite_sub_policy": [
                    {"name": "p1", "type": "always_sample"},
                    {"name": "p2", "type": "always_sample"},
                ],
                "rate_allocation": allocation,
            }}]}),
        )
    };
    let e = comp(json!(["p1", "p3"]), json!([]));
    assert!(
        e.contains(r#"config.policies[0].composite.policy_order[1]: no sub-policy is named "p3""#),
        "{e}"
    );
    assert!(
        e.contains(r#"config.policies[0].composite.policy_order: sub-policy "p2" is missing"#),
        "{e}"
    );
    let e = comp(
        json!([]),
        json!([{"policy": "p1", "percent": 60}, {"policy": "p2", "percent": 50}]),
    );
    assert_eq!(
        e,
        "config.policies[0].composite.rate_allocation: the percents add up to 110, more than 100"
    );
    let e = comp(json!([]), json!([{"policy": "px", "percent": 10}]));
    assert_eq!(
        e,
        r#"config.policies[0].composite.rate_allocation[0].policy: no sub-policy is named "px""#
    );

    let e = config_error(
        json!({"policies": [{"name": "comp", "type": "composite", "composite": {
            "max_total_spans_per_second": 100,
            "composite_sub_policy": [
                {"name": "p1", "type": "always_sample"},
                {"name": "p1", "type": "always_sample"},
            ],
        }}]}),
    );
    assert_eq!(
        e,
        r#"config.policies[0].composite.composite_sub_policy[1].name: another policy is already named "p1""#
    );
}

#[test]
fn more_config_errors() {
    let e = config_error(json!({"policies": [
        {"name": "x", "type": "always_sample"},
        {"name": "x", "type": "always_sample"},
        {"name": "", "type": "always_sample"},
    ]}));
    assert_eq!(
        e,
        r#"config.policies[1].name: another policy is already named "x"; config.policies[2].name: must not be empty"#
    );
    let e = config_error(one("n", "numeric_attribute", json!({"key": "k"})));
    assert_eq!(
        e,
        "config.policies[0].numeric_attribute: give min_value, max_value or both"
    );
    let e = config_error(one(
        "p",
        "probabilistic",
        json!({"sampling_percentage": 150}),
    ));
    assert_eq!(
        e,
        "config.policies[0].probabilistic.sampling_percentage: must be a percentage from 0 to 100, got 150"
    );
    let e = config_error(one(
        "a",
        "adaptive",
        json!({"target_traces_per_second": 10, "window": "10x"}),
    ));
    assert_eq!(
        e,
        r#"config.policies[0].adaptive.window: invalid duration "10x": unknown unit "x" (ns, us, ms, s, m or h)"#
    );
    let e = config_error(one(
        "a",
        "adaptive",
        json!({"target_traces_per_second": 10, "min_percentage": 50, "max_percentage": 10}),
    ));
    assert_eq!(
        e,
        "config.policies[0].adaptive.min_percentage: must be at most max_percentage (10)"
    );
    let e = config_error(one(
        "b",
        "budget",
        json!({"spans_per_second": -1, "slow_threshold_ms": 1000}),
    ));
    assert_eq!(
        e,
        "config.policies[0].budget.spans_per_second: must be more than 0, got -1"
    );
    let e = config_error(one(
        "c",
        "span_count",
        json!({"min_spans": 5, "max_spans": 2}),
    ));
    assert!(
        e.starts_with("config.policies[0].span_count.max_spans: must be at least min_spans (5)"),
        "{e}"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("10s"), Ok(10 * SECOND));
    assert_eq!(parse_duration("500ms"), Ok(500 * MS));
    assert_eq!(parse_duration("1m"), Ok(60 * SECOND));
    assert_eq!(parse_duration("1.5s"), Ok(1500 * MS));
    assert_eq!(parse_duration("1m30s"), Ok(90 * SECOND));
    assert_eq!(parse_duration("1h"), Ok(3600 * SECOND));
    assert_eq!(parse_duration("250us"), Ok(250_000));
    assert_eq!(parse_duration("7ns"), Ok(7));
    assert_eq!(parse_duration("0"), Ok(0));
    assert!(parse_duration("10").unwrap_err().contains("10 has no unit"));
    assert!(parse_duration("").is_err());
    assert!(parse_duration("s").is_err());
    assert!(parse_duration("-1s").is_err());
    assert!(parse_duration("1..5s").is_err());
}
