//! Checks the configuration (gathering every problem, each naming its option) and builds the
//! ready [`Rule`]s.

use std::collections::BTreeSet;

use regex::{Regex, RegexSet};

use crate::adaptive::Adaptive;
use crate::attributes::{
    BooleanAttribute, Findings, Num, NumericAttribute, StringAttribute, StringValues, TraceState,
};
use crate::basic::{Latency, Probabilistic, SpanCount, StatusCodes};
use crate::budget::Budget;
use crate::config::{CompositeConfig, Config, PolicyConfig, StatusCodeName};
use crate::duration::parse_duration;
use crate::limits::{BytesLimiting, Composite, Lane, RateLimiting};
use crate::rule::Rule;

/// The policy types, as `type:` names them.
pub const TYPES: &[&str] = &[
    "always_sample",
    "latency",
    "status_code",
    "probabilistic",
    "string_attribute",
    "numeric_attribute",
    "boolean_attribute",
    "span_count",
    "trace_state",
    "rate_limiting",
    "bytes_limiting",
    "and",
    "drop",
    "composite",
    "budget",
    "adaptive",
    "trace_analysis",
];

/// `adaptive.window` when not given.
pub const DEFAULT_WINDOW: &str = "10s";

/// A top-level policy, ready.
#[derive(Debug)]
pub struct Named {
    /// The policy's name.
    pub name: String,
    /// Decision names by lane (`composite:sub`, `budget:errors`), for [`crate::rule::Outcome::lane`].
    pub lanes: Vec<String>,
    /// The policy.
    pub rule: Rule,
}

/// The configuration, checked.
#[derive(Debug)]
pub struct Built {
    /// Stop at the first policy that samples.
    pub sample_on_first_match: bool,
    /// The `drop` policies (their sub-policies, all of which must match), in order.
    pub drops: Vec<Named>,
    /// The other policies, in order.
    pub policies: Vec<Named>,
}

impl Config {
    /// Checks every policy and builds them.
    pub fn build(self) -> Result<Built, String> {
        let mut errors = Vec::new();
        if self.policies.is_empty() {
            errors.push("config.policies: list at least one policy".to_string());
        }
        check_unique_names(
            "config.policies",
            self.policies.iter().map(|p| p.name.as_str()),
            &mut errors,
        );
        let mut built = Built {
            sample_on_first_match: self.sample_on_first_match,
            drops: Vec::new(),
            policies: Vec::new(),
        };
        for (i, p) in self.policies.into_iter().enumerate() {
            let path = format!("config.policies[{i}]");
            let name = p.name.clone();
            let is_drop = p.kind == "drop";
            let Some(rule) = build_policy(&path, p, true, &mut errors) else {
                continue;
            };
            let lanes = rule
                .lanes()
                .into_iter()
                .map(|lane| format!("{name}:{lane}"))
                .collect();
            let named = Named { name, lanes, rule };
            if is_drop {
                built.drops.push(named);
            } else {
                built.policies.push(named);
            }
        }
        if errors.is_empty() {
            Ok(built)
        } else {
            Err(errors.join("; "))
        }
    }
}

fn check_unique_names<'a>(
    path: &str,
    names: impl Iterator<Item = &'a str>,
    errors: &mut Vec<String>,
) {
    let mut seen = BTreeSet::new();
    for (i, name) in names.enumerate() {
        // Empty names are reported by `build_policy`.
        if !name.is_empty() && !seen.insert(name) {
            errors.push(format!(
                "{path}[{i}].name: another policy is already named {name:?}"
            ));
        }
    }
}

/// The options blocks present in `p`, by name.
fn blocks(p: &PolicyConfig) -> Vec<&'static str> {
    [
        ("latency", p.latency.is_some()),
        ("status_code", p.status_code.is_some()),
        ("probabilistic", p.probabilistic.is_some()),
        ("string_attribute", p.string_attribute.is_some()),
        ("numeric_attribute", p.numeric_attribute.is_some()),
        ("boolean_attribute", p.boolean_attribute.is_some()),
        ("span_count", p.span_count.is_some()),
        ("trace_state", p.trace_state.is_some()),
        ("rate_limiting", p.rate_limiting.is_some()),
        ("bytes_limiting", p.bytes_limiting.is_some()),
        ("and", p.and.is_some()),
        ("drop", p.drop.is_some()),
        ("composite", p.composite.is_some()),
        ("budget", p.budget.is_some()),
        ("adaptive", p.adaptive.is_some()),
        ("trace_analysis", p.trace_analysis.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect()
}

fn positive(path: &str, v: f64, errors: &mut Vec<String>) {
    if !(v > 0.0 && v.is_finite()) {
        errors.push(format!("{path}: must be more than 0, got {v}"));
    }
}

fn non_negative(path: &str, v: f64, errors: &mut Vec<String>) {
    if !(v >= 0.0 && v.is_finite()) {
        errors.push(format!("{path}: must be 0 or more, got {v}"));
    }
}

fn percentage(path: &str, v: f64, errors: &mut Vec<String>) {
    if !(0.0..=100.0).contains(&v) {
        errors.push(format!(
            "{path}: must be a percentage from 0 to 100, got {v}"
        ));
    }
}

fn not_empty(path: &str, v: &str, errors: &mut Vec<String>) {
    if v.is_empty() {
        errors.push(format!("{path}: must not be empty"));
    }
}

fn millis_to_nanos(ms: f64) -> u64 {
    (ms * 1e6).round().max(0.0) as u64
}

/// The regex crate's syntax errors draw a caret diagram over several lines; keep the reason.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

/// Builds one policy at `path` (`config.policies[2]`). `top`: a top-level policy, the only
/// place a `drop` may be (it vetoes the whole decision). A `drop` becomes the `and` of its
/// sub-policies.
fn build_policy(
    path: &str,
    mut p: PolicyConfig,
    top: bool,
    errors: &mut Vec<String>,
) -> Option<Rule> {
    not_empty(&format!("{path}.name"), &p.name, errors);
    let kind = std::mem::take(&mut p.kind);
    if !TYPES.contains(&kind.as_str()) {
        errors.push(format!(
            "{path}.type: unknown policy type {kind:?}, expected one of {}",
            TYPES.join(", ")
        ));
        return None;
    }
    let mut stray = false;
    for block in blocks(&p) {
        if block != kind {
            errors.push(format!(
                "{path}.{block}: only a policy of type {block} takes this block; this one's type is {kind}"
            ));
            stray = true;
        }
    }
    if stray {
        return None;
    }
    let missing = |errors: &mut Vec<String>| {
        errors.push(format!(
            "{path}.{kind}: required for a policy of type {kind}"
        ));
        None
    };
    let at = format!("{path}.{kind}");
    let name = p.name.clone();
    match kind.as_str() {
        "always_sample" => Some(Rule::Always),
        "trace_analysis" => {
            let c = p.trace_analysis.unwrap_or_default();
            for (i, pattern) in c.patterns.iter().enumerate() {
                let plain = !pattern.is_empty()
                    && pattern
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
                if !plain {
                    errors.push(format!(
                        "{at}.patterns[{i}]: {pattern:?} is not a pattern name (lower-case \
                         letters, digits and '_', e.g. n_plus_one)"
                    ));
                }
            }
            Some(Rule::TraceAnalysis(Findings {
                patterns: c.patterns.into_iter().collect(),
            }))
        }
        "latency" => {
            let Some(c) = p.latency else {
                return missing(errors);
            };
            non_negative(&format!("{at}.threshold_ms"), c.threshold_ms, errors);
            non_negative(
                &format!("{at}.upper_threshold_ms"),
                c.upper_threshold_ms,
                errors,
            );
            if c.upper_threshold_ms > 0.0 && c.upper_threshold_ms <= c.threshold_ms {
                errors.push(format!(
                    "{at}.upper_threshold_ms: must be more than threshold_ms ({}), or 0 for no upper bound",
                    c.threshold_ms
                ));
            }
            Some(Rule::Latency(Latency {
                threshold_nanos: millis_to_nanos(c.threshold_ms),
                upper_nanos: (c.upper_threshold_ms > 0.0)
                    .then(|| millis_to_nanos(c.upper_threshold_ms)),
            }))
        }
        "status_code" => {
            let Some(c) = p.status_code else {
                return missing(errors);
            };
            if c.status_codes.is_empty() {
                errors.push(format!(
                    "{at}.status_codes: list at least one of ERROR, OK, UNSET"
                ));
            }
            let has = |code| c.status_codes.contains(&code);
            Some(Rule::StatusCode(StatusCodes {
                error: has(StatusCodeName::Error),
                ok: has(StatusCodeName::Ok),
                unset: has(StatusCodeName::Unset),
            }))
        }
        "probabilistic" => {
            let Some(c) = p.probabilistic else {
                return missing(errors);
            };
            percentage(
                &format!("{at}.sampling_percentage"),
                c.sampling_percentage,
                errors,
            );
            Some(Rule::Probabilistic(Probabilistic::new(
                c.sampling_percentage / 100.0,
                &c.hash_salt,
            )))
        }
        "string_attribute" => {
            let Some(c) = p.string_attribute else {
                return missing(errors);
            };
            not_empty(&format!("{at}.key"), &c.key, errors);
            if c.values.is_empty() {
                errors.push(format!("{at}.values: list at least one value"));
                return None;
            }
            let values = if c.enabled_regex_matching {
                let mut ok = true;
                for (i, pattern) in c.values.iter().enumerate() {
                    if let Err(e) = Regex::new(pattern) {
                        errors.push(format!(
                            "{at}.values[{i}]: invalid regex {pattern:?} in policy {name:?}: {}",
                            regex_error(&e)
                        ));
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                match RegexSet::new(&c.values) {
                    Ok(set) => StringValues::Regex(set),
                    Err(e) => {
                        errors.push(format!(
                            "{at}.values: the regexes of policy {name:?} together: {}",
                            regex_error(&e)
                        ));
                        return None;
                    }
                }
            } else {
                StringValues::Exact(c.values.into_iter().collect())
            };
            Some(Rule::StringAttribute(StringAttribute {
                key: c.key,
                values,
                invert: c.invert_match,
            }))
        }
        "numeric_attribute" => {
            let Some(c) = p.numeric_attribute else {
                return missing(errors);
            };
            not_empty(&format!("{at}.key"), &c.key, errors);
            let min = c.min_value.as_ref().map(Num::of);
            let max = c.max_value.as_ref().map(Num::of);
            match (min, max) {
                (None, None) => errors.push(format!("{at}: give min_value, max_value or both")),
                (Some(lo), Some(hi)) if num(lo) > num(hi) => errors.push(format!(
                    "{at}.max_value: must be at least min_value ({})",
                    num(lo)
                )),
                _ => {}
            }
            Some(Rule::NumericAttribute(NumericAttribute {
                key: c.key,
                min,
                max,
                invert: c.invert_match,
            }))
        }
        "boolean_attribute" => {
            let Some(c) = p.boolean_attribute else {
                return missing(errors);
            };
            not_empty(&format!("{at}.key"), &c.key, errors);
            Some(Rule::BooleanAttribute(BooleanAttribute {
                key: c.key,
                value: c.value,
                invert: c.invert_match,
            }))
        }
        "span_count" => {
            let Some(c) = p.span_count else {
                return missing(errors);
            };
            if c.max_spans > 0 && c.max_spans < c.min_spans {
                errors.push(format!(
                    "{at}.max_spans: must be at least min_spans ({}), or 0 for no upper bound",
                    c.min_spans
                ));
            }
            Some(Rule::SpanCount(SpanCount {
                min: c.min_spans,
                max: c.max_spans,
            }))
        }
        "trace_state" => {
            let Some(c) = p.trace_state else {
                return missing(errors);
            };
            not_empty(&format!("{at}.key"), &c.key, errors);
            if c.values.is_empty() {
                errors.push(format!("{at}.values: list at least one value"));
            }
            Some(Rule::TraceState(TraceState {
                key: c.key,
                values: c.values.into_iter().collect(),
            }))
        }
        "rate_limiting" => {
            let Some(c) = p.rate_limiting else {
                return missing(errors);
            };
            positive(
                &format!("{at}.spans_per_second"),
                c.spans_per_second,
                errors,
            );
            Some(Rule::RateLimiting(RateLimiting::new(c.spans_per_second)))
        }
        "bytes_limiting" => {
            let Some(c) = p.bytes_limiting else {
                return missing(errors);
            };
            positive(
                &format!("{at}.bytes_per_second"),
                c.bytes_per_second,
                errors,
            );
            let burst = c.burst_capacity.unwrap_or(2.0 * c.bytes_per_second);
            positive(&format!("{at}.burst_capacity"), burst, errors);
            Some(Rule::BytesLimiting(BytesLimiting::new(
                c.bytes_per_second,
                burst,
            )))
        }
        "and" => {
            let Some(c) = p.and else {
                return missing(errors);
            };
            build_all(&format!("{at}.and_sub_policy"), c.and_sub_policy, errors).map(Rule::And)
        }
        "drop" => {
            let Some(c) = p.drop else {
                return missing(errors);
            };
            if !top {
                errors.push(format!(
                    "{path}.type: a drop policy vetoes the whole decision, so it can only be a top-level policy"
                ));
                return None;
            }
            build_all(&format!("{at}.drop_sub_policy"), c.drop_sub_policy, errors).map(Rule::And)
        }
        "composite" => {
            let Some(c) = p.composite else {
                return missing(errors);
            };
            build_composite(&at, c, errors).map(Rule::Composite)
        }
        "budget" => {
            let Some(c) = p.budget else {
                return missing(errors);
            };
            positive(
                &format!("{at}.spans_per_second"),
                c.spans_per_second,
                errors,
            );
            non_negative(
                &format!("{at}.slow_threshold_ms"),
                c.slow_threshold_ms,
                errors,
            );
            percentage(
                &format!("{at}.random_percentage"),
                c.random_percentage,
                errors,
            );
            Some(Rule::Budget(Budget::new(
                c.spans_per_second,
                millis_to_nanos(c.slow_threshold_ms),
                c.random_percentage / 100.0,
            )))
        }
        "adaptive" => {
            let Some(c) = p.adaptive else {
                return missing(errors);
            };
            positive(
                &format!("{at}.target_traces_per_second"),
                c.target_traces_per_second,
                errors,
            );
            percentage(&format!("{at}.min_percentage"), c.min_percentage, errors);
            percentage(&format!("{at}.max_percentage"), c.max_percentage, errors);
            if c.max_percentage <= 0.0 {
                errors.push(format!("{at}.max_percentage: must be more than 0"));
            }
            if c.min_percentage > c.max_percentage {
                errors.push(format!(
                    "{at}.min_percentage: must be at most max_percentage ({})",
                    c.max_percentage
                ));
            }
            let window = c.window.as_deref().unwrap_or(DEFAULT_WINDOW);
            let window_nanos = match parse_duration(window) {
                Ok(0) => {
                    errors.push(format!("{at}.window: must be longer than 0"));
                    return None;
                }
                Ok(n) => n,
                Err(e) => {
                    errors.push(format!("{at}.window: {e}"));
                    return None;
                }
            };
            Some(Rule::Adaptive(Adaptive::new(
                c.target_traces_per_second,
                c.min_percentage / 100.0,
                c.max_percentage / 100.0,
                window_nanos,
            )))
        }
        _ => unreachable!("every entry of TYPES is handled"),
    }
}

fn num(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

/// Builds sub-policies at `path` (`...and.and_sub_policy`): at least one, none a `drop`.
fn build_all(path: &str, subs: Vec<PolicyConfig>, errors: &mut Vec<String>) -> Option<Vec<Rule>> {
    if subs.is_empty() {
        errors.push(format!("{path}: list at least one sub-policy"));
        return None;
    }
    let before = errors.len();
    let mut rules = Vec::with_capacity(subs.len());
    for (i, sub) in subs.into_iter().enumerate() {
        let at = format!("{path}[{i}]");
        if let Some(rule) = build_policy(&at, sub, false, errors) {
            rules.push(rule);
        }
    }
    (errors.len() == before).then_some(rules)
}

fn build_composite(at: &str, c: CompositeConfig, errors: &mut Vec<String>) -> Option<Composite> {
    let before = errors.len();
    positive(
        &format!("{at}.max_total_spans_per_second"),
        c.max_total_spans_per_second,
        errors,
    );
    let subs_at = format!("{at}.composite_sub_policy");
    check_unique_names(
        &subs_at,
        c.composite_sub_policy.iter().map(|p| p.name.as_str()),
        errors,
    );
    let names: Vec<String> = c
        .composite_sub_policy
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let index = |name: &str| names.iter().position(|n| n == name);

    let order: Vec<usize> = if c.policy_order.is_empty() {
        (0..names.len()).collect()
    } else {
        let mut order = Vec::new();
        for (k, name) in c.policy_order.iter().enumerate() {
            match index(name) {
                None => errors.push(format!(
                    "{at}.policy_order[{k}]: no sub-policy is named {name:?}"
                )),
                Some(i) if order.contains(&i) => {
                    errors.push(format!("{at}.policy_order[{k}]: {name:?} is listed twice"))
                }
                Some(i) => order.push(i),
            }
        }
        for (i, name) in names.iter().enumerate() {
            if !order.contains(&i) && !c.policy_order.contains(name) {
                errors.push(format!(
                    "{at}.policy_order: sub-policy {name:?} is missing; list every sub-policy once"
                ));
            }
        }
        order
    };

    let mut percents: Vec<Option<f64>> = vec![None; names.len()];
    for (k, a) in c.rate_allocation.iter().enumerate() {
        let a_at = format!("{at}.rate_allocation[{k}]");
        if !(a.percent > 0.0 && a.percent <= 100.0) {
            errors.push(format!(
                "{a_at}.percent: must be more than 0 and at most 100, got {}",
                a.percent
            ));
        }
        match index(&a.policy) {
            None => errors.push(format!(
                "{a_at}.policy: no sub-policy is named {:?}",
                a.policy
            )),
            Some(i) if percents[i].is_some() => errors.push(format!(
                "{a_at}.policy: {:?} already has an allocation",
                a.policy
            )),
            Some(i) => percents[i] = Some(a.percent),
        }
    }
    let allocated: f64 = percents.iter().flatten().sum();
    if allocated > 100.0 + 1e-9 {
        errors.push(format!(
            "{at}.rate_allocation: the percents add up to {allocated}, more than 100"
        ));
    }
    let unlisted = percents.iter().filter(|p| p.is_none()).count();
    let rest = if unlisted > 0 {
        (100.0 - allocated).max(0.0) / unlisted as f64
    } else {
        0.0
    };

    let rules = build_all(&subs_at, c.composite_sub_policy, errors)?;
    if errors.len() > before {
        return None;
    }
    let mut rules: Vec<Option<Rule>> = rules.into_iter().map(Some).collect();
    let lanes = order
        .into_iter()
        .map(|i| Lane {
            name: names[i].clone(),
            rule: rules[i]
                .take()
                .expect("each sub-policy is in the order once"),
            spans_per_second: percents[i].unwrap_or(rest) / 100.0 * c.max_total_spans_per_second,
            meter: Default::default(),
        })
        .collect();
    Some(Composite::new(c.max_total_spans_per_second, lanes))
}
