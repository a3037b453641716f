//! The sending queue on disk (`sending_queue.storage`): how a batch becomes a record of the
//! [`DiskQueue`] and back, and the handle a queued batch keeps on its record.
//!
//! A record is the batch as the pipeline carried it: its request metadata (so
//! `topic_from_metadata_key` and the like still work after a restart) and its spans as one
//! OTLP `ExportTraceServiceRequest` encoding. The sender's payload is prepared from it when the
//! record is sent, not when it is stored, so a restart needs nothing but the file.

use std::sync::Arc;

use bytes::Bytes;

use super::config::Sizer;
use crate::pipeline::{Metadata, TraceBatch};
use crate::storage::{self, DiskQueue, RecordId};

/// The record layout's version (its first byte).
const VERSION: u8 = 1;

/// The storage's sizer for a queue's.
pub(super) fn sizer(s: Sizer) -> storage::Sizer {
    match s {
        Sizer::Requests => storage::Sizer::Requests,
        Sizer::Items => storage::Sizer::Items,
        Sizer::Bytes => storage::Sizer::Bytes,
    }
}

/// The folder of one exporter's queue below the storage directory, as the OpenTelemetry
/// Collector names its storage clients (kind, type, name, signal).
pub(super) fn owner(exporter: &crate::component::ComponentId) -> String {
    format!(
        "exporter_{}_{}_traces",
        exporter.type_name,
        exporter.name.as_deref().unwrap_or("")
    )
}

/// Appends `batch` as a record: `[version u8][pairs u32]([len u32][key][len u32][value])*`
/// then the spans' protobuf.
pub(super) fn encode(batch: &TraceBatch) -> Vec<u8> {
    let pairs: Vec<(&str, &str)> = batch.metadata.iter().collect();
    let meta_len: usize = pairs.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(5 + meta_len + batch.protobuf_len());
    out.push(VERSION);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        for s in [k, v] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    batch.encode_protobuf(&mut out);
    out
}

/// The batch a record holds. The protobuf is checked again (as strictly as on receipt), so a
/// record damaged in a way its checksum missed is refused here rather than sent.
pub(super) fn decode(record: Vec<u8>) -> Result<TraceBatch, String> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<std::ops::Range<usize>, String> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= record.len())
            .ok_or_else(|| format!("record cut short at byte {at}"))?;
        let r = *at..end;
        *at = end;
        Ok(r)
    };
    let version = record.first().copied();
    if version != Some(VERSION) {
        return Err(format!("unknown record version {version:?}"));
    }
    at += 1;
    let u32_at = |at: &mut usize| -> Result<usize, String> {
        let r = take(at, 4)?;
        Ok(u32::from_le_bytes(record[r].try_into().expect("4 bytes")) as usize)
    };
    let n = u32_at(&mut at)?;
    let mut pairs = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let k = u32_at(&mut at)?;
        let k = take(&mut at, k)?;
        let v = u32_at(&mut at)?;
        let v = take(&mut at, v)?;
        let text = |r: std::ops::Range<usize>| {
            std::str::from_utf8(&record[r])
                .map(str::to_string)
                .map_err(|e| format!("metadata is not UTF-8: {e}"))
        };
        pairs.push((text(k)?, text(v)?));
    }
    let mut bytes = Bytes::from(record);
    let spans = bytes.split_off(at);
    let batch = TraceBatch::from_protobuf(spans).map_err(|e| format!("spans: {e}"))?;
    Ok(if pairs.is_empty() {
        batch
    } else {
        batch.with_metadata(Metadata::new(pairs))
    })
}

/// A batch's record in the queue, while a consumer sends it. Acknowledging it (delivered, or
/// given up for good) removes it; dropping it unacknowledged hands it out again; a record
/// neither acknowledged nor handed back (the process stopped) is sent after the next start.
pub(super) struct StoredRecord {
    queue: Arc<DiskQueue>,
    id: Option<RecordId>,
}

impl StoredRecord {
    pub fn new(queue: Arc<DiskQueue>, id: RecordId) -> Self {
        Self {
            queue,
            id: Some(id),
        }
    }

    /// Done with the record: delivered or given up for good.
    pub fn ack(mut self) {
        if let Some(id) = self.id.take() {
            self.queue.ack(id);
        }
    }

    /// Leaves the record where it is, for the next start (the exporter is stopping).
    pub fn keep(mut self) {
        self.id.take();
    }
}

impl Drop for StoredRecord {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.queue.nack(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    #[test]
    fn a_record_holds_the_spans_and_metadata() {
        let batch = TraceBatch::new(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "a".into(),
                        ..Default::default()
                    };
                    3
                ],
                ..Default::default()
            }],
            ..Default::default()
        }])
        .with_metadata(Metadata::new([
            ("x-tenant".to_string(), "acme".to_string()),
            ("k".to_string(), "ü".to_string()),
        ]));
        let back = decode(encode(&batch)).unwrap();
        assert_eq!(back.item_count(), 3);
        assert_eq!(back.metadata, batch.metadata);
        assert_eq!(back.to_protobuf(), batch.to_protobuf());
    }

    #[test]
    fn damaged_records_are_refused() {
        let batch = TraceBatch::new(vec![]);
        let mut rec = encode(&batch);
        rec[0] = 9;
        assert!(decode(rec).unwrap_err().contains("version"));
        let mut rec = encode(
            &TraceBatch::new(vec![])
                .with_metadata(Metadata::new([("a".to_string(), "b".to_string())])),
        );
        rec.truncate(7);
        assert!(decode(rec).unwrap_err().contains("cut short"));
        let mut rec = encode(&batch);
        rec.extend_from_slice(&[0x0a, 0x05, 0x01]);
        assert!(decode(rec).unwrap_err().starts_with("spans"));
    }
}
