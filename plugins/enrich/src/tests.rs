//! Unit tests through the native harness (the host's own edit checks and application run too).

use serde_json::{Value as Json, json};
use wasmcol_plugin_sdk::prelude::*;
use wasmcol_plugin_sdk::proto::common::{AnyValue, KeyValue};
use wasmcol_plugin_sdk::proto::trace::ResourceSpans;
use wasmcol_plugin_sdk::testing::{
    Harness, counter, kv, resource_spans, set_table, span, string_value,
};

use crate::Enrich;

fn harness(config: Json) -> Harness<Enrich> {
    Harness::<Enrich>::new(config).unwrap()
}

fn config_error(config: Json) -> String {
    Harness::<Enrich>::new(config)
        .err()
        .expect("the configuration should be rejected")
}

fn row(cols: &[(&str, &str)]) -> Vec<(String, String)> {
    cols.iter()
        .map(|(c, v)| (c.to_string(), v.to_string()))
        .collect()
}

fn teams() {
    set_table(
        "teams",
        [
            (
                "checkout".to_string(),
                row(&[("team", "payments"), ("owner", "ana"), ("tier", "1")]),
            ),
            (
                "search".to_string(),
                row(&[("team", "discovery"), ("owner", "bo")]),
            ),
        ],
    );
}

fn environment() {
    set_table(
        "environment",
        [
            (
                "host.name".to_string(),
                row(&[("value", "node-7.internal")]),
            ),
            (
                "k8s.pod.name".to_string(),
                row(&[("value", "checkout-5d9f")]),
            ),
            ("k8s.namespace.name".to_string(), row(&[("value", "shop")])),
        ],
    );
}

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn str_of<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    get(attrs, key).and_then(as_str)
}

fn resource_attrs(out: &[ResourceSpans], i: usize) -> &[KeyValue] {
    &out[i].resource.as_ref().unwrap().attributes
}

fn span_attrs(out: &[ResourceSpans], r: usize, s: usize) -> &[KeyValue] {
    &out[r].scope_spans[0].spans[s].attributes
}

fn one_span(attrs: &[(&str, Value)]) -> Vec<ResourceSpans> {
    vec![resource_spans("checkout", vec![span("op", attrs)])]
}

// ---- lookup ----

#[test]
fn lookup_sets_resource_attributes_from_a_table_row() {
    teams();
    let mut h = harness(json!({"resource": [
        {"lookup": {"table": "teams", "key": "service.name", "columns": ["team", "owner"]}},
        {"lookup": {"table": "teams", "key": "service.name", "columns": {"service.tier": "tier"}}},
    ]}));
    let out = h
        .process(vec![
            resource_spans("checkout", vec![span("a", &[])]),
            resource_spans("search", vec![span("b", &[])]),
            resource_spans("unknown", vec![span("c", &[])]),
        ])
        .unwrap();
    let r0 = resource_attrs(&out, 0);
    assert_eq!(str_of(r0, "team"), Some("payments"));
    assert_eq!(str_of(r0, "owner"), Some("ana"));
    assert_eq!(str_of(r0, "service.tier"), Some("1"));
    let r1 = resource_attrs(&out, 1);
    assert_eq!(str_of(r1, "team"), Some("discovery"));
    assert_eq!(get(r1, "service.tier"), None, "search has no tier column");
    assert_eq!(resource_attrs(&out, 2).len(), 1, "no row: nothing added");
    assert_eq!(counter("lookup_hits"), 4);
    assert_eq!(counter("lookup_misses"), 2);
    assert_eq!(counter("attributes_set"), 5);
    assert!(
        span_attrs(&out, 0, 0).is_empty(),
        "resource steps leave spans alone"
    );
}

#[test]
fn lookup_on_a_span_attribute_sets_span_attributes() {
    set_table(
        "routes",
        [("/cart".to_string(), row(&[("owner", "cart-team")]))],
    );
    let mut h = harness(json!({"span": [
        {"lookup": {"table": "routes", "key": "http.route", "columns": {"route.owner": "owner"}}},
    ]}));
    let out = h
        .process(vec![resource_spans(
            "checkout",
            vec![
                span("a", &[("http.route", "/cart".into())]),
                span("b", &[("http.route", "/pay".into())]),
            ],
        )])
        .unwrap();
    assert_eq!(
        str_of(span_attrs(&out, 0, 0), "route.owner"),
        Some("cart-team")
    );
    assert_eq!(get(span_attrs(&out, 0, 1), "route.owner"), None);
    assert_eq!(resource_attrs(&out, 0).len(), 1);
}

#[test]
fn modes_insert_upsert_and_update() {
    teams();
    let step = |mode: &str| json!({"resource": [{"lookup": {"table": "teams", "key": "service.name", "columns": ["team", "owner"], "mode": mode}}]});
    let input = || {
        let mut rs = resource_spans("checkout", vec![span("a", &[])]);
        rs.resource
            .as_mut()
            .unwrap()
            .attributes
            .push(kv("team", "legacy".into()));
        vec![rs]
    };
    let out = harness(step("insert")).process(input()).unwrap();
    assert_eq!(str_of(resource_attrs(&out, 0), "team"), Some("legacy"));
    assert_eq!(str_of(resource_attrs(&out, 0), "owner"), Some("ana"));
    let out = harness(step("upsert")).process(input()).unwrap();
    assert_eq!(str_of(resource_attrs(&out, 0), "team"), Some("payments"));
    assert_eq!(str_of(resource_attrs(&out, 0), "owner"), Some("ana"));
    let out = harness(step("update")).process(input()).unwrap();
    assert_eq!(str_of(resource_attrs(&out, 0), "team"), Some("payments"));
    assert_eq!(get(resource_attrs(&out, 0), "owner"), None);
}

#[test]
fn writing_what_is_already_there_records_no_edit() {
    teams();
    let mut h = harness(json!({
        "resource": [{"lookup": {"table": "teams", "key": "service.name", "columns": ["team"]}}],
        "span": [{"set": {"attribute": "tier", "value": 1}}],
    }));
    let mut rs = resource_spans("checkout", vec![span("a", &[("tier", Value::Int(1))])]);
    rs.resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv("team", "payments".into()));
    let mut batch = Batch::new(vec![rs]);
    h.plugin().process(&mut batch).unwrap();
    assert!(batch.edits().is_empty(), "{:?}", batch.edits());
}

// ---- environment ----

#[test]
fn environment_values_become_resource_attributes() {
    environment();
    let mut h = harness(json!({"resource": [
        {"environment": {"key": "host.name", "mode": "insert"}},
        {"environment": {"key": "k8s.pod.name"}},
        {"environment": {"key": "k8s.namespace.name", "attribute": "namespace"}},
        {"environment": {"key": "k8s.node.name"}},
    ]}));
    let mut with_host = resource_spans("b", vec![span("b", &[])]);
    with_host
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv("host.name", "set-by-sdk".into()));
    let out = h
        .process(vec![resource_spans("a", vec![span("a", &[])]), with_host])
        .unwrap();
    let r0 = resource_attrs(&out, 0);
    assert_eq!(str_of(r0, "host.name"), Some("node-7.internal"));
    assert_eq!(str_of(r0, "k8s.pod.name"), Some("checkout-5d9f"));
    assert_eq!(str_of(r0, "namespace"), Some("shop"));
    assert_eq!(
        get(r0, "k8s.node.name"),
        None,
        "unknown to the host: not set"
    );
    assert_eq!(
        str_of(resource_attrs(&out, 1), "host.name"),
        Some("set-by-sdk")
    );
}

// ---- derived attributes ----

#[test]
fn extract_sets_named_groups() {
    let mut h = harness(json!({"span": [{"extract": {
        "from": "url.full",
        "pattern": "^https?://(?P<server.address>[^/:]+)(?::[0-9]+)?(?P<http.route>/[^?#]*)",
        "mode": "insert",
    }}]}));
    let out = h
        .process(vec![resource_spans(
            "s",
            vec![
                span(
                    "a",
                    &[(
                        "url.full",
                        "https://shop.example:8443/cart/items?id=3".into(),
                    )],
                ),
                span("b", &[("url.full", "not a url".into())]),
                span(
                    "c",
                    &[
                        ("url.full", "http://h/x".into()),
                        ("http.route", "/kept".into()),
                    ],
                ),
            ],
        )])
        .unwrap();
    let a = span_attrs(&out, 0, 0);
    assert_eq!(str_of(a, "server.address"), Some("shop.example"));
    assert_eq!(str_of(a, "http.route"), Some("/cart/items"));
    assert_eq!(span_attrs(&out, 0, 1).len(), 1);
    let c = span_attrs(&out, 0, 2);
    assert_eq!(str_of(c, "http.route"), Some("/kept"));
    assert_eq!(str_of(c, "server.address"), Some("h"));
}

#[test]
fn copy_rename_and_set() {
    let mut h = harness(json!({"span": [
        {"copy": {"from": "http.method", "to": "http.request.method"}},
        {"rename": {"from": "user", "to": "enduser.id"}},
        {"rename": {"from": "old", "to": "new", "mode": "insert"}},
        {"set": {"attribute": "env", "value": "prod", "mode": "insert"}},
        {"set": {"attribute": "sampled", "value": true}},
        {"set": {"attribute": "weight", "value": 2.5}},
        {"set": {"attribute": "retries", "value": 3}},
    ]}));
    let out = h
        .process(one_span(&[
            ("http.method", "GET".into()),
            ("user", Value::Int(42)),
            ("old", "o".into()),
            ("new", "n".into()),
            ("env", "staging".into()),
        ]))
        .unwrap();
    let a = span_attrs(&out, 0, 0);
    assert_eq!(str_of(a, "http.method"), Some("GET"));
    assert_eq!(str_of(a, "http.request.method"), Some("GET"));
    assert_eq!(get(a, "user"), None);
    assert_eq!(get(a, "enduser.id"), Some(&Value::Int(42).into_any_value()));
    assert_eq!(
        str_of(a, "old"),
        Some("o"),
        "target exists and mode is insert: nothing moves"
    );
    assert_eq!(str_of(a, "new"), Some("n"));
    assert_eq!(str_of(a, "env"), Some("staging"));
    assert_eq!(get(a, "sampled"), Some(&Value::Bool(true).into_any_value()));
    assert_eq!(get(a, "weight"), Some(&Value::Double(2.5).into_any_value()));
    assert_eq!(get(a, "retries"), Some(&Value::Int(3).into_any_value()));
}

#[test]
fn when_conditions_guard_steps() {
    let mut h = harness(json!({"span": [
        {"set": {"attribute": "api", "value": true, "when": {"attribute": "http.route", "matches": "^/api/"}}},
        {"set": {"attribute": "pay", "value": true, "when": {"resource_attribute": "service.name", "matches": "^checkout$"}}},
        {"set": {"attribute": "has.user", "value": true, "when": {"attribute": "enduser.id"}}},
        {"set": {"attribute": "big", "value": true, "when": {"attribute": "size", "matches": "^[0-9]{4,}$"}}},
    ]}));
    let out = h
        .process(vec![
            resource_spans(
                "checkout",
                vec![
                    span(
                        "a",
                        &[
                            ("http.route", "/api/cart".into()),
                            ("size", Value::Int(12345)),
                        ],
                    ),
                    span(
                        "b",
                        &[
                            ("http.route", "/health".into()),
                            ("enduser.id", "u".into()),
                            ("size", Value::Int(5)),
                        ],
                    ),
                ],
            ),
            resource_spans("search", vec![span("c", &[])]),
        ])
        .unwrap();
    let keys = |attrs: &[KeyValue]| {
        let mut k: Vec<_> = attrs.iter().map(|kv| kv.key.clone()).collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(span_attrs(&out, 0, 0)),
        ["api", "big", "http.route", "pay", "size"]
    );
    assert_eq!(
        keys(span_attrs(&out, 0, 1)),
        ["enduser.id", "has.user", "http.route", "pay", "size"]
    );
    assert!(span_attrs(&out, 1, 0).is_empty());
}

#[test]
fn resource_steps_run_before_span_steps() {
    teams();
    let mut h = harness(json!({
        "resource": [{"lookup": {"table": "teams", "key": "service.name", "columns": ["team"]}}],
        "span": [{"set": {"attribute": "paged", "value": "yes", "when": {"resource_attribute": "team", "matches": "^payments$"}}}],
    }));
    let out = h.process(one_span(&[])).unwrap();
    assert_eq!(
        get(span_attrs(&out, 0, 0), "paged"),
        Some(&string_value("yes"))
    );
}

// ---- configuration ----

#[test]
fn bad_steps_name_the_option() {
    let cases = [
        (
            json!({"span": [{"extract": {"from": "a", "pattern": "("}}]}),
            r#"config.span[0].extract.pattern: invalid regex "(": "#,
        ),
        (
            json!({"span": [{"extract": {"from": "a", "pattern": "/x"}}]}),
            "config.span[0].extract.pattern: \"/x\" has no named group",
        ),
        (
            json!({"resource": [{"environment": {"key": "pod"}}]}),
            "config.resource[0].environment.key: unknown environment key \"pod\" (the host serves host.name, ",
        ),
        (
            json!({"span": [{"copy": {"from": "a", "to": "a"}}]}),
            "config.span[0]: `from` and `to` are both \"a\"",
        ),
        (
            json!({"span": [{"set": {"attribute": "a", "value": [1]}}]}),
            "config.span[0].set.value: expected a string, number or boolean, got [1]",
        ),
        (
            json!({"span": [{"set": {"attribute": "a", "value": 1, "when": {"attribute": "x", "resource_attribute": "y"}}}]}),
            "config.span[0].set.when: needs exactly one of",
        ),
        (
            json!({"span": [{"set": {"attribute": "a", "value": 1, "when": {"attribute": "x", "matches": "["}}}]}),
            r#"config.span[0].set.when.matches: invalid regex "[": "#,
        ),
        (
            json!({"resource": [{"lookup": {"table": "", "key": "k", "columns": []}}]}),
            "config.resource[0].lookup.table: must not be empty; config.resource[0].lookup.columns: name at least one column",
        ),
    ];
    for (config, want) in cases {
        let err = config_error(config.clone());
        assert!(
            err.starts_with(want),
            "{config}\n  got:  {err}\n  want: {want}..."
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = config_error(json!({
        "resource": [{"environment": {"key": "pod"}}],
        "span": [{"extract": {"from": "a", "pattern": "("}}, {"rename": {"from": "b", "to": "b"}}],
    }));
    assert_eq!(err.matches("; ").count(), 2, "{err}");
    assert!(err.contains("config.resource[0].environment.key"), "{err}");
    assert!(err.contains("config.span[0].extract.pattern"), "{err}");
    assert!(err.contains("config.span[1]: `from` and `to`"), "{err}");
}

#[test]
fn unknown_steps_and_fields_are_rejected() {
    let err = config_error(json!({"span": [{"upsert": {}}]}));
    assert!(
        err.starts_with("config.span[0]: unknown variant `upsert`"),
        "{err}"
    );
    let err = config_error(json!({"span": [{"copy": {"from": "a", "to": "b", "mdoe": "insert"}}]}));
    assert!(err.contains("unknown field `mdoe`"), "{err}");
    assert!(err.starts_with("config.span[0].copy.mdoe"), "{err}");
    let err = config_error(json!({"spans": []}));
    assert!(err.starts_with("config.spans: unknown field"), "{err}");
}

#[test]
fn an_empty_config_changes_nothing() {
    let input = one_span(&[("a", "b".into())]);
    assert_eq!(harness(json!(null)).process(input.clone()).unwrap(), input);
}

#[test]
fn the_same_steps_run_on_logs_resource_steps_on_resources_span_steps_on_records() {
    teams();
    set_table(
        "routes",
        [("/cart".to_string(), row(&[("owner", "cart-team")]))],
    );
    let mut h = harness(json!({
        "resource": [{"lookup": {"table": "teams", "key": "service.name", "columns": ["team"]}}],
        "span": [
            {"lookup": {"table": "routes", "key": "http.route", "columns": {"route.owner": "owner"}}},
            {"set": {"attribute": "enriched", "value": true, "when": {"resource_attribute": "team"}}},
        ],
    }));
    use wasmcol_plugin_sdk::testing::{log_record, resource_logs};
    let input = vec![
        resource_logs(
            "checkout",
            vec![
                log_record(Some("a".into()), &[("http.route", "/cart".into())]),
                log_record(Some("b".into()), &[("http.route", "/pay".into())]),
            ],
        ),
        resource_logs("unknown", vec![log_record(None, &[])]),
    ];
    let out = h.process_logs(input.clone()).unwrap();
    let resource = |r: usize| &out[r].resource.as_ref().unwrap().attributes;
    assert_eq!(str_of(resource(0), "team"), Some("payments"));
    assert_eq!(resource(1).len(), 1);
    let records = &out[0].scope_logs[0].log_records;
    assert_eq!(
        str_of(&records[0].attributes, "route.owner"),
        Some("cart-team")
    );
    assert_eq!(get(&records[1].attributes, "route.owner"), None);
    assert!(get(&records[0].attributes, "enriched").is_some());
    assert!(get(&records[1].attributes, "enriched").is_some());
    assert_eq!(
        out[1].scope_logs[0].log_records[0],
        input[1].scope_logs[0].log_records[0]
    );
    // Bodies, ids and times are as they came.
    assert_eq!(records[0].body, input[0].scope_logs[0].log_records[0].body);
    assert_eq!(
        records[0].trace_id,
        input[0].scope_logs[0].log_records[0].trace_id
    );
}

#[test]
fn the_same_steps_run_on_metrics_resource_steps_on_resources_span_steps_on_points() {
    teams();
    set_table(
        "routes",
        [("/cart".to_string(), row(&[("owner", "cart-team")]))],
    );
    let mut h = harness(json!({
        "resource": [{"lookup": {"table": "teams", "key": "service.name", "columns": ["team"]}}],
        "span": [
            {"lookup": {"table": "routes", "key": "http.route", "columns": {"route.owner": "owner"}}},
            {"set": {"attribute": "enriched", "value": true, "when": {"resource_attribute": "team"}}},
        ],
    }));
    use wasmcol_plugin_sdk::proto::metrics::metric::Data;
    use wasmcol_plugin_sdk::testing::{every_metric_type, resource_metrics};
    let input = vec![
        resource_metrics(
            "checkout",
            every_metric_type(&[
                &[("http.route", "/cart".into())],
                &[("http.route", "/pay".into())],
            ]),
        ),
        resource_metrics("unknown", every_metric_type(&[&[]])),
    ];
    let out = h.process_metrics(input.clone()).unwrap();
    let resource = |r: usize| &out[r].resource.as_ref().unwrap().attributes;
    assert_eq!(str_of(resource(0), "team"), Some("payments"));
    assert_eq!(resource(1).len(), 1);
    let metrics = &out[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 5);
    for m in metrics {
        let points: Vec<&[KeyValue]> = match m.data.as_ref().unwrap() {
            Data::Gauge(g) => g.data_points.iter().map(|p| &p.attributes[..]).collect(),
            Data::Sum(s) => s.data_points.iter().map(|p| &p.attributes[..]).collect(),
            Data::Histogram(h) => h.data_points.iter().map(|p| &p.attributes[..]).collect(),
            Data::ExponentialHistogram(h) => {
                h.data_points.iter().map(|p| &p.attributes[..]).collect()
            }
            Data::Summary(s) => s.data_points.iter().map(|p| &p.attributes[..]).collect(),
        };
        assert_eq!(points.len(), 2, "{}", m.name);
        assert_eq!(
            str_of(points[0], "route.owner"),
            Some("cart-team"),
            "{}",
            m.name
        );
        assert_eq!(get(points[1], "route.owner"), None);
        assert!(get(points[0], "enriched").is_some());
        assert!(get(points[1], "enriched").is_some());
    }
    // The unknown service's points are as they came.
    assert_eq!(out[1].scope_metrics, input[1].scope_metrics);
}
