use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::Duration;

/// The dimensions every series has (unless excluded), in this order.
pub const DEFAULT_DIMENSIONS: [&str; 4] = ["service.name", "span.name", "span.kind", "status.code"];

/// The OpenTelemetry Collector's default explicit buckets, in milliseconds.
pub const DEFAULT_BUCKETS_MS: [f64; 16] = [
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
    10_000.0, 15_000.0,
];

/// `connectors.spanmetrics` (also `span_metrics`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanMetricsConfig {
    /// The duration histogram: its unit and its buckets (explicit or exponential).
    #[serde(default)]
    pub histogram: HistogramConfig,
    /// Dimensions added to the default ones: looked up in the span's attributes, then its
    /// resource's; when missing in both, `default` is used, and without one the dimension is
    /// left out of that series.
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
    /// Default dimensions (`service.name`, `span.name`, `span.kind`, `status.code`) to leave
    /// out.
    #[serde(default)]
    pub exclude_dimensions: Vec<String>,
    /// Series per resource at most; spans that would start one more are counted in a single
    /// overflow series whose only attribute is `otel.metric.overflow="true"`. 0: no limit.
    #[serde(default)]
    pub aggregation_cardinality_limit: usize,
    /// A series that gets no span for this long is no longer exported (a later span starts
    /// it again from zero). `0s`: series are kept for the connector's lifetime.
    #[serde(default)]
    pub metrics_expiration: Duration,
    /// How often the metrics are sent to the pipelines that receive from the connector (and
    /// once more when it shuts down).
    #[serde(default = "default_flush_interval")]
    pub metrics_flush_interval: Duration,
    /// `AGGREGATION_TEMPORALITY_CUMULATIVE` (totals since each series started) or
    /// `AGGREGATION_TEMPORALITY_DELTA` (what came since the previous flush).
    #[serde(default)]
    pub aggregation_temporality: Temporality,
    /// Prefix of the metric names (`NAMESPACE.calls`, `NAMESPACE.duration`); empty: none.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Resource attributes that tell resources apart (one set of series each); empty: all
    /// of them. Use it when some resource attribute changes often (a process id).
    #[serde(default)]
    pub resource_metrics_key_attributes: Vec<String>,
}

fn default_flush_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_namespace() -> String {
    "traces.span.metrics".into()
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        Self {
            histogram: HistogramConfig::default(),
            dimensions: Vec::new(),
            exclude_dimensions: Vec::new(),
            aggregation_cardinality_limit: 0,
            metrics_expiration: Duration::default(),
            metrics_flush_interval: default_flush_interval(),
            aggregation_temporality: Temporality::default(),
            namespace: default_namespace(),
            resource_metrics_key_attributes: Vec::new(),
        }
    }
}

/// One extra dimension.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// The attribute looked up in the span, then in its resource.
    pub name: String,
    /// The value when neither has it; without one, the dimension is left out.
    #[serde(default)]
    pub default: Option<String>,
}

/// `histogram`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramConfig {
    /// No duration histogram at all, only the calls counter.
    #[serde(default)]
    pub disable: bool,
    /// The unit durations are recorded in: `ms` (default) or `s`.
    #[serde(default)]
    pub unit: Unit,
    /// Explicit buckets (the default kind).
    #[serde(default)]
    pub explicit: Option<ExplicitConfig>,
    /// Base-2 exponential buckets instead.
    #[serde(default)]
    pub exponential: Option<ExponentialConfig>,
}

/// `histogram.explicit`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitConfig {
    /// Upper bounds of the buckets, as durations (`2ms`, `1s`), increasing. Default: the
    /// OpenTelemetry Collector's `[2ms, 4ms, 6ms, 8ms, 10ms, 50ms, 100ms, 200ms, 400ms,
    /// 800ms, 1s, 1400ms, 2s, 5s, 10s, 15s]`.
    #[serde(default)]
    pub buckets: Option<Vec<Duration>>,
}

/// `histogram.exponential`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExponentialConfig {
    /// Buckets at most; the scale drops (buckets merge in pairs) to stay within it.
    #[serde(default = "default_max_size")]
    pub max_size: u32,
}

fn default_max_size() -> u32 {
    160
}

/// The unit of the duration histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Unit {
    /// Milliseconds.
    #[default]
    #[serde(rename = "ms")]
    Milliseconds,
    /// Seconds.
    #[serde(rename = "s")]
    Seconds,
}

impl Unit {
    /// The metric's unit.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
        }
    }

    /// Nanoseconds in one unit.
    pub fn nanos(self) -> f64 {
        match self {
            Unit::Milliseconds => 1e6,
            Unit::Seconds => 1e9,
        }
    }
}

/// `aggregation_temporality`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Temporality {
    /// Totals since each series started.
    #[default]
    #[serde(rename = "AGGREGATION_TEMPORALITY_CUMULATIVE")]
    Cumulative,
    /// What came since the previous flush.
    #[serde(rename = "AGGREGATION_TEMPORALITY_DELTA")]
    Delta,
}

impl SpanMetricsConfig {
    /// The explicit bucket bounds in the histogram's unit.
    pub fn bounds(&self) -> Vec<f64> {
        match self
            .histogram
            .explicit
            .as_ref()
            .and_then(|e| e.buckets.as_ref())
        {
            Some(b) => b
                .iter()
                .map(|d| d.get().as_nanos() as f64 / self.histogram.unit.nanos())
                .collect(),
            None => DEFAULT_BUCKETS_MS
                .iter()
                .map(|ms| ms * 1e6 / self.histogram.unit.nanos())
                .collect(),
        }
    }
}

impl Validate for SpanMetricsConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, d) in self.dimensions.iter().enumerate() {
            let path = format!("dimensions[{i}].name");
            if d.name.is_empty() {
                problems.push(Problem::new(path, "must not be empty"));
            } else if DEFAULT_DIMENSIONS.contains(&d.name.as_str()) {
                problems.push(Problem::new(
                    path,
                    format!("{:?} is a default dimension already", d.name),
                ));
            } else if self.dimensions[..i].iter().any(|o| o.name == d.name) {
                problems.push(Problem::new(
                    path,
                    format!("dimension {:?} is listed twice", d.name),
                ));
            }
        }
        for (i, name) in self.exclude_dimensions.iter().enumerate() {
            if !DEFAULT_DIMENSIONS.contains(&name.as_str()) {
                problems.push(Problem::new(
                    format!("exclude_dimensions[{i}]"),
                    format!(
                        "{name:?} is not a default dimension (those are {})",
                        DEFAULT_DIMENSIONS.join(", ")
                    ),
                ));
            }
        }
        let h = &self.histogram;
        if h.explicit.is_some() && h.exponential.is_some() {
            problems.push(Problem::new(
                "histogram",
                "use either `explicit` or `exponential` buckets, not both",
            ));
        }
        if let Some(b) = h.explicit.as_ref().and_then(|e| e.buckets.as_ref())
            && let Some(i) = (1..b.len()).find(|&i| b[i].get() <= b[i - 1].get())
        {
            problems.push(Problem::new(
                format!("histogram.explicit.buckets[{i}]"),
                format!("buckets must increase: {} follows {}", b[i], b[i - 1]),
            ));
        }
        if let Some(e) = &h.exponential
            && !(2..=16_384).contains(&e.max_size)
        {
            problems.push(Problem::new(
                "histogram.exponential.max_size",
                format!("expected 2 to 16384, got {}", e.max_size),
            ));
        }
        if self.metrics_flush_interval.is_zero() {
            problems.push(Problem::new(
                "metrics_flush_interval",
                "must be greater than 0",
            ));
        }
        problems
    }
}
