//! The pipeline's moving parts: batches, the consumer interface, fan-out and delivery tracking.
//!
//! A pipeline is receivers (fan-in) → processors in order → exporters (fan-out). Every stage is
//! a [`TracesConsumer`]; a receiver calls `consume` on the first processor, which calls the
//! next, and so on. Stages that buffer (the batch processor, exporters' sending queues) do so in
//! bounded queues and refuse with [`ConsumeError::Retryable`] when full, so back-pressure
//! reaches the receiver, which answers its client with a retryable status.

mod batch;
mod bound;
mod consumer;
mod delivery;
mod fanout;
mod metadata;

pub use batch::{TraceBatch, count_spans};
pub use bound::{Bound, Held};
pub use consumer::{ConsumeError, SharedConsumer, TracesConsumer};
pub use delivery::{Delivery, DeliveryTracker, Outcome};
pub use fanout::{FanOut, fan_out};
pub use metadata::Metadata;
