//! The scrubbing engine: decides, for each attribute, name and status message, what stays,
//! what is masked or hashed, and what goes. Values with nothing to redact are only read: no
//! allocation, no edit.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use hmac::{Hmac, Mac};
use regex::{Regex, RegexSet};
use sha2::Sha256;
use wasmcol_plugin_sdk::proto::common::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as V,
};
use wasmcol_plugin_sdk::view::{ArrayView, AttributeView, AttributesView, KvListView, ValueView};

use crate::config::Action;
use crate::detectors::{Check, Hit, is_card_int};
use crate::sanitize::{self, UrlSecret};

/// What to do with one match: the action and, for masks, what stays in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Treatment {
    /// The action.
    pub action: Action,
    /// Characters kept in clear at the start when masking.
    pub keep_prefix: usize,
    /// Characters kept in clear at the end when masking.
    pub keep_suffix: usize,
}

/// A detector or `blocked_values` rule, compiled.
pub struct ValueRule {
    /// The detector name, or `blocked_values`.
    pub name: &'static str,
    regex: Regex,
    /// What confirms a candidate.
    pub check: Check,
    /// What to do with a confirmed match.
    pub treatment: Treatment,
    /// Whether only capture group 1 (when it took part) is the secret.
    group: bool,
}

impl ValueRule {
    /// A rule from its compiled regex.
    pub fn new(name: &'static str, regex: Regex, check: Check, treatment: Treatment) -> Self {
        let group = regex.captures_len() > 1;
        Self {
            name,
            regex,
            check,
            treatment,
            group,
        }
    }

    fn find(&self, s: &str, rule: usize, hits: &mut Vec<Hit>) {
        if self.group {
            for caps in self.regex.captures_iter(s) {
                if let Some(m) = caps.get(1).or_else(|| caps.get(0)) {
                    self.check.accept(s, m.start(), m.end(), rule, hits);
                }
            }
        } else {
            for m in self.regex.find_iter(s) {
                self.check.accept(s, m.start(), m.end(), rule, hits);
            }
        }
    }
}

/// The URL sanitizer, ready.
pub struct UrlRule {
    /// Attributes holding URLs.
    pub keys: HashSet<String>,
    /// Parameter names, lower-case.
    pub params: Vec<String>,
    /// What happens to a parameter's value.
    pub treatment: Treatment,
    /// Whether `user:password@` passwords are redacted.
    pub userinfo: bool,
}

/// Writes replacements.
pub struct Redactor {
    /// The mask character.
    pub mask_char: char,
    /// [`MASK_RUN`] mask characters in a row, appended by the slice.
    mask_run: String,
    /// The keyed hash, when configured.
    pub hmac: Option<Hmac<Sha256>>,
    /// Hex characters kept from the digest.
    pub hash_length: usize,
    /// Text before the hex digest.
    pub hash_prefix: String,
}

/// Mask characters written per slice of [`Redactor::mask_run`].
const MASK_RUN: usize = 64;

impl Redactor {
    /// A redactor masking with `mask_char` and hashing with `hmac`.
    pub fn new(
        mask_char: char,
        hmac: Option<Hmac<Sha256>>,
        hash_length: usize,
        hash_prefix: String,
    ) -> Self {
        Self {
            mask_char,
            mask_run: std::iter::repeat_n(mask_char, MASK_RUN).collect(),
            hmac,
            hash_length,
            hash_prefix,
        }
    }

    /// Appends the replacement of `text` under `t` to `out` (nothing for `remove`).
    pub fn write(&self, text: &str, t: Treatment, out: &mut String) {
        match t.action {
            Action::Mask => self.mask(text, t, out),
            Action::Hash => self.hash(text, out),
            Action::Remove => {}
        }
    }

    fn mask(&self, text: &str, t: Treatment, out: &mut String) {
        let n = text.chars().count();
        // Never keep more than half in clear: a short secret is masked whole.
        let (keep_prefix, keep_suffix) = if (t.keep_prefix + t.keep_suffix) * 2 > n {
            (0, 0)
        } else {
            (t.keep_prefix, t.keep_suffix)
        };
        out.reserve(text.len());
        if n == text.len() {
            // ASCII: characters are bytes, so the kept ends are slices.
            out.push_str(&text[..keep_prefix]);
            self.mask_run(n - keep_prefix - keep_suffix, out);
            out.push_str(&text[n - keep_suffix..]);
            return;
        }
        for (i, c) in text.chars().enumerate() {
            out.push(if i < keep_prefix || i >= n - keep_suffix {
                c
            } else {
                self.mask_char
            });
        }
    }

    /// Appends `n` mask characters, a slice of [`Self::mask_run`] at a time.
    fn mask_run(&self, mut n: usize, out: &mut String) {
        let width = self.mask_char.len_utf8();
        let run = self.mask_run.len() / width;
        while n > 0 {
            let k = n.min(run);
            out.push_str(&self.mask_run[..k * width]);
            n -= k;
        }
    }

    fn hash(&self, text: &str, out: &mut String) {
        let Some(mac) = &self.hmac else {
            // Configuration checks rule this out; masking is the safe fallback.
            return self.mask(text, MASK_ALL, out);
        };
        let mut mac = mac.clone();
        mac.update(text.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = [0u8; 64];
        if hex::encode_to_slice(digest, &mut hex).is_err() {
            return self.mask(text, MASK_ALL, out);
        }
        out.push_str(&self.hash_prefix);
        out.extend(hex[..self.hash_length].iter().map(|&b| char::from(b)));
    }
}

const MASK_ALL: Treatment = Treatment {
    action: Action::Mask,
    keep_prefix: 0,
    keep_suffix: 0,
};

/// How an attribute key is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    /// In `ignored_keys`: untouched.
    Ignored,
    /// Not in `allowed_keys` (fail-closed mode): removed.
    Disallowed,
    /// Matches `blocked_keys[i]`: the whole value is redacted.
    Blocked(usize),
    /// A URL attribute: sanitized, then scanned.
    Url,
    /// A SQL attribute: sanitized, then scanned.
    Sql,
    /// Scanned by the detectors and `blocked_values`.
    Scan,
}

/// What becomes of a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Stays as it is.
    Keep,
    /// Replaced.
    Replace(AnyValue),
    /// Removed (the attribute; nested, the element or entry).
    Remove,
}

enum Text {
    Keep,
    Replace(String),
    Remove,
}

fn string(s: String) -> AnyValue {
    AnyValue {
        value: Some(V::StringValue(s)),
    }
}

/// What was redacted in one span or resource.
#[derive(Debug, Default)]
pub struct Stats {
    /// Values masked.
    pub masked: u64,
    /// Values hashed.
    pub hashed: u64,
    /// Attributes (or nested elements) removed.
    pub removed: u64,
    /// Whether keys are recorded (for summary attributes).
    pub record_keys: bool,
    /// Keys with masked or hashed values.
    pub masked_keys: Vec<String>,
    /// Keys removed.
    pub removed_keys: Vec<String>,
}

impl Stats {
    fn note(&mut self, action: Action, key: &str, n: u64) {
        let keys = match action {
            Action::Mask => {
                self.masked += n;
                &mut self.masked_keys
            }
            Action::Hash => {
                self.hashed += n;
                &mut self.masked_keys
            }
            Action::Remove => {
                self.removed += n;
                &mut self.removed_keys
            }
        };
        if self.record_keys && n > 0 && !keys.iter().any(|k| k == key) {
            keys.push(key.to_string());
        }
    }

    /// Starts a new span or resource.
    pub fn reset(&mut self) {
        self.masked = 0;
        self.hashed = 0;
        self.removed = 0;
        self.masked_keys.clear();
        self.removed_keys.clear();
    }

    /// Whether anything was redacted.
    pub fn any(&self) -> bool {
        self.masked + self.hashed + self.removed > 0
    }
}

/// The kinds of attribute list, each with its own keys by position in [`Scratch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// Resource attributes.
    Resource,
    /// Scope attributes.
    Scope,
    /// Span attributes.
    Span,
    /// Event attributes.
    Event,
    /// Link attributes.
    Link,
    /// Log record attributes.
    LogRecord,
    /// Metric data point attributes.
    DataPoint,
}

/// Reusable working memory: the key classification caches, match buffer and counts.
#[derive(Default)]
pub struct Scratch {
    keys: HashMap<String, KeyClass>,
    /// By kind of list, the key last seen at each position and its class. Instrumentation
    /// writes the same keys in the same order span after span, so one comparison usually
    /// finds the class, where the map would hash the key first.
    recent: [Vec<(String, KeyClass)>; 7],
    hits: Vec<Hit>,
    /// What the current span or resource had redacted.
    pub stats: Stats,
}

/// Attribute keys repeat from batch to batch; the cache is bounded for the ones that do not.
const KEY_CACHE_MAX: usize = 4096;

/// Positions remembered per kind of list; attributes further on use the map alone.
const RECENT_MAX: usize = 64;

/// `a == b`, eight bytes at a time. Compiled to wasm, `==` on slices calls the C library's
/// `memcmp`, which compares a byte at a time; keys are compared once per attribute.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or_default());
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails_equal = a8.remainder().iter().eq(b8.remainder());
    tails_equal && a8.zip(b8).all(|(x, y)| word(x) == word(y))
}

/// The class of the key `kv` has, at position `pos` of a `list`, and the key. When the key
/// is the one last seen there, the remembered copy is returned: it was checked as UTF-8 when
/// first seen, so a repeated key is compared but never checked again.
fn class_at<'k>(
    recent: &'k mut [Vec<(String, KeyClass)>; 7],
    keys: &mut HashMap<String, KeyClass>,
    engine: &Engine,
    (list, pos): (List, usize),
    kv: &AttributeView<'k>,
) -> (KeyClass, &'k str) {
    let recent = &mut recent[list as usize];
    let hit = recent
        .get(pos)
        .is_some_and(|(k, _)| same(k.as_bytes(), kv.key_bytes()));
    if !hit {
        let key = kv.key();
        let c = class(keys, engine, key);
        if let Some((k, class)) = recent.get_mut(pos) {
            k.clear();
            k.push_str(key);
            *class = c;
        } else if pos == recent.len() && pos < RECENT_MAX {
            recent.push((key.to_string(), c));
        } else {
            return (c, key);
        }
    }
    let (k, c) = &recent[pos];
    (*c, k)
}

fn class(keys: &mut HashMap<String, KeyClass>, engine: &Engine, key: &str) -> KeyClass {
    if let Some(c) = keys.get(key) {
        return *c;
    }
    let c = engine.classify(key, true);
    if keys.len() >= KEY_CACHE_MAX {
        keys.clear();
    }
    keys.insert(key.to_string(), c);
    c
}

/// The validated configuration, ready to scrub.
pub struct Engine {
    /// Fail-closed mode's allowed keys.
    pub allowed_keys: Option<HashSet<String>>,
    /// Keys left alone.
    pub ignored_keys: HashSet<String>,
    /// `blocked_keys` patterns, as one set.
    pub blocked_key_set: RegexSet,
    /// `blocked_keys` treatments, by pattern index.
    pub blocked_keys: Vec<Treatment>,
    /// The URL sanitizer, when on.
    pub url: Option<UrlRule>,
    /// Attributes the SQL sanitizer handles (empty when off).
    pub sql_keys: HashSet<String>,
    /// Detector and `blocked_values` patterns, as one set (a cheap first pass).
    pub value_set: RegexSet,
    /// Detector and `blocked_values` rules, by pattern index.
    pub value_rules: Vec<ValueRule>,
    /// `allowed_values`.
    pub allowed_values: Option<RegexSet>,
    /// The card detector's treatment, applied to large integer values too.
    pub card_in_ints: Option<Treatment>,
    /// Writes replacements.
    pub redactor: Redactor,
    /// Scrub span and event names.
    pub span_names: bool,
    /// Scrub status messages.
    pub status_messages: bool,
    /// Add summary attributes.
    pub summary: bool,
}

impl Engine {
    fn classify(&self, key: &str, top: bool) -> KeyClass {
        if self.ignored_keys.contains(key) {
            return KeyClass::Ignored;
        }
        if top && self.allowed_keys.as_ref().is_some_and(|a| !a.contains(key)) {
            return KeyClass::Disallowed;
        }
        if self.blocked_key_set.is_match(key)
            && let Some(i) = self.blocked_key_set.matches(key).iter().next()
        {
            return KeyClass::Blocked(i);
        }
        if self.url.as_ref().is_some_and(|u| u.keys.contains(key)) {
            return KeyClass::Url;
        }
        if self.sql_keys.contains(key) {
            return KeyClass::Sql;
        }
        KeyClass::Scan
    }

    fn allowed(&self, text: &str) -> bool {
        self.allowed_values
            .as_ref()
            .is_some_and(|a| a.is_match(text))
    }

    /// Scrubs a list of attributes, pushing `(key, outcome)` for each that changes.
    pub fn scrub_attributes(
        &self,
        attrs: AttributesView<'_>,
        list: List,
        sc: &mut Scratch,
        changes: &mut Vec<(String, Outcome)>,
    ) {
        let Scratch {
            keys,
            recent,
            hits,
            stats,
        } = sc;
        for (pos, kv) in attrs.into_iter().enumerate() {
            let (class, key) = class_at(recent, keys, self, (list, pos), &kv);
            let outcome = match (class, kv.value) {
                (KeyClass::Ignored, _) => Outcome::Keep,
                (KeyClass::Disallowed, _) => {
                    stats.note(Action::Remove, key, 1);
                    Outcome::Remove
                }
                // No value and an empty one both stay: there is nothing to redact.
                (_, ValueView::Empty) => Outcome::Keep,
                (KeyClass::Blocked(i), v) => self.whole(v, self.blocked_keys[i], key, stats),
                (class, v) => self.scan(v, class, key, hits, stats),
            };
            if outcome != Outcome::Keep {
                changes.push((key.to_string(), outcome));
            }
        }
    }

    /// Scrubs free text (a span, event name or status message): matches are replaced, and
    /// `remove` cuts them out. `None` when nothing changes.
    pub fn scrub_name(&self, text: &str, what: &str, sc: &mut Scratch) -> Option<String> {
        match self.scrub_text(text, &mut sc.hits, true, what, &mut sc.stats) {
            Text::Replace(s) => Some(s),
            Text::Keep | Text::Remove => None,
        }
    }

    /// Scrubs a log record's body: a string as free text (matches replaced; `remove` cuts
    /// them out, as in names), an array or map value by value as an attribute's nested values
    /// are (keys inside a map body follow `blocked_keys`, `ignored_keys` and the sanitizers).
    /// `None` when nothing changes.
    pub fn scrub_body(&self, body: ValueView<'_>, sc: &mut Scratch) -> Option<AnyValue> {
        match body {
            ValueView::Empty => None,
            ValueView::Str(s) => self.scrub_name(s, "body", sc).map(string),
            v => match self.scan(v, KeyClass::Scan, "body", &mut sc.hits, &mut sc.stats) {
                Outcome::Keep => None,
                Outcome::Replace(value) => Some(value),
                // A scalar body that must go entirely (a card number as an integer, with
                // `remove`): the body becomes empty, the record stays.
                Outcome::Remove => Some(string(String::new())),
            },
        }
    }

    /// Redacts a whole value (a blocked key's): every scalar in it.
    fn whole(&self, v: ValueView<'_>, t: Treatment, key: &str, st: &mut Stats) -> Outcome {
        let text: Cow<'_, str> = match v {
            ValueView::Empty => return Outcome::Keep,
            ValueView::Str(s) if self.allowed(s) => return Outcome::Keep,
            _ if t.action == Action::Remove => {
                st.note(Action::Remove, key, 1);
                return Outcome::Remove;
            }
            ValueView::Array(a) => {
                return self
                    .nested_array(a, |e, _| self.whole(e, t, key, st))
                    .map_or(Outcome::Keep, Outcome::Replace);
            }
            ValueView::KvList(l) => {
                return self
                    .nested_map(l, |e, _| self.whole(e, t, key, st))
                    .map_or(Outcome::Keep, Outcome::Replace);
            }
            ValueView::Str(s) => Cow::Borrowed(s),
            ValueView::Int(i) => Cow::Owned(i.to_string()),
            ValueView::StrIndex(i) => Cow::Owned(i.to_string()),
            ValueView::Double(d) => Cow::Owned(d.to_string()),
            ValueView::Bool(b) => Cow::Owned(b.to_string()),
            ValueView::Bytes(b) => Cow::Owned(hex::encode(b)),
        };
        let mut out = String::new();
        self.redactor.write(&text, t, &mut out);
        st.note(t.action, key, 1);
        Outcome::Replace(string(out))
    }

    /// Sanitizes (by key) and scans a value, recursing into arrays and maps.
    fn scan(
        &self,
        v: ValueView<'_>,
        class: KeyClass,
        key: &str,
        hits: &mut Vec<Hit>,
        st: &mut Stats,
    ) -> Outcome {
        match v {
            ValueView::Str(s) => {
                let sanitized = match class {
                    KeyClass::Url => self.sanitize_url(s, key, st),
                    KeyClass::Sql => sanitize::sql(s).inspect(|_| st.note(Action::Mask, key, 1)),
                    _ => None,
                };
                let text = sanitized.as_deref().unwrap_or(s);
                match self.scrub_text(text, hits, false, key, st) {
                    Text::Keep => sanitized.map_or(Outcome::Keep, |s| Outcome::Replace(string(s))),
                    Text::Replace(s) => Outcome::Replace(string(s)),
                    Text::Remove => Outcome::Remove,
                }
            }
            ValueView::Int(i) => match self.card_in_ints {
                Some(t) if is_card_int(i) && !self.allowed(&i.to_string()) => {
                    st.note(t.action, key, 1);
                    if t.action == Action::Remove {
                        return Outcome::Remove;
                    }
                    let mut out = String::new();
                    self.redactor.write(&i.to_string(), t, &mut out);
                    Outcome::Replace(string(out))
                }
                _ => Outcome::Keep,
            },
            ValueView::Array(a) => self
                .nested_array(a, |e, _| self.scan(e, KeyClass::Scan, key, hits, st))
                .map_or(Outcome::Keep, Outcome::Replace),
            ValueView::KvList(l) => self
                .nested_map(l, |e, k| match self.classify(k, false) {
                    KeyClass::Ignored | KeyClass::Disallowed => Outcome::Keep,
                    KeyClass::Blocked(i) => self.whole(e, self.blocked_keys[i], key, st),
                    c => self.scan(e, c, key, hits, st),
                })
                .map_or(Outcome::Keep, Outcome::Replace),
            _ => Outcome::Keep,
        }
    }

    /// Applies `f` to each element; a new array value when any changed.
    fn nested_array(
        &self,
        a: ArrayView<'_>,
        mut f: impl FnMut(ValueView<'_>, &str) -> Outcome,
    ) -> Option<AnyValue> {
        let mut out: Option<Vec<AnyValue>> = None;
        for (i, e) in a.iter().enumerate() {
            let before = || a.iter().take(i).map(|v| v.to_any_value()).collect();
            match f(e, "") {
                Outcome::Keep => {
                    if let Some(o) = &mut out {
                        o.push(e.to_any_value());
                    }
                }
                Outcome::Replace(n) => out.get_or_insert_with(before).push(n),
                Outcome::Remove => {
                    out.get_or_insert_with(before);
                }
            }
        }
        out.map(|values| AnyValue {
            value: Some(V::ArrayValue(ArrayValue { values })),
        })
    }

    /// Applies `f` to each entry's value; a new map value when any changed.
    fn nested_map(
        &self,
        l: KvListView<'_>,
        mut f: impl FnMut(ValueView<'_>, &str) -> Outcome,
    ) -> Option<AnyValue> {
        let mut out: Option<Vec<KeyValue>> = None;
        for (i, kv) in l.iter().enumerate() {
            let before = || l.iter().take(i).map(|e| e.to_key_value()).collect();
            let outcome = match kv.value {
                ValueView::Empty => Outcome::Keep,
                v => f(v, kv.key()),
            };
            match outcome {
                Outcome::Keep => {
                    if let Some(o) = &mut out {
                        o.push(kv.to_key_value());
                    }
                }
                Outcome::Replace(n) => out.get_or_insert_with(before).push(KeyValue {
                    key: kv.key().to_string(),
                    value: Some(n),
                    ..Default::default()
                }),
                Outcome::Remove => {
                    out.get_or_insert_with(before);
                }
            }
        }
        out.map(|values| AnyValue {
            value: Some(V::KvlistValue(KeyValueList { values })),
        })
    }

    fn sanitize_url(&self, s: &str, key: &str, st: &mut Stats) -> Option<String> {
        let rule = self.url.as_ref()?;
        let t = rule.treatment;
        if t.action == Action::Remove {
            let out = sanitize::url(s, &rule.params, rule.userinfo, UrlSecret::Drop);
            if out.is_some() {
                st.note(Action::Remove, key, 1);
            }
            return out;
        }
        let mut n = 0;
        let mut write = |value: &str, out: &mut String| {
            n += 1;
            self.redactor.write(value, t, out);
        };
        let out = sanitize::url(
            s,
            &rule.params,
            rule.userinfo,
            UrlSecret::Replace(&mut write),
        );
        st.note(t.action, key, n);
        out
    }

    /// Finds the secrets in `s` and redacts them. With `cut`, `remove` cuts a match out
    /// instead of asking for the whole attribute to go.
    fn scrub_text(
        &self,
        s: &str,
        hits: &mut Vec<Hit>,
        cut: bool,
        key: &str,
        st: &mut Stats,
    ) -> Text {
        if self.value_rules.is_empty() || !self.value_set.is_match(s) {
            return Text::Keep;
        }
        hits.clear();
        for i in self.value_set.matches(s).iter() {
            self.value_rules[i].find(s, i, hits);
        }
        if self.allowed_values.is_some() {
            hits.retain(|h| !self.allowed(&s[h.start..h.end]));
        }
        if hits.is_empty() {
            return Text::Keep;
        }
        if !cut
            && hits
                .iter()
                .any(|h| self.value_rules[h.rule].treatment.action == Action::Remove)
        {
            st.note(Action::Remove, key, 1);
            return Text::Remove;
        }
        hits.sort_unstable_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
        let mut out = String::with_capacity(s.len());
        let (mut pos, mut i) = (0, 0);
        while i < hits.len() {
            // Overlapping matches merge, so no part of either stays in clear.
            let (start, mut end) = (hits[i].start, hits[i].end);
            let t = self.value_rules[hits[i].rule].treatment;
            let mut j = i + 1;
            while j < hits.len() && hits[j].start < end {
                end = end.max(hits[j].end);
                j += 1;
            }
            out.push_str(&s[pos..start]);
            self.redactor.write(&s[start..end], t, &mut out);
            st.note(t.action, key, 1);
            pos = end;
            i = j;
        }
        out.push_str(&s[pos..]);
        Text::Replace(out)
    }
}
