//! The `file` exporter across restarts, with real `wasmcol` processes: a restart after SIGTERM
//! keeps the spans of both runs (the old file moved aside as a rotation backup, or appended
//! to), and a restart after kill -9 with a torn last record cuts the fragment off and appends
//! after it, so the file reads cleanly to its end.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use wasmcol::exporters::file::{Compression, Format, complete_len};
use wasmcol_tests::{
    Collector, file_pipeline_config, free_port, json_lines_span_ids, length_prefixed_span_ids,
    spans_request, wait_until,
};

/// Spans per run, as in the report that opened the issue.
const N: u64 = 1_100;
/// Spans per request.
const PER_REQUEST: u64 = 100;

/// otlp → batch → file at `path` (rotation on, as configs/default.yaml) with `file_extra`
/// lines under `exporters.file`; returns the collector and its gRPC port.
fn start(path: &Path, file_extra: &str) -> (Collector, u16) {
    start_wrapped(path, file_extra, &[])
}

/// [`start`] through a wrapper command (see [`Collector::start_wrapped`]).
fn start_wrapped(path: &Path, file_extra: &str, wrapper: &[&str]) -> (Collector, u16) {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let base = file_pipeline_config(grpc, http, metrics, "batch", "");
    let original = "    path: \"{dir}/out.jsonl\"\n";
    assert!(
        base.contains(original),
        "file_pipeline_config changed:\n{base}"
    );
    let config = base.replace(
        original,
        &format!(
            "    path: \"{}\"\n    rotation:\n      max_megabytes: 100\n      max_backups: 5\n{file_extra}",
            path.display()
        ),
    );
    (Collector::start_wrapped(&config, http, &[], wrapper), grpc)
}

/// Sends spans `first..first + n` over gRPC, `PER_REQUEST` at a time; every request must be
/// acknowledged.
async fn send(grpc: u16, trace: u8, first: u64, n: u64) {
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect gRPC");
    for start in (first..first + n).step_by(PER_REQUEST as usize) {
        let count = PER_REQUEST.min(first + n - start) as usize;
        client
            .export(spans_request(trace, start, count, 64))
            .await
            .unwrap_or_else(|e| panic!("spans {start}..+{count} refused: {e}"));
    }
}

/// The output files for `path` in its directory: the current file and its backups.
fn outputs(path: &Path) -> Vec<PathBuf> {
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let mut files: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(stem.as_str())
        })
        .collect();
    files.sort();
    files
}

/// Span ids in one output file, which must read cleanly to its end.
fn clean_ids(file: &Path, format: Format, compression: Compression) -> Vec<u64> {
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(
        complete_len(&bytes, format, compression),
        bytes.len(),
        "{} has a torn or unreadable tail",
        file.display()
    );
    match (format, compression) {
        (Format::Json, Compression::None) => json_lines_span_ids(&bytes),
        _ => length_prefixed_span_ids(&bytes, format, compression),
    }
}

/// `(start, end)` of each whole length-prefixed record in `bytes`, up to a torn one.
fn framed_records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset + 4 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        if offset + 4 + len > bytes.len() {
            break;
        }
        out.push((offset, offset + 4 + len));
        offset += 4 + len;
    }
    out
}

/// 1,100 spans acknowledged, SIGTERM, a second start on the same path, 1,100 more, SIGTERM:
/// the output holds all 2,200, each once.
async fn restart_after_sigterm(append: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traces.jsonl");
    // A look-alike in the same directory that rotation must never count or delete.
    let look_alike = dir.path().join("traces-notes.jsonl");
    std::fs::write(&look_alike, b"not a backup\n").unwrap();
    let extra = format!("    append: {append}\n");

    let (mut first, grpc) = start(&path, &extra);
    send(grpc, 1, 1, N).await;
    assert_eq!(first.stop(), 0, "first run:\n{}", first.log());
    let first_ids = clean_ids(&path, Format::Json, Compression::None);
    assert_eq!(
        first_ids.len() as u64,
        N,
        "first run wrote {}",
        first_ids.len()
    );

    let (mut second, grpc) = start(&path, &extra);
    let expected_log = if append {
        "appending to the existing file"
    } else {
        "moved the existing file aside"
    };
    assert!(
        second.wait_for_log_line(&[expected_log], Duration::from_secs(5)),
        "second start did not log {expected_log:?}:\n{}",
        second.log()
    );
    send(grpc, 1, N + 1, N).await;
    assert_eq!(second.stop(), 0, "second run:\n{}", second.log());

    let files = outputs(&path);
    let expected_files = if append { 2 } else { 3 }; // (backup,) current file, look-alike
    assert_eq!(files.len(), expected_files, "{files:?}");
    let mut ids = Vec::new();
    for f in files.iter().filter(|f| **f != look_alike) {
        ids.extend(clean_ids(f, Format::Json, Compression::None));
    }
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    let missing: Vec<u64> = (1..=2 * N).filter(|i| !distinct.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} spans missing after the restart (e.g. {:?}); files {files:?}",
        missing.len(),
        2 * N,
        &missing[..missing.len().min(10)]
    );
    assert_eq!(ids.len() as u64, 2 * N, "duplicates in the output");
    assert_eq!(
        std::fs::read(&look_alike).unwrap(),
        b"not a backup\n",
        "the look-alike was touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigterm_moves_the_old_file_to_a_backup() {
    restart_after_sigterm(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigterm_appends_with_append_true() {
    restart_after_sigterm(true).await;
}

/// `exporters.file` lines for a `format: proto` file with `append: true`.
fn proto_append(compression: Compression) -> String {
    format!(
        "    format: proto\n    compression: {}\n    append: true\n",
        match compression {
            Compression::None => "none",
            Compression::Zstd => "zstd",
        }
    )
}

/// Starts a collector writing to `path`, kills it with SIGKILL while a client is sending,
/// once a few records are in the file.
async fn kill_9_while_sending(path: &Path, extra: &str) {
    let (first, grpc) = start(path, extra);
    let acked = Arc::new(Mutex::new(0u64));
    let sender = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let Ok(mut client) =
                TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}")).await
            else {
                return;
            };
            let mut next = 0;
            loop {
                if client
                    .export(spans_request(2, next, PER_REQUEST as usize, 64))
                    .await
                    .is_err()
                {
                    return;
                }
                next += PER_REQUEST;
                *acked.lock().unwrap() = next;
            }
        })
    };
    let written = wait_until(Duration::from_secs(20), || {
        std::fs::read(path).is_ok_and(|b| framed_records(&b).len() >= 3)
    });
    assert!(written, "nothing reached the file:\n{}", first.log());
    let status = Command::new("kill")
        .args(["-KILL", &first.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(10), sender)
        .await
        .expect("the client stops once the collector is gone")
        .unwrap();
    drop(first);
    assert!(*acked.lock().unwrap() > 0, "nothing was acknowledged");
}

/// Spans after the restart: ids `AFTER..AFTER + N`.
const AFTER: u64 = 1_000_000;

/// Asserts that `ids` (read from one file) hold every id in `kept` and `AFTER..AFTER + N`,
/// each once, and nothing else.
fn assert_holds(ids: &[u64], kept: &[u64]) {
    let got: HashSet<u64> = ids.iter().copied().collect();
    let lost: Vec<u64> = kept.iter().filter(|i| !got.contains(i)).copied().collect();
    assert!(
        lost.is_empty(),
        "{} spans written before the kill are gone",
        lost.len()
    );
    let missing: Vec<u64> = (AFTER..AFTER + N).filter(|i| !got.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} spans acknowledged after the restart are missing (e.g. {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        ids.len(),
        kept.len() + N as usize,
        "duplicates or strays in the output"
    );
}

/// kill -9 while a client sends into a `format: proto` file with `append: true`; the last
/// record is then torn (the file cut in its middle, as a write interrupted by a crash leaves
/// it); the restart cuts the fragment off (and logs its size), and every span acknowledged
/// after the restart is in a file that reads cleanly to its end, after everything the file
/// held before.
async fn torn_tail_after_kill_9(compression: Compression) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traces.pb");
    let extra = proto_append(compression);
    kill_9_while_sending(&path, &extra).await;

    // Tear the last complete record: keep its length prefix and half of its body (and drop
    // whatever torn bytes the kill itself may have left after it).
    let bytes = std::fs::read(&path).unwrap();
    let (last, end) = *framed_records(&bytes).last().unwrap();
    let cut_at = last + 4 + (end - last - 4) / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut_at as u64)
        .unwrap();
    let before = length_prefixed_span_ids(&bytes[..cut_at], Format::Proto, compression);
    assert!(!before.is_empty());

    let (mut second, grpc) = start(&path, &extra);
    let cut_bytes = format!("cut_bytes={}", cut_at - last);
    assert!(
        second.wait_for_log_line(&["torn last record", &cut_bytes], Duration::from_secs(5)),
        "the restart did not log cutting {cut_bytes}:\n{}",
        second.log()
    );
    send(grpc, 2, AFTER, N).await;
    assert_eq!(second.stop(), 0, "second run:\n{}", second.log());

    assert_eq!(
        outputs(&path),
        std::slice::from_ref(&path),
        "no backup expected"
    );
    assert_holds(&clean_ids(&path, Format::Proto, compression), &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_kill_9_cuts_a_torn_proto_record() {
    torn_tail_after_kill_9(Compression::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_kill_9_cuts_a_torn_zstd_frame() {
    torn_tail_after_kill_9(Compression::Zstd).await;
}

/// kill -9, then garbage appended to the file (a length prefix announcing more than follows,
/// but no record's beginning after it): the restart does not cut what it cannot explain; it
/// moves the file aside whole and starts a fresh one, which reads cleanly and holds every span
/// acknowledged after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_kill_9_keeps_a_file_with_garbage_at_the_end_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traces.pb");
    let extra = proto_append(Compression::None);
    kill_9_while_sending(&path, &extra).await;

    // Garbage after the last complete record (past any torn bytes the kill itself left).
    let mut damaged = std::fs::read(&path).unwrap();
    let (_, end) = *framed_records(&damaged).last().unwrap();
    damaged.truncate(end);
    damaged.extend(b"\x00\x00\x10\x00 not a record");
    std::fs::write(&path, &damaged).unwrap();

    let (mut second, grpc) = start(&path, &extra);
    assert!(
        second.wait_for_log_line(&["moved the existing file aside"], Duration::from_secs(5)),
        "the restart did not move the file aside:\n{}",
        second.log()
    );
    send(grpc, 2, AFTER, N).await;
    assert_eq!(second.stop(), 0, "second run:\n{}", second.log());

    let files = outputs(&path);
    assert_eq!(files.len(), 2, "{files:?}");
    let backup = files.iter().find(|f| **f != path).unwrap();
    assert_eq!(
        std::fs::read(backup).unwrap(),
        damaged,
        "the backup was changed"
    );
    assert_holds(&clean_ids(&path, Format::Proto, Compression::None), &[]);
}

/// A write that fails half-way (the process's file size limit standing in for a full disk)
/// leaves no partial record behind: the writer cuts the file back to its last flush and the
/// batches not flushed count as failed, so the file still reads cleanly to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failing_half_way_leaves_no_partial_record() {
    const LIMIT: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traces.pb");
    // Writing past RLIMIT_FSIZE raises SIGXFSZ (fatal by default); ignored, the write fails
    // with EFBIG instead. An ignored signal stays ignored across exec.
    let script = format!("trap '' XFSZ; exec prlimit --fsize={LIMIT}:{LIMIT} \"$0\" \"$@\"");
    let (mut c, grpc) = start_wrapped(
        &path,
        "    format: proto\n",
        &["bash", "-c", script.as_str()],
    );
    // About 150 bytes per span: 2,000 spans fit; once they are in the file, 10,000 more cross
    // the limit in the middle of a record.
    send(grpc, 3, 1, 2_000).await;
    let flushed = wait_until(Duration::from_secs(10), || {
        std::fs::read(&path).is_ok_and(|b| {
            length_prefixed_span_ids(&b, Format::Proto, Compression::None).len() == 2_000
        })
    });
    assert!(
        flushed,
        "the first spans did not reach the file:\n{}",
        c.log()
    );
    send(grpc, 3, 2_001, 10_000).await;
    assert!(
        c.wait_for_log_line(&["file exporter", "failed"], Duration::from_secs(10)),
        "the size limit was never hit:\n{}",
        c.log()
    );
    c.stop();
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len <= LIMIT, "{len} bytes despite the limit");
    let ids = clean_ids(&path, Format::Proto, Compression::None);
    assert!(
        ids.len() >= 2_000,
        "{} spans left of those written before the limit",
        ids.len()
    );
}
