use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::*;
use crate::component::Validate;

const SECOND: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const CLIENT: i32 = 3;
const SERVER: i32 = 2;
const PRODUCER: i32 = 4;

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A span of trace `trace` with id `id` and parent `parent` (0: none), lasting `ms`.
fn span(trace: u8, id: u8, parent: u8, kind: i32, ms: u64) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![parent; 8]
        },
        kind,
        name: "op".into(),
        start_time_unix_nano: SECOND,
        end_time_unix_nano: SECOND + ms * MS,
        ..Default::default()
    }
}

fn resource(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![text("service.name", service), text("k8s.namespace", "shop")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn label(attrs: &[KeyValue], key: &str) -> String {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// `(client, server, connection_type) -> value` of the counter `name`.
fn counter(out: &[ResourceMetrics], name: &str) -> Vec<(String, String, String, i64)> {
    let mut rows = Vec::new();
    for m in out
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        if m.name != name {
            continue;
        }
        let Some(metric::Data::Sum(sum)) = &m.data else {
            panic!("{name} is not a sum")
        };
        assert!(sum.is_monotonic);
        for p in &sum.data_points {
            let Some(number_data_point::Value::AsInt(v)) = p.value else {
                panic!("{p:?}")
            };
            rows.push((
                label(&p.attributes, "client"),
                label(&p.attributes, "server"),
                label(&p.attributes, "connection_type"),
                v,
            ));
        }
    }
    rows.sort();
    rows
}

fn row(c: &str, s: &str, t: &str, v: i64) -> (String, String, String, i64) {
    (c.into(), s.into(), t.into(), v)
}

#[test]
fn client_and_server_spans_pair_into_an_edge_in_either_order() {
    let mut g = Graph::new(ServiceGraphConfig::default(), 0);
    // Trace 1: client first; trace 2: server first, and it fails.
    g.add(&[resource("frontend", vec![span(1, 10, 1, CLIENT, 30)])], 0);
    g.add(
        &[resource("checkout", vec![span(1, 11, 10, SERVER, 20)])],
        0,
    );
    let mut failed = span(2, 21, 20, SERVER, 400);
    failed.status = Some(Status {
        code: 2,
        ..Default::default()
    });
    g.add(&[resource("checkout", vec![failed])], 0);
    assert_eq!(g.waiting(), 1);
    g.add(
        &[resource("frontend", vec![span(2, 20, 2, CLIENT, 500)])],
        0,
    );
    assert_eq!(g.waiting(), 0);
    let out = g.metrics(SECOND);
    assert_eq!(
        out[0].scope_metrics[0].scope.as_ref().unwrap().name,
        "traces_service_graph"
    );
    assert_eq!(
        counter(&out, "traces_service_graph_request_total"),
        [row("frontend", "checkout", "", 2)]
    );
    assert_eq!(
        counter(&out, "traces_service_graph_request_failed_total"),
        [row("frontend", "checkout", "", 1)]
    );
    let hist = |name: &str| {
        out[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| match &m.data {
                Some(metric::Data::Histogram(h)) => {
                    assert_eq!(m.unit, "s");
                    Some(h.data_points[0].clone())
                }
                _ => None,
            })
            .unwrap()
    };
    let server = hist("traces_service_graph_request_server_seconds");
    assert_eq!(server.explicit_bounds[0], 0.002);
    // 20 ms in (0.01, 0.05], 400 ms in (0.2, 0.4].
    assert_eq!(
        (
            server.count,
            server.bucket_counts[5],
            server.bucket_counts[8]
        ),
        (2, 1, 1)
    );
    assert!((server.sum.unwrap() - 0.42).abs() < 1e-9);
    let client = hist("traces_service_graph_request_client_seconds");
    assert!((client.sum.unwrap() - 0.53).abs() < 1e-9);
}

#[test]
fn a_client_span_with_a_database_name_is_a_whole_request() {
    let mut g = Graph::new(ServiceGraphConfig::default(), 0);
    let mut db = span(1, 10, 1, CLIENT, 5);
    db.attributes = vec![text("db.system", "postgresql"), text("db.name", "orders")];
    g.add(&[resource("checkout", vec![db])], 0);
    assert_eq!(g.waiting(), 0);
    assert_eq!(
        counter(&g.metrics(1), "traces_service_graph_request_total"),
        [row("checkout", "orders", "database", 1)]
    );
}

#[test]
fn unanswered_requests_become_edges_to_and_from_virtual_nodes() {
    let config: ServiceGraphConfig = serde_yaml_ng::from_str(
        r#"
virtual_node_peer_attributes: [peer.service, messaging.system]
virtual_node_extra_label: true
store: { ttl: 2s }
"#,
    )
    .unwrap();
    let mut g = Graph::new(config, 0);
    let mut publish = span(1, 10, 1, PRODUCER, 2);
    publish.attributes = vec![text("messaging.system", "kafka")];
    let root = span(1, 1, 0, SERVER, 40);
    // A server span whose client never comes, and which is no root: not an edge.
    let orphan = span(2, 30, 29, SERVER, 1);
    g.add(
        &[
            resource("checkout", vec![publish]),
            resource("frontend", vec![root, orphan]),
        ],
        0,
    );
    g.expire(Some(SECOND));
    assert_eq!(g.waiting(), 3, "expired before store.ttl");
    g.expire(Some(2 * SECOND));
    assert_eq!((g.waiting(), g.expired), (0, 1));
    let out = g.metrics(3 * SECOND);
    assert_eq!(
        counter(&out, "traces_service_graph_request_total"),
        [
            row("checkout", "kafka", "virtual_node", 1),
            row("user", "frontend", "virtual_node", 1),
        ]
    );
    let sides: Vec<String> = match &out[0].scope_metrics[0].metrics[0].data {
        Some(metric::Data::Sum(s)) => s
            .data_points
            .iter()
            .map(|p| label(&p.attributes, "virtual_node"))
            .collect(),
        _ => unreachable!(),
    };
    assert_eq!(sides, ["server", "client"]);

    // Without peer attributes there are no virtual nodes: both are dropped.
    let config = ServiceGraphConfig {
        virtual_node_peer_attributes: Vec::new(),
        ..Default::default()
    };
    let mut g = Graph::new(config, 0);
    g.add(&[resource("frontend", vec![span(1, 1, 0, SERVER, 1)])], 0);
    g.expire(None);
    assert_eq!((g.expired, g.metrics(1).len()), (1, 0));
}

#[test]
fn a_full_store_drops_spans_of_new_requests() {
    let config = ServiceGraphConfig {
        store: StoreConfig {
            max_items: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut g = Graph::new(config, 0);
    let clients = (1..=3).map(|t| span(t, 10, 1, CLIENT, 1)).collect();
    g.add(&[resource("frontend", clients)], 0);
    assert_eq!((g.waiting(), g.dropped_spans), (2, 1));
    // The other side of a waiting request still gets in.
    g.add(&[resource("checkout", vec![span(1, 11, 10, SERVER, 1)])], 0);
    assert_eq!((g.waiting(), g.dropped_spans), (1, 1));
}

#[test]
fn requests_count_as_many_as_the_client_spans_adjusted_count() {
    let mut g = Graph::new(ServiceGraphConfig::default(), 0);
    for t in 1..=3 {
        let mut client = span(t, 10, 1, CLIENT, 1);
        client.trace_state = "ot=th:c".into();
        g.add(&[resource("frontend", vec![client])], 0);
        g.add(&[resource("checkout", vec![span(t, 11, 10, SERVER, 1)])], 0);
    }
    assert_eq!(
        counter(&g.metrics(1), "traces_service_graph_request_total"),
        [row("frontend", "checkout", "", 12)]
    );
}

#[test]
fn dimensions_come_from_each_side_with_its_prefix() {
    let config = ServiceGraphConfig {
        dimensions: vec!["k8s.namespace".into(), "http.method".into()],
        ..Default::default()
    };
    let mut g = Graph::new(config, 0);
    let mut client = span(1, 10, 1, CLIENT, 1);
    client.attributes = vec![text("http.method", "POST")];
    g.add(&[resource("frontend", vec![client])], 0);
    g.add(&[resource("checkout", vec![span(1, 11, 10, SERVER, 1)])], 0);
    let out = g.metrics(1);
    let Some(metric::Data::Sum(s)) = &out[0].scope_metrics[0].metrics[0].data else {
        unreachable!()
    };
    let a = &s.data_points[0].attributes;
    assert_eq!(label(a, "client_http.method"), "POST");
    assert_eq!(label(a, "client_k8s.namespace"), "shop");
    assert_eq!(label(a, "server_k8s.namespace"), "shop");
    assert_eq!(label(a, "server_http.method"), "");
}

#[test]
fn validation_and_defaults() {
    let c: ServiceGraphConfig = serde_yaml_ng::from_str("{}").unwrap();
    assert_eq!(c.store.ttl.get(), std::time::Duration::from_secs(2));
    assert_eq!(c.store.max_items, 1000);
    assert_eq!(
        c.metrics_flush_interval.get(),
        std::time::Duration::from_secs(60)
    );
    assert_eq!(
        c.virtual_node_peer_attributes,
        ["peer.service", "db.name", "db.system"]
    );
    assert_eq!(c.bounds().len(), 16);
    let bad: ServiceGraphConfig = serde_yaml_ng::from_str(
        "{ latency_histogram_buckets: [1s, 1ms], store: { ttl: 0s, max_items: 0 } }",
    )
    .unwrap();
    let problems: Vec<String> = bad
        .validate()
        .into_iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert_eq!(
        problems,
        [
            "latency_histogram_buckets[1]: buckets must increase: 1ms follows 1s",
            "store.ttl: must be greater than 0",
            "store.max_items: must be greater than 0",
        ]
    );
}

#[test]
fn spans_read_from_bytes_pair_as_decoded_ones() {
    use crate::connectors::span_fixtures::{encoded, varied_spans};
    let requests = varied_spans();
    let parts = encoded(&requests);
    for yaml in [
        "{}",
        r#"
dimensions: [http.method, host.name]
virtual_node_peer_attributes: [peer.service]
virtual_node_extra_label: true
"#,
        "store: {max_items: 3}",
    ] {
        let config: ServiceGraphConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let mut decoded = Graph::new(config.clone(), 0);
        let mut bytes = Graph::new(config, 0);
        decoded.add(&requests.concat(), SECOND);
        bytes.add_protobuf(parts.iter().map(|p| &p[..]), SECOND);
        assert_eq!(decoded.waiting(), bytes.waiting(), "{yaml}");
        assert_eq!(decoded.dropped_spans, bytes.dropped_spans, "{yaml}");
        assert_eq!(
            bytes.metrics(2 * SECOND),
            decoded.metrics(2 * SECOND),
            "{yaml}"
        );
        decoded.expire(None);
        bytes.expire(None);
        assert_eq!(decoded.expired, bytes.expired, "{yaml}");
        let expected = decoded.metrics(3 * SECOND);
        assert!(!expected.is_empty());
        assert_eq!(bytes.metrics(3 * SECOND), expected, "{yaml}");
    }
}
