use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::Duration;

/// How each batch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One OTLP/JSON `ExportTraceServiceRequest` per line (the OpenTelemetry file exporter's
    /// default format).
    #[default]
    Json,
    /// Each `ExportTraceServiceRequest` as protobuf, preceded by its length as a 4-byte
    /// big-endian integer.
    Proto,
}

/// Compression of each written record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain records.
    #[default]
    #[serde(alias = "")]
    None,
    /// Each record is one zstd frame; records are then length-prefixed even in JSON format,
    /// as the OpenTelemetry file exporter does.
    Zstd,
}

/// `exporters.file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileExporterConfig {
    /// File to write. Its directory must exist.
    pub path: String,
    /// `json` (default) or `proto`.
    #[serde(default)]
    pub format: Format,
    /// `none` (default) or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// What happens to a non-empty file found at `path` at start. `true`: new data is
    /// appended to it, after cutting off a torn last record that an earlier run killed
    /// mid-write left behind. `false` (default): the file is never truncated; it is renamed
    /// to a backup name (`NAME-TIMESTAMP.EXT`, as rotation names its backups, so rotation
    /// counts and prunes it; without rotation it is kept) and a fresh file is started.
    #[serde(default)]
    pub append: bool,
    /// How often buffered writes are flushed to the file (handed to the OS). A batch is
    /// reported delivered only after its flush, so this is also the longest a batch waits
    /// for its delivery report; a process crash loses only what was not yet flushed (and
    /// was therefore never reported delivered).
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Duration,
    /// Also `fsync` the file at each flush before reporting the batches delivered, so a
    /// delivered batch survives a power loss or an OS crash, not only a process crash. One
    /// `fsync` per `flush_interval` at most (group commit). Not an option of the OpenTelemetry
    /// Collector's file exporter; wasmcol's own. Default `false`.
    #[serde(default)]
    pub fsync: bool,
    /// Rotate the file by size; absent means never rotate.
    #[serde(default)]
    pub rotation: Option<RotationConfig>,
    /// Batches waiting to be written before the exporter refuses (retryable). Each holds its
    /// encoded bytes (about 8 MiB for a full default batch of 1 KB spans), so this bounds the
    /// exporter's memory when the disk falls behind.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
}

/// `exporters.file.rotation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Rotate once the file reaches this many megabytes (MiB).
    #[serde(default = "default_max_megabytes")]
    pub max_megabytes: u64,
    /// Rotated files to keep; older ones are deleted. 0 keeps all.
    #[serde(default = "default_max_backups")]
    pub max_backups: usize,
}

fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_queue_size() -> usize {
    16
}
fn default_max_megabytes() -> u64 {
    100
}
fn default_max_backups() -> usize {
    100
}

impl Validate for FileExporterConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.path.trim().is_empty() {
            p.push(Problem::new("path", "must not be empty"));
        }
        if self.flush_interval.is_zero() {
            p.push(Problem::new("flush_interval", "must be greater than 0"));
        }
        if self.queue_size == 0 {
            p.push(Problem::new("queue_size", "must be at least 1, got 0"));
        }
        if let Some(r) = &self.rotation
            && r.max_megabytes == 0
        {
            p.push(Problem::new(
                "rotation.max_megabytes",
                "must be at least 1, got 0",
            ));
        }
        p
    }
}
