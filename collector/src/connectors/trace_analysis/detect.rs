//! The detectors: each reads one complete trace and reports findings.
//!
//! A *call* is a span that leaves its service: a database span (`db.system` or
//! `db.system.name`), or a `CLIENT` or `PRODUCER` span. A call has a *target* (the database
//! system and namespace or server; for other calls `peer.service`, `server.address` or
//! `net.peer.name`), a *statement* (the query text, the HTTP method and URL, or the span
//! name) and the statement *normalized* (literals of a query, and ids in a URL path, replaced
//! by `?`; an `http.route` or `url.template` taken as it is).

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use super::config::TraceAnalysisConfig;

/// The kinds of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    /// Sequential calls of one normalized statement under one parent.
    NPlusOne,
    /// The same call, parameters and all, repeated under one parent.
    DuplicateCall,
    /// Many calls to one callee under one entry span.
    FanOut,
    /// The deepest error span without an erroring descendant.
    ErrorOrigin,
}

impl Pattern {
    /// The name written in `pattern` and `trace_analysis.findings`.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::NPlusOne => "n_plus_one",
            Pattern::DuplicateCall => "duplicate_call",
            Pattern::FanOut => "fan_out",
            Pattern::ErrorOrigin => "error_origin",
        }
    }
}

/// One span of the trace being analysed.
pub struct TraceSpan<'a> {
    /// The span.
    pub span: &'a Span,
    /// Its resource's `service.name` (empty if none).
    pub service: &'a str,
}

/// One finding in one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was found.
    pub pattern: Pattern,
    /// The span the finding is about (the parent of repeated calls, the entry span of a
    /// fan-out, the error's origin): its index in the trace's spans.
    pub anchor: usize,
    /// Every span involved (the anchor and the calls, or the spans the error reached).
    pub spans: Vec<usize>,
    /// How bad: calls in the run, repetitions, calls to the callee, or services reached.
    pub magnitude: u32,
    /// `error_origin`: the services the error propagated to, nearest first.
    pub propagated_to: Vec<String>,
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text<'a>(span: &'a Span, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| match attribute(span, k) {
        Some(Value::StringValue(s)) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    })
}

/// A call's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Call {
    target: String,
    normalized: String,
    /// The statement with its parameters, for exact repeats.
    statement: String,
}

fn call(span: &Span) -> Option<Call> {
    if let Some(system) = text(span, &["db.system", "db.system.name"]) {
        let place = text(span, &["db.namespace", "db.name", "server.address"]).unwrap_or("");
        let statement = text(span, &["db.query.text", "db.statement"]).unwrap_or(&span.name);
        let mut exact = statement.to_owned();
        for kv in &span.attributes {
            if kv.key.starts_with("db.query.parameter.") {
                exact.push_str(&format!("|{}={}", kv.key, display(kv)));
            }
        }
        return Some(Call {
            target: format!("{system}/{place}"),
            normalized: normalize_query(statement),
            statement: exact,
        });
    }
    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
    if !matches!(kind, SpanKind::Client | SpanKind::Producer) {
        return None;
    }
    let target = text(
        span,
        &[
            "peer.service",
            "server.address",
            "net.peer.name",
            "rpc.service",
        ],
    )
    .unwrap_or("")
    .to_owned();
    let method = text(span, &["http.request.method", "http.method"]);
    let url = text(span, &["url.full", "http.url", "url.path", "http.target"]);
    let (normalized, statement) = match (method, url) {
        (Some(m), Some(u)) => {
            let path = url_path(u);
            let normalized = match text(span, &["http.route", "url.template"]) {
                Some(route) => format!("{m} {route}"),
                None => format!("{m} {}", normalize_path(path)),
            };
            (normalized, format!("{m} {u}"))
        }
        _ => (span.name.clone(), span.name.clone()),
    };
    Some(Call {
        target,
        normalized,
        statement,
    })
}

fn display(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// The path of a URL (`scheme://host/path?query` or `/path?query`), without its query.
fn url_path(url: &str) -> &str {
    let rest = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        None => url,
    };
    rest.split(['?', '#']).next().unwrap_or(rest)
}

/// A URL path with id-like segments (containing a digit) replaced by `?`.
pub fn normalize_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.bytes().any(|b| b.is_ascii_digit()) {
                "?"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A query with its literals (quoted strings, numbers) replaced by `?` and runs of
/// whitespace made one space, so that `WHERE id = 7` and `WHERE id = 8` read alike.
pub fn normalize_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut chars = query.chars().peekable();
    let mut prev_word = false;
    let mut prev_space = false;
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' {
            // A quoted literal (`''` inside is an escaped quote).
            while let Some(d) = chars.next() {
                if d == c {
                    if chars.peek() == Some(&c) {
                        chars.next();
                        continue;
                    }
                    break;
                }
            }
            out.push('?');
            prev_word = false;
            prev_space = false;
        } else if c.is_ascii_digit() && !prev_word {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.')
            {
                chars.next();
            }
            out.push('?');
            prev_word = false;
            prev_space = false;
        } else if c.is_whitespace() {
            if !prev_space && !out.is_empty() {
                out.push(' ');
            }
            prev_space = true;
            prev_word = false;
        } else {
            out.push(c);
            prev_word = c.is_alphanumeric() || c == '_';
            prev_space = false;
        }
    }
    out.trim_end().to_owned()
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
}

fn is_entry(span: &Span) -> bool {
    matches!(
        SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
        SpanKind::Server | SpanKind::Consumer
    ) || span.parent_span_id.is_empty()
}

/// Runs the enabled detectors over one complete trace.
pub fn analyse(spans: &[TraceSpan<'_>], config: &TraceAnalysisConfig) -> Vec<Finding> {
    let (parent, children) = tree(spans);
    let calls: Vec<Option<Call>> = spans.iter().map(|s| call(s.span)).collect();
    let mut findings = Vec::new();
    for (p, kids) in children.iter().enumerate() {
        repeated_calls(p, kids, spans, &calls, config, &mut findings);
    }
    if config.fan_out.enabled {
        fan_out(spans, &parent, &children, &calls, config, &mut findings);
    }
    if config.error_origin.enabled {
        error_origin(spans, &parent, &mut findings);
    }
    findings
}

/// `n_plus_one` and `duplicate_call` among the children of span `p`.
fn repeated_calls(
    p: usize,
    kids: &[usize],
    spans: &[TraceSpan<'_>],
    calls: &[Option<Call>],
    config: &TraceAnalysisConfig,
    findings: &mut Vec<Finding>,
) {
    let mut groups: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for &k in kids {
        if let Some(c) = &calls[k] {
            groups
                .entry((c.target.as_str(), c.normalized.as_str()))
                .or_default()
                .push(k);
        }
    }
    let mut groups: Vec<_> = groups.into_values().collect();
    groups.sort();
    for mut group in groups {
        group.sort_by_key(|&k| (spans[k].span.start_time_unix_nano, k));
        let mut n_plus_one = false;
        if config.n_plus_one.enabled && group.len() >= config.n_plus_one.min_calls as usize {
            // The longest run of calls each starting after the previous one ended.
            let (mut best, mut run) = (0..0, 0..1);
            for i in 1..group.len() {
                let prev = spans[group[i - 1]].span;
                if spans[group[i]].span.start_time_unix_nano >= prev.end_time_unix_nano {
                    run.end = i + 1;
                } else {
                    run = i..i + 1;
                }
                if run.len() > best.len() {
                    best = run.clone();
                }
            }
            if best.len() >= config.n_plus_one.min_calls as usize {
                n_plus_one = true;
                let mut involved = vec![p];
                involved.extend_from_slice(&group[best.clone()]);
                findings.push(Finding {
                    pattern: Pattern::NPlusOne,
                    anchor: p,
                    spans: involved,
                    magnitude: best.len() as u32,
                    propagated_to: Vec::new(),
                });
            }
        }
        if !config.duplicate_call.enabled || n_plus_one {
            continue;
        }
        let mut same: HashMap<&str, Vec<usize>> = HashMap::new();
        for &k in &group {
            let statement = calls[k].as_ref().map_or("", |c| c.statement.as_str());
            same.entry(statement).or_default().push(k);
        }
        let mut same: Vec<_> = same.into_values().collect();
        same.sort();
        for repeats in same {
            if repeats.len() >= config.duplicate_call.min_calls as usize {
                let mut involved = vec![p];
                involved.extend_from_slice(&repeats);
                findings.push(Finding {
                    pattern: Pattern::DuplicateCall,
                    anchor: p,
                    spans: involved,
                    magnitude: repeats.len() as u32,
                    propagated_to: Vec::new(),
                });
            }
        }
    }
}

/// The nearest entry span above span `i` (bounded, in case parents loop).
fn entry_of(i: usize, spans: &[TraceSpan<'_>], parent: &[Option<usize>]) -> Option<usize> {
    let mut at = parent[i];
    for _ in 0..spans.len() {
        let a = at?;
        if is_entry(spans[a].span) {
            return Some(a);
        }
        at = parent[a];
    }
    None
}

/// The callee of call `i`: the service that answered (a child span of another service), else
/// the call's target.
fn callee_of(i: usize, call: &Call, spans: &[TraceSpan<'_>], children: &[Vec<usize>]) -> String {
    children[i]
        .iter()
        .map(|&k| spans[k].service)
        .find(|s| !s.is_empty() && *s != spans[i].service)
        .map_or_else(|| call.target.clone(), str::to_owned)
}

/// The parent of each span in the trace (by index) and the children of each.
fn tree(spans: &[TraceSpan<'_>]) -> (Vec<Option<usize>>, Vec<Vec<usize>>) {
    let by_id: HashMap<&[u8], usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span.span_id.as_slice(), i))
        .collect();
    let parent: Vec<Option<usize>> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            by_id
                .get(s.span.parent_span_id.as_slice())
                .copied()
                .filter(|p| *p != i)
        })
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }
    (parent, children)
}

/// One call from a service to a callee, for dependency strength.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    /// The call span (its index).
    pub call: usize,
    /// The callee (service that answered, else the call's target).
    pub callee: String,
    /// The call failed: its span, or the callee's span answering it, has status ERROR.
    pub failed: bool,
    /// The call failed and so did the caller's entry span (the nearest `SERVER` or
    /// `CONSUMER` span above it, or the root): the failure reached the caller's request.
    pub failed_entry: bool,
}

/// Every call of the trace with whether it failed and whether the caller's request failed
/// with it: over many traces, `failed_entry / failed` per caller → callee is how strong the
/// caller's dependency on the callee is (1: each callee failure fails the request; 0: the
/// caller copes).
pub fn dependencies(spans: &[TraceSpan<'_>]) -> Vec<Dependency> {
    let (parent, children) = tree(spans);
    let mut out = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        let Some(c) = call(s.span) else { continue };
        let callee = callee_of(i, &c, spans, &children);
        let failed = is_error(s.span)
            || children[i]
                .iter()
                .any(|&k| spans[k].service != s.service && is_error(spans[k].span));
        let failed_entry =
            failed && entry_of(i, spans, &parent).is_some_and(|e| is_error(spans[e].span));
        out.push(Dependency {
            call: i,
            callee,
            failed,
            failed_entry,
        });
    }
    out
}

/// `fan_out`: calls per callee under each entry span.
fn fan_out(
    spans: &[TraceSpan<'_>],
    parent: &[Option<usize>],
    children: &[Vec<usize>],
    calls: &[Option<Call>],
    config: &TraceAnalysisConfig,
    findings: &mut Vec<Finding>,
) {
    let mut per: HashMap<(usize, String), Vec<usize>> = HashMap::new();
    for (i, c) in calls.iter().enumerate() {
        let Some(c) = c else { continue };
        let Some(entry) = entry_of(i, spans, parent) else {
            continue;
        };
        per.entry((entry, callee_of(i, c, spans, children)))
            .or_default()
            .push(i);
    }
    let mut per: Vec<_> = per.into_iter().collect();
    per.sort();
    for ((entry, _), group) in per {
        if group.len() > config.fan_out.max_calls_per_callee as usize {
            let mut involved = vec![entry];
            involved.extend_from_slice(&group);
            findings.push(Finding {
                pattern: Pattern::FanOut,
                anchor: entry,
                spans: involved,
                magnitude: group.len() as u32,
                propagated_to: Vec::new(),
            });
        }
    }
}

/// `error_origin`: error spans without an erroring descendant, and the chain of erroring
/// ancestors above each.
fn error_origin(spans: &[TraceSpan<'_>], parent: &[Option<usize>], findings: &mut Vec<Finding>) {
    let errors: Vec<bool> = spans.iter().map(|s| is_error(s.span)).collect();
    // Which spans have an erroring descendant: walk up from each error span.
    let mut below = vec![false; spans.len()];
    for (i, e) in errors.iter().enumerate() {
        if !e {
            continue;
        }
        let mut at = parent[i];
        for _ in 0..spans.len() {
            let Some(a) = at else { break };
            if below[a] {
                break;
            }
            below[a] = true;
            at = parent[a];
        }
    }
    for i in 0..spans.len() {
        if !errors[i] || below[i] {
            continue;
        }
        let mut involved = vec![i];
        let mut services: Vec<String> = Vec::new();
        let mut at = parent[i];
        for _ in 0..spans.len() {
            let Some(a) = at else { break };
            if !errors[a] {
                break;
            }
            involved.push(a);
            let s = spans[a].service;
            if s != spans[i].service && !services.iter().any(|x| x == s) {
                services.push(s.to_owned());
            }
            at = parent[a];
        }
        findings.push(Finding {
            pattern: Pattern::ErrorOrigin,
            anchor: i,
            spans: involved,
            magnitude: services.len() as u32,
            propagated_to: services,
        });
    }
}

/// Self time of each span on the trace's critical path, in nanoseconds: `(span index, time)`
/// for every span with some, from each root (a span without a parent in the trace).
///
/// From the end of a span back to its start, the cursor moves to the start of the child that
/// finished last before it (a child ending after the cursor counts up to the cursor); the time
/// not covered by such children is the span's own. Children starting at or after the cursor
/// are not on the path. Times outside the parent are clipped to it.
pub fn critical_path(spans: &[TraceSpan<'_>]) -> Vec<(usize, u64)> {
    let by_id: HashMap<&[u8], usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span.span_id.as_slice(), i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match by_id.get(s.span.parent_span_id.as_slice()) {
            Some(&p) if p != i => children[p].push(i),
            _ => roots.push(i),
        }
    }
    for kids in &mut children {
        kids.sort_by_key(|&k| std::cmp::Reverse((spans[k].span.end_time_unix_nano, k)));
    }
    let mut self_time = vec![0u64; spans.len()];
    // Explicit stack: (span, start, end) windows still to walk; a span is walked once.
    let mut seen = vec![false; spans.len()];
    let mut stack: Vec<(usize, u64, u64)> = roots
        .iter()
        .map(|&r| {
            let s = spans[r].span;
            (
                r,
                s.start_time_unix_nano,
                s.end_time_unix_nano.max(s.start_time_unix_nano),
            )
        })
        .collect();
    while let Some((i, start, end)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let mut cursor = end;
        for &k in &children[i] {
            let child = spans[k].span;
            let child_start = child.start_time_unix_nano.max(start);
            if child_start >= cursor {
                continue;
            }
            let child_end = child.end_time_unix_nano.min(cursor);
            if child_end <= child_start {
                continue;
            }
            self_time[i] += cursor - child_end;
            stack.push((k, child_start, child_end));
            cursor = child_start;
        }
        self_time[i] += cursor - start;
    }
    self_time
        .into_iter()
        .enumerate()
        .filter(|(_, t)| *t > 0)
        .collect()
}
