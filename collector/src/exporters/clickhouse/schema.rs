//! The tables: the OpenTelemetry Collector ClickHouse exporter's traces schema (columns,
//! codecs, skip indexes, partitioning, ordering, TTL), its trace-id lookup table and view,
//! and optional span-metrics tables; its logs table; its five metrics tables (gauge, sum,
//! histogram, exponential histogram, summary). Dashboards and queries written for that exporter
//! (Grafana's ClickHouse data source in OpenTelemetry mode, for one) work on these tables
//! unchanged.
//!
//! As in the Collector, each signal creates its own tables: a `clickhouse` exporter in a logs
//! pipeline creates the logs table, in a metrics pipeline the metrics tables (and, with
//! `trace_analysis_tables`, the trace-analysis tables its materialized views fill from the
//! sum table).

use std::fmt::Write;
use std::time::Duration;

use super::config::TableEngine;
use crate::pipeline::SignalKind;

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

/// The logs table's columns, in the order of the `INSERT` and of each RowBinary row
/// (`TimestampTime` is computed by the server from `Timestamp`).
pub const LOGS_COLUMNS: [&str; 15] = [
    "Timestamp",
    "TraceId",
    "SpanId",
    "TraceFlags",
    "SeverityText",
    "SeverityNumber",
    "ServiceName",
    "Body",
    "ResourceSchemaUrl",
    "ResourceAttributes",
    "ScopeSchemaUrl",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "LogAttributes",
];

/// The columns every metrics table starts with.
const METRIC_COLUMNS: [&str; 14] = [
    "ResourceAttributes",
    "ResourceSchemaUrl",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "ScopeDroppedAttrCount",
    "ScopeSchemaUrl",
    "ServiceName",
    "MetricName",
    "MetricDescription",
    "MetricUnit",
    "Attributes",
    "StartTimeUnix",
    "TimeUnix",
];

/// A data point's exemplars, stored as the parallel arrays of a `Nested` column.
const EXEMPLAR_COLUMNS: [&str; 5] = [
    "Exemplars.FilteredAttributes",
    "Exemplars.TimeUnix",
    "Exemplars.Value",
    "Exemplars.SpanId",
    "Exemplars.TraceId",
];

/// The table a row goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `otel_traces`: a span.
    Traces,
    /// `otel_logs`: a log record.
    Logs,
    /// `otel_metrics_gauge`: a gauge's data point.
    Gauge,
    /// `otel_metrics_sum`: a sum's data point.
    Sum,
    /// `otel_metrics_histogram`: a histogram's data point.
    Histogram,
    /// `otel_metrics_exponential_histogram`: an exponential histogram's data point.
    ExponentialHistogram,
    /// `otel_metrics_summary`: a summary's data point.
    Summary,
}

impl Table {
    /// The metrics tables, in the order their rows are inserted.
    pub const METRICS: [Table; 5] = [
        Table::Gauge,
        Table::Sum,
        Table::Histogram,
        Table::ExponentialHistogram,
        Table::Summary,
    ];

    /// The columns written, in the order of the `INSERT` and of each RowBinary row (the
    /// order of the table's columns).
    pub fn columns(self) -> Vec<&'static str> {
        let after: &[&str] = match self {
            Table::Traces => return INSERT_COLUMNS.to_vec(),
            Table::Logs => return LOGS_COLUMNS.to_vec(),
            Table::Gauge => &["Value", "Flags", "#exemplars"],
            Table::Sum => &[
                "Value",
                "Flags",
                "#exemplars",
                "AggregationTemporality",
                "IsMonotonic",
            ],
            Table::Histogram => &[
                "Count",
                "Sum",
                "BucketCounts",
                "ExplicitBounds",
                "#exemplars",
                "Flags",
                "Min",
                "Max",
                "AggregationTemporality",
            ],
            Table::ExponentialHistogram => &[
                "Count",
                "Sum",
                "Scale",
                "ZeroCount",
                "PositiveOffset",
                "PositiveBucketCounts",
                "NegativeOffset",
                "NegativeBucketCounts",
                "#exemplars",
                "Flags",
                "Min",
                "Max",
                "AggregationTemporality",
            ],
            Table::Summary => &[
                "Count",
                "Sum",
                "ValueAtQuantiles.Quantile",
                "ValueAtQuantiles.Value",
                "Flags",
            ],
        };
        let mut out = METRIC_COLUMNS.to_vec();
        for c in after {
            if *c == "#exemplars" {
                out.extend(EXEMPLAR_COLUMNS);
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// `metrics_tables`: the metrics tables' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsTables {
    /// Gauges' data points.
    pub gauge: String,
    /// Sums' data points.
    pub sum: String,
    /// Histograms' data points.
    pub histogram: String,
    /// Exponential histograms' data points.
    pub exponential_histogram: String,
    /// Summaries' data points.
    pub summary: String,
}

impl Default for MetricsTables {
    fn default() -> Self {
        Self {
            gauge: "otel_metrics_gauge".into(),
            sum: "otel_metrics_sum".into(),
            histogram: "otel_metrics_histogram".into(),
            exponential_histogram: "otel_metrics_exponential_histogram".into(),
            summary: "otel_metrics_summary".into(),
        }
    }
}

/// A table filled from the `trace_analysis` connector's metrics in the sum table.
pub struct AnalysisTable {
    /// The table's name (its view is `<name>_mv`).
    pub name: &'static str,
    /// Key columns and the expression over a sum-table row giving each.
    pub dimensions: &'static [(&'static str, &'static str)],
    /// Value columns and the metric whose points they read.
    pub readings: &'static [(&'static str, &'static str)],
    /// Has a `WorstTraceId` column (from `trace_analysis.worst_trace_id`).
    pub worst_trace: bool,
}

/// The trace-analysis tables (`trace_analysis_tables: true`), in the order they are created.
/// Their values are the connector's cumulative sums as read at `TimeUnix`: counts since the
/// connector started (`StartTimeUnix`, one run), so what happened in a window is the rise of
/// each run's reading over it, as for any counter.
pub const TRACE_ANALYSIS_TABLES: [AnalysisTable; 3] = [
    AnalysisTable {
        name: "trace_analysis_findings",
        dimensions: &[
            ("ServiceName", "ServiceName"),
            ("Pattern", "Attributes['pattern']"),
            ("SpanName", "Attributes['span.name']"),
        ],
        readings: &[("Findings", "trace_analysis.findings")],
        worst_trace: true,
    },
    AnalysisTable {
        name: "trace_analysis_dependencies",
        dimensions: &[
            ("Client", "Attributes['client']"),
            ("Server", "Attributes['server']"),
        ],
        readings: &[
            ("Calls", "trace_analysis.dependency.calls"),
            ("FailedCalls", "trace_analysis.dependency.failed_calls"),
            ("FailedEntries", "trace_analysis.dependency.failed_entries"),
        ],
        worst_trace: false,
    },
    AnalysisTable {
        name: "trace_analysis_critical_path",
        dimensions: &[
            ("ServiceName", "ServiceName"),
            ("SpanName", "Attributes['span.name']"),
        ],
        readings: &[("SelfTimeSeconds", "trace_analysis.critical_path.self_time")],
        worst_trace: false,
    },
];

/// How many insert blocks a plain `MergeTree` remembers for deduplication. Replicated and
/// shared engines deduplicate by default; a plain one only with this table setting.
const DEDUPLICATION_WINDOW: u32 = 1000;

/// Everything the DDL depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Database of every table.
    pub database: String,
    /// The spans table (`otel_traces`); the other traces tables are named after it.
    pub table: String,
    /// The logs table (`otel_logs`).
    pub logs_table: String,
    /// The metrics tables.
    pub metrics_tables: MetricsTables,
    /// `ON CLUSTER` target; with it, data lives in `*_local` tables under Distributed ones.
    pub cluster: Option<String>,
    /// Engine of the plain tables.
    pub engine: TableEngine,
    /// Row lifetime; zero = none.
    pub ttl: Duration,
    /// Create the span-metrics tables.
    pub span_metrics: bool,
    /// Create the trace-analysis tables (findings, dependencies, critical path) and the views
    /// filling them from the sum table.
    pub trace_analysis: bool,
    /// Give a plain `MergeTree` table a deduplication window, so retried inserts are
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

    /// The spans' `INSERT` (into the Distributed table on a cluster).
    pub fn insert_query(&self) -> String {
        self.insert_query_for(Table::Traces)
    }

    /// The name of `table`.
    pub fn table_name(&self, table: Table) -> &str {
        let m = &self.metrics_tables;
        match table {
            Table::Traces => &self.table,
            Table::Logs => &self.logs_table,
            Table::Gauge => &m.gauge,
            Table::Sum => &m.sum,
            Table::Histogram => &m.histogram,
            Table::ExponentialHistogram => &m.exponential_histogram,
            Table::Summary => &m.summary,
        }
    }

    /// The `INSERT` of `table`'s rows (into the Distributed table on a cluster).
    pub fn insert_query_for(&self, table: Table) -> String {
        format!(
            "INSERT INTO {} ({}) FORMAT RowBinary",
            self.qualified(self.table_name(table)),
            table.columns().join(", ")
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

    /// Every statement `signal`'s tables need, in the order they must run: the database,
    /// then the tables. Each is idempotent (`IF NOT EXISTS`).
    pub fn ddl(&self, signal: SignalKind) -> Vec<String> {
        let mut out = vec![format!(
            "CREATE DATABASE IF NOT EXISTS `{}`{}",
            self.database,
            self.on_cluster()
        )];
        match signal {
            SignalKind::Traces => self.traces_ddl(&mut out),
            SignalKind::Logs => {
                out.push(self.logs_table());
                self.push_distributed(&mut out, &self.logs_table);
            }
            SignalKind::Metrics => {
                for table in Table::METRICS {
                    out.push(self.metrics_table(table));
                    self.push_distributed(&mut out, self.table_name(table));
                }
                if self.trace_analysis {
                    for t in &TRACE_ANALYSIS_TABLES {
                        out.push(self.trace_analysis_table(t));
                        self.push_distributed(&mut out, t.name);
                        out.push(self.trace_analysis_view(t));
                    }
                }
            }
        }
        out
    }

    /// A trace-analysis table: `t`'s dimensions, the run (`StartTimeUnix`) and the time of the
    /// reading, then the readings. Rows of one key are readings of one data point (the same
    /// point written twice, or its metrics arriving in different inserts), so they merge by
    /// `max`; queries take `max` per run and key as well.
    fn trace_analysis_table(&self, t: &AnalysisTable) -> String {
        let mut columns = String::new();
        for (name, _) in t.dimensions {
            let _ = writeln!(columns, "    {name} LowCardinality(String) CODEC(ZSTD(1)),");
        }
        columns.push_str(
            "    StartTimeUnix DateTime CODEC(Delta, ZSTD(1)),\n    TimeUnix DateTime CODEC(Delta, ZSTD(1)),\n",
        );
        for (name, _) in t.readings {
            let _ = writeln!(
                columns,
                "    {name} SimpleAggregateFunction(max, Float64) CODEC(ZSTD(1)),"
            );
        }
        if t.worst_trace {
            columns.push_str(
                "    WorstTraceId SimpleAggregateFunction(anyLast, String) CODEC(ZSTD(1)),\n",
            );
        }
        let columns = columns.trim_end_matches(",\n");
        let key: Vec<&str> = t.dimensions.iter().map(|(name, _)| *name).collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {name}{cluster} (
{columns}
) ENGINE = {engine}
PARTITION BY toDate(TimeUnix)
ORDER BY ({key}, StartTimeUnix, TimeUnix){ttl}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1",
            name = self.qualified(&self.storage(t.name)),
            cluster = self.on_cluster(),
            engine = self.aggregating_engine(),
            key = key.join(", "),
            ttl = self.ttl("TimeUnix"),
        )
    }

    /// Fills a trace-analysis table from the sum table's cumulative points of its metrics,
    /// as each insert arrives. On a cluster the view reads each node's local sum table.
    fn trace_analysis_view(&self, t: &AnalysisTable) -> String {
        let mut select = String::new();
        for (name, source) in t.dimensions {
            if name == source {
                let _ = writeln!(select, "    {name},");
            } else {
                let _ = writeln!(select, "    {source} AS {name},");
            }
        }
        select.push_str("    StartTimeUnix,\n    TimeUnix,\n");
        for (name, metric) in t.readings {
            let _ = writeln!(
                select,
                "    maxIf(Value, MetricName = '{metric}') AS {name},"
            );
        }
        if t.worst_trace {
            select.push_str(
                "    any(Attributes['trace_analysis.worst_trace_id']) AS WorstTraceId,\n",
            );
        }
        let select = select.trim_end_matches(",\n");
        let metrics: Vec<String> = t.readings.iter().map(|(_, m)| format!("'{m}'")).collect();
        let group: Vec<&str> = t.dimensions.iter().map(|(_, source)| *source).collect();
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {view}{cluster}
TO {target}
AS SELECT
{select}
FROM {source}
WHERE MetricName IN ({metrics}) AND AggregationTemporality = 2
GROUP BY {group}, StartTimeUnix, TimeUnix",
            view = self.qualified(&format!("{}_mv", t.name)),
            cluster = self.on_cluster(),
            target = self.qualified(&self.storage(t.name)),
            source = self.qualified(&self.storage(&self.metrics_tables.sum)),
            metrics = metrics.join(", "),
            group = group.join(", "),
        )
    }

    fn traces_ddl(&self, out: &mut Vec<String>) {
        out.push(self.traces_table());
        self.push_distributed(out, &self.table);
        out.push(self.trace_id_ts_table_ddl());
        self.push_distributed(out, &self.trace_id_ts_table());
        out.push(self.trace_id_ts_view());
        if self.span_metrics {
            out.push(self.span_metrics_table(&self.span_metrics_30s_table()));
            self.push_distributed(out, &self.span_metrics_30s_table());
            out.push(self.span_metrics_30s_view());
            out.push(self.span_metrics_table(&self.span_metrics_10m_table()));
            self.push_distributed(out, &self.span_metrics_10m_table());
            out.push(self.span_metrics_10m_view());
        }
    }

    /// On a cluster, `name` is a Distributed table over `name_local`, sharded by trace id so
    /// a trace's spans (and its lookup row) live on one shard.
    fn push_distributed(&self, out: &mut Vec<String>, name: &str) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        // Logs and metrics rows have no trace to keep together (a log record's trace id is
        // often empty).
        let by_trace = name == self.table || name == self.trace_id_ts_table();
        let shard_key = if by_trace {
            "cityHash64(TraceId)"
        } else {
            "rand()"
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

    /// The settings of a table rows are inserted into.
    fn settings(&self) -> String {
        let mut settings = String::from("index_granularity = 8192, ttl_only_drop_parts = 1");
        if self.deduplication && self.engine.name == "MergeTree" {
            let _ = write!(
                settings,
                ", non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
            );
        }
        settings
    }

    fn traces_table(&self) -> String {
        let settings = self.settings();
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

    /// The Collector's `logs_table.sql`.
    fn logs_table(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {name}{cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8,
    INDEX idx_body_ngrambf Body TYPE ngrambf_v1(4, 32768, 3, 0) GRANULARITY 1
) ENGINE = {engine}
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp){ttl}
SETTINGS {settings}",
            name = self.qualified(&self.storage(&self.logs_table)),
            cluster = self.on_cluster(),
            engine = self.engine(),
            ttl = self.ttl("TimestampTime"),
            settings = self.settings(),
        )
    }

    /// The Collector's `metrics_*_table.sql`: the columns every metrics table has, the
    /// table's own, and the same indexes, partitioning and ordering for all five.
    fn metrics_table(&self, table: Table) -> String {
        const EXEMPLARS: &str = "    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime,
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),
";
        let own = match table {
            Table::Gauge => format!(
                "    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
{EXEMPLARS}"
            ),
            Table::Sum => format!(
                "    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
{EXEMPLARS}    AggregationTemporality Int32 CODEC(ZSTD(1)),
    IsMonotonic Boolean CODEC(Delta, ZSTD(1)),
"
            ),
            Table::Histogram => format!(
                "    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),
{EXEMPLARS}    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),
"
            ),
            Table::ExponentialHistogram => format!(
                "    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    Scale Int32 CODEC(ZSTD(1)),
    ZeroCount UInt64 CODEC(ZSTD(1)),
    PositiveOffset Int32 CODEC(ZSTD(1)),
    PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    NegativeOffset Int32 CODEC(ZSTD(1)),
    NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),
{EXEMPLARS}    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),
"
            ),
            Table::Summary => "    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    ValueAtQuantiles Nested (
        Quantile Float64,
        Value Float64
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
"
            .to_string(),
            Table::Traces | Table::Logs => unreachable!("not a metrics table"),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {name}{cluster} (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName LowCardinality(String) CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime CODEC(Delta, ZSTD(1)),
{own}    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_time_minmax TimeUnix TYPE minmax GRANULARITY 1
) ENGINE = {engine}
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix){ttl}
SETTINGS {settings}",
            name = self.qualified(&self.storage(self.table_name(table))),
            cluster = self.on_cluster(),
            engine = self.engine(),
            ttl = self.ttl("toDateTime(TimeUnix)"),
            settings = self.settings(),
        )
    }
}
