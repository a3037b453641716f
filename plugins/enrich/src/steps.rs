//! The steps, ready to run on a resource or a span. A step that would write nothing new (the
//! attribute already holds the value, or the mode forbids the write) records no edit and
//! allocates nothing.

use std::collections::HashMap;
use std::fmt::Write as _;

use regex::{CaptureLocations, Regex};
use wasmcol_plugin_sdk::prelude::*;
use wasmcol_plugin_sdk::proto::common::{AnyValue, any_value::Value as V};

use crate::config::Mode;

/// The attribute access a step needs, on a resource or a span.
pub trait Attrs {
    /// The attribute `key` of what the step works on.
    fn get(&self, key: &str) -> Option<&AnyValue>;
    /// The attribute `key` of the resource.
    fn get_resource(&self, key: &str) -> Option<&AnyValue>;
    /// Sets the attribute `key`.
    fn set(&mut self, key: &str, value: Value);
    /// Removes the attribute `key`.
    fn remove(&mut self, key: &str);
}

impl Attrs for ResourceMut<'_> {
    fn get(&self, key: &str) -> Option<&AnyValue> {
        self.attribute(key)
    }
    fn get_resource(&self, key: &str) -> Option<&AnyValue> {
        self.attribute(key)
    }
    fn set(&mut self, key: &str, value: Value) {
        self.set_attribute(key, value)
    }
    fn remove(&mut self, key: &str) {
        self.remove_attribute(key);
    }
}

impl Attrs for SpanMut<'_> {
    fn get(&self, key: &str) -> Option<&AnyValue> {
        self.attribute(key)
    }
    fn get_resource(&self, key: &str) -> Option<&AnyValue> {
        self.resource_attribute(key)
    }
    fn set(&mut self, key: &str, value: Value) {
        self.set_attribute(key, value)
    }
    fn remove(&mut self, key: &str) {
        self.remove_attribute(key);
    }
}

impl Attrs for LogRecordMut<'_> {
    fn get(&self, key: &str) -> Option<&AnyValue> {
        self.attribute(key)
    }
    fn get_resource(&self, key: &str) -> Option<&AnyValue> {
        self.resource_attribute(key)
    }
    fn set(&mut self, key: &str, value: Value) {
        self.set_attribute(key, value)
    }
    fn remove(&mut self, key: &str) {
        self.remove_attribute(key);
    }
}

impl Attrs for DataPointMut<'_> {
    fn get(&self, key: &str) -> Option<&AnyValue> {
        self.attribute(key)
    }
    fn get_resource(&self, key: &str) -> Option<&AnyValue> {
        self.resource_attribute(key)
    }
    fn set(&mut self, key: &str, value: Value) {
        self.set_attribute(key, value)
    }
    fn remove(&mut self, key: &str) {
        self.remove_attribute(key);
    }
}

/// What the steps did in one batch, for the plugin's counters.
#[derive(Debug, Default)]
pub struct Counts {
    /// Attributes written.
    pub set: u64,
    /// Table lookups that found a row.
    pub hits: u64,
    /// Table lookups that found none.
    pub misses: u64,
}

/// Working memory reused across spans.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Text of a non-string value.
    buf: String,
    /// Extracted (group, value) pairs waiting to be written.
    pending: Vec<(usize, String)>,
    /// What was done.
    pub counts: Counts,
}

/// A step's condition.
#[derive(Debug)]
pub struct Cond {
    /// The attribute tested.
    pub key: String,
    /// Whether it is the resource's.
    pub on_resource: bool,
    /// The regex its value must match; `None` means presence is enough.
    pub regex: Option<Regex>,
}

impl Cond {
    fn holds(&self, view: &impl Attrs, buf: &mut String) -> bool {
        let value = if self.on_resource {
            view.get_resource(&self.key)
        } else {
            view.get(&self.key)
        };
        match (value, &self.regex) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(v), Some(r)) => text(v, buf).is_some_and(|t| r.is_match(t)),
        }
    }
}

/// Lookup results are kept per key: tables are fixed at start-up. Bounded for keys that do
/// not repeat.
const LOOKUP_CACHE_MAX: usize = 4096;

/// What a step does.
#[derive(Debug)]
pub enum Kind {
    /// `lookup`.
    Lookup {
        /// The table.
        table: String,
        /// The attribute holding the key.
        key: String,
        /// (attribute, column) pairs.
        columns: Vec<(String, String)>,
        /// key → the row's values as (index in `columns`, value); `None` for no row.
        cache: HashMap<String, Option<Vec<(usize, String)>>>,
    },
    /// `environment`.
    Environment {
        /// The environment key.
        key: String,
        /// The attribute set.
        attribute: String,
        /// The value, once asked for.
        value: Option<Option<String>>,
    },
    /// `extract`.
    Extract {
        /// The attribute matched.
        from: String,
        /// The regex.
        regex: Regex,
        /// (group index, attribute) for each named group.
        groups: Vec<(usize, String)>,
        /// Reused match positions.
        locs: CaptureLocations,
    },
    /// `copy` and `rename`.
    Copy {
        /// The source.
        from: String,
        /// The destination.
        to: String,
        /// Whether the source goes (`rename`).
        remove_source: bool,
    },
    /// `set`.
    Set {
        /// The attribute.
        attribute: String,
        /// The value.
        value: Value,
    },
}

impl Kind {
    /// A `lookup` step.
    pub fn lookup(table: String, key: String, columns: Vec<(String, String)>) -> Self {
        Kind::Lookup {
            table,
            key,
            columns,
            cache: HashMap::new(),
        }
    }

    /// An `environment` step.
    pub fn environment(key: String, attribute: String) -> Self {
        Kind::Environment {
            key,
            attribute,
            value: None,
        }
    }

    /// An `extract` step.
    pub fn extract(from: String, regex: Regex) -> Self {
        let groups = regex
            .capture_names()
            .enumerate()
            .filter_map(|(i, name)| Some((i, name?.to_string())))
            .collect();
        let locs = regex.capture_locations();
        Kind::Extract {
            from,
            regex,
            groups,
            locs,
        }
    }

    /// A `copy` (or, with `remove_source`, `rename`) step.
    pub fn copy(from: String, to: String, remove_source: bool) -> Self {
        Kind::Copy {
            from,
            to,
            remove_source,
        }
    }
}

/// A ready step.
#[derive(Debug)]
pub struct Step {
    /// What it does.
    pub kind: Kind,
    /// How it writes.
    pub mode: Mode,
    /// When it runs.
    pub when: Option<Cond>,
}

/// The text of a scalar value (numbers and booleans formatted into `buf`).
fn text<'a>(v: &'a AnyValue, buf: &'a mut String) -> Option<&'a str> {
    match &v.value {
        Some(V::StringValue(s)) => Some(s),
        Some(V::BoolValue(b)) => Some(if *b { "true" } else { "false" }),
        Some(V::IntValue(i)) => {
            buf.clear();
            let _ = write!(buf, "{i}");
            Some(buf)
        }
        Some(V::DoubleValue(d)) => {
            buf.clear();
            let _ = write!(buf, "{d}");
            Some(buf)
        }
        _ => None,
    }
}

/// Whether `mode` lets a step write `key`.
fn allowed(view: &impl Attrs, key: &str, mode: Mode) -> bool {
    match mode {
        Mode::Insert => view.get(key).is_none(),
        Mode::Update => view.get(key).is_some(),
        Mode::Upsert => true,
    }
}

/// Whether `key` should be written with the string `value`: allowed, and not already so.
fn wants_str(view: &impl Attrs, key: &str, value: &str, mode: Mode) -> bool {
    allowed(view, key, mode) && view.get(key).and_then(as_str) != Some(value)
}

fn same(existing: Option<&AnyValue>, value: &Value) -> bool {
    match (existing.and_then(|v| v.value.as_ref()), value) {
        (Some(V::StringValue(a)), Value::Str(b)) => a == b,
        (Some(V::IntValue(a)), Value::Int(b)) => a == b,
        (Some(V::DoubleValue(a)), Value::Double(b)) => a == b,
        (Some(V::BoolValue(a)), Value::Bool(b)) => a == b,
        _ => false,
    }
}

impl Step {
    /// Runs the step on `view`.
    pub fn apply(&mut self, view: &mut impl Attrs, sc: &mut Scratch) {
        if let Some(cond) = &self.when
            && !cond.holds(view, &mut sc.buf)
        {
            return;
        }
        let mode = self.mode;
        match &mut self.kind {
            Kind::Lookup {
                table,
                key,
                columns,
                cache,
            } => {
                // Skip the lookup when no column could be written.
                if !columns
                    .iter()
                    .any(|(attribute, _)| allowed(view, attribute, mode))
                {
                    return;
                }
                let Some(k) = view.get(key).and_then(|v| text(v, &mut sc.buf)) else {
                    return;
                };
                if !cache.contains_key(k) {
                    if cache.len() >= LOOKUP_CACHE_MAX {
                        cache.clear();
                    }
                    let row = host::lookup(table, k).map(|row| {
                        columns
                            .iter()
                            .enumerate()
                            .filter_map(|(i, (_, column))| {
                                let (_, value) = row.iter().find(|(c, _)| c == column)?;
                                Some((i, value.clone()))
                            })
                            .collect()
                    });
                    cache.insert(k.to_string(), row);
                }
                match cache.get(k) {
                    Some(Some(values)) => {
                        sc.counts.hits += 1;
                        for (i, value) in values {
                            let attribute = &columns[*i].0;
                            if wants_str(view, attribute, value, mode) {
                                view.set(attribute, Value::Str(value.clone()));
                                sc.counts.set += 1;
                            }
                        }
                    }
                    _ => sc.counts.misses += 1,
                }
            }
            Kind::Environment {
                key,
                attribute,
                value,
            } => {
                if !allowed(view, attribute, mode) {
                    return;
                }
                let value = value.get_or_insert_with(|| {
                    let row = host::lookup("environment", key)?;
                    row.into_iter().find(|(c, _)| c == "value").map(|(_, v)| v)
                });
                if let Some(v) = value
                    && wants_str(view, attribute, v, mode)
                {
                    view.set(attribute, Value::Str(v.clone()));
                    sc.counts.set += 1;
                }
            }
            Kind::Extract {
                from,
                regex,
                groups,
                locs,
            } => {
                if !groups
                    .iter()
                    .any(|(_, attribute)| allowed(view, attribute, mode))
                {
                    return;
                }
                let Some(t) = view.get(from).and_then(|v| text(v, &mut sc.buf)) else {
                    return;
                };
                if regex.captures_read(locs, t).is_none() {
                    return;
                }
                sc.pending.clear();
                for (g, (index, attribute)) in groups.iter().enumerate() {
                    if let Some((start, end)) = locs.get(*index)
                        && wants_str(view, attribute, &t[start..end], mode)
                    {
                        sc.pending.push((g, t[start..end].to_string()));
                    }
                }
                for (g, value) in sc.pending.drain(..) {
                    view.set(&groups[g].1, Value::Str(value));
                    sc.counts.set += 1;
                }
            }
            Kind::Copy {
                from,
                to,
                remove_source,
            } => {
                let Some(v) = view.get(from) else {
                    return;
                };
                if !allowed(view, to, mode) {
                    return;
                }
                if view.get(to) != Some(v) {
                    let value = Value::from(v.clone());
                    view.set(to, value);
                    sc.counts.set += 1;
                }
                if *remove_source {
                    view.remove(from);
                }
            }
            Kind::Set { attribute, value } => {
                if allowed(view, attribute, mode) && !same(view.get(attribute), value) {
                    view.set(attribute, value.clone());
                    sc.counts.set += 1;
                }
            }
        }
    }
}
