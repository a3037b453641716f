//! The metrics batch a plugin works on: typed, mutable views of resources, scopes, metrics and
//! data points of every type, as [`crate::Batch`] is for spans and [`crate::LogBatch`] for log
//! records. Resources and scopes are edited through the same [`ResourceMut`] and [`ScopeMut`]
//! as spans' and logs'. Every change is made to the plugin's copy at once (so later reads see
//! it) and recorded as an [`Edit`] for the host, which applies it to its own copy of the batch
//! with [`crate::wire::edit::apply_metrics`].
//!
//! View mode (`for_each_*_view`) reads the protobuf in place without decoding it and only
//! records edits, as for spans and logs; a plugin uses one mode or the other in a call.

use std::cell::OnceCell;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, MetricsData, NumberDataPoint,
    ResourceMetrics, SummaryDataPoint, metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::attributes;
use crate::batch::{
    Mode, ResourceMut, ResourceViewMut, ScopeMut, ScopeViewMut, record, remove_recorded,
    remove_viewed, set_recorded, view_attribute_methods, view_bytes,
};
use crate::edit::{Edit, Output, Target, encode_metrics_batch};
use crate::value::{Value, as_str};
use crate::view::{self, AttributesView, DataPointView};
use crate::wire::edit_metrics::{point_count, prune};

/// One batch of metrics, as handed to [`crate::Plugin::process_metrics`].
///
/// The batch arrives as protobuf (`MetricsData`) and is decoded on first access, so a plugin
/// that has nothing to do on metrics never pays for decoding.
#[derive(Debug, Default)]
pub struct MetricBatch {
    raw: Vec<u8>,
    data: OnceCell<Vec<ResourceMetrics>>,
    edits: Vec<Edit>,
    /// By batch index.
    dropped_points: Vec<bool>,
    dropped_metrics: Vec<bool>,
    replaced: bool,
    encoded: Option<Vec<u8>>,
    mode: Mode,
    /// `data` encoded, for view mode over a batch that was built rather than received.
    view_buf: OnceCell<Vec<u8>>,
}

impl MetricBatch {
    /// A batch holding `data`.
    pub fn new(data: Vec<ResourceMetrics>) -> Self {
        Self {
            data: OnceCell::from(data),
            ..Self::default()
        }
    }

    /// A batch that decodes `raw` (`MetricsData`, protobuf) when first looked at. Bytes that
    /// do not decode make the first access panic: the host only sends what it checked itself.
    pub fn from_encoded(raw: Vec<u8>) -> Self {
        Self {
            raw,
            ..Self::default()
        }
    }

    fn data(&self) -> &Vec<ResourceMetrics> {
        self.data.get_or_init(|| {
            MetricsData::decode(&self.raw[..])
                .expect("the host sends valid OTLP protobuf")
                .resource_metrics
        })
    }

    /// Decodes if needed, sizes the drop marks, and hands out the data with the edit list.
    fn parts(&mut self) -> Parts<'_> {
        self.mode = self.mode.enter(Mode::Mutable, self.replaced);
        let (points, metrics) = (self.point_count(), self.metric_count());
        self.raw = Vec::new();
        if self.dropped_points.len() < points {
            self.dropped_points.resize(points, false);
        }
        if self.dropped_metrics.len() < metrics {
            self.dropped_metrics.resize(metrics, false);
        }
        Parts {
            data: self.data.get_mut().expect("decoded by point_count"),
            edits: (!self.replaced).then_some(&mut self.edits),
            dropped_points: &mut self.dropped_points,
            dropped_metrics: &mut self.dropped_metrics,
        }
    }

    /// The batch as it is now (dropped points and metrics included until the host removes
    /// them).
    pub fn resource_metrics(&self) -> &[ResourceMetrics] {
        self.data()
    }

    /// How many data points the batch holds, of every metric type.
    pub fn point_count(&self) -> usize {
        self.metrics().map(point_count).sum()
    }

    /// How many metrics the batch holds.
    pub fn metric_count(&self) -> usize {
        self.metrics().count()
    }

    fn metrics(&self) -> impl Iterator<Item = &Metric> {
        self.data()
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
    }

    /// The edits recorded so far.
    pub fn edits(&self) -> &[Edit] {
        &self.edits
    }

    /// Calls `f` for each resource.
    pub fn for_each_resource(&mut self, mut f: impl FnMut(&mut ResourceMut<'_>)) {
        let Parts {
            data, mut edits, ..
        } = self.parts();
        for (i, rm) in data.iter_mut().enumerate() {
            f(&mut ResourceMut {
                resource: rm.resource.get_or_insert_with(Default::default),
                target: Target::Resource(i as u32),
                edits: edits.as_deref_mut(),
            });
        }
    }

    /// Calls `f` for each instrumentation scope.
    pub fn for_each_scope(&mut self, mut f: impl FnMut(&mut ScopeMut<'_>)) {
        let Parts {
            data, mut edits, ..
        } = self.parts();
        let mut i = 0u32;
        for rm in data.iter_mut() {
            for sm in &mut rm.scope_metrics {
                f(&mut ScopeMut {
                    resource: rm.resource.as_ref(),
                    scope: sm.scope.get_or_insert_with(Default::default),
                    target: Target::Scope(i),
                    edits: edits.as_deref_mut(),
                });
                i += 1;
            }
        }
    }

    /// Calls `f` for each metric that has not been dropped, in batch order.
    pub fn for_each_metric(&mut self, mut f: impl FnMut(&mut MetricMut<'_>)) {
        let Parts {
            data,
            mut edits,
            dropped_metrics,
            ..
        } = self.parts();
        let mut i = 0usize;
        for rm in data.iter() {
            for sm in &rm.scope_metrics {
                for metric in &sm.metrics {
                    if !dropped_metrics[i] {
                        f(&mut MetricMut {
                            resource: rm.resource.as_ref(),
                            scope: sm.scope.as_ref(),
                            metric,
                            index: i as u32,
                            edits: edits.as_deref_mut(),
                            dropped: &mut dropped_metrics[i],
                        });
                    }
                    i += 1;
                }
            }
        }
    }

    /// Calls `f` for each data point (of every metric type) that has not been dropped, with
    /// its metric's dropped ones left out, in batch order.
    pub fn for_each_data_point(&mut self, mut f: impl FnMut(&mut DataPointMut<'_>)) {
        let Parts {
            data,
            mut edits,
            dropped_points,
            dropped_metrics,
        } = self.parts();
        let (mut m, mut p) = (0usize, 0usize);
        for rm in data.iter_mut() {
            let resource = rm.resource.as_ref();
            for sm in &mut rm.scope_metrics {
                let scope = sm.scope.as_ref();
                for metric in &mut sm.metrics {
                    let Metric {
                        name,
                        description,
                        unit,
                        data,
                        ..
                    } = metric;
                    let info = MetricInfo {
                        name,
                        description,
                        unit,
                        metric_type: MetricType::of(data.as_ref()),
                    };
                    let skip = dropped_metrics[m];
                    m += 1;
                    let points: Vec<PointMut<'_>> = match data {
                        None => Vec::new(),
                        Some(metric::Data::Gauge(g)) => {
                            g.data_points.iter_mut().map(PointMut::Number).collect()
                        }
                        Some(metric::Data::Sum(s)) => {
                            s.data_points.iter_mut().map(PointMut::Number).collect()
                        }
                        Some(metric::Data::Histogram(h)) => {
                            h.data_points.iter_mut().map(PointMut::Histogram).collect()
                        }
                        Some(metric::Data::ExponentialHistogram(h)) => h
                            .data_points
                            .iter_mut()
                            .map(PointMut::ExponentialHistogram)
                            .collect(),
                        Some(metric::Data::Summary(s)) => {
                            s.data_points.iter_mut().map(PointMut::Summary).collect()
                        }
                    };
                    for point in points {
                        if !skip && !dropped_points[p] {
                            f(&mut DataPointMut {
                                resource,
                                scope,
                                metric: info,
                                point,
                                index: p as u32,
                                edits: edits.as_deref_mut(),
                                dropped: &mut dropped_points[p],
                            });
                        }
                        p += 1;
                    }
                }
            }
        }
    }

    /// Calls `f` for each resource, in view mode: read in place (the batch is never decoded),
    /// changes only recorded, so they are not visible to later reads within this call.
    pub fn for_each_resource_view(&mut self, mut f: impl FnMut(&mut ResourceViewMut<'_>)) {
        self.mode = self.mode.enter(Mode::View, self.replaced);
        let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_metrics_batch);
        let edits = &mut self.edits;
        // Resources and scopes have the same outline in every signal's batch.
        view::walk_logs(
            bytes,
            |i, resource| {
                let start = edits.len();
                f(&mut ResourceViewMut {
                    resource,
                    target: Target::Resource(i),
                    edits: &mut *edits,
                    start,
                });
            },
            None,
            None,
        );
    }

    /// Calls `f` for each instrumentation scope, in view mode.
    pub fn for_each_scope_view(&mut self, mut f: impl FnMut(&mut ScopeViewMut<'_>)) {
        self.mode = self.mode.enter(Mode::View, self.replaced);
        let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_metrics_batch);
        let edits = &mut self.edits;
        view::walk_logs(
            bytes,
            |_, _| {},
            Some(&mut |i, resource, scope| {
                let start = edits.len();
                f(&mut ScopeViewMut {
                    resource,
                    scope,
                    target: Target::Scope(i),
                    edits: &mut *edits,
                    start,
                });
            }),
            None,
        );
    }

    /// Calls `f` for each data point (of every metric type) that has not been dropped, in
    /// batch order, in view mode.
    pub fn for_each_data_point_view(&mut self, mut f: impl FnMut(&mut DataPointViewMut<'_>)) {
        self.mode = self.mode.enter(Mode::View, self.replaced);
        let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_metrics_batch);
        let edits = &mut self.edits;
        let dropped = &mut self.dropped_points;
        view::walk_metric_points(bytes, |point| {
            let i = point.index() as usize;
            if dropped.len() <= i {
                dropped.resize(i + 1, false);
            }
            if dropped[i] {
                return;
            }
            let start = edits.len();
            f(&mut DataPointViewMut {
                point,
                target: Target::DataPoint(i as u32),
                edits: &mut *edits,
                start,
                dropped: &mut dropped[i],
            });
        });
    }

    /// Replaces the whole batch: the escape hatch for changes edits cannot express. Edits
    /// made before are dropped; later changes through `for_each_*` go into the replacement.
    pub fn replace(&mut self, data: Vec<ResourceMetrics>) {
        self.data = OnceCell::from(data);
        self.raw = Vec::new();
        self.edits.clear();
        self.dropped_points.clear();
        self.dropped_metrics.clear();
        self.replaced = true;
        self.mode = Mode::Unused;
    }

    /// Records an edit without applying it to this copy. The host checks it like any other.
    pub fn push_edit(&mut self, edit: Edit) {
        self.edits.push(edit);
    }

    /// Replaces the batch with an already encoded `MetricsData` (protobuf), which the host
    /// decodes and checks.
    pub fn replace_encoded(&mut self, bytes: Vec<u8>) {
        self.encoded = Some(bytes);
    }

    /// The batch with every change applied here, dropped points and metrics removed (and
    /// metrics, scopes and resources left empty by them).
    pub fn into_resource_metrics(mut self) -> Vec<ResourceMetrics> {
        if let Some(bytes) = self.encoded.take() {
            return crate::edit::decode_metrics_replacement(&bytes).unwrap_or_default();
        }
        if self.mode == Mode::View {
            // The host's own applier on the bytes the views read.
            let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_metrics_batch);
            let edited = crate::wire::edit::apply_metrics(bytes, self.edits)
                .expect("view-mode edits index the batch they were recorded on");
            return MetricsData::decode(edited.bytes.as_slice())
                .expect("the edit applier writes valid protobuf")
                .resource_metrics;
        }
        self.data();
        let mut data = self.data.take().unwrap_or_default();
        if self
            .dropped_points
            .iter()
            .chain(&self.dropped_metrics)
            .any(|d| *d)
        {
            prune(&mut data, &self.dropped_points, &self.dropped_metrics);
        }
        data
    }

    /// What goes back to the host.
    pub fn into_output(self) -> Output {
        if let Some(bytes) = self.encoded {
            Output::Replace(bytes)
        } else if self.replaced {
            Output::Replace(encode_metrics_batch(&self.into_resource_metrics()))
        } else if self.edits.is_empty() {
            Output::Unchanged
        } else {
            Output::Edits(self.edits)
        }
    }
}

/// A data point in view mode: read in place, changes recorded for the host only.
pub struct DataPointViewMut<'a> {
    point: DataPointView<'a>,
    target: Target,
    edits: &'a mut Vec<Edit>,
    start: usize,
    dropped: &'a mut bool,
}

impl<'a> DataPointViewMut<'a> {
    view_attribute_methods!(point);

    /// The point as received, with its metric's name, its resource and scope.
    pub fn view(&self) -> DataPointView<'a> {
        self.point
    }

    /// Drops the point from the batch (its metric goes too when no point is left).
    pub fn drop_point(&mut self) {
        if !*self.dropped {
            *self.dropped = true;
            self.edits.push(Edit::DropDataPoint {
                point: self.point.index(),
            });
        }
    }
}

/// The decoded batch and what the views record into, borrowed apart.
struct Parts<'a> {
    data: &'a mut Vec<ResourceMetrics>,
    edits: Option<&'a mut Vec<Edit>>,
    dropped_points: &'a mut Vec<bool>,
    dropped_metrics: &'a mut Vec<bool>,
}

/// A metric's type, as its `data` field says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// The metric carries no data (and no data points).
    Empty,
    /// A gauge: number data points.
    Gauge,
    /// A sum (counter or up-down counter): number data points.
    Sum,
    /// A histogram with explicit bucket bounds.
    Histogram,
    /// An exponential histogram.
    ExponentialHistogram,
    /// A summary (quantiles).
    Summary,
}

impl MetricType {
    fn of(data: Option<&metric::Data>) -> Self {
        match data {
            None => MetricType::Empty,
            Some(metric::Data::Gauge(_)) => MetricType::Gauge,
            Some(metric::Data::Sum(_)) => MetricType::Sum,
            Some(metric::Data::Histogram(_)) => MetricType::Histogram,
            Some(metric::Data::ExponentialHistogram(_)) => MetricType::ExponentialHistogram,
            Some(metric::Data::Summary(_)) => MetricType::Summary,
        }
    }
}

/// A metric of the batch, with read access to its resource and scope.
pub struct MetricMut<'a> {
    resource: Option<&'a Resource>,
    scope: Option<&'a InstrumentationScope>,
    metric: &'a Metric,
    index: u32,
    edits: Option<&'a mut Vec<Edit>>,
    dropped: &'a mut bool,
}

impl MetricMut<'_> {
    /// The metric, data points included (read-only; edit points through
    /// [`MetricBatch::for_each_data_point`]).
    pub fn metric(&self) -> &Metric {
        self.metric
    }

    /// The metric's position in the batch.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The metric's name.
    pub fn name(&self) -> &str {
        &self.metric.name
    }

    /// The metric's description.
    pub fn description(&self) -> &str {
        &self.metric.description
    }

    /// The metric's unit (UCUM, e.g. `ms`, `By`).
    pub fn unit(&self) -> &str {
        &self.metric.unit
    }

    /// The metric's type.
    pub fn metric_type(&self) -> MetricType {
        MetricType::of(self.metric.data.as_ref())
    }

    /// How many data points the metric holds.
    pub fn point_count(&self) -> usize {
        point_count(self.metric)
    }

    /// The resource the metric belongs to.
    pub fn resource(&self) -> Option<&Resource> {
        self.resource
    }

    /// The value of resource attribute `key` (e.g. `service.name`).
    pub fn resource_attribute(&self, key: &str) -> Option<&AnyValue> {
        self.resource
            .and_then(|r| attributes::get(&r.attributes, key))
    }

    /// The resource's `service.name`.
    pub fn service_name(&self) -> Option<&str> {
        self.resource_attribute("service.name").and_then(as_str)
    }

    /// The instrumentation scope the metric belongs to.
    pub fn scope(&self) -> Option<&InstrumentationScope> {
        self.scope
    }

    /// Drops the metric, with all its data points, from the batch.
    pub fn drop_metric(&mut self) {
        if !*self.dropped {
            *self.dropped = true;
            let metric = self.index;
            record(&mut self.edits, || Edit::DropMetric { metric });
        }
    }
}

/// What a data point knows of its metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricInfo<'a> {
    /// The metric's name.
    pub name: &'a str,
    /// The metric's description.
    pub description: &'a str,
    /// The metric's unit.
    pub unit: &'a str,
    /// The metric's type.
    pub metric_type: MetricType,
}

/// A data point, of whichever type its metric has.
#[derive(Debug, Clone, Copy)]
pub enum DataPoint<'a> {
    /// A gauge's or sum's point.
    Number(&'a NumberDataPoint),
    /// A histogram's point.
    Histogram(&'a HistogramDataPoint),
    /// An exponential histogram's point.
    ExponentialHistogram(&'a ExponentialHistogramDataPoint),
    /// A summary's point.
    Summary(&'a SummaryDataPoint),
}

impl<'a> DataPoint<'a> {
    /// The point's attributes.
    pub fn attributes(self) -> &'a [KeyValue] {
        match self {
            DataPoint::Number(p) => &p.attributes,
            DataPoint::Histogram(p) => &p.attributes,
            DataPoint::ExponentialHistogram(p) => &p.attributes,
            DataPoint::Summary(p) => &p.attributes,
        }
    }

    /// When the point's value was recorded, nanoseconds since the Unix epoch.
    pub fn time_unix_nano(self) -> u64 {
        match self {
            DataPoint::Number(p) => p.time_unix_nano,
            DataPoint::Histogram(p) => p.time_unix_nano,
            DataPoint::ExponentialHistogram(p) => p.time_unix_nano,
            DataPoint::Summary(p) => p.time_unix_nano,
        }
    }

    /// When the series' aggregation started, nanoseconds since the Unix epoch (0 if unset).
    pub fn start_time_unix_nano(self) -> u64 {
        match self {
            DataPoint::Number(p) => p.start_time_unix_nano,
            DataPoint::Histogram(p) => p.start_time_unix_nano,
            DataPoint::ExponentialHistogram(p) => p.start_time_unix_nano,
            DataPoint::Summary(p) => p.start_time_unix_nano,
        }
    }

    /// How many measurements the point aggregates (`None` for gauge and sum points).
    pub fn count(self) -> Option<u64> {
        match self {
            DataPoint::Number(_) => None,
            DataPoint::Histogram(p) => Some(p.count),
            DataPoint::ExponentialHistogram(p) => Some(p.count),
            DataPoint::Summary(p) => Some(p.count),
        }
    }

    /// A gauge's or sum's value as a float (an integer value converted).
    pub fn number(self) -> Option<f64> {
        use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as V;
        match self {
            DataPoint::Number(p) => p.value.map(|v| match v {
                V::AsDouble(d) => d,
                V::AsInt(i) => i as f64,
            }),
            _ => None,
        }
    }
}

/// Mutable access to a data point of any type.
enum PointMut<'a> {
    Number(&'a mut NumberDataPoint),
    Histogram(&'a mut HistogramDataPoint),
    ExponentialHistogram(&'a mut ExponentialHistogramDataPoint),
    Summary(&'a mut SummaryDataPoint),
}

impl PointMut<'_> {
    fn view(&self) -> DataPoint<'_> {
        match self {
            PointMut::Number(p) => DataPoint::Number(p),
            PointMut::Histogram(p) => DataPoint::Histogram(p),
            PointMut::ExponentialHistogram(p) => DataPoint::ExponentialHistogram(p),
            PointMut::Summary(p) => DataPoint::Summary(p),
        }
    }

    fn attributes_mut(&mut self) -> &mut Vec<KeyValue> {
        match self {
            PointMut::Number(p) => &mut p.attributes,
            PointMut::Histogram(p) => &mut p.attributes,
            PointMut::ExponentialHistogram(p) => &mut p.attributes,
            PointMut::Summary(p) => &mut p.attributes,
        }
    }
}

/// A data point of the batch, with read access to its metric, resource and scope.
pub struct DataPointMut<'a> {
    resource: Option<&'a Resource>,
    scope: Option<&'a InstrumentationScope>,
    metric: MetricInfo<'a>,
    point: PointMut<'a>,
    index: u32,
    edits: Option<&'a mut Vec<Edit>>,
    dropped: &'a mut bool,
}

impl DataPointMut<'_> {
    /// The point (read-only; change it through the methods below so the host sees it).
    pub fn point(&self) -> DataPoint<'_> {
        self.point.view()
    }

    /// The point's position in the batch (over all data points of all metrics).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The point's metric: name, description, unit, type.
    pub fn metric(&self) -> MetricInfo<'_> {
        self.metric
    }

    /// The point's metric's name.
    pub fn metric_name(&self) -> &str {
        self.metric.name
    }

    /// The resource the point belongs to.
    pub fn resource(&self) -> Option<&Resource> {
        self.resource
    }

    /// The value of resource attribute `key` (e.g. `service.name`).
    pub fn resource_attribute(&self, key: &str) -> Option<&AnyValue> {
        self.resource
            .and_then(|r| attributes::get(&r.attributes, key))
    }

    /// The resource's `service.name`.
    pub fn service_name(&self) -> Option<&str> {
        self.resource_attribute("service.name").and_then(as_str)
    }

    /// The instrumentation scope the point belongs to.
    pub fn scope(&self) -> Option<&InstrumentationScope> {
        self.scope
    }

    /// The attributes.
    pub fn attributes(&self) -> &[KeyValue] {
        self.point.view().attributes()
    }

    /// The value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&AnyValue> {
        attributes::get(self.attributes(), key)
    }

    /// The string value of attribute `key` (None if absent or not a string).
    pub fn attribute_str(&self, key: &str) -> Option<&str> {
        self.attribute(key).and_then(as_str)
    }

    /// Inserts or replaces attribute `key`.
    pub fn set_attribute(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let target = Target::DataPoint(self.index);
        set_recorded(
            self.point.attributes_mut(),
            &mut self.edits,
            target,
            key.into(),
            value.into(),
        );
    }

    /// Removes attribute `key`, returning its value.
    pub fn remove_attribute(&mut self, key: &str) -> Option<AnyValue> {
        let target = Target::DataPoint(self.index);
        remove_recorded(self.point.attributes_mut(), &mut self.edits, target, key)
    }

    /// Drops the point from the batch (its metric goes too when no point is left).
    pub fn drop_point(&mut self) {
        if !*self.dropped {
            *self.dropped = true;
            let point = self.index;
            record(&mut self.edits, || Edit::DropDataPoint { point });
        }
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
