//! The span metrics themselves: series keyed by resource and dimensions, counts weighted by
//! each span's adjusted count, and the OTLP metrics a flush makes of them. Pure: time comes
//! in as Unix nanoseconds, so tests drive it.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    exponential_histogram_data_point::Buckets, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, span::SpanKind, status};
use prost::Message;

use super::config::{SpanMetricsConfig, Temporality};
use crate::connectors::spans::{Attributes, SpanRef, Value, for_each_resource};
use crate::sampling::adjusted::adjusted_count;

pub use crate::connectors::OVERFLOW_ATTRIBUTE;

/// The instrumentation scope of the metrics, as the OpenTelemetry Collector names it.
pub const SCOPE_NAME: &str = "spanmetricsconnector";

/// The first scale of an exponential histogram: fine enough for any duration, lowered as
/// the range of values needs.
const MAX_SCALE: i32 = 20;

/// Every series, by resource.
pub struct Aggregator {
    config: SpanMetricsConfig,
    bounds: Vec<f64>,
    resources: HashMap<Vec<u8>, ResourceState>,
    /// When the previous flush happened (or the aggregator was made): the start of a delta
    /// interval.
    last_flush: u64,
}

struct ResourceState {
    attributes: Vec<KeyValue>,
    series: HashMap<Vec<u8>, Series>,
    /// Spans beyond the cardinality limit.
    overflow: Option<Series>,
}

struct Series {
    attributes: Vec<KeyValue>,
    /// When the series started (for cumulative points).
    start: u64,
    /// The last span's arrival (for `metrics_expiration`).
    last_seen: u64,
    /// Weighted calls.
    calls: f64,
    duration: Durations,
}

/// The duration histogram of one series, with weighted counts.
enum Durations {
    Disabled,
    Explicit {
        counts: Vec<f64>,
        sum: f64,
        min: f64,
        max: f64,
    },
    Exponential(Exponential),
}

impl Aggregator {
    /// An aggregator for `config`, starting at `now`.
    pub fn new(config: SpanMetricsConfig, now: u64) -> Self {
        Self {
            bounds: config.bounds(),
            config,
            resources: HashMap::new(),
            last_flush: now,
        }
    }

    /// Counts the spans of `resources` at `now`; returns how many were counted (spans of a
    /// resource without `service.name` are not, as in the OpenTelemetry Collector).
    pub fn add(&mut self, resources: &[ResourceSpans], now: u64) -> usize {
        self.add_from(None::<std::iter::Empty<&[u8]>>, resources, now)
    }

    /// As [`Aggregator::add`], for a batch held as protobuf: `parts` are export requests
    /// that passed validation, read in place.
    pub fn add_protobuf<'p>(&mut self, parts: impl Iterator<Item = &'p [u8]>, now: u64) -> usize {
        self.add_from(Some(parts), &[], now)
    }

    fn add_from<'p>(
        &mut self,
        parts: Option<impl Iterator<Item = &'p [u8]>>,
        resources: &'p [ResourceSpans],
        now: u64,
    ) -> usize {
        let mut counted = 0;
        let mut key = Vec::new();
        for_each_resource(
            parts,
            || resources,
            |resource, spans| counted += self.add_resource(resource, spans, now, &mut key),
        );
        counted
    }

    fn add_resource(
        &mut self,
        resource_attributes: &[KeyValue],
        spans: &mut dyn Iterator<Item = SpanRef<'_>>,
        now: u64,
        key: &mut Vec<u8>,
    ) -> usize {
        let Some(service) = resource_attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
        else {
            return 0;
        };
        let mut counted = 0;
        let resource_key = self.resource_key(resource_attributes);
        let limit = self.config.aggregation_cardinality_limit;
        let state = self
            .resources
            .entry(resource_key)
            .or_insert_with(|| ResourceState {
                attributes: resource_attributes.to_vec(),
                series: HashMap::new(),
                overflow: None,
            });
        let (config, bounds) = (&self.config, &self.bounds);
        let unit = config.histogram.unit.nanos();
        for span in spans {
            counted += 1;
            key.clear();
            series_key(config, service, &span, resource_attributes, key);
            // Found by the borrowed key; the key and attributes are built only for a new
            // series.
            if let Some(series) = state.series.get_mut(key.as_slice()) {
                series.record(&span, unit, bounds, now);
                continue;
            }
            let new_series = |attributes| Series {
                attributes,
                start: now,
                last_seen: now,
                calls: 0.0,
                duration: Durations::new(config, bounds),
            };
            let series = if limit == 0 || state.series.len() < limit {
                let attributes = series_attributes(config, service, &span, resource_attributes);
                state
                    .series
                    .entry(key.clone())
                    .or_insert_with(|| new_series(attributes))
            } else {
                state.overflow.get_or_insert_with(|| {
                    new_series(vec![string_attribute(OVERFLOW_ATTRIBUTE, "true")])
                })
            };
            series.record(&span, unit, bounds, now);
        }
        counted
    }

    fn resource_key(&self, attributes: &[KeyValue]) -> Vec<u8> {
        let keys = &self.config.resource_metrics_key_attributes;
        let mut values: Vec<KeyValue> = attributes
            .iter()
            .filter(|kv| keys.is_empty() || keys.contains(&kv.key))
            .cloned()
            .collect();
        values.sort_by(|a, b| a.key.cmp(&b.key));
        KeyValueList { values }.encode_to_vec()
    }

    /// The metrics at `now`, one `ResourceMetrics` per resource; forgets expired series, and
    /// with delta temporality everything it reported.
    pub fn flush(&mut self, now: u64) -> Vec<ResourceMetrics> {
        let expiration = self.config.metrics_expiration.get().as_nanos() as u64;
        if expiration > 0 {
            for state in self.resources.values_mut() {
                state
                    .series
                    .retain(|_, s| now.saturating_sub(s.last_seen) < expiration);
                if state
                    .overflow
                    .as_ref()
                    .is_some_and(|s| now.saturating_sub(s.last_seen) >= expiration)
                {
                    state.overflow = None;
                }
            }
            self.resources
                .retain(|_, r| !r.series.is_empty() || r.overflow.is_some());
        }
        let delta = self.config.aggregation_temporality == Temporality::Delta;
        let temporality = if delta {
            AggregationTemporality::Delta
        } else {
            AggregationTemporality::Cumulative
        } as i32;
        let name = |metric: &str| match self.config.namespace.as_str() {
            "" => metric.to_string(),
            ns => format!("{ns}.{metric}"),
        };
        let mut resources: Vec<(&Vec<u8>, &ResourceState)> = self.resources.iter().collect();
        resources.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::new();
        for (_, state) in resources {
            let mut series: Vec<(&Vec<u8>, &Series)> = state.series.iter().collect();
            series.sort_by(|a, b| a.0.cmp(b.0));
            let all = series
                .into_iter()
                .map(|(_, s)| s)
                .chain(state.overflow.as_ref());
            let mut calls = Vec::new();
            let mut explicit = Vec::new();
            let mut exponential = Vec::new();
            for s in all {
                let start = if delta { self.last_flush } else { s.start };
                calls.push(NumberDataPoint {
                    attributes: s.attributes.clone(),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsInt(s.calls.round() as i64)),
                    ..Default::default()
                });
                match &s.duration {
                    Durations::Disabled => {}
                    Durations::Explicit {
                        counts,
                        sum,
                        min,
                        max,
                    } => {
                        let bucket_counts = rounded_counts(counts);
                        explicit.push(HistogramDataPoint {
                            attributes: s.attributes.clone(),
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            count: bucket_counts.iter().sum(),
                            sum: Some(*sum),
                            bucket_counts,
                            explicit_bounds: self.bounds.clone(),
                            min: min.is_finite().then_some(*min),
                            max: max.is_finite().then_some(*max),
                            ..Default::default()
                        });
                    }
                    Durations::Exponential(e) => {
                        exponential.push(e.data_point(s.attributes.clone(), start, now));
                    }
                }
            }
            let mut metrics = vec![Metric {
                name: name("calls"),
                data: Some(metric::Data::Sum(Sum {
                    data_points: calls,
                    aggregation_temporality: temporality,
                    is_monotonic: true,
                })),
                ..Default::default()
            }];
            let unit = self.config.histogram.unit.name().to_string();
            if !explicit.is_empty() {
                metrics.push(Metric {
                    name: name("duration"),
                    unit,
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: explicit,
                        aggregation_temporality: temporality,
                    })),
                    ..Default::default()
                });
            } else if !exponential.is_empty() {
                metrics.push(Metric {
                    name: name("duration"),
                    unit,
                    data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: exponential,
                        aggregation_temporality: temporality,
                    })),
                    ..Default::default()
                });
            }
            out.push(ResourceMetrics {
                resource: Some(Resource {
                    attributes: state.attributes.clone(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
        }
        if delta {
            self.resources.clear();
        }
        self.last_flush = now;
        out
    }

    /// Series held (the overflow series included).
    pub fn series(&self) -> usize {
        self.resources
            .values()
            .map(|r| r.series.len() + usize::from(r.overflow.is_some()))
            .sum()
    }
}

/// The identity of `span`'s series within its resource, written to `out`: the values of the
/// dimensions of [`series_attributes`] in the same order, each length-delimited (with a
/// marker for the configured ones: absent, found, or the default), so no two series share
/// one. Made for every span without building the attributes themselves.
fn series_key(
    config: &SpanMetricsConfig,
    service: &AnyValue,
    span: &SpanRef<'_>,
    resource: &[KeyValue],
    out: &mut Vec<u8>,
) {
    use prost::encoding::encode_varint;
    let excluded = |name: &str| config.exclude_dimensions.iter().any(|e| e == name);
    let bytes = |out: &mut Vec<u8>, b: &[u8]| {
        encode_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    };
    if !excluded("service.name") {
        service
            .encode_length_delimited(out)
            .expect("a Vec grows as needed");
    }
    if !excluded("span.name") {
        bytes(out, span.name.as_bytes());
    }
    // Values the attributes would show alike (an unknown kind or code as unspecified, unset)
    // make one key alike.
    if !excluded("span.kind") {
        let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
        encode_varint(kind as u64, out);
    }
    if !excluded("status.code") {
        let code =
            status::StatusCode::try_from(span.status_code).unwrap_or(status::StatusCode::Unset);
        encode_varint(code as u64, out);
    }
    for d in &config.dimensions {
        match (dimension(span, resource, &d.name), &d.default) {
            (Some(v), _) => {
                out.push(1);
                v.encode_length_delimited(out);
            }
            (None, Some(default)) => {
                out.push(2);
                bytes(out, default.as_bytes());
            }
            (None, None) => out.push(0),
        }
    }
}

/// A series' attributes for `span`: the default dimensions not excluded, then the configured
/// ones found in the span's attributes, its resource's, or their `default`.
fn series_attributes(
    config: &SpanMetricsConfig,
    service: &AnyValue,
    span: &SpanRef<'_>,
    resource: &[KeyValue],
) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(4 + config.dimensions.len());
    let excluded = |name: &str| config.exclude_dimensions.iter().any(|e| e == name);
    if !excluded("service.name") {
        out.push(KeyValue {
            key: "service.name".into(),
            value: Some(service.clone()),
            ..Default::default()
        });
    }
    if !excluded("span.name") {
        out.push(string_attribute("span.name", span.name));
    }
    if !excluded("span.kind") {
        let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
        out.push(string_attribute("span.kind", kind.as_str_name()));
    }
    if !excluded("status.code") {
        let code =
            status::StatusCode::try_from(span.status_code).unwrap_or(status::StatusCode::Unset);
        out.push(string_attribute("status.code", code.as_str_name()));
    }
    for d in &config.dimensions {
        let found = dimension(span, resource, &d.name).map(|v| v.to_any_value());
        match (found, &d.default) {
            (Some(v), _) => out.push(KeyValue {
                key: d.name.clone(),
                value: Some(v),
                ..Default::default()
            }),
            (None, Some(default)) => out.push(string_attribute(&d.name, default)),
            (None, None) => {}
        }
    }
    out
}

/// The value of dimension `name`: the first attribute so named in the span's attributes,
/// else in its resource's; `None` when that attribute has no value.
fn dimension<'s>(span: &SpanRef<'s>, resource: &'s [KeyValue], name: &str) -> Option<Value<'s>> {
    span.attributes
        .get(name)
        .unwrap_or_else(|| Attributes::Decoded(resource).get(name).flatten())
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

impl Series {
    fn record(&mut self, span: &SpanRef<'_>, unit_nanos: f64, bounds: &[f64], now: u64) {
        let weight = adjusted_count(span.trace_state);
        let nanos = span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano);
        self.calls += weight;
        self.last_seen = now;
        self.duration
            .record(nanos as f64 / unit_nanos, weight, bounds);
    }
}

impl Durations {
    fn new(config: &SpanMetricsConfig, bounds: &[f64]) -> Self {
        let h = &config.histogram;
        if h.disable {
            Durations::Disabled
        } else if let Some(e) = &h.exponential {
            Durations::Exponential(Exponential::new(e.max_size as usize))
        } else {
            Durations::Explicit {
                counts: vec![0.0; bounds.len() + 1],
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
            }
        }
    }

    fn record(&mut self, value: f64, weight: f64, bounds: &[f64]) {
        match self {
            Durations::Disabled => {}
            Durations::Explicit {
                counts,
                sum,
                min,
                max,
            } => {
                // Bucket i holds values up to bounds[i] included; the last one the rest.
                counts[bounds.partition_point(|&bound| bound < value)] += weight;
                *sum += value * weight;
                *min = min.min(value);
                *max = max.max(value);
            }
            Durations::Exponential(e) => e.record(value, weight),
        }
    }
}

/// Whole bucket counts for weighted ones that add up to the rounded total, as the series'
/// `calls` does: each bucket gets the difference of the rounded running sums, so no rounding
/// error piles up across buckets (rounding each bucket on its own can leave the histogram's
/// count one or more off its `calls`).
fn rounded_counts(weighted: &[f64]) -> Vec<u64> {
    let mut running = 0.0;
    let mut before = 0u64;
    weighted
        .iter()
        .map(|w| {
            running += w;
            let now = running.round() as u64;
            let count = now.saturating_sub(before);
            before = before.max(now);
            count
        })
        .collect()
}

/// A base-2 exponential histogram of positive values with weighted counts: bucket `i` at
/// scale `s` holds values in `(2^(i / 2^s), 2^((i + 1) / 2^s)]`. It starts at scale 20 and
/// halves its resolution (merging buckets in pairs) whenever the values would need more than
/// `max_size` buckets.
struct Exponential {
    max_size: usize,
    scale: i32,
    zero_count: f64,
    offset: i32,
    counts: Vec<f64>,
    sum: f64,
    min: f64,
    max: f64,
}

impl Exponential {
    fn new(max_size: usize) -> Self {
        Self {
            max_size,
            scale: MAX_SCALE,
            zero_count: 0.0,
            offset: 0,
            counts: Vec::new(),
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    fn index(value: f64, scale: i32) -> i32 {
        ((value.log2() * 2f64.powi(scale)).ceil() - 1.0) as i32
    }

    fn record(&mut self, value: f64, weight: f64) {
        self.sum += value * weight;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if value <= 0.0 {
            self.zero_count += weight;
            return;
        }
        let mut index = Self::index(value, self.scale);
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(weight);
            return;
        }
        // Lower the scale until the buckets in use and the new one fit in max_size.
        let (mut low, mut high) = (
            self.offset.min(index),
            (self.offset + self.counts.len() as i32 - 1).max(index),
        );
        let mut by = 0;
        while (high - low + 1) as usize > self.max_size {
            low >>= 1;
            high >>= 1;
            by += 1;
        }
        if by > 0 {
            self.downscale(by);
            index = Self::index(value, self.scale);
        }
        if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0.0, grow));
            self.offset = index;
        }
        let at = (index - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0.0);
        }
        self.counts[at] += weight;
    }

    /// Merges buckets: the scale drops by `by`, bucket `i` becomes bucket `i >> by`.
    fn downscale(&mut self, by: i32) {
        let offset = self.offset >> by;
        let mut merged: Vec<f64> = Vec::new();
        for (i, c) in self.counts.iter().enumerate() {
            let at = (((self.offset + i as i32) >> by) - offset) as usize;
            if at >= merged.len() {
                merged.resize(at + 1, 0.0);
            }
            merged[at] += c;
        }
        self.offset = offset;
        self.counts = merged;
        self.scale -= by;
    }

    fn data_point(
        &self,
        attributes: Vec<KeyValue>,
        start: u64,
        now: u64,
    ) -> ExponentialHistogramDataPoint {
        let mut rounded = rounded_counts(
            &std::iter::once(self.zero_count)
                .chain(self.counts.iter().copied())
                .collect::<Vec<_>>(),
        );
        let zero_count = rounded.remove(0);
        let bucket_counts = rounded;
        ExponentialHistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: zero_count + bucket_counts.iter().sum::<u64>(),
            sum: Some(self.sum),
            scale: self.scale,
            zero_count,
            positive: Some(Buckets {
                offset: self.offset,
                bucket_counts,
            }),
            negative: Some(Buckets::default()),
            min: self.min.is_finite().then_some(self.min),
            max: self.max.is_finite().then_some(self.max),
            ..Default::default()
        }
    }
}
