//! One insert per batch, plus creating the schema before the first one.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::client::{ChError, Client};
use super::config::Compress;
use super::schema::Schema;
use super::{rows, rows_wire};
use crate::exporters::sending_queue::{Accepted, SendError, Sender};
use crate::pipeline::TraceBatch;

/// A batch ready to insert. Built once: every retry sends the same bytes with the same
/// deduplication token, which is what lets ClickHouse recognise a retry of an insert it has
/// already written.
pub struct Insert {
    body: Bytes,
    token: String,
    rows: usize,
}

impl Insert {
    /// Rows in the insert.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Inserts into the spans table over the HTTP interface.
pub struct ClickHouseSender {
    client: Client,
    schema: Schema,
    insert_query: String,
    create_schema: bool,
    compress: Compress,
    async_insert: bool,
    deduplicate: bool,
    /// The schema exists (created by us, or `create_schema` is off).
    schema_ready: AtomicBool,
    /// Serialises schema creation between the senders.
    schema_lock: tokio::sync::Mutex<()>,
}

impl ClickHouseSender {
    /// A sender; the schema is created by [`Self::ensure_schema`] or before the first insert.
    pub fn new(
        client: Client,
        schema: Schema,
        create_schema: bool,
        compress: Compress,
        async_insert: bool,
        deduplicate: bool,
    ) -> Self {
        Self {
            client,
            insert_query: schema.insert_query(),
            schema,
            create_schema,
            compress,
            async_insert,
            deduplicate,
            schema_ready: AtomicBool::new(!create_schema),
            schema_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Creates the database, tables and views unless done already. Every statement is
    /// `IF NOT EXISTS`, so running them again after a partial failure is harmless.
    pub async fn ensure_schema(&self) -> Result<(), ChError> {
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.schema_lock.lock().await;
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        for statement in self.schema.ddl() {
            self.client.execute(&statement).await.map_err(|e| match e {
                ChError::Server {
                    status,
                    code,
                    message,
                } => ChError::Server {
                    status,
                    code,
                    message: format!(
                        "creating the schema: {message} (statement: {})",
                        statement.lines().next().unwrap_or_default()
                    ),
                },
                other => other,
            })?;
        }
        self.schema_ready.store(true, Ordering::Release);
        tracing::info!(
            database = %self.schema.database,
            table = %self.schema.table,
            create_schema = self.create_schema,
            "ClickHouse schema is in place"
        );
        Ok(())
    }
}

/// Appends the batch's rows to `out`; returns how many. A batch still holding the protobuf it
/// was received as is encoded from those bytes, without decoding it; one a stage has decoded
/// (or rebuilt) from its structures.
pub fn encode_rows(batch: &TraceBatch, out: &mut Vec<u8>) -> usize {
    encode_rows_chunked(batch, out, usize::MAX, &mut |_| {})
}

/// [`encode_rows`], handing the rows over as they are written: whenever `out` holds `chunk`
/// bytes or more after a row, they go to `flush` and `out` is cleared. The rows written after
/// the last flush are left in `out`.
pub fn encode_rows_chunked(
    batch: &TraceBatch,
    out: &mut Vec<u8>,
    chunk: usize,
    flush: &mut dyn FnMut(&[u8]),
) -> usize {
    match batch.protobuf_parts() {
        Some(parts) => rows_wire::encode_chunked(parts.map(|p| p.as_ref()), out, chunk, flush),
        None => rows::encode_chunked(batch.resources(), out, chunk, flush),
    }
}

/// Rows go into the compressor this many bytes at a time: the rows of an insert are never
/// all in memory at once, only the compressed body and one chunk.
pub const CHUNK: usize = 128 * 1024;

/// The body of an insert of `batch`, compressed as `compress` says, and its number of rows.
/// Uncompressed, the body is the rows; compressed, the rows are written into the compressor
/// [`CHUNK`] bytes at a time.
pub fn encode_body(batch: &TraceBatch, compress: Compress) -> (Vec<u8>, usize) {
    // Writing into memory cannot fail.
    const IN_MEMORY: &str = "compressing into memory";
    let capacity = compressed_capacity(batch, compress);
    match compress {
        Compress::None => {
            let mut body = Vec::with_capacity(capacity);
            let rows = encode_rows(batch, &mut body);
            (body, rows)
        }
        Compress::Lz4 => {
            // Linked 64 KiB blocks compress as well as 4 MiB ones (what a body written whole
            // got), no slower as measured, and the encoder holds 192 KiB instead of 8 MiB.
            // Independent 64 KiB blocks are 13% larger.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Linked);
            let e =
                lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::with_capacity(capacity));
            let (e, rows) = compress_rows(batch, e);
            (e.finish().expect(IN_MEMORY), rows)
        }
        Compress::Zstd => {
            let e = zstd::stream::write::Encoder::new(Vec::with_capacity(capacity), 1)
                .expect("zstd level 1");
            let (e, rows) = compress_rows(batch, e);
            (e.finish().expect(IN_MEMORY), rows)
        }
        Compress::Gzip => {
            let e = flate2::write::GzEncoder::new(
                Vec::with_capacity(capacity),
                flate2::Compression::fast(),
            );
            let (e, rows) = compress_rows(batch, e);
            (e.finish().expect(IN_MEMORY), rows)
        }
    }
}

/// Writes the batch's rows into `w`, a chunk at a time.
fn compress_rows<W: Write>(batch: &TraceBatch, mut w: W) -> (W, usize) {
    let mut chunk = Vec::with_capacity(CHUNK + CHUNK / 4);
    let rows = encode_rows_chunked(batch, &mut chunk, CHUNK, &mut |rows| {
        w.write_all(rows).expect("compressing into memory")
    });
    w.write_all(&chunk).expect("compressing into memory");
    (w, rows)
}

/// A guess at the body's size, so that it is allocated about once: an SDK's span is some
/// 1.5 KiB of rows (the benchmark's HTTP service spans), which lz4 makes about 8 times
/// smaller, zstd and gzip about 12 times.
fn compressed_capacity(batch: &TraceBatch, compress: Compress) -> usize {
    let rows = batch.item_count().saturating_mul(1536);
    match compress {
        Compress::None => rows,
        Compress::Lz4 => rows / 8,
        Compress::Zstd | Compress::Gzip => rows / 12,
    }
    .max(4096)
}

/// A fresh token per insert: 128 random bits, so two different inserts never share one.
fn new_token() -> String {
    format!("wasmcol-{:032x}", rand::random::<u128>())
}

#[async_trait]
impl Sender for ClickHouseSender {
    type Payload = Insert;

    fn prepare(&self, batch: &TraceBatch) -> Insert {
        let (body, rows) = encode_body(batch, self.compress);
        Insert {
            body: Bytes::from(body),
            token: new_token(),
            rows,
        }
    }

    /// The insert's body (compressed, or RowBinary), not the spans' protobuf.
    fn payload_bytes(&self, insert: &Insert) -> Option<u64> {
        Some(insert.body.len() as u64)
    }

    async fn send(&self, insert: &Insert) -> Result<Accepted, SendError> {
        if insert.rows == 0 {
            return Ok(Accepted::all());
        }
        self.ensure_schema().await.map_err(to_send_error)?;
        let mut settings: Vec<(&str, &str)> = Vec::with_capacity(5);
        if self.deduplicate {
            settings.push(("insert_deduplication_token", &insert.token));
        }
        if self.async_insert {
            // Waiting for the flush is what makes an acknowledged insert a written one.
            settings.push(("async_insert", "1"));
            settings.push(("wait_for_async_insert", "1"));
            if self.deduplicate {
                settings.push(("async_insert_deduplicate", "1"));
            }
        }
        self.client
            .insert(
                &self.insert_query,
                &settings,
                insert.body.clone(),
                self.compress.content_encoding(),
            )
            .await
            .map(|()| Accepted::all())
            .map_err(to_send_error)
    }
}

fn to_send_error(e: ChError) -> SendError {
    if e.is_retryable() {
        SendError::retryable(format!("ClickHouse: {e}"))
    } else {
        SendError::permanent(format!("ClickHouse: {e}"))
    }
}
