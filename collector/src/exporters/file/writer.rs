//! The thread that owns the file: writes records, flushes on a timer, rotates by size.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::pipeline::Delivery;
use crate::telemetry::ExporterMetrics;

/// One encoded batch on its way to the file.
pub struct Record {
    /// Bytes to append, already framed.
    pub bytes: Vec<u8>,
    /// Spans in the batch, for metrics.
    pub spans: u64,
    /// Released once the bytes are flushed to the file.
    pub delivery: Delivery,
}

/// Rotation settings in bytes.
pub struct Rotation {
    pub max_bytes: u64,
    pub max_backups: usize,
}

pub struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    rotation: Option<Rotation>,
    metrics: ExporterMetrics,
    /// Deliveries of records still in `out`'s buffer: released only once flushed, so a
    /// process killed before the flush never reported them delivered (the Kafka receiver
    /// commits offsets on that report).
    unflushed: Vec<Delivery>,
}

impl Writer {
    pub fn open(
        path: &Path,
        append: bool,
        rotation: Option<Rotation>,
        metrics: ExporterMetrics,
    ) -> std::io::Result<Self> {
        let file = open(path, append)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            size,
            rotation,
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
                    tracing::error!(path = %self.path.display(), error = %e, "file exporter: flush failed");
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
            tracing::error!(path = %self.path.display(), error = %e, "file exporter: rotation failed; still writing to the current file");
        }
        match self.out.write_all(&record.bytes) {
            Ok(()) => {
                self.size += record.bytes.len() as u64;
                self.metrics.sent.inc_by(record.spans);
                self.unflushed.push(record.delivery);
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, spans = record.spans, "file exporter: write failed; spans lost");
                record.delivery.fail();
                self.metrics.send_failed.inc_by(record.spans);
            }
        }
    }

    /// Flushes the buffer; then the data in it counts as delivered (or, on error, as lost).
    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.out.flush();
        let failed = result.is_err();
        for d in self.unflushed.drain(..) {
            if failed {
                d.fail();
            }
        }
        result
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
        self.out = BufWriter::with_capacity(1 << 20, open(&self.path, false)?);
        self.size = 0;
        if max_backups > 0 {
            let mut backups = list_backups(&self.path)?;
            backups.sort();
            let excess = backups.len().saturating_sub(max_backups);
            for old in &backups[..excess] {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(())
    }
}

fn open(path: &Path, append: bool) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut o = OpenOptions::new();
    o.create(true);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    o.open(path)
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

fn list_backups(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (stem, ext) = split_name(path);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!("{stem}-");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(&ext) && entry.path() != path {
            out.push(entry.path());
        }
    }
    Ok(out)
}

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

    #[test]
    fn utc_stamp() {
        // 2024-02-29T12:34:56.789Z
        let t = Duration::from_millis(1_709_210_096_789);
        assert_eq!(format_utc(t), "2024-02-29T12-34-56.789");
    }
}
