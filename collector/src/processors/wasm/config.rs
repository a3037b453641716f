//! `processors.wasm/NAME`: a WebAssembly plugin as a processor.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::plugin_host::{Limits, LoadedPlugin, OnError, TableConfig, Tables};

/// `processors.wasm/NAME`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmProcessorConfig {
    /// `builtin:NAME` for a plugin shipped in the binary, or the path of a `.wasm` component
    /// (built for `wasm32-wasip2`).
    pub plugin: String,
    /// Handed to the plugin once per instance, as JSON; the plugin may reject it.
    #[serde(default)]
    pub config: serde_yaml_ng::Value,
    /// Read-only lookup tables the plugin can query (inline rows or YAML/CSV files).
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
    /// Per-instance limits.
    #[serde(default)]
    pub limits: Limits,
    /// What to do with a batch the plugin failed on: `pass` it on unchanged, `drop` it, or
    /// `refuse` it (a retryable error to the sender). Default: `refuse` for
    /// `builtin:pii-scrub` (a scrubber that fails must not let data through unscrubbed),
    /// `pass` for every other plugin.
    #[serde(default)]
    pub on_error: Option<OnError>,
    /// Instances running in parallel, each on its own thread.
    #[serde(default = "default_instances")]
    pub instances: usize,
    /// The plugin as loaded and checked by `validate`, reused by `build`.
    #[serde(skip)]
    pub(super) loaded: OnceLock<(Arc<LoadedPlugin>, Arc<Tables>, String)>,
}

fn default_instances() -> usize {
    1
}

/// Plugins whose job is to remove data: a failure must not pass the batch on unchanged.
const REMOVES_DATA: &[&str] = &["builtin:pii-scrub"];

impl WasmProcessorConfig {
    /// `on_error` as configured, or its default for this plugin.
    pub fn on_error(&self) -> OnError {
        self.on_error
            .unwrap_or(if REMOVES_DATA.contains(&self.plugin.as_str()) {
                OnError::Refuse
            } else {
                OnError::Pass
            })
    }
}

impl Validate for WasmProcessorConfig {
    /// Checks the options, then loads the plugin and has it check its configuration: a
    /// plugin that cannot be loaded or rejects its `config` is reported here, so both
    /// `wasmcol validate` and start-up stop on it.
    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.instances == 0 || self.instances > 256 {
            problems.push(Problem::new(
                "instances",
                format!("must be between 1 and 256, got {}", self.instances),
            ));
        }
        let l = &self.limits;
        if l.memory_mib < 1 || l.memory_mib > 4096 {
            problems.push(Problem::new(
                "limits.memory_mib",
                format!(
                    "must be between 1 and 4096 (wasm32 addresses 4 GiB), got {}",
                    l.memory_mib
                ),
            ));
        }
        if l.call_timeout.0 < std::time::Duration::from_millis(1) {
            problems.push(Problem::new(
                "limits.call_timeout",
                format!("must be at least 1ms, got {:?}", l.call_timeout.0),
            ));
        }
        if l.max_output_bytes.0 == 0 {
            problems.push(Problem::new(
                "limits.max_output_bytes",
                "must be more than 0",
            ));
        }
        if l.max_edits == 0 {
            problems.push(Problem::new("limits.max_edits", "must be more than 0"));
        }
        if let Some(r) = l.recycle_memory_mib
            && (r == 0 || r > l.memory_mib)
        {
            problems.push(Problem::new(
                "limits.recycle_memory_mib",
                format!(
                    "must be between 1 and limits.memory_mib ({}), got {r}",
                    l.memory_mib
                ),
            ));
        }
        let config_json = match serde_json::to_string(&self.config) {
            Ok(j) => j,
            Err(e) => {
                problems.push(Problem::new(
                    "config",
                    format!("cannot be passed to the plugin as JSON: {e}"),
                ));
                return problems;
            }
        };
        let tables = match Tables::load(&self.tables) {
            Ok(t) => Arc::new(t),
            Err(p) => {
                problems.extend(p);
                return problems;
            }
        };
        if !problems.is_empty() {
            return problems;
        }
        let plugin = match LoadedPlugin::load(&self.plugin) {
            Ok(p) => Arc::new(p),
            Err(message) => {
                problems.push(Problem::new("plugin", message));
                return problems;
            }
        };
        if let Err(e) = plugin.check_config(&config_json, &self.limits, tables.clone()) {
            problems.push(Problem::new(e.path, e.message));
            return problems;
        }
        let _ = self.loaded.set((plugin, tables, config_json));
        problems
    }
}
