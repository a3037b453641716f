//! OTLP encodings shared by receivers, exporters and the load generator.

pub mod compression;
pub mod intake;
pub mod json;
pub mod signal;
pub mod wire;

pub use signal::OtlpSignal;

pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
