//! Shared pieces of the wasmcol benchmarks.
//!
//! - [`realistic_request`] builds the OTLP request the criterion benches (`benches/`) feed to
//!   the codecs and the pipeline: HTTP-server-like spans with the attribute sizes seen in
//!   production traces, not the tiny synthetic spans that flatter a decoder.
//! - [`Processors`] builds processors from a YAML `processors:` section exactly as the
//!   collector does, for benches that drive one stage in-process.
//! - [`ch_sink`] is a discarding ClickHouse HTTP server that counts the rows inserted, for the
//!   end-to-end ClickHouse benchmarks (`src/bin/e2e_clickhouse.rs`, `src/bin/e2e_kafka.rs`).
//! - The end-to-end harness that compares the `wasmcol` binary with Rotel is
//!   `src/bin/e2e.rs`; see `BENCHMARKS.md` at the repository root for how to run both.

pub mod ch_sink;
pub mod procfs;

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// Processors parsed from YAML and built exactly as the collector builds them (`Config::parse`,
/// then each processor's `build`), sharing one metrics registry.
pub struct Processors {
    config: wasmcol::Config,
    /// The registry every built processor reports to.
    pub metrics: Arc<wasmcol::telemetry::Metrics>,
}

impl Processors {
    /// `section` is the body of a `processors:` section (entries indented two spaces); every
    /// processor in it is listed in one `traces` pipeline, in `ids` order.
    pub fn parse(section: &str, ids: &[&str]) -> Self {
        let yaml = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n\
             processors:\n{section}\n\
             exporters:\n  nop: {{}}\n\
             service:\n  telemetry:\n    metrics:\n      address: none\n  \
             pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [{}]\n      \
             exporters: [nop]\n",
            ids.join(", ")
        );
        let config = wasmcol::Config::parse("bench.yaml", &yaml, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        Processors {
            config,
            metrics: Arc::new(wasmcol::telemetry::Metrics::new()),
        }
    }

    /// Builds processor `id` in front of `next`.
    pub fn build(
        &self,
        id: &str,
        next: wasmcol::pipeline::SharedConsumer<wasmcol::pipeline::Traces>,
    ) -> Arc<dyn wasmcol::component::Processor<wasmcol::pipeline::Traces>> {
        let id = wasmcol::component::ComponentId::parse(id).expect("processor id");
        let ctx = wasmcol::component::BuildContext {
            id: id.clone(),
            pipeline: Some("traces".into()),
            metrics: self.metrics.clone(),
            stores: Default::default(),
            authenticators: Default::default(),
            acknowledge_when_stored: false,
        };
        self.config.processors[&id]
            .build_traces(&ctx, next)
            .unwrap_or_else(|e| panic!("{id}: {e:#}"))
    }
}

/// Spans per trace in [`realistic_request`]: one SERVER root and its CLIENT children.
pub const SPANS_PER_TRACE: usize = 8;

/// A deterministic 64-bit generator (SplitMix64): the fixture is the same on every run, so
/// results are comparable across runs and machines.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` characters from `[a-z0-9]`.
    pub fn token(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| char::from(CHARS[self.below(CHARS.len() as u64) as usize]))
            .collect()
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

const ROUTES: &[&str] = &[
    "/api/v1/users/{user_id}/orders",
    "/api/v1/orders/{order_id}/items",
    "/api/v2/catalog/products/{sku}",
    "/api/v1/checkout/{cart_id}/payment",
];

const PEERS: &[&str] = &[
    "orders-db",
    "inventory-service",
    "payments-gateway",
    "redis-cache",
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0 shop-frontend/3.14.2 (build 20240501.1)",
];

/// The ten span attributes of the fixture: realistic keys and value sizes (`url.full` about
/// 100 bytes, `user_agent.original` about 120, `db.statement` about 200).
fn span_attributes(rng: &mut SplitMix64, route: &str, status: i64) -> Vec<KeyValue> {
    let id = rng.below(10_000_000);
    let url = format!(
        "https://shop.example.com{}?page={}&session={}",
        route.replace("{user_id}", &id.to_string()),
        rng.below(50),
        rng.token(40)
    );
    let statement = format!(
        "SELECT o.id, o.status, o.total_cents, o.currency, o.created_at, i.sku, i.quantity \
         FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.user_id = {id} \
         AND o.created_at > $1 ORDER BY o.created_at DESC LIMIT 50"
    );
    let peer = PEERS[rng.below(PEERS.len() as u64) as usize];
    vec![
        s(
            "http.request.method",
            if rng.below(4) == 0 { "POST" } else { "GET" },
        ),
        s("http.route", route),
        s("url.full", url),
        s(
            "user_agent.original",
            USER_AGENTS[rng.below(USER_AGENTS.len() as u64) as usize],
        ),
        kv("http.response.status_code", Value::IntValue(status)),
        s("db.statement", statement),
        s("peer.service", peer),
        s("net.peer.name", format!("{peer}.prod.svc.cluster.local")),
        kv("http.cache_hit", Value::BoolValue(rng.below(3) == 0)),
        kv(
            "http.server.request.duration_ms",
            Value::DoubleValue(rng.below(250_000) as f64 / 1000.0),
        ),
    ]
}

/// The resource of the fixture: a Kubernetes pod of a service.
pub fn resource() -> Resource {
    Resource {
        attributes: vec![
            s("service.name", "checkout-service"),
            s("service.version", "2.31.0"),
            s("service.namespace", "shop"),
            s("deployment.environment", "production"),
            s("host.name", "ip-10-12-34-56.eu-west-1.compute.internal"),
            s("k8s.cluster.name", "prod-eu-west-1"),
            s("k8s.namespace.name", "shop"),
            s("k8s.deployment.name", "checkout-service"),
            s("k8s.pod.name", "checkout-service-7d9f8c6b5-x2kqp"),
            s("k8s.pod.uid", "3f1c2a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70"),
            s("k8s.node.name", "ip-10-12-34-56.eu-west-1.compute.internal"),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.language", "java"),
            s("telemetry.sdk.version", "1.38.0"),
        ],
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    }
}

/// An `ExportTraceServiceRequest` of `spans` spans (one resource, one scope), as an
/// instrumented HTTP service would send it: traces of [`SPANS_PER_TRACE`] spans (a SERVER root
/// and CLIENT children), ten attributes per span (see the module docs), one event per span,
/// and on the one trace in sixteen that fails, an `exception` event with a stack trace.
pub fn realistic_request(spans: usize) -> ExportTraceServiceRequest {
    let mut rng = SplitMix64::new(0x5eed_0001);
    let base: u64 = 1_763_700_000_000_000_000; // 2025-11-21, in Unix nanoseconds
    let mut out = Vec::with_capacity(spans);
    let mut trace_id = [0u8; 16];
    let mut root_id = [0u8; 8];
    let mut failed = false;
    for i in 0..spans {
        let pos = i % SPANS_PER_TRACE;
        if pos == 0 {
            trace_id[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
            trace_id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
            root_id = rng.next_u64().to_be_bytes();
            failed = rng.below(16) == 0;
        }
        let span_id = if pos == 0 {
            root_id
        } else {
            rng.next_u64().to_be_bytes()
        };
        let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let status = if failed { 500 } else { 200 };
        let start = base + i as u64 * 1_000_000 + rng.below(1_000_000);
        let end = start + 200_000 + rng.below(50_000_000);
        let mut events = vec![Event {
            time_unix_nano: start + 100_000,
            name: "message".to_owned(),
            attributes: vec![
                s("message.type", "SENT"),
                kv("message.id", Value::IntValue(pos as i64 + 1)),
                kv(
                    "message.uncompressed_size",
                    Value::IntValue(rng.below(4096) as i64),
                ),
            ],
            dropped_attributes_count: 0,
        }];
        if failed && pos == 0 {
            events.push(Event {
                time_unix_nano: end - 1_000,
                name: "exception".to_owned(),
                attributes: vec![
                    s("exception.type", "java.sql.SQLTransientConnectionException"),
                    s(
                        "exception.message",
                        "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
                    ),
                    s(
                        "exception.stacktrace",
                        "java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available\n\
                         \tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)\n\
                         \tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:197)\n\
                         \tat com.zaxxer.hikari.HikariDataSource.getConnection(HikariDataSource.java:100)\n\
                         \tat com.example.shop.checkout.OrderRepository.findRecent(OrderRepository.java:58)\n",
                    ),
                ],
                dropped_attributes_count: 0,
            });
        }
        out.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            trace_state: String::new(),
            parent_span_id: if pos == 0 {
                Vec::new()
            } else {
                root_id.to_vec()
            },
            flags: 0x101,
            name: if pos == 0 {
                format!("GET {route}")
            } else {
                format!("SELECT orders {pos}")
            },
            kind: if pos == 0 {
                SpanKind::Server as i32
            } else {
                SpanKind::Client as i32
            },
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: span_attributes(&mut rng, route, status),
            dropped_attributes_count: 0,
            events,
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status: Some(if failed && pos == 0 {
                Status {
                    message: "HTTP 500".to_owned(),
                    code: StatusCode::Error as i32,
                }
            } else {
                Status::default()
            }),
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.spring-webmvc-6.0".to_owned(),
                    version: "2.4.0-alpha".to_owned(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                spans: out,
                schema_url: "https://opentelemetry.io/schemas/1.24.0".to_owned(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.24.0".to_owned(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_has_the_advertised_shape() {
        let r = realistic_request(512);
        let spans = &r.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 512);
        assert!(spans.iter().all(|s| s.attributes.len() == 10));
        let len = |key: &str| {
            spans[0]
                .attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(v) => Some(v.len()),
                    _ => None,
                })
                .unwrap()
        };
        assert!((80..=130).contains(&len("url.full")), "{}", len("url.full"));
        assert!((100..=130).contains(&len("user_agent.original")));
        assert!((180..=260).contains(&len("db.statement")));
        assert_eq!(realistic_request(512), r, "deterministic");
    }
}
