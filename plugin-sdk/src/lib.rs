//! Write processor plugins for the wasmcol collector.
//!
//! A plugin is a type that implements [`Plugin`] and is registered with [`export_plugin!`]:
//!
//! ```
//! use wasmcol_plugin_sdk::prelude::*;
//!
//! /// Tags every span of a chosen service.
//! struct Tagger {
//!     service: String,
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     service: String,
//! }
//!
//! impl Plugin for Tagger {
//!     fn new(config: PluginConfig) -> Result<Self, String> {
//!         let c: Config = config.parse()?;
//!         Ok(Tagger { service: c.service })
//!     }
//!
//!     fn process(&mut self, batch: &mut Batch) -> Result<(), String> {
//!         batch.for_each_span(|span| {
//!             if span.service_name() == Some(self.service.as_str()) {
//!                 span.set_attribute("team", "payments");
//!             }
//!         });
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(Tagger);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is what a `wasm` processor's `plugin:` points at. The same
//! code runs natively under `cargo test` through [`testing::Harness`].
//!
//! A plugin in a logs pipeline gets logs batches through [`Plugin::process_logs`] (a
//! [`LogBatch`]), one in a metrics pipeline metrics batches through
//! [`Plugin::process_metrics`] (a [`MetricBatch`]); their defaults pass them on unchanged.
//!
//! Two other kinds of plugin see whole traces: a tail-sampling policy ([`policy::Policy`],
//! [`export_policy!`]) decides whether to keep each, and a trace analyser
//! ([`analyser::Analyser`], [`export_analyser!`]) reports findings in each for the
//! `trace_analysis` connector.
//!
//! The batch crosses into the plugin as OTLP protobuf (one copy) and changes go back as small
//! [`Edit`]s that the host checks and applies; see `plugin-sdk/README.md` for why and the
//! numbers behind it.

pub mod analyser;
mod attributes;
mod batch;
pub mod edit;
pub mod host;
mod logs;
mod metrics;
pub mod policy;
#[doc(hidden)]
pub mod runtime;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod units;
mod value;
pub mod view;
pub mod wire;

// The decoded reference the edit tests hold `wire::edit` to names the SDK by its crate name
// (`src/wire/edit_oracle.rs`), so that the fuzz target and the bench compile it unchanged.
#[cfg(test)]
extern crate self as wasmcol_plugin_sdk;

// The tutorial's Rust blocks run as doctests (`cargo test -p wasmcol-plugin-sdk --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub mod readme {}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;

pub use batch::{
    Batch, ResourceMut, ResourceViewMut, ScopeMut, ScopeViewMut, SpanMut, SpanViewMut,
};
pub use edit::{Edit, Output, StatusCode, Target};
pub use logs::{LogBatch, LogRecordMut, LogRecordViewMut};
pub use metrics::{
    DataPoint, DataPointMut, DataPointViewMut, MetricBatch, MetricInfo, MetricMut, MetricType,
};
pub use value::{Value, as_str};

/// The OTLP message types plugins see.
pub mod proto {
    pub use opentelemetry_proto::tonic::common::v1 as common;
    pub use opentelemetry_proto::tonic::logs::v1 as logs;
    pub use opentelemetry_proto::tonic::metrics::v1 as metrics;
    pub use opentelemetry_proto::tonic::resource::v1 as resource;
    pub use opentelemetry_proto::tonic::trace::v1 as trace;
}

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::host::{self, Level};
    pub use crate::view::{
        AttributeView, AttributesView, DataPointView, LogRecordView, SpanView, ValueView,
    };
    pub use crate::{
        Batch, DataPoint, DataPointMut, DataPointViewMut, LogBatch, LogRecordMut, LogRecordViewMut,
        MetricBatch, MetricMut, MetricType, Plugin, PluginConfig, ResourceMut, ResourceViewMut,
        ScopeMut, ScopeViewMut, SpanMut, SpanViewMut, StatusCode, Value, as_str, export_plugin,
    };
}

/// A processor plugin.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from the processor's `config:` section. An error rejects the
    /// configuration: the collector does not start, and the message names the processor.
    fn new(config: PluginConfig) -> Result<Self, String>;

    /// Processes one batch. An error is counted and logged by the host, which then passes the
    /// batch on unchanged or drops it, as the processor's `on_error` says.
    fn process(&mut self, batch: &mut Batch) -> Result<(), String>;

    /// Processes one batch of log records, with the same error handling as [`Self::process`].
    /// The default passes logs on unchanged (and never decodes them).
    fn process_logs(&mut self, batch: &mut LogBatch) -> Result<(), String> {
        let _ = batch;
        Ok(())
    }

    /// Processes one batch of metrics, with the same error handling as [`Self::process`].
    /// The default passes metrics on unchanged (and never decodes them).
    fn process_metrics(&mut self, batch: &mut MetricBatch) -> Result<(), String> {
        let _ = batch;
        Ok(())
    }
}

/// The processor's `config:` section.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    value: serde_json::Value,
}

impl PluginConfig {
    /// Wraps a configuration value.
    pub fn new(value: serde_json::Value) -> Self {
        Self { value }
    }

    /// The raw value (`null` when the section is absent).
    pub fn raw(&self) -> &serde_json::Value {
        &self.value
    }

    /// Deserializes the section; errors name the path inside it
    /// (`config.rules[1].action: unknown variant ...`).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let value = match &self.value {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            v => v.clone(),
        };
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("config: {}", e.inner())
            } else {
                format!("config.{path}: {}", e.inner())
            }
        })
    }
}

/// Registers `$policy` (a type implementing [`policy::Policy`]) as a tail-sampling policy
/// plugin's entry point. Expands to nothing in native builds.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Export;
            impl $crate::guest::policy::exports::wasmcol::plugin::sampler::Guest for Export {
                fn init(config: String) -> Result<$crate::guest::policy::PolicyInfo, String> {
                    $crate::runtime::init_policy::<$policy>(config)
                        .map(|needs_spans| $crate::guest::policy::PolicyInfo { needs_spans })
                }
                fn decide(
                    batch: Vec<u8>,
                    traces: Vec<
                        $crate::guest::policy::exports::wasmcol::plugin::sampler::TraceSummary,
                    >,
                ) -> Result<
                    Vec<$crate::guest::policy::exports::wasmcol::plugin::sampler::Decision>,
                    String,
                > {
                    $crate::guest::policy::decide::<$policy>(batch, traces)
                }
            }
            $crate::guest::policy::export!(Export);
        };
    };
}

/// Registers `$analyser` (a type implementing [`analyser::Analyser`]) as a trace analyser
/// plugin's entry point. Expands to nothing in native builds.
#[macro_export]
macro_rules! export_analyser {
    ($analyser:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Export;
            impl $crate::guest::analyser::exports::wasmcol::plugin::analysis::Guest for Export {
                fn init(config: String) -> Result<(), String> {
                    $crate::runtime::init_analyser::<$analyser>(config)
                }
                fn analyse(
                    batch: Vec<u8>,
                    traces: Vec<
                        $crate::guest::analyser::exports::wasmcol::plugin::analysis::TraceSummary,
                    >,
                ) -> Result<
                    Vec<$crate::guest::analyser::exports::wasmcol::plugin::analysis::Finding>,
                    String,
                > {
                    $crate::guest::analyser::analyse::<$analyser>(batch, traces)
                }
            }
            $crate::guest::analyser::export!(Export);
        };
    };
}

/// Registers `$plugin` (a type implementing [`Plugin`]) as the plugin's entry point. Expands
/// to nothing in native builds, so the crate's unit tests compile as plain Rust.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Export;
            impl $crate::guest::exports::wasmcol::plugin::processor::Guest for Export {
                fn init(config: String) -> Result<(), String> {
                    $crate::runtime::init::<$plugin>(config)
                }
                fn process(
                    batch: Vec<u8>,
                ) -> Result<$crate::guest::wasmcol::plugin::types::Output, String> {
                    $crate::runtime::process::<$plugin>(batch).map($crate::guest::to_wit)
                }
                fn process_logs(
                    batch: Vec<u8>,
                ) -> Result<$crate::guest::wasmcol::plugin::types::Output, String> {
                    $crate::runtime::process_logs::<$plugin>(batch).map($crate::guest::to_wit)
                }
                fn process_metrics(
                    batch: Vec<u8>,
                ) -> Result<$crate::guest::wasmcol::plugin::types::Output, String> {
                    $crate::runtime::process_metrics::<$plugin>(batch).map($crate::guest::to_wit)
                }
            }
            $crate::guest::export!(Export);
        };
    };
}
