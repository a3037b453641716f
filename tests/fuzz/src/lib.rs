//! The collector's decoders, compiled from their own source files, and what the fuzz targets
//! in `fuzz_targets/` share.
//!
//! The modules below mirror the collector's module paths (`crate::otlp::wire`,
//! `crate::processors::wasm::wire_edit`), so each file compiles here exactly as it does in
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

/// `wasmcol::processors`, the plugin processor's byte-level editor only.
#[path = "../../../collector/src/processors"]
pub mod processors {
    /// `wasmcol::processors::wasm`.
    pub mod wasm {
        pub mod wire_edit;
    }
}

pub mod measure;
