//! What an exporter plugs into the sending queue: one attempt at sending one batch.

use std::time::Duration;

use async_trait::async_trait;

use crate::pipeline::{Batch, Signal};

/// The destination took the request. It may still have rejected some items (OTLP partial
/// success); those are not retried, because resending the same items would fail the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Items (spans, log records, data points) the destination rejected.
    pub rejected: u64,
    /// The destination's explanation (or warning, when nothing was rejected).
    pub message: String,
}

impl Accepted {
    /// Everything was accepted.
    pub fn all() -> Self {
        Self::default()
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt (the destination is down, overloaded or asked us to wait).
    #[error("{reason}")]
    Retryable {
        /// What failed, with the destination's message.
        reason: String,
        /// How long the destination asked us to wait (Retry-After, gRPC RetryInfo).
        retry_after: Option<Duration>,
    },
    /// The same request will never succeed (malformed, unauthorised, rejected).
    #[error("{reason}")]
    Permanent {
        /// What failed, with the destination's message.
        reason: String,
    },
}

impl SendError {
    /// A retryable failure without a requested delay.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent {
            reason: reason.into(),
        }
    }
}

/// One protocol's way of sending a batch, driven by [`super::SendingQueue`].
#[async_trait]
pub trait Sender: Send + Sync + 'static {
    /// The signal it sends.
    type Signal: Signal;

    /// A batch ready to send, built once and reused by every attempt, so retries neither
    /// re-encode nor clone the spans.
    type Payload: Send + Sync + 'static;

    /// Turns a batch (its spans possibly shared with other exporters, its request metadata)
    /// into a payload. Runs on the caller's task (so encoding spreads over the runtime's
    /// threads) before the batch is queued.
    fn prepare(&self, batch: &Batch<Self::Signal>) -> Self::Payload;

    /// Bytes the payload keeps in memory, when they differ much from the batch's protobuf
    /// size (a compressed or re-encoded body). An in-memory queue with `sizer: bytes` reserves
    /// the protobuf size before encoding (a full queue costs no encoding), then counts this
    /// instead, so its `queue_size` bounds what it really holds. `None`: the protobuf size.
    fn payload_bytes(&self, _payload: &Self::Payload) -> Option<u64> {
        None
    }

    /// One attempt. The queue bounds it with the exporter's `timeout`.
    async fn send(&self, payload: &Self::Payload) -> Result<Accepted, SendError>;
}
