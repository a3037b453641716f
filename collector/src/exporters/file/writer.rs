//! The thread that owns the file: takes over the file an earlier run left, writes records,
//! flushes on a timer, rotates by size.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::config::{Compression, Format};
use super::tail::{FileSource, scan};
use crate::pipeline::Delivery;
use crate::telemetry::ExporterMetrics;

/// One encoded batch on its way to the file.
pub struct Record {
    /// Bytes to append, already framed.
    pub bytes: Vec<u8>,
    /// Items in the batch, for metrics.
    pub items: u64,
    /// Released once the bytes are flushed to the file.
    pub delivery: Delivery,
    /// The counters of the batch's signal (one file takes every signal's batches).
    pub counters: ExporterMetrics,
}

/// Rotation settings in bytes.
pub struct Rotation {
    pub max_bytes: u64,
    pub max_backups: usize,
}

/// How the writer treats the file it finds at start and what it does on each flush.
pub struct Options {
    /// Append to a file left by an earlier run (after cutting off a torn last record) instead
    /// of moving it aside as a backup.
    pub append: bool,
    /// The records' encoding, to find a torn last record.
    pub format: Format,
    /// The records' compression, to find a torn last record.
    pub compression: Compression,
    /// Rotation by size; `None` never rotates (and never deletes a backup).
    pub rotation: Option<Rotation>,
    /// `fsync` each flush before reporting the data delivered.
    pub fsync: bool,
}

pub struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    /// Length of the file up to the last successful flush: every record before it was
    /// reported delivered. A failed write or flush cuts the file back to it, so a partial
    /// record (a full disk) never sits in the middle of the file.
    flushed_size: u64,
    rotation: Option<Rotation>,
    fsync: bool,
    metrics: ExporterMetrics,
    /// Deliveries (and span counts) of records still in `out`'s buffer: released only once
    /// flushed, so a process killed before the flush never reported them delivered (the
    /// Kafka receiver commits offsets on that report).
    unflushed: Vec<(Delivery, u64, ExporterMetrics)>,
}

impl Writer {
    pub fn open(path: &Path, options: Options, metrics: ExporterMetrics) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = take_over(path, &options)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            size,
            flushed_size: size,
            rotation: options.rotation,
            fsync: options.fsync,
            metrics,
            unflushed: Vec::new(),
        })
    }

    /// Receives records until every sender is gone, then flushes and returns.
    pub fn run(mut self, rx: flume::Receiver<Record>, flush_interval: Duration) {
        let mut next_flush = Instant::now() + flush_interval;
        loop {
            let timeout = next_flush.saturating_duration_since(Instant::now());
            match rx.recv_timeout(timeout) {
                Ok(record) => {
                    self.metrics.queue_size.set(rx.len() as i64);
                    self.write(record);
                }
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_flush {
                if let Err(e) = self.flush() {
                    crate::telemetry::log_limited!(error, "file exporter: flush failed", path = %self.path.display(), error = %e);
                }
                next_flush = Instant::now() + flush_interval;
            }
        }
        if let Err(e) = self.flush() {
            tracing::error!(path = %self.path.display(), error = %e, "file exporter: final flush failed");
        }
        self.metrics.queue_size.set(0);
    }

    fn write(&mut self, record: Record) {
        if let Some(rot) = &self.rotation
            && self.size > 0
            && self.size + record.bytes.len() as u64 > rot.max_bytes
            && let Err(e) = self.rotate()
        {
            crate::telemetry::log_limited!(error, "file exporter: rotation failed; still writing to the current file", path = %self.path.display(), error = %e);
        }
        match self.out.write_all(&record.bytes) {
            Ok(()) => {
                self.size += record.bytes.len() as u64;
                self.unflushed
                    .push((record.delivery, record.items, record.counters));
            }
            Err(e) => {
                crate::telemetry::log_limited!(error, "file exporter: write failed; the batch is refused (retryable)", path = %self.path.display(), error = %e, items = record.items);
                record.delivery.fail();
                record.counters.send_failed.inc_by(record.items);
                self.cut_back();
            }
        }
    }

    /// Flushes the buffer to the OS (and with `fsync`, to the disk); then the data in it
    /// counts as delivered (or, on error, as failed).
    fn flush(&mut self) -> std::io::Result<()> {
        let mut result = self.out.flush();
        if result.is_ok() && self.fsync && !self.unflushed.is_empty() {
            result = self.out.get_ref().sync_data();
        }
        if result.is_ok() {
            self.flushed_size = self.size;
            for (_, items, counters) in self.unflushed.drain(..) {
                counters.sent.inc_by(items);
            }
        } else {
            self.cut_back();
        }
        result
    }

    /// After a failed write or flush: fails every batch not yet flushed (they are retried
    /// upstream) and cuts the file back to the last flush, dropping whatever part of them
    /// reached it. Writing then continues after the last complete record.
    fn cut_back(&mut self) {
        for (d, items, counters) in self.unflushed.drain(..) {
            d.fail();
            counters.send_failed.inc_by(items);
        }
        let result = self.out.get_ref().try_clone().and_then(|file| {
            let failed = std::mem::replace(&mut self.out, BufWriter::with_capacity(1 << 20, file));
            // Taken apart rather than dropped: dropping would write the failed bytes.
            drop(failed.into_parts());
            let file = self.out.get_mut();
            file.set_len(self.flushed_size)?;
            file.seek(SeekFrom::Start(self.flushed_size))?;
            Ok(())
        });
        match result {
            Ok(()) => self.size = self.flushed_size,
            Err(e) => {
                crate::telemetry::log_limited!(error, "file exporter: cannot cut a failed write back off the file; its last record may be torn", path = %self.path.display(), error = %e);
            }
        }
    }

    /// Renames the current file to `NAME-TIMESTAMP.EXT`, opens a fresh one and deletes the
    /// oldest backups beyond `max_backups`.
    fn rotate(&mut self) -> std::io::Result<()> {
        let Some(max_backups) = self.rotation.as_ref().map(|r| r.max_backups) else {
            return Ok(());
        };
        self.flush()?;
        let backup = backup_name(&self.path, SystemTime::now());
        std::fs::rename(&self.path, &backup)?;
        self.out = BufWriter::with_capacity(1 << 20, create_fresh(&self.path)?);
        self.size = 0;
        self.flushed_size = 0;
        if self.fsync {
            sync_dir(&self.path)?;
        }
        prune_backups(&self.path, max_backups)
    }
}

/// Opens `path` for writing without destroying what an earlier run left there: with
/// `append`, a torn last record is cut off and writing continues after the last complete one;
/// otherwise (or if the file does not read as this exporter's format) the file is moved aside
/// under a backup name first.
fn take_over(path: &Path, options: &Options) -> std::io::Result<File> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return create_fresh(path),
        Err(e) => return Err(e),
    };
    if len == 0 {
        return create_fresh(path);
    }
    if !options.append {
        move_aside(path, len, options, "append is false")?;
        return create_fresh(path);
    }
    let file = OpenOptions::new().read(true).append(true).open(path)?;
    let tail = scan(
        &mut FileSource::new(&file)?,
        options.format,
        options.compression,
    )?;
    if !tail.recognized {
        tracing::warn!(
            path = %path.display(),
            format = ?options.format,
            compression = ?options.compression,
            "file exporter: the existing file does not read as this exporter's format and compression; not appending to it"
        );
        drop(file);
        move_aside(path, len, options, "it is in another format")?;
        return create_fresh(path);
    }
    if tail.torn_bytes() > 0 && !tail.torn_record {
        tracing::warn!(
            path = %path.display(),
            unreadable_bytes = tail.torn_bytes(),
            readable_bytes = tail.complete,
            "file exporter: the existing file ends in bytes that are not an interrupted record; keeping it whole instead of cutting them off"
        );
        drop(file);
        move_aside(path, len, options, "its end is unreadable")?;
        return create_fresh(path);
    }
    if tail.torn_bytes() > 0 {
        file.set_len(tail.complete)?;
        if options.fsync {
            file.sync_data()?;
        }
        tracing::warn!(
            path = %path.display(),
            cut_bytes = tail.torn_bytes(),
            kept_bytes = tail.complete,
            "file exporter: cut off a torn last record (an earlier run stopped mid-write)"
        );
    }
    tracing::info!(path = %path.display(), bytes = tail.complete, "file exporter: appending to the existing file");
    Ok(file)
}

/// Renames a file left by an earlier run to a backup name (the rotation's), so rotation
/// counts and prunes it with its own backups; without rotation it is kept forever.
fn move_aside(path: &Path, len: u64, options: &Options, why: &str) -> std::io::Result<()> {
    let backup = backup_name(path, SystemTime::now());
    std::fs::rename(path, &backup)?;
    if options.fsync {
        sync_dir(path)?;
    }
    tracing::info!(
        path = %path.display(),
        backup = %backup.display(),
        bytes = len,
        "file exporter: moved the existing file aside ({why}); starting a fresh file"
    );
    match &options.rotation {
        Some(r) => prune_backups(path, r.max_backups),
        None => Ok(()),
    }
}

/// Creates (or truncates) `path`. Only called once nothing is left there worth keeping: the
/// file is absent, empty or already renamed.
fn create_fresh(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
}

/// Makes renames and new files in `path`'s directory durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(dir_of(path))?.sync_all()
}

fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Deletes the oldest of `path`'s backups beyond `max_backups` (0 keeps all).
fn prune_backups(path: &Path, max_backups: usize) -> std::io::Result<()> {
    if max_backups == 0 {
        return Ok(());
    }
    let backups = list_backups(path)?;
    let excess = backups.len().saturating_sub(max_backups);
    for old in &backups[..excess] {
        match std::fs::remove_file(old) {
            Ok(()) => {
                tracing::info!(backup = %old.display(), "file exporter: deleted a backup beyond rotation.max_backups");
            }
            Err(e) => {
                tracing::warn!(backup = %old.display(), error = %e, "file exporter: cannot delete an old backup");
            }
        }
    }
    Ok(())
}

fn split_name(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

/// `dir/NAME-2024-05-01T10-20-30.123.EXT` (UTC): sorts by time as a string.
pub fn backup_name(path: &Path, now: SystemTime) -> PathBuf {
    let (stem, ext) = split_name(path);
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = format_utc(since);
    let mut candidate = path.with_file_name(format!("{stem}-{stamp}{ext}"));
    // Two rotations in one millisecond: add a counter rather than overwrite.
    let mut n = 1;
    while candidate.exists() {
        candidate = path.with_file_name(format!("{stem}-{stamp}.{n}{ext}"));
        n += 1;
    }
    candidate
}

/// `path`'s backups, oldest first: only names that [`backup_name`] produces for this path
/// (`NAME-TIMESTAMP.EXT`, `NAME-TIMESTAMP.N.EXT`), never other files in the directory.
fn list_backups(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (stem, ext) = split_name(path);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir_of(path))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(order) = backup_order(name, &stem, &ext)
            && entry.file_type()?.is_file()
        {
            out.push((order, entry.path()));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// For a backup name of `STEM-TIMESTAMP[.N]EXT`: its timestamp and counter, which order
/// backups by age. `None` for any other name.
fn backup_order(name: &str, stem: &str, ext: &str) -> Option<(String, u64)> {
    let rest = name
        .strip_prefix(stem)?
        .strip_prefix('-')?
        .strip_suffix(ext)?;
    let (stamp, counter) = rest.split_at_checked(STAMP_PATTERN.len())?;
    let stamp_ok = stamp
        .bytes()
        .zip(STAMP_PATTERN.bytes())
        .all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            _ => c == p,
        });
    if !stamp_ok {
        return None;
    }
    let n = match counter {
        "" => 0,
        c => {
            let digits = c.strip_prefix('.')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()?
        }
    };
    Some((stamp.to_string(), n))
}

/// The shape of [`format_utc`]'s output, `d` standing for a digit.
const STAMP_PATTERN: &str = "dddd-dd-ddTdd-dd-dd.ddd";

/// `YYYY-MM-DDTHH-MM-SS.mmm` in UTC (civil-from-days, Howard Hinnant's algorithm).
fn format_utc(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}.{:03}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporters::file::complete_len;
    use crate::pipeline::{DeliveryTracker, Outcome};
    use crate::telemetry::Metrics;
    use std::sync::{Arc, Mutex};

    #[test]
    fn utc_stamp() {
        // 2024-02-29T12:34:56.789Z
        let t = Duration::from_millis(1_709_210_096_789);
        assert_eq!(format_utc(t), "2024-02-29T12-34-56.789");
    }

    fn options(append: bool, format: Format, rotation: Option<Rotation>) -> Options {
        Options {
            append,
            format,
            compression: Compression::None,
            rotation,
            fsync: false,
        }
    }

    fn open(path: &Path, options: Options) -> Writer {
        Writer::open(
            path,
            options,
            Metrics::new().exporter("file", crate::pipeline::SignalKind::Traces),
        )
        .unwrap()
    }

    fn one_span(name: &str) -> opentelemetry_proto::tonic::trace::v1::ResourceSpans {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: name.to_string(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A JSON line holding one span named `name`.
    fn json_line(name: &str) -> Vec<u8> {
        let rs = vec![one_span(name)];
        let mut out = Vec::new();
        crate::otlp::json::encode_traces(&rs, &mut out);
        out.push(b'\n');
        out
    }

    fn write(w: &mut Writer, bytes: &[u8]) -> Arc<Mutex<Option<Outcome>>> {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let delivery =
            Delivery::tracked(DeliveryTracker::new(move |o| *s.lock().unwrap() = Some(o)));
        let counters = w.metrics.clone();
        w.write(Record {
            bytes: bytes.to_vec(),
            items: 1,
            delivery,
            counters,
        });
        seen
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn backups_of(path: &Path) -> Vec<PathBuf> {
        list_backups(path).unwrap()
    }

    #[test]
    fn append_false_moves_the_old_file_aside_and_keeps_it_without_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let old = json_line("before");
        std::fs::write(&path, &old).unwrap();
        // Earlier backups and the new one are all kept: without rotation nothing is deleted.
        for stamp in ["2020-01-01T00-00-00.000", "2021-01-01T00-00-00.000"] {
            std::fs::write(dir.path().join(format!("out-{stamp}.jsonl")), b"x\n").unwrap();
        }
        let mut w = open(&path, options(false, Format::Json, None));
        let new = json_line("after");
        let seen = write(&mut w, &new);
        assert_eq!(*seen.lock().unwrap(), None, "reported before the flush");
        assert_eq!(w.metrics.sent.get(), 0, "counted as sent before the flush");
        w.flush().unwrap();
        assert_eq!(*seen.lock().unwrap(), Some(Outcome::Delivered));
        assert_eq!(w.metrics.sent.get(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), new);
        let backups = backups_of(&path);
        assert_eq!(backups.len(), 3, "{:?}", names(dir.path()));
        assert_eq!(std::fs::read(backups.last().unwrap()).unwrap(), old);
    }

    #[test]
    fn append_false_with_rotation_counts_the_moved_file_and_spares_look_alikes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let old = json_line("before");
        std::fs::write(&path, &old).unwrap();
        for stamp in [
            "2020-01-01T00-00-00.000",
            "2020-01-01T00-00-00.000.1",
            "2021-01-01T00-00-00.000",
        ] {
            std::fs::write(dir.path().join(format!("out-{stamp}.jsonl")), b"x\n").unwrap();
        }
        // Look-alikes: not backups of this path, so never deleted.
        let look_alikes = [
            "out-old.jsonl",
            "out-2019-01-01.jsonl",
            "out-eu-2019-01-01T00-00-00.000.jsonl",
            "out-2019-01-01T00-00-00.000.jsonl.bak",
            "out-2019-01-01T00-00-00.000.json",
            "out-2019-01-01T00-00-00.000.x.jsonl",
            "out-2019-01-01T00-00-00.0000.jsonl",
            "out2019-01-01T00-00-00.000.jsonl",
            "other.jsonl",
        ];
        for name in look_alikes {
            std::fs::write(dir.path().join(name), b"keep me\n").unwrap();
        }
        let rotation = Rotation {
            max_bytes: 1 << 20,
            max_backups: 2,
        };
        let _w = open(&path, options(false, Format::Json, Some(rotation)));
        let backups = backups_of(&path);
        let kept: Vec<String> = backups
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(kept[0], "out-2021-01-01T00-00-00.000.jsonl");
        assert_eq!(std::fs::read(&backups[1]).unwrap(), old, "the moved file");
        for name in look_alikes {
            assert!(dir.path().join(name).exists(), "{name} was deleted");
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn rotation_prunes_only_its_own_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let look_alike = dir.path().join("out-2000-01-01.jsonl");
        std::fs::write(&look_alike, b"keep me\n").unwrap();
        let line = json_line("s");
        let rotation = Rotation {
            max_bytes: line.len() as u64,
            max_backups: 1,
        };
        let mut w = open(&path, options(false, Format::Json, Some(rotation)));
        for _ in 0..4 {
            write(&mut w, &line);
        }
        w.flush().unwrap();
        assert_eq!(backups_of(&path).len(), 1, "{:?}", names(dir.path()));
        assert!(look_alike.exists());
        assert_eq!(std::fs::read(&path).unwrap(), line);
    }

    #[test]
    fn empty_old_file_is_simply_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, b"").unwrap();
        let _w = open(&path, options(false, Format::Json, None));
        assert_eq!(names(dir.path()), ["out.jsonl"]);
    }

    #[test]
    fn append_true_cuts_a_torn_json_line_then_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let first = json_line("first");
        let torn = json_line("torn");
        let mut old = first.clone();
        old.extend(&torn[..torn.len() / 2]);
        std::fs::write(&path, &old).unwrap();
        let mut o = options(true, Format::Json, None);
        o.fsync = true;
        let mut w = open(&path, o);
        let next = json_line("next");
        write(&mut w, &next);
        w.flush().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes, [first, next].concat());
        assert_eq!(names(dir.path()), ["out.jsonl"]);
    }

    #[test]
    fn append_true_cuts_a_torn_length_prefixed_record_then_appends() {
        for compression in [Compression::None, Compression::Zstd] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out.pb");
            let record = |name: &str| {
                use prost::Message;
                let req = crate::otlp::ExportTraceServiceRequest {
                    resource_spans: vec![one_span(name)],
                };
                let payload = req.encode_to_vec();
                match compression {
                    Compression::None => super::super::length_prefixed(&payload),
                    Compression::Zstd => {
                        super::super::length_prefixed(&zstd::bulk::compress(&payload, 3).unwrap())
                    }
                }
            };
            let first = record("first");
            let torn = record("torn");
            // Cut inside the length prefix and inside the body.
            for cut in [2, torn.len() - 3] {
                let mut old = first.clone();
                old.extend(&torn[..cut]);
                std::fs::write(&path, &old).unwrap();
                let mut o = options(true, Format::Proto, None);
                o.compression = compression;
                let mut w = open(&path, o);
                let next = record("next");
                write(&mut w, &next);
                w.flush().unwrap();
                drop(w);
                let bytes = std::fs::read(&path).unwrap();
                assert_eq!(
                    bytes,
                    [first.clone(), next].concat(),
                    "{compression:?} cut {cut}"
                );
                assert_eq!(
                    complete_len(&bytes, Format::Proto, compression),
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn append_true_moves_a_file_in_another_format_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pb");
        let json = json_line("json");
        std::fs::write(&path, &json).unwrap();
        let _w = open(&path, options(true, Format::Proto, None));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let backups = backups_of(&path);
        assert_eq!(backups.len(), 1);
        assert_eq!(std::fs::read(&backups[0]).unwrap(), json);
    }

    #[test]
    fn append_true_keeps_a_file_with_an_unexplained_tail_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut old = json_line("first");
        old.extend(b"not json\n");
        std::fs::write(&path, &old).unwrap();
        let _w = open(&path, options(true, Format::Json, None));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let backups = backups_of(&path);
        assert_eq!(backups.len(), 1);
        assert_eq!(std::fs::read(&backups[0]).unwrap(), old, "kept whole");
    }

    #[test]
    fn backup_names_are_recognized_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["out.jsonl", "out", "out.tar.gz", "my-out.jsonl"] {
            let path = dir.path().join(file);
            let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
            let (stem, ext) = split_name(&path);
            let mut made = Vec::new();
            for _ in 0..12 {
                let b = backup_name(&path, t);
                std::fs::write(&b, b"").unwrap();
                made.push(b);
            }
            for b in &made {
                let name = b.file_name().unwrap().to_str().unwrap();
                assert!(backup_order(name, &stem, &ext).is_some(), "{name}");
            }
            // Counters order numerically: .10 after .9.
            assert_eq!(backups_of(&path), made, "{file}");
            for b in made {
                std::fs::remove_file(b).unwrap();
            }
        }
        assert_eq!(
            backup_order("out-2024-02-29T12-34-56.789.jsonl", "out", ".jsonl"),
            Some(("2024-02-29T12-34-56.789".into(), 0))
        );
        assert_eq!(
            backup_order("out-2024-02-29T12-34-56.789.jsonl", "out", ""),
            None
        );
        assert_eq!(
            backup_order("out-2024-02-29T12-34-56.789.", "out", ""),
            None
        );
        assert_eq!(
            backup_order("out-2024-02-29T12-34-56.789.7", "out", ""),
            Some(("2024-02-29T12-34-56.789".into(), 7))
        );
    }
}
