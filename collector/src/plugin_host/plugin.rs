//! Loading a plugin: find its bytes (built in or a file), compile it (through the on-disk
//! cache), link it against what the host offers, and keep the result ready for quick
//! instantiation.

use std::sync::Arc;

use wasmtime::component::{Component, InstancePre};

use super::bindings::PluginPre;
use super::builtin;
use super::engine;
use super::host::{HostState, Services};
use super::instance::{CallError, Instance};
use super::limits::Limits;
use super::tables::Tables;
use crate::telemetry::Metrics;

/// A compiled and linked plugin, ready to instantiate.
pub struct LoadedPlugin {
    /// `builtin:NAME` or the file path, for messages.
    pub source: String,
    /// Pre-linked: instantiation skips import resolution.
    pub pre: PluginPre<HostState>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("source", &self.source)
            .finish()
    }
}

/// Why a plugin did not pass its start-up check, with the config path to blame.
pub struct StartupError {
    /// `config` when the plugin rejected its configuration, `plugin` otherwise.
    pub path: &'static str,
    /// What happened, in the plugin's own words where it gave any.
    pub message: String,
}

/// The first bytes of a component binary (magic, then the component-model layer).
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
const CORE_MODULE_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

impl LoadedPlugin {
    /// Loads `source`: `builtin:NAME` or a path to a `.wasm` component.
    pub fn load(source: &str) -> Result<Self, String> {
        let pre = PluginPre::new(compile(source)?).map_err(|e| {
            format!("{source:?} does not implement the wasmcol:plugin/plugin world: {e:#}")
        })?;
        Ok(Self {
            source: source.to_string(),
            pre,
        })
    }

    /// Instantiates the plugin once and hands it its configuration, as start-up will.
    pub fn check_config(
        &self,
        config_json: &str,
        limits: &Limits,
        tables: Arc<Tables>,
    ) -> Result<(), StartupError> {
        // Logs and counters from this trial instance go to a throw-away registry.
        let services = Arc::new(Services::new(
            "validate".into(),
            Arc::new(Metrics::new()),
            tables,
        ));
        match Instance::new(self, services, limits, config_json) {
            Ok(_) => Ok(()),
            Err(CallError::Rejected(reason)) => Err(StartupError {
                path: "config",
                message: format!("the plugin rejected its configuration: {reason}"),
            }),
            Err(e) => Err(StartupError {
                path: "plugin",
                message: format!("{:?} failed while starting: {e}", self.source),
            }),
        }
    }
}

/// Finds, compiles (through the on-disk cache) and links the component at `source`
/// (`builtin:NAME` or a path), for any of the plugin worlds.
pub fn compile(source: &str) -> Result<InstancePre<HostState>, String> {
    let bytes: std::borrow::Cow<'static, [u8]> = match source.strip_prefix("builtin:") {
        Some(name) => builtin::get(name).map(Into::into).ok_or_else(|| {
            let names = builtin::names();
            format!(
                "no built-in plugin named {name:?}; built in: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        })?,
        None => std::fs::read(source)
            .map_err(|e| format!("cannot read the plugin file {source:?}: {e}"))?
            .into(),
    };
    if bytes.get(..8) == Some(&CORE_MODULE_HEADER[..]) {
        return Err(format!(
            "{source:?} is a core WebAssembly module, not a component: build the plugin for the \
             wasm32-wasip2 target (`cargo build --release --target wasm32-wasip2`)"
        ));
    }
    if bytes.get(..8) != Some(&COMPONENT_HEADER[..]) {
        return Err(format!("{source:?} is not a WebAssembly component"));
    }
    let engine = engine::get()?;
    let component = Component::new(&engine.engine, &bytes)
        .map_err(|e| format!("{source:?} is not a valid plugin: {e:#}"))?;
    engine
        .linker
        .instantiate_pre(&component)
        .map_err(|e| format!("{source:?} needs something the host does not provide: {e:#}"))
}
