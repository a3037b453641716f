use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::queue;
use super::segment::{self, HEADER_LEN};
use super::*;

const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

fn options(capacity: u64, sizer: Sizer) -> QueueOptions {
    QueueOptions {
        capacity,
        sizer,
        fsync: false,
        max_segment_bytes: DEFAULT_SEGMENT_BYTES,
    }
}

fn unbounded() -> QueueOptions {
    options(u64::MAX, Sizer::Requests)
}

/// Segments of `per_segment` records of `len`-byte payloads each.
fn small_segments(per_segment: u64, len: usize) -> QueueOptions {
    QueueOptions {
        max_segment_bytes: per_segment * (HEADER_LEN + len as u64),
        ..unbounded()
    }
}

fn open(dir: &Path, options: QueueOptions) -> (DiskQueue, Recovered) {
    DiskQueue::open(dir, options, LOCK_TIMEOUT).expect("the queue opens")
}

/// A payload that names itself: `n` in the first 8 bytes, then `len - 8` bytes derived from it.
fn payload(n: u64, len: usize) -> Vec<u8> {
    let mut bytes = n.to_le_bytes().to_vec();
    bytes.extend((0..len.saturating_sub(8)).map(|i| (n as usize * 31 + i) as u8));
    bytes.truncate(len.max(8));
    bytes
}

fn number(bytes: &[u8]) -> u64 {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    assert_eq!(
        bytes,
        payload(n, bytes.len()).as_slice(),
        "payload {n} read back intact"
    );
    n
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pops `n` records and returns (id, items, number in the payload).
async fn pop_n(queue: &DiskQueue, n: usize) -> Vec<(RecordId, u32, u64)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (id, items, payload) = queue.pop().await.expect("a record");
        out.push((id, items, number(&payload)));
    }
    out
}

/// Closes the queue and pops everything left to hand out.
async fn drain(queue: &DiskQueue) -> Vec<u64> {
    queue.close();
    let mut out = Vec::new();
    while let Some((_, _, payload)) = queue.pop().await {
        out.push(number(&payload));
    }
    out
}

fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open segment");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).expect("read byte");
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, offset).expect("write byte");
}

#[tokio::test]
async fn push_pop_ack_keeps_fifo_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, recovered) = open(dir.path(), unbounded());
    assert_eq!(recovered, Recovered::default());
    for n in 0..5 {
        assert_eq!(
            queue
                .push(n as u32 + 1, &payload(n, 100))
                .expect("push")
                .seq,
            n + 1
        );
    }
    assert_eq!(queue.stats().size, 5);
    let popped = pop_n(&queue, 5).await;
    assert_eq!(
        popped.iter().map(|p| p.2).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(
        popped.iter().map(|p| p.1).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        queue.stats().size,
        5,
        "handed out is still pending until acked"
    );
    for (id, _, _) in popped {
        queue.ack(id);
        queue.ack(id); // a second ack changes nothing
    }
    assert_eq!(queue.stats().size, 0);
    drop(queue);
    let (queue, recovered) = open(dir.path(), unbounded());
    assert_eq!(recovered.records, 0, "acked records do not come back");
    assert!(drain(&queue).await.is_empty());
}

#[tokio::test]
async fn a_waiting_pop_is_woken_by_a_push() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = open(dir.path(), unbounded());
    let queue = Arc::new(queue);
    let waiter = tokio::spawn({
        let queue = queue.clone();
        async move { queue.pop().await.map(|(_, _, p)| number(&p)) }
    });
    tokio::task::yield_now().await;
    let pusher = queue.clone();
    tokio::task::spawn_blocking(move || pusher.push(1, &payload(7, 20)))
        .await
        .expect("join")
        .expect("push");
    assert_eq!(waiter.await.expect("join"), Some(7));
}

#[tokio::test]
async fn out_of_order_acks_then_reopen_return_everything_from_the_head_on() {
    for crash in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (queue, _) = open(dir.path(), small_segments(4, 64));
        for n in 0..10 {
            queue.push(1, &payload(n, 64)).expect("push");
        }
        let popped = pop_n(&queue, 10).await;
        let acked = [0, 1, 2, 5, 7, 8];
        for &n in &acked {
            queue.ack(popped[n].0);
        }
        assert_eq!(queue.stats().size, 4);
        if crash {
            queue.crash();
        } else {
            drop(queue);
        }
        let (queue, recovered) = open(dir.path(), small_segments(4, 64));
        let back = drain(&queue).await;
        assert_eq!(recovered.records, back.len() as u64);
        if crash {
            // The head was written at most once after the acks of 0..3 (which moved it to 3),
            // or not at all: either way a suffix comes back, with every unacked record.
            let all: Vec<u64> = (0..10).collect();
            assert!(back == all || back == all[3..], "crash: {back:?}");
        } else {
            // The head stops at the oldest unacked record (3); later acks are delivered again.
            assert_eq!(back, (3..10).collect::<Vec<_>>());
            assert_eq!(recovered.items, 7);
            assert_eq!(recovered.bytes, 7 * 64);
            assert_eq!(queue.stats().size, 7, "the size is restored by the scan");
        }
    }
}

#[tokio::test]
async fn nack_hands_the_record_out_again_before_newer_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = open(dir.path(), unbounded());
    for n in 0..4 {
        queue.push(1, &payload(n, 16)).expect("push");
    }
    let first = pop_n(&queue, 3).await;
    queue.nack(first[2].0);
    queue.nack(first[0].0);
    let again = pop_n(&queue, 3).await;
    assert_eq!(
        again.iter().map(|p| p.2).collect::<Vec<_>>(),
        vec![0, 2, 3],
        "nacked first, oldest first"
    );
    assert_eq!(again[0].0, first[0].0, "the same record id");
    for (id, _, _) in again.into_iter().chain([first[1]]) {
        queue.ack(id);
    }
    assert_eq!(queue.stats().size, 0);
}

#[tokio::test]
async fn capacity_is_counted_in_each_sizer() {
    // (sizer, capacity, pushes as (items, payload bytes) that fit exactly, one more that does not)
    let cases = [
        (Sizer::Requests, 3, vec![(5, 10), (5, 10), (5, 10)], (1, 1)),
        (Sizer::Items, 10, vec![(6, 10), (4, 10)], (1, 10)),
        (Sizer::Bytes, 100, vec![(1, 60), (1, 40)], (1, 1)),
    ];
    for (sizer, capacity, fits, over) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let (queue, _) = open(dir.path(), options(capacity, sizer));
        for (i, &(items, len)) in fits.iter().enumerate() {
            queue
                .push(items, &payload(i as u64, len))
                .unwrap_or_else(|e| panic!("{sizer:?}: push {i}: {e}"));
        }
        assert_eq!(queue.stats().size, capacity, "{sizer:?}");
        match queue.push(over.0, &payload(99, over.1)) {
            Err(PushError::Full { capacity: c }) => assert_eq!(c, capacity),
            other => panic!("{sizer:?}: expected Full, got {other:?}"),
        }
        // Acking the oldest makes room.
        let (id, _, _) = queue.pop().await.expect("record");
        queue.ack(id);
        queue
            .push(over.0, &payload(99, over.1))
            .unwrap_or_else(|e| panic!("{sizer:?}: after an ack: {e}"));
        let size = queue.stats().size;
        drop(queue);
        let (queue, _) = open(dir.path(), options(capacity, sizer));
        assert_eq!(
            queue.stats().size,
            size,
            "{sizer:?}: the size survives a reopen"
        );
    }
}

#[tokio::test]
async fn an_oversize_record_is_accepted_into_an_empty_queue_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = open(dir.path(), options(10, Sizer::Bytes));
    queue
        .push(1, &payload(0, 50))
        .expect("an empty queue takes a record over its capacity");
    assert_eq!(queue.stats().size, 50);
    assert!(matches!(
        queue.push(1, &payload(1, 8)),
        Err(PushError::Full { capacity: 10 })
    ));
    let (id, _, _) = queue.pop().await.expect("record");
    assert!(
        matches!(queue.push(1, &payload(1, 8)), Err(PushError::Full { .. })),
        "in flight still counts"
    );
    queue.ack(id);
    queue.push(1, &payload(2, 50)).expect("empty again");
}

#[tokio::test]
async fn segments_roll_and_are_deleted_once_acked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = HEADER_LEN + 50;
    let (queue, _) = open(dir.path(), small_segments(3, 50));
    for n in 0..12 {
        queue.push(1, &payload(n, 50)).expect("push");
    }
    assert_eq!(segment_files(dir.path()).len(), 4, "3 records a segment");
    assert_eq!(queue.stats().bytes_on_disk, 12 * record);
    let popped = pop_n(&queue, 12).await;
    // Acks out of order: nothing can go while record 0 is pending.
    for (id, _, _) in &popped[1..6] {
        queue.ack(*id);
    }
    queue.ack(popped[0].0);
    wait_until("the two segments behind the head are deleted", || {
        segment_files(dir.path()).len() == 2
    })
    .await;
    assert_eq!(queue.stats().bytes_on_disk, 6 * record);
    for (id, _, _) in &popped[6..] {
        queue.ack(*id);
    }
    wait_until("only the segment written to is left", || {
        segment_files(dir.path()).len() == 1
    })
    .await;
    drop(queue);

    // A segment behind the head left over by a crash is deleted at open, never read.
    let stale = segment::segment_path(dir.path(), 0);
    fs::write(&stale, b"garbage").expect("write stale segment");
    let (queue, recovered) = open(dir.path(), small_segments(3, 50));
    assert_eq!(recovered, Recovered::default());
    assert!(!stale.exists());
    queue.push(1, &payload(12, 50)).expect("push after");
    assert_eq!(drain(&queue).await, vec![12]);
}

#[tokio::test]
async fn an_emptied_queue_starts_a_new_segment_and_frees_the_old_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = HEADER_LEN + 50;
    // Room for 8 records a segment: 2 already pass a quarter of it.
    let (queue, _) = open(dir.path(), small_segments(8, 50));
    for n in 0..2 {
        queue.push(1, &payload(n, 50)).expect("push");
    }
    for (id, _, _) in pop_n(&queue, 2).await {
        queue.ack(id);
    }
    let old = segment_files(dir.path());
    assert_eq!(old.len(), 1);
    queue
        .push(1, &payload(2, 50))
        .expect("push into the emptied queue");
    wait_until("the emptied segment is deleted", || {
        let files = segment_files(dir.path());
        files.len() == 1 && files != old
    })
    .await;
    assert_eq!(queue.stats().bytes_on_disk, record);
    assert_eq!(drain(&queue).await, vec![2]);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_appending_resumes_after_it() {
    const RECORD: u64 = HEADER_LEN + 40;
    // (what is done to the last segment, records left, torn bytes)
    type Damage = fn(&Path);
    let cases: [(&str, Damage, u64, u64); 4] = [
        ("cut mid-payload", |p| cut(p, 7), 2, RECORD - 7),
        ("cut mid-header", |p| cut(p, RECORD - 5), 2, 5),
        ("garbage appended", |p| append(p, &[0xab; 100]), 3, 100),
        (
            "a header whose length runs past the end",
            |p| append(p, &[0xff, 0xff, 0, 0, 1, 2, 3, 4, 1, 0, 0, 0, 9]),
            3,
            13,
        ),
    ];
    fn cut(path: &Path, by: u64) {
        let file = OpenOptions::new().write(true).open(path).expect("open");
        let len = file.metadata().expect("meta").len();
        file.set_len(len - by).expect("truncate");
    }
    fn append(path: &Path, bytes: &[u8]) {
        use std::io::Write;
        OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open")
            .write_all(bytes)
            .expect("append");
    }
    for (what, damage, left, torn) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let (queue, _) = open(dir.path(), small_segments(5, 40));
        for n in 0..8 {
            queue.push(1, &payload(n, 40)).expect("push");
        }
        queue.crash();
        let files = segment_files(dir.path());
        assert_eq!(files.len(), 2, "{what}");
        damage(&files[1]);
        let (queue, recovered) = open(dir.path(), small_segments(5, 40));
        assert_eq!(recovered.records, 5 + left, "{what}");
        assert_eq!(recovered.torn_tail_bytes, torn, "{what}");
        assert_eq!(
            recovered.corrupt_records, 0,
            "{what}: a torn tail is not a corrupt record"
        );
        assert_eq!(
            fs::metadata(&files[1]).expect("meta").len(),
            left * RECORD,
            "{what}: cut at the last good record"
        );
        for n in 100..103 {
            queue.push(1, &payload(n, 40)).expect("push after recovery");
        }
        let expected: Vec<u64> = (0..5 + left).chain(100..103).collect();
        let (id, _, _) = queue.pop().await.expect("first");
        queue.nack(id);
        queue.crash();
        // The file is whole again: a second open finds every record, nothing torn.
        let (queue, recovered) = open(dir.path(), small_segments(5, 40));
        assert_eq!(
            (recovered.torn_tail_bytes, recovered.corrupt_records),
            (0, 0),
            "{what}"
        );
        assert_eq!(drain(&queue).await, expected, "{what}");
    }
}

#[tokio::test]
async fn a_damaged_record_in_an_older_segment_skips_the_rest_of_that_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = HEADER_LEN + 30;
    let (queue, _) = open(dir.path(), small_segments(3, 30));
    for n in 0..9 {
        queue.push(1, &payload(n, 30)).expect("push");
    }
    drop(queue);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3);
    // A payload byte of record 1, in the first segment.
    flip_byte(&files[0], record + HEADER_LEN + 10);
    let (queue, recovered) = open(dir.path(), small_segments(3, 30));
    assert_eq!(recovered.corrupt_records, 1);
    assert_eq!(recovered.torn_tail_bytes, 0);
    assert_eq!(recovered.records, 7);
    assert_eq!(queue.stats().corrupt_records, 1);
    assert_eq!(drain(&queue).await, vec![0, 3, 4, 5, 6, 7, 8]);
}

#[tokio::test]
async fn a_record_damaged_after_open_is_skipped_when_handed_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = HEADER_LEN + 30;
    let (queue, _) = open(dir.path(), unbounded());
    for n in 0..3 {
        queue.push(1, &payload(n, 30)).expect("push");
    }
    flip_byte(&segment_files(dir.path())[0], record + HEADER_LEN + 3);
    let popped = pop_n(&queue, 2).await;
    assert_eq!(popped.iter().map(|p| p.2).collect::<Vec<_>>(), vec![0, 2]);
    let stats = queue.stats();
    assert_eq!(stats.corrupt_records, 1);
    assert_eq!(stats.size, 2, "the damaged record was acked");
}

#[tokio::test]
async fn a_damaged_or_missing_head_file_starts_from_the_first_segment() {
    for remove in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (queue, _) = open(dir.path(), small_segments(3, 20));
        for n in 0..6 {
            queue.push(1, &payload(n, 20)).expect("push");
        }
        for (id, _, _) in pop_n(&queue, 2).await {
            queue.ack(id);
        }
        drop(queue);
        let head = segment::head_path(dir.path());
        if remove {
            fs::remove_file(&head).expect("remove head");
        } else {
            flip_byte(&head, 6);
        }
        let (queue, recovered) = open(dir.path(), small_segments(3, 20));
        assert_eq!(
            recovered.records, 6,
            "remove={remove}: re-delivered, never lost"
        );
        assert_eq!(drain(&queue).await, (0..6).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fsync_synced_resolves_for_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = QueueOptions {
        fsync: true,
        ..small_segments(20, 100)
    };
    let (queue, _) = open(dir.path(), options.clone());
    let queue = Arc::new(queue);
    let mut tasks = Vec::new();
    for n in 0..50 {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let pusher = queue.clone();
            let written = tokio::task::spawn_blocking(move || pusher.push(1, &payload(n, 100)))
                .await
                .expect("join")
                .expect("push");
            queue.synced(written.seq).await.expect("synced");
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(segment_files(dir.path()).len(), 3, "rolled twice");
    let mut back = pop_n(&queue, 50)
        .await
        .into_iter()
        .map(|p| p.2)
        .collect::<Vec<_>>();
    back.sort_unstable();
    assert_eq!(back, (0..50).collect::<Vec<_>>());
    drop(queue);
    let (queue, recovered) = open(dir.path(), options);
    assert_eq!(recovered.records, 50);
    assert!(
        queue.synced(50).await.is_ok(),
        "recovered records count as synced"
    );
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_fails_after_the_lock_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = open(dir.path(), unbounded());
    let started = Instant::now();
    let err =
        DiskQueue::open(dir.path(), unbounded(), Duration::from_millis(200)).expect_err("locked");
    assert!(started.elapsed() >= Duration::from_millis(200), "it waited");
    assert!(matches!(err, OpenError::Locked { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "names the directory: {message}"
    );
    drop(first);
    open(dir.path(), unbounded());
}

#[tokio::test]
async fn close_drains_what_is_left_then_pop_returns_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = open(dir.path(), unbounded());
    let queue = Arc::new(queue);
    for n in 0..3 {
        queue.push(1, &payload(n, 20)).expect("push");
    }
    let mut popped = pop_n(&queue, 3).await;
    let held = popped.pop().expect("three popped");
    let waiter = tokio::spawn({
        let queue = queue.clone();
        async move { queue.pop().await.is_none() }
    });
    tokio::task::yield_now().await;
    queue.close();
    assert!(
        waiter.await.expect("join"),
        "a waiting pop returns None on close"
    );
    assert!(matches!(
        queue.push(1, &payload(9, 20)),
        Err(PushError::Closed)
    ));
    for (id, _, _) in popped {
        queue.ack(id); // acks still count after close
    }
    assert_eq!(queue.stats().size, 1);
    drop(queue);
    let (queue, recovered) = open(dir.path(), unbounded());
    assert_eq!(
        recovered.records, 1,
        "the record handed out and never acked is still there"
    );
    assert_eq!(drain(&queue).await, vec![held.2]);
}

#[tokio::test]
async fn close_lets_pop_hand_out_what_was_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = open(dir.path(), unbounded());
    for n in 0..3 {
        queue.push(1, &payload(n, 20)).expect("push");
    }
    assert_eq!(drain(&queue).await, vec![0, 1, 2]);
    assert!(queue.pop().await.is_none());
}

/// One step of the random sequences below.
#[derive(Debug, Clone)]
enum Op {
    Push { items: u32, len: usize },
    Pop,
    Ack(usize),
    Nack(usize),
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u32..40, 8usize..200).prop_map(|(items, len)| Op::Push { items, len }),
        4 => Just(Op::Pop),
        3 => any::<usize>().prop_map(Op::Ack),
        1 => any::<usize>().prop_map(Op::Nack),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    InFlight(RecordId),
    Nacked(RecordId),
    Acked,
}

#[derive(Debug)]
struct Rec {
    n: u64,
    items: u32,
    state: State,
}

const MODEL_CAPACITY: u64 = 150;

fn model_options() -> QueueOptions {
    QueueOptions {
        max_segment_bytes: 400,
        ..options(MODEL_CAPACITY, Sizer::Items)
    }
}

/// After a (re)open: everything the queue hands out is a suffix of what the model still holds
/// in push order, covering every unacked record; it becomes the model.
async fn check_reopened(
    queue: &DiskQueue,
    recovered: Recovered,
    live: &mut Vec<Rec>,
) -> Result<(), TestCaseError> {
    let back = pop_n(queue, recovered.records as usize).await;
    prop_assert!(
        back.len() <= live.len(),
        "more records than were pushed: {} > {}",
        back.len(),
        live.len()
    );
    let skipped = live.len() - back.len();
    for rec in &live[..skipped] {
        prop_assert_eq!(rec.state, State::Acked, "record {} was lost", rec.n);
    }
    live.drain(..skipped);
    for (rec, (id, items, n)) in live.iter_mut().zip(&back) {
        prop_assert_eq!((rec.n, rec.items), (*n, *items), "FIFO order after reopen");
        queue.nack(*id);
        rec.state = State::Nacked(*id);
    }
    Ok(())
}

fn run_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut queue, _) = open(dir.path(), model_options());
        let mut live: Vec<Rec> = Vec::new();
        let mut next = 0u64;
        for op in ops {
            let size: u64 = live
                .iter()
                .filter(|r| r.state != State::Acked)
                .map(|r| u64::from(r.items))
                .sum();
            match op {
                Op::Push { items, len } => {
                    let result = queue.push(items, &payload(next, len));
                    if size > 0 && size + u64::from(items) > MODEL_CAPACITY {
                        prop_assert!(
                            matches!(result, Err(PushError::Full { .. })),
                            "expected Full: {result:?}"
                        );
                    } else {
                        prop_assert!(result.is_ok(), "push refused: {result:?}");
                        live.push(Rec {
                            n: next,
                            items,
                            state: State::Ready,
                        });
                        next += 1;
                    }
                }
                Op::Pop => {
                    let expected = live
                        .iter()
                        .position(|r| matches!(r.state, State::Nacked(_)))
                        .or_else(|| live.iter().position(|r| r.state == State::Ready));
                    if let Some(i) = expected {
                        let (id, items, bytes) = queue.pop().await.expect("a record");
                        prop_assert_eq!((number(&bytes), items), (live[i].n, live[i].items));
                        if let State::Nacked(old) = live[i].state {
                            prop_assert_eq!(old, id);
                        }
                        live[i].state = State::InFlight(id);
                    }
                }
                Op::Ack(k) | Op::Nack(k) => {
                    let in_flight: Vec<usize> = (0..live.len())
                        .filter(|&i| matches!(live[i].state, State::InFlight(_)))
                        .collect();
                    if !in_flight.is_empty() {
                        let i = in_flight[k % in_flight.len()];
                        let State::InFlight(id) = live[i].state else {
                            unreachable!()
                        };
                        if matches!(op, Op::Ack(_)) {
                            queue.ack(id);
                            live[i].state = State::Acked;
                        } else {
                            queue.nack(id);
                            live[i].state = State::Nacked(id);
                        }
                    }
                }
                Op::Reopen | Op::Crash => {
                    if matches!(op, Op::Crash) {
                        queue.crash();
                    } else {
                        drop(queue);
                    }
                    let (reopened, recovered) = open(dir.path(), model_options());
                    queue = reopened;
                    check_reopened(&queue, recovered, &mut live).await?;
                }
            }
            let size: u64 = live
                .iter()
                .filter(|r| r.state != State::Acked)
                .map(|r| u64::from(r.items))
                .sum();
            prop_assert_eq!(queue.stats().size, size, "size after {:?}", op);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_lose_nothing_and_keep_order(ops in proptest::collection::vec(op(), 1..80)) {
        run_model(ops)?;
    }
}

#[test]
fn the_queue_and_its_futures_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = open(dir.path(), unbounded());
    send_sync(&queue);
    send(&queue.pop());
    send(&queue.synced(1));
}

#[tokio::test]
async fn a_failed_write_leaves_the_queue_whole() {
    // (what fails, segment files after the failed push, damaged records found by the next open)
    type Inject = fn(&mut queue::Faults);
    let cases: [(&str, Inject, usize, u64); 3] = [
        ("a short write, cut away", |f| f.short_writes = 1, 1, 0),
        (
            "a short write that cannot be cut away: the segment is sealed",
            |f| (f.short_writes, f.failed_truncates) = (1, 1),
            2,
            1,
        ),
        (
            "nor can a new segment be created until the next push",
            |f| (f.short_writes, f.failed_truncates, f.failed_creates) = (1, 1, 1),
            1,
            1,
        ),
    ];
    for (what, inject, files_after, corrupt) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let (queue, _) = open(dir.path(), unbounded());
        for n in 0..2 {
            queue.push(1, &payload(n, 100)).expect("push");
        }
        queue.inject(inject);
        match queue.push(1, &payload(2, 100)) {
            Err(PushError::Io(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{what}")
            }
            other => panic!("{what}: expected an I/O error, got {other:?}"),
        }
        assert_eq!(
            queue.stats().size,
            2,
            "{what}: the failed record is not counted"
        );
        assert_eq!(segment_files(dir.path()).len(), files_after, "{what}");
        queue
            .push(1, &payload(3, 100))
            .unwrap_or_else(|e| panic!("{what}: the next push: {e}"));
        let popped = pop_n(&queue, 3).await;
        assert_eq!(
            popped.iter().map(|p| p.2).collect::<Vec<_>>(),
            vec![0, 1, 3],
            "{what}"
        );
        assert_eq!(queue.stats().corrupt_records, 0, "{what}");
        for (id, _, _) in &popped[..1] {
            queue.ack(*id);
        }
        queue.crash();
        let (queue, recovered) = open(dir.path(), unbounded());
        assert_eq!(recovered.torn_tail_bytes, 0, "{what}");
        // A sealed segment still holds the half record after its last good one.
        assert_eq!(recovered.corrupt_records, corrupt, "{what}");
        let back = drain(&queue).await;
        assert!(back == [0, 1, 3] || back == [1, 3], "{what}: {back:?}");
    }
}

#[tokio::test]
async fn a_pop_dropped_mid_read_puts_its_record_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = open(dir.path(), unbounded());
    for n in 0..2 {
        queue.push(1, &payload(n, 100_000)).expect("push");
    }
    let mut cancelled = false;
    for _ in 0..100 {
        let mut pop = Box::pin(queue.pop());
        match futures::poll!(pop.as_mut()) {
            std::task::Poll::Pending => {
                drop(pop); // taken from the queue, its read still running
                cancelled = true;
                break;
            }
            // The read finished within the first poll: put it back and try again.
            std::task::Poll::Ready(Some((id, _, _))) => queue.nack(id),
            std::task::Poll::Ready(None) => panic!("the queue is open"),
        }
    }
    assert!(cancelled, "never caught a pop mid-read");
    let popped = pop_n(&queue, 2).await;
    assert_eq!(popped.iter().map(|p| p.2).collect::<Vec<_>>(), vec![0, 1]);
}

#[tokio::test]
async fn a_long_queue_keeps_few_segment_files_open() {
    fn open_segment_descriptors(dir: &Path) -> usize {
        let dir = dir.canonicalize().expect("canonical dir");
        fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .filter_map(|e| fs::read_link(e.expect("fd").path()).ok())
            .filter(|target| {
                target.starts_with(&dir) && target.extension().is_some_and(|e| e == "seg")
            })
            .count()
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = open(dir.path(), small_segments(2, 20));
    for n in 0..100 {
        queue.push(1, &payload(n, 20)).expect("push");
    }
    assert_eq!(segment_files(dir.path()).len(), 50);
    assert!(
        open_segment_descriptors(dir.path()) <= 2,
        "rolled-away segments are closed"
    );
    let popped = pop_n(&queue, 100).await;
    assert_eq!(
        popped.iter().map(|p| p.2).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>()
    );
    assert!(
        open_segment_descriptors(dir.path()) <= 6,
        "readers keep a few handles"
    );
    queue.crash();
    let (queue, recovered) = open(dir.path(), small_segments(2, 20));
    assert_eq!(recovered.records, 100);
    assert!(
        open_segment_descriptors(dir.path()) <= 1,
        "recovery closes what it scanned"
    );
    assert_eq!(drain(&queue).await, (0..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_failed_fsync_is_reported_to_the_records_it_covered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = open(
        dir.path(),
        QueueOptions {
            fsync: true,
            ..unbounded()
        },
    );
    queue.inject(|f| f.failed_syncs = 1);
    let first = queue.push(1, &payload(0, 20)).expect("push");
    let err = queue.synced(first.seq).await.expect_err("its fsync failed");
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    let second = queue.push(1, &payload(1, 20)).expect("push");
    queue
        .synced(second.seq)
        .await
        .expect("the next fsync succeeds");
    assert!(
        queue.synced(first.seq).await.is_err(),
        "the failure is remembered"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_read_is_retried_and_a_missing_segment_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = open(dir.path(), small_segments(2, 20));
    for n in 0..6 {
        queue.push(1, &payload(n, 20)).expect("push");
    }
    queue.inject(|f| f.failed_reads = 2);
    let first = pop_n(&queue, 1).await;
    assert_eq!(first[0].2, 0, "the record is read once the failures pass");
    assert_eq!(queue.stats().corrupt_records, 0);
    // Segment 1 (records 2 and 3) removed behind the queue's back: skipped, counted.
    fs::remove_file(segment::segment_path(dir.path(), 1)).expect("remove segment");
    let rest = pop_n(&queue, 3).await;
    assert_eq!(rest.iter().map(|p| p.2).collect::<Vec<_>>(), vec![1, 4, 5]);
    assert_eq!(queue.stats().corrupt_records, 2);
    queue.inject(|f| f.failed_reads = 100);
    queue.push(1, &payload(6, 20)).expect("push");
    queue.close();
    assert!(
        queue.pop().await.is_none(),
        "a record that never reads is given up, not retried forever"
    );
    assert_eq!(queue.stats().corrupt_records, 3);
}
