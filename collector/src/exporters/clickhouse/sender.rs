//! One insert per batch and table, plus creating the signal's tables before the first one.

use std::io::Write;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::client::{ChError, Client};
use super::config::Compress;
use super::rows_metrics::MetricRows;
use super::schema::{Schema, Table};
use super::{rows, rows_logs, rows_logs_wire, rows_metrics, rows_wire};
use crate::exporters::sending_queue::{Accepted, SendError, Sender};
use crate::pipeline::{Batch, Logs, Metrics, Signal, TraceBatch, Traces};

/// A signal the exporter writes: how a batch becomes the bodies of its inserts.
pub trait ChSignal: Signal + Sized {
    /// The tables this signal's rows go to.
    const TABLES: &'static [Table];

    /// Per table that gets rows, the insert's body (compressed as `compress` says) and its
    /// number of rows.
    fn encode(batch: &Batch<Self>, compress: Compress) -> Vec<(Table, Vec<u8>, usize)>;
}

/// A signal whose rows go to one table, written by one of two encoders that write the same
/// rows: from the checked protobuf a batch still holds, or from its decoded structures.
pub trait RowSignal: Signal + Sized {
    /// A guess at one item's rows in bytes, to size an insert's body.
    const ROW_BYTES: usize;

    /// Rows from the parts of an encoded batch (`rows_wire`, `rows_logs_wire`).
    fn encode_parts<'a>(
        parts: impl Iterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
        chunk: usize,
        flush: &mut dyn FnMut(&[u8]),
    ) -> usize;

    /// Rows from decoded resources (`rows`, `rows_logs`).
    fn encode_resources(
        resources: &[Self::Resource],
        out: &mut Vec<u8>,
        chunk: usize,
        flush: &mut dyn FnMut(&[u8]),
    ) -> usize;
}

impl RowSignal for Traces {
    /// An SDK's span is some 1.5 KiB of rows (the benchmark's HTTP service spans).
    const ROW_BYTES: usize = 1536;

    fn encode_parts<'a>(
        parts: impl Iterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
        chunk: usize,
        flush: &mut dyn FnMut(&[u8]),
    ) -> usize {
        rows_wire::encode_chunked(parts, out, chunk, flush)
    }

    fn encode_resources(
        resources: &[Self::Resource],
        out: &mut Vec<u8>,
        chunk: usize,
        flush: &mut dyn FnMut(&[u8]),
    ) -> usize {
        rows::encode_chunked(resources, out, chunk, flush)
    }
}

impl RowSignal for Logs {
    /// A record with ten 64-byte attributes and a short body (the benchmark's) is some 1 KiB
    /// of rows.
    const ROW_BYTES: usize = 1024;

    fn encode_parts<'a>(
        parts: impl Iterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
        chunk: usize,
        flush: &mut dyn FnMut(&[u8]),
    ) -> usize {
        rows_logs_wire::encode_chunked(parts, out, chunk, flush)
    }

    fn encode_resources(
        resources: &[Self::Resource],
        out: &mut Vec<u8>,
        chunk: usize,
        flush: &mut dyn FnMut(&[u8]),
    ) -> usize {
        rows_logs::encode_chunked(resources, out, chunk, flush)
    }
}

impl ChSignal for Traces {
    const TABLES: &'static [Table] = &[Table::Traces];

    fn encode(batch: &TraceBatch, compress: Compress) -> Vec<(Table, Vec<u8>, usize)> {
        let (body, rows) = encode_body(batch, compress);
        vec![(Table::Traces, body, rows)]
    }
}

impl ChSignal for Logs {
    const TABLES: &'static [Table] = &[Table::Logs];

    fn encode(batch: &Batch<Logs>, compress: Compress) -> Vec<(Table, Vec<u8>, usize)> {
        let (body, rows) = encode_body(batch, compress);
        vec![(Table::Logs, body, rows)]
    }
}

impl ChSignal for Metrics {
    const TABLES: &'static [Table] = &Table::METRICS;

    fn encode(batch: &Batch<Metrics>, compress: Compress) -> Vec<(Table, Vec<u8>, usize)> {
        let mut all = MetricRows::default();
        rows_metrics::encode(batch.resources(), &mut all);
        Table::METRICS
            .into_iter()
            .filter_map(|table| {
                let (rows, n) = all.rows(table);
                (n > 0).then(|| (table, compress_whole(rows, compress), n))
            })
            .collect()
    }
}

/// One table's share of an insert.
struct Part {
    table: Table,
    body: Bytes,
    token: String,
    rows: usize,
    /// Written by an earlier attempt: a retry of the batch skips it.
    done: AtomicBool,
}

/// A batch ready to insert: one insert per table its rows go to (the metrics tables are
/// five). Built once: every retry sends the same bytes with the same deduplication token,
/// which is what lets ClickHouse recognise a retry of an insert it has already written, and
/// a retry skips the tables an earlier attempt wrote.
pub struct Insert {
    parts: Vec<Part>,
}

impl Insert {
    /// Rows in the insert, over every table.
    pub fn rows(&self) -> usize {
        self.parts.iter().map(|p| p.rows).sum()
    }
}

/// Inserts a signal's rows over the HTTP interface.
pub struct ClickHouseSender<S> {
    client: Client,
    schema: Schema,
    /// The `INSERT` of each of the signal's tables.
    insert_queries: Vec<(Table, String)>,
    create_schema: bool,
    compress: Compress,
    async_insert: bool,
    deduplicate: bool,
    /// The schema exists (created by us, or `create_schema` is off).
    schema_ready: AtomicBool,
    /// Serialises schema creation between the senders.
    schema_lock: tokio::sync::Mutex<()>,
    signal: PhantomData<fn() -> S>,
}

impl<S: ChSignal> ClickHouseSender<S> {
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
            insert_queries: S::TABLES
                .iter()
                .map(|t| (*t, schema.insert_query_for(*t)))
                .collect(),
            schema,
            create_schema,
            compress,
            async_insert,
            deduplicate,
            schema_ready: AtomicBool::new(!create_schema),
            schema_lock: tokio::sync::Mutex::new(()),
            signal: PhantomData,
        }
    }

    /// Creates the database and the signal's tables and views unless done already. Every
    /// statement is `IF NOT EXISTS`, so running them again after a partial failure is harmless.
    pub async fn ensure_schema(&self) -> Result<(), ChError> {
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.schema_lock.lock().await;
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        for statement in self.schema.ddl(S::KIND) {
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
        let tables: Vec<&str> = S::TABLES
            .iter()
            .map(|t| self.schema.table_name(*t))
            .collect();
        tracing::info!(
            database = %self.schema.database,
            tables = %tables.join(", "),
            create_schema = self.create_schema,
            "ClickHouse schema is in place"
        );
        Ok(())
    }
}

/// Appends the batch's rows to `out`; returns how many. A batch still holding the protobuf it
/// was received as is encoded from those bytes, without decoding it; one a stage has decoded
/// (or rebuilt) from its structures.
pub fn encode_rows<S: RowSignal>(batch: &Batch<S>, out: &mut Vec<u8>) -> usize {
    encode_rows_chunked(batch, out, usize::MAX, &mut |_| {})
}

/// [`encode_rows`], handing the rows over as they are written: whenever `out` holds `chunk`
/// bytes or more after a row, they go to `flush` and `out` is cleared. The rows written after
/// the last flush are left in `out`.
pub fn encode_rows_chunked<S: RowSignal>(
    batch: &Batch<S>,
    out: &mut Vec<u8>,
    chunk: usize,
    flush: &mut dyn FnMut(&[u8]),
) -> usize {
    match batch.protobuf_parts() {
        Some(parts) => S::encode_parts(parts.map(|p| p.as_ref()), out, chunk, flush),
        None => S::encode_resources(batch.resources(), out, chunk, flush),
    }
}

/// Rows go into the compressor this many bytes at a time: the rows of an insert are never
/// all in memory at once, only the compressed body and one chunk.
pub const CHUNK: usize = 128 * 1024;

/// The body of an insert of `batch`, compressed as `compress` says, and its number of rows.
/// Uncompressed, the body is the rows; compressed, the rows are written into the compressor
/// [`CHUNK`] bytes at a time.
pub fn encode_body<S: RowSignal>(batch: &Batch<S>, compress: Compress) -> (Vec<u8>, usize) {
    // Writing into memory cannot fail.
    const IN_MEMORY: &str = "compressing into memory";
    let capacity = compressed_capacity(batch, compress);
    match compress {
        Compress::None => {
            let mut body = Vec::with_capacity(capacity);
            let rows = encode_rows(batch, &mut body);
            (body, rows)
        }
        Compress::Lz4 => LZ4_BUFFERS.with_borrow_mut(|b| {
            let mut body = Vec::with_capacity(capacity);
            body.extend_from_slice(&LZ4_FRAME_HEADER);
            b.rows.clear();
            let Lz4Buffers {
                rows: chunk,
                blocks,
            } = b;
            let rows = encode_rows_chunked(batch, chunk, LZ4_ROWS, &mut |rows| {
                put_lz4_blocks(&mut body, blocks, rows)
            });
            put_lz4_blocks(&mut body, blocks, chunk);
            body.extend_from_slice(&LZ4_END_MARK);
            if chunk.capacity() > 2 * LZ4_BLOCK {
                // A row far over the block size was written: not kept for every insert.
                *chunk = Vec::new();
            }
            (body, rows)
        }),
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

/// lz4 bodies are frames of independent blocks of up to 1 MiB, each compressed straight from
/// the rows as they are written. Such blocks compress almost as well as linked 64 KiB blocks
/// (a match may reach back 64 KiB, so only the first 64 KiB of a block loses the block before):
/// the gateway benchmark's inserts are 2.5% larger; independent 64 KiB blocks are 13% larger.
/// lz4_flex's frame encoder would copy the rows into its own window first, and compress linked
/// blocks through its slower external dictionary path half of the time.
pub(super) const LZ4_BLOCK: usize = 1024 * 1024;

/// A block is compressed once this many bytes of rows are written: it then holds them and the
/// row that passed the mark, within [`LZ4_BLOCK`] unless that row is over 64 KiB (rows over
/// the block size are split across blocks).
const LZ4_ROWS: usize = LZ4_BLOCK - 64 * 1024;

/// The frame's header: magic number; FLG 0x60 (version 1, independent blocks, no checksums, no
/// content size, no dictionary); BD 0x60 (blocks of at most 1 MiB); the header checksum (the
/// second byte of the xxHash32 of FLG and BD).
pub(super) const LZ4_FRAME_HEADER: [u8; 7] = [0x04, 0x22, 0x4d, 0x18, 0x60, 0x60, 0x51];

/// The end of the frame (a block of size 0; no content checksum follows).
const LZ4_END_MARK: [u8; 4] = [0; 4];

/// A thread's buffers for lz4 bodies: the rows of a block, and its compressed form. Kept from
/// insert to insert so their pages are not faulted in again for each.
#[derive(Default)]
struct Lz4Buffers {
    rows: Vec<u8>,
    blocks: Vec<u8>,
}

thread_local! {
    static LZ4_BUFFERS: std::cell::RefCell<Lz4Buffers> = std::cell::RefCell::default();
}

/// Appends `rows` to an lz4 frame's `body` as blocks of at most [`LZ4_BLOCK`] bytes,
/// compressed into `scratch` first; a block that does not shrink is stored as it is.
fn put_lz4_blocks(body: &mut Vec<u8>, scratch: &mut Vec<u8>, rows: &[u8]) {
    /// The flag of a block stored uncompressed, in its size.
    const UNCOMPRESSED: u32 = 1 << 31;
    for block in rows.chunks(LZ4_BLOCK) {
        let room = lz4_flex::block::get_maximum_output_size(block.len());
        if scratch.len() < room {
            scratch.resize(room, 0);
        }
        match lz4_flex::block::compress_into(block, scratch) {
            Ok(n) if n < block.len() => {
                // Both sizes are within LZ4_BLOCK, far below 2^31.
                body.extend_from_slice(&(n as u32).to_le_bytes());
                body.extend_from_slice(&scratch[..n]);
            }
            _ => {
                body.extend_from_slice(&(block.len() as u32 | UNCOMPRESSED).to_le_bytes());
                body.extend_from_slice(block);
            }
        }
    }
}

/// Writes the batch's rows into `w`, a chunk at a time.
fn compress_rows<S: RowSignal, W: Write>(batch: &Batch<S>, mut w: W) -> (W, usize) {
    let mut chunk = Vec::with_capacity(CHUNK + CHUNK / 4);
    let rows = encode_rows_chunked(batch, &mut chunk, CHUNK, &mut |rows| {
        w.write_all(rows).expect("compressing into memory")
    });
    w.write_all(&chunk).expect("compressing into memory");
    (w, rows)
}

/// A guess at the body's size, so that it is allocated about once: [`RowSignal::ROW_BYTES`]
/// per item, which lz4 makes about 8 times smaller, zstd and gzip about 12 times.
fn compressed_capacity<S: RowSignal>(batch: &Batch<S>, compress: Compress) -> usize {
    let rows = batch.item_count().saturating_mul(S::ROW_BYTES);
    match compress {
        Compress::None => rows,
        Compress::Lz4 => rows / 8,
        Compress::Zstd | Compress::Gzip => rows / 12,
    }
    .max(4096)
}

/// `rows` as an insert body, compressed as `compress` says.
fn compress_whole(rows: &[u8], compress: Compress) -> Vec<u8> {
    const IN_MEMORY: &str = "compressing into memory";
    match compress {
        Compress::None => rows.to_vec(),
        Compress::Lz4 => {
            let mut body = Vec::with_capacity(rows.len() / 8 + 64);
            body.extend_from_slice(&LZ4_FRAME_HEADER);
            put_lz4_blocks(&mut body, &mut Vec::new(), rows);
            body.extend_from_slice(&LZ4_END_MARK);
            body
        }
        Compress::Zstd => zstd::bulk::compress(rows, 1).expect(IN_MEMORY),
        Compress::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(rows).expect(IN_MEMORY);
            e.finish().expect(IN_MEMORY)
        }
    }
}

/// A fresh token per insert: 128 random bits, so two different inserts never share one.
fn new_token() -> String {
    format!("wasmcol-{:032x}", rand::random::<u128>())
}

#[async_trait]
impl<S: ChSignal> Sender for ClickHouseSender<S> {
    type Signal = S;

    type Payload = Insert;

    fn prepare(&self, batch: &Batch<S>) -> Insert {
        let parts = S::encode(batch, self.compress)
            .into_iter()
            .map(|(table, body, rows)| Part {
                table,
                body: Bytes::from(body),
                token: new_token(),
                rows,
                done: AtomicBool::new(false),
            })
            .collect();
        Insert { parts }
    }

    /// The inserts' bodies (compressed, or RowBinary), not the batch's protobuf.
    fn payload_bytes(&self, insert: &Insert) -> Option<u64> {
        Some(insert.parts.iter().map(|p| p.body.len() as u64).sum())
    }

    async fn send(&self, insert: &Insert) -> Result<Accepted, SendError> {
        if insert.rows() == 0 {
            return Ok(Accepted::all());
        }
        self.ensure_schema().await.map_err(to_send_error)?;
        for part in &insert.parts {
            if part.rows == 0 || part.done.load(Ordering::Acquire) {
                continue;
            }
            self.insert(part).await.map_err(to_send_error)?;
            part.done.store(true, Ordering::Release);
        }
        Ok(Accepted::all())
    }
}

impl<S: ChSignal> ClickHouseSender<S> {
    async fn insert(&self, part: &Part) -> Result<(), ChError> {
        let query = self
            .insert_queries
            .iter()
            .find(|(t, _)| *t == part.table)
            .map(|(_, q)| q.as_str())
            .expect("an insert query per table of the signal");
        let mut settings: Vec<(&str, &str)> = Vec::with_capacity(5);
        if self.deduplicate {
            settings.push(("insert_deduplication_token", &part.token));
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
                query,
                &settings,
                part.body.clone(),
                self.compress.content_encoding(),
            )
            .await
    }
}

fn to_send_error(e: ChError) -> SendError {
    if e.is_retryable() {
        SendError::retryable(format!("ClickHouse: {e}"))
    } else {
        SendError::permanent(format!("ClickHouse: {e}"))
    }
}
