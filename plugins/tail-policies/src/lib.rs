//! `builtin:tail-policies`: the OpenTelemetry Collector `tail_sampling` processor's policies,
//! plus two of our own, as a tail-sampling policy plugin.
//!
//! The configuration has the Collector's shape (see [`Config`]):
//!
//! ```yaml
//! sample_on_first_match: false
//! policies:
//!   - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
//!   - { name: slow, type: latency, latency: { threshold_ms: 500 } }
//!   - { name: some, type: probabilistic, probabilistic: { sampling_percentage: 10 } }
//! ```
//!
//! Policy types: `always_sample`, `latency`, `status_code`, `probabilistic`,
//! `string_attribute`, `numeric_attribute`, `boolean_attribute`, `span_count`, `trace_state`,
//! `rate_limiting`, `bytes_limiting`, `and`, `drop`, `composite`, and ours: `budget` (a cap on
//! kept spans per second shared by errors, then slow traces, then a random share),
//! `adaptive` (per-service probabilities holding a target of kept traces per second) and
//! `trace_analysis` (a span carries the `trace_analysis` connector's findings attribute, of one
//! of the listed patterns).
//!
//! How a trace is decided:
//! 1. The `drop` policies are evaluated first, wherever they are listed: when every
//!    sub-policy of one matches, the trace is dropped and the decision names that policy.
//!    Evaluating them first means stateful policies never count a trace that is dropped.
//! 2. The other policies are evaluated in order; the first that samples decides, and the
//!    decision names it (`budget` and `composite` add the lane that kept the trace:
//!    `budget:errors`, `budget:slow`, `budget:random`, `comp:p1`). With
//!    `sample_on_first_match` evaluation stops there; otherwise the later policies see the
//!    trace too, so stateful ones count it as the Collector's do.
//! 3. When none samples, the trace is dropped and the decision's policy name is empty: no
//!    policy decided it.
//!
//! A kept trace's probability is 1 for the deterministic policies (status, latency,
//! attributes, span count, trace state, `always_sample`); the sampling share for
//! `probabilistic` and `adaptive`; and for the limiters (`rate_limiting`, `bytes_limiting`,
//! `composite`, `budget`) an estimate of the share of the traffic offered to them that they
//! keep (see `limits.rs`). `and` takes the smallest of its sub-policies' trace-ID thresholds
//! (they are nested) times the product of their other factors.
//!
//! Stateful policies are clocked by the host's clock given to `begin` once per batch; the
//! plugin never reads a clock itself.

mod adaptive;
mod attributes;
mod basic;
mod budget;
mod build;
mod config;
mod duration;
mod limits;
mod rule;

#[cfg(test)]
mod tests;

use wasmcol_plugin_sdk::PluginConfig;
use wasmcol_plugin_sdk::policy::{Decision, Policy, Trace};

use build::Named;
pub use config::Config;

/// The plugin: the configured policies, ready.
pub struct TailPolicies {
    sample_on_first_match: bool,
    drops: Vec<Named>,
    policies: Vec<Named>,
    needs_spans: bool,
}

impl Policy for TailPolicies {
    fn new(config: PluginConfig) -> Result<Self, String> {
        let built = config.parse::<Config>()?.build()?;
        let needs_spans = built
            .drops
            .iter()
            .chain(&built.policies)
            .any(|p| p.rule.reads_spans());
        Ok(Self {
            sample_on_first_match: built.sample_on_first_match,
            drops: built.drops,
            policies: built.policies,
            needs_spans,
        })
    }

    fn needs_spans(&self) -> bool {
        self.needs_spans
    }

    fn begin(&mut self, now_unix_nano: u64) {
        for p in self.drops.iter_mut().chain(&mut self.policies) {
            p.rule.begin(now_unix_nano);
        }
    }

    fn decide(&mut self, trace: &Trace<'_>) -> Decision {
        for p in &mut self.drops {
            if p.rule.evaluate(trace).sample {
                return Decision::drop(p.name.as_str());
            }
        }
        let mut decision = None;
        for p in &mut self.policies {
            let outcome = p.rule.evaluate(trace);
            if outcome.sample && decision.is_none() {
                let name = outcome.lane.and_then(|l| p.lanes.get(l)).unwrap_or(&p.name);
                decision = Some(Decision::sample(name.as_str(), outcome.probability()));
                if self.sample_on_first_match {
                    break;
                }
            }
        }
        decision.unwrap_or_else(|| Decision::drop(""))
    }
}

wasmcol_plugin_sdk::export_policy!(TailPolicies);
