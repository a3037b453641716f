//! The three kinds of telemetry a pipeline carries, and what the rest of the pipeline needs to
//! know of each: its OTLP messages, how to count and split them, and how to check their bytes.
//!
//! A pipeline carries one signal. Its stages are written once, generic over [`Signal`]
//! ([`crate::pipeline::Batch`], [`crate::pipeline::Consumer`]); a stage that only makes sense
//! for one signal (tail sampling, for traces) is written for that one.

use std::fmt;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

use crate::otlp::wire;

/// Which signal: the names pipelines and components use for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalKind {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
    /// Metric data points.
    Metrics,
}

impl SignalKind {
    /// Every signal, in the order the OpenTelemetry Collector lists them.
    pub const ALL: [SignalKind; 3] = [SignalKind::Traces, SignalKind::Metrics, SignalKind::Logs];

    /// The pipeline type: `traces`, `logs`, `metrics`.
    pub fn name(self) -> &'static str {
        match self {
            SignalKind::Traces => "traces",
            SignalKind::Logs => "logs",
            SignalKind::Metrics => "metrics",
        }
    }

    /// What one item of this signal is called, in the plural: `spans`, `log records`,
    /// `data points`.
    pub fn items(self) -> &'static str {
        match self {
            SignalKind::Traces => "spans",
            SignalKind::Logs => "log records",
            SignalKind::Metrics => "data points",
        }
    }

    /// The signal a pipeline type names, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of signals: what a component supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Signals(u8);

impl Signals {
    /// Traces only.
    pub const TRACES: Signals = Signals(1);
    /// Every signal.
    pub const ALL: Signals = Signals(0b111);

    fn bit(kind: SignalKind) -> u8 {
        match kind {
            SignalKind::Traces => 1,
            SignalKind::Logs => 2,
            SignalKind::Metrics => 4,
        }
    }

    /// The set of `kinds`.
    pub fn of(kinds: &[SignalKind]) -> Self {
        Signals(kinds.iter().fold(0, |bits, &k| bits | Self::bit(k)))
    }

    /// True if `kind` is in the set.
    pub fn contains(self, kind: SignalKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    /// The names of the signals in the set, as a user reads them (`traces, logs`).
    pub fn names(self) -> String {
        SignalKind::ALL
            .into_iter()
            .filter(|&k| self.contains(k))
            .map(SignalKind::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the pipeline needs to know of one signal's OTLP data.
///
/// A batch of a signal is a list of its resource-level messages (`ResourceSpans`,
/// `ResourceLogs`, `ResourceMetrics`): the `resource_*` field of the signal's export request,
/// whose encodings concatenate into the encoding of their union.
pub trait Signal: fmt::Debug + Send + Sync + 'static {
    /// Which signal this is.
    const KIND: SignalKind;

    /// The resource-level message.
    type Resource: Message + Default + Clone + PartialEq + fmt::Debug + Split + Send + Sync;

    /// Checks that `bytes` are an export request of this signal that prost would decode, and
    /// counts its items.
    fn check(bytes: &[u8]) -> Result<usize, wire::WireError>;

    /// Decodes an export request of this signal into its resource-level messages.
    fn decode(bytes: &[u8]) -> Result<Vec<Self::Resource>, prost::DecodeError>;
}

/// A message holding a signal's items (spans, log records, data points), directly or further
/// down.
pub trait Split: Sized {
    /// How many items it holds.
    fn items(&self) -> usize;

    /// Moves its first `n` items (`0 < n < self.items()`) into a new message that repeats its
    /// own description (resource, scope, metric name and kind).
    fn split_front(&mut self, n: usize) -> Self;
}

/// The number of items in `all`.
pub fn count<T: Split>(all: &[T]) -> usize {
    all.iter().map(Split::items).sum()
}

/// Moves the first `n` items of `all` into a new vector, cutting inside a message when needed
/// (its description is then copied into both halves, so each is valid on its own).
pub fn split_front<T: Split>(all: &mut Vec<T>, n: usize) -> Vec<T> {
    let mut remaining = n;
    let mut whole = 0;
    for m in all.iter() {
        let c = m.items();
        if c > remaining {
            break;
        }
        remaining -= c;
        whole += 1;
    }
    let mut front: Vec<T> = all.drain(..whole).collect();
    if remaining > 0
        && let Some(next) = all.first_mut()
    {
        front.push(next.split_front(remaining));
    }
    front
}

/// Spans.
#[derive(Debug)]
pub enum Traces {}

impl Signal for Traces {
    const KIND: SignalKind = SignalKind::Traces;
    type Resource = ResourceSpans;

    fn check(bytes: &[u8]) -> Result<usize, wire::WireError> {
        wire::validate(bytes).map(|v| v.spans)
    }

    fn decode(bytes: &[u8]) -> Result<Vec<ResourceSpans>, prost::DecodeError> {
        ExportTraceServiceRequest::decode(bytes).map(|r| r.resource_spans)
    }
}

impl Split for ResourceSpans {
    fn items(&self) -> usize {
        count(&self.scope_spans)
    }

    fn split_front(&mut self, n: usize) -> Self {
        ResourceSpans {
            resource: self.resource.clone(),
            scope_spans: split_front(&mut self.scope_spans, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Split for ScopeSpans {
    fn items(&self) -> usize {
        self.spans.len()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ScopeSpans {
            scope: self.scope.clone(),
            spans: self.spans.drain(..n).collect(),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Split for ResourceLogs {
    fn items(&self) -> usize {
        count(&self.scope_logs)
    }

    fn split_front(&mut self, n: usize) -> Self {
        ResourceLogs {
            resource: self.resource.clone(),
            scope_logs: split_front(&mut self.scope_logs, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Split for ScopeLogs {
    fn items(&self) -> usize {
        self.log_records.len()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ScopeLogs {
            scope: self.scope.clone(),
            log_records: self.log_records.drain(..n).collect(),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Split for ResourceMetrics {
    fn items(&self) -> usize {
        count(&self.scope_metrics)
    }

    fn split_front(&mut self, n: usize) -> Self {
        ResourceMetrics {
            resource: self.resource.clone(),
            scope_metrics: split_front(&mut self.scope_metrics, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Split for ScopeMetrics {
    fn items(&self) -> usize {
        count(&self.metrics)
    }

    fn split_front(&mut self, n: usize) -> Self {
        ScopeMetrics {
            scope: self.scope.clone(),
            metrics: split_front(&mut self.metrics, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Split for Metric {
    /// Data points: a metric with no data counts none, and is carried with whichever half
    /// comes before it.
    fn items(&self) -> usize {
        use metric::Data;
        match &self.data {
            None => 0,
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
        }
    }

    fn split_front(&mut self, n: usize) -> Self {
        use metric::Data;
        let data = self.data.as_mut().map(|data| match data {
            Data::Gauge(g) => Data::Gauge(metric_points(g, |g| &mut g.data_points, n)),
            Data::Sum(s) => Data::Sum(metric_points(s, |s| &mut s.data_points, n)),
            Data::Histogram(h) => Data::Histogram(metric_points(h, |h| &mut h.data_points, n)),
            Data::ExponentialHistogram(h) => {
                Data::ExponentialHistogram(metric_points(h, |h| &mut h.data_points, n))
            }
            Data::Summary(s) => Data::Summary(metric_points(s, |s| &mut s.data_points, n)),
        });
        Metric {
            name: self.name.clone(),
            description: self.description.clone(),
            unit: self.unit.clone(),
            metadata: self.metadata.clone(),
            data,
        }
    }
}

/// A copy of `data` (a gauge, sum, ...: temporality and monotonicity kept) holding the first
/// `n` of its data points, which leave `data`.
fn metric_points<D: Clone, P>(data: &mut D, points: fn(&mut D) -> &mut Vec<P>, n: usize) -> D {
    let front: Vec<P> = points(data).drain(..n).collect();
    let rest = std::mem::take(points(data));
    let mut copy = data.clone();
    *points(data) = rest;
    *points(&mut copy) = front;
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint, Sum};

    fn points(n: usize, start: u64) -> Vec<NumberDataPoint> {
        (0..n as u64)
            .map(|i| NumberDataPoint {
                time_unix_nano: start + i,
                ..Default::default()
            })
            .collect()
    }

    fn times(all: &[ResourceMetrics]) -> Vec<u64> {
        use metric::Data;
        all.iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .flat_map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.clone(),
                Some(Data::Sum(s)) => s.data_points.clone(),
                _ => Vec::new(),
            })
            .map(|p| p.time_unix_nano)
            .collect()
    }

    #[test]
    fn metrics_split_inside_a_metric_keep_its_kind_and_name() {
        let mut all = vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "g".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: points(2, 0),
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "s".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: points(3, 10),
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }];
        assert_eq!(count(&all), 5);
        let front = split_front(&mut all, 3);
        assert_eq!(times(&front), [0, 1, 10]);
        assert_eq!(times(&all), [11, 12]);
        let cut = &front[0].scope_metrics[0].metrics[1];
        let rest = &all[0].scope_metrics[0].metrics[0];
        assert_eq!((cut.name.as_str(), rest.name.as_str()), ("s", "s"));
        for m in [cut, rest] {
            let Some(metric::Data::Sum(s)) = &m.data else {
                panic!("{m:?}")
            };
            assert!(s.is_monotonic && s.aggregation_temporality == 2);
        }
        assert_eq!(count(&front) + count(&all), 5);
    }
}
