//! `otlphttp`: sends spans over OTLP/HTTP (protobuf or JSON), with the OpenTelemetry
//! Collector's option names.
//!
//! ```yaml
//! exporters:
//!   otlphttp/gateway:
//!     endpoint: http://gateway:4318   # traces go to /v1/traces; plaintext only for now
//!     # traces_endpoint: http://gateway:4318/custom/traces   # full URL, overrides endpoint
//!     encoding: proto                 # proto (default) or json
//!     compression: gzip               # gzip (default), zstd, none
//!     headers: { authorization: "Bearer ${env:TOKEN}" }
//!     timeout: 30s
//!     sending_queue: { num_consumers: 10, queue_size: 1000 }
//!     retry_on_failure: { initial_interval: 5s, max_elapsed_time: 300s }
//! ```
//!
//! Retryable: 429, 502, 503, 504 and connection failures, honouring `Retry-After` (seconds or
//! an HTTP date). Every other non-2xx answer is permanent. Error bodies are read up to 64 KiB
//! and their `google.rpc.Status` message (protobuf or JSON) or text goes into the log line.

mod client;
mod config;
#[cfg(test)]
mod tests;

pub use client::{
    HttpSender, MAX_RESPONSE_BYTES, accepted, error_message, is_retryable, parse_retry_after,
};
pub use config::{Encoding, OtlpHttpExporterConfig};
