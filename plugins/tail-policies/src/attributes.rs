//! Policies over span contents: `string_attribute`, `numeric_attribute`, `boolean_attribute`
//! (span and resource attributes of every span), `trace_state` and `trace_analysis`.

use std::collections::BTreeSet;

use regex::RegexSet;
use wasmcol_plugin_sdk::policy::Trace;
use wasmcol_plugin_sdk::proto::common::AnyValue;
use wasmcol_plugin_sdk::proto::common::any_value::Value as V;

/// What a `string_attribute` policy compares values with.
#[derive(Debug)]
pub enum StringValues {
    /// Exact values (a set: deterministic, no hashing seed needed in the sandbox).
    Exact(BTreeSet<String>),
    /// Unanchored regexes, compiled once into one automaton.
    Regex(RegexSet),
}

/// `string_attribute`.
#[derive(Debug)]
pub struct StringAttribute {
    /// The attribute.
    pub key: String,
    /// The values matched.
    pub values: StringValues,
    /// Sample what does not match.
    pub invert: bool,
}

impl StringAttribute {
    /// Whether the policy samples the trace.
    pub fn matches(&self, trace: &Trace<'_>) -> bool {
        let found = trace.any_attribute(&self.key, |v| match &v.value {
            Some(V::StringValue(s)) => match &self.values {
                StringValues::Exact(set) => set.contains(s.as_str()),
                StringValues::Regex(set) => set.is_match(s),
            },
            _ => false,
        });
        found != self.invert
    }
}

/// A bound of a `numeric_attribute` range, kept as written so that integers compare exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// An integer.
    Int(i64),
    /// A number with a fraction (or out of i64's range).
    Float(f64),
}

impl Num {
    /// From a JSON number.
    pub fn of(n: &serde_json::Number) -> Self {
        match n.as_i64() {
            Some(i) => Num::Int(i),
            None => Num::Float(n.as_f64().unwrap_or(f64::NAN)),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// `self <= v`, for an attribute value `v`.
    fn le(self, v: &V) -> bool {
        match (self, v) {
            (Num::Int(b), V::IntValue(i)) => b <= *i,
            (b, V::IntValue(i)) => b.as_f64() <= *i as f64,
            (b, V::DoubleValue(d)) => b.as_f64() <= *d,
            _ => false,
        }
    }

    /// `v <= self`.
    fn ge(self, v: &V) -> bool {
        match (self, v) {
            (Num::Int(b), V::IntValue(i)) => *i <= b,
            (b, V::IntValue(i)) => (*i as f64) <= b.as_f64(),
            (b, V::DoubleValue(d)) => *d <= b.as_f64(),
            _ => false,
        }
    }
}

/// `numeric_attribute`.
#[derive(Debug)]
pub struct NumericAttribute {
    /// The attribute.
    pub key: String,
    /// The smallest value matched, if bounded.
    pub min: Option<Num>,
    /// The largest value matched, if bounded.
    pub max: Option<Num>,
    /// Sample what does not match.
    pub invert: bool,
}

impl NumericAttribute {
    /// Whether the policy samples the trace.
    pub fn matches(&self, trace: &Trace<'_>) -> bool {
        let found = trace.any_attribute(&self.key, |v: &AnyValue| match &v.value {
            Some(n @ (V::IntValue(_) | V::DoubleValue(_))) => {
                self.min.is_none_or(|m| m.le(n)) && self.max.is_none_or(|m| m.ge(n))
            }
            _ => false,
        });
        found != self.invert
    }
}

/// `boolean_attribute`.
#[derive(Debug)]
pub struct BooleanAttribute {
    /// The attribute.
    pub key: String,
    /// The value matched.
    pub value: bool,
    /// Sample what does not match.
    pub invert: bool,
}

impl BooleanAttribute {
    /// Whether the policy samples the trace.
    pub fn matches(&self, trace: &Trace<'_>) -> bool {
        let found = trace.any_attribute(
            &self.key,
            |v| matches!(v.value, Some(V::BoolValue(b)) if b == self.value),
        );
        found != self.invert
    }
}

/// The span attribute the `trace_analysis` connector writes on the spans involved in a
/// finding: a string array of their patterns.
pub const FINDINGS_ATTRIBUTE: &str = "trace_analysis.findings";

/// `trace_analysis`.
#[derive(Debug)]
pub struct Findings {
    /// The patterns that sample; empty: any.
    pub patterns: BTreeSet<String>,
}

impl Findings {
    /// Whether some span carries a finding of one of the patterns (a string array, or a
    /// single string as written by hand).
    pub fn matches(&self, trace: &Trace<'_>) -> bool {
        let wanted = |s: &str| self.patterns.is_empty() || self.patterns.contains(s);
        trace.any_attribute(FINDINGS_ATTRIBUTE, |v| match &v.value {
            Some(V::ArrayValue(a)) => a.values.iter().any(|v| match &v.value {
                Some(V::StringValue(s)) => wanted(s),
                _ => false,
            }),
            Some(V::StringValue(s)) => !s.is_empty() && wanted(s),
            _ => false,
        })
    }
}

/// `trace_state`.
#[derive(Debug)]
pub struct TraceState {
    /// The tracestate key.
    pub key: String,
    /// The values matched.
    pub values: BTreeSet<String>,
}

impl TraceState {
    /// Whether some span's tracestate has the key set to one of the values.
    pub fn matches(&self, trace: &Trace<'_>) -> bool {
        trace.spans().any(|(_, _, span)| {
            tracestate_get(&span.trace_state, &self.key).is_some_and(|v| self.values.contains(v))
        })
    }
}

/// The value of `key` in a W3C `tracestate` header (`k1=v1,k2=v2`, members optionally
/// surrounded by spaces or tabs). A key appears at most once in a valid header; the first
/// wins otherwise.
pub fn tracestate_get<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    header.split(',').find_map(|member| {
        let (k, v) = member.trim_matches([' ', '\t']).split_once('=')?;
        (k == key).then_some(v)
    })
}
