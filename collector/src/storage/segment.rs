//! The bytes on disk: the record format, segment file names, the scan that recovers a segment,
//! and the head file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// `[u32 payload length][u32 crc32 of (items ‖ payload)][u32 items]`, all little-endian.
pub(crate) const HEADER_LEN: u64 = 12;

/// A length field above this is corruption, not a record: it stops a flipped bit in a length
/// from making recovery read (or a reader allocate) gigabytes.
pub(crate) const MAX_PAYLOAD_BYTES: u32 = 1 << 30;

const SEGMENT_SUFFIX: &str = ".seg";
const HEAD_FILE: &str = "head";
const HEAD_TMP_FILE: &str = "head.tmp";
const HEAD_MAGIC: [u8; 4] = *b"WQH1";
const HEAD_LEN: usize = 24;

/// A place in the log: a segment and a byte offset in it. Ordered as the log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub(crate) seg: u64,
    pub(crate) offset: u64,
}

/// The checksum a record carries: the item count is covered too, so a flipped count is caught.
pub(crate) fn checksum(items: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&items.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The header written before `payload`. The caller has checked the length fits the cap.
pub(crate) fn encode_header(items: u32, payload: &[u8]) -> [u8; HEADER_LEN as usize] {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut header = [0u8; HEADER_LEN as usize];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&checksum(items, payload).to_le_bytes());
    header[8..12].copy_from_slice(&items.to_le_bytes());
    header
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) crc: u32,
    pub(crate) items: u32,
}

pub(crate) fn decode_header(bytes: &[u8; HEADER_LEN as usize]) -> Header {
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    Header {
        len: word(0),
        crc: word(4),
        items: word(8),
    }
}

/// `dir/NNNNNNNNNNNNNNNNNNNN.seg`: zero-padded so names sort as ids do.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SEGMENT_SUFFIX}"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The ids of the segment files in `dir`, in increasing order. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_segment_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Creates segment `id`, which must not exist yet.
pub(crate) fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(segment_path(dir, id))
}

/// Makes created, renamed and removed names in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A complete, checksum-valid record found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) items: u32,
}

/// Why a scan stopped before the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Every byte from the start offset on belongs to a valid record.
    Clean,
    /// The record at `offset` is incomplete or fails its checks; nothing after it is trusted.
    Bad { offset: u64, reason: &'static str },
}

/// What [`scan`] found in one segment.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) records: Vec<Found>,
    pub(crate) file_len: u64,
    pub(crate) stop: Stop,
}

/// Reads a segment from `start` to its end, checking every record's length and checksum.
/// Payloads are streamed through the checksum, never held whole, so memory stays flat
/// whatever the record sizes.
pub(crate) fn scan(file: &File, start: u64) -> io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut records = Vec::new();
    if start >= file_len {
        return Ok(Scan {
            records,
            file_len,
            stop: Stop::Clean,
        });
    }
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    reader.seek(SeekFrom::Start(start))?;
    let mut offset = start;
    let stop = loop {
        let mut raw = [0u8; HEADER_LEN as usize];
        let got = read_full(&mut reader, &mut raw)?;
        if got == 0 {
            break Stop::Clean;
        }
        if got < raw.len() {
            break Stop::Bad {
                offset,
                reason: "the record header is cut short",
            };
        }
        let header = decode_header(&raw);
        if header.len > MAX_PAYLOAD_BYTES {
            break Stop::Bad {
                offset,
                reason: "the record length is over the 1 GiB cap",
            };
        }
        if offset + HEADER_LEN + u64::from(header.len) > file_len {
            break Stop::Bad {
                offset,
                reason: "the record runs past the end of the file",
            };
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header.items.to_le_bytes());
        let mut remaining = header.len as usize;
        while remaining > 0 {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let take = remaining.min(chunk.len());
            hasher.update(&chunk[..take]);
            reader.consume(take);
            remaining -= take;
        }
        if remaining > 0 {
            // The file shrank under us; treat it as the cut-short record it now is.
            break Stop::Bad {
                offset,
                reason: "the record runs past the end of the file",
            };
        }
        if hasher.finalize() != header.crc {
            break Stop::Bad {
                offset,
                reason: "the record's checksum does not match",
            };
        }
        records.push(Found {
            offset,
            len: header.len,
            items: header.items,
        });
        offset += HEADER_LEN + u64::from(header.len);
    };
    Ok(Scan {
        records,
        file_len,
        stop,
    })
}

/// Reads until `buf` is full or the end of the input; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads the record at `offset` (as indexed: `len` and `items` must match its header) with
/// pread, leaving the writer's file position alone.
pub(crate) fn read_record(
    file: &File,
    offset: u64,
    len: u32,
    items: u32,
) -> Result<Vec<u8>, ReadError> {
    let mut raw = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut raw, offset)
        .map_err(ReadError::Io)?;
    let header = decode_header(&raw);
    if header.len != len || header.items != items {
        return Err(ReadError::Corrupt(
            "the record header changed since it was written",
        ));
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, offset + HEADER_LEN)
        .map_err(ReadError::Io)?;
    if checksum(header.items, &payload) != header.crc {
        return Err(ReadError::Corrupt("the record's checksum does not match"));
    }
    Ok(payload)
}

/// Why a record could not be read back.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    Corrupt(&'static str),
}

/// What the head file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadFile {
    Missing,
    Corrupt,
    At(Pos),
}

fn encode_head(pos: Pos) -> [u8; HEAD_LEN] {
    let mut bytes = [0u8; HEAD_LEN];
    bytes[0..4].copy_from_slice(&HEAD_MAGIC);
    bytes[4..12].copy_from_slice(&pos.seg.to_le_bytes());
    bytes[12..20].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes[0..20]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode_head(bytes: &[u8]) -> HeadFile {
    if bytes.len() != HEAD_LEN || bytes[0..4] != HEAD_MAGIC {
        return HeadFile::Corrupt;
    }
    let crc = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    if crc32fast::hash(&bytes[0..20]) != crc {
        return HeadFile::Corrupt;
    }
    let u64_at = |i: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(word)
    };
    HeadFile::At(Pos {
        seg: u64_at(4),
        offset: u64_at(12),
    })
}

/// Reads `dir/head`. A missing file is normal (a new queue); a damaged one is reported as such.
pub(crate) fn read_head(dir: &Path) -> io::Result<HeadFile> {
    match fs::read(dir.join(HEAD_FILE)) {
        Ok(bytes) => Ok(decode_head(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HeadFile::Missing),
        Err(e) => Err(e),
    }
}

/// Replaces `dir/head` atomically (write `head.tmp`, rename). With `fsync`, the new file and the
/// rename are durable before this returns, so a segment deleted afterwards is never needed.
pub(crate) fn write_head(dir: &Path, pos: Pos, fsync: bool) -> io::Result<()> {
    let tmp = dir.join(HEAD_TMP_FILE);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(&encode_head(pos))?;
    if fsync {
        file.sync_all()?;
    }
    drop(file);
    fs::rename(&tmp, dir.join(HEAD_FILE))?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes a `head.tmp` left by a crash between its write and its rename.
pub(crate) fn remove_head_tmp(dir: &Path) -> io::Result<()> {
    match fs::remove_file(dir.join(HEAD_TMP_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The head file's path, for tests that damage it.
#[cfg(test)]
pub(crate) fn head_path(dir: &Path) -> PathBuf {
    dir.join(HEAD_FILE)
}
