//! The pipeline's moving parts: batches, the consumer interface, fan-out and delivery tracking.
//!
//! A pipeline carries one [`Signal`]: receivers (fan-in) → processors in order → exporters
//! (fan-out). Every stage is a [`Consumer`] of that signal; a receiver calls `consume` on the first processor, which calls the
//! next, and so on. Stages that buffer (the batch processor, exporters' sending queues) do so in
//! bounded queues and refuse with [`ConsumeError::Retryable`] when full, so back-pressure
//! reaches the receiver, which answers its client with a retryable status.

mod batch;
mod bound;
mod consumer;
mod delivery;
mod fanout;
mod metadata;
mod signal;

pub use batch::{Batch, TraceBatch, count_spans};
pub use bound::{Bound, Held};
pub use consumer::{ConsumeError, Consumer, SharedConsumer};
pub use delivery::{Delivery, DeliveryTracker, Outcome};
pub use fanout::{FanOut, fan_out};
pub use metadata::Metadata;
pub use signal::{Signal, SignalKind, Signals, Split, Traces};
