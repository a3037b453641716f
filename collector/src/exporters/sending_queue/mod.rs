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
//!       queue_size: 1000         # counted as `sizer` says
//!       sizer: requests          # requests (batches), items (spans) or bytes
//!       storage: file_storage    # optional: keep the queue on disk (a file_storage extension)
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
//!
//! With `storage`, the queue lives in a [`crate::storage::DiskQueue`] in the extension's
//! directory: a batch is acknowledged upstream once it is written there, survives restarts and
//! `kill -9`, and what was not sent when the collector stops is sent after the next start,
//! first. A record that was being sent when the process died is sent again (at least once).

mod backoff;
mod config;
mod persistent;
mod queue;
mod sender;
#[cfg(test)]
mod tests;

pub use config::{QueueConfig, RetryConfig, Sizer};
pub use queue::SendingQueue;
pub use sender::{Accepted, SendError, Sender};
