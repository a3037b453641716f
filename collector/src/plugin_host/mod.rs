//! The plugin host: everything that runs a sandboxed WebAssembly plugin, shared by the
//! `wasm` processor and `tail_sampling`'s policy plugins.
//!
//! - [`engine`]: the one wasmtime engine (compilation settings, on-disk cache, epoch clock)
//!   and the linker with everything a plugin may import.
//! - [`plugin`] loads a processor plugin (built in or a file), [`policy`] a policy plugin,
//!   [`analyser`] a trace analyser plugin (and runs it, with failure back-off).
//! - [`instance`]: one live processor instance and its calls; [`CallError`] says how a call
//!   failed.
//! - [`limits`]: memory budget (linear memory and tables), deadline and output cap of each
//!   instance, and `on_error`.
//! - [`host`]: the store's data and the host functions (a rate-limited, escaped log,
//!   counters, clock, lookups).
//! - [`tables`]: read-only lookup tables.
//! - [`worker`]: the threads that run processor instances, with failure back-off.
//! - [`supervised`]: a policy or analyser instance called under the same back-off, made anew
//!   after a failure.

pub mod analyser;
pub mod bindings;
mod builtin;
pub mod engine;
pub mod host;
pub mod instance;
pub mod limits;
pub mod plugin;
pub mod policy;
pub mod supervised;
pub mod tables;
pub mod worker;

pub use host::Services;
pub use instance::CallError;
pub use limits::{Limits, OnError};
pub use plugin::{LoadedPlugin, StartupError};
pub use tables::{TableConfig, Tables};
pub use worker::pause_after;

/// (name, description) of the plugins built into this binary, used as
/// `plugin: builtin:NAME`.
pub fn builtin_plugins() -> Vec<(&'static str, &'static str)> {
    builtin::describe()
}
