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
use crate::connectors::OVERFLOW_ATTRIBUTE;
use crate::keyed_hash::KeyedHash;

/// One series of the findings metric.
#[derive(Debug, Clone, Default)]
pub(super) struct Series {
    /// Findings, weighted.
    total: f64,
    /// The worst finding so far: its magnitude and trace id.
    worst: (u32, String),
}

/// The three families of series, cumulative since each started: findings per (service,
/// pattern, span name), critical-path self time per (service, span name), dependency edges per
/// (caller, callee). Service and span names are the clients', and patterns the plugins', so
/// each family holds at most `aggregation_cardinality_limit` series; a series that would be
/// one more is summed into that family's overflow series instead.
#[derive(Debug)]
pub struct Findings {
    /// The connector's id, for the log.
    id: String,
    pub(super) start_unix_nano: u64,
    /// Series per family at most (0: no limit).
    limit: usize,
    /// Nanoseconds without an update after which a series is forgotten (0: never).
    expiration: u64,
    /// Per service, per (pattern, span name): findings, weighted, and the worst.
    pub(super) series: Family<(String, String), Series>,
    /// Per service, per span name: weighted seconds of self time on critical paths.
    pub(super) critical: Family<String, f64>,
    /// Per caller service, per callee: weighted calls, failed calls, failed calls whose
    /// caller's entry span failed.
    pub(super) dependencies: Family<String, [f64; 3]>,
}

/// A value and when it was last updated (Unix nanoseconds).
#[derive(Debug, Default)]
struct Stamped<V> {
    value: V,
    seen: u64,
}

/// One family of series, per service then per key, counted against a limit; the overflow
/// series takes what would start a series past it.
#[derive(Debug)]
pub(super) struct Family<K, V> {
    map: BTreeMap<String, BTreeMap<K, Stamped<V>>>,
    /// Series in `map`.
    len: usize,
    overflow: Option<Stamped<V>>,
}

impl<K, V> Default for Family<K, V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            len: 0,
            overflow: None,
        }
    }
}

impl<K: Ord, V: Default> Family<K, V> {
    /// The series of (`service`, `key`), stamped `now`; the overflow series when it is new and
    /// the family already holds `limit` (0: no limit). A lookup of a known series by borrowed
    /// names allocates nothing.
    fn slot<Q>(&mut self, service: &str, key: &Q, limit: usize, now: u64) -> &mut V
    where
        K: std::borrow::Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        let known = self.map.get(service).is_some_and(|m| m.contains_key(key));
        let s = if known {
            self.map
                .get_mut(service)
                .and_then(|m| m.get_mut(key))
                .expect("known")
        } else if limit > 0 && self.len >= limit {
            self.overflow.get_or_insert_with(Stamped::default)
        } else {
            self.len += 1;
            slot(&mut self.map, service)
                .entry(key.to_owned())
                .or_default()
        };
        s.seen = now;
        &mut s.value
    }

    /// Forgets the series not updated for `after` nanoseconds before `now` (none when `after`
    /// is 0), making room under the limit.
    fn expire(&mut self, now: u64, after: u64) {
        if after == 0 {
            return;
        }
        let fresh = |s: &Stamped<V>| now.saturating_sub(s.seen) < after;
        for series in self.map.values_mut() {
            series.retain(|_, s| fresh(s));
        }
        self.map.retain(|_, series| !series.is_empty());
        self.len = self.map.values().map(BTreeMap::len).sum();
        if self.overflow.as_ref().is_some_and(|s| !fresh(s)) {
            self.overflow = None;
        }
    }

    /// Every series: (service, key, value).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &K, &V)> {
        self.map.iter().flat_map(|(service, series)| {
            series
                .iter()
                .map(move |(key, s)| (service.as_str(), key, &s.value))
        })
    }

    /// The value of (`service`, `key`), if it has a series.
    #[cfg(test)]
    pub(super) fn get<Q>(&self, service: &str, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        Some(&self.map.get(service)?.get(key)?.value)
    }

    /// The overflow series' value, if any series overflowed.
    pub(super) fn overflow(&self) -> Option<&V> {
        self.overflow.as_ref().map(|s| &s.value)
    }

    /// Series held, the overflow series not included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }
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
    /// No series yet; `limit` series per family at most (0: no limit), each forgotten after
    /// `expiration` nanoseconds without an update (0: never).
    pub(super) fn new(id: &str, start_unix_nano: u64, limit: usize, expiration: u64) -> Self {
        Self {
            id: id.to_owned(),
            start_unix_nano,
            limit,
            expiration,
            series: Family::default(),
            critical: Family::default(),
            dependencies: Family::default(),
        }
    }

    /// Adds a run's sums at `now`.
    pub(super) fn add(&mut self, sums: &mut Sums<'_>, now: u64) {
        let limit = self.limit;
        let overflowing = [
            self.series.overflow.is_some(),
            self.critical.overflow.is_some(),
            self.dependencies.overflow.is_some(),
        ];
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
            let into = self.dependencies.slot(caller, callee, limit, now);
            for (a, b) in into.iter_mut().zip(counts) {
                *a += b;
            }
        }
        for ((service, span), seconds) in sums.critical.drain() {
            *self.critical.slot(service, span, limit, now) += seconds;
        }
        for ((service, pattern, span), s) in std::mem::take(&mut sums.series) {
            // Rare (traces with findings): the key is made whole.
            let key = (pattern.to_owned(), span.to_owned());
            let into = self.series.slot(service, &key, limit, now);
            into.total += s.total;
            if s.worst.0 > into.worst.0 || into.worst.1.is_empty() {
                into.worst = s.worst;
            }
        }
        let now_overflowing = [
            self.series.overflow.is_some(),
            self.critical.overflow.is_some(),
            self.dependencies.overflow.is_some(),
        ];
        for ((before, after), metric) in overflowing.into_iter().zip(now_overflowing).zip([
            METRIC,
            CRITICAL_PATH_METRIC,
            "trace_analysis.dependency.*",
        ]) {
            if after && !before {
                tracing::warn!(
                    connector = %self.id,
                    metric,
                    aggregation_cardinality_limit = limit,
                    "{metric} holds aggregation_cardinality_limit ({limit}) series: new ones are summed into its overflow series (otel.metric.overflow=\"true\"); span names with ids in them are the usual cause"
                );
            }
        }
    }

    /// The metrics now: a `ResourceMetrics` per service (and one without a service for the
    /// overflow series); series past `expiration` are forgotten first.
    pub(super) fn flush(&mut self, now: u64) -> Vec<ResourceMetrics> {
        self.series.expire(now, self.expiration);
        self.critical.expire(now, self.expiration);
        self.dependencies.expire(now, self.expiration);
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
        // Per service (`None`: the overflow series), per metric (in a fixed order): the points.
        let mut per_service: BTreeMap<Option<&str>, BTreeMap<usize, Vec<NumberDataPoint>>> =
            BTreeMap::new();
        let mut add = |service, m: usize, attributes, value| {
            per_service
                .entry(service)
                .or_default()
                .entry(m)
                .or_default()
                .push(point(attributes, value));
        };
        let overflow = || vec![text(OVERFLOW_ATTRIBUTE, "true")];
        for (service, (pattern, span), s) in self.series.iter() {
            let attributes = vec![
                text("pattern", pattern),
                text("service.name", service),
                text("span.name", span),
                text(WORST_TRACE_ATTRIBUTE, &s.worst.1),
            ];
            add(Some(service), 0, attributes, s.total);
        }
        if let Some(s) = self.series.overflow() {
            add(None, 0, overflow(), s.total);
        }
        for (service, span, seconds) in self.critical.iter() {
            let attributes = vec![text("service.name", service), text("span.name", span)];
            add(Some(service), 1, attributes, *seconds);
        }
        if let Some(seconds) = self.critical.overflow() {
            add(None, 1, overflow(), *seconds);
        }
        for (caller, callee, counts) in self.dependencies.iter() {
            for (m, value) in counts.iter().enumerate() {
                let attributes = vec![text("client", caller), text("server", callee)];
                add(Some(caller), 2 + m, attributes, *value);
            }
        }
        if let Some(counts) = self.dependencies.overflow() {
            for (m, value) in counts.iter().enumerate() {
                add(None, 2 + m, overflow(), *value);
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
                    attributes: service
                        .map(|service| vec![text("service.name", service)])
                        .unwrap_or_default(),
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
