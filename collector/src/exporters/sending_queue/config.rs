use serde::Deserialize;

use crate::component::{ComponentId, Problem, Validate};
use crate::config::{ByteSize, Duration};

/// In-memory queue size when neither `queue_size` nor `sizer` is set: 64 MiB of batches.
pub const DEFAULT_MEMORY_QUEUE_BYTES: u64 = 64 << 20;
/// On-disk queue size (`storage`) when neither `queue_size` nor `sizer` is set: 1 GiB.
pub const DEFAULT_DISK_QUEUE_BYTES: u64 = 1 << 30;
/// `queue_size` when `sizer` is set alone: the OpenTelemetry Collector's default for
/// `requests` and `items`, the in-memory default for `bytes`.
const fn default_queue_size(sizer: Sizer, on_disk: bool) -> u64 {
    match sizer {
        Sizer::Requests | Sizer::Items => 1000,
        Sizer::Bytes if on_disk => DEFAULT_DISK_QUEUE_BYTES,
        Sizer::Bytes => DEFAULT_MEMORY_QUEUE_BYTES,
    }
}

/// `sending_queue`: the bounded queue between the pipeline and the senders, as in the
/// OpenTelemetry Collector's exporterhelper: in memory, or on disk with `storage`.
///
/// By default it is bounded in bytes (64 MiB in memory, 1 GiB on disk), so what an exporter
/// holds does not depend on how large the batches are. A `queue_size` given without `sizer`
/// counts requests, as it does in the OpenTelemetry Collector, so existing configs keep their
/// meaning.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "RawQueueConfig")]
pub struct QueueConfig {
    /// Queue batches and send them from `num_consumers` tasks. When false, the pipeline's
    /// `consume` call sends (and retries) inline, so a slow back end slows the caller down.
    pub enabled: bool,
    /// Tasks sending from the queue concurrently.
    pub num_consumers: usize,
    /// What the queue holds (waiting or being sent) before further data is refused with a
    /// retryable error, counted as `sizer` says.
    pub queue_size: u64,
    /// How `queue_size` counts: `requests` (batches), `items` (spans) or `bytes` (their
    /// protobuf encoding, or what an exporter's encoded payload holds when it says so).
    pub sizer: Sizer,
    /// A `file_storage` extension (`file_storage` or `file_storage/NAME`, listed in
    /// `service.extensions`) that keeps the queue on disk: it survives restarts and crashes,
    /// and data counts as delivered upstream once it is written there.
    pub storage: Option<String>,
}

/// `sending_queue` as written; [`QueueConfig`] resolves the defaults of `queue_size` and
/// `sizer`, which depend on each other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueueConfig {
    /// See [`QueueConfig::enabled`].
    #[serde(default = "default_enabled")]
    enabled: bool,
    /// See [`QueueConfig::num_consumers`].
    #[serde(default = "default_num_consumers")]
    num_consumers: usize,
    /// See [`QueueConfig::queue_size`]: a number, or with `sizer: bytes` also a size like
    /// `64MiB`; absent: from `sizer`, or 64 MiB (1 GiB on disk).
    #[serde(default)]
    queue_size: Option<ByteSize>,
    /// See [`QueueConfig::sizer`]; absent: `requests` when `queue_size` is given, else `bytes`.
    #[serde(default)]
    sizer: Option<Sizer>,
    /// See [`QueueConfig::storage`].
    #[serde(default)]
    storage: Option<String>,
}

fn default_enabled() -> bool {
    true
}
fn default_num_consumers() -> usize {
    10
}

impl From<RawQueueConfig> for QueueConfig {
    fn from(raw: RawQueueConfig) -> Self {
        let on_disk = raw.storage.is_some();
        let (sizer, queue_size) = match (raw.sizer, raw.queue_size.map(ByteSize::bytes)) {
            (Some(sizer), Some(n)) => (sizer, n),
            (Some(sizer), None) => (sizer, default_queue_size(sizer, on_disk)),
            (None, Some(n)) => (Sizer::Requests, n),
            (None, None) => (Sizer::Bytes, default_queue_size(Sizer::Bytes, on_disk)),
        };
        Self {
            enabled: raw.enabled,
            num_consumers: raw.num_consumers,
            queue_size,
            sizer,
            storage: raw.storage,
        }
    }
}

/// How a queue's size is counted (`sizer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    /// Batches, whatever their size.
    Requests,
    /// Spans.
    Items,
    /// Bytes of the batches' protobuf encoding.
    Bytes,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            num_consumers: default_num_consumers(),
            queue_size: DEFAULT_MEMORY_QUEUE_BYTES,
            sizer: Sizer::Bytes,
            storage: None,
        }
    }
}

impl QueueConfig {
    /// The storage extension's id, when the queue is kept on disk.
    pub fn storage_id(&self) -> Option<ComponentId> {
        if !self.enabled {
            return None;
        }
        self.storage
            .as_deref()
            .and_then(|s| ComponentId::parse(s).ok())
    }
}

impl Validate for QueueConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if let Some(s) = &self.storage {
            match ComponentId::parse(s) {
                Ok(id) if id.type_name == "file_storage" => {}
                Ok(_) => p.push(Problem::new(
                    "storage",
                    format!("must name a file_storage extension (file_storage/NAME), got {s:?}"),
                )),
                Err(m) => p.push(Problem::new("storage", m)),
            }
            if !self.enabled {
                p.push(Problem::new(
                    "storage",
                    format!("needs the queue: set enabled: true or remove storage {s:?}"),
                ));
            }
        }
        if !self.enabled {
            return p;
        }
        if self.num_consumers == 0 {
            p.push(Problem::new("num_consumers", "must be at least 1, got 0"));
        }
        if self.queue_size == 0 {
            p.push(Problem::new(
                "queue_size",
                "must be at least 1, got 0 (set enabled: false to send without a queue)",
            ));
        }
        p
    }
}

/// `retry_on_failure`: exponential backoff with jitter for retryable errors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry batches that failed with a retryable error. When false they are dropped at the
    /// first failure.
    pub enabled: bool,
    /// Wait before the first retry.
    pub initial_interval: Duration,
    /// Upper bound of the wait between two attempts (before jitter).
    pub max_interval: Duration,
    /// Give a batch up once this much time has passed since its first attempt; `0` retries
    /// forever.
    pub max_elapsed_time: Duration,
    /// Each wait is the previous one times this factor.
    pub multiplier: f64,
    /// Each wait is randomised within ± this fraction, so senders that failed together do
    /// not retry together.
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl Validate for RetryConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if !self.enabled {
            return p;
        }
        if self.initial_interval.is_zero() {
            p.push(Problem::new(
                "initial_interval",
                "must be greater than 0, got 0s",
            ));
        }
        if self.max_interval < self.initial_interval {
            p.push(Problem::new(
                "max_interval",
                format!(
                    "must be at least initial_interval ({}), got {}",
                    self.initial_interval, self.max_interval
                ),
            ));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            p.push(Problem::new(
                "multiplier",
                format!("must be 1 or more, got {}", self.multiplier),
            ));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            p.push(Problem::new(
                "randomization_factor",
                format!("must be between 0 and 1, got {}", self.randomization_factor),
            ));
        }
        p
    }
}
