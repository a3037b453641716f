//! The detectors: each reads one complete trace and reports findings.
//!
//! A *call* is a span that leaves its service: a database span (`db.system` or
//! `db.system.name`), or a `CLIENT` or `PRODUCER` span. A call has a *target* (the database
//! system and namespace or server; for other calls `peer.service`, `server.address` or
//! `net.peer.name`), a *statement* (the query text, the HTTP method and URL, or the span
//! name) and the statement *normalized* (literals of a query, and ids in a URL path, replaced
//! by `?`; an `http.route` or `url.template` taken as it is).
//!
//! The spans are read in place ([`TraceSpan`]); statements are compared by hashes of their
//! text (normalized as it is hashed, never built), the trace's tree is two arrays (each
//! span's parent, and the children sorted by parent), and one pass over the calls feeds
//! every detector.

use std::cmp::Ordering;
use std::fmt;

use crate::config::Detectors;
pub use crate::spans::TraceSpan;
use crate::spans::{Fnv, Key};

/// `SpanKind` values.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;
/// `StatusCode::Error`.
const STATUS_ERROR: i32 = 2;

/// The kinds of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    /// Sequential calls of one normalized statement under one parent.
    NPlusOne,
    /// The same call, parameters and all, repeated under one parent.
    DuplicateCall,
    /// Sequential calls of different statements under one parent that could run at once.
    SerialCalls,
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
            Pattern::SerialCalls => "serial_calls",
            Pattern::FanOut => "fan_out",
            Pattern::ErrorOrigin => "error_origin",
        }
    }
}

/// One finding in one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was found.
    pub pattern: Pattern,
    /// The span the finding is about (the parent of repeated or serial calls, the entry span
    /// of a fan-out, the error's origin): its index in the trace's spans.
    pub anchor: usize,
    /// Every span involved (the anchor and the calls, or the spans the error reached).
    pub spans: Vec<usize>,
    /// How bad: calls in the run, repetitions, calls to the callee, or services reached.
    pub magnitude: u32,
    /// `error_origin`: the services the error propagated to, nearest first.
    pub propagated_to: Vec<String>,
}

/// A name borrowed from a span: one string, or two joined by `/` (a database target,
/// `system/namespace`), compared and ordered as the joined text.
#[derive(Debug, Clone, Copy)]
pub struct Name<'a> {
    first: &'a str,
    second: Option<&'a str>,
}

impl<'a> Name<'a> {
    fn one(s: &'a str) -> Self {
        Name {
            first: s,
            second: None,
        }
    }

    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        let (sep, second): (&[u8], &[u8]) = match self.second {
            Some(s) => (b"/", s.as_bytes()),
            None => (b"", b""),
        };
        self.first
            .bytes()
            .chain(sep.iter().copied())
            .chain(second.iter().copied())
    }

    /// Its parts: the first string, and the second (joined by `/`) if any.
    pub fn parts(&self) -> (&'a str, Option<&'a str>) {
        (self.first, self.second)
    }

    /// The text, borrowed when it is one string.
    pub fn as_str_in<'s>(&self, scratch: &'s mut String) -> &'s str
    where
        'a: 's,
    {
        match self.second {
            None => self.first,
            Some(s) => {
                scratch.clear();
                scratch.push_str(self.first);
                scratch.push('/');
                scratch.push_str(s);
                scratch
            }
        }
    }

    fn hash_into(&self, h: &mut Fnv) {
        h.str(self.first);
        if let Some(s) = self.second {
            h.bytes(b"/");
            h.str(s);
        }
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.first)?;
        if let Some(s) = self.second {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

impl PartialEq for Name<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Name<'_> {}
impl PartialOrd for Name<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Name<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.second.is_none() && other.second.is_none() {
            return self.first.cmp(other.first);
        }
        self.bytes().cmp(other.bytes())
    }
}

/// A call's identity, as hashes of its texts.
#[derive(Debug, Clone, Copy)]
struct Call<'a> {
    target: Name<'a>,
    /// Target and normalized statement.
    normalized: u64,
    /// The statement with its parameters, for exact repeats.
    statement: (u64, u64),
}

fn call<'a>(span: &TraceSpan<'a>) -> Option<Call<'a>> {
    if let Some(system) = span.text(&[Key::DbSystem, Key::DbSystemName]) {
        let place = span
            .text(&[Key::DbNamespace, Key::DbName, Key::ServerAddress])
            .unwrap_or("");
        let statement = span
            .text(&[Key::DbQueryText, Key::DbStatement])
            .unwrap_or(span.name);
        let target = Name {
            first: system,
            second: Some(place),
        };
        let mut normalized = Fnv::default();
        target.hash_into(&mut normalized);
        normalized.bytes(&[0xff]);
        normalize_query_into(statement, &mut |c| normalized.char(c));
        let mut exact = Fnv::default();
        exact.str(statement);
        return Some(Call {
            target,
            normalized: normalized.0,
            statement: (exact.0, span.parameters),
        });
    }
    if !matches!(span.kind, CLIENT | PRODUCER) {
        return None;
    }
    let target = Name::one(
        span.text(&[
            Key::PeerService,
            Key::ServerAddress,
            Key::NetPeerName,
            Key::RpcService,
        ])
        .unwrap_or(""),
    );
    let mut normalized = Fnv::default();
    target.hash_into(&mut normalized);
    normalized.bytes(&[0xff]);
    let mut exact = Fnv::default();
    let method = span.text(&[Key::HttpRequestMethod, Key::HttpMethod]);
    let url = span.text(&[Key::UrlFull, Key::HttpUrl, Key::UrlPath, Key::HttpTarget]);
    match (method, url) {
        (Some(m), Some(u)) => {
            normalized.str(m);
            normalized.bytes(b" ");
            match span.text(&[Key::HttpRoute, Key::UrlTemplate]) {
                Some(route) => normalized.str(route),
                None => normalize_path_into(url_path(u), &mut |s| normalized.str(s)),
            }
            exact.str(m);
            exact.bytes(b" ");
            exact.str(u);
        }
        _ => {
            normalized.str(span.name);
            exact.str(span.name);
        }
    }
    Some(Call {
        target,
        normalized: normalized.0,
        statement: (exact.0, 0),
    })
}

impl Fnv {
    fn char(&mut self, c: char) {
        self.bytes(c.encode_utf8(&mut [0; 4]).as_bytes());
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

/// Feeds a URL path with id-like segments (containing a digit) replaced by `?` to `out`.
fn normalize_path_into(path: &str, out: &mut impl FnMut(&str)) {
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out("/");
        }
        out(if seg.bytes().any(|b| b.is_ascii_digit()) {
            "?"
        } else {
            seg
        });
    }
}

/// A URL path with id-like segments (containing a digit) replaced by `?`.
pub fn normalize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    normalize_path_into(path, &mut |s| out.push_str(s));
    out
}

/// Feeds a query with its literals (quoted strings, numbers) replaced by `?` and runs of
/// whitespace made one space (none at either end) to `out`, a character at a time.
fn normalize_query_into(query: &str, out: &mut impl FnMut(char)) {
    let mut chars = query.chars().peekable();
    let mut prev_word = false;
    // A space is written only once something follows it.
    let mut space = false;
    let mut any = false;
    let emit = |c: char, space: &mut bool, out: &mut dyn FnMut(char)| {
        if std::mem::take(space) {
            out(' ');
        }
        out(c);
    };
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
            emit('?', &mut space, out);
            any = true;
            prev_word = false;
        } else if c.is_ascii_digit() && !prev_word {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.')
            {
                chars.next();
            }
            emit('?', &mut space, out);
            any = true;
            prev_word = false;
        } else if c.is_whitespace() {
            space = any;
            prev_word = false;
        } else {
            emit(c, &mut space, out);
            any = true;
            prev_word = c.is_alphanumeric() || c == '_';
        }
    }
}

/// A query with its literals (quoted strings, numbers) replaced by `?` and runs of
/// whitespace made one space, so that `WHERE id = 7` and `WHERE id = 8` read alike.
pub fn normalize_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    normalize_query_into(query, &mut |c| out.push(c));
    out
}

fn is_error(span: &TraceSpan<'_>) -> bool {
    span.status_code == STATUS_ERROR
}

fn is_entry(span: &TraceSpan<'_>) -> bool {
    matches!(span.kind, SERVER | CONSUMER) || span.parent_span_id.is_empty()
}

/// No parent.
const NONE: u32 = u32::MAX;

/// The trace's tree: each span's parent, and the children of every span in one array sorted
/// by parent (in span order within a parent).
#[derive(Default)]
pub struct Tree {
    parent: Vec<u32>,
    /// `kids[first[p]..first[p + 1]]` are span `p`'s children.
    first: Vec<u32>,
    kids: Vec<u32>,
}

impl Tree {
    /// Links each span to the span whose id is its parent id (the last such span if ids
    /// repeat; never itself).
    pub fn new(spans: &[TraceSpan<'_>]) -> Self {
        let mut tree = Tree::default();
        tree.build(spans, &mut Vec::new(), &mut Vec::new(), &mut Vec::new());
        tree
    }

    /// [`Tree::new`] in this tree's buffers; `keys`, `ids` and `fill` are scratch.
    fn build<'a>(
        &mut self,
        spans: &[TraceSpan<'a>],
        keys: &mut Vec<(u64, u32)>,
        ids: &mut Vec<(&'a [u8], u32)>,
        fill: &mut Vec<u32>,
    ) {
        let n = spans.len();
        self.parent.clear();
        if spans
            .iter()
            .all(|s| s.span_id.len() == 8 && matches!(s.parent_span_id.len(), 0 | 8))
        {
            // Nearly always: 8-byte ids, compared as numbers (in the order of their bytes),
            // and an empty parent id matches no span.
            let number = |id: &[u8]| id.try_into().map_or(0, u64::from_be_bytes);
            keys.clear();
            keys.extend(
                spans
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (number(s.span_id), i as u32)),
            );
            keys.sort_unstable();
            self.parent.extend(spans.iter().enumerate().map(|(i, s)| {
                if s.parent_span_id.is_empty() {
                    return NONE;
                }
                let want = number(s.parent_span_id);
                let at = keys.partition_point(|&(id, _)| id <= want);
                match at.checked_sub(1).map(|a| keys[a]) {
                    Some((id, p)) if id == want && p as usize != i => p,
                    _ => NONE,
                }
            }));
        } else {
            ids.clear();
            ids.extend(spans.iter().enumerate().map(|(i, s)| (s.span_id, i as u32)));
            ids.sort_unstable();
            self.parent.extend(spans.iter().enumerate().map(|(i, s)| {
                let at = ids.partition_point(|(id, _)| *id <= s.parent_span_id);
                match at.checked_sub(1).map(|a| ids[a]) {
                    Some((id, p)) if id == s.parent_span_id && p as usize != i => p,
                    _ => NONE,
                }
            }));
        }
        let first = &mut self.first;
        first.clear();
        first.resize(n + 1, 0);
        for &p in &self.parent {
            if p != NONE {
                first[p as usize + 1] += 1;
            }
        }
        for i in 0..n {
            first[i + 1] += first[i];
        }
        fill.clear();
        fill.extend_from_slice(first);
        self.kids.clear();
        self.kids.resize(first[n] as usize, 0);
        for (i, &p) in self.parent.iter().enumerate() {
            if p != NONE {
                self.kids[fill[p as usize] as usize] = i as u32;
                fill[p as usize] += 1;
            }
        }
    }

    fn parent(&self, i: usize) -> Option<usize> {
        let p = self.parent[i];
        (p != NONE).then_some(p as usize)
    }

    fn children(&self, i: usize) -> &[u32] {
        &self.kids[self.first[i] as usize..self.first[i + 1] as usize]
    }

    fn len(&self) -> usize {
        self.parent.len()
    }
}

/// One call from a service to a callee, for dependency strength.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency<'a> {
    /// The call span (its index).
    pub call: usize,
    /// The callee (service that answered, else the call's target).
    pub callee: Name<'a>,
    /// The call failed: its span, or the callee's span answering it, has status ERROR.
    pub failed: bool,
    /// The call failed and so did the caller's entry span (the nearest `SERVER` or
    /// `CONSUMER` span above it, or the root): the failure reached the caller's request.
    pub failed_entry: bool,
}

/// What one trace gave.
#[derive(Default)]
pub struct Analysis<'a> {
    /// The findings of the enabled detectors.
    pub findings: Vec<Finding>,
    /// `(span, nanoseconds)` of self time on the critical path (`critical_path` enabled).
    pub critical: Vec<(usize, u64)>,
    /// Every call (`dependencies` enabled).
    pub dependencies: Vec<Dependency<'a>>,
}

/// The buffers one analysis works in, kept from one trace to the next so that analysing a
/// run of traces allocates only while they grow; and what the last trace gave.
#[derive(Default)]
pub struct Scratch<'a> {
    tree: Tree,
    keys: Vec<(u64, u32)>,
    ids: Vec<(&'a [u8], u32)>,
    fill: Vec<u32>,
    calls: Vec<Option<Call<'a>>>,
    per_callee: Vec<(usize, Name<'a>, usize)>,
    keyed: Vec<(u64, usize)>,
    order: Vec<(u64, usize)>,
    critical: CriticalScratch,
    below: Vec<bool>,
    /// What the last trace analysed gave.
    pub analysis: Analysis<'a>,
}

/// Runs everything enabled over one complete trace: the tree and the calls are worked out
/// once for all.
pub fn analyse_all<'a>(spans: &[TraceSpan<'a>], config: &Detectors) -> Analysis<'a> {
    let mut scratch = Scratch::default();
    analyse_in(spans, config, &mut scratch);
    scratch.analysis
}

/// [`analyse_all`] in `scratch`'s buffers: the result is `scratch.analysis`.
pub fn analyse_in<'a>(spans: &[TraceSpan<'a>], config: &Detectors, scratch: &mut Scratch<'a>) {
    let Scratch {
        tree,
        keys,
        ids,
        fill,
        calls,
        per_callee,
        keyed,
        order,
        critical,
        below,
        analysis: out,
    } = scratch;
    out.findings.clear();
    out.critical.clear();
    out.dependencies.clear();
    tree.build(spans, keys, ids, fill);
    let tree = &*tree;
    calls.clear();
    calls.extend(spans.iter().map(call));
    if config.critical_path.enabled {
        critical_path_into(spans, tree, critical, &mut out.critical);
    }
    // Per call: its entry span and callee, for fan-out and dependencies.
    let want_callees = config.fan_out.enabled || config.dependencies.enabled;
    per_callee.clear();
    if want_callees {
        for (i, c) in calls.iter().enumerate() {
            let Some(c) = c else { continue };
            let callee = callee_of(i, c, spans, tree);
            let entry = entry_of(i, spans, tree);
            if config.dependencies.enabled {
                let s = &spans[i];
                let failed = is_error(s)
                    || tree.children(i).iter().any(|&k| {
                        let k = &spans[k as usize];
                        k.service != s.service && is_error(k)
                    });
                let failed_entry = failed && entry.is_some_and(|e| is_error(&spans[e]));
                out.dependencies.push(Dependency {
                    call: i,
                    callee,
                    failed,
                    failed_entry,
                });
            }
            if let Some(e) = entry {
                per_callee.push((e, callee, i));
            }
        }
    }
    for p in 0..tree.len() {
        let kids = tree.children(p);
        if kids.len() < 2 {
            continue;
        }
        repeated_calls(p, kids, spans, calls, config, keyed, &mut out.findings);
        if config.serial_calls.enabled {
            serial_calls(p, kids, spans, calls, config, order, &mut out.findings);
        }
    }
    if config.fan_out.enabled {
        fan_out(per_callee, config, &mut out.findings);
    }
    if config.error_origin.enabled {
        error_origin(spans, tree, below, &mut out.findings);
    }
}

/// Runs the enabled detectors over one complete trace: the findings.
pub fn analyse(spans: &[TraceSpan<'_>], config: &Detectors) -> Vec<Finding> {
    let mut config = config.clone();
    config.critical_path.enabled = false;
    config.dependencies.enabled = false;
    analyse_all(spans, &config).findings
}

/// `n_plus_one` and `duplicate_call` among the children of span `p`.
fn repeated_calls(
    p: usize,
    kids: &[u32],
    spans: &[TraceSpan<'_>],
    calls: &[Option<Call<'_>>],
    config: &Detectors,
    keyed: &mut Vec<(u64, usize)>,
    findings: &mut Vec<Finding>,
) {
    if !config.n_plus_one.enabled && !config.duplicate_call.enabled {
        return;
    }
    let min = config
        .n_plus_one
        .min_calls
        .min(config.duplicate_call.min_calls)
        .max(2) as usize;
    // Calls by (target, normalized statement), then span order.
    keyed.clear();
    keyed.extend(
        kids.iter()
            .filter_map(|&k| calls[k as usize].map(|c| (c.normalized, k as usize))),
    );
    if keyed.len() < min {
        return;
    }
    keyed.sort_unstable();
    // Groups of at least `min`, in the order of their first span.
    let mut groups: Vec<Vec<usize>> = keyed
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|g| g.len() >= min)
        .map(|g| g.iter().map(|&(_, k)| k).collect())
        .collect();
    groups.sort();
    for mut group in groups {
        group.sort_by_key(|&k| (spans[k].start, k));
        let mut n_plus_one = false;
        if config.n_plus_one.enabled && group.len() >= config.n_plus_one.min_calls as usize {
            // The longest run of calls each starting after the previous one ended.
            let (mut best, mut run) = (0..0, 0..1);
            for i in 1..group.len() {
                let prev = &spans[group[i - 1]];
                if spans[group[i]].start >= prev.end {
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
        if !config.duplicate_call.enabled
            || n_plus_one
            || group.len() < config.duplicate_call.min_calls as usize
        {
            continue;
        }
        // Identical statements, in the group's (time) order within each.
        let mut by_statement: Vec<((u64, u64), usize, usize)> = group
            .iter()
            .enumerate()
            .map(|(at, &k)| (calls[k].map_or((0, 0), |c| c.statement), at, k))
            .collect();
        by_statement.sort_unstable();
        let mut same: Vec<Vec<usize>> = by_statement
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|r| r.len() >= config.duplicate_call.min_calls as usize)
            .map(|r| r.iter().map(|&(_, _, k)| k).collect())
            .collect();
        same.sort();
        for repeats in same {
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

/// `serial_calls` among the children of span `p`: runs of calls, in start order, each
/// starting after every earlier one in the run ended and at most `max_gap` after the last
/// end, no two of one normalized statement (those are `n_plus_one`); a run of at least
/// `min_calls` whose calls would save at least `min_saving` if run at once (the sum of their
/// durations minus the longest) is a finding.
fn serial_calls(
    p: usize,
    kids: &[u32],
    spans: &[TraceSpan<'_>],
    calls: &[Option<Call<'_>>],
    config: &Detectors,
    order: &mut Vec<(u64, usize)>,
    findings: &mut Vec<Finding>,
) {
    let cfg = &config.serial_calls;
    let min_calls = cfg.min_calls as usize;
    order.clear();
    order.extend(
        kids.iter()
            .filter(|&&k| calls[k as usize].is_some())
            .map(|&k| (spans[k as usize].start, k as usize)),
    );
    if order.len() < min_calls {
        return;
    }
    order.sort_unstable();
    let min_saving = u64::try_from(cfg.min_saving.0.as_nanos()).unwrap_or(u64::MAX);
    let max_gap = u64::try_from(cfg.max_gap.0.as_nanos()).unwrap_or(u64::MAX);
    let flush = |run: &[(u64, usize)], findings: &mut Vec<Finding>| {
        if run.len() < min_calls {
            return;
        }
        let durations = run
            .iter()
            .map(|&(_, k)| spans[k].end.saturating_sub(spans[k].start));
        let (sum, longest) =
            durations.fold((0u64, 0u64), |(s, m), d| (s.saturating_add(d), m.max(d)));
        if sum - longest < min_saving {
            return;
        }
        let mut involved = Vec::with_capacity(run.len() + 1);
        involved.push(p);
        involved.extend(run.iter().map(|&(_, k)| k));
        findings.push(Finding {
            pattern: Pattern::SerialCalls,
            anchor: p,
            spans: involved,
            magnitude: run.len() as u32,
            propagated_to: Vec::new(),
        });
    };
    let (mut from, mut run_end) = (0usize, 0u64);
    for at in 0..order.len() {
        let k = order[at].1;
        let s = &spans[k];
        let joins = at > from
            && s.start >= run_end
            && s.start - run_end <= max_gap
            && order[from..at]
                .iter()
                .all(|&(_, r)| calls[r].map(|c| c.normalized) != calls[k].map(|c| c.normalized));
        if !joins {
            flush(&order[from..at], findings);
            from = at;
            run_end = 0;
        }
        run_end = run_end.max(s.end);
    }
    flush(&order[from..], findings);
}

/// The nearest entry span above span `i` (bounded, in case parents loop).
fn entry_of(i: usize, spans: &[TraceSpan<'_>], tree: &Tree) -> Option<usize> {
    let mut at = tree.parent(i);
    for _ in 0..spans.len() {
        let a = at?;
        if is_entry(&spans[a]) {
            return Some(a);
        }
        at = tree.parent(a);
    }
    None
}

/// The callee of call `i`: the service that answered (a child span of another service), else
/// the call's target.
fn callee_of<'a>(i: usize, call: &Call<'a>, spans: &[TraceSpan<'a>], tree: &Tree) -> Name<'a> {
    tree.children(i)
        .iter()
        .map(|&k| spans[k as usize].service)
        .find(|s| !s.is_empty() && *s != spans[i].service)
        .map_or(call.target, Name::one)
}

/// Every call of the trace with whether it failed and whether the caller's request failed
/// with it: over many traces, `failed_entry / failed` per caller → callee is how strong the
/// caller's dependency on the callee is (1: each callee failure fails the request; 0: the
/// caller copes).
pub fn dependencies<'a>(spans: &[TraceSpan<'a>]) -> Vec<Dependency<'a>> {
    let mut config = Detectors::default();
    config.critical_path.enabled = false;
    analyse_all(spans, &config).dependencies
}

/// `fan_out`: calls per callee under each entry span; `per_callee` holds (entry, callee,
/// call) per call.
fn fan_out(
    per_callee: &mut [(usize, Name<'_>, usize)],
    config: &Detectors,
    findings: &mut Vec<Finding>,
) {
    let max = config.fan_out.max_calls_per_callee as usize;
    if per_callee.len() <= max {
        return;
    }
    per_callee.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    for group in per_callee.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
        if group.len() > max {
            let entry = group[0].0;
            let mut involved = Vec::with_capacity(group.len() + 1);
            involved.push(entry);
            involved.extend(group.iter().map(|g| g.2));
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
fn error_origin(
    spans: &[TraceSpan<'_>],
    tree: &Tree,
    below: &mut Vec<bool>,
    findings: &mut Vec<Finding>,
) {
    if !spans.iter().any(is_error) {
        return;
    }
    // Which spans have an erroring descendant: walk up from each error span.
    below.clear();
    below.resize(spans.len(), false);
    for (i, s) in spans.iter().enumerate() {
        if !is_error(s) {
            continue;
        }
        let mut at = tree.parent(i);
        for _ in 0..spans.len() {
            let Some(a) = at else { break };
            if below[a] {
                break;
            }
            below[a] = true;
            at = tree.parent(a);
        }
    }
    for i in 0..spans.len() {
        if !is_error(&spans[i]) || below[i] {
            continue;
        }
        let mut involved = vec![i];
        let mut services: Vec<String> = Vec::new();
        let mut at = tree.parent(i);
        for _ in 0..spans.len() {
            let Some(a) = at else { break };
            if !is_error(&spans[a]) {
                break;
            }
            involved.push(a);
            let s = spans[a].service;
            if s != spans[i].service && !services.iter().any(|x| x == s) {
                services.push(s.to_owned());
            }
            at = tree.parent(a);
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
    let mut out = Vec::new();
    critical_path_into(
        spans,
        &Tree::new(spans),
        &mut CriticalScratch::default(),
        &mut out,
    );
    out
}

/// The buffers of [`critical_path`].
#[derive(Default)]
struct CriticalScratch {
    by_end: Vec<u32>,
    self_time: Vec<u64>,
    seen: Vec<bool>,
    stack: Vec<(usize, u64, u64)>,
}

/// [`critical_path`] over `tree`, appended to `out`.
fn critical_path_into(
    spans: &[TraceSpan<'_>],
    tree: &Tree,
    scratch: &mut CriticalScratch,
    out: &mut Vec<(usize, u64)>,
) {
    let n = spans.len();
    let CriticalScratch {
        by_end,
        self_time,
        seen,
        stack,
    } = scratch;
    // Children latest end first.
    by_end.clear();
    by_end.extend_from_slice(&tree.kids);
    for p in 0..n {
        by_end[tree.first[p] as usize..tree.first[p + 1] as usize]
            .sort_unstable_by_key(|&k| std::cmp::Reverse((spans[k as usize].end, k)));
    }
    self_time.clear();
    self_time.resize(n, 0);
    // Explicit stack: (span, start, end) windows still to walk; a span is walked once.
    seen.clear();
    seen.resize(n, false);
    stack.clear();
    stack.extend((0..n).filter(|&r| tree.parent(r).is_none()).map(|r| {
        let s = &spans[r];
        (r, s.start, s.end.max(s.start))
    }));
    while let Some((i, start, end)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let mut cursor = end;
        for &k in &by_end[tree.first[i] as usize..tree.first[i + 1] as usize] {
            let k = k as usize;
            let child = &spans[k];
            let child_start = child.start.max(start);
            if child_start >= cursor {
                continue;
            }
            let child_end = child.end.min(cursor);
            if child_end <= child_start {
                continue;
            }
            self_time[i] += cursor - child_end;
            stack.push((k, child_start, child_end));
            cursor = child_start;
        }
        self_time[i] += cursor - start;
    }
    out.extend(
        self_time
            .iter()
            .enumerate()
            .filter(|(_, t)| **t > 0)
            .map(|(i, t)| (i, *t)),
    );
}
