//! `${env:VAR}`, `${env:VAR:-default}`, `${VAR}` and `${file:path}` expansion, as the
//! OpenTelemetry Collector does it.
//!
//! Expansion runs on scalar values after YAML parsing, so a variable can never inject YAML
//! structure. When a whole scalar is one `env` reference, the result is read again as a YAML
//! scalar, so `port: ${env:PORT}` gives a number. `$$` stands for a literal `$`.
//!
//! `${file:path}` is the file's content (secrets mounted as files), always as a string, with
//! one final line break dropped (what `echo` and most editors leave). A relative path is taken
//! from the working directory, as the Collector does.
//!
//! Error messages never repeat the value being expanded: it may be a secret.

use serde_yaml_ng::Value;

/// Expands references in every string of `value`, using `lookup` for variables.
/// Returns a problem (path, message) for each malformed reference.
pub fn expand(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<(String, String)>,
) {
    match value {
        Value::String(s) if s.contains('$') => match expand_str(s, lookup) {
            Ok((expanded, reparse)) => {
                *value = if reparse {
                    serde_yaml_ng::from_str::<Value>(&expanded)
                        .ok()
                        .filter(|v| !matches!(v, Value::Mapping(_) | Value::Sequence(_)))
                        .unwrap_or(Value::String(expanded))
                } else {
                    Value::String(expanded)
                };
            }
            Err(msg) => problems.push((path.to_string(), msg)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand(item, &format!("{path}[{i}]"), lookup, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().map(str::to_string).unwrap_or_default();
                let child = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                expand(v, &child, lookup, problems);
            }
        }
        Value::Tagged(t) => expand(&mut t.value, path, lookup, problems),
        _ => {}
    }
}

/// Expands one string. The flag is true when the string was exactly one `env` reference (its
/// result is then read as a YAML scalar).
fn expand_str(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut refs = 0;
    let mut files = 0;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or("unterminated reference: a `${` without its `}`")?;
            let inner = &body[..end];
            if let Some(path) = inner.strip_prefix("file:") {
                out.push_str(&read_secret_file(path)?);
                refs += 1;
                files += 1;
                rest = &body[end + 1..];
                continue;
            }
            // `${NAME}` without a scheme reads the environment, as the Collector's default
            // scheme does.
            let bare = (!inner.contains(':')).then_some(inner);
            let spec = inner.strip_prefix("env:").or(bare).ok_or_else(|| {
                // Only the scheme is named: the rest may be part of a secret.
                let scheme = inner
                    .split_once(':')
                    .map(|(scheme, _)| scheme)
                    .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()))
                    .map_or_else(String::new, |s| format!(" ${{{s}:...}}"));
                format!("unsupported reference{scheme}: only ${{env:NAME}}, ${{env:NAME:-default}}, ${{NAME}} and ${{file:path}} are supported")
            })?;
            let (name, default) = match spec.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (spec, None),
            };
            if name.is_empty()
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || name.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            let v = match lookup(name) {
                Some(v) if !(v.is_empty() && default.is_some()) => v,
                _ => default.unwrap_or_default().to_string(),
            };
            out.push_str(&v);
            refs += 1;
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    let whole =
        refs == 1 && s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
    Ok((out, whole && files == 0))
}

/// The content of the file `path` names, without one final line break.
fn read_secret_file(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("${file:} needs a path: ${file:/run/secrets/name}".into());
    }
    let mut text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read ${{file:{path}}}: {e}"))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("4317".into()),
            "HOST" => Some("example".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(yaml: &str) -> (Value, Vec<(String, String)>) {
        let mut v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        expand(&mut v, "", &env, &mut problems);
        (v, problems)
    }

    #[test]
    fn whole_reference_keeps_scalar_type() {
        let (v, p) = run("port: ${env:PORT}\nhost: ${env:HOST}:${env:PORT}\n");
        assert!(p.is_empty());
        assert_eq!(v["port"], Value::from(4317));
        assert_eq!(v["host"], Value::from("example:4317"));
    }

    #[test]
    fn a_reference_without_a_scheme_reads_the_environment() {
        let (v, p) = run("port: ${PORT}\nhost: ${HOST}:1\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(v["port"], Value::from(4317));
        assert_eq!(v["host"], Value::from("example:1"));
        let (_, p) = run("a: ${no-such name}\n");
        assert_eq!(p[0].1, "invalid environment variable name \"no-such name\"");
    }

    #[test]
    fn defaults_and_escapes() {
        let (v, _) =
            run("a: ${env:NOPE:-fallback}\nb: ${env:EMPTY:-d}\nc: $$HOME\nd: ${env:NOPE}\n");
        assert_eq!(v["a"], Value::from("fallback"));
        assert_eq!(v["b"], Value::from("d"));
        assert_eq!(v["c"], Value::from("$HOME"));
        assert_eq!(v["d"], Value::Null);
    }

    #[test]
    fn malformed_reference_is_a_problem_with_path() {
        let (_, p) = run("x:\n  y: ${vault:secret/x}\n");
        assert_eq!(p[0].0, "x.y");
        assert!(
            p[0].1
                .starts_with("unsupported reference ${vault:...}: only ${env:NAME}"),
            "{}",
            p[0].1
        );
    }

    #[test]
    fn errors_do_not_repeat_the_value() {
        let (_, p) = run("a: hunter2${oops\nb: \"hunter2${hun:ter2}\"\n");
        assert_eq!(p.len(), 2);
        for (_, m) in &p {
            assert!(!m.contains("hunter2") && !m.contains("ter2"), "{m}");
        }
    }

    #[test]
    fn file_references_read_the_file_as_a_string() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, "12345\n").unwrap();
        let crlf = dir.path().join("token");
        std::fs::write(&crlf, "abc\r\n\n").unwrap();
        let (v, p) = run(&format!(
            "a: ${{file:{}}}\nb: Bearer ${{file:{}}}\n",
            secret.display(),
            crlf.display()
        ));
        assert!(p.is_empty(), "{p:?}");
        // A number-like secret stays a string; one final line break goes, no more.
        assert_eq!(v["a"], Value::from("12345"));
        assert_eq!(v["b"], Value::from("Bearer abc\r\n"));
    }

    #[test]
    fn a_missing_file_names_the_path_and_the_option() {
        let (_, p) = run("auth:\n  password: ${file:/nonexistent/wasmcol-secret}\n");
        assert_eq!(p[0].0, "auth.password");
        assert!(
            p[0].1
                .starts_with("cannot read ${file:/nonexistent/wasmcol-secret}: "),
            "{}",
            p[0].1
        );
    }
}
