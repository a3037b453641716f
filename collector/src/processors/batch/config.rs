use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::{ByteSize, Duration};

/// `processors.batch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Spans that make a batch: reaching it sends the batch at once.
    #[serde(default = "default_send_batch_size")]
    pub send_batch_size: usize,
    /// Upper bound on spans per batch sent on; larger batches are split. 0 means no bound.
    #[serde(default)]
    pub send_batch_max_size: usize,
    /// A partial batch is sent after this long. `0s` sends on size alone.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Batches waiting to be merged before the processor refuses new data (retryable).
    /// wasmcol's own option (the OpenTelemetry Collector's processor has no queue).
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Bytes (the batches' protobuf size) waiting to be merged before the processor refuses
    /// new data (retryable), whichever of this and `queue_size` is reached first; an empty
    /// queue takes one larger batch. wasmcol's own option.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: ByteSize,
    /// Request metadata keys (case-insensitive) whose values split batching: each distinct
    /// combination of their values is batched on its own and sent with just those keys as its
    /// metadata. Empty (default): one batch, whose metadata survives only where every merged
    /// request agreed.
    #[serde(default)]
    pub metadata_keys: Vec<String>,
    /// With `metadata_keys`: distinct value combinations batched at once (each held until it
    /// expires, see `metadata_expiration`); data bringing one more is refused (retryable).
    /// 0 means no limit.
    #[serde(default = "default_metadata_cardinality_limit")]
    pub metadata_cardinality_limit: usize,
    /// With `metadata_keys`: a combination that brings no data for this long is sent on and
    /// forgotten, so it no longer counts against `metadata_cardinality_limit`. Default:
    /// 10 × `timeout`, at least 1s; `0s` keeps combinations for the processor's lifetime.
    /// wasmcol's own option (the OpenTelemetry Collector never forgets a combination).
    #[serde(default)]
    pub metadata_expiration: Option<Duration>,
}

fn default_send_batch_size() -> usize {
    8192
}
fn default_timeout() -> Duration {
    Duration::from_millis(200)
}
fn default_queue_size() -> usize {
    128
}
fn default_queue_bytes() -> ByteSize {
    ByteSize::mib(32)
}
fn default_metadata_cardinality_limit() -> usize {
    1000
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            send_batch_size: default_send_batch_size(),
            send_batch_max_size: 0,
            timeout: default_timeout(),
            queue_size: default_queue_size(),
            queue_bytes: default_queue_bytes(),
            metadata_keys: Vec::new(),
            metadata_cardinality_limit: default_metadata_cardinality_limit(),
            metadata_expiration: None,
        }
    }
}

impl BatchConfig {
    /// How long an idle `metadata_keys` combination is kept; `None` for ever (no
    /// `metadata_keys`, or `metadata_expiration: 0s`).
    pub fn expiration(&self) -> Option<std::time::Duration> {
        if self.metadata_keys.is_empty() {
            return None;
        }
        let e = match self.metadata_expiration {
            Some(e) => e.get(),
            None => (self.timeout.get() * 10).max(std::time::Duration::from_secs(1)),
        };
        (!e.is_zero()).then_some(e)
    }
}

impl Validate for BatchConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.send_batch_size == 0 {
            p.push(Problem::new("send_batch_size", "must be at least 1, got 0"));
        }
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            p.push(Problem::new(
                "send_batch_max_size",
                format!(
                    "must be 0 (no limit) or at least send_batch_size ({}), got {}",
                    self.send_batch_size, self.send_batch_max_size
                ),
            ));
        }
        if self.queue_size == 0 {
            p.push(Problem::new("queue_size", "must be at least 1, got 0"));
        }
        if self.queue_bytes.bytes() == 0 {
            p.push(Problem::new("queue_bytes", "must be more than 0, got 0B"));
        }
        if let Some(e) = self.metadata_expiration
            && !e.is_zero()
            && e < self.timeout
        {
            p.push(Problem::new(
                "metadata_expiration",
                format!(
                    "must be 0s (never) or at least timeout ({}), got {}",
                    self.timeout, e
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, key) in self.metadata_keys.iter().enumerate() {
            if key.is_empty() {
                p.push(Problem::new(
                    format!("metadata_keys[{i}]"),
                    "must not be empty",
                ));
            } else if !seen.insert(key.to_ascii_lowercase()) {
                p.push(Problem::new(
                    format!("metadata_keys[{i}]"),
                    format!("{key:?} is listed twice (keys are case-insensitive)"),
                ));
            }
        }
        p
    }
}
