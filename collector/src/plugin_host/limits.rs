//! The limits every plugin instance runs under, and what happens to data when a call fails.

use serde::Deserialize;

use crate::config::{ByteSize, Duration};

/// What happens to a batch when the plugin fails on it (trap, timeout, error, bad output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Pass the batch on unchanged.
    #[default]
    Pass,
    /// Drop the batch (counted as dropped spans).
    Drop,
    /// Refuse the batch with a retryable error (gRPC UNAVAILABLE, HTTP 503, a Kafka offset
    /// left uncommitted): nothing unprocessed leaves the processor and nothing is lost while
    /// the sender retries. The right choice for a plugin whose job is to remove data.
    Refuse,
}

impl OnError {
    /// The option's spelling in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Pass => "pass",
            OnError::Drop => "drop",
            OnError::Refuse => "refuse",
        }
    }
}

/// Resource limits of each plugin instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory cap per instance, in MiB. A growth past it traps the call.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Deadline for one call (one batch). Enforced by epoch interruption.
    #[serde(default = "default_call_timeout")]
    pub call_timeout: Duration,
    /// Largest answer a plugin may return for one batch (edits or a replacement batch).
    #[serde(default = "default_max_output")]
    pub max_output_bytes: ByteSize,
    /// Most edits a plugin may answer with for one batch. A longer list is refused before
    /// any edit is applied (counted as `invalid_output`; the batch is retried in halves, then
    /// handled as `on_error` says).
    #[serde(default = "default_max_edits")]
    pub max_edits: usize,
    /// Linear memory above which an instance is replaced after a call (memory never shrinks
    /// inside an instance). Default: half of `memory_mib`.
    #[serde(default)]
    pub recycle_memory_mib: Option<u64>,
}

fn default_memory_mib() -> u64 {
    128
}
fn default_call_timeout() -> Duration {
    Duration(std::time::Duration::from_millis(500))
}
fn default_max_output() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_edits() -> usize {
    100_000
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: default_memory_mib(),
            call_timeout: default_call_timeout(),
            max_output_bytes: default_max_output(),
            max_edits: default_max_edits(),
            recycle_memory_mib: None,
        }
    }
}

impl Limits {
    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize) << 20
    }

    /// Linear memory past which an instance is recycled, in bytes.
    pub fn recycle_bytes(&self) -> usize {
        (self.recycle_memory_mib.unwrap_or(self.memory_mib / 2) as usize) << 20
    }
}
