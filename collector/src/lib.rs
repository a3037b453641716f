//! # wasmcol
//!
//! An OpenTelemetry Collector distribution whose processing can be extended with sandboxed
//! WebAssembly plugins.
//!
//! The parts, from the outside in:
//! - [`config`] reads the YAML file (the OpenTelemetry Collector's shape) into a [`Config`].
//! - [`service`] builds every component and wires them into pipelines, runs them and shuts
//!   them down; on a reload ([`reload`]: SIGHUP, `--watch-config`) it swaps what changed.
//! - [`pipeline`] holds the one interface every stage implements, [`pipeline::Consumer`],
//!   and the batch that flows through it, [`pipeline::TraceBatch`]: the protobuf bytes a
//!   receiver got, checked by [`otlp::wire`], decoded only by a stage that reads spans.
//! - [`receivers`], [`processors`], [`exporters`], [`extensions`], [`connectors`]: the
//!   components, one folder per type, registered in [`components`]. What several of them
//!   share lives outside their folders: [`trace_buffer`] (spans held per trace until due, for
//!   `tail_sampling` and `trace_analysis`), [`sampling`] (the sampling threshold in
//!   `tracestate`, written by the samplers and read back as adjusted counts).
//! - [`kafka`]: what the Kafka receiver and exporter share (client settings, payload
//!   encodings), so neither component folder imports from the other.
//! - [`net`]: endpoints and listeners, and what the clients share: the OTLP exporters'
//!   `compression` option, error messages naming an error's sources.
//! - [`storage`]: the on-disk queue behind `sending_queue.storage` (the `file_storage`
//!   extension).
//! - [`telemetry`]: the collector's own metrics, health and logs.
//! - [`plugin_host`]: loads and runs sandboxed WebAssembly plugins (the `wasm` processor's and
//!   `tail_sampling`'s policies).
//! - [`panics`]: a panic in a worker is caught, reported, and the worker restarted.

pub mod auth;
pub mod component;
pub mod components;
pub mod compute;
pub mod config;
pub mod connectors;
pub mod exporters;
pub mod extensions;
pub mod kafka;
pub mod keyed_hash;
pub mod net;
pub mod otlp;
pub mod panics;
pub mod pipeline;
pub mod plugin_host;
pub mod processors;
pub mod receivers;
pub mod reload;
pub mod sampling;
pub mod scaffold;
pub mod serve;
pub mod service;
/// The on-disk queue engine (a log-structured, checksummed FIFO) behind persistent sending queues.
pub mod storage;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testing;
pub mod trace_buffer;

pub use config::Config;
