//! Read-only lookup tables for plugins: inline rows or a YAML/CSV file per table, loaded once
//! at start-up, plus the host's `environment` table. Plugins see them through the
//! `lookup(table, key)` import; they never touch the files themselves.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::component::Problem;

/// A row: column name → value.
pub type Row = Vec<(String, String)>;

/// One table under a `wasm` processor's `tables:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// A file holding the rows: `.csv` (a header line, then one row per line) or
    /// `.yaml`/`.yml` (a map of key → map of column → value). Relative paths are taken from
    /// the working directory.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// For CSV files: the column that holds the key (default: the first column).
    #[serde(default)]
    pub key: Option<String>,
    /// Inline rows: key → map of column → value.
    #[serde(default)]
    pub rows: Option<BTreeMap<String, BTreeMap<String, serde_yaml_ng::Value>>>,
}

/// The name of the table the host fills from the process's environment.
pub const ENVIRONMENT: &str = "environment";

/// All tables of one processor.
#[derive(Debug, Default)]
pub struct Tables {
    tables: HashMap<String, HashMap<String, Row>>,
}

impl Tables {
    /// Loads every configured table and the environment table. Problems name the table and,
    /// for files, the file and line.
    pub fn load(config: &BTreeMap<String, TableConfig>) -> Result<Self, Vec<Problem>> {
        let mut tables = HashMap::new();
        let mut problems = Vec::new();
        for (name, t) in config {
            let path = format!("tables.{name}");
            if name == ENVIRONMENT {
                problems.push(Problem::new(
                    &path,
                    "`environment` is the host's own table (host and Kubernetes names); pick another name",
                ));
                continue;
            }
            let loaded = match (&t.file, &t.rows) {
                (Some(_), Some(_)) | (None, None) => Err(Problem::new(
                    &path,
                    "set exactly one of `file` (a YAML or CSV file) and `rows` (inline rows)",
                )),
                (None, Some(rows)) => {
                    if t.key.is_some() {
                        Err(Problem::new(
                            format!("{path}.key"),
                            "`key` only applies to CSV files",
                        ))
                    } else {
                        inline_rows(rows).map_err(|m| Problem::new(format!("{path}.rows"), m))
                    }
                }
                (Some(file), None) => load_file(file, t.key.as_deref())
                    .map_err(|m| Problem::new(format!("{path}.file"), m)),
            };
            match loaded {
                Ok(rows) => {
                    tables.insert(name.clone(), rows);
                }
                Err(p) => problems.push(p),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        tables.insert(
            ENVIRONMENT.to_string(),
            environment(|k| std::env::var(k).ok()),
        );
        Ok(Self { tables })
    }

    /// The row for `key` in `table`.
    pub fn lookup(&self, table: &str, key: &str) -> Option<Row> {
        self.tables.get(table)?.get(key).cloned()
    }
}

fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn inline_rows(
    rows: &BTreeMap<String, BTreeMap<String, serde_yaml_ng::Value>>,
) -> Result<HashMap<String, Row>, String> {
    let mut out = HashMap::new();
    for (key, cols) in rows {
        let mut row = Row::new();
        for (col, v) in cols {
            let v = scalar(v).ok_or_else(|| {
                format!("{key}.{col}: expected a string, number or boolean, got {v:?}")
            })?;
            row.push((col.clone(), v));
        }
        out.insert(key.clone(), row);
    }
    Ok(out)
}

fn load_file(file: &Path, key: Option<&str>) -> Result<HashMap<String, Row>, String> {
    let shown = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    match file.extension().and_then(|e| e.to_str()) {
        Some("csv") => load_csv(&text, key).map_err(|m| format!("{shown}:{m}")),
        Some("yaml" | "yml") => {
            if key.is_some() {
                return Err(format!("{shown}: `key` only applies to CSV files"));
            }
            let rows: BTreeMap<String, BTreeMap<String, serde_yaml_ng::Value>> =
                serde_yaml_ng::from_str(&text).map_err(|e| match e.location() {
                    Some(l) => format!("{shown}:{}: {e}", l.line()),
                    None => format!("{shown}: {e}"),
                })?;
            inline_rows(&rows).map_err(|m| format!("{shown}: {m}"))
        }
        _ => Err(format!(
            "{shown}: unknown table format; use a .csv, .yaml or .yml file"
        )),
    }
}

/// Parses CSV text; errors start with the line number.
fn load_csv(text: &str, key: Option<&str>) -> Result<HashMap<String, Row>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("1: cannot read the header line: {e}"))?
        .clone();
    if headers.is_empty() || headers.iter().all(str::is_empty) {
        return Err("1: the header line is empty".into());
    }
    let key_col = match key {
        None => 0,
        Some(k) => headers.iter().position(|h| h == k).ok_or_else(|| {
            format!(
                "1: no column {k:?} for the key; the columns are {}",
                headers.iter().collect::<Vec<_>>().join(", ")
            )
        })?,
    };
    let mut rows = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            format!("{line}: {e}")
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let key = record.get(key_col).unwrap_or_default().to_string();
        if key.is_empty() {
            return Err(format!(
                "{line}: the key column {:?} is empty",
                &headers[key_col]
            ));
        }
        let row: Row = headers
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter(|(i, _)| *i != key_col)
            .map(|(_, (h, v))| (h.to_string(), v.to_string()))
            .collect();
        if rows.insert(key.clone(), row).is_some() {
            return Err(format!("{line}: the key {key:?} appears twice"));
        }
    }
    Ok(rows)
}

/// The `environment` table: the host name and the Kubernetes downward-API values, under
/// their OpenTelemetry attribute names. Each row has one column, `value`.
fn environment(var: impl Fn(&str) -> Option<String>) -> HashMap<String, Row> {
    let first = |names: &[&str]| names.iter().find_map(|n| var(n).filter(|v| !v.is_empty()));
    let host = first(&["HOSTNAME"]).or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    let entries = [
        ("host.name", host),
        ("k8s.pod.name", first(&["K8S_POD_NAME", "POD_NAME"])),
        ("k8s.pod.uid", first(&["K8S_POD_UID", "POD_UID"])),
        ("k8s.pod.ip", first(&["K8S_POD_IP", "POD_IP"])),
        (
            "k8s.namespace.name",
            first(&["K8S_NAMESPACE_NAME", "K8S_NAMESPACE", "POD_NAMESPACE"]),
        ),
        ("k8s.node.name", first(&["K8S_NODE_NAME", "NODE_NAME"])),
    ];
    entries
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), vec![("value".to_string(), v?)])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_by_key_column() {
        let rows = load_csv(
            "team, service ,owner\npayments,checkout,ann\nsearch,query,bob\n",
            Some("service"),
        )
        .unwrap();
        assert_eq!(
            rows["checkout"],
            vec![
                ("team".to_string(), "payments".to_string()),
                ("owner".to_string(), "ann".to_string())
            ]
        );
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let err = load_csv("a,b\n1,2\n3\n", None).unwrap_err();
        assert!(err.starts_with("3: "), "{err}");
        let err = load_csv("a,b\n1,2\n1,3\n", None).unwrap_err();
        assert_eq!(err, "3: the key \"1\" appears twice");
        let err = load_csv("a,b\n1,2\n", Some("c")).unwrap_err();
        assert!(err.starts_with("1: no column \"c\""), "{err}");
    }

    #[test]
    fn environment_uses_downward_api_names() {
        let env = environment(|k| match k {
            "POD_NAME" => Some("web-1".into()),
            "K8S_NAMESPACE_NAME" => Some("shop".into()),
            _ => None,
        });
        assert_eq!(env["k8s.pod.name"], vec![("value".into(), "web-1".into())]);
        assert_eq!(
            env["k8s.namespace.name"],
            vec![("value".into(), "shop".into())]
        );
        assert!(!env.contains_key("k8s.node.name"));
    }
}
