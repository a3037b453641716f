//! The collector's decoders, compiled from their own source files, and what the fuzz targets
//! in `fuzz_targets/` share.
//!
//! The modules below mirror the collector's module paths (`crate::otlp::wire`, with its
//! byte-level editor `crate::otlp::wire::edit`), so each file compiles here exactly as it does in
//! `wasmcol`. A decoder that starts using another collector module needs that module listed
//! here too.

/// `wasmcol::otlp`, the parts that read bytes from clients.
#[path = "../../../collector/src/otlp"]
pub mod otlp {
    pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    pub mod compression;
    pub mod json;
    pub mod wire;
}

pub mod measure;
