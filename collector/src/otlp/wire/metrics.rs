//! `ExportMetricsServiceRequest`: [`validate_metrics`] and its counts.
//!
//! Unlike the trace and log schemas, this one has repeated numeric fields
//! (`HistogramDataPoint.bucket_counts` and `explicit_bounds`, `Buckets.bucket_counts`), which
//! prost takes packed or not, and oneofs whose members carry data points (`Metric.data`): a
//! member given again merges into the one before, as prost merges it, and another member
//! replaces it, so only the data points of the last run of one member count.

use super::cursor::{self, I64, Step, read_request, resource_field, scope_field, sizes as shared};
use super::error::WireError;

/// Returned by [`validate_metrics`] for bytes that decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValidatedMetrics {
    /// The number of `ResourceMetrics`.
    pub resource_metrics: usize,
    /// The number of metrics, counting all `ResourceMetrics` and `ScopeMetrics`.
    pub metrics: usize,
    /// The number of data points of every kind (gauge, sum, histogram, exponential histogram,
    /// summary) in all metrics, as prost decodes them: the points of a `Metric.data` member
    /// that a later member replaced do not count.
    pub data_points: usize,
    /// An upper bound on the heap memory prost's structures take once the bytes are decoded,
    /// by the measure of [`super::Validated::decoded_bytes`]; elements of repeated numeric
    /// fields count at their size.
    pub decoded_bytes: usize,
}

/// Element sizes of the repeated metric fields, as prost lays them out.
mod sizes {
    use opentelemetry_proto::tonic::metrics::v1::{
        Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, SummaryDataPoint, summary_data_point,
    };
    use std::mem::size_of;

    pub const RESOURCE_METRICS: usize = size_of::<ResourceMetrics>();
    pub const SCOPE_METRICS: usize = size_of::<ScopeMetrics>();
    pub const METRIC: usize = size_of::<Metric>();
    pub const NUMBER_DATA_POINT: usize = size_of::<NumberDataPoint>();
    pub const HISTOGRAM_DATA_POINT: usize = size_of::<HistogramDataPoint>();
    pub const EXPONENTIAL_HISTOGRAM_DATA_POINT: usize = size_of::<ExponentialHistogramDataPoint>();
    pub const SUMMARY_DATA_POINT: usize = size_of::<SummaryDataPoint>();
    pub const VALUE_AT_QUANTILE: usize = size_of::<summary_data_point::ValueAtQuantile>();
    pub const EXEMPLAR: usize = size_of::<Exemplar>();
    /// `u64` and `f64` elements.
    pub const NUMBER: usize = 8;
}

/// What [`validate_metrics`] counts as it goes.
#[derive(Default)]
struct Counts {
    resource_metrics: usize,
    metrics: usize,
    data_points: usize,
    /// The field number of the `Metric.data` member the metric being read holds so far (0:
    /// none), and the data points in it.
    data: u32,
    data_points_in_data: usize,
}

/// Checks that `buf` is an `ExportMetricsServiceRequest` (encoded the same way as
/// `MetricsData`) that prost would decode, and counts its metrics and data points. It accepts
/// exactly the inputs for which `ExportMetricsServiceRequest::decode(buf)` is `Ok`, and when it
/// rejects one, the error message is the one prost gives. It does not allocate unless it fails.
pub fn validate_metrics(buf: &[u8]) -> Result<ValidatedMetrics, WireError> {
    let (counts, decoded_bytes) = read_request(buf, Counts::default(), request_field)?;
    Ok(ValidatedMetrics {
        resource_metrics: counts.resource_metrics,
        metrics: counts.metrics,
        data_points: counts.data_points,
        decoded_bytes,
    })
}

type Cursor<'a> = cursor::Cursor<'a, Counts>;

// One function per message type, named after the message. The `at` names are the prost struct
// and field names, which prost uses in its error path.

fn request_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    match tag {
        1 => {
            c.state.resource_metrics += 1;
            c.element(sizes::RESOURCE_METRICS);
            c.message(wire_type, depth, resource_metrics_field)
                .map_err(|e| e.at("ExportMetricsServiceRequest", "resource_metrics"))
        }
        _ => c.skip(wire_type, tag, depth),
    }
}

fn resource_metrics_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "ResourceMetrics";
    match tag {
        1 => c
            .message(wire_type, depth, resource_field)
            .map_err(|e| e.at(M, "resource")),
        2 => {
            c.element(sizes::SCOPE_METRICS);
            c.message(wire_type, depth, scope_metrics_field)
                .map_err(|e| e.at(M, "scope_metrics"))
        }
        3 => c.string(wire_type).map_err(|e| e.at(M, "schema_url")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn scope_metrics_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "ScopeMetrics";
    match tag {
        1 => c
            .message(wire_type, depth, scope_field)
            .map_err(|e| e.at(M, "scope")),
        2 => {
            c.state.metrics += 1;
            c.element(sizes::METRIC);
            c.state.data = 0;
            c.state.data_points_in_data = 0;
            c.message(wire_type, depth, metric_field)
                .map_err(|e| e.at(M, "metrics"))?;
            c.state.data_points += c.state.data_points_in_data;
            Ok(())
        }
        3 => c.string(wire_type).map_err(|e| e.at(M, "schema_url")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn metric_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Metric";
    match tag {
        1 => c.string(wire_type).map_err(|e| e.at(M, "name")),
        2 => c.string(wire_type).map_err(|e| e.at(M, "description")),
        3 => c.string(wire_type).map_err(|e| e.at(M, "unit")),
        5 => data_member(c, tag, wire_type, depth, gauge_field),
        7 => data_member(c, tag, wire_type, depth, sum_field),
        9 => data_member(c, tag, wire_type, depth, histogram_field),
        10 => data_member(c, tag, wire_type, depth, exponential_histogram_field),
        11 => data_member(c, tag, wire_type, depth, summary_field),
        12 => {
            c.element(shared::KEY_VALUE);
            c.key_value(wire_type, depth)
                .map_err(|e| e.at(M, "metadata"))
        }
        _ => c.skip(wire_type, tag, depth),
    }
}

/// A member of the `Metric.data` oneof (field `tag`): the member already set merges the new
/// occurrence, any other starts afresh and replaces it. prost reports every member as the
/// field `data`.
#[inline(always)]
fn data_member(
    c: &mut Cursor<'_>,
    tag: u32,
    wire_type: u8,
    depth: u32,
    field: impl FnMut(&mut Cursor<'_>, u32, u8, u32) -> Step,
) -> Step {
    if c.state.data != tag {
        c.state.data = tag;
        c.state.data_points_in_data = 0;
    }
    c.message(wire_type, depth, field)
        .map_err(|e| e.at("Metric", "data"))
}

/// Field 1 of every `Metric.data` member (`m`): its data points, of `size` bytes each.
#[inline(always)]
fn data_point(
    c: &mut Cursor<'_>,
    wire_type: u8,
    depth: u32,
    size: usize,
    point: impl FnMut(&mut Cursor<'_>, u32, u8, u32) -> Step,
    m: &'static str,
) -> Step {
    c.state.data_points_in_data += 1;
    c.element(size);
    c.message(wire_type, depth, point)
        .map_err(|e| e.at(m, "data_points"))
}

fn gauge_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    match tag {
        1 => data_point(
            c,
            wire_type,
            depth,
            sizes::NUMBER_DATA_POINT,
            number_data_point_field,
            "Gauge",
        ),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn sum_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Sum";
    match tag {
        1 => data_point(
            c,
            wire_type,
            depth,
            sizes::NUMBER_DATA_POINT,
            number_data_point_field,
            M,
        ),
        2 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "aggregation_temporality")),
        3 => c.int(wire_type).map_err(|e| e.at(M, "is_monotonic")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn histogram_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Histogram";
    match tag {
        1 => data_point(
            c,
            wire_type,
            depth,
            sizes::HISTOGRAM_DATA_POINT,
            histogram_data_point_field,
            M,
        ),
        2 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "aggregation_temporality")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn exponential_histogram_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "ExponentialHistogram";
    match tag {
        1 => data_point(
            c,
            wire_type,
            depth,
            sizes::EXPONENTIAL_HISTOGRAM_DATA_POINT,
            exponential_histogram_data_point_field,
            M,
        ),
        2 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "aggregation_temporality")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn summary_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    match tag {
        1 => data_point(
            c,
            wire_type,
            depth,
            sizes::SUMMARY_DATA_POINT,
            summary_data_point_field,
            "Summary",
        ),
        _ => c.skip(wire_type, tag, depth),
    }
}

// `attributes`, `exemplars` and 64-bit fields, which every data point type has; `m` is the
// message they are in, for the error path.

fn attributes(c: &mut Cursor<'_>, wire_type: u8, depth: u32, m: &'static str) -> Step {
    c.element(shared::KEY_VALUE);
    c.key_value(wire_type, depth)
        .map_err(|e| e.at(m, "attributes"))
}

fn exemplars(c: &mut Cursor<'_>, wire_type: u8, depth: u32, m: &'static str) -> Step {
    c.element(sizes::EXEMPLAR);
    c.message(wire_type, depth, exemplar_field)
        .map_err(|e| e.at(m, "exemplars"))
}

fn fixed64(c: &mut Cursor<'_>, wire_type: u8, m: &'static str, field: &'static str) -> Step {
    c.fixed(wire_type, I64, 8).map_err(|e| e.at(m, field))
}

fn number_data_point_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "NumberDataPoint";
    match tag {
        7 => attributes(c, wire_type, depth, M),
        2 => fixed64(c, wire_type, M, "start_time_unix_nano"),
        3 => fixed64(c, wire_type, M, "time_unix_nano"),
        // The `value` oneof: `as_double` and `as_int`, both 64-bit.
        4 | 6 => fixed64(c, wire_type, M, "value"),
        5 => exemplars(c, wire_type, depth, M),
        8 => c.int(wire_type).map_err(|e| e.at(M, "flags")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn histogram_data_point_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "HistogramDataPoint";
    match tag {
        9 => attributes(c, wire_type, depth, M),
        2 => fixed64(c, wire_type, M, "start_time_unix_nano"),
        3 => fixed64(c, wire_type, M, "time_unix_nano"),
        4 => fixed64(c, wire_type, M, "count"),
        5 => fixed64(c, wire_type, M, "sum"),
        6 => c
            .repeated_fixed(wire_type, I64, sizes::NUMBER)
            .map_err(|e| e.at(M, "bucket_counts")),
        7 => c
            .repeated_fixed(wire_type, I64, sizes::NUMBER)
            .map_err(|e| e.at(M, "explicit_bounds")),
        8 => exemplars(c, wire_type, depth, M),
        10 => c.int(wire_type).map_err(|e| e.at(M, "flags")),
        11 => fixed64(c, wire_type, M, "min"),
        12 => fixed64(c, wire_type, M, "max"),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn exponential_histogram_data_point_field(
    c: &mut Cursor<'_>,
    tag: u32,
    wire_type: u8,
    depth: u32,
) -> Step {
    const M: &str = "ExponentialHistogramDataPoint";
    match tag {
        1 => attributes(c, wire_type, depth, M),
        2 => fixed64(c, wire_type, M, "start_time_unix_nano"),
        3 => fixed64(c, wire_type, M, "time_unix_nano"),
        4 => fixed64(c, wire_type, M, "count"),
        5 => fixed64(c, wire_type, M, "sum"),
        6 => c.int(wire_type).map_err(|e| e.at(M, "scale")),
        7 => fixed64(c, wire_type, M, "zero_count"),
        // Singular messages: occurrences merge, as prost merges them.
        8 => c
            .message(wire_type, depth, buckets_field)
            .map_err(|e| e.at(M, "positive")),
        9 => c
            .message(wire_type, depth, buckets_field)
            .map_err(|e| e.at(M, "negative")),
        10 => c.int(wire_type).map_err(|e| e.at(M, "flags")),
        11 => exemplars(c, wire_type, depth, M),
        12 => fixed64(c, wire_type, M, "min"),
        13 => fixed64(c, wire_type, M, "max"),
        14 => fixed64(c, wire_type, M, "zero_threshold"),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn buckets_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Buckets";
    match tag {
        1 => c.int(wire_type).map_err(|e| e.at(M, "offset")),
        2 => c
            .repeated_varint(wire_type, sizes::NUMBER)
            .map_err(|e| e.at(M, "bucket_counts")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn summary_data_point_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "SummaryDataPoint";
    match tag {
        7 => attributes(c, wire_type, depth, M),
        2 => fixed64(c, wire_type, M, "start_time_unix_nano"),
        3 => fixed64(c, wire_type, M, "time_unix_nano"),
        4 => fixed64(c, wire_type, M, "count"),
        5 => fixed64(c, wire_type, M, "sum"),
        6 => {
            c.element(sizes::VALUE_AT_QUANTILE);
            c.message(wire_type, depth, value_at_quantile_field)
                .map_err(|e| e.at(M, "quantile_values"))
        }
        8 => c.int(wire_type).map_err(|e| e.at(M, "flags")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn value_at_quantile_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "ValueAtQuantile";
    match tag {
        1 => fixed64(c, wire_type, M, "quantile"),
        2 => fixed64(c, wire_type, M, "value"),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn exemplar_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Exemplar";
    match tag {
        7 => {
            c.element(shared::KEY_VALUE);
            c.key_value(wire_type, depth)
                .map_err(|e| e.at(M, "filtered_attributes"))
        }
        2 => fixed64(c, wire_type, M, "time_unix_nano"),
        // The `value` oneof: `as_double` and `as_int`, both 64-bit.
        3 | 6 => fixed64(c, wire_type, M, "value"),
        4 => c.bytes(wire_type).map_err(|e| e.at(M, "span_id")),
        5 => c.bytes(wire_type).map_err(|e| e.at(M, "trace_id")),
        _ => c.skip(wire_type, tag, depth),
    }
}
