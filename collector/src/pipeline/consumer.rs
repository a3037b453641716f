//! The one interface every pipeline stage implements.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Batch, Signal};

/// Why a stage did not accept a batch. Whether the sender may retry is part of the type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    /// Temporarily refused (a full queue, memory pressure, a backend that is down): the sender
    /// should retry later, after `retry_after` when given.
    #[error("{reason} (retryable)")]
    Retryable {
        /// What refused and why.
        reason: String,
        /// How long the sender should wait before retrying.
        retry_after: Option<Duration>,
    },
    /// The data cannot be accepted now or ever (malformed, rejected by the backend).
    #[error("{reason}")]
    Permanent {
        /// What refused and why.
        reason: String,
    },
}

impl ConsumeError {
    /// A retryable refusal.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A permanent refusal.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent {
            reason: reason.into(),
        }
    }

    /// True if the sender may retry.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }
}

/// Accepts batches of one signal. Receivers hand data to one, processors are one and forward to
/// the next, exporters are one at the end of the chain.
///
/// `consume` returns once the stage has taken responsibility for the batch (it was processed
/// and passed on, or queued); it must not wait for slow back ends, so a full queue is reported
/// as [`ConsumeError::Retryable`] instead of blocking.
#[async_trait]
pub trait Consumer<S: Signal>: Send + Sync + 'static {
    /// Takes a batch.
    async fn consume(&self, batch: Batch<S>) -> Result<(), ConsumeError>;
}

/// A consumer shared by the stages that feed it.
pub type SharedConsumer<S> = Arc<dyn Consumer<S>>;
