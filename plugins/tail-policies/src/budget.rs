//! `budget`: at most `spans_per_second` kept spans per second of the host's clock, shared in
//! priority order: traces with an error, then slow traces, then a random share of the rest.
//!
//! Decisions come one trace at a time, in arrival order, so a slow trace cannot wait to see
//! whether errors will want the budget later in the second. Priority is kept by reservation:
//! a lane may only use the budget less what the lanes above it are still expected to need
//! this second, estimated as what they were offered in the previous second (with
//! [`HEADROOM`] for traffic that varies) less what they were offered so far in this one.
//! Errors may use the whole budget. In the first second (no history) lanes are served first
//! come, first served; the cap holds regardless.
//!
//! Kept traces are named `<policy>:errors`, `<policy>:slow` or `<policy>:random`, so that
//! downstream knows why each was kept. Their probability is the lane's estimated share kept
//! (see [`crate::limits`]): the budget left to the lane (the cap less the demand of the lanes
//! above) over the lane's demand, times `random_percentage` for the random lane.

use wasmcol_plugin_sdk::policy::TraceSummary;

use crate::limits::{Meter, second_of};
use crate::rule::{Outcome, keeps_by_trace_id};

/// The lanes, in priority order; the suffixes of decision names.
pub const LANES: [&str; 3] = ["errors", "slow", "random"];

const ERRORS: usize = 0;
const SLOW: usize = 1;
const RANDOM: usize = 2;

/// Reserves for higher lanes are last second's demand times this: error bursts are
/// rarely exactly as large as the second before, and errors come first.
pub const HEADROOM: f64 = 1.25;

/// The `budget` policy.
#[derive(Debug)]
pub struct Budget {
    cap: f64,
    slow_nanos: u64,
    random: f64,
    /// Spans kept this second, over all lanes.
    total: Meter,
    /// Spans offered to and kept by each lane.
    lanes: [Meter; 3],
}

impl Budget {
    /// A budget of `spans_per_second`; traces lasting `slow_nanos` or more are slow;
    /// `random` (in [0, 1]) of the others are offered what remains.
    pub fn new(spans_per_second: f64, slow_nanos: u64, random: f64) -> Self {
        Self {
            cap: spans_per_second,
            slow_nanos,
            random,
            total: Meter::default(),
            lanes: Default::default(),
        }
    }

    /// Starts a batch at `now`.
    pub fn begin(&mut self, now_unix_nano: u64) {
        let second = second_of(now_unix_nano);
        self.total.roll(second);
        for lane in &mut self.lanes {
            lane.roll(second);
        }
    }

    /// Decides for one trace.
    pub fn evaluate(&mut self, s: &TraceSummary) -> Outcome {
        let lane = if s.error_spans > 0 {
            ERRORS
        } else if s.duration_nanos() >= self.slow_nanos {
            SLOW
        } else if keeps_by_trace_id(s, self.random) {
            RANDOM
        } else {
            return Outcome::NO;
        };
        let n = f64::from(s.span_count);
        self.lanes[lane].offered += n;
        let reserve: f64 = self.lanes[..lane]
            .iter()
            .map(|above| (above.previous * HEADROOM - above.offered).max(0.0))
            .sum();
        if self.total.admitted + n > self.cap - reserve {
            return Outcome::NO;
        }
        self.total.admitted += n;
        self.lanes[lane].admitted += n;
        let left: f64 = self.cap - self.lanes[..lane].iter().map(Meter::demand).sum::<f64>();
        let share = self.lanes[lane].estimate(left);
        Outcome {
            ratio: if lane == RANDOM { self.random } else { 1.0 },
            weight: share,
            lane: Some(lane),
            sample: true,
        }
    }
}
