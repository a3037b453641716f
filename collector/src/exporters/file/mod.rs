//! `file`: writes spans to a local file as OTLP JSON lines or length-prefixed protobuf.
//!
//! Batches are encoded on the caller's task (so encoding spreads over the runtime's threads)
//! and handed to one writer thread through a bounded queue; a full queue is a retryable
//! refusal. The writer flushes on `flush_interval` and rotates by size.

mod config;
mod writer;

pub use config::{Compression, FileExporterConfig, Format, RotationConfig};

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use prost::Message;

use crate::component::{BuildContext, Exporter, ExporterConfig, Lifecycle};
use crate::otlp::ExportTraceServiceRequest;
use crate::pipeline::{ConsumeError, TraceBatch, TracesConsumer};
use crate::telemetry::ExporterMetrics;
use writer::{Record, Rotation, Writer};

impl ExporterConfig for FileExporterConfig {
    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter>> {
        let metrics = ctx.metrics.exporter(&ctx.id.to_string());
        metrics.queue_capacity.set(self.queue_size as i64);
        let rotation = self.rotation.as_ref().map(|r| Rotation {
            max_bytes: r.max_megabytes * 1024 * 1024,
            max_backups: r.max_backups,
        });
        let writer = Writer::open(
            Path::new(&self.path),
            self.append,
            rotation,
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!("exporters.{}: cannot open {:?}: {e}", ctx.id, self.path))?;
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

impl FileExporter {
    /// Encodes one batch as a framed record.
    fn encode(&self, batch: &TraceBatch) -> Vec<u8> {
        let payload = match self.format {
            Format::Json => {
                let mut out = Vec::with_capacity(batch.span_count() * 256);
                crate::otlp::json::encode_traces(batch.resource_spans(), &mut out);
                out
            }
            Format::Proto => {
                let mut out = Vec::new();
                batch.encode_protobuf(&mut out);
                out
            }
        };
        match (self.format, self.compression) {
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
impl TracesConsumer for FileExporter {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let spans = batch.span_count() as u64;
        let tx = self.tx.lock().expect("file exporter lock").clone();
        let Some(tx) = tx else {
            self.metrics.enqueue_failed.inc_by(spans);
            return Err(ConsumeError::retryable(format!(
                "exporters.{}: shutting down",
                self.id
            )));
        };
        let record = Record {
            bytes: self.encode(&batch),
            spans,
            delivery: batch.delivery,
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
/// Used by tests and tools.
pub fn read_length_prefixed(
    bytes: &[u8],
    format: Format,
    compression: Compression,
) -> Result<Vec<ExportTraceServiceRequest>, String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err("truncated length prefix".into());
        }
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let body = rest.get(4..4 + len).ok_or("truncated record")?;
        rest = &rest[4 + len..];
        let payload = match compression {
            Compression::None => body.to_vec(),
            Compression::Zstd => zstd::decode_all(body).map_err(|e| e.to_string())?,
        };
        out.push(match format {
            Format::Proto => {
                ExportTraceServiceRequest::decode(payload.as_slice()).map_err(|e| e.to_string())?
            }
            Format::Json => crate::otlp::json::decode_traces(&payload)?,
        });
    }
    Ok(out)
}
