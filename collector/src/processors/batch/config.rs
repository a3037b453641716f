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

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            send_batch_size: default_send_batch_size(),
            send_batch_max_size: 0,
            timeout: default_timeout(),
            queue_size: default_queue_size(),
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
        p
    }
}
