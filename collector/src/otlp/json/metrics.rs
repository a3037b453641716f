//! The metric messages: which JSON field is which prost field, both ways.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use serde::de::MapAccess;

use super::common::{write_key_value, write_resource, write_scope};
use super::decode::{
    EnumSeed, Field, HexId, JsonMessage, Oneof, Path, fields, nested, numbers, optional, repeated,
    scalar, set_oneof,
};
use super::encode::{Obj, write_f64, write_i64_string};

fields! { MetricsRequestField { ResourceMetrics = "resourceMetrics" | "resource_metrics" } }

impl JsonMessage for ExportMetricsServiceRequest {
    const NAME: &'static str = "ExportMetricsServiceRequest";
    type Field = MetricsRequestField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: MetricsRequestField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            MetricsRequestField::ResourceMetrics => self.resource_metrics = repeated(map, path)?,
        }
        Ok(())
    }
}

fields! {
    ResourceMetricsField {
        Resource = "resource",
        ScopeMetrics = "scopeMetrics" | "scope_metrics",
        SchemaUrl = "schemaUrl" | "schema_url",
    }
}

impl JsonMessage for ResourceMetrics {
    const NAME: &'static str = "ResourceMetrics";
    type Field = ResourceMetricsField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ResourceMetricsField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ResourceMetricsField::Resource => self.resource = nested(map, path)?,
            ResourceMetricsField::ScopeMetrics => self.scope_metrics = repeated(map, path)?,
            ResourceMetricsField::SchemaUrl => self.schema_url = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    ScopeMetricsField {
        Scope = "scope",
        Metrics = "metrics",
        SchemaUrl = "schemaUrl" | "schema_url",
    }
}

impl JsonMessage for ScopeMetrics {
    const NAME: &'static str = "ScopeMetrics";
    type Field = ScopeMetricsField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ScopeMetricsField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ScopeMetricsField::Scope => self.scope = nested(map, path)?,
            ScopeMetricsField::Metrics => self.metrics = repeated(map, path)?,
            ScopeMetricsField::SchemaUrl => self.schema_url = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    MetricField {
        Name = "name",
        Description = "description",
        Unit = "unit",
        Gauge = "gauge",
        Sum = "sum",
        Histogram = "histogram",
        ExponentialHistogram = "exponentialHistogram" | "exponential_histogram",
        Summary = "summary",
        Metadata = "metadata",
    }
}

impl JsonMessage for Metric {
    const NAME: &'static str = "Metric";
    type Field = MetricField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: MetricField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        use metric::Data;

        let data = match field {
            MetricField::Name => {
                self.name = scalar(map)?;
                return Ok(());
            }
            MetricField::Description => {
                self.description = scalar(map)?;
                return Ok(());
            }
            MetricField::Unit => {
                self.unit = scalar(map)?;
                return Ok(());
            }
            MetricField::Metadata => {
                self.metadata = repeated(map, path)?;
                return Ok(());
            }
            // The members of the oneof `data`.
            MetricField::Gauge => nested(map, path)?.map(Data::Gauge),
            MetricField::Sum => nested(map, path)?.map(Data::Sum),
            MetricField::Histogram => nested(map, path)?.map(Data::Histogram),
            MetricField::ExponentialHistogram => nested(map, path)?.map(Data::ExponentialHistogram),
            MetricField::Summary => nested(map, path)?.map(Data::Summary),
        };
        set_oneof(&mut self.data, data, field.name(), METRIC_DATA)
    }
}

const METRIC_DATA: Oneof<metric::Data> = Oneof {
    message: "Metric",
    oneof: "data",
    member_name: metric_data_name,
};

/// The JSON name of the oneof member `data` is in.
fn metric_data_name(data: &metric::Data) -> &'static str {
    use metric::Data;
    match data {
        Data::Gauge(_) => "gauge",
        Data::Sum(_) => "sum",
        Data::Histogram(_) => "histogram",
        Data::ExponentialHistogram(_) => "exponentialHistogram",
        Data::Summary(_) => "summary",
    }
}

fields! { DataPointsField { DataPoints = "dataPoints" | "data_points" } }

impl JsonMessage for Gauge {
    const NAME: &'static str = "Gauge";
    type Field = DataPointsField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: DataPointsField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            DataPointsField::DataPoints => self.data_points = repeated(map, path)?,
        }
        Ok(())
    }
}

impl JsonMessage for Summary {
    const NAME: &'static str = "Summary";
    type Field = DataPointsField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: DataPointsField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            DataPointsField::DataPoints => self.data_points = repeated(map, path)?,
        }
        Ok(())
    }
}

fields! {
    SumField {
        DataPoints = "dataPoints" | "data_points",
        AggregationTemporality = "aggregationTemporality" | "aggregation_temporality",
        IsMonotonic = "isMonotonic" | "is_monotonic",
    }
}

impl JsonMessage for Sum {
    const NAME: &'static str = "Sum";
    type Field = SumField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: SumField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            SumField::DataPoints => self.data_points = repeated(map, path)?,
            SumField::AggregationTemporality => {
                self.aggregation_temporality =
                    map.next_value_seed(EnumSeed::AGGREGATION_TEMPORALITY)?;
            }
            SumField::IsMonotonic => self.is_monotonic = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    HistogramField {
        DataPoints = "dataPoints" | "data_points",
        AggregationTemporality = "aggregationTemporality" | "aggregation_temporality",
    }
}

impl JsonMessage for Histogram {
    const NAME: &'static str = "Histogram";
    type Field = HistogramField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: HistogramField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            HistogramField::DataPoints => self.data_points = repeated(map, path)?,
            HistogramField::AggregationTemporality => {
                self.aggregation_temporality =
                    map.next_value_seed(EnumSeed::AGGREGATION_TEMPORALITY)?;
            }
        }
        Ok(())
    }
}

impl JsonMessage for ExponentialHistogram {
    const NAME: &'static str = "ExponentialHistogram";
    type Field = HistogramField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: HistogramField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            HistogramField::DataPoints => self.data_points = repeated(map, path)?,
            HistogramField::AggregationTemporality => {
                self.aggregation_temporality =
                    map.next_value_seed(EnumSeed::AGGREGATION_TEMPORALITY)?;
            }
        }
        Ok(())
    }
}

impl EnumSeed {
    const AGGREGATION_TEMPORALITY: EnumSeed = EnumSeed {
        field: "aggregationTemporality",
        enum_name: "AggregationTemporality",
        example: "AGGREGATION_TEMPORALITY_CUMULATIVE",
        from_name: aggregation_temporality_from_name,
    };
}

fn aggregation_temporality_from_name(name: &str) -> Option<i32> {
    AggregationTemporality::from_str_name(name).map(|temporality| temporality as i32)
}

fields! {
    NumberDataPointField {
        Attributes = "attributes",
        StartTimeUnixNano = "startTimeUnixNano" | "start_time_unix_nano",
        TimeUnixNano = "timeUnixNano" | "time_unix_nano",
        AsDouble = "asDouble" | "as_double",
        AsInt = "asInt" | "as_int",
        Exemplars = "exemplars",
        Flags = "flags",
    }
}

impl JsonMessage for NumberDataPoint {
    const NAME: &'static str = "NumberDataPoint";
    type Field = NumberDataPointField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: NumberDataPointField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        use number_data_point::Value;

        let value = match field {
            NumberDataPointField::Attributes => {
                self.attributes = repeated(map, path)?;
                return Ok(());
            }
            NumberDataPointField::StartTimeUnixNano => {
                self.start_time_unix_nano = scalar(map)?;
                return Ok(());
            }
            NumberDataPointField::TimeUnixNano => {
                self.time_unix_nano = scalar(map)?;
                return Ok(());
            }
            NumberDataPointField::Exemplars => {
                self.exemplars = repeated(map, path)?;
                return Ok(());
            }
            NumberDataPointField::Flags => {
                self.flags = scalar(map)?;
                return Ok(());
            }
            // The members of the oneof `value`.
            NumberDataPointField::AsDouble => optional(map)?.map(Value::AsDouble),
            NumberDataPointField::AsInt => optional(map)?.map(Value::AsInt),
        };
        set_oneof(&mut self.value, value, field.name(), NUMBER_VALUE)
    }
}

const NUMBER_VALUE: Oneof<number_data_point::Value> = Oneof {
    message: "NumberDataPoint",
    oneof: "value",
    member_name: |value| match value {
        number_data_point::Value::AsDouble(_) => "asDouble",
        number_data_point::Value::AsInt(_) => "asInt",
    },
};

fields! {
    HistogramDataPointField {
        Attributes = "attributes",
        StartTimeUnixNano = "startTimeUnixNano" | "start_time_unix_nano",
        TimeUnixNano = "timeUnixNano" | "time_unix_nano",
        Count = "count",
        Sum = "sum",
        BucketCounts = "bucketCounts" | "bucket_counts",
        ExplicitBounds = "explicitBounds" | "explicit_bounds",
        Exemplars = "exemplars",
        Flags = "flags",
        Min = "min",
        Max = "max",
    }
}

impl JsonMessage for HistogramDataPoint {
    const NAME: &'static str = "HistogramDataPoint";
    type Field = HistogramDataPointField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: HistogramDataPointField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        type F = HistogramDataPointField;
        match field {
            F::Attributes => self.attributes = repeated(map, path)?,
            F::StartTimeUnixNano => self.start_time_unix_nano = scalar(map)?,
            F::TimeUnixNano => self.time_unix_nano = scalar(map)?,
            F::Count => self.count = scalar(map)?,
            F::Sum => self.sum = optional(map)?,
            F::BucketCounts => self.bucket_counts = numbers(map, path)?,
            F::ExplicitBounds => self.explicit_bounds = numbers(map, path)?,
            F::Exemplars => self.exemplars = repeated(map, path)?,
            F::Flags => self.flags = scalar(map)?,
            F::Min => self.min = optional(map)?,
            F::Max => self.max = optional(map)?,
        }
        Ok(())
    }
}

fields! {
    ExponentialHistogramDataPointField {
        Attributes = "attributes",
        StartTimeUnixNano = "startTimeUnixNano" | "start_time_unix_nano",
        TimeUnixNano = "timeUnixNano" | "time_unix_nano",
        Count = "count",
        Sum = "sum",
        Scale = "scale",
        ZeroCount = "zeroCount" | "zero_count",
        Positive = "positive",
        Negative = "negative",
        Flags = "flags",
        Exemplars = "exemplars",
        Min = "min",
        Max = "max",
        ZeroThreshold = "zeroThreshold" | "zero_threshold",
    }
}

impl JsonMessage for ExponentialHistogramDataPoint {
    const NAME: &'static str = "ExponentialHistogramDataPoint";
    type Field = ExponentialHistogramDataPointField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ExponentialHistogramDataPointField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        type F = ExponentialHistogramDataPointField;
        match field {
            F::Attributes => self.attributes = repeated(map, path)?,
            F::StartTimeUnixNano => self.start_time_unix_nano = scalar(map)?,
            F::TimeUnixNano => self.time_unix_nano = scalar(map)?,
            F::Count => self.count = scalar(map)?,
            F::Sum => self.sum = optional(map)?,
            F::Scale => self.scale = scalar(map)?,
            F::ZeroCount => self.zero_count = scalar(map)?,
            F::Positive => self.positive = nested(map, path)?,
            F::Negative => self.negative = nested(map, path)?,
            F::Flags => self.flags = scalar(map)?,
            F::Exemplars => self.exemplars = repeated(map, path)?,
            F::Min => self.min = optional(map)?,
            F::Max => self.max = optional(map)?,
            F::ZeroThreshold => self.zero_threshold = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    BucketsField {
        Offset = "offset",
        BucketCounts = "bucketCounts" | "bucket_counts",
    }
}

impl JsonMessage for Buckets {
    const NAME: &'static str = "ExponentialHistogramDataPoint.Buckets";
    type Field = BucketsField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: BucketsField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            BucketsField::Offset => self.offset = scalar(map)?,
            BucketsField::BucketCounts => self.bucket_counts = numbers(map, path)?,
        }
        Ok(())
    }
}

fields! {
    SummaryDataPointField {
        Attributes = "attributes",
        StartTimeUnixNano = "startTimeUnixNano" | "start_time_unix_nano",
        TimeUnixNano = "timeUnixNano" | "time_unix_nano",
        Count = "count",
        Sum = "sum",
        QuantileValues = "quantileValues" | "quantile_values",
        Flags = "flags",
    }
}

impl JsonMessage for SummaryDataPoint {
    const NAME: &'static str = "SummaryDataPoint";
    type Field = SummaryDataPointField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: SummaryDataPointField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        type F = SummaryDataPointField;
        match field {
            F::Attributes => self.attributes = repeated(map, path)?,
            F::StartTimeUnixNano => self.start_time_unix_nano = scalar(map)?,
            F::TimeUnixNano => self.time_unix_nano = scalar(map)?,
            F::Count => self.count = scalar(map)?,
            F::Sum => self.sum = scalar(map)?,
            F::QuantileValues => self.quantile_values = repeated(map, path)?,
            F::Flags => self.flags = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    ValueAtQuantileField {
        Quantile = "quantile",
        Value = "value",
    }
}

impl JsonMessage for ValueAtQuantile {
    const NAME: &'static str = "SummaryDataPoint.ValueAtQuantile";
    type Field = ValueAtQuantileField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ValueAtQuantileField,
        map: &mut A,
        _path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ValueAtQuantileField::Quantile => self.quantile = scalar(map)?,
            ValueAtQuantileField::Value => self.value = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    ExemplarField {
        FilteredAttributes = "filteredAttributes" | "filtered_attributes",
        TimeUnixNano = "timeUnixNano" | "time_unix_nano",
        AsDouble = "asDouble" | "as_double",
        AsInt = "asInt" | "as_int",
        SpanId = "spanId" | "span_id",
        TraceId = "traceId" | "trace_id",
    }
}

/// Every exemplar is kept by a bounded decoding: its ids are optional (empty when it was not
/// recorded in a sampled span), and a wrong length is malformed, not invalid.
impl JsonMessage for Exemplar {
    const NAME: &'static str = "Exemplar";
    type Field = ExemplarField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ExemplarField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        use exemplar::Value;

        let value = match field {
            ExemplarField::FilteredAttributes => {
                self.filtered_attributes = repeated(map, path)?;
                return Ok(());
            }
            ExemplarField::TimeUnixNano => {
                self.time_unix_nano = scalar(map)?;
                return Ok(());
            }
            ExemplarField::SpanId => {
                self.span_id = map.next_value_seed(HexId::SPAN_ID)?;
                return Ok(());
            }
            ExemplarField::TraceId => {
                self.trace_id = map.next_value_seed(HexId::TRACE_ID)?;
                return Ok(());
            }
            // The members of the oneof `value`.
            ExemplarField::AsDouble => optional(map)?.map(Value::AsDouble),
            ExemplarField::AsInt => optional(map)?.map(Value::AsInt),
        };
        set_oneof(&mut self.value, value, field.name(), EXEMPLAR_VALUE)
    }
}

const EXEMPLAR_VALUE: Oneof<exemplar::Value> = Oneof {
    message: "Exemplar",
    oneof: "value",
    member_name: |value| match value {
        exemplar::Value::AsDouble(_) => "asDouble",
        exemplar::Value::AsInt(_) => "asInt",
    },
};

pub(super) fn write_resource_metrics(out: &mut Vec<u8>, rm: &ResourceMetrics) {
    let mut o = Obj::start(out);
    o.message("resource", rm.resource.as_ref(), write_resource);
    o.list("scopeMetrics", &rm.scope_metrics, write_scope_metrics);
    o.string("schemaUrl", &rm.schema_url);
    o.end();
}

fn write_scope_metrics(out: &mut Vec<u8>, sm: &ScopeMetrics) {
    let mut o = Obj::start(out);
    o.message("scope", sm.scope.as_ref(), write_scope);
    o.list("metrics", &sm.metrics, write_metric);
    o.string("schemaUrl", &sm.schema_url);
    o.end();
}

fn write_metric(out: &mut Vec<u8>, metric: &Metric) {
    use metric::Data;

    let mut o = Obj::start(out);
    o.string("name", &metric.name);
    o.string("description", &metric.description);
    o.string("unit", &metric.unit);
    // A oneof member is written whenever it is set, empty or not.
    match &metric.data {
        None => {}
        Some(Data::Gauge(gauge)) => {
            let mut inner = Obj::start(o.key("gauge"));
            inner.list("dataPoints", &gauge.data_points, write_number_data_point);
            inner.end();
        }
        Some(Data::Sum(sum)) => {
            let mut inner = Obj::start(o.key("sum"));
            inner.list("dataPoints", &sum.data_points, write_number_data_point);
            inner.i32("aggregationTemporality", sum.aggregation_temporality);
            inner.bool("isMonotonic", sum.is_monotonic);
            inner.end();
        }
        Some(Data::Histogram(histogram)) => {
            let mut inner = Obj::start(o.key("histogram"));
            inner.list(
                "dataPoints",
                &histogram.data_points,
                write_histogram_data_point,
            );
            inner.i32("aggregationTemporality", histogram.aggregation_temporality);
            inner.end();
        }
        Some(Data::ExponentialHistogram(histogram)) => {
            let mut inner = Obj::start(o.key("exponentialHistogram"));
            inner.list(
                "dataPoints",
                &histogram.data_points,
                write_exponential_histogram_data_point,
            );
            inner.i32("aggregationTemporality", histogram.aggregation_temporality);
            inner.end();
        }
        Some(Data::Summary(summary)) => {
            let mut inner = Obj::start(o.key("summary"));
            inner.list("dataPoints", &summary.data_points, write_summary_data_point);
            inner.end();
        }
    }
    o.list("metadata", &metric.metadata, write_key_value);
    o.end();
}

fn write_number_data_point(out: &mut Vec<u8>, point: &NumberDataPoint) {
    use number_data_point::Value;

    let mut o = Obj::start(out);
    o.list("attributes", &point.attributes, write_key_value);
    o.u64("startTimeUnixNano", point.start_time_unix_nano);
    o.u64("timeUnixNano", point.time_unix_nano);
    match point.value {
        None => {}
        Some(Value::AsDouble(d)) => write_f64(o.key("asDouble"), d),
        Some(Value::AsInt(i)) => write_i64_string(o.key("asInt"), i),
    }
    o.list("exemplars", &point.exemplars, write_exemplar);
    o.u32("flags", point.flags);
    o.end();
}

fn write_histogram_data_point(out: &mut Vec<u8>, point: &HistogramDataPoint) {
    let mut o = Obj::start(out);
    o.list("attributes", &point.attributes, write_key_value);
    o.u64("startTimeUnixNano", point.start_time_unix_nano);
    o.u64("timeUnixNano", point.time_unix_nano);
    o.u64("count", point.count);
    o.optional_f64("sum", point.sum);
    o.u64s("bucketCounts", &point.bucket_counts);
    o.f64s("explicitBounds", &point.explicit_bounds);
    o.list("exemplars", &point.exemplars, write_exemplar);
    o.u32("flags", point.flags);
    o.optional_f64("min", point.min);
    o.optional_f64("max", point.max);
    o.end();
}

fn write_exponential_histogram_data_point(
    out: &mut Vec<u8>,
    point: &ExponentialHistogramDataPoint,
) {
    let mut o = Obj::start(out);
    o.list("attributes", &point.attributes, write_key_value);
    o.u64("startTimeUnixNano", point.start_time_unix_nano);
    o.u64("timeUnixNano", point.time_unix_nano);
    o.u64("count", point.count);
    o.optional_f64("sum", point.sum);
    o.i32("scale", point.scale);
    o.u64("zeroCount", point.zero_count);
    o.message("positive", point.positive.as_ref(), write_buckets);
    o.message("negative", point.negative.as_ref(), write_buckets);
    o.u32("flags", point.flags);
    o.list("exemplars", &point.exemplars, write_exemplar);
    o.optional_f64("min", point.min);
    o.optional_f64("max", point.max);
    o.f64("zeroThreshold", point.zero_threshold);
    o.end();
}

fn write_buckets(out: &mut Vec<u8>, buckets: &Buckets) {
    let mut o = Obj::start(out);
    o.i32("offset", buckets.offset);
    o.u64s("bucketCounts", &buckets.bucket_counts);
    o.end();
}

fn write_summary_data_point(out: &mut Vec<u8>, point: &SummaryDataPoint) {
    let mut o = Obj::start(out);
    o.list("attributes", &point.attributes, write_key_value);
    o.u64("startTimeUnixNano", point.start_time_unix_nano);
    o.u64("timeUnixNano", point.time_unix_nano);
    o.u64("count", point.count);
    o.f64("sum", point.sum);
    o.list(
        "quantileValues",
        &point.quantile_values,
        write_value_at_quantile,
    );
    o.u32("flags", point.flags);
    o.end();
}

fn write_value_at_quantile(out: &mut Vec<u8>, q: &ValueAtQuantile) {
    let mut o = Obj::start(out);
    o.f64("quantile", q.quantile);
    o.f64("value", q.value);
    o.end();
}

fn write_exemplar(out: &mut Vec<u8>, exemplar: &Exemplar) {
    use exemplar::Value;

    let mut o = Obj::start(out);
    o.list(
        "filteredAttributes",
        &exemplar.filtered_attributes,
        write_key_value,
    );
    o.u64("timeUnixNano", exemplar.time_unix_nano);
    match exemplar.value {
        None => {}
        Some(Value::AsDouble(d)) => write_f64(o.key("asDouble"), d),
        Some(Value::AsInt(i)) => write_i64_string(o.key("asInt"), i),
    }
    o.hex("spanId", &exemplar.span_id);
    o.hex("traceId", &exemplar.trace_id);
    o.end();
}
