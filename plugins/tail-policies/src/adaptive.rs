//! `adaptive`: per-service probabilities that hold the kept traces per second near a target,
//! keeping more of services with little traffic.
//!
//! Traces are counted by `service.name` (the summary's root service) over a window of the
//! host's clock. When a batch begins after the window has passed, each service's rate is its
//! count over the time elapsed, and probabilities are shared out by water-filling: in order of
//! increasing rate, a service whose rate (times the maximum probability) is within the fair
//! share (what is left of the target over the services left) keeps the maximum probability,
//! and the services above it split what remains equally in traces per second. Probabilities
//! are then held within `[min_percentage, max_percentage]`, so the target is approximate when
//! the floor binds.
//!
//! A trace is kept when its trace ID's randomness is under its service's probability, so
//! decisions agree with other consistent samplers, and the decision carries that probability.
//! Services not seen in the last window (all of them, until the first window ends) get the
//! maximum probability: a new service is more often small than large, and a large one is
//! corrected at the next window's end.

use std::collections::BTreeMap;

use wasmcol_plugin_sdk::policy::TraceSummary;

use crate::rule::{Outcome, keeps_by_trace_id};

/// The `adaptive` policy.
#[derive(Debug)]
pub struct Adaptive {
    target: f64,
    min: f64,
    max: f64,
    window_nanos: u64,
    window_start: Option<u64>,
    /// Traces seen per service since `window_start`. Ordered maps: deterministic, and no
    /// hashing seed to ask the sandbox for.
    counts: BTreeMap<String, u64>,
    /// Probability per service, from the last window.
    probabilities: BTreeMap<String, f64>,
}

impl Adaptive {
    /// Holds `target` kept traces per second, probabilities within `[min, max]` (in [0, 1]),
    /// re-computed every `window_nanos`.
    pub fn new(target: f64, min: f64, max: f64, window_nanos: u64) -> Self {
        Self {
            target,
            min,
            max,
            window_nanos,
            window_start: None,
            counts: BTreeMap::new(),
            probabilities: BTreeMap::new(),
        }
    }

    /// Starts a batch at `now`; re-computes the probabilities when the window has passed.
    pub fn begin(&mut self, now_unix_nano: u64) {
        let Some(start) = self.window_start else {
            self.window_start = Some(now_unix_nano);
            return;
        };
        let elapsed = now_unix_nano.saturating_sub(start);
        if elapsed < self.window_nanos {
            return;
        }
        let seconds = elapsed as f64 / 1e9;
        let rates: Vec<(&str, f64)> = self
            .counts
            .iter()
            .map(|(s, &c)| (s.as_str(), c as f64 / seconds))
            .collect();
        self.probabilities = share(&rates, self.target, self.min, self.max)
            .into_iter()
            .map(|(s, p)| (s.to_string(), p))
            .collect();
        self.counts.clear();
        self.window_start = Some(now_unix_nano);
    }

    /// The probability the trace's service currently gets.
    pub fn probability(&self, service: &str) -> f64 {
        self.probabilities.get(service).copied().unwrap_or(self.max)
    }

    /// Counts the trace and decides by its service's probability.
    pub fn evaluate(&mut self, s: &TraceSummary) -> Outcome {
        match self.counts.get_mut(s.service_name.as_str()) {
            Some(c) => *c += 1,
            None => {
                self.counts.insert(s.service_name.clone(), 1);
            }
        }
        let p = self.probability(&s.service_name);
        if keeps_by_trace_id(s, p) {
            Outcome::by_ratio(p)
        } else {
            Outcome::NO
        }
    }
}

/// Water-fills `target` traces per second over services with `rates` (traces per second):
/// each service's probability, within `[min, max]`.
pub fn share<'a>(rates: &[(&'a str, f64)], target: f64, min: f64, max: f64) -> Vec<(&'a str, f64)> {
    let mut by_rate = rates.to_vec();
    by_rate.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut left = target;
    let mut out = Vec::with_capacity(by_rate.len());
    for (i, (service, rate)) in by_rate.iter().enumerate() {
        let fair = left / (by_rate.len() - i) as f64;
        let p = if *rate * max <= fair {
            max
        } else {
            (fair / rate).clamp(min, max)
        };
        left = (left - rate * p).max(0.0);
        out.push((*service, p));
    }
    out
}
