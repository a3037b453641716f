//! A checked policy, ready to evaluate traces, and what an evaluation yields.

use wasmcol_plugin_sdk::policy::{Trace, TraceSummary};

use crate::adaptive::Adaptive;
use crate::attributes::{
    BooleanAttribute, Findings, NumericAttribute, StringAttribute, TraceState,
};
use crate::basic::{Latency, Probabilistic, SpanCount, StatusCodes};
use crate::budget::Budget;
use crate::limits::{BytesLimiting, Composite, RateLimiting};

/// The smallest probability a decision carries: the host writes it as a W3C threshold,
/// which has 56 bits.
pub const MIN_PROBABILITY: f64 = 1.0 / (1u64 << 56) as f64;

/// Whether the trace's ID randomness keeps it at probability `p`: the one comparison every
/// trace-ID policy (`probabilistic` without salt, `adaptive`, `budget`'s random share) makes,
/// so that they keep nested sets of traces. The OpenTelemetry consistent-probability rule
/// ([`TraceSummary::keeps_at`]): the threshold the host writes into `tracestate` is the one
/// this decision used, so downstream samplers agree with it.
pub fn keeps_by_trace_id(summary: &TraceSummary, p: f64) -> bool {
    summary.keeps_at(p)
}

/// One policy's verdict on a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The policy samples the trace.
    pub sample: bool,
    /// The part of the keep probability that comes from comparing the trace ID's randomness
    /// with a threshold: such parts are nested (a trace under 10% is under 20%), so an `and`
    /// of them keeps with the smallest, not the product.
    pub ratio: f64,
    /// The other factors of the keep probability (salted hashes, limiters): taken as
    /// independent, so an `and` multiplies them.
    pub weight: f64,
    /// Which lane of a `composite` or `budget` kept the trace, as an index into its
    /// [`Rule::lanes`]; the decision names it.
    pub lane: Option<usize>,
}

impl Outcome {
    /// Not sampled.
    pub const NO: Outcome = Outcome {
        sample: false,
        ratio: 0.0,
        weight: 0.0,
        lane: None,
    };

    /// Sampled by a deterministic test: every trace like this one is kept.
    pub const YES: Outcome = Outcome {
        sample: true,
        ratio: 1.0,
        weight: 1.0,
        lane: None,
    };

    /// Sampled (or not) by a deterministic test.
    pub fn matched(yes: bool) -> Self {
        if yes { Self::YES } else { Self::NO }
    }

    /// Sampled because the trace ID's randomness is under `p`.
    pub fn by_ratio(p: f64) -> Self {
        Self {
            ratio: p,
            ..Self::YES
        }
    }

    /// Sampled, kept with probability `p` independently of the trace ID's randomness.
    pub fn weighted(p: f64) -> Self {
        Self {
            weight: p,
            ..Self::YES
        }
    }

    /// The probability with which traces like this one are kept, in (0, 1].
    pub fn probability(&self) -> f64 {
        (self.ratio * self.weight).clamp(MIN_PROBABILITY, 1.0)
    }
}

/// A checked policy.
#[derive(Debug)]
pub enum Rule {
    /// `always_sample`.
    Always,
    /// `latency`.
    Latency(Latency),
    /// `status_code`.
    StatusCode(StatusCodes),
    /// `probabilistic`.
    Probabilistic(Probabilistic),
    /// `span_count`.
    SpanCount(SpanCount),
    /// `string_attribute`.
    StringAttribute(StringAttribute),
    /// `numeric_attribute`.
    NumericAttribute(NumericAttribute),
    /// `boolean_attribute`.
    BooleanAttribute(BooleanAttribute),
    /// `trace_state`.
    TraceState(TraceState),
    /// `trace_analysis`.
    TraceAnalysis(Findings),
    /// `rate_limiting`.
    RateLimiting(RateLimiting),
    /// `bytes_limiting`.
    BytesLimiting(BytesLimiting),
    /// `and`, and the sub-policies of a `drop`: every sub-policy samples.
    And(Vec<Rule>),
    /// `composite`.
    Composite(Composite),
    /// `budget`.
    Budget(Budget),
    /// `adaptive`.
    Adaptive(Adaptive),
}

impl Rule {
    /// Evaluates one trace.
    pub fn evaluate(&mut self, trace: &Trace<'_>) -> Outcome {
        match self {
            Rule::Always => Outcome::YES,
            Rule::Latency(r) => Outcome::matched(r.matches(trace.summary)),
            Rule::StatusCode(r) => Outcome::matched(r.matches(trace.summary)),
            Rule::Probabilistic(r) => r.evaluate(trace.summary),
            Rule::SpanCount(r) => Outcome::matched(r.matches(trace.summary)),
            Rule::StringAttribute(r) => Outcome::matched(r.matches(trace)),
            Rule::NumericAttribute(r) => Outcome::matched(r.matches(trace)),
            Rule::BooleanAttribute(r) => Outcome::matched(r.matches(trace)),
            Rule::TraceState(r) => Outcome::matched(r.matches(trace)),
            Rule::TraceAnalysis(r) => Outcome::matched(r.matches(trace)),
            Rule::RateLimiting(r) => r.evaluate(trace.summary),
            Rule::BytesLimiting(r) => r.evaluate(trace.summary),
            Rule::And(rules) => and(rules, trace),
            Rule::Composite(r) => r.evaluate(trace),
            Rule::Budget(r) => r.evaluate(trace.summary),
            Rule::Adaptive(r) => r.evaluate(trace.summary),
        }
    }

    /// Passes the host's clock to the stateful policies, once per batch.
    pub fn begin(&mut self, now_unix_nano: u64) {
        match self {
            Rule::RateLimiting(r) => r.begin(now_unix_nano),
            Rule::BytesLimiting(r) => r.begin(now_unix_nano),
            Rule::Composite(r) => r.begin(now_unix_nano),
            Rule::Budget(r) => r.begin(now_unix_nano),
            Rule::Adaptive(r) => r.begin(now_unix_nano),
            Rule::And(rules) => rules.iter_mut().for_each(|r| r.begin(now_unix_nano)),
            _ => {}
        }
    }

    /// Whether evaluating reads span contents (attributes, trace state), not only the
    /// trace's summary.
    pub fn reads_spans(&self) -> bool {
        match self {
            Rule::StringAttribute(_)
            | Rule::NumericAttribute(_)
            | Rule::BooleanAttribute(_)
            | Rule::TraceState(_)
            | Rule::TraceAnalysis(_) => true,
            Rule::And(rules) => rules.iter().any(Rule::reads_spans),
            Rule::Composite(c) => c.reads_spans(),
            _ => false,
        }
    }

    /// The names of the lanes [`Outcome::lane`] indexes (empty for single-lane policies).
    pub fn lanes(&self) -> Vec<String> {
        match self {
            Rule::Composite(c) => c.lane_names(),
            Rule::Budget(_) => crate::budget::LANES.iter().map(|l| l.to_string()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Every rule samples: evaluated in order, stopping at the first that does not, so that
/// stateful rules listed after a filter only count what passed it.
fn and(rules: &mut [Rule], trace: &Trace<'_>) -> Outcome {
    let mut out = Outcome::YES;
    for rule in rules {
        let o = rule.evaluate(trace);
        if !o.sample {
            return Outcome::NO;
        }
        out.ratio = out.ratio.min(o.ratio);
        out.weight *= o.weight;
    }
    out
}
