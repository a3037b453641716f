//! A `file_storage` extension's directory, from which exporters open their queues.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::{DiskQueue, QueueOptions, Recovered};

/// Where and how a `file_storage` extension keeps queues.
#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    /// The extension's `directory`.
    pub directory: PathBuf,
    /// Create `directory` when missing.
    pub create_directory: bool,
    /// Acknowledge only what an fsync made durable.
    pub fsync: bool,
    /// How long to wait for a queue another process holds.
    pub lock_timeout: Duration,
}

impl Store {
    /// Opens (or creates) the queue of `owner`, a folder name such as
    /// `exporter_otlp_gw_traces`, recovering what a previous run left in it.
    pub fn open_queue(
        &self,
        owner: &str,
        mut options: QueueOptions,
    ) -> anyhow::Result<(DiskQueue, Recovered)> {
        if !self.create_directory && !self.directory.is_dir() {
            anyhow::bail!(
                "file_storage directory {} does not exist (create it, or set create_directory: true)",
                self.directory.display()
            );
        }
        options.fsync = self.fsync;
        let dir = self.directory.join(owner);
        DiskQueue::open(&dir, options, self.lock_timeout)
            .with_context(|| format!("cannot open the queue in {}", dir.display()))
    }
}
