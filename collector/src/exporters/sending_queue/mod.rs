//! The sending queue and retry policy shared by the network exporters (`otlp`, `otlphttp`),
//! configured like the OpenTelemetry Collector's exporterhelper:
//!
//! ```yaml
//! exporters:
//!   otlp/gw:
//!     endpoint: gateway:4317
//!     timeout: 5s                # per attempt
//!     sending_queue:
//!       enabled: true
//!       num_consumers: 10
//!       queue_size: 1000         # batches
//!     retry_on_failure:
//!       enabled: true
//!       initial_interval: 5s
//!       max_interval: 30s
//!       max_elapsed_time: 300s   # 0 = retry forever
//!       multiplier: 1.5
//!       randomization_factor: 0.5
//! ```
//!
//! An exporter implements [`Sender`] (prepare a payload once, make one attempt) and wraps it
//! in a [`SendingQueue`], which is the running exporter.

mod backoff;
mod config;
mod queue;
mod sender;
#[cfg(test)]
mod tests;

pub use config::{QueueConfig, RetryConfig, nested};
pub use queue::SendingQueue;
pub use sender::{Accepted, SendError, Sender};
