//! Policies over the trace's summary alone: `latency`, `status_code`, `span_count` and
//! `probabilistic`. None needs the spans.

use wasmcol_plugin_sdk::policy::TraceSummary;

use crate::rule::{Outcome, keeps_by_trace_id};

/// `latency`: duration in `[threshold, upper)`.
#[derive(Debug)]
pub struct Latency {
    /// The shortest duration sampled, in nanoseconds.
    pub threshold_nanos: u64,
    /// Durations from here on are not sampled; `None` for no bound.
    pub upper_nanos: Option<u64>,
}

impl Latency {
    /// Whether the trace's duration is in range.
    pub fn matches(&self, summary: &TraceSummary) -> bool {
        let d = summary.duration_nanos();
        d >= self.threshold_nanos && self.upper_nanos.is_none_or(|u| d < u)
    }
}

/// `status_code`: some span has one of the statuses.
#[derive(Debug)]
pub struct StatusCodes {
    /// ERROR is listed.
    pub error: bool,
    /// OK is listed.
    pub ok: bool,
    /// UNSET is listed.
    pub unset: bool,
}

impl StatusCodes {
    /// Whether a span of the trace has one of the statuses.
    pub fn matches(&self, s: &TraceSummary) -> bool {
        // The summary counts ERROR and OK spans; the others are UNSET.
        let unset = s.span_count > s.error_spans.saturating_add(s.ok_spans);
        (self.error && s.error_spans > 0) || (self.ok && s.ok_spans > 0) || (self.unset && unset)
    }
}

/// `span_count`: between `min` and `max` spans.
#[derive(Debug)]
pub struct SpanCount {
    /// The fewest spans sampled.
    pub min: u32,
    /// The most spans sampled; 0 for no bound.
    pub max: u32,
}

impl SpanCount {
    /// Whether the trace's span count is in range.
    pub fn matches(&self, s: &TraceSummary) -> bool {
        s.span_count >= self.min && (self.max == 0 || s.span_count <= self.max)
    }
}

/// `probabilistic`: a share of traces, by trace ID.
#[derive(Debug)]
pub struct Probabilistic {
    /// The share, in [0, 1].
    pub probability: f64,
    /// The FNV-1a state after hashing the salt; `None` when there is no salt.
    pub salted: Option<u64>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Probabilistic {
    /// `probability` in [0, 1], and the salt (empty for none).
    pub fn new(probability: f64, salt: &str) -> Self {
        let salted = (!salt.is_empty()).then(|| fnv1a(FNV_OFFSET, salt.as_bytes()));
        Self {
            probability,
            salted,
        }
    }

    /// Samples the trace when its place in [0, 1) is under the probability.
    pub fn evaluate(&self, s: &TraceSummary) -> Outcome {
        match self.salted {
            None if keeps_by_trace_id(s, self.probability) => Outcome::by_ratio(self.probability),
            Some(seed) if salted_ratio(seed, &s.trace_id) < self.probability => {
                Outcome::weighted(self.probability)
            }
            _ => Outcome::NO,
        }
    }
}

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The trace's place in [0, 1) by a hash of salt and trace ID: deterministic (no per-process
/// random state) so every instance with the same salt picks the same traces.
pub fn salted_ratio(seed: u64, trace_id: &[u8; 16]) -> f64 {
    let mut h = fnv1a(seed, trace_id);
    // FNV-1a leaves the last bytes poorly spread over the high bits; the splitmix64
    // finaliser mixes every input bit into every output bit.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}
