//! Loading a plugin: find its bytes (built in or a file), compile it (through the on-disk
//! cache), link it against what the host offers, and keep the result ready for quick
//! instantiation.

use std::sync::Arc;

use wasmtime::component::{Component, InstancePre};

use super::bindings::{self, CURRENT_VERSION, PluginPre, V0_1_VERSION, V0_2_VERSION};
use super::builtin;
use super::engine;
use super::host::{HostState, Services};
use super::instance::{CallError, Instance};
use super::limits::Limits;
use super::tables::Tables;
use crate::pipeline::{SignalKind, Signals};
use crate::telemetry::Metrics;

/// A compiled and linked plugin, ready to instantiate.
pub struct LoadedPlugin {
    /// `builtin:NAME` or the file path, for messages.
    pub source: String,
    /// Pre-linked: instantiation skips import resolution.
    pub pre: Pre,
}

/// A processor plugin pre-linked with the bindings of the package version it was built for.
pub enum Pre {
    /// `wasmcol:plugin@0.3.0`: traces, logs and metrics.
    Current(PluginPre<HostState>),
    /// `wasmcol:plugin@0.2.0`: traces and logs.
    V0_2(bindings::v0_2::PluginPre<HostState>),
    /// `wasmcol:plugin@0.1.0`: traces only.
    V0_1(bindings::v0_1::PluginPre<HostState>),
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
        let (linked, version) = compile(source)?;
        let not_a_processor = |e: wasmtime::Error| {
            format!(
                "{source:?} does not implement the wasmcol:plugin/plugin world \
                 (wasmcol:plugin@{}): {e:#}",
                version.as_deref().unwrap_or(CURRENT_VERSION)
            )
        };
        let pre = match version.as_deref() {
            Some(V0_1_VERSION) => {
                Pre::V0_1(bindings::v0_1::PluginPre::new(linked).map_err(not_a_processor)?)
            }
            Some(V0_2_VERSION) => {
                Pre::V0_2(bindings::v0_2::PluginPre::new(linked).map_err(not_a_processor)?)
            }
            _ => Pre::Current(PluginPre::new(linked).map_err(not_a_processor)?),
        };
        Ok(Self {
            source: source.to_string(),
            pre,
        })
    }

    /// The `wasmcol:plugin` version the plugin was built for.
    pub fn version(&self) -> &'static str {
        match self.pre {
            Pre::Current(_) => CURRENT_VERSION,
            Pre::V0_2(_) => V0_2_VERSION,
            Pre::V0_1(_) => V0_1_VERSION,
        }
    }

    /// The signals the plugin's package version has: all three for 0.3.0, traces and logs
    /// for 0.2.0, traces for 0.1.0.
    pub fn signals(&self) -> Signals {
        match self.pre {
            Pre::Current(_) => {
                Signals::of(&[SignalKind::Traces, SignalKind::Logs, SignalKind::Metrics])
            }
            Pre::V0_2(_) => Signals::of(&[SignalKind::Traces, SignalKind::Logs]),
            Pre::V0_1(_) => Signals::of(&[SignalKind::Traces]),
        }
    }

    /// Why the plugin cannot process `signal`, naming its version (`None` when it can).
    pub fn lacks(&self, signal: SignalKind) -> Option<String> {
        (!self.signals().contains(signal)).then(|| {
            format!(
                "the plugin {:?} was built for wasmcol:plugin@{}, which has no {signal}; \
                 {signal} need a plugin built for wasmcol:plugin@{CURRENT_VERSION} (rebuild it \
                 with the current wasmcol-plugin-sdk)",
                self.source,
                self.version(),
            )
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
/// (`builtin:NAME` or a path), for any of the plugin worlds. Returns it with the
/// `wasmcol:plugin` package version it names (`None` if it names none); a version the host
/// has no bindings for is refused here, by name, before linking would fail less clearly.
pub fn compile(source: &str) -> Result<(InstancePre<HostState>, Option<String>), String> {
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
    let version = bindings::package_version(&component, &engine.engine);
    if let Some(v) = &version
        && v != CURRENT_VERSION
        && v != V0_2_VERSION
        && v != V0_1_VERSION
    {
        return Err(format!(
            "{source:?} was built for wasmcol:plugin@{v}; this collector runs plugins built for \
             wasmcol:plugin@{CURRENT_VERSION} (and processor plugins for @{V0_2_VERSION}, on \
             traces and logs, and @{V0_1_VERSION}, on traces only): rebuild it with a matching \
             wasmcol-plugin-sdk"
        ));
    }
    let linked = engine
        .linker
        .instantiate_pre(&component)
        .map_err(|e| format!("{source:?} needs something the host does not provide: {e:#}"))?;
    Ok((linked, version))
}
