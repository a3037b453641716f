//! `exporters.clickhouse`: the options, their validation, and building the running exporter.

use std::sync::Arc;

use http::Uri;
use serde::Deserialize;

use super::batcher::Batcher;
use super::client::Client;
use super::schema::{MetricsTables, Schema};
use super::sender::{ChSignal, ClickHouseSender};
use crate::component::nested;
use crate::component::{BuildContext, Exporter, ExporterConfig, Problem, Validate};
use crate::config::opaque::Opaque;
use crate::config::tls::client::ClientTlsConfig;
use crate::config::{ByteSize, Duration};
use crate::exporters::sending_queue::{QueueConfig, RetryConfig, SendingQueue};

/// `Content-Encoding` of insert bodies. ClickHouse's HTTP interface decodes each of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compress {
    /// LZ4 frame format: the cheapest to produce, as the OpenTelemetry Collector's default.
    #[default]
    Lz4,
    /// Zstandard, level 1: smaller bodies for a little more CPU.
    Zstd,
    /// gzip, fastest level.
    Gzip,
    /// Uncompressed.
    None,
}

impl Compress {
    /// The `Content-Encoding` header value, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Self::Lz4 => Some("lz4"),
            Self::Zstd => Some("zstd"),
            Self::Gzip => Some("gzip"),
            Self::None => None,
        }
    }
}

/// `table_engine`: the MergeTree-family engine of the tables the exporter creates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEngine {
    /// Engine name, e.g. `MergeTree` (default), `ReplicatedMergeTree`, `SharedMergeTree`.
    #[serde(default = "default_engine_name")]
    pub name: String,
    /// Engine parameters, written between the parentheses verbatim (Replicated engines take
    /// the ZooKeeper path and replica name here; empty uses the server's defaults).
    #[serde(default)]
    pub params: String,
}

fn default_engine_name() -> String {
    "MergeTree".into()
}

impl Default for TableEngine {
    fn default() -> Self {
        Self {
            name: default_engine_name(),
            params: String::new(),
        }
    }
}

/// `batch`: how many rows (spans, log records or data points) make one `INSERT`. ClickHouse
/// wants few, large inserts (each one becomes a part on disk that must later be merged), so
/// the exporter gathers what the pipeline hands it until one of these limits is reached. Each
/// signal gathers its own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Gather batches at all. When false each pipeline batch is one insert.
    pub enabled: bool,
    /// Rows (spans, log records, data points) that make an insert: reaching it sends at once.
    pub max_rows: usize,
    /// Size that makes an insert, measured as the batches' OTLP protobuf size (close to the
    /// size of the rows before compression): reaching it sends at once.
    pub max_bytes: ByteSize,
    /// A partial insert is sent after this long.
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_rows: 100_000,
            max_bytes: ByteSize::mib(16),
            timeout: Duration::from_secs(5),
        }
    }
}

impl Validate for BatchConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if !self.enabled {
            return p;
        }
        if self.max_rows == 0 {
            p.push(Problem::new("max_rows", "must be at least 1, got 0"));
        }
        if self.max_bytes.bytes() == 0 {
            p.push(Problem::new("max_bytes", "must be more than 0, got 0B"));
        }
        if self.timeout.is_zero() {
            p.push(Problem::new(
                "timeout",
                "must be more than 0, got 0s (set enabled: false to insert each batch as it comes)",
            ));
        }
        p
    }
}

/// `metrics_tables.<type>`: one metrics table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricTable {
    /// The table's name.
    pub name: String,
}

/// `metrics_tables`: the table of each metric type, as the OpenTelemetry Collector's
/// exporter names them (`otel_metrics_gauge`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTablesConfig {
    /// Gauges' data points.
    pub gauge: MetricTable,
    /// Sums' (counters', up-down counters') data points.
    pub sum: MetricTable,
    /// Histograms' data points.
    pub histogram: MetricTable,
    /// Exponential histograms' data points.
    pub exponential_histogram: MetricTable,
    /// Summaries' data points.
    pub summary: MetricTable,
}

impl Default for MetricsTablesConfig {
    fn default() -> Self {
        let d = MetricsTables::default();
        let t = |name: String| MetricTable { name };
        Self {
            gauge: t(d.gauge),
            sum: t(d.sum),
            histogram: t(d.histogram),
            exponential_histogram: t(d.exponential_histogram),
            summary: t(d.summary),
        }
    }
}

impl MetricsTablesConfig {
    /// Each table with its option's path.
    fn named(&self) -> [(&'static str, &str); 5] {
        [
            ("metrics_tables.gauge.name", &self.gauge.name),
            ("metrics_tables.sum.name", &self.sum.name),
            ("metrics_tables.histogram.name", &self.histogram.name),
            (
                "metrics_tables.exponential_histogram.name",
                &self.exponential_histogram.name,
            ),
            ("metrics_tables.summary.name", &self.summary.name),
        ]
    }
}

/// `exporters.clickhouse`: spans, log records and metric data points into ClickHouse over its
/// HTTP interface, in the tables the OpenTelemetry Collector's ClickHouse exporter creates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseExporterConfig {
    /// The HTTP interface: `http://host:8123` or `https://host:8443`.
    #[serde(default)]
    pub endpoint: String,
    /// Database of the tables; created when `create_schema` is true.
    #[serde(default = "default_database")]
    pub database: String,
    /// User name (sent with HTTP basic authentication); empty uses the server's `default`.
    #[serde(default)]
    pub username: String,
    /// Password of `username`; never printed.
    #[serde(default)]
    pub password: Opaque,
    /// The spans table; the lookup and span-metrics tables are named after it.
    #[serde(default = "default_traces_table")]
    pub traces_table_name: String,
    /// The log records table.
    #[serde(default = "default_logs_table")]
    pub logs_table_name: String,
    /// The metrics tables, one per metric type.
    #[serde(default)]
    pub metrics_tables: MetricsTablesConfig,
    /// Create the database, tables and materialized views at start (`IF NOT EXISTS`): each
    /// signal's own tables, when the exporter is in a pipeline of that signal.
    #[serde(default = "default_true")]
    pub create_schema: bool,
    /// How long ClickHouse keeps rows (a table TTL; whole days, hours, minutes or seconds);
    /// `0` keeps them forever.
    #[serde(default)]
    pub ttl: Duration,
    /// A cluster from the server's `remote_servers`: DDL runs `ON CLUSTER`, the rows go to
    /// `<table>_local` tables on every node and `<table>` becomes a Distributed table over
    /// them, sharded by trace id.
    #[serde(default)]
    pub cluster_name: String,
    /// The engine of the tables; aggregating tables get its aggregating variant.
    #[serde(default)]
    pub table_engine: TableEngine,
    /// Also create span-metrics tables: per service, span name, kind and status, the count
    /// and sum/min/max duration per 30 s, rolled up to 10 min by a materialized view.
    #[serde(default)]
    pub span_metrics_tables: bool,
    /// Also create the trace-analysis tables (in a metrics pipeline):
    /// `trace_analysis_findings` (per pattern, service and span name),
    /// `trace_analysis_dependencies` (calls and failures per caller and callee) and
    /// `trace_analysis_critical_path` (self time per service and span name), filled by
    /// materialized views from the `trace_analysis` connector's points in the sum table.
    #[serde(default)]
    pub trace_analysis_tables: bool,
    /// Insert with `async_insert=1`; the exporter always waits for the server's flush
    /// (`wait_for_async_insert=1`) so an acknowledged insert is on disk.
    #[serde(default)]
    pub async_insert: bool,
    /// Send an `insert_deduplication_token` with each insert, the same for every retry of
    /// it, so a retried insert the server had already written is not written twice (and
    /// create plain `MergeTree` tables with `non_replicated_deduplication_window`).
    #[serde(default = "default_true")]
    pub insert_deduplication: bool,
    /// `lz4` (default), `zstd`, `gzip` or `none`.
    #[serde(default)]
    pub compress: Compress,
    /// Bound on each attempt (connect, send, answer); `0` = none.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// How rows are gathered into inserts.
    #[serde(default)]
    pub batch: BatchConfig,
    /// The queue between the batcher and the senders.
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Retries of retryable failures.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// TLS of an `https://` endpoint, the options every exporter's `tls` has; absent = the
    /// system's root certificates, no client certificate.
    #[serde(default)]
    pub tls: Option<ClientTlsConfig>,
}

fn default_database() -> String {
    "default".into()
}
fn default_traces_table() -> String {
    "otel_traces".into()
}
fn default_logs_table() -> String {
    "otel_logs".into()
}
fn default_true() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// True for names ClickHouse accepts unquoted; anything else is refused rather than quoted,
/// so a name in the config is the name a user types in a query.
fn plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses the endpoint, explaining what is wrong with it.
pub fn check_endpoint(value: &str) -> Result<Uri, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(
            "missing: set it to ClickHouse's HTTP interface, e.g. http://localhost:8123".into(),
        );
    }
    let uri: Uri = value
        .parse()
        .map_err(|e| format!("not a URL: {value:?} ({e}); expected http://host:8123"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "unsupported scheme {other:?} in {value:?}: ClickHouse's HTTP interface is \
                 http://host:8123 or https://host:8443 (the native protocol, tcp:// or \
                 clickhouse://, is not spoken)"
            ));
        }
        None => {
            return Err(format!(
                "expected a URL such as http://{value}, got {value:?} (the scheme is required)"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "expected http://host:port, got {value:?} (no host)"
        ));
    }
    if uri.query().is_some() || !uri.path().trim_end_matches('/').is_empty() {
        return Err(format!(
            "expected only scheme, host and port, got {value:?}: set the database with \
             `database` and settings with the exporter's options"
        ));
    }
    Ok(uri)
}

impl Validate for ClickHouseExporterConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        match check_endpoint(&self.endpoint) {
            Err(e) => p.push(Problem::new("endpoint", e)),
            Ok(uri)
                if self.tls.as_ref().is_some_and(|t| !t.insecure)
                    && uri.scheme_str() == Some("http") =>
            {
                p.push(Problem::new(
                    "tls",
                    format!(
                        "set, but the endpoint {:?} is plaintext http://: use https:// (e.g. \
                         https://host:8443) or remove tls",
                        self.endpoint.trim()
                    ),
                ));
            }
            Ok(uri) if uri.scheme_str() == Some("https") => {
                let tls = self.tls.clone().unwrap_or_default();
                p.extend(nested("tls", tls.problems()));
            }
            Ok(_) => {}
        }
        let mut names = vec![
            ("database", self.database.as_str()),
            ("traces_table_name", &self.traces_table_name),
            ("logs_table_name", &self.logs_table_name),
        ];
        names.extend(self.metrics_tables.named());
        for (option, value) in names {
            if !plain_identifier(value) {
                p.push(Problem::new(
                    option,
                    format!(
                        "{value:?} is not a plain ClickHouse identifier (letters, digits and '_', \
                         not starting with a digit)"
                    ),
                ));
            }
        }
        if !self.cluster_name.is_empty() && !plain_identifier(&self.cluster_name) {
            p.push(Problem::new(
                "cluster_name",
                format!(
                    "{:?} is not a plain ClickHouse identifier (letters, digits and '_')",
                    self.cluster_name
                ),
            ));
        }
        let engine = &self.table_engine.name;
        if !(plain_identifier(engine) && engine.ends_with("MergeTree")) {
            p.push(Problem::new(
                "table_engine.name",
                format!(
                    "expected a MergeTree-family engine (MergeTree, ReplicatedMergeTree, \
                     SharedMergeTree, ...), got {engine:?}"
                ),
            ));
        }
        if self.table_engine.params.contains([')', ';']) {
            p.push(Problem::new(
                "table_engine.params",
                format!(
                    "{:?} must be the engine's arguments only (no ')' or ';')",
                    self.table_engine.params
                ),
            ));
        }
        if !self.ttl.is_zero() && self.ttl.get().subsec_nanos() != 0 {
            p.push(Problem::new(
                "ttl",
                format!("must be whole seconds, got {}", self.ttl),
            ));
        }
        if self.username.contains(':') {
            p.push(Problem::new(
                "username",
                format!(
                    "{:?} cannot contain ':' (HTTP basic authentication)",
                    self.username
                ),
            ));
        }
        if !self.username.is_empty() && http::HeaderValue::from_str(&self.username).is_err() {
            p.push(Problem::new("username", "must be printable ASCII"));
        }
        p.extend(nested("batch", self.batch.validate()));
        p.extend(nested("sending_queue", self.sending_queue.validate()));
        p.extend(nested("retry_on_failure", self.retry_on_failure.validate()));
        p
    }
}

impl ClickHouseExporterConfig {
    /// The DDL and insert statement this configuration implies.
    pub fn schema(&self) -> Schema {
        Schema {
            database: self.database.clone(),
            table: self.traces_table_name.clone(),
            logs_table: self.logs_table_name.clone(),
            metrics_tables: MetricsTables {
                gauge: self.metrics_tables.gauge.name.clone(),
                sum: self.metrics_tables.sum.name.clone(),
                histogram: self.metrics_tables.histogram.name.clone(),
                exponential_histogram: self.metrics_tables.exponential_histogram.name.clone(),
                summary: self.metrics_tables.summary.name.clone(),
            },
            cluster: (!self.cluster_name.is_empty()).then(|| self.cluster_name.clone()),
            engine: self.table_engine.clone(),
            ttl: self.ttl.get(),
            span_metrics: self.span_metrics_tables,
            trace_analysis: self.trace_analysis_tables,
            deduplication: self.insert_deduplication,
        }
    }
}

impl ExporterConfig for ClickHouseExporterConfig {
    fn storage(&self) -> Option<crate::component::ComponentId> {
        self.sending_queue.storage_id()
    }

    crate::component::exports_every_signal!(build);
}

impl ClickHouseExporterConfig {
    /// The exporter for one signal: its own client, batcher and sending queue (as every
    /// exporter's), inserting into that signal's tables.
    fn build<S: ChSignal>(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<S>>> {
        let endpoint = check_endpoint(&self.endpoint)
            .map_err(|e| anyhow::anyhow!("exporters.{}.endpoint: {e}", ctx.id))?;
        // https:// without a tls block: the system's roots, as any TLS client.
        let https = endpoint.scheme_str() == Some("https");
        let tls = https
            .then(|| {
                let tls = self.tls.clone().unwrap_or_default();
                tls.build(&format!("exporters.{}.tls", ctx.id), &["http/1.1"])
            })
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let client = Client::new(
            endpoint,
            &self.username,
            self.password.expose(),
            self.timeout.get(),
            tls.map(Arc::new),
        );
        // Once for the component, not once per signal it is built for.
        ctx.shared(|| {
            if !self.password.is_empty() {
                crate::net::warn_plaintext_credentials(
                    &format!("exporters.{}", ctx.id),
                    "password",
                    https,
                    [self.endpoint.as_str()],
                );
            }
            Ok(())
        })?;
        let schema = self.schema();
        let sender = ClickHouseSender::<S>::new(
            client,
            schema.clone(),
            self.create_schema,
            self.compress,
            self.async_insert,
            self.insert_deduplication,
        );
        let queue = SendingQueue::new(
            ctx,
            sender,
            &self.sending_queue,
            &self.retry_on_failure,
            self.timeout,
        );
        Ok(Arc::new(Batcher::new(ctx, queue, &self.batch)))
    }
}
