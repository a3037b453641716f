use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::Duration;

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
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Request metadata keys (case-insensitive) whose values split batching: each distinct
    /// combination of their values is batched on its own and sent with just those keys as its
    /// metadata. Empty (default): one batch, whose metadata survives only where every merged
    /// request agreed.
    #[serde(default)]
    pub metadata_keys: Vec<String>,
    /// With `metadata_keys`: distinct value combinations this processor will batch over its
    /// lifetime; data bringing one more is refused (retryable). 0 means no limit.
    #[serde(default = "default_metadata_cardinality_limit")]
    pub metadata_cardinality_limit: usize,
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
            metadata_keys: Vec::new(),
            metadata_cardinality_limit: default_metadata_cardinality_limit(),
        }
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
