//! Where the last complete record of an output file ends.
//!
//! A process killed in the middle of a write (kill -9, OOM) leaves a torn last record: a JSON
//! line without its newline, or a length prefix promising more bytes than follow. Appending
//! after it would glue the next record onto the fragment and make the rest of the file
//! unreadable, so the writer cuts the fragment off first, and the readers stop before it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use prost::Message;

use super::config::{Compression, Format};
use crate::otlp::ExportTraceServiceRequest;

/// What a scan of a file's records found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// Length of the readable part: the end of the last complete record that decodes.
    pub complete: u64,
    /// Length of the whole file; `len - complete` bytes are a torn (or unreadable) tail.
    pub len: u64,
    /// The first record decodes in the configured format and compression. False for an empty
    /// file and for a file that holds something else (another format, not ours): the writer
    /// moves such a file aside instead of cutting anything off it.
    pub recognized: bool,
    /// The bytes after `complete` look like the beginning of one record, as a write
    /// interrupted by a crash leaves them (a partial JSON line starting with `{`; part of a
    /// length prefix; a length prefix with the start of a zstd frame or of a protobuf request
    /// after it). False for anything else there (garbage, a complete record that does not
    /// decode): the writer then keeps the whole file as a backup rather than cut data it
    /// cannot explain. True when nothing follows `complete`.
    pub torn_record: bool,
}

impl Tail {
    /// Bytes after the last complete record.
    pub fn torn_bytes(&self) -> u64 {
        self.len - self.complete
    }
}

/// Random-access reads over a file or a byte slice, so one scan serves the writer (which
/// must not read a large file whole) and the in-memory readers.
pub trait Source {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Fills `buf` from `offset`; the range is within `len`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = offset as usize;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

/// A file and its length when opened, read through a small cache: the walk over
/// length prefixes reads 4 bytes per record, which would otherwise be a system call each.
pub struct FileSource<'a> {
    file: &'a File,
    len: u64,
    cache: Vec<u8>,
    cache_at: u64,
}

impl<'a> FileSource<'a> {
    /// Reads `file` as it is now.
    pub fn new(file: &'a File) -> std::io::Result<Self> {
        Ok(Self {
            file,
            len: file.metadata()?.len(),
            cache: Vec::new(),
            cache_at: 0,
        })
    }

    fn read_direct(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let mut f = self.file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

impl Source for FileSource<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset + buf.len() as u64;
        let cached_end = self.cache_at + self.cache.len() as u64;
        if offset < self.cache_at || end > cached_end {
            if buf.len() as u64 >= CHUNK {
                return self.read_direct(offset, buf);
            }
            let n = CHUNK.min(self.len - offset) as usize;
            self.cache.resize(n, 0);
            let mut cache = std::mem::take(&mut self.cache);
            let result = self.read_direct(offset, &mut cache);
            self.cache = cache;
            if let Err(e) = result {
                self.cache.clear();
                return Err(e);
            }
            self.cache_at = offset;
        }
        let start = (offset - self.cache_at) as usize;
        buf.copy_from_slice(&self.cache[start..start + buf.len()]);
        Ok(())
    }
}

/// Finds the end of the last complete record in `src`, written as `format` and `compression`.
pub fn scan(
    src: &mut impl Source,
    format: Format,
    compression: Compression,
) -> std::io::Result<Tail> {
    match (format, compression) {
        (Format::Json, Compression::None) => scan_lines(src),
        _ => scan_length_prefixed(src, format, compression),
    }
}

/// JSON lines: a record is complete once its newline is written.
fn scan_lines(src: &mut impl Source) -> std::io::Result<Tail> {
    let len = src.len();
    let Some(last_nl) = rfind_newline(src, len)? else {
        // Not one complete line: a torn first record or not a JSON-lines file at all.
        return Ok(Tail {
            complete: 0,
            len,
            recognized: false,
            torn_record: starts_like_a_line(src, 0)?,
        });
    };
    let last_start = rfind_newline(src, last_nl)?.map_or(0, |i| i + 1);
    let last_ok = line_decodes(src, last_start, last_nl)?;
    let recognized = if last_start == 0 {
        last_ok
    } else {
        let first_nl = find_newline(src, 0)?.expect("a newline exists before the last one");
        line_decodes(src, 0, first_nl)?
    };
    Ok(Tail {
        // A complete last line that does not decode is garbage: readers skip it as well.
        complete: if last_ok { last_nl + 1 } else { last_start },
        len,
        recognized,
        torn_record: last_ok && starts_like_a_line(src, last_nl + 1)?,
    })
}

/// Whether the bytes from `start` to the end are empty or begin like one of our JSON lines.
fn starts_like_a_line(src: &mut impl Source, start: u64) -> std::io::Result<bool> {
    if start >= src.len() {
        return Ok(true);
    }
    let mut first = [0u8; 1];
    src.read_at(start, &mut first)?;
    Ok(first[0] == b'{')
}

/// Length-prefixed records: a record is complete once its length and that many bytes are there.
fn scan_length_prefixed(
    src: &mut impl Source,
    format: Format,
    compression: Compression,
) -> std::io::Result<Tail> {
    let len = src.len();
    let mut offset = 0u64;
    let mut last_start = None;
    let mut prefix = [0u8; 4];
    while len - offset >= 4 {
        src.read_at(offset, &mut prefix)?;
        let body = u64::from(u32::from_be_bytes(prefix));
        if body > len - offset - 4 {
            break;
        }
        last_start = Some(offset);
        offset += 4 + body;
    }
    let Some(last_start) = last_start else {
        return Ok(Tail {
            complete: 0,
            len,
            recognized: false,
            torn_record: starts_like_a_record(src, 0, compression)?,
        });
    };
    let last_ok = record_decodes(src, last_start, offset, format, compression)?;
    let recognized = if last_start == 0 {
        last_ok
    } else {
        src.read_at(0, &mut prefix)?;
        let first_end = 4 + u64::from(u32::from_be_bytes(prefix));
        record_decodes(src, 0, first_end, format, compression)?
    };
    Ok(Tail {
        complete: if last_ok { offset } else { last_start },
        len,
        recognized,
        torn_record: last_ok && starts_like_a_record(src, offset, compression)?,
    })
}

/// The first bytes of every record body the exporter writes: a zstd frame's magic number,
/// or the tag of `ExportTraceServiceRequest.resource_spans` (field 1, length-delimited).
/// JSON in a length-prefixed file is always compressed.
fn body_start(compression: Compression) -> &'static [u8] {
    match compression {
        Compression::Zstd => &[0x28, 0xb5, 0x2f, 0xfd],
        Compression::None => &[0x0a],
    }
}

/// Whether the bytes from `start` to the end (shorter than the record their prefix
/// announces) are empty or begin like one of our records.
fn starts_like_a_record(
    src: &mut impl Source,
    start: u64,
    compression: Compression,
) -> std::io::Result<bool> {
    let present = src.len().saturating_sub(start + 4);
    let expected = body_start(compression);
    let n = present.min(expected.len() as u64) as usize;
    if n == 0 {
        return Ok(true);
    }
    let mut first = vec![0u8; n];
    src.read_at(start + 4, &mut first)?;
    Ok(first == expected[..n])
}

const CHUNK: u64 = 64 * 1024;

/// The offset of the last `\n` before `end`.
fn rfind_newline(src: &mut impl Source, end: u64) -> std::io::Result<Option<u64>> {
    let mut buf = vec![0u8; CHUNK as usize];
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(CHUNK);
        let chunk = &mut buf[..(hi - lo) as usize];
        src.read_at(lo, chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}

/// The offset of the first `\n` at or after `start`.
fn find_newline(src: &mut impl Source, start: u64) -> std::io::Result<Option<u64>> {
    let mut buf = vec![0u8; CHUNK as usize];
    let mut lo = start;
    while lo < src.len() {
        let hi = (lo + CHUNK).min(src.len());
        let chunk = &mut buf[..(hi - lo) as usize];
        src.read_at(lo, chunk)?;
        if let Some(i) = chunk.iter().position(|b| *b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        lo = hi;
    }
    Ok(None)
}

fn read_range(src: &mut impl Source, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; (end - start) as usize];
    src.read_at(start, &mut buf)?;
    Ok(buf)
}

/// Whether the line `[start, end)` (without its newline) is one OTLP/JSON request. Blank lines
/// count as readable: readers skip them.
fn line_decodes(src: &mut impl Source, start: u64, end: u64) -> std::io::Result<bool> {
    let line = read_range(src, start, end)?;
    Ok(line.iter().all(u8::is_ascii_whitespace) || crate::otlp::json::decode_traces(&line).is_ok())
}

/// Whether the framed record `[start, end)` (prefix included) decodes.
fn record_decodes(
    src: &mut impl Source,
    start: u64,
    end: u64,
    format: Format,
    compression: Compression,
) -> std::io::Result<bool> {
    let body = read_range(src, start + 4, end)?;
    Ok(decode_record(&body, format, compression).is_ok())
}

/// Decodes one record's body (after its length prefix, if any).
pub fn decode_record(
    body: &[u8],
    format: Format,
    compression: Compression,
) -> Result<ExportTraceServiceRequest, String> {
    let inflated;
    let payload = match compression {
        Compression::None => body,
        Compression::Zstd => {
            inflated = zstd::decode_all(body).map_err(|e| format!("zstd: {e}"))?;
            inflated.as_slice()
        }
    };
    match format {
        Format::Proto => ExportTraceServiceRequest::decode(payload).map_err(|e| e.to_string()),
        Format::Json => crate::otlp::json::decode_traces(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn request(id: u8) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![id; 8],
                        name: format!("span-{id}"),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// One framed record, as the exporter writes it.
    fn record(id: u8, format: Format, compression: Compression) -> Vec<u8> {
        let payload = match format {
            Format::Proto => request(id).encode_to_vec(),
            Format::Json => {
                let mut out = Vec::new();
                crate::otlp::json::encode_traces(&request(id).resource_spans, &mut out);
                out
            }
        };
        match (format, compression) {
            (Format::Json, Compression::None) => {
                let mut line = payload;
                line.push(b'\n');
                line
            }
            (_, Compression::None) => super::super::length_prefixed(&payload),
            (_, Compression::Zstd) => {
                super::super::length_prefixed(&zstd::bulk::compress(&payload, 3).unwrap())
            }
        }
    }

    fn tail_of(bytes: &[u8], format: Format, compression: Compression) -> Tail {
        scan(&mut &bytes[..], format, compression).unwrap()
    }

    const ALL: [(Format, Compression); 4] = [
        (Format::Json, Compression::None),
        (Format::Proto, Compression::None),
        (Format::Json, Compression::Zstd),
        (Format::Proto, Compression::Zstd),
    ];

    #[test]
    fn whole_file_is_complete() {
        for (f, c) in ALL {
            let mut bytes = record(1, f, c);
            bytes.extend(record(2, f, c));
            let t = tail_of(&bytes, f, c);
            assert_eq!(
                t,
                Tail {
                    complete: bytes.len() as u64,
                    len: bytes.len() as u64,
                    recognized: true,
                    torn_record: true,
                },
                "{f:?}/{c:?}"
            );
        }
    }

    #[test]
    fn every_cut_inside_the_last_record_is_found() {
        for (f, c) in ALL {
            let mut bytes = record(1, f, c);
            let good = bytes.len();
            let last = record(2, f, c);
            bytes.extend(&last);
            // Every possible tear of the last record, from one byte written to all but one.
            for cut in good + 1..bytes.len() {
                let t = tail_of(&bytes[..cut], f, c);
                assert_eq!(t.complete, good as u64, "{f:?}/{c:?} torn at {cut}");
                assert_eq!(t.torn_bytes(), (cut - good) as u64);
                assert!(t.recognized, "{f:?}/{c:?} torn at {cut}");
                assert!(t.torn_record, "{f:?}/{c:?} torn at {cut}");
            }
        }
    }

    #[test]
    fn a_torn_only_record_is_not_recognized() {
        for (f, c) in ALL {
            let bytes = record(1, f, c);
            let t = tail_of(&bytes[..bytes.len() - 1], f, c);
            assert_eq!(t.complete, 0, "{f:?}/{c:?}");
            assert!(!t.recognized, "{f:?}/{c:?}");
        }
    }

    #[test]
    fn empty_file() {
        for (f, c) in ALL {
            let t = tail_of(&[], f, c);
            assert_eq!(
                t,
                Tail {
                    complete: 0,
                    len: 0,
                    recognized: false,
                    torn_record: true,
                }
            );
        }
    }

    #[test]
    fn a_complete_but_undecodable_last_record_is_cut() {
        // A length prefix (or newline) that happens to frame garbage.
        for (f, c) in ALL {
            let mut bytes = record(1, f, c);
            let good = bytes.len();
            match (f, c) {
                (Format::Json, Compression::None) => bytes.extend(b"{\"resourceSpans\": [\n"),
                _ => bytes.extend(super::super::length_prefixed(b"\xff\xff\xff garbage")),
            }
            let t = tail_of(&bytes, f, c);
            assert_eq!(t.complete, good as u64, "{f:?}/{c:?}");
            assert!(t.recognized);
            assert!(
                !t.torn_record,
                "{f:?}/{c:?}: not what an interrupted write leaves"
            );
        }
    }

    #[test]
    fn garbage_after_the_last_record_is_not_a_torn_record() {
        for (f, c) in ALL {
            let mut bytes = record(1, f, c);
            let good = bytes.len();
            // A length prefix announcing more than follows, but not a record's beginning.
            bytes.extend(b"\x00\x00\x10\x00 garbage");
            let t = tail_of(&bytes, f, c);
            assert_eq!(t.complete, good as u64, "{f:?}/{c:?}");
            assert!(t.recognized);
            assert!(!t.torn_record, "{f:?}/{c:?}");
        }
    }

    #[test]
    fn a_file_in_another_format_is_not_recognized() {
        let json = record(1, Format::Json, Compression::None);
        let t = tail_of(&json, Format::Proto, Compression::None);
        assert!(!t.recognized);
        let t = tail_of(&json, Format::Proto, Compression::Zstd);
        assert!(!t.recognized);
        let mut proto = record(1, Format::Proto, Compression::None);
        proto.extend(record(2, Format::Proto, Compression::None));
        let t = tail_of(&proto, Format::Json, Compression::None);
        assert!(!t.recognized);
        let t = tail_of(b"hello\nworld\n", Format::Json, Compression::None);
        assert!(!t.recognized);
    }

    #[test]
    fn long_lines_span_chunks() {
        // Lines longer than the scan's chunk, so the newline search crosses chunk borders.
        let mut req = request(1);
        req.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(3 * CHUNK as usize);
        let mut line = Vec::new();
        crate::otlp::json::encode_traces(&req.resource_spans, &mut line);
        line.push(b'\n');
        let mut bytes = line.clone();
        bytes.extend(&line);
        let whole = tail_of(&bytes, Format::Json, Compression::None);
        assert_eq!(whole.complete, bytes.len() as u64);
        assert!(whole.recognized);
        let torn = tail_of(
            &bytes[..bytes.len() - CHUNK as usize - 7],
            Format::Json,
            Compression::None,
        );
        assert_eq!(torn.complete, line.len() as u64);
    }

    #[test]
    fn file_source_reads_like_a_slice() {
        use std::io::Write;
        let mut bytes = record(1, Format::Proto, Compression::Zstd);
        bytes.extend(&record(2, Format::Proto, Compression::Zstd)[..9]);
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&bytes).unwrap();
        let from_file = scan(
            &mut FileSource::new(&f).unwrap(),
            Format::Proto,
            Compression::Zstd,
        )
        .unwrap();
        assert_eq!(from_file, tail_of(&bytes, Format::Proto, Compression::Zstd));
        assert_eq!(from_file.torn_bytes(), 9);

        // Many records across several cache windows, and a torn one at the end.
        let mut bytes = Vec::new();
        for i in 0..2000 {
            bytes.extend(record((i % 250) as u8, Format::Proto, Compression::None));
        }
        let good = bytes.len();
        bytes.extend(&record(7, Format::Proto, Compression::None)[..6]);
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&bytes).unwrap();
        let from_file = scan(
            &mut FileSource::new(&f).unwrap(),
            Format::Proto,
            Compression::None,
        )
        .unwrap();
        assert_eq!(from_file.complete, good as u64);
        assert!(from_file.torn_record);
    }
}
