//! Limiters: `rate_limiting` (spans per second), `bytes_limiting` (a token bucket on encoded
//! bytes) and `composite` (shares of a spans-per-second cap, by sub-policy).
//!
//! All are clocked by [`wasmcol_plugin_sdk::policy::Policy::begin`]: the host's clock, once per
//! batch. Windows are whole seconds of that clock (`now / 10^9`), so every trace of a batch
//! falls in the same window.
//!
//! The probability a kept trace carries is an estimate of what share of the traffic offered
//! to the limiter it keeps: its limit per second divided by the traffic offered per second,
//! taken as the larger of what was offered so far in the current second and what was offered
//! in the whole previous second (the current second alone would say "1" for every trace kept
//! before the limit is reached, as those come first).

use wasmcol_plugin_sdk::policy::{Trace, TraceSummary};

use crate::rule::{Outcome, Rule};

/// The second of the host's clock that `now_unix_nano` falls in.
pub fn second_of(now_unix_nano: u64) -> u64 {
    now_unix_nano / 1_000_000_000
}

/// What a limiter was offered (traffic that qualified) and admitted in the current second,
/// and what it was offered in the previous second.
#[derive(Debug, Default, Clone)]
pub struct Meter {
    second: u64,
    /// Offered in the current second (spans, or bytes).
    pub offered: f64,
    /// Admitted in the current second.
    pub admitted: f64,
    /// Offered in the previous second (0 when no batch came then).
    pub previous: f64,
}

impl Meter {
    /// Moves to the window of `second`. The clock never goes back: an earlier second (a host
    /// clock step) stays in the current window.
    pub fn roll(&mut self, second: u64) {
        if second > self.second {
            self.previous = if second == self.second + 1 {
                self.offered
            } else {
                0.0
            };
            self.offered = 0.0;
            self.admitted = 0.0;
            self.second = second;
        }
    }

    /// The demand per second: offered so far this second, or last second if more.
    pub fn demand(&self) -> f64 {
        self.offered.max(self.previous)
    }

    /// The estimated share of the offered traffic kept when `limit` per second is
    /// available, in (0, 1]. When nothing should be available yet something was admitted
    /// (the estimate of what others take was high), the share admitted so far this second.
    pub fn estimate(&self, limit: f64) -> f64 {
        let demand = self.demand();
        if demand <= limit {
            1.0
        } else if limit > 0.0 {
            limit / demand
        } else if self.offered > 0.0 {
            (self.admitted / self.offered).min(1.0)
        } else {
            1.0
        }
    }
}

/// `rate_limiting`: at most `spans_per_second` spans kept per second of the host's clock.
#[derive(Debug)]
pub struct RateLimiting {
    /// The limit.
    pub spans_per_second: f64,
    /// Spans offered and kept.
    pub meter: Meter,
}

impl RateLimiting {
    /// At most `spans_per_second` spans per second.
    pub fn new(spans_per_second: f64) -> Self {
        Self {
            spans_per_second,
            meter: Meter::default(),
        }
    }

    /// Starts a batch at `now`.
    pub fn begin(&mut self, now_unix_nano: u64) {
        self.meter.roll(second_of(now_unix_nano));
    }

    /// Keeps the trace if its spans fit in what is left of this second's limit. A trace that
    /// does not fit leaves room for smaller ones after it.
    pub fn evaluate(&mut self, s: &TraceSummary) -> Outcome {
        let n = f64::from(s.span_count);
        self.meter.offered += n;
        if self.meter.admitted + n > self.spans_per_second {
            return Outcome::NO;
        }
        self.meter.admitted += n;
        Outcome::weighted(self.meter.estimate(self.spans_per_second))
    }
}

/// `bytes_limiting`: a token bucket of `burst` bytes refilled at `bytes_per_second`; a trace
/// is kept when its encoded size is still in the bucket (it starts full).
#[derive(Debug)]
pub struct BytesLimiting {
    /// The refill rate.
    pub bytes_per_second: f64,
    /// The bucket's size.
    pub burst: f64,
    tokens: f64,
    last: Option<u64>,
    meter: Meter,
}

impl BytesLimiting {
    /// A full bucket of `burst` bytes, refilled at `bytes_per_second`.
    pub fn new(bytes_per_second: f64, burst: f64) -> Self {
        Self {
            bytes_per_second,
            burst,
            tokens: burst,
            last: None,
            meter: Meter::default(),
        }
    }

    /// Starts a batch at `now`: refills the bucket for the time since the previous batch.
    pub fn begin(&mut self, now_unix_nano: u64) {
        if let Some(last) = self.last
            && now_unix_nano > last
        {
            let elapsed = (now_unix_nano - last) as f64 / 1e9;
            self.tokens = (self.tokens + elapsed * self.bytes_per_second).min(self.burst);
        }
        self.last = Some(self.last.map_or(now_unix_nano, |l| l.max(now_unix_nano)));
        self.meter.roll(second_of(now_unix_nano));
    }

    /// Keeps the trace if its encoded bytes are in the bucket, and takes them out.
    pub fn evaluate(&mut self, s: &TraceSummary) -> Outcome {
        let n = f64::from(s.encoded_bytes);
        self.meter.offered += n;
        if n > self.tokens {
            return Outcome::NO;
        }
        self.tokens -= n;
        self.meter.admitted += n;
        Outcome::weighted(self.meter.estimate(self.bytes_per_second))
    }
}

/// One sub-policy of a composite, with its share.
#[derive(Debug)]
pub struct Lane {
    /// The sub-policy's name.
    pub name: String,
    /// The sub-policy.
    pub rule: Rule,
    /// Its share of the composite's cap, in spans per second.
    pub spans_per_second: f64,
    /// Spans of traces the sub-policy sampled (offered), and kept.
    pub meter: Meter,
}

/// `composite`: sub-policies in order, each with a share of a total spans-per-second cap.
/// The first sub-policy that samples the trace and still has room in its share (and the total
/// in the cap) keeps it; one without room passes the trace on to the next.
#[derive(Debug)]
pub struct Composite {
    /// The cap over all sub-policies.
    pub max_total: f64,
    /// The sub-policies in evaluation order.
    pub lanes: Vec<Lane>,
    total: Meter,
}

impl Composite {
    /// `lanes` in evaluation order, sharing `max_total` spans per second.
    pub fn new(max_total: f64, lanes: Vec<Lane>) -> Self {
        Self {
            max_total,
            lanes,
            total: Meter::default(),
        }
    }

    /// The sub-policies' names, by lane (the decision says `composite:sub-policy`).
    pub fn lane_names(&self) -> Vec<String> {
        self.lanes.iter().map(|l| l.name.clone()).collect()
    }

    /// Whether a sub-policy reads span contents.
    pub fn reads_spans(&self) -> bool {
        self.lanes.iter().any(|l| l.rule.reads_spans())
    }

    /// Starts a batch at `now`.
    pub fn begin(&mut self, now_unix_nano: u64) {
        let second = second_of(now_unix_nano);
        self.total.roll(second);
        for lane in &mut self.lanes {
            lane.meter.roll(second);
            lane.rule.begin(now_unix_nano);
        }
    }

    /// Evaluates the trace against the sub-policies in order.
    pub fn evaluate(&mut self, trace: &Trace<'_>) -> Outcome {
        let n = f64::from(trace.summary.span_count);
        self.total.offered += n;
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let o = lane.rule.evaluate(trace);
            if !o.sample {
                continue;
            }
            lane.meter.offered += n;
            if lane.meter.admitted + n <= lane.spans_per_second
                && self.total.admitted + n <= self.max_total
            {
                lane.meter.admitted += n;
                self.total.admitted += n;
                let share = lane.meter.estimate(lane.spans_per_second);
                return Outcome {
                    weight: o.weight * share,
                    lane: Some(i),
                    ..o
                };
            }
        }
        Outcome::NO
    }
}
