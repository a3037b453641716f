use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::Duration;

/// The OpenTelemetry Collector's default latency buckets, in seconds.
pub const DEFAULT_BUCKETS_S: [f64; 16] = [
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
];

/// `connectors.servicegraph`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceGraphConfig {
    /// Upper bounds of the latency histograms' buckets, as durations, increasing. Default:
    /// the Collector's `[2ms, 4ms, 6ms, 8ms, 10ms, 50ms, 100ms, 200ms, 400ms, 800ms, 1s,
    /// 1400ms, 2s, 5s, 10s, 15s]`.
    #[serde(default)]
    pub latency_histogram_buckets: Option<Vec<Duration>>,
    /// Span or resource attributes added to each edge as `client_NAME` (from the client
    /// span) and `server_NAME` (from the server span).
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// The spans waiting for the other side of their request.
    #[serde(default)]
    pub store: StoreConfig,
    /// How often waiting spans older than `store.ttl` are given up on.
    #[serde(default = "default_store_expiration_loop")]
    pub store_expiration_loop: Duration,
    /// Client-span attributes naming an uninstrumented peer, by priority: a client span
    /// whose server never shows up becomes an edge to a virtual node named by the first one
    /// it has (`unknown` when none), and a root server span an edge from the virtual node
    /// `user`. Empty: such spans are dropped.
    #[serde(default = "default_peer_attributes")]
    pub virtual_node_peer_attributes: Vec<String>,
    /// Adds `virtual_node` (`client` or `server`: the side that is virtual) to edges with a
    /// virtual node.
    #[serde(default)]
    pub virtual_node_extra_label: bool,
    /// How often the metrics are sent on (and once more at shutdown); `0s`: after every
    /// batch of spans.
    #[serde(default = "default_flush_interval")]
    pub metrics_flush_interval: Duration,
    /// Client-span (then resource) attributes naming a database, by priority: a client span
    /// with one is a whole request to that database (`connection_type: database`), without
    /// waiting for a server span.
    #[serde(default = "default_database_name_attributes")]
    pub database_name_attributes: Vec<String>,
}

/// `store`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// How long a span waits for the other side of its request.
    #[serde(default = "default_ttl")]
    pub ttl: Duration,
    /// Requests waiting at most; spans of new ones beyond it are dropped (and counted).
    #[serde(default = "default_max_items")]
    pub max_items: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            ttl: default_ttl(),
            max_items: default_max_items(),
        }
    }
}

fn default_ttl() -> Duration {
    Duration::from_secs(2)
}
fn default_max_items() -> usize {
    1000
}
fn default_store_expiration_loop() -> Duration {
    Duration::from_secs(2)
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_peer_attributes() -> Vec<String> {
    ["peer.service", "db.name", "db.system"]
        .map(String::from)
        .to_vec()
}
fn default_database_name_attributes() -> Vec<String> {
    vec!["db.name".into()]
}

impl Default for ServiceGraphConfig {
    fn default() -> Self {
        Self {
            latency_histogram_buckets: None,
            dimensions: Vec::new(),
            store: StoreConfig::default(),
            store_expiration_loop: default_store_expiration_loop(),
            virtual_node_peer_attributes: default_peer_attributes(),
            virtual_node_extra_label: false,
            metrics_flush_interval: default_flush_interval(),
            database_name_attributes: default_database_name_attributes(),
        }
    }
}

impl ServiceGraphConfig {
    /// The bucket bounds in seconds.
    pub fn bounds(&self) -> Vec<f64> {
        match &self.latency_histogram_buckets {
            Some(b) => b.iter().map(|d| d.get().as_secs_f64()).collect(),
            None => DEFAULT_BUCKETS_S.to_vec(),
        }
    }
}

impl Validate for ServiceGraphConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(b) = &self.latency_histogram_buckets
            && let Some(i) = (1..b.len()).find(|&i| b[i].get() <= b[i - 1].get())
        {
            problems.push(Problem::new(
                format!("latency_histogram_buckets[{i}]"),
                format!("buckets must increase: {} follows {}", b[i], b[i - 1]),
            ));
        }
        if self.store.ttl.is_zero() {
            problems.push(Problem::new("store.ttl", "must be greater than 0"));
        }
        if self.store.max_items == 0 {
            problems.push(Problem::new("store.max_items", "must be greater than 0"));
        }
        if self.store_expiration_loop.is_zero() {
            problems.push(Problem::new(
                "store_expiration_loop",
                "must be greater than 0",
            ));
        }
        problems
    }
}
