//! `extensions.file_storage`: options and their checks.

use std::path::PathBuf;

use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::Duration;

/// `extensions.file_storage[/NAME]`, with the OpenTelemetry Collector's option names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {
    /// Where the queues live: each exporter that names this extension in
    /// `sending_queue.storage` keeps its queue in a folder of its own below it
    /// (`exporter_TYPE_NAME_traces`).
    pub directory: PathBuf,
    /// Create `directory` (and its parents) at start-up when it is missing; otherwise a missing
    /// directory is a configuration error.
    pub create_directory: bool,
    /// How long start-up waits for a queue that another process holds (two collectors on one
    /// directory) before failing.
    pub timeout: Duration,
    /// Acknowledge data only once it is on stable storage (fsync), not only handed to the
    /// operating system. Off, stored data survives a crash or `kill -9` of the collector but
    /// not a crash of the machine. On, writes are group-committed: one fsync covers every
    /// batch written while the previous one ran.
    pub fsync: bool,
}

impl Default for FileStorageConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("/var/lib/otelcol/file_storage"),
            create_directory: false,
            timeout: Duration::from_secs(1),
            fsync: false,
        }
    }
}

impl Validate for FileStorageConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let dir = self.directory.display();
        if self.directory.as_os_str().is_empty() {
            p.push(Problem::new("directory", "must not be empty"));
        } else if !self.create_directory {
            match std::fs::metadata(&self.directory) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => p.push(Problem::new(
                    "directory",
                    format!("{dir} is not a directory"),
                )),
                Err(e) => p.push(Problem::new(
                    "directory",
                    format!("{dir}: {e} (create it, or set create_directory: true)"),
                )),
            }
        }
        p
    }
}
