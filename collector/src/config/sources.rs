//! Where a configuration comes from, as the OpenTelemetry Collector takes it: several
//! `--config` sources merged in order, then `--set` values.
//!
//! A source is a file path (or `file:PATH`), `env:VAR` (the variable holds YAML) or
//! `yaml:TEXT` (inline YAML; `yaml:exporters::debug::verbosity: normal` sets one option, `::`
//! separating the keys as in the Collector). Later sources merge over earlier ones: mappings
//! merge key by key at every depth, anything else (lists too) is replaced. `--set KEY=VALUE`
//! merges last; KEY is a dotted path (`processors.batch.timeout`), or `::`-separated when a
//! key holds a dot (`exporters::otlp_http::headers::x.tenant`); VALUE is read as YAML.

use std::fmt;

use serde_yaml_ng::{Mapping, Value};

/// The configuration as resolved: sources merged, `--set` applied, `${...}` expanded, other
/// spellings rewritten. A reload compares it component by component and the metrics show its
/// hash. Its `Debug` shows none of it: it holds secrets.
#[derive(Clone, Default, PartialEq)]
pub struct Resolved(pub Value);

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolved(..)")
    }
}

impl Resolved {
    /// The value of `section.id` (`exporters`, `file/2`) as YAML text; empty when absent.
    pub fn component(&self, section: &str, id: &str) -> String {
        self.0
            .get(section)
            .and_then(|s| s.get(id))
            .and_then(|v| serde_yaml_ng::to_string(v).ok())
            .unwrap_or_default()
    }

    /// SHA-256 of the whole (as YAML text), hex; the metrics show its first 12 digits.
    pub fn hash(&self) -> String {
        let text = serde_yaml_ng::to_string(&self.0).unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        hex::encode(digest.as_ref())
    }
}

/// Reads every source and merges them in order, `sets` last. The error names the source.
pub fn resolve(
    sources: &[String],
    sets: &[String],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, String> {
    let texts = read_all(sources, lookup)?;
    resolve_texts(&texts, sets)
}

/// Each source's name (a file's path, `env:VAR`, `yaml:`) and text, in order.
pub fn read_all(
    sources: &[String],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    sources
        .iter()
        .map(|source| Ok((name_of(source), text_of(source, lookup)?)))
        .collect()
}

/// How errors name `source`: a file by its path, the others by their scheme and variable.
fn name_of(source: &str) -> String {
    if source.starts_with("yaml:") {
        "--config=yaml:".to_string()
    } else if source.starts_with("env:") {
        format!("--config={source}")
    } else {
        source.strip_prefix("file:").unwrap_or(source).to_string()
    }
}

/// Merges the texts [`read_all`] read, in order, `sets` last.
pub fn resolve_texts(texts: &[(String, String)], sets: &[String]) -> Result<Value, String> {
    let mut merged = Value::Null;
    for (name, text) in texts {
        let value: Value =
            serde_yaml_ng::from_str(text).map_err(|e| format!("{name}: not valid YAML: {e}"))?;
        merge(&mut merged, value);
    }
    for set in sets {
        let value = parse_set(set)?;
        merge(&mut merged, value);
    }
    Ok(merged)
}

/// The text of one source.
pub fn text_of(source: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if let Some(var) = source.strip_prefix("env:") {
        return lookup(var).ok_or_else(|| format!("--config={source}: {var} is not set"));
    }
    if let Some(yaml) = source.strip_prefix("yaml:") {
        return Ok(inline_yaml(yaml));
    }
    let path = source.strip_prefix("file:").unwrap_or(source);
    std::fs::read_to_string(path).map_err(|e| format!("{path}: cannot read the file: {e}"))
}

/// `a::b::c: v` → nested YAML (`a: {b: {c: v}}`); other text is returned as it is.
fn inline_yaml(yaml: &str) -> String {
    let Some((keys, value)) = yaml.split_once(": ").or_else(|| {
        yaml.strip_suffix(':')
            .map(|k| (k, ""))
            .filter(|(k, _)| k.contains("::"))
    }) else {
        return yaml.to_string();
    };
    if !keys.contains("::") || keys.contains('\n') {
        return yaml.to_string();
    }
    let mut out = String::new();
    let parts: Vec<&str> = keys.split("::").collect();
    for (depth, key) in parts.iter().enumerate() {
        out.push_str(&"  ".repeat(depth));
        out.push_str(&quote_key(key));
        out.push(':');
        if depth + 1 < parts.len() {
            out.push('\n');
        }
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
    out
}

fn quote_key(key: &str) -> String {
    serde_yaml_ng::to_string(&Value::String(key.to_string()))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| key.to_string())
}

/// `--set KEY=VALUE` as a nested mapping.
fn parse_set(set: &str) -> Result<Value, String> {
    let (key, value) = set
        .split_once('=')
        .ok_or_else(|| format!("--set {set:?}: expected KEY=VALUE"))?;
    let parts: Vec<&str> = if key.contains("::") {
        key.split("::").collect()
    } else {
        key.split('.').collect()
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "--set {key:?}: an empty key (write a.b.c, or a::b::c when a key holds a dot)"
        ));
    }
    let mut value: Value = if value.is_empty() {
        Value::Null
    } else {
        serde_yaml_ng::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()))
    };
    for part in parts.iter().rev() {
        let mut m = Mapping::new();
        m.insert(Value::String(part.to_string()), value);
        value = Value::Mapping(m);
    }
    Ok(value)
}

/// Merges `over` into `base`: mappings key by key at every depth; anything else replaced.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Option names whose values are secrets in this distribution's component configs (each an
/// `Opaque` there, or a password hash), and every value under `headers`.
const SECRET_KEYS: &[&str] = &[
    "password",
    "token",
    "tokens",
    "inline",
    "key_pem",
    "cert_pem",
    "ca_pem",
    "client_secret",
    "api_key",
    "secret",
];

/// What a redacted value prints as.
pub const REDACTED: &str = "[REDACTED]";

/// Replaces every secret in `value` with [`REDACTED`]: the options [`SECRET_KEYS`] names
/// (everything under them), every header value, and options whose name says password, secret
/// or `key.pem` (librdkafka's `sasl.password`, `ssl.key.pem`, ...).
pub fn redact(value: &mut Value) {
    redact_in(value, false);
}

fn redact_in(value: &mut Value, all: bool) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().unwrap_or_default().to_ascii_lowercase();
                let secret = all
                    || SECRET_KEYS.contains(&key.as_str())
                    || key.contains("password")
                    || key.contains("secret")
                    || key.ends_with("key.pem");
                match v {
                    Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_) => {
                        redact_in(v, secret || key == "headers")
                    }
                    Value::Null => {}
                    _ if secret => *v = Value::String(REDACTED.into()),
                    _ => {}
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                match item {
                    Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_) => {
                        redact_in(item, all)
                    }
                    Value::Null => {}
                    _ if all => *item = Value::String(REDACTED.into()),
                    _ => {}
                }
            }
        }
        Value::Tagged(t) => redact_in(&mut t.value, all),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn maps_merge_deeply_and_lists_replace() {
        let mut a = yaml("a: {b: 1, c: [1, 2]}\nd: x\n");
        merge(&mut a, yaml("a: {c: [3], e: 2}\n"));
        assert_eq!(a, yaml("a: {b: 1, c: [3], e: 2}\nd: x\n"));
    }

    #[test]
    fn sets_take_dotted_or_double_colon_paths() {
        assert_eq!(
            parse_set("processors.batch.timeout=2s").unwrap(),
            yaml("processors: {batch: {timeout: 2s}}")
        );
        assert_eq!(
            parse_set("exporters::otlp_http::headers::x.tenant=a=b").unwrap(),
            yaml("exporters: {otlp_http: {headers: {x.tenant: a=b}}}")
        );
        assert_eq!(parse_set("a.b=5").unwrap(), yaml("a: {b: 5}"));
        assert!(parse_set("a..b=1").is_err());
        assert!(parse_set("novalue").is_err());
    }

    #[test]
    fn inline_yaml_takes_double_colon_keys() {
        assert_eq!(
            serde_yaml_ng::from_str::<Value>(&inline_yaml("exporters::debug::verbosity: normal"))
                .unwrap(),
            yaml("exporters: {debug: {verbosity: normal}}")
        );
        assert_eq!(inline_yaml("a: {b: 1}"), "a: {b: 1}");
    }

    #[test]
    fn secrets_are_redacted() {
        let mut v = yaml(
            "exporters:\n  otlp:\n    endpoint: x:4317\n    headers: {authorization: Bearer abc, x-team: a}\n  kafka:\n    auth: {sasl: {username: u, password: p}}\n    librdkafka_options: {sasl.password: q, linger.ms: '5', ssl.key.pem: k}\nextensions:\n  bearertokenauth: {token: t}\n  bearertokenauth/2: {tokens: [t1, t2]}\n  basicauth: {htpasswd: {inline: \"u:hash\"}}\n",
        );
        redact(&mut v);
        let text = serde_yaml_ng::to_string(&v).unwrap();
        for secret in [
            "abc",
            "password: p",
            "sasl.password: q",
            "token: t",
            "x-team: a",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("username: u") && text.contains("endpoint: x:4317"));
        assert!(text.contains("linger.ms: '5'"), "{text}");
    }
}
