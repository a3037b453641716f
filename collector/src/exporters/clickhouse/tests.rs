use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use super::config::{ClickHouseExporterConfig, TableEngine};
use super::rows::{self, value_string};
use super::schema::{MetricsTables, Schema};
use crate::component::Validate;
use crate::config::parse_component;
use crate::pipeline::SignalKind;

fn parse(yaml: &str) -> Result<ClickHouseExporterConfig, Vec<String>> {
    parse_component::<ClickHouseExporterConfig>(serde_yaml_ng::from_str(yaml).unwrap()).map_err(
        |ps| {
            ps.into_iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect()
        },
    )
}

#[test]
fn defaults_follow_the_collector() {
    let c = parse("endpoint: http://localhost:8123").unwrap();
    assert_eq!(c.database, "default");
    assert_eq!(c.traces_table_name, "otel_traces");
    assert_eq!(c.logs_table_name, "otel_logs");
    assert_eq!(c.schema().metrics_tables, MetricsTables::default());
    assert_eq!(
        c.metrics_tables.exponential_histogram.name,
        "otel_metrics_exponential_histogram"
    );
    let named = parse(
        "endpoint: http://ch:8123\nlogs_table_name: logs\nmetrics_tables: { sum: { name: sums } }",
    )
    .unwrap()
    .schema();
    assert_eq!(
        (named.logs_table.as_str(), named.metrics_tables.sum.as_str()),
        ("logs", "sums")
    );
    assert_eq!(named.metrics_tables.gauge, "otel_metrics_gauge");
    assert!(c.create_schema);
    assert!(c.insert_deduplication);
    assert_eq!(c.timeout.get(), Duration::from_secs(5));
    assert_eq!(c.table_engine, TableEngine::default());
}

#[test]
fn validation_names_every_bad_option() {
    let errors = parse(
        "endpoint: tcp://ch:9000\ndatabase: 'otel-prod'\ntraces_table_name: '1x'\n\
         logs_table_name: 'my logs'\nmetrics_tables: { histogram: { name: 'h-1' } }\n\
         table_engine: { name: Log }\nttl: 1500ms\nbatch: { max_rows: 0 }",
    )
    .unwrap_err();
    let joined = errors.join("\n");
    for needle in [
        "endpoint: unsupported scheme \"tcp\"",
        "database: \"otel-prod\" is not a plain ClickHouse identifier",
        "traces_table_name: \"1x\"",
        "logs_table_name: \"my logs\" is not a plain ClickHouse identifier",
        "metrics_tables.histogram.name: \"h-1\" is not a plain ClickHouse identifier",
        "table_engine.name: expected a MergeTree-family engine",
        "ttl: must be whole seconds, got 1500ms",
        "batch.max_rows: must be at least 1, got 0",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
    }
    assert!(parse("database: x").unwrap_err()[0].starts_with("endpoint: missing"));
}

fn schema() -> Schema {
    Schema {
        database: "otel".into(),
        table: "otel_traces".into(),
        logs_table: "otel_logs".into(),
        metrics_tables: MetricsTables::default(),
        cluster: None,
        engine: TableEngine::default(),
        ttl: Duration::from_secs(3 * 86_400),
        span_metrics: false,
        trace_analysis: false,
        deduplication: true,
    }
}

#[test]
fn ddl_has_the_collectors_layout() {
    let ddl = schema().ddl(SignalKind::Traces);
    assert_eq!(ddl.len(), 4, "database, spans, lookup table, view");
    assert_eq!(ddl[0], "CREATE DATABASE IF NOT EXISTS `otel`");
    let t = &ddl[1];
    for needle in [
        "CREATE TABLE IF NOT EXISTS `otel`.`otel_traces` (",
        "Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1))",
        "Duration UInt64 CODEC(T64, ZSTD(1))",
        "ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1))",
        "INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1",
        ") ENGINE = MergeTree()\nPARTITION BY toDate(Timestamp)",
        "PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))",
        "ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)",
        "TTL toDateTime(Timestamp) + toIntervalDay(3)",
        "ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
    assert!(ddl[2].contains("ENGINE = AggregatingMergeTree()"));
    assert!(ddl[2].contains("PARTITION BY toStartOfWeek(Start)\nORDER BY (TraceId)"));
    assert!(ddl[3].contains("TO `otel`.`otel_traces_trace_id_ts`"));
    assert!(ddl[3].contains("FROM `otel`.`otel_traces`\nWHERE TraceId != ''"));
}

#[test]
fn trace_analysis_tables_come_with_the_metrics_tables() {
    let mut s = schema();
    assert!(
        !s.ddl(SignalKind::Metrics)
            .iter()
            .any(|d| d.contains("trace_analysis"))
    );
    s.trace_analysis = true;
    let ddl = s.ddl(SignalKind::Metrics);
    assert!(
        !s.ddl(SignalKind::Traces)
            .iter()
            .any(|d| d.contains("trace_analysis"))
    );
    let sum = ddl
        .iter()
        .position(|d| d.contains("`otel`.`otel_metrics_sum` ("))
        .unwrap();
    let findings = ddl
        .iter()
        .position(|d| {
            d.starts_with("CREATE TABLE IF NOT EXISTS `otel`.`trace_analysis_findings` (")
        })
        .unwrap();
    assert!(sum < findings, "the views' source exists first");
    let t = &ddl[findings];
    for needle in [
        "Pattern LowCardinality(String)",
        "Findings SimpleAggregateFunction(max, Float64)",
        "WorstTraceId SimpleAggregateFunction(anyLast, String)",
        "ENGINE = AggregatingMergeTree()",
        "ORDER BY (ServiceName, Pattern, SpanName, StartTimeUnix, TimeUnix)",
        "TTL TimeUnix + toIntervalDay(3)",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
    let view = &ddl[findings + 1];
    for needle in [
        "CREATE MATERIALIZED VIEW IF NOT EXISTS `otel`.`trace_analysis_findings_mv`",
        "TO `otel`.`trace_analysis_findings`",
        "Attributes['pattern'] AS Pattern",
        "maxIf(Value, MetricName = 'trace_analysis.findings') AS Findings",
        "FROM `otel`.`otel_metrics_sum`\nWHERE MetricName IN ('trace_analysis.findings') AND AggregationTemporality = 2",
    ] {
        assert!(view.contains(needle), "missing {needle:?} in\n{view}");
    }
    let deps = ddl
        .iter()
        .find(|d| d.contains("trace_analysis_dependencies_mv"))
        .unwrap();
    assert!(deps.contains(
        "maxIf(Value, MetricName = 'trace_analysis.dependency.failed_entries') AS FailedEntries"
    ));
    assert!(
        deps.contains(
            "GROUP BY Attributes['client'], Attributes['server'], StartTimeUnix, TimeUnix"
        )
    );
    assert!(
        ddl.iter()
            .any(|d| d.contains("`trace_analysis_critical_path_mv`"))
    );

    // On a cluster: local tables under Distributed ones, views over the local sum table.
    s.cluster = Some("c1".into());
    s.engine = TableEngine {
        name: "ReplicatedMergeTree".into(),
        params: String::new(),
    };
    let ddl = s.ddl(SignalKind::Metrics);
    assert!(ddl.iter().any(|d| d.starts_with(
        "CREATE TABLE IF NOT EXISTS `otel`.`trace_analysis_dependencies_local` ON CLUSTER `c1` ("
    ) && d.contains("ENGINE = ReplicatedAggregatingMergeTree()")));
    assert!(ddl.iter().any(|d| d.contains(
        "ENGINE = Distributed(`c1`, `otel`, `trace_analysis_dependencies_local`, rand())"
    )));
    let view = ddl
        .iter()
        .find(|d| d.contains("trace_analysis_findings_mv"))
        .unwrap();
    assert!(view.contains("TO `otel`.`trace_analysis_findings_local`"));
    assert!(view.contains("FROM `otel`.`otel_metrics_sum_local`"));
    assert!(ddl.iter().all(|d| d.contains("ON CLUSTER `c1`")));
}

#[test]
fn ttl_uses_the_largest_whole_unit() {
    let with = |secs| {
        let mut s = schema();
        s.ttl = Duration::from_secs(secs);
        s.ddl(SignalKind::Traces)[1].clone()
    };
    assert!(with(7200).contains("toIntervalHour(2)"));
    assert!(with(90).contains("toIntervalSecond(90)"));
    assert!(with(120).contains("toIntervalMinute(2)"));
    assert!(!with(0).contains("TTL"));
}

#[test]
fn a_cluster_gets_local_tables_under_distributed_ones() {
    let mut s = schema();
    s.cluster = Some("c1".into());
    s.engine = TableEngine {
        name: "ReplicatedMergeTree".into(),
        params: String::new(),
    };
    s.span_metrics = true;
    let ddl = s.ddl(SignalKind::Traces);
    assert_eq!(
        ddl[0],
        "CREATE DATABASE IF NOT EXISTS `otel` ON CLUSTER `c1`"
    );
    assert!(
        ddl[1]
            .starts_with("CREATE TABLE IF NOT EXISTS `otel`.`otel_traces_local` ON CLUSTER `c1` (")
    );
    assert!(ddl[1].contains("ENGINE = ReplicatedMergeTree()"));
    assert!(!ddl[1].contains("non_replicated_deduplication_window"));
    assert_eq!(
        ddl[2],
        "CREATE TABLE IF NOT EXISTS `otel`.`otel_traces` ON CLUSTER `c1` AS `otel`.`otel_traces_local`\n\
         ENGINE = Distributed(`c1`, `otel`, `otel_traces_local`, cityHash64(TraceId))"
    );
    assert!(ddl[3].contains("ReplicatedAggregatingMergeTree()"));
    let view = ddl
        .iter()
        .find(|d| d.contains("otel_traces_trace_id_ts_mv"))
        .unwrap();
    assert!(view.contains("TO `otel`.`otel_traces_trace_id_ts_local`"));
    assert!(view.contains("FROM `otel`.`otel_traces_local`"));
    assert!(ddl.iter().all(|d| d.contains("ON CLUSTER `c1`")));
    // Inserts go through the Distributed table.
    assert!(
        s.insert_query()
            .starts_with("INSERT INTO `otel`.`otel_traces` (")
    );
}

#[test]
fn insert_names_the_columns_and_the_format() {
    let q = schema().insert_query();
    assert!(q.starts_with("INSERT INTO `otel`.`otel_traces` (Timestamp, TraceId, SpanId,"));
    assert!(q.ends_with("Links.TraceState, Links.Attributes) FORMAT RowBinary"));
}

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

#[test]
fn attribute_values_render_as_the_collector_does() {
    let s = |v: Value| value_string(Some(&AnyValue { value: Some(v) }));
    assert_eq!(s(Value::IntValue(-3)), "-3");
    assert_eq!(s(Value::DoubleValue(1.5)), "1.5");
    assert_eq!(s(Value::DoubleValue(f64::INFINITY)), "+Inf");
    assert_eq!(s(Value::BoolValue(true)), "true");
    assert_eq!(s(Value::BytesValue(vec![1, 2, 3])), "AQID");
    assert_eq!(
        s(Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(Value::StringValue("a".into()))
                },
                AnyValue {
                    value: Some(Value::IntValue(2))
                },
            ]
        })),
        r#"["a",2]"#
    );
}

#[test]
fn row_binary_layout() {
    let spans = vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", Value::StringValue("svc".into()))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.0".into(),
                ..Default::default()
            }),
            spans: vec![Span {
                trace_id: vec![0xab; 16],
                span_id: vec![0x01; 8],
                parent_span_id: vec![],
                name: "GET /".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: 1_000,
                end_time_unix_nano: 1_250,
                status: Some(Status {
                    code: 2,
                    message: "boom".into(),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let mut out = Vec::new();
    assert_eq!(rows::encode(&spans, &mut out), 1);
    let mut expected = Vec::new();
    expected.extend_from_slice(&1_000i64.to_le_bytes());
    expected.push(32);
    expected.extend_from_slice("ab".repeat(16).as_bytes());
    expected.push(16);
    expected.extend_from_slice("01".repeat(8).as_bytes());
    expected.push(0); // no parent
    expected.push(0); // trace state
    expected.extend_from_slice(b"\x05GET /\x10SPAN_KIND_SERVER\x03svc");
    expected.extend_from_slice(b"\x01\x0cservice.name\x03svc"); // resource map
    expected.extend_from_slice(b"\x03lib\x031.0");
    expected.push(0); // span attributes
    expected.extend_from_slice(&250u64.to_le_bytes());
    expected.extend_from_slice(b"\x11STATUS_CODE_ERROR\x04boom");
    expected.extend_from_slice(&[0; 7]); // empty event and link arrays
    assert_eq!(out, expected);
}

#[test]
fn validate_accepts_the_documented_example() {
    let c = parse(
        "endpoint: https://ch.example:8443\ndatabase: otel\nusername: u\npassword: p\nttl: 72h\n\
         cluster_name: c1\ntable_engine: { name: ReplicatedMergeTree }\nspan_metrics_tables: true\ntrace_analysis_tables: true\n\
         async_insert: true\ncompress: zstd\nbatch: { max_rows: 1000, max_bytes: 1MiB, timeout: 1s }",
    )
    .unwrap();
    assert!(c.validate().is_empty());
}

#[test]
fn the_readme_example_is_valid() {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    let section = &readme[readme.find("### ClickHouse\n").unwrap()..];
    let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(block).unwrap();
    let c = parse_component::<ClickHouseExporterConfig>(doc["exporters"]["clickhouse"].clone())
        .unwrap_or_else(|ps| panic!("{:?}", ps.iter().map(|p| &p.message).collect::<Vec<_>>()));
    assert!(c.validate().is_empty());
    assert_eq!(c.logs_table_name, "otel_logs");
    assert_eq!(c.schema().metrics_tables, MetricsTables::default());
}
