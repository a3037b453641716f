//! Metric data points as ClickHouse `RowBinary` rows of the five metrics tables, one row per
//! data point, columns in [`Table::columns`] order, with the values the OpenTelemetry
//! Collector's ClickHouse exporter writes: integer values as `Float64`, times as `DateTime`
//! (whole seconds, the tables' type), a missing histogram sum, min or max as 0, exemplars as
//! the parallel arrays of their `Nested` column. Strings, ids and maps are written by the
//! traces encoder's functions ([`super::rows`]).
//!
//! This encoder takes decoded metrics (`Batch::resources()`); a byte-path encoder like
//! [`super::rows_wire`] for spans is not written yet.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ResourceMetrics, exemplar, metric::Data, number_data_point,
};

use super::rows::{put_id, put_len, put_map, put_str, service_name};
use super::schema::Table;

/// The rows of one batch, per metrics table.
#[derive(Debug, Default)]
pub struct MetricRows {
    /// RowBinary rows and their number, in [`Table::METRICS`] order.
    pub tables: [(Vec<u8>, usize); 5],
}

impl MetricRows {
    /// The rows of `table`, a metrics table.
    pub fn rows(&self, table: Table) -> (&[u8], usize) {
        let (rows, n) = &self.tables[index(table)];
        (rows, *n)
    }

    fn row(&mut self, table: Table) -> &mut Vec<u8> {
        let (rows, n) = &mut self.tables[index(table)];
        *n += 1;
        rows
    }
}

fn index(table: Table) -> usize {
    Table::METRICS
        .iter()
        .position(|t| *t == table)
        .expect("a metrics table")
}

/// What every row of a metric starts with, encoded once per metric.
fn metric_prefix(
    resource_map: &[u8],
    resource_schema_url: &str,
    scope_part: &[u8],
    service: &str,
    name: &str,
    description: &str,
    unit: &str,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(resource_map.len() + scope_part.len() + 64);
    p.extend_from_slice(resource_map);
    put_str(&mut p, resource_schema_url);
    p.extend_from_slice(scope_part);
    put_str(&mut p, service);
    put_str(&mut p, name);
    put_str(&mut p, description);
    put_str(&mut p, unit);
    p
}

/// Appends one row per data point to the table of its metric's type.
pub fn encode(resource_metrics: &[ResourceMetrics], out: &mut MetricRows) {
    for rm in resource_metrics {
        let resource_attrs: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        let service = service_name(resource_attrs);
        let mut resource_map = Vec::new();
        put_map(&mut resource_map, resource_attrs);
        for sm in &rm.scope_metrics {
            // ScopeName, ScopeVersion, ScopeAttributes, ScopeDroppedAttrCount, ScopeSchemaUrl.
            let mut scope_part = Vec::new();
            let scope = sm.scope.as_ref();
            put_str(&mut scope_part, scope.map_or("", |s| s.name.as_str()));
            put_str(&mut scope_part, scope.map_or("", |s| s.version.as_str()));
            put_map(&mut scope_part, scope.map_or(&[], |s| &s.attributes));
            let dropped = scope.map_or(0, |s| s.dropped_attributes_count);
            scope_part.extend_from_slice(&dropped.to_le_bytes());
            put_str(&mut scope_part, &sm.schema_url);
            for m in &sm.metrics {
                let prefix = metric_prefix(
                    &resource_map,
                    &rm.schema_url,
                    &scope_part,
                    &service,
                    &m.name,
                    &m.description,
                    &m.unit,
                );
                let common = |out: &mut Vec<u8>, attrs: &[KeyValue], start: u64, time: u64| {
                    out.extend_from_slice(&prefix);
                    put_map(out, attrs);
                    put_datetime(out, start);
                    put_datetime(out, time);
                };
                match &m.data {
                    Some(Data::Gauge(g)) => {
                        for p in &g.data_points {
                            let row = out.row(Table::Gauge);
                            common(row, &p.attributes, p.start_time_unix_nano, p.time_unix_nano);
                            put_f64(row, number(p.value.as_ref()));
                            row.extend_from_slice(&p.flags.to_le_bytes());
                            put_exemplars(row, &p.exemplars);
                        }
                    }
                    Some(Data::Sum(s)) => {
                        for p in &s.data_points {
                            let row = out.row(Table::Sum);
                            common(row, &p.attributes, p.start_time_unix_nano, p.time_unix_nano);
                            put_f64(row, number(p.value.as_ref()));
                            row.extend_from_slice(&p.flags.to_le_bytes());
                            put_exemplars(row, &p.exemplars);
                            row.extend_from_slice(&s.aggregation_temporality.to_le_bytes());
                            row.push(u8::from(s.is_monotonic));
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for p in &h.data_points {
                            let row = out.row(Table::Histogram);
                            common(row, &p.attributes, p.start_time_unix_nano, p.time_unix_nano);
                            row.extend_from_slice(&p.count.to_le_bytes());
                            put_f64(row, p.sum.unwrap_or(0.0));
                            put_u64s(row, &p.bucket_counts);
                            put_len(row, p.explicit_bounds.len());
                            for b in &p.explicit_bounds {
                                put_f64(row, *b);
                            }
                            put_exemplars(row, &p.exemplars);
                            row.extend_from_slice(&p.flags.to_le_bytes());
                            put_f64(row, p.min.unwrap_or(0.0));
                            put_f64(row, p.max.unwrap_or(0.0));
                            row.extend_from_slice(&h.aggregation_temporality.to_le_bytes());
                        }
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            let row = out.row(Table::ExponentialHistogram);
                            common(row, &p.attributes, p.start_time_unix_nano, p.time_unix_nano);
                            row.extend_from_slice(&p.count.to_le_bytes());
                            put_f64(row, p.sum.unwrap_or(0.0));
                            row.extend_from_slice(&p.scale.to_le_bytes());
                            row.extend_from_slice(&p.zero_count.to_le_bytes());
                            for buckets in [&p.positive, &p.negative] {
                                let b = buckets.as_ref();
                                row.extend_from_slice(&b.map_or(0, |b| b.offset).to_le_bytes());
                                put_u64s(row, b.map_or(&[], |b| &b.bucket_counts));
                            }
                            put_exemplars(row, &p.exemplars);
                            row.extend_from_slice(&p.flags.to_le_bytes());
                            put_f64(row, p.min.unwrap_or(0.0));
                            put_f64(row, p.max.unwrap_or(0.0));
                            row.extend_from_slice(&h.aggregation_temporality.to_le_bytes());
                        }
                    }
                    Some(Data::Summary(s)) => {
                        for p in &s.data_points {
                            let row = out.row(Table::Summary);
                            common(row, &p.attributes, p.start_time_unix_nano, p.time_unix_nano);
                            row.extend_from_slice(&p.count.to_le_bytes());
                            put_f64(row, p.sum);
                            put_len(row, p.quantile_values.len());
                            for q in &p.quantile_values {
                                put_f64(row, q.quantile);
                            }
                            put_len(row, p.quantile_values.len());
                            for q in &p.quantile_values {
                                put_f64(row, q.value);
                            }
                            row.extend_from_slice(&p.flags.to_le_bytes());
                        }
                    }
                    // A metric without data has no points to write.
                    None => {}
                }
            }
        }
    }
}

/// A number data point's value as `Float64` (integers converted, as the Collector does).
fn number(v: Option<&number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64s(out: &mut Vec<u8>, vs: &[u64]) {
    put_len(out, vs.len());
    for v in vs {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// `DateTime`: whole seconds since the epoch in a UInt32 (times past 2106 are clamped).
pub(super) fn put_datetime(out: &mut Vec<u8>, unix_nano: u64) {
    let secs = u32::try_from(unix_nano / 1_000_000_000).unwrap_or(u32::MAX);
    out.extend_from_slice(&secs.to_le_bytes());
}

/// The `Exemplars` Nested column: FilteredAttributes, TimeUnix, Value, SpanId, TraceId.
fn put_exemplars(out: &mut Vec<u8>, exemplars: &[Exemplar]) {
    put_len(out, exemplars.len());
    for e in exemplars {
        put_map(out, &e.filtered_attributes);
    }
    put_len(out, exemplars.len());
    for e in exemplars {
        put_datetime(out, e.time_unix_nano);
    }
    put_len(out, exemplars.len());
    for e in exemplars {
        put_f64(
            out,
            match e.value {
                Some(exemplar::Value::AsDouble(d)) => d,
                Some(exemplar::Value::AsInt(i)) => i as f64,
                None => 0.0,
            },
        );
    }
    put_len(out, exemplars.len());
    for e in exemplars {
        put_id(out, &e.span_id);
    }
    put_len(out, exemplars.len());
    for e in exemplars {
        put_id(out, &e.trace_id);
    }
}
