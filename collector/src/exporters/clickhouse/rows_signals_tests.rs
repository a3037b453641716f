//! Log records' and data points' rows read back column by column, with the types the
//! tables' DDL declares (parsed from [`Schema::ddl`]): every column is where the `INSERT`
//! names it, has the declared type, and holds the value the OpenTelemetry Collector's exporter
//! writes.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{Value as J, json};

use super::config::{Compress, TableEngine};
use super::rows_metrics::MetricRows;
use super::schema::{MetricsTables, Schema, Table};
use super::sender::ChSignal;
use super::{rows_logs, rows_metrics};
use crate::pipeline::{Batch, Logs, Metrics, SignalKind};

fn schema() -> Schema {
    Schema {
        database: "otel".into(),
        table: "otel_traces".into(),
        logs_table: "otel_logs".into(),
        metrics_tables: MetricsTables::default(),
        cluster: None,
        engine: TableEngine::default(),
        ttl: Duration::from_secs(86_400),
        span_metrics: false,
        trace_analysis: false,
        deduplication: true,
    }
}

/// Column name to type, from a `CREATE TABLE`: `Nested` columns become their `Name.Sub`
/// arrays, as ClickHouse stores them.
fn column_types(ddl: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut nested: Option<String> = None;
    for line in ddl.lines().skip(1) {
        let line = line.trim_end().trim_end_matches(',');
        let trimmed = line.trim();
        if trimmed.starts_with("INDEX") || trimmed.starts_with(')') {
            nested = None;
            continue;
        }
        let Some((name, rest)) = trimmed.split_once(' ') else {
            continue;
        };
        let ty = rest
            .split(" CODEC(")
            .next()
            .unwrap()
            .split(" DEFAULT ")
            .next()
            .unwrap()
            .trim();
        if line.starts_with("        ") {
            let parent = nested.as_ref().expect("a Nested column's field");
            out.insert(format!("{parent}.{name}"), format!("Array({ty})"));
        } else if ty.starts_with("Nested") {
            nested = Some(name.to_string());
        } else if line.starts_with("    ") {
            out.insert(name.to_string(), ty.to_string());
        }
    }
    out
}

/// Reads RowBinary values of ClickHouse types.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "row ends early");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }

    fn len(&mut self) -> usize {
        let (mut n, mut shift) = (0usize, 0);
        loop {
            let b = self.take(1)[0];
            n |= usize::from(b & 0x7f) << shift;
            if b < 0x80 {
                return n;
            }
            shift += 7;
        }
    }

    fn value(&mut self, ty: &str) -> J {
        if let Some(inner) = ty
            .strip_prefix("LowCardinality(")
            .and_then(|t| t.strip_suffix(')'))
        {
            return self.value(inner);
        }
        if let Some(inner) = ty.strip_prefix("Array(").and_then(|t| t.strip_suffix(')')) {
            let n = self.len();
            return J::Array((0..n).map(|_| self.value(inner)).collect());
        }
        if ty == "Map(LowCardinality(String), String)" {
            let n = self.len();
            let mut m = serde_json::Map::new();
            for _ in 0..n {
                let k = self.value("String");
                let v = self.value("String");
                m.insert(k.as_str().unwrap().to_string(), v);
            }
            return J::Object(m);
        }
        let b = |r: &mut Self, n| r.take(n).to_vec();
        match ty {
            "String" => {
                let n = self.len();
                J::String(String::from_utf8(self.take(n).to_vec()).unwrap())
            }
            "UInt8" => json!(self.take(1)[0]),
            "Boolean" | "Bool" => json!(self.take(1)[0] != 0),
            "UInt32" | "DateTime" => json!(u32::from_le_bytes(b(self, 4).try_into().unwrap())),
            "Int32" => json!(i32::from_le_bytes(b(self, 4).try_into().unwrap())),
            "UInt64" => json!(u64::from_le_bytes(b(self, 8).try_into().unwrap())),
            "DateTime64(9)" => json!(i64::from_le_bytes(b(self, 8).try_into().unwrap())),
            "Float64" => json!(f64::from_le_bytes(b(self, 8).try_into().unwrap())),
            other => panic!("no reader for {other}"),
        }
    }
}

/// The rows of `table`, each a column name to value map, read with the DDL's types in the
/// `INSERT`'s column order.
fn read_rows(
    table: Table,
    kind: SignalKind,
    rows: &[u8],
    count: usize,
) -> Vec<BTreeMap<String, J>> {
    let s = schema();
    let name = format!("`otel`.`{}` (", s.table_name(table));
    let ddl = s
        .ddl(kind)
        .into_iter()
        .find(|d| d.contains(&name))
        .expect("the table's DDL");
    let types = column_types(&ddl);
    let insert = s.insert_query_for(table);
    let columns = insert
        .split_once(" (")
        .unwrap()
        .1
        .split_once(") FORMAT")
        .unwrap()
        .0
        .split(", ")
        .collect::<Vec<_>>();
    assert_eq!(columns, table.columns());
    // Every stored column is written, apart from those the server computes.
    let written: Vec<&str> = types
        .keys()
        .map(String::as_str)
        .filter(|c| *c != "TimestampTime")
        .collect();
    let mut sorted = columns.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, written, "columns of {}", s.table_name(table));
    let mut r = Reader(rows);
    let out: Vec<_> = (0..count)
        .map(|_| {
            columns
                .iter()
                .map(|c| (c.to_string(), r.value(&types[*c])))
                .collect()
        })
        .collect();
    assert!(r.0.is_empty(), "{} bytes after the last row", r.0.len());
    out
}

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", s("checkout")),
            kv("host.cores", Value::IntValue(8)),
        ],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "lib".into(),
        version: "1.2".into(),
        attributes: vec![kv("scope.k", s("v"))],
        dropped_attributes_count: 3,
    })
}

fn check(row: &BTreeMap<String, J>, expected: J) {
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&row[k], v, "column {k}");
    }
}

#[test]
fn log_rows_hold_the_collectors_values() {
    let logs = vec![ResourceLogs {
        resource: resource(),
        schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        scope_logs: vec![ScopeLogs {
            scope: scope(),
            schema_url: "scope-url".into(),
            log_records: vec![
                LogRecord {
                    time_unix_nano: 1_700_000_000_123_456_789,
                    observed_time_unix_nano: 1_700_000_001_000_000_000,
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    body: Some(AnyValue {
                        value: Some(s("payment failed")),
                    }),
                    attributes: vec![
                        kv("order.id", Value::IntValue(7)),
                        kv(
                            "tags",
                            Value::ArrayValue(ArrayValue {
                                values: vec![AnyValue {
                                    value: Some(s("a")),
                                }],
                            }),
                        ),
                    ],
                    flags: 0x101,
                    trace_id: vec![0xab; 16],
                    span_id: vec![0x01; 8],
                    ..Default::default()
                },
                // No time: the observed time stands in; no ids; a map body as JSON.
                LogRecord {
                    observed_time_unix_nano: 42,
                    body: Some(AnyValue {
                        value: Some(Value::IntValue(5)),
                    }),
                    trace_id: vec![0; 16],
                    ..Default::default()
                },
            ],
        }],
    }];
    let mut out = Vec::new();
    assert_eq!(rows_logs::encode(&logs, &mut out), 2);
    let rows = read_rows(Table::Logs, SignalKind::Logs, &out, 2);
    check(
        &rows[0],
        json!({
            "Timestamp": 1_700_000_000_123_456_789i64,
            "TraceId": "ab".repeat(16),
            "SpanId": "01".repeat(8),
            "TraceFlags": 1,
            "SeverityText": "ERROR",
            "SeverityNumber": 17,
            "ServiceName": "checkout",
            "Body": "payment failed",
            "ResourceSchemaUrl": "https://opentelemetry.io/schemas/1.26.0",
            "ResourceAttributes": {"service.name": "checkout", "host.cores": "8"},
            "ScopeSchemaUrl": "scope-url",
            "ScopeName": "lib",
            "ScopeVersion": "1.2",
            "ScopeAttributes": {"scope.k": "v"},
            "LogAttributes": {"order.id": "7", "tags": "[\"a\"]"},
        }),
    );
    check(
        &rows[1],
        json!({
            "Timestamp": 42,
            "TraceId": "",
            "SpanId": "",
            "TraceFlags": 0,
            "SeverityText": "",
            "SeverityNumber": 0,
            "Body": "5",
            "LogAttributes": {},
        }),
    );
}

fn number(v: number_data_point::Value, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: 1_700_000_000_900_000_000,
        time_unix_nano: 1_700_000_060_100_000_000,
        value: Some(v),
        flags: 1,
        exemplars: vec![Exemplar {
            filtered_attributes: vec![kv("user", s("u1"))],
            time_unix_nano: 1_700_000_030_000_000_000,
            span_id: vec![0x02; 8],
            trace_id: vec![0x03; 16],
            value: Some(exemplar::Value::AsInt(9)),
        }],
    }
}

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: format!("{name} described"),
        unit: "ms".into(),
        data: Some(data),
        ..Default::default()
    }
}

fn metrics() -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: resource(),
        schema_url: "res-url".into(),
        scope_metrics: vec![ScopeMetrics {
            scope: scope(),
            schema_url: "scope-url".into(),
            metrics: vec![
                metric(
                    "temperature",
                    Data::Gauge(Gauge {
                        data_points: vec![number(
                            number_data_point::Value::AsDouble(21.5),
                            vec![kv("room", s("lab"))],
                        )],
                    }),
                ),
                metric(
                    "orders",
                    Data::Sum(Sum {
                        data_points: vec![
                            number(
                                number_data_point::Value::AsInt(3),
                                vec![kv("route", s("/a"))],
                            ),
                            number(
                                number_data_point::Value::AsInt(-4),
                                vec![kv("route", s("/b"))],
                            ),
                        ],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    }),
                ),
                metric(
                    "latency",
                    Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            start_time_unix_nano: 1_000_000_000,
                            time_unix_nano: 2_000_000_000,
                            count: 6,
                            sum: Some(12.5),
                            bucket_counts: vec![1, 2, 3],
                            explicit_bounds: vec![1.0, 5.0],
                            min: Some(0.5),
                            max: None,
                            ..Default::default()
                        }],
                        aggregation_temporality: 1,
                    }),
                ),
                metric(
                    "sizes",
                    Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![ExponentialHistogramDataPoint {
                            time_unix_nano: 3_000_000_000,
                            count: 9,
                            sum: Some(40.0),
                            scale: -2,
                            zero_count: 1,
                            positive: Some(Buckets {
                                offset: -3,
                                bucket_counts: vec![4, 4],
                            }),
                            negative: None,
                            min: Some(-1.0),
                            max: Some(30.0),
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                    }),
                ),
                metric(
                    "rtt",
                    Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            time_unix_nano: 4_000_000_000,
                            count: 10,
                            sum: 55.0,
                            quantile_values: vec![
                                ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 5.0,
                                },
                                ValueAtQuantile {
                                    quantile: 0.99,
                                    value: 9.9,
                                },
                            ],
                            ..Default::default()
                        }],
                    }),
                ),
                // No data: no row anywhere.
                Metric {
                    name: "empty".into(),
                    ..Default::default()
                },
            ],
        }],
    }]
}

/// The columns every metrics row shares, for the test's resource and scope.
fn common(name: &str) -> J {
    json!({
        "ResourceAttributes": {"service.name": "checkout", "host.cores": "8"},
        "ResourceSchemaUrl": "res-url",
        "ScopeName": "lib",
        "ScopeVersion": "1.2",
        "ScopeAttributes": {"scope.k": "v"},
        "ScopeDroppedAttrCount": 3,
        "ScopeSchemaUrl": "scope-url",
        "ServiceName": "checkout",
        "MetricName": name,
        "MetricDescription": format!("{name} described"),
        "MetricUnit": "ms",
    })
}

fn exemplar_columns() -> J {
    json!({
        "Exemplars.FilteredAttributes": [{"user": "u1"}],
        "Exemplars.TimeUnix": [1_700_000_030],
        "Exemplars.Value": [9.0],
        "Exemplars.SpanId": ["02".repeat(8)],
        "Exemplars.TraceId": ["03".repeat(16)],
    })
}

#[test]
fn metric_rows_go_to_their_types_table_with_the_collectors_values() {
    let mut all = MetricRows::default();
    rows_metrics::encode(&metrics(), &mut all);
    let read = |table| {
        let (rows, n) = all.rows(table);
        read_rows(table, SignalKind::Metrics, rows, n)
    };

    let gauge = read(Table::Gauge);
    assert_eq!(gauge.len(), 1);
    check(&gauge[0], common("temperature"));
    check(&gauge[0], exemplar_columns());
    check(
        &gauge[0],
        json!({
            "Attributes": {"room": "lab"},
            // DateTime: whole seconds.
            "StartTimeUnix": 1_700_000_000,
            "TimeUnix": 1_700_000_060,
            "Value": 21.5,
            "Flags": 1,
        }),
    );

    let sum = read(Table::Sum);
    assert_eq!(sum.len(), 2);
    check(&sum[0], common("orders"));
    check(&sum[1], exemplar_columns());
    check(
        &sum[0],
        json!({
            "Attributes": {"route": "/a"},
            "Value": 3.0,
            "AggregationTemporality": 2,
            "IsMonotonic": true,
        }),
    );
    check(
        &sum[1],
        json!({"Attributes": {"route": "/b"}, "Value": -4.0}),
    );

    let hist = read(Table::Histogram);
    assert_eq!(hist.len(), 1);
    check(&hist[0], common("latency"));
    check(
        &hist[0],
        json!({
            "Attributes": {},
            "StartTimeUnix": 1,
            "TimeUnix": 2,
            "Count": 6,
            "Sum": 12.5,
            "BucketCounts": [1, 2, 3],
            "ExplicitBounds": [1.0, 5.0],
            "Exemplars.Value": [],
            "Flags": 0,
            "Min": 0.5,
            // Absent: 0, as the Collector writes it.
            "Max": 0.0,
            "AggregationTemporality": 1,
        }),
    );

    let exp = read(Table::ExponentialHistogram);
    assert_eq!(exp.len(), 1);
    check(&exp[0], common("sizes"));
    check(
        &exp[0],
        json!({
            "TimeUnix": 3,
            "Count": 9,
            "Sum": 40.0,
            "Scale": -2,
            "ZeroCount": 1,
            "PositiveOffset": -3,
            "PositiveBucketCounts": [4, 4],
            "NegativeOffset": 0,
            "NegativeBucketCounts": [],
            "Min": -1.0,
            "Max": 30.0,
            "AggregationTemporality": 2,
        }),
    );

    let summary = read(Table::Summary);
    assert_eq!(summary.len(), 1);
    check(&summary[0], common("rtt"));
    check(
        &summary[0],
        json!({
            "TimeUnix": 4,
            "Count": 10,
            "Sum": 55.0,
            "ValueAtQuantiles.Quantile": [0.5, 0.99],
            "ValueAtQuantiles.Value": [5.0, 9.9],
            "Flags": 0,
        }),
    );
}

#[test]
fn a_metrics_batch_is_one_insert_per_table_with_rows() {
    let batch = Batch::<Metrics>::new(metrics());
    let parts = Metrics::encode(&batch, Compress::None);
    let tables: Vec<_> = parts.iter().map(|(t, _, n)| (*t, *n)).collect();
    assert_eq!(
        tables,
        [
            (Table::Gauge, 1),
            (Table::Sum, 2),
            (Table::Histogram, 1),
            (Table::ExponentialHistogram, 1),
            (Table::Summary, 1),
        ]
    );
    // Compressed bodies decompress to the same rows.
    let lz4 = Metrics::encode(&batch, Compress::Lz4);
    for ((_, plain, _), (_, packed, _)) in parts.iter().zip(&lz4) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(
            &mut lz4_flex::frame::FrameDecoder::new(packed.as_slice()),
            &mut out,
        )
        .unwrap();
        assert_eq!(&out, plain);
    }
    let logs = Batch::<Logs>::new(Vec::new());
    assert_eq!(Logs::encode(&logs, Compress::Zstd)[0].2, 0);
}

#[test]
fn logs_and_metrics_ddl_follow_the_collector() {
    let s = schema();
    let logs = s.ddl(SignalKind::Logs);
    assert_eq!(logs.len(), 2, "database, logs table");
    for needle in [
        "CREATE TABLE IF NOT EXISTS `otel`.`otel_logs` (",
        "TimestampTime DateTime DEFAULT toDateTime(Timestamp)",
        "INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8",
        "PARTITION BY toDate(TimestampTime)\nPRIMARY KEY (ServiceName, TimestampTime)\nORDER BY (ServiceName, TimestampTime, Timestamp)",
        "TTL TimestampTime + toIntervalDay(1)",
    ] {
        assert!(
            logs[1].contains(needle),
            "missing {needle:?} in\n{}",
            logs[1]
        );
    }
    let metrics = s.ddl(SignalKind::Metrics);
    assert_eq!(metrics.len(), 6, "database, five tables");
    for (ddl, table) in metrics[1..].iter().zip(Table::METRICS) {
        assert!(ddl.starts_with(&format!(
            "CREATE TABLE IF NOT EXISTS `otel`.`{}` (",
            s.table_name(table)
        )));
        for needle in [
            "PARTITION BY toDate(TimeUnix)\nORDER BY (ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix)",
            "TTL toDateTime(TimeUnix) + toIntervalDay(1)",
            "INDEX idx_time_minmax TimeUnix TYPE minmax GRANULARITY 1",
            "non_replicated_deduplication_window = 1000",
        ] {
            assert!(ddl.contains(needle), "missing {needle:?} in\n{ddl}");
        }
    }
    // No traces tables from a logs or metrics exporter.
    assert!(
        !logs
            .iter()
            .chain(&metrics)
            .any(|d| d.contains("otel_traces"))
    );

    let mut c = schema();
    c.cluster = Some("c1".into());
    let ddl = c.ddl(SignalKind::Logs);
    assert!(
        ddl[1].starts_with("CREATE TABLE IF NOT EXISTS `otel`.`otel_logs_local` ON CLUSTER `c1` (")
    );
    assert!(ddl[2].ends_with("Distributed(`c1`, `otel`, `otel_logs_local`, rand())"));
    assert!(
        c.insert_query_for(Table::Sum)
            .starts_with("INSERT INTO `otel`.`otel_metrics_sum` (ResourceAttributes, ")
    );
}
