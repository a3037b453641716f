//! The tables: the OpenTelemetry Collector ClickHouse exporter's traces schema (columns,
//! codecs, skip indexes, partitioning, ordering, TTL), its trace-id lookup table and view,
//! and optional span-metrics tables. Dashboards and queries written for that exporter (Grafana's
//! ClickHouse data source in OpenTelemetry mode, for one) work on these tables unchanged.

use std::fmt::Write;
use std::time::Duration;

use super::config::TableEngine;

/// The columns the exporter writes, in the order of the `INSERT` and of each RowBinary row.
/// `Events` and `Links` are `Nested`, so ClickHouse stores (and inserts) them as parallel arrays.
pub const INSERT_COLUMNS: [&str; 22] = [
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
];

/// How many insert blocks a plain `MergeTree` remembers for deduplication. Replicated and
/// shared engines deduplicate by default; a plain one only with this table setting.
const DEDUPLICATION_WINDOW: u32 = 1000;

/// Everything the DDL depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Database of every table.
    pub database: String,
    /// The spans table (`otel_traces`); the others are named after it.
    pub table: String,
    /// `ON CLUSTER` target; with it, data lives in `*_local` tables under Distributed ones.
    pub cluster: Option<String>,
    /// Engine of the plain tables.
    pub engine: TableEngine,
    /// Row lifetime; zero = none.
    pub ttl: Duration,
    /// Create the span-metrics tables.
    pub span_metrics: bool,
    /// Give a plain `MergeTree` spans table a deduplication window, so retried inserts are
    /// recognised.
    pub deduplication: bool,
}

impl Schema {
    /// `db`.`name` as written in statements.
    fn qualified(&self, name: &str) -> String {
        format!("`{}`.`{}`", self.database, name)
    }

    /// Where rows of a table physically go: `name_local` on a cluster, `name` otherwise.
    fn storage(&self, name: &str) -> String {
        match self.cluster {
            Some(_) => format!("{name}_local"),
            None => name.to_string(),
        }
    }

    fn on_cluster(&self) -> String {
        match &self.cluster {
            Some(c) => format!(" ON CLUSTER `{c}`"),
            None => String::new(),
        }
    }

    fn engine(&self) -> String {
        format!("{}({})", self.engine.name, self.engine.params)
    }

    /// The aggregating variant of the configured engine, for the lookup and metrics tables
    /// (as the OpenTelemetry Collector does for its lookup table); other engines are kept.
    fn aggregating_engine(&self) -> String {
        let name = match self.engine.name.as_str() {
            "MergeTree" => "AggregatingMergeTree",
            "ReplicatedMergeTree" => "ReplicatedAggregatingMergeTree",
            "SharedMergeTree" => "SharedAggregatingMergeTree",
            other => other,
        };
        format!("{name}({})", self.engine.params)
    }

    /// `TTL <field> + toIntervalX(n)` in the largest whole unit, or nothing.
    fn ttl(&self, field: &str) -> String {
        let secs = self.ttl.as_secs();
        if secs == 0 {
            return String::new();
        }
        let (n, unit) = if secs.is_multiple_of(86_400) {
            (secs / 86_400, "Day")
        } else if secs.is_multiple_of(3600) {
            (secs / 3600, "Hour")
        } else if secs.is_multiple_of(60) {
            (secs / 60, "Minute")
        } else {
            (secs, "Second")
        };
        format!("\nTTL {field} + toInterval{unit}({n})")
    }

    /// The spans table's name for `INSERT`s (the Distributed table on a cluster).
    pub fn insert_query(&self) -> String {
        format!(
            "INSERT INTO {} ({}) FORMAT RowBinary",
            self.qualified(&self.table),
            INSERT_COLUMNS.join(", ")
        )
    }

    /// The lookup table's name.
    pub fn trace_id_ts_table(&self) -> String {
        format!("{}_trace_id_ts", self.table)
    }

    /// The 30-second span-metrics table's name.
    pub fn span_metrics_30s_table(&self) -> String {
        format!("{}_span_metrics_30s", self.table)
    }

    /// The 10-minute span-metrics table's name.
    pub fn span_metrics_10m_table(&self) -> String {
        format!("{}_span_metrics_10m", self.table)
    }

    /// Every statement, in the order they must run. Each is idempotent (`IF NOT EXISTS`).
    pub fn ddl(&self) -> Vec<String> {
        let mut out = vec![format!(
            "CREATE DATABASE IF NOT EXISTS `{}`{}",
            self.database,
            self.on_cluster()
        )];
        out.push(self.traces_table());
        self.push_distributed(&mut out, &self.table);
        out.push(self.trace_id_ts_table_ddl());
        self.push_distributed(&mut out, &self.trace_id_ts_table());
        out.push(self.trace_id_ts_view());
        if self.span_metrics {
            out.push(self.span_metrics_table(&self.span_metrics_30s_table()));
            self.push_distributed(&mut out, &self.span_metrics_30s_table());
            out.push(self.span_metrics_30s_view());
            out.push(self.span_metrics_table(&self.span_metrics_10m_table()));
            self.push_distributed(&mut out, &self.span_metrics_10m_table());
            out.push(self.span_metrics_10m_view());
        }
        out
    }

    /// On a cluster, `name` is a Distributed table over `name_local`, sharded by trace id so
    /// a trace's spans (and its lookup row) live on one shard.
    fn push_distributed(&self, out: &mut Vec<String>, name: &str) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let shard_key =
            if name == self.span_metrics_30s_table() || name == self.span_metrics_10m_table() {
                "rand()"
            } else {
                "cityHash64(TraceId)"
            };
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {}{} AS {}\nENGINE = Distributed(`{cluster}`, `{}`, `{}`, {shard_key})",
            self.qualified(name),
            self.on_cluster(),
            self.qualified(&self.storage(name)),
            self.database,
            self.storage(name),
        ));
    }

    fn traces_table(&self) -> String {
        let mut settings = String::from("index_granularity = 8192, ttl_only_drop_parts = 1");
        if self.deduplication && self.engine.name == "MergeTree" {
            let _ = write!(
                settings,
                ", non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
            );
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {name}{cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
    SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(SpanAttributes, 'Array(Tuple(String, String))')),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {engine}
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp){ttl}
SETTINGS {settings}",
            name = self.qualified(&self.storage(&self.table)),
            cluster = self.on_cluster(),
            engine = self.engine(),
            ttl = self.ttl("toDateTime(Timestamp)"),
        )
    }

    fn trace_id_ts_table_ddl(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {name}{cluster} (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
) ENGINE = {engine}
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId){ttl}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1",
            name = self.qualified(&self.storage(&self.trace_id_ts_table())),
            cluster = self.on_cluster(),
            engine = self.aggregating_engine(),
            ttl = self.ttl("toDateTime(Start)"),
        )
    }

    fn trace_id_ts_view(&self) -> String {
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {view}{cluster}
TO {target}
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM {source}
WHERE TraceId != ''
GROUP BY TraceId",
            view = self.qualified(&format!("{}_mv", self.trace_id_ts_table())),
            cluster = self.on_cluster(),
            target = self.qualified(&self.storage(&self.trace_id_ts_table())),
            source = self.qualified(&self.storage(&self.table)),
        )
    }

    /// Both span-metrics tables have this shape; `Count`, `DurationSum`, `DurationMin` and
    /// `DurationMax` merge as they are named, so queries aggregate them again
    /// (`sum(Count)`, `min(DurationMin)`, ...) over whatever parts are not merged yet.
    fn span_metrics_table(&self, name: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {name}{cluster} (
    TimeBucket DateTime CODEC(Delta, ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    Count SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    DurationSum SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    DurationMin SimpleAggregateFunction(min, UInt64) CODEC(ZSTD(1)),
    DurationMax SimpleAggregateFunction(max, UInt64) CODEC(ZSTD(1))
) ENGINE = {engine}
PARTITION BY toDate(TimeBucket)
ORDER BY (ServiceName, SpanName, SpanKind, StatusCode, TimeBucket){ttl}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1",
            name = self.qualified(&self.storage(name)),
            cluster = self.on_cluster(),
            engine = self.aggregating_engine(),
            ttl = self.ttl("TimeBucket"),
        )
    }

    fn span_metrics_30s_view(&self) -> String {
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {view}{cluster}
TO {target}
AS SELECT
    toStartOfInterval(toDateTime(Timestamp), INTERVAL 30 SECOND) AS TimeBucket,
    ServiceName,
    SpanName,
    SpanKind,
    StatusCode,
    count() AS Count,
    sum(Duration) AS DurationSum,
    min(Duration) AS DurationMin,
    max(Duration) AS DurationMax
FROM {source}
GROUP BY TimeBucket, ServiceName, SpanName, SpanKind, StatusCode",
            view = self.qualified(&format!("{}_mv", self.span_metrics_30s_table())),
            cluster = self.on_cluster(),
            target = self.qualified(&self.storage(&self.span_metrics_30s_table())),
            source = self.qualified(&self.storage(&self.table)),
        )
    }

    /// Rolls the 30 s rows up as they arrive. The source is aliased so the new `TimeBucket`
    /// does not shadow the column it is computed from.
    fn span_metrics_10m_view(&self) -> String {
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {view}{cluster}
TO {target}
AS SELECT
    toStartOfTenMinutes(s.TimeBucket) AS TimeBucket,
    s.ServiceName AS ServiceName,
    s.SpanName AS SpanName,
    s.SpanKind AS SpanKind,
    s.StatusCode AS StatusCode,
    sum(s.Count) AS Count,
    sum(s.DurationSum) AS DurationSum,
    min(s.DurationMin) AS DurationMin,
    max(s.DurationMax) AS DurationMax
FROM {source} AS s
GROUP BY toStartOfTenMinutes(s.TimeBucket), s.ServiceName, s.SpanName, s.SpanKind, s.StatusCode",
            view = self.qualified(&format!("{}_mv", self.span_metrics_10m_table())),
            cluster = self.on_cluster(),
            target = self.qualified(&self.storage(&self.span_metrics_10m_table())),
            source = self.qualified(&self.storage(&self.span_metrics_30s_table())),
        )
    }
}
