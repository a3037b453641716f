//! A plugin's edits applied to a metrics batch.
//!
//! Unlike spans and log records, metrics nest five levels deep (resource, scope, metric, its
//! data of one of five types, data point), and metrics batches are small next to trace and
//! logs batches (a data point per series per export interval), so this applier decodes the
//! batch, applies the checked edits to the decoded messages and encodes the result. It is
//! still the one applier: the host runs it on a plugin's answer and the SDK's test harness
//! runs it too, with the same checks and the same error texts.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, metric};
use prost::Message;

use super::edit::{Edited, wrong_signal_message};
use crate::edit::{Edit, Target};

/// Applies `edits` (in order) to `request`, the protobuf bytes of a valid
/// `ExportMetricsServiceRequest` (or `MetricsData`): resource, scope and data-point
/// attributes, dropped data points and dropped metrics. A metric left without data points is
/// removed, as are scopes and resources left empty, whenever anything was dropped. Returns the
/// edited request and its data-point count, or an error naming the first bad edit, in which
/// case nothing is applied. Span and log edits fail.
pub fn apply_metrics(request: &[u8], edits: Vec<Edit>) -> Result<Edited, String> {
    let mut data = ExportMetricsServiceRequest::decode(request)
        .map_err(|e| format!("the batch is not valid OTLP protobuf: {e}"))?
        .resource_metrics;
    let index = Index::new(&data);
    let mut ops: Vec<(Place, AttrOp)> = Vec::new();
    let mut dropped_points = Vec::new();
    let mut dropped_metrics = Vec::new();
    for edit in edits {
        match edit {
            Edit::SetAttribute { target, key, value } => {
                ops.push((index.place(target)?, (key, Some(value.into_any_value()))));
            }
            Edit::RemoveAttribute { target, key } => {
                ops.push((index.place(target)?, (key, None)));
            }
            Edit::DropDataPoint { point } => {
                index.point(point)?;
                dropped_points.push(point as usize);
            }
            Edit::DropMetric { metric } => {
                if metric as usize >= index.metrics.len() {
                    return Err(format!(
                        "metric index {metric} is out of range (the batch has {})",
                        index.metrics.len()
                    ));
                }
                dropped_metrics.push(metric as usize);
            }
            other => return Err(wrong_signal_message("a metrics batch", &other)),
        }
    }
    // Every edit is checked: now apply them, each attribute list's ops in the order given.
    let mut lists: HashMap<Place, Vec<AttrOp>> = HashMap::new();
    let mut order = Vec::new();
    for (place, op) in ops {
        lists
            .entry(place)
            .or_insert_with(|| {
                order.push(place);
                Vec::new()
            })
            .push(op);
    }
    for place in order {
        let list = lists.remove(&place).unwrap_or_default();
        let attributes = match place {
            Place::Resource(r) => {
                &mut data[r]
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes
            }
            Place::Scope(r, s) => {
                &mut data[r].scope_metrics[s]
                    .scope
                    .get_or_insert_with(Default::default)
                    .attributes
            }
            Place::Point(m, p) => {
                let (r, s, m) = index.metrics[m];
                point_attributes_mut(&mut data[r].scope_metrics[s].metrics[m], p)
            }
        };
        apply_attribute_ops(attributes, list);
    }
    let drops = !dropped_points.is_empty() || !dropped_metrics.is_empty();
    if drops {
        let mut points = vec![false; index.points.len()];
        for p in dropped_points {
            points[p] = true;
        }
        let mut metrics = vec![false; index.metrics.len()];
        for m in dropped_metrics {
            metrics[m] = true;
        }
        prune(&mut data, &points, &metrics);
    }
    let spans = data
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(point_count)
        .sum();
    let bytes = ExportMetricsServiceRequest {
        resource_metrics: data,
    }
    .encode_to_vec();
    Ok(Edited { bytes, spans })
}

/// Set (`Some`) or remove (`None`) one attribute.
type AttrOp = (String, Option<AnyValue>);

/// The attribute list an op is for: a resource, a scope (resource, scope in it), or a data
/// point (metric by batch index, point in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Place {
    Resource(usize),
    Scope(usize, usize),
    Point(usize, usize),
}

/// Where every scope, metric and data point of the batch is, by batch index.
struct Index {
    resources: usize,
    scopes: Vec<(usize, usize)>,
    /// (resource, scope in it, metric in it).
    metrics: Vec<(usize, usize, usize)>,
    /// (metric by batch index, point in it).
    points: Vec<(usize, usize)>,
}

impl Index {
    fn new(data: &[ResourceMetrics]) -> Self {
        let mut index = Index {
            resources: data.len(),
            scopes: Vec::new(),
            metrics: Vec::new(),
            points: Vec::new(),
        };
        for (r, rm) in data.iter().enumerate() {
            for (s, sm) in rm.scope_metrics.iter().enumerate() {
                index.scopes.push((r, s));
                for (m, metric) in sm.metrics.iter().enumerate() {
                    let i = index.metrics.len();
                    index.metrics.push((r, s, m));
                    index
                        .points
                        .extend((0..point_count(metric)).map(|p| (i, p)));
                }
            }
        }
        index
    }

    fn point(&self, i: u32) -> Result<(usize, usize), String> {
        self.points.get(i as usize).copied().ok_or_else(|| {
            format!(
                "data point index {i} is out of range (the batch has {})",
                self.points.len()
            )
        })
    }

    fn place(&self, t: Target) -> Result<Place, String> {
        Ok(match t {
            Target::Resource(r) => {
                if r as usize >= self.resources {
                    return Err(format!(
                        "resource index {r} is out of range (the batch has {})",
                        self.resources
                    ));
                }
                Place::Resource(r as usize)
            }
            Target::Scope(s) => {
                let (r, s) = self.scopes.get(s as usize).copied().ok_or_else(|| {
                    format!(
                        "scope index {s} is out of range (the batch has {})",
                        self.scopes.len()
                    )
                })?;
                Place::Scope(r, s)
            }
            Target::DataPoint(p) => {
                let (m, p) = self.point(p)?;
                Place::Point(m, p)
            }
            Target::Span(_) | Target::Event(..) | Target::Link(..) | Target::LogRecord(_) => {
                return Err(format!("target {t:?} does not apply to a metrics batch"));
            }
        })
    }
}

/// Applies `ops` in order with `attributes::set` / `attributes::remove` semantics (set
/// replaces the first attribute with the key or appends one, remove removes every attribute
/// with the key), in O(n) for n ops and attributes however many keys they name.
fn apply_attribute_ops(attributes: &mut Vec<KeyValue>, ops: Vec<AttrOp>) {
    if let [(key, value)] = &ops[..] {
        // The common case: one op on a list.
        match value {
            Some(v) => crate::attributes::set(attributes, key, v.clone()),
            None => {
                crate::attributes::remove(attributes, key);
            }
        }
        return;
    }
    let mut live: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, kv) in attributes.iter().enumerate() {
        live.entry(kv.key.clone()).or_default().push(i);
    }
    let mut removed = vec![false; attributes.len()];
    for (key, value) in ops {
        match value {
            Some(value) => match live.get(&key).and_then(|v| v.first()) {
                Some(&i) => attributes[i].value = Some(value),
                None => {
                    live.insert(key.clone(), vec![attributes.len()]);
                    attributes.push(KeyValue {
                        key,
                        value: Some(value),
                        ..Default::default()
                    });
                    removed.push(false);
                }
            },
            None => {
                for i in live.remove(&key).unwrap_or_default() {
                    removed[i] = true;
                }
            }
        }
    }
    let mut i = 0;
    attributes.retain(|_| {
        i += 1;
        !removed[i - 1]
    });
}

/// How many data points a metric holds (0 when it has no data).
pub(crate) fn point_count(m: &Metric) -> usize {
    match &m.data {
        None => 0,
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
    }
}

/// The attribute list of data point `p` of metric `m` (which must have one).
pub(crate) fn point_attributes_mut(m: &mut Metric, p: usize) -> &mut Vec<KeyValue> {
    match &mut m.data {
        None => unreachable!("a metric without data has no data points"),
        Some(metric::Data::Gauge(g)) => &mut g.data_points[p].attributes,
        Some(metric::Data::Sum(s)) => &mut s.data_points[p].attributes,
        Some(metric::Data::Histogram(h)) => &mut h.data_points[p].attributes,
        Some(metric::Data::ExponentialHistogram(h)) => &mut h.data_points[p].attributes,
        Some(metric::Data::Summary(s)) => &mut s.data_points[p].attributes,
    }
}

/// Keeps the data points of `m` for which `keep` (called once per point, in order) is true.
fn retain_points(m: &mut Metric, mut keep: impl FnMut() -> bool) {
    match &mut m.data {
        None => {}
        Some(metric::Data::Gauge(g)) => g.data_points.retain(|_| keep()),
        Some(metric::Data::Sum(s)) => s.data_points.retain(|_| keep()),
        Some(metric::Data::Histogram(h)) => h.data_points.retain(|_| keep()),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.retain(|_| keep()),
        Some(metric::Data::Summary(s)) => s.data_points.retain(|_| keep()),
    }
}

/// Removes the dropped data points (by batch index) and metrics, then every metric without
/// data points, scope without metrics and resource without scopes. The SDK's decoded batch
/// and the host's applier both prune with this, so they agree.
pub(crate) fn prune(data: &mut Vec<ResourceMetrics>, points: &[bool], metrics: &[bool]) {
    let (mut p, mut m) = (0, 0);
    for rm in data.iter_mut() {
        for sm in &mut rm.scope_metrics {
            sm.metrics.retain_mut(|metric| {
                let metric_dropped = metrics.get(m).copied().unwrap_or(false);
                m += 1;
                retain_points(metric, || {
                    let keep = !metric_dropped && !points.get(p).copied().unwrap_or(false);
                    p += 1;
                    keep
                });
                point_count(metric) > 0
            });
        }
        rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
    }
    data.retain(|rm| !rm.scope_metrics.is_empty());
}

#[cfg(test)]
#[path = "edit_metrics_tests.rs"]
mod tests;
