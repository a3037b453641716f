//! `processors.wasm/NAME`: a WebAssembly plugin as a processor.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use super::plugin::LoadedPlugin;
use super::tables::{TableConfig, Tables};
use crate::component::{Problem, Validate};
use crate::config::{ByteSize, Duration};

/// What happens to a batch when the plugin fails on it (trap, timeout, error, bad output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Pass the batch on unchanged.
    #[default]
    Pass,
    /// Drop the batch (counted as dropped spans).
    Drop,
}

/// Resource limits of each plugin instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory cap per instance, in MiB. A growth past it traps the call.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Deadline for one call (one batch). Enforced by epoch interruption.
    #[serde(default = "default_call_timeout")]
    pub call_timeout: Duration,
    /// Largest answer a plugin may return for one batch (edits or a replacement batch).
    #[serde(default = "default_max_output")]
    pub max_output_bytes: ByteSize,
    /// Linear memory above which an instance is replaced after a call (memory never shrinks
    /// inside an instance). Default: half of `memory_mib`.
    #[serde(default)]
    pub recycle_memory_mib: Option<u64>,
}

fn default_memory_mib() -> u64 {
    128
}
fn default_call_timeout() -> Duration {
    Duration(std::time::Duration::from_millis(500))
}
fn default_max_output() -> ByteSize {
    ByteSize(64 << 20)
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: default_memory_mib(),
            call_timeout: default_call_timeout(),
            max_output_bytes: default_max_output(),
            recycle_memory_mib: None,
        }
    }
}

impl Limits {
    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize) << 20
    }

    /// Linear memory past which an instance is recycled, in bytes.
    pub fn recycle_bytes(&self) -> usize {
        (self.recycle_memory_mib.unwrap_or(self.memory_mib / 2) as usize) << 20
    }
}

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
    /// What to do with a batch the plugin failed on.
    #[serde(default)]
    pub on_error: OnError,
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
