//! The service graph: spans paired into requests (edges between services) by trace id and
//! the client's span id, and the metrics of the edges. Pure: time comes in as Unix
//! nanoseconds, so tests drive it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, span::SpanKind, status};

use super::config::ServiceGraphConfig;
use crate::connectors::spans::{Attributes, SpanRef, for_each_resource};
use crate::sampling::adjusted::adjusted_count;

/// The instrumentation scope of the metrics, as the OpenTelemetry Collector names it.
pub const SCOPE_NAME: &str = "traces_service_graph";

/// `connection_type` values.
const MESSAGING: &str = "messaging_system";
const DATABASE: &str = "database";
const VIRTUAL: &str = "virtual_node";

/// A request waiting for its other side: keyed by trace id and the client span's id (the
/// server span's parent), written by [`write_key`], so spans look it up by a borrowed slice.
type Key = Vec<u8>;

/// The key of `trace_id` and `span_id`: the trace id's length, then both ids.
fn write_key(trace_id: &[u8], span_id: &[u8], out: &mut Vec<u8>) {
    out.clear();
    prost::encoding::encode_varint(trace_id.len() as u64, out);
    out.extend_from_slice(trace_id);
    out.extend_from_slice(span_id);
}

/// Requests waiting for their other side, and the edges' metrics.
pub struct Graph {
    config: ServiceGraphConfig,
    bounds: Vec<f64>,
    store: HashMap<Key, Pending>,
    /// By label set (client, server, connection_type, dimensions).
    edges: BTreeMap<Vec<(String, String)>, Edge>,
    /// When the graph started: the start of every cumulative point.
    start: u64,
    /// Spans dropped because the store was full.
    pub dropped_spans: u64,
    /// Requests given up on after `store.ttl` without becoming an edge.
    pub expired: u64,
    /// The key of the span being added (reused).
    key: Key,
}

#[derive(Default)]
struct Pending {
    client: Option<Side>,
    server: Option<Side>,
    connection: &'static str,
    failed: bool,
    /// The first virtual-node peer attribute of the client span.
    peer: Option<String>,
    /// The server span has no parent: the request came from outside.
    root: bool,
    dimensions: Vec<(String, String)>,
    arrived: u64,
}

struct Side {
    service: Arc<str>,
    seconds: f64,
    weight: f64,
}

struct Edge {
    total: f64,
    failed: f64,
    server: Buckets,
    client: Buckets,
}

struct Buckets {
    counts: Vec<f64>,
    sum: f64,
}

impl Buckets {
    fn new(bounds: &[f64]) -> Self {
        Self {
            counts: vec![0.0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    fn record(&mut self, bounds: &[f64], seconds: f64, weight: f64) {
        self.counts[bounds.partition_point(|&b| b < seconds)] += weight;
        self.sum += seconds * weight;
    }
}

fn text(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// The first of `names` found in the attribute lists, in order of `names` then lists.
fn find(names: &[String], lists: &[&[KeyValue]]) -> Option<String> {
    names.iter().find_map(|name| {
        lists
            .iter()
            .flat_map(|l| l.iter())
            .find(|kv| kv.key == *name)
            .and_then(|kv| text(kv.value.as_ref()?))
    })
}

/// As [`find`] in the span's attributes, then (with `resource`) its resource's.
fn find_in(
    names: &[String],
    span: Attributes<'_>,
    resource: Option<&[KeyValue]>,
) -> Option<String> {
    names.iter().find_map(|name| {
        match span.get(name) {
            Some(v) => v,
            None => Attributes::Decoded(resource?).get(name)?,
        }?
        .text()
        .map(|t| t.into_owned())
    })
}

impl Graph {
    /// An empty graph for `config`, started at `now`.
    pub fn new(config: ServiceGraphConfig, now: u64) -> Self {
        Self {
            bounds: config.bounds(),
            config,
            store: HashMap::new(),
            edges: BTreeMap::new(),
            start: now,
            dropped_spans: 0,
            expired: 0,
            key: Vec::new(),
        }
    }

    /// Requests waiting for their other side.
    pub fn waiting(&self) -> usize {
        self.store.len()
    }

    /// Pairs the client and server spans of `resources` (spans of resources without
    /// `service.name` are skipped, as in the Collector), recording each request whose two
    /// sides are known.
    pub fn add(&mut self, resources: &[ResourceSpans], now: u64) {
        self.add_from(None::<std::iter::Empty<&[u8]>>, resources, now);
    }

    /// As [`Graph::add`], for a batch held as protobuf: `parts` are export requests that
    /// passed validation, read in place.
    pub fn add_protobuf<'p>(&mut self, parts: impl Iterator<Item = &'p [u8]>, now: u64) {
        self.add_from(Some(parts), &[], now);
    }

    fn add_from<'p>(
        &mut self,
        parts: Option<impl Iterator<Item = &'p [u8]>>,
        resources: &'p [ResourceSpans],
        now: u64,
    ) {
        for_each_resource(
            parts,
            || resources,
            |resource, spans| {
                let Some(service) = find(&["service.name".to_string()], &[resource]) else {
                    return;
                };
                let service: Arc<str> = service.into();
                for span in spans {
                    self.add_span(&span, &service, resource, now);
                }
            },
        );
    }

    fn add_span(
        &mut self,
        span: &SpanRef<'_>,
        service: &Arc<str>,
        resource: &[KeyValue],
        now: u64,
    ) {
        let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
        let client = match kind {
            SpanKind::Client | SpanKind::Producer => true,
            SpanKind::Server | SpanKind::Consumer => false,
            _ => return,
        };
        let mut key = std::mem::take(&mut self.key);
        let peer_id = if client {
            span.span_id
        } else {
            span.parent_span_id
        };
        write_key(span.trace_id, peer_id, &mut key);
        self.add_keyed(span, kind, client, &key, service, resource, now);
        self.key = key;
    }

    #[allow(clippy::too_many_arguments)]
    fn add_keyed(
        &mut self,
        span: &SpanRef<'_>,
        kind: SpanKind,
        client: bool,
        key: &[u8],
        service: &Arc<str>,
        resource: &[KeyValue],
        now: u64,
    ) {
        if !self.store.contains_key(key) && self.store.len() >= self.config.store.max_items {
            self.dropped_spans += 1;
            return;
        }
        let side = Side {
            service: service.clone(),
            seconds: span
                .end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano) as f64
                / 1e9,
            weight: adjusted_count(span.trace_state),
        };
        let failed = span.status_code == status::StatusCode::Error as i32;
        let prefix = if client { "client_" } else { "server_" };
        let dimensions: Vec<(String, String)> = self
            .config
            .dimensions
            .iter()
            .filter_map(|d| {
                let v = find_in(std::slice::from_ref(d), span.attributes, Some(resource))?;
                Some((format!("{prefix}{d}"), v))
            })
            .collect();
        let database = if client {
            find_in(
                &self.config.database_name_attributes,
                span.attributes,
                Some(resource),
            )
        } else {
            None
        };
        // Only a client span's peer is kept.
        let peer = if client {
            find_in(
                &self.config.virtual_node_peer_attributes,
                span.attributes,
                None,
            )
        } else {
            None
        };
        // The key is copied only for a new request.
        if !self.store.contains_key(key) {
            self.store.insert(
                key.to_vec(),
                Pending {
                    arrived: now,
                    ..Default::default()
                },
            );
        }
        let pending = self.store.get_mut(key).expect("just inserted");
        pending.failed |= failed;
        pending.dimensions.extend(dimensions);
        if matches!(kind, SpanKind::Producer | SpanKind::Consumer) {
            pending.connection = MESSAGING;
        }
        if client {
            pending.peer = peer;
            // A database request has one span: the client's stands for both sides.
            if let Some(db) = database {
                pending.connection = DATABASE;
                pending.server = Some(Side {
                    service: db.into(),
                    seconds: side.seconds,
                    weight: side.weight,
                });
            }
            pending.client = Some(side);
        } else {
            pending.root = span.parent_span_id.is_empty();
            pending.server = Some(side);
        }
        if pending.client.is_some() && pending.server.is_some() {
            let done = self.store.remove(key).expect("just found");
            self.record(done, None);
        }
    }

    /// Gives up on requests waiting since `store.ttl` before `now` (all of them when `now`
    /// is `None`, at shutdown): with virtual nodes, a client span without its server becomes
    /// an edge to the peer it names, a root server span an edge from `user`; other requests
    /// are counted as expired.
    pub fn expire(&mut self, now: Option<u64>) {
        let ttl = self.config.store.ttl.get().as_nanos() as u64;
        let due: Vec<Key> = self
            .store
            .iter()
            .filter(|(_, p)| now.is_none_or(|now| now.saturating_sub(p.arrived) >= ttl))
            .map(|(k, _)| k.clone())
            .collect();
        let virtual_nodes = !self.config.virtual_node_peer_attributes.is_empty();
        for key in due {
            let mut p = self.store.remove(&key).expect("listed");
            let virtual_side = match (&p.client, &p.server) {
                (Some(c), None) if virtual_nodes => {
                    p.server = Some(Side {
                        service: p.peer.as_deref().unwrap_or("unknown").into(),
                        seconds: 0.0,
                        weight: c.weight,
                    });
                    "server"
                }
                (None, Some(s)) if virtual_nodes && p.root => {
                    p.client = Some(Side {
                        service: "user".into(),
                        seconds: 0.0,
                        weight: s.weight,
                    });
                    "client"
                }
                _ => {
                    self.expired += 1;
                    continue;
                }
            };
            p.connection = VIRTUAL;
            self.record(p, Some(virtual_side));
        }
    }

    fn record(&mut self, p: Pending, virtual_side: Option<&str>) {
        let (Some(client), Some(server)) = (&p.client, &p.server) else {
            return;
        };
        let mut labels = vec![
            ("client".to_string(), client.service.to_string()),
            ("server".to_string(), server.service.to_string()),
            ("connection_type".to_string(), p.connection.to_string()),
        ];
        if let Some(side) = virtual_side
            && self.config.virtual_node_extra_label
        {
            labels.push(("virtual_node".into(), side.into()));
        }
        let mut dims = p.dimensions;
        dims.sort();
        dims.dedup_by(|a, b| a.0 == b.0);
        labels.extend(dims);
        // The client's adjusted count, or the server's when the client is virtual.
        let weight = if virtual_side == Some("client") {
            server.weight
        } else {
            client.weight
        };
        let bounds = &self.bounds;
        let edge = self.edges.entry(labels).or_insert_with(|| Edge {
            total: 0.0,
            failed: 0.0,
            server: Buckets::new(bounds),
            client: Buckets::new(bounds),
        });
        edge.total += weight;
        if p.failed {
            edge.failed += weight;
        }
        edge.server.record(bounds, server.seconds, weight);
        edge.client.record(bounds, client.seconds, weight);
    }

    /// The edges' metrics at `now` (cumulative), in one `ResourceMetrics`; none before the
    /// first edge.
    pub fn metrics(&self, now: u64) -> Vec<ResourceMetrics> {
        if self.edges.is_empty() {
            return Vec::new();
        }
        let attributes = |labels: &[(String, String)]| -> Vec<KeyValue> {
            labels
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(v.clone())),
                    }),
                    ..Default::default()
                })
                .collect()
        };
        let cumulative = AggregationTemporality::Cumulative as i32;
        let counter = |name: &str, value: &dyn Fn(&Edge) -> f64| {
            let points = self
                .edges
                .iter()
                .filter(|(_, e)| value(e) > 0.0)
                .map(|(labels, e)| NumberDataPoint {
                    attributes: attributes(labels),
                    start_time_unix_nano: self.start,
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsInt(value(e).round() as i64)),
                    ..Default::default()
                })
                .collect();
            Metric {
                name: name.into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: cumulative,
                    is_monotonic: true,
                })),
                ..Default::default()
            }
        };
        let histogram = |name: &str, side: &dyn Fn(&Edge) -> &Buckets| {
            let points = self
                .edges
                .iter()
                .map(|(labels, e)| {
                    let b = side(e);
                    let bucket_counts: Vec<u64> =
                        b.counts.iter().map(|c| c.round() as u64).collect();
                    HistogramDataPoint {
                        attributes: attributes(labels),
                        start_time_unix_nano: self.start,
                        time_unix_nano: now,
                        count: bucket_counts.iter().sum(),
                        sum: Some(b.sum),
                        bucket_counts,
                        explicit_bounds: self.bounds.clone(),
                        ..Default::default()
                    }
                })
                .collect();
            Metric {
                name: name.into(),
                unit: "s".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: points,
                    aggregation_temporality: cumulative,
                })),
                ..Default::default()
            }
        };
        let mut metrics = vec![counter("traces_service_graph_request_total", &|e| e.total)];
        let failed = counter("traces_service_graph_request_failed_total", &|e| e.failed);
        if matches!(&failed.data, Some(metric::Data::Sum(s)) if !s.data_points.is_empty()) {
            metrics.push(failed);
        }
        metrics.push(histogram(
            "traces_service_graph_request_server_seconds",
            &|e| &e.server,
        ));
        metrics.push(histogram(
            "traces_service_graph_request_client_seconds",
            &|e| &e.client,
        ));
        vec![ResourceMetrics {
            resource: Some(Resource::default()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }]
    }
}
