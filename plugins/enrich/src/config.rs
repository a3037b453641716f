//! The `config:` section of `builtin:enrich`, and its validation into ready [`Step`]s.

use std::fmt;

use regex::Regex;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use wasmcol_plugin_sdk::Value;

use crate::steps::{Cond, Kind, Step};

/// The plugin's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Steps run once per resource on its attributes, in order.
    #[serde(default)]
    pub resource: Vec<StepConfig>,
    /// Steps run on each span's attributes, in order, after the resource steps.
    #[serde(default)]
    pub span: Vec<StepConfig>,
}

/// One step: exactly one of the kinds below, as a single-key map (`- lookup: {...}`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepConfig {
    /// Look an attribute's value up in a table and set attributes from the row's columns.
    Lookup(LookupConfig),
    /// Set an attribute from the host's `environment` table (host name, Kubernetes
    /// downward-API values).
    Environment(EnvironmentConfig),
    /// Set attributes from the named groups of a regex matched against an attribute.
    Extract(ExtractConfig),
    /// Copy an attribute's value to another key.
    Copy(CopyConfig),
    /// Move an attribute's value to another key.
    Rename(CopyConfig),
    /// Set an attribute to a fixed value.
    Set(SetConfig),
}

/// How a step writes an attribute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Only when the attribute is absent ("set if absent").
    Insert,
    /// Always (the default).
    #[default]
    Upsert,
    /// Only when the attribute is present.
    Update,
}

/// A condition on the step: the attribute is present and, with `matches`, its value matches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenConfig {
    /// An attribute of what the step works on (the resource, or the span).
    #[serde(default)]
    pub attribute: Option<String>,
    /// An attribute of the resource (for span steps; the same as `attribute` for resource
    /// steps).
    #[serde(default)]
    pub resource_attribute: Option<String>,
    /// A regex (unanchored) the value must match; absent means "is present".
    #[serde(default)]
    pub matches: Option<String>,
}

/// `lookup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The table's name under the processor's `tables:`.
    pub table: String,
    /// The attribute whose value is the key looked up.
    pub key: String,
    /// The columns to set: a list (attribute named as the column) or a map attribute →
    /// column.
    pub columns: Columns,
    /// How attributes are written. Default `upsert`.
    #[serde(default)]
    pub mode: Mode,
    /// Only when this holds.
    #[serde(default)]
    pub when: Option<WhenConfig>,
}

/// Attribute ← column pairs.
#[derive(Debug, Clone)]
pub struct Columns(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Columns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Columns;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of column names, or a map of attribute to column")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Columns, A::Error> {
                let mut out = Vec::new();
                while let Some(c) = seq.next_element::<String>()? {
                    out.push((c.clone(), c));
                }
                Ok(Columns(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Columns, A::Error> {
                let mut out = Vec::new();
                while let Some((attribute, column)) = map.next_entry::<String, String>()? {
                    out.push((attribute, column));
                }
                Ok(Columns(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The keys the host's `environment` table serves.
pub const ENVIRONMENT_KEYS: &[&str] = &[
    "host.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.namespace.name",
    "k8s.node.name",
    "k8s.pod.ip",
];

/// `environment`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// The environment key: `host.name`, `k8s.pod.name`, `k8s.pod.uid`,
    /// `k8s.namespace.name`, `k8s.node.name` or `k8s.pod.ip`.
    pub key: String,
    /// The attribute to set. Default: the key.
    #[serde(default)]
    pub attribute: Option<String>,
    /// How the attribute is written. Default `upsert`.
    #[serde(default)]
    pub mode: Mode,
    /// Only when this holds.
    #[serde(default)]
    pub when: Option<WhenConfig>,
}

/// `extract`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractConfig {
    /// The attribute matched.
    pub from: String,
    /// A regex whose named groups are the attributes to set: `(?P<http.route>/[^?]*)`.
    pub pattern: String,
    /// How attributes are written. Default `upsert`.
    #[serde(default)]
    pub mode: Mode,
    /// Only when this holds.
    #[serde(default)]
    pub when: Option<WhenConfig>,
}

/// `copy` and `rename`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyConfig {
    /// The source attribute.
    pub from: String,
    /// The destination attribute.
    pub to: String,
    /// How the destination is written. Default `upsert`.
    #[serde(default)]
    pub mode: Mode,
    /// Only when this holds.
    #[serde(default)]
    pub when: Option<WhenConfig>,
}

/// `set`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// The attribute.
    pub attribute: String,
    /// A string, number or boolean.
    pub value: serde_json::Value,
    /// How the attribute is written. Default `upsert`.
    #[serde(default)]
    pub mode: Mode,
    /// Only when this holds.
    #[serde(default)]
    pub when: Option<WhenConfig>,
}

/// The regex crate's syntax errors draw a caret diagram over several lines; keep the reason.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

fn compile(option: &str, pattern: &str, errors: &mut Vec<String>) -> Option<Regex> {
    Regex::new(pattern)
        .map_err(|e| {
            errors.push(format!(
                "{option}: invalid regex {pattern:?}: {}",
                regex_error(&e)
            ))
        })
        .ok()
}

fn not_empty(option: &str, value: &str, errors: &mut Vec<String>) {
    if value.is_empty() {
        errors.push(format!("{option}: must not be empty"));
    }
}

impl Config {
    /// Checks every step (gathering every problem) and builds the resource and span steps.
    pub fn build(self) -> Result<(Vec<Step>, Vec<Step>), String> {
        let mut errors = Vec::new();
        let resource = build_steps("resource", self.resource, &mut errors);
        let span = build_steps("span", self.span, &mut errors);
        if errors.is_empty() {
            Ok((resource, span))
        } else {
            Err(errors.join("; "))
        }
    }
}

fn build_steps(level: &str, steps: Vec<StepConfig>, errors: &mut Vec<String>) -> Vec<Step> {
    let mut out = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        if let Some(s) = build_step(&format!("config.{level}[{i}]"), step, errors) {
            out.push(s);
        }
    }
    out
}

fn build_when(
    option: &str,
    when: Option<WhenConfig>,
    errors: &mut Vec<String>,
) -> Option<Option<Cond>> {
    let Some(w) = when else {
        return Some(None);
    };
    let option = format!("{option}.when");
    let (key, on_resource) = match (w.attribute, w.resource_attribute) {
        (Some(k), None) => (k, false),
        (None, Some(k)) => (k, true),
        _ => {
            errors.push(format!(
                "{option}: needs exactly one of `attribute` and `resource_attribute`"
            ));
            return None;
        }
    };
    not_empty(&option, &key, errors);
    let regex = match w.matches {
        Some(p) => Some(compile(&format!("{option}.matches"), &p, errors)?),
        None => None,
    };
    Some(Some(Cond {
        key,
        on_resource,
        regex,
    }))
}

fn build_step(option: &str, step: StepConfig, errors: &mut Vec<String>) -> Option<Step> {
    let (kind, mode, when, option) = match step {
        StepConfig::Lookup(c) => {
            let option = format!("{option}.lookup");
            not_empty(&format!("{option}.table"), &c.table, errors);
            not_empty(&format!("{option}.key"), &c.key, errors);
            if c.columns.0.is_empty() {
                errors.push(format!("{option}.columns: name at least one column"));
            }
            for (attribute, column) in &c.columns.0 {
                not_empty(&format!("{option}.columns"), attribute, errors);
                not_empty(&format!("{option}.columns.{attribute}"), column, errors);
            }
            let kind = Kind::lookup(c.table, c.key, c.columns.0);
            (kind, c.mode, c.when, option)
        }
        StepConfig::Environment(c) => {
            let option = format!("{option}.environment");
            if !ENVIRONMENT_KEYS.contains(&c.key.as_str()) {
                errors.push(format!(
                    "{option}.key: unknown environment key {:?} (the host serves {})",
                    c.key,
                    ENVIRONMENT_KEYS.join(", ")
                ));
            }
            let attribute = c.attribute.unwrap_or_else(|| c.key.clone());
            not_empty(&format!("{option}.attribute"), &attribute, errors);
            (Kind::environment(c.key, attribute), c.mode, c.when, option)
        }
        StepConfig::Extract(c) => {
            let option = format!("{option}.extract");
            not_empty(&format!("{option}.from"), &c.from, errors);
            let regex = compile(&format!("{option}.pattern"), &c.pattern, errors)?;
            if regex.capture_names().flatten().next().is_none() {
                errors.push(format!(
                    "{option}.pattern: {:?} has no named group; name each part to extract after its attribute, e.g. (?P<http.route>/[^?]*)",
                    c.pattern
                ));
                return None;
            }
            (Kind::extract(c.from, regex), c.mode, c.when, option)
        }
        StepConfig::Copy(c) | StepConfig::Rename(c) if c.from == c.to => {
            errors.push(format!("{option}: `from` and `to` are both {:?}", c.from));
            return None;
        }
        StepConfig::Copy(c) => {
            let option = format!("{option}.copy");
            not_empty(&format!("{option}.from"), &c.from, errors);
            not_empty(&format!("{option}.to"), &c.to, errors);
            (Kind::copy(c.from, c.to, false), c.mode, c.when, option)
        }
        StepConfig::Rename(c) => {
            let option = format!("{option}.rename");
            not_empty(&format!("{option}.from"), &c.from, errors);
            not_empty(&format!("{option}.to"), &c.to, errors);
            (Kind::copy(c.from, c.to, true), c.mode, c.when, option)
        }
        StepConfig::Set(c) => {
            let option = format!("{option}.set");
            not_empty(&format!("{option}.attribute"), &c.attribute, errors);
            let value = match c.value {
                serde_json::Value::String(s) => Value::Str(s),
                serde_json::Value::Bool(b) => Value::Bool(b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Value::Int(i),
                    None => Value::Double(n.as_f64().unwrap_or_default()),
                },
                other => {
                    errors.push(format!(
                        "{option}.value: expected a string, number or boolean, got {other}"
                    ));
                    return None;
                }
            };
            (
                Kind::Set {
                    attribute: c.attribute,
                    value,
                },
                c.mode,
                c.when,
                option,
            )
        }
    };
    let when = build_when(&option, when, errors)?;
    Some(Step { kind, mode, when })
}
