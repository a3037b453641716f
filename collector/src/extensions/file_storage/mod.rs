//! `file_storage`: a directory where exporters keep their sending queues on disk.
//!
//! ```yaml
//! extensions:
//!   file_storage/queue:
//!     directory: /var/lib/wasmcol/queue
//!     create_directory: true
//!     fsync: false          # true: acknowledge only what is on stable storage
//!     timeout: 1s           # wait for a queue another process holds
//! exporters:
//!   otlp:
//!     endpoint: gateway:4317
//!     sending_queue: { storage: file_storage/queue }
//! service:
//!   extensions: [file_storage/queue]
//! ```
//!
//! The extension only names the place and the policy; each exporter opens its own queue
//! there ([`crate::storage`]) when it starts.

mod config;

pub use config::FileStorageConfig;

use std::sync::Arc;

use async_trait::async_trait;

use crate::component::{BuildContext, ExtensionConfig, Lifecycle};
use crate::storage::Store;
use crate::telemetry::Health;

impl ExtensionConfig for FileStorageConfig {
    fn build(&self, _ctx: &BuildContext, _health: Health) -> anyhow::Result<Arc<dyn Lifecycle>> {
        Ok(Arc::new(FileStorage))
    }

    fn store(&self) -> Option<Store> {
        Some(Store {
            directory: self.directory.clone(),
            create_directory: self.create_directory,
            fsync: self.fsync,
            lock_timeout: self.timeout.get(),
        })
    }
}

/// The running extension: nothing runs; the exporters own their queues.
struct FileStorage;

#[async_trait]
impl Lifecycle for FileStorage {}
