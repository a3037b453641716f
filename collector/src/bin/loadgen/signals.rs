//! Log records and metric data points made from the generated traces, for `--signal logs` and
//! `--signal metrics`.
//!
//! Every span of a generated request becomes one log record logged inside it (its trace and
//! span ids, its end time, its attributes; `ERROR` when its trace failed, else `INFO`), or one
//! data point, at its end time with its attributes, of one of three metrics by the span's
//! position in its trace: a monotonic cumulative sum (`loadgen.requests`), a gauge
//! (`loadgen.queue_depth`) and a histogram of durations (`loadgen.duration`). So a run sends
//! as many items (records, points) as it would spans, with the same attributes, and logs join
//! the traces a `--signal traces` run of the same seed would send.
//!
//! As for spans, the requests are templates rewritten in place: a send copies ids, times and
//! attribute values into buffers that stay allocated.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prost::Message as _;

/// The signal a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignalArg {
    /// Spans.
    Traces,
    /// Log records, one per span the trace shape has.
    Logs,
    /// Metric data points, one per span the trace shape has.
    Metrics,
}

impl SignalArg {
    /// The gRPC method path of the signal's export call.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Self::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Self::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Self::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }

    /// The OTLP/HTTP path: `/v1/traces`, `/v1/logs`, `/v1/metrics`.
    pub fn http_path(self) -> &'static str {
        match self {
            Self::Traces => "/v1/traces",
            Self::Logs => "/v1/logs",
            Self::Metrics => "/v1/metrics",
        }
    }

    /// The partial success's count in an OTLP/JSON response.
    pub fn rejected_json(self) -> &'static str {
        match self {
            Self::Traces => "rejectedSpans",
            Self::Logs => "rejectedLogRecords",
            Self::Metrics => "rejectedDataPoints",
        }
    }
}

/// A request of any signal, to encode.
pub enum Request<'a> {
    /// Spans.
    Traces(&'a ExportTraceServiceRequest),
    /// Log records.
    Logs(&'a ExportLogsServiceRequest),
    /// Data points.
    Metrics(&'a ExportMetricsServiceRequest),
}

impl Request<'_> {
    /// Appends the protobuf encoding.
    pub fn encode_protobuf(&self, out: &mut Vec<u8>) {
        match self {
            Self::Traces(r) => {
                out.reserve(r.encoded_len());
                r.encode_raw(out);
            }
            Self::Logs(r) => {
                out.reserve(r.encoded_len());
                r.encode_raw(out);
            }
            Self::Metrics(r) => {
                out.reserve(r.encoded_len());
                r.encode_raw(out);
            }
        }
    }

    /// Appends the OTLP/JSON encoding.
    pub fn encode_json(&self, out: &mut Vec<u8>) {
        match self {
            Self::Traces(r) => wasmcol::otlp::json::encode_traces(&r.resource_spans, out),
            Self::Logs(r) => wasmcol::otlp::json::encode_logs(&r.resource_logs, out),
            Self::Metrics(r) => wasmcol::otlp::json::encode_metrics(&r.resource_metrics, out),
        }
    }
}

/// The log and metric templates of one worker.
#[derive(Default)]
pub struct Converter {
    logs: ExportLogsServiceRequest,
    metrics: ExportMetricsServiceRequest,
}

/// Names of the three metrics, by span position modulo 3.
const METRICS: [&str; 3] = [
    "loadgen.requests",
    "loadgen.queue_depth",
    "loadgen.duration",
];
/// Histogram bucket bounds, in milliseconds.
const BOUNDS_MS: [f64; 5] = [5.0, 25.0, 50.0, 100.0, 250.0];

/// Copies `from`'s string attributes into `to`, reusing `to`'s buffers.
fn copy_attributes(from: &[KeyValue], to: &mut Vec<KeyValue>) {
    to.truncate(from.len());
    for (i, kv) in from.iter().enumerate() {
        if i == to.len() {
            to.push(kv.clone());
            continue;
        }
        let slot = &mut to[i];
        if slot.key != kv.key {
            slot.key.clone_from(&kv.key);
        }
        match (&mut slot.value, &kv.value) {
            (
                Some(AnyValue {
                    value: Some(Value::StringValue(dst)),
                }),
                Some(AnyValue {
                    value: Some(Value::StringValue(src)),
                }),
            ) => {
                dst.clear();
                dst.push_str(src);
            }
            (slot, value) => slot.clone_from(value),
        }
    }
}

fn spans(traces: &ExportTraceServiceRequest) -> &[Span] {
    &traces.resource_spans[0].scope_spans[0].spans
}

impl Converter {
    /// One log record per span of `traces` (one resource, one scope, as generated).
    pub fn logs(&mut self, traces: &ExportTraceServiceRequest) -> &ExportLogsServiceRequest {
        let rs: &ResourceSpans = &traces.resource_spans[0];
        if self.logs.resource_logs.is_empty() {
            self.logs.resource_logs.push(ResourceLogs {
                resource: rs.resource.clone(),
                scope_logs: vec![ScopeLogs {
                    scope: rs.scope_spans[0].scope.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        let records = &mut self.logs.resource_logs[0].scope_logs[0].log_records;
        let spans = spans(traces);
        records.truncate(spans.len());
        records.resize_with(spans.len(), LogRecord::default);
        for (record, span) in records.iter_mut().zip(spans) {
            let error = span
                .status
                .as_ref()
                .is_some_and(|s| s.code == StatusCode::Error as i32);
            record.time_unix_nano = span.end_time_unix_nano;
            record.observed_time_unix_nano = span.end_time_unix_nano;
            let (number, text) = if error {
                (SeverityNumber::Error, "ERROR")
            } else {
                (SeverityNumber::Info, "INFO")
            };
            record.severity_number = number as i32;
            if record.severity_text != text {
                record.severity_text = text.to_owned();
            }
            match &mut record.body {
                Some(AnyValue {
                    value: Some(Value::StringValue(body)),
                }) => {
                    body.clear();
                    body.push_str(&span.name);
                    body.push_str(" done");
                }
                body => {
                    *body = Some(AnyValue {
                        value: Some(Value::StringValue(format!("{} done", span.name))),
                    })
                }
            }
            copy_attributes(&span.attributes, &mut record.attributes);
            record.trace_id.clone_from(&span.trace_id);
            record.span_id.clone_from(&span.span_id);
            record.flags = 1;
        }
        &self.logs
    }

    /// One data point per span of `traces`, spread over three metrics by span position.
    pub fn metrics(&mut self, traces: &ExportTraceServiceRequest) -> &ExportMetricsServiceRequest {
        let rs: &ResourceSpans = &traces.resource_spans[0];
        if self.metrics.resource_metrics.is_empty() {
            let metric = |i: usize, data| Metric {
                name: METRICS[i].to_owned(),
                unit: if i == 2 { "ms" } else { "1" }.to_owned(),
                data: Some(data),
                ..Default::default()
            };
            self.metrics.resource_metrics.push(ResourceMetrics {
                resource: rs.resource.clone(),
                scope_metrics: vec![ScopeMetrics {
                    scope: rs.scope_spans[0].scope.clone(),
                    metrics: vec![
                        metric(
                            0,
                            metric::Data::Sum(Sum {
                                data_points: Vec::new(),
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: true,
                            }),
                        ),
                        metric(1, metric::Data::Gauge(Gauge::default())),
                        metric(
                            2,
                            metric::Data::Histogram(Histogram {
                                data_points: Vec::new(),
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            }),
                        ),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        let spans = spans(traces);
        let [sum, gauge, histogram] =
            &mut self.metrics.resource_metrics[0].scope_metrics[0].metrics[..]
        else {
            unreachable!("three metrics, made above")
        };
        let numbers = |m: &mut Metric, of: usize| {
            let points = match &mut m.data {
                Some(metric::Data::Sum(s)) => &mut s.data_points,
                Some(metric::Data::Gauge(g)) => &mut g.data_points,
                _ => unreachable!("sum and gauge, made above"),
            };
            let mine: Vec<&Span> = spans.iter().skip(of).step_by(3).collect();
            points.truncate(mine.len());
            points.resize_with(mine.len(), NumberDataPoint::default);
            for (p, span) in points.iter_mut().zip(mine) {
                p.start_time_unix_nano = span.start_time_unix_nano;
                p.time_unix_nano = span.end_time_unix_nano;
                copy_attributes(&span.attributes, &mut p.attributes);
                p.value = Some(if of == 0 {
                    number_data_point::Value::AsInt(1 + (span.span_id[7] as i64))
                } else {
                    number_data_point::Value::AsDouble(f64::from(span.span_id[6]))
                });
            }
        };
        numbers(sum, 0);
        numbers(gauge, 1);
        let Some(metric::Data::Histogram(h)) = &mut histogram.data else {
            unreachable!("a histogram, made above")
        };
        let mine: Vec<&Span> = spans.iter().skip(2).step_by(3).collect();
        h.data_points.truncate(mine.len());
        h.data_points
            .resize_with(mine.len(), HistogramDataPoint::default);
        for (p, span) in h.data_points.iter_mut().zip(mine) {
            let ms = (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6;
            p.start_time_unix_nano = span.start_time_unix_nano;
            p.time_unix_nano = span.end_time_unix_nano;
            copy_attributes(&span.attributes, &mut p.attributes);
            p.count = 1;
            p.sum = Some(ms);
            p.min = Some(ms);
            p.max = Some(ms);
            if p.explicit_bounds.is_empty() {
                p.explicit_bounds = BOUNDS_MS.to_vec();
            }
            let bucket = BOUNDS_MS
                .iter()
                .position(|&upper| ms <= upper)
                .unwrap_or(BOUNDS_MS.len());
            p.bucket_counts.clear();
            p.bucket_counts
                .extend((0..=BOUNDS_MS.len()).map(|b| u64::from(b == bucket)));
        }
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmcol::pipeline::{Logs, Metrics, Signal};

    fn traces(n: usize) -> ExportTraceServiceRequest {
        use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Status};
        let spans = (0..n as u8)
            .map(|i| Span {
                trace_id: vec![i + 1; 16],
                span_id: vec![i + 1; 8],
                name: format!("op-{i}"),
                start_time_unix_nano: 1_000_000,
                end_time_unix_nano: 1_000_000 + u64::from(i) * 10_000_000,
                attributes: vec![KeyValue {
                    key: "k".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(format!("v{i}"))),
                    }),
                    ..Default::default()
                }],
                status: Some(Status {
                    code: if i == 0 { StatusCode::Error as i32 } else { 0 },
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn one_record_and_one_point_per_span_and_the_wire_check_agrees() {
        let mut c = Converter::default();
        for n in [7, 3, 10] {
            let t = traces(n);
            let logs = c.logs(&t);
            let bytes = logs.encode_to_vec();
            assert_eq!(Logs::check(&bytes).unwrap().items, n);
            let records = &logs.resource_logs[0].scope_logs[0].log_records;
            assert_eq!(records[0].severity_text, "ERROR");
            assert_eq!(records[1].severity_text, "INFO");
            assert_eq!(records[2].trace_id, vec![3; 16]);
            let metrics = c.metrics(&t);
            let bytes = metrics.encode_to_vec();
            assert_eq!(Metrics::check(&bytes).unwrap().items, n);
            let Some(metric::Data::Histogram(h)) =
                &metrics.resource_metrics[0].scope_metrics[0].metrics[2].data
            else {
                panic!()
            };
            // Span 2 took 20 ms: the (5, 25] bucket.
            assert_eq!(h.data_points[0].bucket_counts, [0, 1, 0, 0, 0, 0]);
            for p in &h.data_points {
                assert_eq!(p.bucket_counts.iter().sum::<u64>(), 1);
            }
        }
    }
}
