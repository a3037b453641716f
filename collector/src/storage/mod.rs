//! A persistent FIFO of opaque records: the engine behind `sending_queue.storage:
//! file_storage/NAME`. It knows nothing of spans or configuration: a record is a payload
//! (bytes) and an item count, pushed, handed out, then acknowledged or put back.
//!
//! ```text
//! let (queue, recovered) = DiskQueue::open(dir, options, lock_timeout)?;
//! let written = queue.push(items, &payload)?;      // blocking: from spawn_blocking
//! queue.synced(written.seq).await?;                // with fsync on: durable from here
//! let (id, items, payload) = queue.pop().await?;   // oldest first
//! queue.ack(id);                                   // delivered (or given up): space is reclaimed
//! queue.nack(id);                                  // or: hand it out again, before newer ones
//! ```
//!
//! # On disk
//!
//! A directory holds:
//! - `LOCK`: locked (flock) for as long as a process has the queue open; a second open waits
//!   up to its timeout, then fails naming the directory.
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segment files, a zero-padded `u64` id, increasing. Records are
//!   only ever appended, to the last segment; past `max_segment_bytes` the writer starts the
//!   next one.
//! - `head`: where the oldest unacknowledged record is (24 bytes: magic `WQH1`, segment id,
//!   offset, crc32 of those).
//!
//! A record is `[u32 payload length][u32 crc32 of (items ‖ payload)][u32 items][payload]`, all
//! little-endian, written with one writev(2). A length over 1 GiB is taken as corruption.
//!
//! # The head
//!
//! Consumers acknowledge out of order (several send at once), so the queue keeps an index of
//! record positions in memory (no payloads: a record is read back with pread when handed out)
//! and the head is the oldest record still not handed out, put back, or in flight. A background
//! thread writes the head at most every 100 ms while acks arrive, and on close and drop
//! (`head.tmp`, then rename), never ahead of an unacknowledged record; only then does it delete
//! the segments wholly behind it. A stale head only means re-delivery: on open every record
//! from the head on is pending again, including ones acknowledged out of order after the last
//! head write. Delivery is at least once, never lost.
//!
//! # Recovery
//!
//! `open` reads the head (missing or damaged: start from the first segment present; pointing
//! into a deleted segment: the same), deletes segments behind it, and scans the rest, checking
//! every record's length and checksum:
//! - a bad record in the last segment is a torn tail (a write cut short by a crash, or garbage
//!   after it): the segment is truncated there (`torn_tail_bytes`) and appending resumes after
//!   the last good record;
//! - a bad record in an older segment ends that segment (one `corrupt_records`); the next
//!   segment is read as usual.
//!
//! A record damaged after it was scanned fails its checksum when handed out: it is logged,
//! counted, acknowledged and skipped, so it never blocks the queue (as is one whose segment
//! vanished, or that still cannot be read after a few retries). This is the approach of
//! Vector's disk buffer: checksummed records, and a damaged tail detected and dropped rather
//! than allowed to poison what comes after it.
//!
//! # Durability: the fsync policy
//!
//! When `push` returns, the record has been written to the file with write(2): it survives the
//! process being killed (kill -9, a panic, the OOM killer) because the kernel holds it. A crash
//! of the machine or a power cut can lose what the disk had not been told to keep; with
//! `fsync: true` a record is durable once `synced(seq)` resolves. That is group commit: the
//! background thread fsyncs as soon as anything is unsynced, one fsync covering every record
//! written before it, so under load fsyncs run back to back, each amortized over many records,
//! and an idle queue does no fsync at all. Truncations, new segments (the directory) and head
//! writes are fsynced too when the option is on.
//!
//! A failed write in `push` (a full disk) is cut back out of the segment before the error is
//! returned, so the queue stays readable and the next push can succeed once there is room. If
//! even the cut fails, the segment is sealed and writing goes on in a new one; the half record
//! left at the end of the sealed segment is counted as one corrupt record by the next open
//! (the records before it are kept).
//!
//! # Resources
//!
//! Memory: the index holds 32 bytes per pending record and no payloads; `pop` reads one
//! record at a time (on tokio's blocking pool). Descriptors: the segment being written and the
//! few last read are kept open, others are opened when the reader reaches them, so a long
//! queue of small segments does not run into the process's file limit. Disk: segments wholly
//! behind the head are deleted; the one being written stays, so an empty queue may keep up to
//! `max_segment_bytes` on disk until the next segment starts.
//!
//! # Capacity
//!
//! Bounded in [`Sizer`] units: records, the caller's item counts, or payload bytes. A record
//! counts from its push to its ack, across opens (the scan restores the size). A push that
//! would pass the capacity is refused ([`PushError::Full`], which a sending queue turns into a
//! retryable refusal upstream), except into an empty queue, so a single record larger than the
//! capacity is never refused forever.

mod queue;
mod segment;
mod store;
#[cfg(test)]
mod tests;

pub use queue::{
    DEFAULT_SEGMENT_BYTES, DiskQueue, OpenError, PushError, QueueOptions, RecordId, Recovered,
    Sizer, Stats, Written,
};
pub use store::Store;
