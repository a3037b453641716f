//! The plugin's configuration: the OpenTelemetry Collector `tail_sampling` processor's
//! `policies` (and `sample_on_first_match`), plus the `budget` and `adaptive` policies.
//! [`crate::build`] checks it and turns it into ready [`crate::rule::Rule`]s.

use serde::Deserialize;

/// The plugin's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Stop evaluating at the first policy that samples a trace. Default false: every policy
    /// sees every trace, as in the Collector, so stateful policies (rate limits, composite,
    /// budget, adaptive) also count traces that an earlier policy already kept.
    #[serde(default)]
    pub sample_on_first_match: bool,
    /// The policies, evaluated in order; the first that samples a trace decides. At least one.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

/// One policy: a name, a type, and the options block named after the type (none for
/// `always_sample`). The same shape serves sub-policies of `and`, `drop` and `composite`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy's name: on kept spans as `sampling.policy`, and in the host's decision
    /// counts. Unique among the top-level policies, and among a composite's sub-policies.
    pub name: String,
    /// One of [`crate::build::TYPES`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Options of a `latency` policy.
    #[serde(default)]
    pub latency: Option<LatencyConfig>,
    /// Options of a `status_code` policy.
    #[serde(default)]
    pub status_code: Option<StatusCodeConfig>,
    /// Options of a `probabilistic` policy.
    #[serde(default)]
    pub probabilistic: Option<ProbabilisticConfig>,
    /// Options of a `string_attribute` policy.
    #[serde(default)]
    pub string_attribute: Option<StringAttributeConfig>,
    /// Options of a `numeric_attribute` policy.
    #[serde(default)]
    pub numeric_attribute: Option<NumericAttributeConfig>,
    /// Options of a `boolean_attribute` policy.
    #[serde(default)]
    pub boolean_attribute: Option<BooleanAttributeConfig>,
    /// Options of a `span_count` policy.
    #[serde(default)]
    pub span_count: Option<SpanCountConfig>,
    /// Options of a `trace_state` policy.
    #[serde(default)]
    pub trace_state: Option<TraceStateConfig>,
    /// Options of a `rate_limiting` policy.
    #[serde(default)]
    pub rate_limiting: Option<RateLimitingConfig>,
    /// Options of a `bytes_limiting` policy.
    #[serde(default)]
    pub bytes_limiting: Option<BytesLimitingConfig>,
    /// Options of an `and` policy.
    #[serde(default)]
    pub and: Option<AndConfig>,
    /// Options of a `drop` policy.
    #[serde(default)]
    pub drop: Option<DropConfig>,
    /// Options of a `composite` policy.
    #[serde(default)]
    pub composite: Option<CompositeConfig>,
    /// Options of a `budget` policy.
    #[serde(default)]
    pub budget: Option<BudgetConfig>,
    /// Options of an `adaptive` policy.
    #[serde(default)]
    pub adaptive: Option<AdaptiveConfig>,
    /// Options of a `trace_analysis` policy (optional: without it, any finding samples).
    #[serde(default)]
    pub trace_analysis: Option<TraceAnalysisConfig>,
}

/// `trace_analysis`: samples traces in which the `trace_analysis` connector found something,
/// that is, with a span carrying the `trace_analysis.findings` attribute (with one of
/// `patterns`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceAnalysisConfig {
    /// The patterns that sample a trace (`n_plus_one`, `duplicate_call`, `fan_out`,
    /// `error_origin`, ...); empty (the default): any.
    #[serde(default)]
    pub patterns: Vec<String>,
}

/// `latency`: samples traces lasting at least `threshold_ms` (earliest span start to latest
/// span end), and less than `upper_threshold_ms` when that is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// The shortest duration sampled, in milliseconds.
    pub threshold_ms: f64,
    /// Durations from this many milliseconds on are not sampled; 0 (the default) means no
    /// upper bound.
    #[serde(default)]
    pub upper_threshold_ms: f64,
}

/// A span status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum StatusCodeName {
    /// Status ERROR.
    #[serde(rename = "ERROR", alias = "Error", alias = "error")]
    Error,
    /// Status OK.
    #[serde(rename = "OK", alias = "Ok", alias = "ok")]
    Ok,
    /// Status UNSET (no status set).
    #[serde(rename = "UNSET", alias = "Unset", alias = "unset")]
    Unset,
}

/// `status_code`: samples traces with a span of one of the listed statuses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCodeConfig {
    /// `ERROR`, `OK` and/or `UNSET`. At least one.
    pub status_codes: Vec<StatusCodeName>,
}

/// `probabilistic`: samples a share of traces, consistently by trace ID.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticConfig {
    /// The share sampled, in percent (0 to 100).
    pub sampling_percentage: f64,
    /// Empty (the default): decide by the trace ID's W3C randomness, so that collectors
    /// sampling the same trace agree. Otherwise decide by a hash of salt and trace ID, to
    /// pick a set of traces independent of other samplers.
    #[serde(default)]
    pub hash_salt: String,
}

/// `string_attribute`: samples traces with a span (or span's resource) whose string attribute
/// `key` has one of `values`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringAttributeConfig {
    /// The attribute.
    pub key: String,
    /// Exact values, or regexes (unanchored) with `enabled_regex_matching`. At least one.
    pub values: Vec<String>,
    /// Treat `values` as regexes. Default false.
    #[serde(default)]
    pub enabled_regex_matching: bool,
    /// Accepted for compatibility with the Collector's configuration; has no effect (regexes
    /// are compiled once and need no match cache).
    #[serde(default)]
    pub cache_max_size: Option<u64>,
    /// Sample the traces that do NOT match instead. Default false.
    #[serde(default)]
    pub invert_match: bool,
}

/// `numeric_attribute`: samples traces with a span (or resource) whose int or double
/// attribute `key` lies in `[min_value, max_value]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericAttributeConfig {
    /// The attribute.
    pub key: String,
    /// The smallest value matched; absent means no lower bound. At least one bound is needed.
    #[serde(default)]
    pub min_value: Option<serde_json::Number>,
    /// The largest value matched; absent means no upper bound.
    #[serde(default)]
    pub max_value: Option<serde_json::Number>,
    /// Sample the traces that do NOT match instead. Default false.
    #[serde(default)]
    pub invert_match: bool,
}

/// `boolean_attribute`: samples traces with a span (or resource) whose boolean attribute
/// `key` is `value`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BooleanAttributeConfig {
    /// The attribute.
    pub key: String,
    /// The value matched.
    pub value: bool,
    /// Sample the traces that do NOT match instead. Default false.
    #[serde(default)]
    pub invert_match: bool,
}

/// `span_count`: samples traces with at least `min_spans` spans, and at most `max_spans`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCountConfig {
    /// The fewest spans sampled.
    pub min_spans: u32,
    /// The most spans sampled; 0 (the default) means no upper bound.
    #[serde(default)]
    pub max_spans: u32,
}

/// `trace_state`: samples traces with a span whose W3C `tracestate` has `key` set to one of
/// `values`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceStateConfig {
    /// The tracestate key (`vendor`, `ot`, ...).
    pub key: String,
    /// The values matched. At least one.
    pub values: Vec<String>,
}

/// `rate_limiting`: samples traces while the spans it kept in the current second stay within
/// `spans_per_second`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// The most spans kept per second.
    pub spans_per_second: f64,
}

/// `bytes_limiting`: a token bucket on the traces' encoded size.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BytesLimitingConfig {
    /// The rate the bucket refills at, in bytes per second.
    pub bytes_per_second: f64,
    /// The bucket's size in bytes (the largest burst). Default: twice `bytes_per_second`.
    #[serde(default)]
    pub burst_capacity: Option<f64>,
}

/// `and`: samples when every sub-policy samples. Sub-policies are evaluated in order and
/// evaluation stops at the first that does not sample, so a limiter listed last only counts
/// traces the others matched.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndConfig {
    /// The sub-policies (any type but `drop`). At least one.
    pub and_sub_policy: Vec<PolicyConfig>,
}

/// `drop`: when every sub-policy matches, the trace is dropped, whatever other policies say.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    /// The sub-policies (any type but `drop`). At least one.
    pub drop_sub_policy: Vec<PolicyConfig>,
}

/// `composite`: sub-policies in `policy_order`, each allowed a share of
/// `max_total_spans_per_second`; the first sub-policy that samples a trace and still has room
/// in its share keeps it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeConfig {
    /// The most spans kept per second, over all sub-policies.
    pub max_total_spans_per_second: f64,
    /// The sub-policies' names in evaluation order; every sub-policy, once. Default: the
    /// order of `composite_sub_policy`.
    #[serde(default)]
    pub policy_order: Vec<String>,
    /// The sub-policies (any type but `drop`). At least one.
    pub composite_sub_policy: Vec<PolicyConfig>,
    /// Shares of `max_total_spans_per_second` by sub-policy, in percent (summing to at most
    /// 100). Sub-policies not listed share what is left equally.
    #[serde(default)]
    pub rate_allocation: Vec<RateAllocationConfig>,
}

/// One sub-policy's share of a composite's spans per second.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateAllocationConfig {
    /// The sub-policy's name.
    pub policy: String,
    /// Its share, in percent (more than 0, at most 100).
    pub percent: f64,
}

/// `budget`: a cap on kept spans per second, shared in priority order by traces with an
/// error, slow traces, and a random share of the rest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// The most spans kept per second.
    pub spans_per_second: f64,
    /// Traces lasting at least this many milliseconds are slow.
    pub slow_threshold_ms: f64,
    /// The share (percent, by trace ID) of the other traces offered what budget remains.
    /// Default 0: none.
    #[serde(default)]
    pub random_percentage: f64,
}

/// `adaptive`: per-service sampling probabilities, re-computed every `window` from observed
/// traffic, that hold the total kept traces per second near a target while keeping more of
/// low-traffic services.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// The kept traces per second to hold, over all services.
    pub target_traces_per_second: f64,
    /// The lowest probability any service gets, in percent. Default 0.1.
    #[serde(default = "default_min_percentage")]
    pub min_percentage: f64,
    /// The highest probability any service gets, in percent (services below their fair
    /// share get this); also what services not seen in the last window get. Default 100.
    #[serde(default = "default_max_percentage")]
    pub max_percentage: f64,
    /// How often probabilities are re-computed: `10s`, `1m`, ... Default `10s`.
    #[serde(default)]
    pub window: Option<String>,
}

fn default_min_percentage() -> f64 {
    0.1
}

fn default_max_percentage() -> f64 {
    100.0
}
