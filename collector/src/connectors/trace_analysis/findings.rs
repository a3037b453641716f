//! The metrics side's sums: findings, critical-path self time and dependency edges per
//! service, added once per run of due traces and sent as cumulative sums.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::{
    CRITICAL_PATH_METRIC, DEPENDENCY_CALLS_METRIC, DEPENDENCY_FAILED_ENTRIES_METRIC,
    DEPENDENCY_FAILED_METRIC, METRIC, SCOPE_NAME, WORST_TRACE_ATTRIBUTE,
};
use crate::keyed_hash::KeyedHash;

/// One series of the findings metric.
#[derive(Debug, Clone, Default)]
pub(super) struct Series {
    /// Findings, weighted.
    total: f64,
    /// The worst finding so far: its magnitude and trace id.
    worst: (u32, String),
}

/// Findings per (service, pattern, span name), cumulative since start.
#[derive(Debug, Default)]
pub struct Findings {
    pub(super) start_unix_nano: u64,
    pub(super) series: BTreeMap<(String, String, String), Series>,
    /// Weighted seconds of self time on critical paths per service, per span name.
    pub(super) critical: BTreeMap<String, BTreeMap<String, f64>>,
    /// Per caller service, per callee: weighted calls, failed calls, failed calls whose
    /// caller's entry span failed.
    pub(super) dependencies: BTreeMap<String, BTreeMap<String, [f64; 3]>>,
}

/// The entry of `key` in `map`, made (with an owned key) only when new: a lookup by a
/// borrowed key allocates nothing.
fn slot<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// One run's sums (the traces due at one tick, or one trace), keyed by names borrowed from the
/// spans, so that adding a span's share allocates nothing; added into [`Findings`] at the end
/// of the run, where a name is copied only the first time it is seen.
///
/// The first two are hashed ([`KeyedHash`]: the names are the clients'), looked up once per
/// span or call.
#[derive(Default)]
pub(super) struct Sums<'a> {
    /// Per (service, span name): weighted seconds of self time on critical paths.
    pub(super) critical: HashMap<(&'a str, &'a str), f64, KeyedHash>,
    /// Per (caller service, callee as [`detect::Name::parts`]): weighted calls, failed calls,
    /// failed calls whose caller's entry span failed. Parts that join to one name are summed
    /// apart here and together in [`Findings`].
    pub(super) dependencies: HashMap<(&'a str, &'a str, Option<&'a str>), [f64; 3], KeyedHash>,
    /// Per (service, pattern, span name): findings, weighted, and the worst.
    series: BTreeMap<(&'a str, &'a str, &'a str), Series>,
}

impl<'a> Sums<'a> {
    /// Adds a finding; `trace_id` is called only when it is the worst of its series so far.
    pub(super) fn add(
        &mut self,
        key: (&'a str, &'a str, &'a str),
        weight: f64,
        magnitude: u32,
        trace_id: &impl Fn() -> String,
    ) {
        let s = self.series.entry(key).or_default();
        s.total += weight;
        if magnitude > s.worst.0 || s.worst.1.is_empty() {
            s.worst = (magnitude, trace_id());
        }
    }
}

impl Findings {
    /// Adds a run's sums.
    pub(super) fn add(&mut self, sums: &mut Sums<'_>) {
        let mut joined = String::new();
        for ((caller, first, second), counts) in sums.dependencies.drain() {
            let callee = match second {
                None => first,
                Some(second) => {
                    joined.clear();
                    joined.push_str(first);
                    joined.push('/');
                    joined.push_str(second);
                    &joined
                }
            };
            let into = slot(slot(&mut self.dependencies, caller), callee);
            for (a, b) in into.iter_mut().zip(counts) {
                *a += b;
            }
        }
        for ((service, span), seconds) in sums.critical.drain() {
            *slot(slot(&mut self.critical, service), span) += seconds;
        }
        for ((service, pattern, span), s) in std::mem::take(&mut sums.series) {
            // Rare (traces with findings): the key is made whole.
            let into = self
                .series
                .entry((service.to_owned(), pattern.to_owned(), span.to_owned()))
                .or_default();
            into.total += s.total;
            if s.worst.0 > into.worst.0 || into.worst.1.is_empty() {
                into.worst = s.worst;
            }
        }
    }

    /// The metrics now: a `ResourceMetrics` per service.
    pub(super) fn flush(&self, now: u64) -> Vec<ResourceMetrics> {
        let text = |key: &str, value: &str| KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..Default::default()
        };
        let point = |attributes, value| NumberDataPoint {
            attributes,
            start_time_unix_nano: self.start_unix_nano,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        };
        let sum = |name: &str, description: &str, unit: &str, points| Metric {
            name: name.to_owned(),
            description: description.to_owned(),
            unit: unit.to_owned(),
            data: Some(metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        // Per service, per metric (in a fixed order): the points.
        let mut per_service: BTreeMap<&str, BTreeMap<usize, Vec<NumberDataPoint>>> =
            BTreeMap::new();
        for ((service, pattern, span), s) in &self.series {
            let attributes = vec![
                text("pattern", pattern),
                text("service.name", service),
                text("span.name", span),
                text(WORST_TRACE_ATTRIBUTE, &s.worst.1),
            ];
            per_service
                .entry(service)
                .or_default()
                .entry(0)
                .or_default()
                .push(point(attributes, s.total));
        }
        for (service, span, seconds) in self
            .critical
            .iter()
            .flat_map(|(service, spans)| spans.iter().map(move |(span, s)| (service, span, s)))
        {
            let attributes = vec![text("service.name", service), text("span.name", span)];
            per_service
                .entry(service)
                .or_default()
                .entry(1)
                .or_default()
                .push(point(attributes, *seconds));
        }
        for (caller, callee, counts) in self.dependencies.iter().flat_map(|(caller, callees)| {
            callees.iter().map(move |(callee, c)| (caller, callee, c))
        }) {
            for (m, value) in counts.iter().enumerate() {
                let attributes = vec![text("client", caller), text("server", callee)];
                per_service
                    .entry(caller)
                    .or_default()
                    .entry(2 + m)
                    .or_default()
                    .push(point(attributes, *value));
            }
        }
        let describe = |m: usize, points| match m {
            0 => sum(
                METRIC,
                "Performance anti-patterns and error origins found in complete traces, weighted by adjusted counts.",
                "{finding}",
                points,
            ),
            1 => sum(
                CRITICAL_PATH_METRIC,
                "Self time on the critical path of complete traces, weighted by adjusted counts.",
                "s",
                points,
            ),
            2 => sum(
                DEPENDENCY_CALLS_METRIC,
                "Calls from a service to a callee, weighted by adjusted counts.",
                "{call}",
                points,
            ),
            3 => sum(
                DEPENDENCY_FAILED_METRIC,
                "Calls from a service to a callee that failed, weighted by adjusted counts.",
                "{call}",
                points,
            ),
            _ => sum(
                DEPENDENCY_FAILED_ENTRIES_METRIC,
                "Failed calls from a service to a callee whose caller's request (entry span) failed too, weighted by adjusted counts.",
                "{call}",
                points,
            ),
        };
        per_service
            .into_iter()
            .map(|(service, metrics)| ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![text("service.name", service)],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.to_owned(),
                        ..Default::default()
                    }),
                    metrics: metrics
                        .into_iter()
                        .map(|(m, points)| describe(m, points))
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect()
    }
}
