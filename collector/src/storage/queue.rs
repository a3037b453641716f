//! [`DiskQueue`]: the index in memory, the writer, the readers and the background thread that
//! fsyncs and moves the head.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::segment::{self, HEADER_LEN, HeadFile, MAX_PAYLOAD_BYTES, Pos, ReadError, Stop};

/// The size past which the writer starts a new segment file, unless told otherwise.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// How often, at most, the head file is rewritten while records are being acknowledged.
const HEAD_INTERVAL: Duration = Duration::from_millis(100);

/// Read errors that may pass (not a missing file or a short one) are retried this many times,
/// waiting twice as long each time, before the record is skipped as damaged.
const READ_RETRIES: u32 = 5;
const READ_RETRY_BACKOFF: Duration = Duration::from_millis(100);

fn is_transient(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
    )
}

/// Segment handles kept open for readers (besides the writer's own).
const MAX_READ_HANDLES: usize = 4;

/// How often `open` tries the lock again while another process holds it.
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// How a queue's capacity and size are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sizer {
    /// Records: every push counts 1.
    Requests,
    /// The item count the caller gives with each push (spans, for the sending queue).
    Items,
    /// Payload bytes (the record header is not counted).
    Bytes,
}

impl Sizer {
    fn units(self, items: u32, payload_len: u64) -> u64 {
        match self {
            Sizer::Requests => 1,
            Sizer::Items => u64::from(items),
            Sizer::Bytes => payload_len,
        }
    }
}

/// How a [`DiskQueue`] behaves; none of it is stored on disk, so it may change between opens.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// The most the queue holds, in [`Sizer`] units. A push that would go past it is refused
    /// with [`PushError::Full`], unless the queue is empty: a record bigger than the whole
    /// capacity is then accepted, so it is never refused forever.
    pub capacity: u64,
    /// What the capacity counts.
    pub sizer: Sizer,
    /// Whether records are fsynced (group commit: see [`DiskQueue::synced`]).
    pub fsync: bool,
    /// The writer starts a new segment file before a record would take the current one past
    /// this many bytes ([`DEFAULT_SEGMENT_BYTES`] is a good value).
    pub max_segment_bytes: u64,
}

/// Identifies a record handed out by [`DiskQueue::pop`], for [`DiskQueue::ack`] and
/// [`DiskQueue::nack`]. Valid for the queue that handed it out, not across opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(u64);

impl RecordId {
    /// The record's sequence number, the one [`Written::seq`] gave when it was pushed in this
    /// open (records recovered at open are numbered from 1 in log order).
    pub fn seq(self) -> u64 {
        self.0
    }
}

/// What [`DiskQueue::open`] found on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Records pending (not acknowledged before the last head write), handed out first.
    pub records: u64,
    /// Their item counts, summed.
    pub items: u64,
    /// Their payload bytes, summed.
    pub bytes: u64,
    /// Damaged records skipped (each one ends the scan of its segment).
    pub corrupt_records: u64,
    /// Bytes cut from the end of the last segment: a record being written when the process or
    /// machine stopped, or garbage after it.
    pub torn_tail_bytes: u64,
}

/// A snapshot of the queue, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pushed and not yet acknowledged, in [`Sizer`] units.
    pub size: u64,
    /// The configured capacity, in [`Sizer`] units.
    pub capacity: u64,
    /// The segment files' total size.
    pub bytes_on_disk: u64,
    /// Damaged records skipped since open, those found by the recovery scan included.
    pub corrupt_records: u64,
}

/// A record accepted by [`DiskQueue::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Its sequence number, for [`DiskQueue::synced`].
    pub seq: u64,
}

/// Why a push was refused.
#[derive(thiserror::Error, Debug)]
pub enum PushError {
    /// The queue holds its capacity already; try again once records are acknowledged.
    #[error("the persistent queue is full (capacity {capacity})")]
    Full {
        /// The configured capacity, in [`Sizer`] units.
        capacity: u64,
    },
    /// [`DiskQueue::close`] was called.
    #[error("the persistent queue is closed")]
    Closed,
    /// Writing failed (a full disk, say); nothing of the record was left in the queue.
    #[error("writing to the persistent queue failed: {0}")]
    Io(#[source] std::io::Error),
}

/// Why a queue could not be opened.
#[derive(thiserror::Error, Debug)]
pub enum OpenError {
    /// Another process (or another open in this one) holds the directory's lock.
    #[error(
        "the queue directory {} is in use by another process (its LOCK file stayed locked for {timeout:?})",
        dir.display()
    )]
    Locked {
        /// The queue directory.
        dir: PathBuf,
        /// How long `open` waited.
        timeout: Duration,
    },
    /// A file or directory of the queue could not be created, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Locks a mutex, carrying on if a thread panicked while holding it: every critical section
/// leaves the state consistent before anything that can panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A record's place in the log, as kept in memory (no payload).
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    seg: u64,
    offset: u64,
    len: u32,
    items: u32,
}

impl Entry {
    fn pos(&self) -> Pos {
        Pos {
            seg: self.seg,
            offset: self.offset,
        }
    }
}

/// Which records are where. Sequence numbers follow log order, so the smallest sequence number
/// still held anywhere here is the head.
struct Index {
    /// The live segments (at or after the head), with an open handle for the one written and
    /// the few read last: a long queue has many segments, and a descriptor each could exhaust
    /// the process's limit.
    segments: BTreeMap<u64, Option<Arc<File>>>,
    /// Not handed out yet, in log order.
    ready: VecDeque<Entry>,
    /// Handed out, then put back: handed out again before `ready`.
    nacked: BTreeMap<u64, Entry>,
    /// Handed out, not acknowledged yet.
    in_flight: BTreeMap<u64, Entry>,
    /// Sizer units of every record in the three collections above.
    size: u64,
    /// Where the next record goes: the head when nothing is pending.
    tail: Pos,
}

impl Index {
    /// True when no record is waiting, put back or in flight.
    fn holds_nothing(&self) -> bool {
        self.ready.is_empty() && self.nacked.is_empty() && self.in_flight.is_empty()
    }

    fn head(&self) -> Pos {
        let oldest = [
            self.ready.front().copied(),
            self.nacked.values().next().copied(),
            self.in_flight.values().next().copied(),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|e| e.seq);
        oldest.map_or(self.tail, |e| e.pos())
    }

    /// The next record to hand out, moved to `in_flight`, with its segment's handle.
    fn take_next(&mut self) -> Option<(Entry, Option<Arc<File>>)> {
        let entry = match self.nacked.pop_first() {
            Some((_, entry)) => entry,
            None => self.ready.pop_front()?,
        };
        self.in_flight.insert(entry.seq, entry);
        Some((entry, self.segments.get(&entry.seg).cloned().flatten()))
    }

    /// Keeps a handle a reader opened, closing the oldest cached ones past the limit.
    fn cache_reader(&mut self, seg: u64, file: Arc<File>) {
        let Some(slot) = self.segments.get_mut(&seg) else {
            return; // deleted meanwhile
        };
        *slot = Some(file);
        let open: Vec<u64> = self
            .segments
            .iter()
            .filter(|(_, f)| f.is_some())
            .map(|(&id, _)| id)
            .collect();
        for id in open
            .iter()
            .take(open.len().saturating_sub(MAX_READ_HANDLES))
        {
            if *id != seg {
                self.segments.insert(*id, None);
            }
        }
    }
}

/// The append side; one push at a time holds it.
struct Writer {
    seg: u64,
    file: Arc<File>,
    offset: u64,
    next_seq: u64,
    /// A failed write could not be truncated away: start a new segment before the next write.
    needs_roll: bool,
}

/// What the background thread has to do, and what it needs for it.
struct SyncState {
    /// The highest sequence number written to a file.
    written: u64,
    /// Segments rolled away from since the last fsync, still holding unsynced records.
    sealed: Vec<Arc<File>>,
    /// The segment being written.
    current: Arc<File>,
    /// A segment was created: the directory needs an fsync too.
    dir_dirty: bool,
    /// Write the head now rather than at the next interval (close).
    head_now: bool,
    /// The queue is being dropped: last fsync, last head write, exit.
    shutdown: bool,
    /// Tests only: exit without the last head write, as a killed process would.
    skip_final_head: bool,
}

/// A failed fsync and the records it covered, reported to their `synced` waiters.
struct SyncFailure {
    first: u64,
    last: u64,
    kind: io::ErrorKind,
    message: String,
}

/// At most this many failed fsyncs are remembered (a failing disk fails them all).
const MAX_SYNC_FAILURES: usize = 1024;

struct Inner {
    dir: PathBuf,
    capacity: u64,
    sizer: Sizer,
    fsync: bool,
    max_segment_bytes: u64,
    writer: Mutex<Writer>,
    index: Mutex<Index>,
    sync: Mutex<SyncState>,
    wake_sync: Condvar,
    /// Some ack may have moved the head since it was last written.
    head_dirty: AtomicBool,
    /// The highest sequence number fsynced (or given up on, see `sync_failures`).
    synced: watch::Sender<u64>,
    sync_failures: Mutex<VecDeque<SyncFailure>>,
    /// A record became available to pop, or the queue closed.
    available: Notify,
    closed: AtomicBool,
    corrupt_records: AtomicU64,
    bytes_on_disk: AtomicU64,
    /// Held for the queue's lifetime: the lock goes with the descriptor.
    _lock: File,
    #[cfg(test)]
    faults: Mutex<Faults>,
}

/// Where a test can make I/O fail (see `Faults`).
#[derive(Debug, Clone, Copy)]
enum Fault {
    ShortWrite,
    Truncate,
    Create,
    Sync,
    Read,
}

/// Tests only: how many of each I/O failure to inject, as a full disk would cause them.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Record writes that stop after half the payload.
    pub(crate) short_writes: u32,
    /// Truncations (undoing a failed write) that fail.
    pub(crate) failed_truncates: u32,
    /// Segment creations that fail.
    pub(crate) failed_creates: u32,
    /// Group-commit fsyncs that fail.
    pub(crate) failed_syncs: u32,
    /// Record reads that fail.
    pub(crate) failed_reads: u32,
}

/// A persistent FIFO of opaque records in a directory of append-only segment files.
/// See the [module documentation](super) for the format and the guarantees.
///
/// `push` blocks on file I/O (call it from `spawn_blocking`); `pop` and `synced` are async;
/// `ack`, `nack`, `close` and `stats` only touch memory. Dropping the queue stops its
/// background thread after a last fsync and head write, which may block for as long as those take.
pub struct DiskQueue {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DiskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskQueue")
            .field("dir", &self.inner.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl DiskQueue {
    /// Opens or creates the queue in `dir` (created if missing, with parents). Takes an
    /// exclusive lock on `dir/LOCK`, retrying until `lock_timeout` (then
    /// [`OpenError::Locked`], naming the directory). Recovers: reads the head file, scans the
    /// segments from the head on, truncates a torn tail of the last segment, skips corrupt
    /// records (counted), deletes segments wholly behind the head.
    pub fn open(
        dir: &Path,
        options: QueueOptions,
        lock_timeout: Duration,
    ) -> Result<(Self, Recovered), OpenError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join("LOCK");
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        // No deadline (wait for good) if the timeout is too long to add to now.
        let deadline = Instant::now().checked_add(lock_timeout);
        loop {
            match lock_file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left == Some(Duration::ZERO) {
                        return Err(OpenError::Locked {
                            dir: dir.to_path_buf(),
                            timeout: lock_timeout,
                        });
                    }
                    std::thread::sleep(left.map_or(LOCK_RETRY, |left| LOCK_RETRY.min(left)));
                }
                Err(TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
            }
        }
        segment::remove_head_tmp(dir).map_err(io_error(dir))?;

        let recovery = recover(dir, options.sizer, options.fsync)?;
        let Recovery {
            index,
            writer,
            recovered,
            bytes_on_disk,
        } = recovery;
        let written = writer.next_seq - 1;
        let sync = SyncState {
            written,
            sealed: Vec::new(),
            current: writer.file.clone(),
            dir_dirty: false,
            head_now: false,
            shutdown: false,
            skip_final_head: false,
        };
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            capacity: options.capacity,
            sizer: options.sizer,
            fsync: options.fsync,
            max_segment_bytes: options.max_segment_bytes,
            writer: Mutex::new(writer),
            index: Mutex::new(index),
            sync: Mutex::new(sync),
            wake_sync: Condvar::new(),
            // Written once after open: recovery may have moved the head (a missing head file,
            // segments deleted) and the next open should not scan that again.
            head_dirty: AtomicBool::new(true),
            synced: watch::Sender::new(written),
            sync_failures: Mutex::new(VecDeque::new()),
            available: Notify::new(),
            closed: AtomicBool::new(false),
            corrupt_records: AtomicU64::new(recovered.corrupt_records),
            bytes_on_disk: AtomicU64::new(bytes_on_disk),
            _lock: lock_file,
            #[cfg(test)]
            faults: Mutex::new(Faults::default()),
        });
        let background = inner.clone();
        let thread = std::thread::Builder::new()
            .name("disk-queue-sync".into())
            .spawn(move || background.run())
            .map_err(io_error(dir))?;
        if recovered != Recovered::default() {
            tracing::info!(
                dir = %dir.display(),
                records = recovered.records,
                items = recovered.items,
                bytes = recovered.bytes,
                corrupt_records = recovered.corrupt_records,
                torn_tail_bytes = recovered.torn_tail_bytes,
                "persistent queue recovered"
            );
        }
        Ok((
            DiskQueue {
                inner,
                thread: Some(thread),
            },
            recovered,
        ))
    }

    /// Appends one record (blocking: call it from `spawn_blocking`). When it returns `Ok` the
    /// bytes have been written to the file with write(2), so they survive a kill -9 of the
    /// process; with fsync on, they are durable only once [`synced`](Self::synced) resolves.
    /// On an I/O error (a full disk, say) the partial write is truncated away (or, if that
    /// fails too, the segment is sealed and a new one started) so the queue is never left
    /// corrupt, and [`PushError::Io`] is returned; the next push tries again.
    pub fn push(&self, items: u32, payload: &[u8]) -> Result<Written, PushError> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(PushError::Closed);
        }
        let len = match u32::try_from(payload.len()) {
            Ok(len) if len <= MAX_PAYLOAD_BYTES => len,
            _ => {
                return Err(PushError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a record of {} bytes is over the 1 GiB limit",
                        payload.len()
                    ),
                )));
            }
        };
        let units = inner.sizer.units(items, u64::from(len));
        let mut writer = lock(&inner.writer);
        // Pushes are serialized by the writer lock and acks only shrink the size, so the
        // check still holds when the record is added below.
        {
            let index = lock(&inner.index);
            if index.size > 0 && index.size.saturating_add(units) > inner.capacity {
                return Err(PushError::Full {
                    capacity: inner.capacity,
                });
            }
        }
        let record_len = HEADER_LEN + u64::from(len);
        // A queue that emptied starts a new segment once the one being written is sizeable, so
        // the old one is deleted and its space comes back now, not when it fills (on a full
        // disk it could not fill).
        let emptied =
            writer.offset >= inner.max_segment_bytes / 4 && lock(&inner.index).holds_nothing();
        if writer.needs_roll
            || emptied
            || (writer.offset > 0 && writer.offset + record_len > inner.max_segment_bytes)
        {
            inner.roll(&mut writer).map_err(PushError::Io)?;
            if emptied {
                inner.mark_head_dirty();
            }
        }
        let header = segment::encode_header(items, payload);
        let result = match inner.injected(Fault::ShortWrite) {
            Some(e) => write_all_vectored(
                &writer.file,
                &mut [
                    IoSlice::new(&header),
                    IoSlice::new(&payload[..payload.len() / 2]),
                ],
            )
            .and(Err(e)),
            None => write_all_vectored(
                &writer.file,
                &mut [IoSlice::new(&header), IoSlice::new(payload)],
            ),
        };
        if let Err(e) = result {
            inner.undo_partial_write(&mut writer);
            return Err(PushError::Io(e));
        }
        let seq = writer.next_seq;
        writer.next_seq += 1;
        let entry = Entry {
            seq,
            seg: writer.seg,
            offset: writer.offset,
            len,
            items,
        };
        writer.offset += record_len;
        inner.bytes_on_disk.fetch_add(record_len, Ordering::Relaxed);
        {
            let mut index = lock(&inner.index);
            index.ready.push_back(entry);
            index.size += units;
            index.tail = Pos {
                seg: writer.seg,
                offset: writer.offset,
            };
        }
        if inner.fsync {
            let mut sync = lock(&inner.sync);
            sync.written = seq;
            inner.wake_sync.notify_one();
        }
        drop(writer);
        inner.available.notify_one();
        Ok(Written { seq })
    }

    /// Resolves once record `seq` is durable (at once when fsync is off). Group commit: one
    /// fsync covers every record written before it; the background thread fsyncs as soon as
    /// something is unsynced, so under load fsyncs run back to back and each covers many
    /// records. An error means the fsync covering the record failed: the record may not
    /// survive a crash of the machine.
    pub async fn synced(&self, seq: u64) -> Result<(), std::io::Error> {
        let inner = &*self.inner;
        if !inner.fsync {
            return Ok(());
        }
        let mut done = inner.synced.subscribe();
        done.wait_for(|&done| done >= seq)
            .await
            .map(|_| ())
            .map_err(|_| {
                io::Error::other("the persistent queue stopped before the record was fsynced")
            })?;
        let failures = lock(&inner.sync_failures);
        match failures.iter().find(|f| f.first <= seq && seq <= f.last) {
            Some(f) => Err(io::Error::new(
                f.kind,
                format!("fsync of the persistent queue failed: {}", f.message),
            )),
            None => Ok(()),
        }
    }

    /// The oldest record not yet handed out (records put back with [`nack`](Self::nack) come
    /// first), waiting for one; `None` once closed with no record left to hand out. Reads the
    /// record from its file and checks its checksum; a damaged record is counted in
    /// `corrupt_records`, logged, acknowledged and skipped, and so is one that cannot be read
    /// (after retries over about 3 s, for errors that may pass), so no record blocks
    /// the queue. Cancel-safe: a record taken by a `pop` dropped before it returns is put back.
    pub async fn pop(&self) -> Option<(RecordId, u32, Vec<u8>)> {
        let inner = &*self.inner;
        loop {
            let notified = inner.available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = lock(&inner.index).take_next();
            let Some((entry, file)) = taken else {
                if inner.closed.load(Ordering::SeqCst) {
                    return None;
                }
                notified.await;
                continue;
            };
            let mut put_back = PutBackOnDrop {
                inner,
                seq: Some(entry.seq),
            };
            let path = segment::segment_path(&inner.dir, entry.seg);
            let mut file = file;
            let mut retries = 0;
            let read = loop {
                let (read, opened) = match inner.injected(Fault::Read) {
                    Some(e) => (Err(ReadError::Io(e)), None),
                    None => read_off_thread(file.take(), path.clone(), entry).await,
                };
                if let Some(opened) = opened {
                    lock(&inner.index).cache_reader(entry.seg, opened);
                }
                match read {
                    // Out of descriptors, say: worth another try before the record is given up.
                    Err(ReadError::Io(e)) if retries < READ_RETRIES && is_transient(&e) => {
                        let backoff = READ_RETRY_BACKOFF * 2u32.pow(retries);
                        crate::telemetry::log_limited!(warn, "reading a record of the persistent queue failed; retrying", path = %path.display(), offset = entry.offset, error = %e, ?backoff);
                        retries += 1;
                        tokio::time::sleep(backoff).await;
                        file = lock(&inner.index)
                            .segments
                            .get(&entry.seg)
                            .cloned()
                            .flatten();
                    }
                    read => break read,
                }
            };
            put_back.seq = None;
            match read {
                Ok(payload) => return Some((RecordId(entry.seq), entry.items, payload)),
                Err(e) => {
                    let reason = match &e {
                        ReadError::Io(e) => format!("reading it failed: {e}"),
                        ReadError::Corrupt(reason) => (*reason).to_string(),
                    };
                    tracing::error!(
                        path = %segment::segment_path(&inner.dir, entry.seg).display(),
                        offset = entry.offset,
                        items = entry.items,
                        reason,
                        "skipping a damaged record of the persistent queue"
                    );
                    inner.corrupt_records.fetch_add(1, Ordering::Relaxed);
                    self.ack(RecordId(entry.seq));
                }
            }
        }
    }

    /// The record was delivered or given up for good: it no longer counts against capacity;
    /// once every older record is acknowledged too, the head moves past it and its space is
    /// reclaimed. Acknowledging a record twice, or one not handed out, does nothing.
    pub fn ack(&self, id: RecordId) {
        let inner = &*self.inner;
        {
            let mut index = lock(&inner.index);
            let entry = match index.in_flight.remove(&id.0) {
                Some(entry) => entry,
                None => match index.nacked.remove(&id.0) {
                    Some(entry) => entry,
                    None => {
                        tracing::debug!(seq = id.0, "ack of a record not handed out; ignored");
                        return;
                    }
                },
            };
            index.size -= inner.sizer.units(entry.items, u64::from(entry.len));
        }
        inner.mark_head_dirty();
    }

    /// Hands the record out again, before newer ones (after a panic in the sender, say).
    pub fn nack(&self, id: RecordId) {
        self.inner.nack(id.0);
    }

    /// No more pushes ([`PushError::Closed`]); `pop` hands out what is left, then returns
    /// `None`. Acks still count after close. Records handed out and never acknowledged stay on
    /// disk and are handed out again after the next open.
    pub fn close(&self) {
        let inner = &*self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        inner.available.notify_waiters();
        inner.head_dirty.store(true, Ordering::SeqCst);
        let mut sync = lock(&inner.sync);
        sync.head_now = true;
        inner.wake_sync.notify_one();
    }

    /// The queue's size, capacity, bytes on disk and corrupt records skipped.
    pub fn stats(&self) -> Stats {
        let inner = &*self.inner;
        Stats {
            size: lock(&inner.index).size,
            capacity: inner.capacity,
            bytes_on_disk: inner.bytes_on_disk.load(Ordering::Relaxed),
            corrupt_records: inner.corrupt_records.load(Ordering::Relaxed),
        }
    }

    /// The queue's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Makes the next I/O operations fail, as a full disk would.
    #[cfg(test)]
    pub(crate) fn inject(&self, set: impl FnOnce(&mut Faults)) {
        set(&mut lock(&self.inner.faults));
    }

    /// Stops like a killed process would: no last head write (the fsync thread just exits).
    #[cfg(test)]
    pub(crate) fn crash(mut self) {
        {
            let mut sync = lock(&self.inner.sync);
            sync.skip_final_head = true;
            sync.shutdown = true;
            self.inner.wake_sync.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DiskQueue {
    fn drop(&mut self) {
        {
            let mut sync = lock(&self.inner.sync);
            sync.shutdown = true;
            self.inner.wake_sync.notify_one();
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(dir = %self.inner.dir.display(), "the persistent queue's fsync thread panicked");
        }
    }
}

/// Puts a record taken by `pop` back if the `pop` future is dropped before returning it.
struct PutBackOnDrop<'a> {
    inner: &'a Inner,
    seq: Option<u64>,
}

impl Drop for PutBackOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(seq) = self.seq {
            self.inner.nack(seq);
        }
    }
}

/// Reads a record on tokio's blocking pool (a cold page cache means disk reads), or inline
/// outside a runtime, opening its segment if no handle is cached (the one opened is returned).
async fn read_off_thread(
    file: Option<Arc<File>>,
    path: PathBuf,
    entry: Entry,
) -> (Result<Vec<u8>, ReadError>, Option<Arc<File>>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let (file2, path2) = (file.clone(), path.clone());
            match runtime
                .spawn_blocking(move || read_entry(file2, &path2, entry))
                .await
            {
                Ok(result) => result,
                // Cancelled by a runtime shutting down: read here instead.
                Err(_) => read_entry(file, &path, entry),
            }
        }
        Err(_) => read_entry(file, &path, entry),
    }
}

fn read_entry(
    file: Option<Arc<File>>,
    path: &Path,
    entry: Entry,
) -> (Result<Vec<u8>, ReadError>, Option<Arc<File>>) {
    let (file, opened) = match file {
        Some(file) => (file, None),
        None => match File::open(path) {
            Ok(file) => {
                let file = Arc::new(file);
                (file.clone(), Some(file))
            }
            Err(e) => return (Err(ReadError::Io(e)), None),
        },
    };
    let read = segment::read_record(&file, entry.offset, entry.len, entry.items);
    (read, opened)
}

/// `write_all` for two buffers in one writev(2) (header and payload, without copying them
/// together).
fn write_all_vectored(file: &File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match (&mut &*file).write_vectored(bufs) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file accepted no bytes",
                ));
            }
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Inner {
    fn nack(&self, seq: u64) {
        {
            let mut index = lock(&self.index);
            match index.in_flight.remove(&seq) {
                Some(entry) => {
                    index.nacked.insert(seq, entry);
                }
                None => {
                    tracing::debug!(seq, "nack of a record not in flight; ignored");
                    return;
                }
            }
        }
        self.available.notify_one();
    }

    fn mark_head_dirty(&self) {
        if !self.head_dirty.swap(true, Ordering::SeqCst) {
            // Taking the lock orders this with the thread's check of `head_dirty`.
            let _sync = lock(&self.sync);
            self.wake_sync.notify_one();
        }
    }

    /// Starts segment `writer.seg + 1` and makes it the one written.
    fn roll(&self, writer: &mut Writer) -> io::Result<()> {
        let id = writer.seg + 1;
        if let Some(e) = self.injected(Fault::Create) {
            return Err(e);
        }
        let file = Arc::new(segment::create_segment(&self.dir, id)?);
        if writer.needs_roll {
            // The sealed segment keeps the bytes that could not be truncated away.
            if let Ok(meta) = writer.file.metadata() {
                self.bytes_on_disk
                    .fetch_add(meta.len().saturating_sub(writer.offset), Ordering::Relaxed);
            }
        }
        {
            let mut index = lock(&self.index);
            // The reader opens the old segment again when it gets there.
            index.segments.insert(writer.seg, None);
            index.segments.insert(id, Some(file.clone()));
            index.tail = Pos { seg: id, offset: 0 };
        }
        {
            let mut sync = lock(&self.sync);
            let old = std::mem::replace(&mut sync.current, file.clone());
            if self.fsync {
                // Without fsync nobody drains the list: the handle would stay open for good.
                sync.sealed.push(old);
                sync.dir_dirty = true;
            }
        }
        writer.seg = id;
        writer.file = file;
        writer.offset = 0;
        writer.needs_roll = false;
        Ok(())
    }

    /// After a failed write: cut the segment back to its last complete record, or failing
    /// that, seal it (now, or at the next push if a new segment cannot be created either).
    fn undo_partial_write(&self, writer: &mut Writer) {
        let offset = writer.offset;
        let truncated = match self.injected(Fault::Truncate) {
            Some(e) => Err(e),
            None => writer
                .file
                .set_len(offset)
                .and_then(|()| (&mut &*writer.file).seek(SeekFrom::Start(offset))),
        };
        if let Err(e) = truncated {
            crate::telemetry::log_limited!(error, "could not cut a failed write from the persistent queue; starting a new segment",
                path = %segment::segment_path(&self.dir, writer.seg).display(),
                error = %e
            );
            writer.needs_roll = true;
            if let Err(e) = self.roll(writer) {
                crate::telemetry::log_limited!(error, "could not start a new segment; retrying at the next push", dir = %self.dir.display(), error = %e);
            }
        }
    }

    /// A failure injected by a test, if one is due.
    #[cfg(test)]
    fn injected(&self, fault: Fault) -> Option<io::Error> {
        let mut faults = lock(&self.faults);
        let due = match fault {
            Fault::ShortWrite => &mut faults.short_writes,
            Fault::Truncate => &mut faults.failed_truncates,
            Fault::Create => &mut faults.failed_creates,
            Fault::Sync => &mut faults.failed_syncs,
            Fault::Read => &mut faults.failed_reads,
        };
        if *due == 0 {
            return None;
        }
        *due -= 1;
        Some(io::Error::from(io::ErrorKind::StorageFull))
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn injected(&self, _: Fault) -> Option<io::Error> {
        None
    }

    /// The background thread: fsyncs (group commit) and writes the head, until the queue drops.
    fn run(self: Arc<Self>) {
        let mut synced = *self.synced.borrow();
        let mut last_head: Option<Pos> = None;
        let mut last_head_write = Instant::now();
        loop {
            let mut sync = lock(&self.sync);
            let (sync_due, head_due, shutdown) = loop {
                let sync_due = self.fsync && sync.written > synced;
                let dirty = self.head_dirty.load(Ordering::SeqCst);
                let waited = last_head_write.elapsed();
                let head_due = dirty && (sync.head_now || waited >= HEAD_INTERVAL);
                if sync.shutdown || sync_due || head_due {
                    break (sync_due, head_due, sync.shutdown);
                }
                sync = if dirty {
                    self.wake_sync
                        .wait_timeout(sync, HEAD_INTERVAL - waited)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                } else {
                    self.wake_sync
                        .wait(sync)
                        .unwrap_or_else(PoisonError::into_inner)
                };
            };
            let skip_final_head = sync.skip_final_head;
            if head_due {
                sync.head_now = false;
            }
            if sync_due {
                let target = sync.written;
                let files: Vec<Arc<File>> = std::mem::take(&mut sync.sealed);
                let current = sync.current.clone();
                let dir_dirty = std::mem::take(&mut sync.dir_dirty);
                drop(sync);
                let injected = self.injected(Fault::Sync).map_or(Ok(()), Err);
                let result = injected
                    .and_then(|()| {
                        files
                            .iter()
                            .chain(std::iter::once(&current))
                            .try_for_each(|file| file.sync_data())
                    })
                    .and_then(|()| {
                        if dir_dirty {
                            segment::sync_dir(&self.dir)
                        } else {
                            Ok(())
                        }
                    });
                if let Err(e) = result {
                    crate::telemetry::log_limited!(error, "fsync of the persistent queue failed", dir = %self.dir.display(), error = %e);
                    if dir_dirty {
                        lock(&self.sync).dir_dirty = true;
                    }
                    let mut failures = lock(&self.sync_failures);
                    if failures.len() == MAX_SYNC_FAILURES {
                        failures.pop_front();
                    }
                    failures.push_back(SyncFailure {
                        first: synced + 1,
                        last: target,
                        kind: e.kind(),
                        message: e.to_string(),
                    });
                }
                synced = target;
                self.synced.send_replace(target);
            } else {
                drop(sync);
            }
            if shutdown && skip_final_head {
                return;
            }
            if head_due || (shutdown && self.head_dirty.load(Ordering::SeqCst)) {
                self.write_head(&mut last_head);
                last_head_write = Instant::now();
            }
            if shutdown && !(self.fsync && lock(&self.sync).written > synced) {
                return;
            }
        }
    }

    /// Writes the head if it moved, then deletes the segments wholly behind it.
    fn write_head(&self, last_head: &mut Option<Pos>) {
        self.head_dirty.store(false, Ordering::SeqCst);
        let head = lock(&self.index).head();
        if *last_head == Some(head) {
            return;
        }
        if let Err(e) = segment::write_head(&self.dir, head, self.fsync) {
            crate::telemetry::log_limited!(error, "could not write the persistent queue's head file", dir = %self.dir.display(), error = %e);
            self.head_dirty.store(true, Ordering::SeqCst);
            return;
        }
        *last_head = Some(head);
        let behind = {
            let mut index = lock(&self.index);
            let live = index.segments.split_off(&head.seg);
            std::mem::replace(&mut index.segments, live)
        };
        for id in behind.into_keys() {
            let path = segment::segment_path(&self.dir, id);
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => {
                    let _ = self.bytes_on_disk.fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |b| Some(b.saturating_sub(len)),
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    crate::telemetry::log_limited!(error, "could not delete an acknowledged segment", path = %path.display(), error = %e);
                }
            }
        }
    }
}

/// The state `open` rebuilds from the files.
struct Recovery {
    index: Index,
    writer: Writer,
    recovered: Recovered,
    bytes_on_disk: u64,
}

fn recover(dir: &Path, sizer: Sizer, fsync: bool) -> Result<Recovery, OpenError> {
    let present = segment::list_segments(dir).map_err(io_error(dir))?;
    let head = segment::read_head(dir).map_err(io_error(dir))?;
    let start = match head {
        HeadFile::At(pos) if present.binary_search(&pos.seg).is_ok() => Some(pos),
        HeadFile::At(pos) if !present.is_empty() => {
            tracing::warn!(
                dir = %dir.display(),
                head_segment = pos.seg,
                "the persistent queue's head points into a missing segment; starting from the first segment present"
            );
            None
        }
        HeadFile::Corrupt if !present.is_empty() => {
            tracing::warn!(dir = %dir.display(), "the persistent queue's head file is damaged; starting from the first segment present");
            None
        }
        _ => None,
    };
    let start = start.unwrap_or(Pos {
        seg: present.first().copied().unwrap_or(0),
        offset: 0,
    });

    let mut recovered = Recovered::default();
    let mut segments = BTreeMap::new();
    let mut ready = VecDeque::new();
    let mut bytes_on_disk = 0;
    let mut next_seq = 1;
    let mut last: Option<(u64, Arc<File>, u64)> = None;
    for (i, &id) in present.iter().enumerate() {
        let path = segment::segment_path(dir, id);
        if id < start.seg {
            // Wholly behind the head: left by a crash between the head write and the delete.
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&path)(e)),
                _ => continue,
            }
        }
        let is_last = i + 1 == present.len();
        let file = OpenOptions::new()
            .read(true)
            .write(is_last)
            .open(&path)
            .map_err(io_error(&path))?;
        let from = if id == start.seg { start.offset } else { 0 };
        let scan = segment::scan(&file, from).map_err(io_error(&path))?;
        let mut len = scan.file_len;
        if let Stop::Bad { offset, reason } = scan.stop {
            if is_last {
                // A record cut short by a crash, or garbage after the last one: cut it off and
                // keep appending after the last good record.
                let torn = scan.file_len - offset;
                tracing::warn!(path = %path.display(), offset, torn_bytes = torn, reason, "cutting a torn tail off the persistent queue");
                file.set_len(offset).map_err(io_error(&path))?;
                if fsync {
                    file.sync_all().map_err(io_error(&path))?;
                }
                recovered.torn_tail_bytes += torn;
                len = offset;
            } else {
                tracing::error!(
                    path = %path.display(),
                    offset,
                    reason,
                    "a damaged record in the persistent queue; skipping the rest of its segment"
                );
                recovered.corrupt_records += 1;
            }
        }
        for found in &scan.records {
            ready.push_back(Entry {
                seq: next_seq,
                seg: id,
                offset: found.offset,
                len: found.len,
                items: found.items,
            });
            next_seq += 1;
            recovered.records += 1;
            recovered.items += u64::from(found.items);
            recovered.bytes += u64::from(found.len);
        }
        bytes_on_disk += len;
        if is_last {
            let file = Arc::new(file);
            segments.insert(id, Some(file.clone()));
            last = Some((id, file, len));
        } else {
            segments.insert(id, None);
        }
    }
    let (seg, file, offset) = match last {
        Some(last) => last,
        None => {
            let id = match head {
                HeadFile::At(pos) => pos.seg,
                _ => 0,
            };
            let path = segment::segment_path(dir, id);
            let file = Arc::new(segment::create_segment(dir, id).map_err(io_error(&path))?);
            if fsync {
                segment::sync_dir(dir).map_err(io_error(dir))?;
            }
            segments.insert(id, Some(file.clone()));
            (id, file, 0)
        }
    };
    (&mut &*file)
        .seek(SeekFrom::Start(offset))
        .map_err(io_error(&segment::segment_path(dir, seg)))?;
    let size = ready
        .iter()
        .map(|e| sizer.units(e.items, u64::from(e.len)))
        .sum();
    let index = Index {
        segments,
        ready,
        nacked: BTreeMap::new(),
        in_flight: BTreeMap::new(),
        size,
        tail: Pos { seg, offset },
    };
    let writer = Writer {
        seg,
        file,
        offset,
        next_seq,
        needs_roll: false,
    };
    Ok(Recovery {
        index,
        writer,
        recovered,
        bytes_on_disk,
    })
}
