//! `file`: writes spans to a local file as OTLP JSON lines or length-prefixed protobuf.
//!
//! Batches are encoded on the caller's task (so encoding spreads over the runtime's threads)
//! and handed to one writer thread through a bounded queue; a full queue is a retryable
//! refusal. The writer flushes on `flush_interval` and rotates by size.
//!
//! # Restarts
//!
//! Nothing found at `path` at start is destroyed. With `append: true` the writer continues
//! the file; with `append: false` (the default, as in the OpenTelemetry Collector) a non-empty
//! file is renamed to a backup (`NAME-TIMESTAMP.EXT`, rotation's naming, so `max_backups`
//! counts it; without rotation it is never deleted) and a fresh file is started. A file that
//! does not read in the configured format and compression is moved aside even with
//! `append: true`. Rotation deletes only names of that exact backup shape for this `path`.
//!
//! # Durability
//!
//! A batch is reported delivered (the Kafka receiver commits its offset on that report) once
//! the write buffer holding it is flushed to the OS: every `flush_interval`, before a rotation
//! and at shutdown. With `fsync: true` (wasmcol's own option) the flush also `fsync`s the file
//! before the report, once per `flush_interval` at most.
//! - A process crash (kill -9, OOM) loses what this exporter had not flushed: batches in the
//!   write queue and the write buffer, at most `queue_size` batches plus one `flush_interval`
//!   of writes, none of it reported delivered. Everything flushed is in the OS's page cache and
//!   survives. (What earlier stages such as `batch` still hold is outside this exporter.)
//! - An OS crash or power loss can also lose flushed data not yet written back by the OS,
//!   unless `fsync: true`.
//! - A crash in the middle of a write can leave a torn last record (part of a JSON line, or a
//!   length prefix whose bytes never came; with `compression: zstd` a torn frame). The next
//!   start with `append: true` cuts it off before writing (logged with the byte count; with
//!   `append: false` the backup keeps its bytes as they are), and
//!   [`read_length_prefixed`] and [`complete_len`] stop before it. Bytes at the end that do
//!   not look like the start of a record (garbage, a complete record that does not decode)
//!   are not cut: the whole file is moved aside as a backup instead.
//! - A write or flush that fails (a full disk) fails every batch not yet flushed (retryable)
//!   and cuts the file back to its last flush, so no partial record is left mid-file.

mod config;
mod tail;
mod writer;

pub use config::{Compression, FileExporterConfig, Format, RotationConfig};

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::component::{BuildContext, Exporter, ExporterConfig, Lifecycle};
use crate::compute;
use crate::otlp::ExportTraceServiceRequest;
use crate::pipeline::{ConsumeError, Consumer, TraceBatch, Traces};
use crate::telemetry::ExporterMetrics;
use writer::{Options, Record, Rotation, Writer};

impl ExporterConfig for FileExporterConfig {
    fn build_traces(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<Traces>>> {
        let metrics = ctx.metrics.exporter(&ctx.id.to_string());
        metrics.queue_capacity.set(self.queue_size as i64);
        let rotation = self.rotation.as_ref().map(|r| Rotation {
            max_bytes: r.max_megabytes * 1024 * 1024,
            max_backups: r.max_backups,
        });
        let options = Options {
            append: self.append,
            format: self.format,
            compression: self.compression,
            rotation,
            fsync: self.fsync,
        };
        let writer =
            Writer::open(Path::new(&self.path), options, metrics.clone()).map_err(|e| {
                anyhow::anyhow!("exporters.{}: cannot open {:?}: {e}", ctx.id, self.path)
            })?;
        let (tx, rx) = flume::bounded(self.queue_size);
        let flush = self.flush_interval.get();
        let thread = std::thread::Builder::new()
            .name(format!("file-{}", ctx.id))
            .spawn(move || writer.run(rx, flush))?;
        Ok(Arc::new(FileExporter {
            id: ctx.id.to_string(),
            format: self.format,
            compression: self.compression,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            metrics,
        }))
    }
}

struct FileExporter {
    id: String,
    format: Format,
    compression: Compression,
    tx: Mutex<Option<flume::Sender<Record>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: ExporterMetrics,
}

/// Encodes one batch as a framed record.
fn encode(format: Format, compression: Compression, batch: &TraceBatch) -> Vec<u8> {
    {
        let payload = match format {
            Format::Json => {
                let mut out = Vec::with_capacity(batch.item_count() * 256);
                crate::otlp::json::encode_traces(batch.resources(), &mut out);
                out
            }
            Format::Proto => {
                let mut out = Vec::new();
                batch.encode_protobuf(&mut out);
                out
            }
        };
        match (format, compression) {
            (Format::Json, Compression::None) => {
                let mut line = payload;
                line.push(b'\n');
                line
            }
            (_, Compression::None) => length_prefixed(&payload),
            (_, Compression::Zstd) => {
                let z = zstd::bulk::compress(&payload, 3).expect("zstd into memory");
                length_prefixed(&z)
            }
        }
    }
}

fn length_prefixed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[async_trait]
impl Consumer<Traces> for FileExporter {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.item_count() as u64;
        let tx = self.tx.lock().expect("file exporter lock").clone();
        let Some(tx) = tx else {
            self.metrics.enqueue_failed.inc_by(spans);
            return Err(ConsumeError::retryable(format!(
                "exporters.{}: shutting down",
                self.id
            )));
        };
        // Decoding and encoding a large batch takes a while: off the reactor.
        let (format, compression) = (self.format, self.compression);
        let effort = compute::batch_effort(&batch);
        let (bytes, delivery) = compute::run(effort, move || {
            (encode(format, compression, &batch), batch.delivery)
        })
        .await
        .map_err(|p| {
            self.metrics.enqueue_failed.inc_by(spans);
            ConsumeError::retryable(format!("exporters.{}: {p}", self.id))
        })?;
        let record = Record {
            bytes,
            spans,
            delivery,
        };
        match tx.try_send(record) {
            Ok(()) => {
                self.metrics.queue_size.set(tx.len() as i64);
                Ok(())
            }
            Err(_) => {
                self.metrics.enqueue_failed.inc_by(spans);
                Err(ConsumeError::retryable(format!(
                    "exporters.{}: write queue is full",
                    self.id
                )))
            }
        }
    }
}

#[async_trait]
impl Lifecycle for FileExporter {
    async fn shutdown(&self) {
        // Dropping the sender lets the writer drain what is queued, flush and exit.
        self.tx.lock().expect("file exporter lock").take();
        let thread = self.thread.lock().expect("file exporter lock").take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Reads back a file written in `proto` format (or any compressed one): the decoded requests.
/// A torn last record (see [`complete_len`]) is skipped; any other unreadable record is an
/// error. Used by tests and tools.
pub fn read_length_prefixed(
    bytes: &[u8],
    format: Format,
    compression: Compression,
) -> Result<Vec<ExportTraceServiceRequest>, String> {
    let complete = complete_len(bytes, format, compression);
    let mut out = Vec::new();
    let mut rest = &bytes[..complete];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err("truncated length prefix".into());
        }
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let body = rest.get(4..4 + len).ok_or("truncated record")?;
        rest = &rest[4 + len..];
        out.push(tail::decode_record(body, format, compression)?);
    }
    Ok(out)
}

/// Length of the readable part of a file this exporter wrote as `format` and `compression`:
/// everything but a torn last record (an unterminated JSON line, a length prefix with fewer
/// bytes after it than it announces, or a last record that does not decode). Equal to
/// `bytes.len()` for a file that reads cleanly to its end.
pub fn complete_len(bytes: &[u8], format: Format, compression: Compression) -> usize {
    tail::scan(&mut &bytes[..], format, compression)
        .expect("reading a slice cannot fail")
        .complete as usize
}
