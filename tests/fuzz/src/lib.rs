//! The collector's decoders, compiled from their own source files, and what the fuzz targets
//! in `fuzz_targets/` share.
//!
//! The modules below mirror the collector's module paths (`crate::otlp::wire`), so each file
//! compiles here exactly as it does in `wasmcol`. The byte-level editor and the field reader
//! live in the plugin SDK (`wasmcol_plugin_sdk::wire`), a dependency here as there. A decoder that starts using another collector module needs that module listed
//! here too.

/// `wasmcol::otlp`, the parts that read bytes from clients.
#[path = "../../../collector/src/otlp"]
pub mod otlp {
    pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    pub mod compression;
    pub mod json;
    pub mod wire;
}

/// The decoded reference the plugin SDK's edit tests hold `wasmcol_plugin_sdk::wire::edit` to,
/// compiled from its source file like the collector's modules above.
#[path = "../../../plugin-sdk/src/wire/edit_oracle.rs"]
pub mod edit_oracle;
pub mod measure;
