//! `otlp`: sends spans over OTLP/gRPC (`TraceService/Export`), with the OpenTelemetry
//! Collector's option names.
//!
//! ```yaml
//! exporters:
//!   otlp/gateway:
//!     endpoint: gateway:4317        # TLS; http://gateway:4317 or tls.insecure for plaintext
//!     tls: { ca_file: /certs/ca.pem, cert_file: /certs/client.pem, key_file: /certs/client-key.pem }
//!     compression: gzip             # gzip (default), zstd, none
//!     headers: { authorization: "Bearer ${env:TOKEN}" }
//!     timeout: 5s
//!     sending_queue: { num_consumers: 10, queue_size: 1000 }
//!     retry_on_failure: { initial_interval: 5s, max_elapsed_time: 300s }
//! ```
//!
//! Retryable statuses (as the OTLP specification lists them): UNAVAILABLE, CANCELLED,
//! DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, DATA_LOSS, and RESOURCE_EXHAUSTED when the server
//! attaches a `google.rpc.RetryInfo`, whose delay is honoured. Connection failures are
//! retryable; every other status is permanent. Spans a server rejects through
//! `partial_success` are counted as failed and not retried.

mod config;
mod grpc;
#[cfg(test)]
mod tests;

pub use config::OtlpExporterConfig;
pub use grpc::{GrpcSender, SharedRequest, classify};
