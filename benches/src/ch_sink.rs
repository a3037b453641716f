//! A discarding ClickHouse: the part of ClickHouse's HTTP interface the exporters of wasmcol
//! and Rotel speak, answering `200 OK` to everything and keeping nothing but counts, so an
//! end-to-end benchmark measures the collector and not a database.
//!
//! - One std thread per connection, HTTP/1.1 keep-alive, request bodies sized by
//!   `Content-Length` or sent with chunked transfer encoding.
//! - Statements (`SELECT 1`, `SELECT version()`, `EXISTS ...`, DDL) get a plausible answer:
//!   `1` for `SELECT 1`/`EXISTS`, a version string for `version()`, nothing for the rest.
//! - Inserts (`INSERT ...` in the `query` URL parameter or at the start of the body) are
//!   decompressed (`Content-Encoding: lz4` (LZ4 frame), `zstd`, `gzip`, `deflate`; or, with
//!   the URL parameter `decompress=1`, ClickHouse's own compressed blocks: 16-byte checksum,
//!   method byte (0x82 LZ4, 0x90 ZSTD, 0x02 none), compressed size incl. the 9-byte header
//!   and decompressed size as u32 LE, then the block) and their rows counted by a marker:
//!   every span `wasmcol-loadgen` sends has the scope name `wasmcol-loadgen`, stored once per
//!   row as a plain string in the `FORMAT RowBinary` both collectors send (`ScopeName`). Run
//!   the load generator with a `--service` name that does not contain the marker.
//!
//! What the collectors send (seen with `e2e_clickhouse --verbose`): wasmcol, `?query=INSERT
//! ... FORMAT RowBinary&insert_deduplication_token=...` with `Content-Encoding: lz4` (its
//! default); Rotel, `?database=otel&query=INSERT ... FORMAT RowBinary&decompress=1&
//! async_insert=1`, the body in ClickHouse's LZ4 blocks (its default) or plain. Neither sends
//! a statement other than inserts when it does not create the schema.
//!
//! [`ChSink::rows`] is the count; [`ChSink::errors`] counts requests the sink could not
//! decode (a benchmark should treat any as a failure).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};

/// The string counted as one row: the instrumentation scope name of `wasmcol-loadgen`.
pub const ROW_MARKER: &[u8] = b"wasmcol-loadgen";

/// Request lines printed in verbose mode before the sink goes quiet.
const VERBOSE_LINES: u64 = 40;

/// Counters shared by the listener and its connection threads.
#[derive(Default)]
struct Counts {
    rows: AtomicU64,
    inserts: AtomicU64,
    body_bytes: AtomicU64,
    errors: AtomicU64,
    logged: AtomicU64,
    stop: AtomicBool,
    verbose: bool,
    /// Time of the latest insert, as nanoseconds since `epoch`.
    last_insert_ns: AtomicU64,
    epoch: Option<Instant>,
}

/// A running sink; stops accepting when dropped (open connections end with their peers).
pub struct ChSink {
    port: u16,
    counts: Arc<Counts>,
}

impl ChSink {
    /// Listens on an ephemeral port of 127.0.0.1; `verbose` logs the first request lines (with
    /// the headers that matter) to stderr.
    pub fn start(verbose: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts {
            verbose,
            epoch: Some(Instant::now()),
            ..Default::default()
        });
        let shared = counts.clone();
        std::thread::Builder::new()
            .name("ch-sink".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if shared.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let c = shared.clone();
                    let _ = std::thread::Builder::new()
                        .name("ch-sink-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve(conn, &c)
                                && c.verbose
                            {
                                eprintln!("ch-sink: connection ended: {e:#}");
                            }
                        });
                }
            })?;
        Ok(Self { port, counts })
    }

    /// The port it listens on (`http://127.0.0.1:PORT`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Rows counted so far.
    pub fn rows(&self) -> u64 {
        self.counts.rows.load(Ordering::Acquire)
    }

    /// Insert requests answered so far.
    pub fn inserts(&self) -> u64 {
        self.counts.inserts.load(Ordering::Relaxed)
    }

    /// Insert bytes received so far, as sent (compressed or not).
    pub fn body_bytes(&self) -> u64 {
        self.counts.body_bytes.load(Ordering::Relaxed)
    }

    /// Requests the sink could not read or decode.
    pub fn errors(&self) -> u64 {
        self.counts.errors.load(Ordering::Relaxed)
    }

    /// When the latest insert was counted, if any.
    pub fn last_insert(&self) -> Option<Instant> {
        let ns = self.counts.last_insert_ns.load(Ordering::Acquire);
        (ns > 0).then(|| self.counts.epoch.expect("set") + std::time::Duration::from_nanos(ns))
    }
}

impl Drop for ChSink {
    fn drop(&mut self) {
        self.counts.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request as read off the connection.
struct Request {
    line: String,
    content_encoding: Option<String>,
    close: bool,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> anyhow::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let line = line.trim_end().to_string();
    let (mut length, mut chunked, mut encoding, mut close) = (None, false, None, false);
    loop {
        let mut h = String::new();
        ensure!(r.read_line(&mut h)? > 0, "connection closed in the headers");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            bail!("bad header line {h:?}");
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = Some(value.parse::<usize>()?),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-encoding" => encoding = Some(value.to_ascii_lowercase()),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let size = size.trim_end();
            let size = usize::from_str_radix(size.split(';').next().unwrap_or(size), 16)
                .with_context(|| format!("chunk size {size:?}"))?;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let mut t = String::new();
                    r.read_line(&mut t)?;
                    if t.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let at = body.len();
            body.resize(at + size, 0);
            r.read_exact(&mut body[at..])?;
            let mut crlf = [0; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(Request {
        line,
        content_encoding: encoding,
        close,
        body,
    }))
}

fn serve(conn: TcpStream, counts: &Counts) -> anyhow::Result<()> {
    conn.set_nodelay(true)?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::with_capacity(256 << 10, conn);
    let marker = memchr::memmem::Finder::new(ROW_MARKER);
    while let Some(req) = read_request(&mut r)? {
        let target = req.line.split(' ').nth(1).unwrap_or("/");
        let params = target.split_once('?').map_or("", |(_, q)| q);
        let param = |name: &str| {
            params.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == name).then(|| url_decode(v))
            })
        };
        let query = param("query");
        let statement = match &query {
            Some(q) => q.clone(),
            None => String::from_utf8_lossy(&req.body[..req.body.len().min(200)]).into_owned(),
        };
        if counts.verbose && counts.logged.fetch_add(1, Ordering::Relaxed) < VERBOSE_LINES {
            let chars: Vec<char> = statement.chars().collect();
            let shown: String = if chars.len() > 160 {
                let (head, tail) = (&chars[..100], &chars[chars.len() - 50..]);
                format!("{} … {}", String::from_iter(head), String::from_iter(tail))
            } else {
                statement.clone()
            };
            let settings: Vec<&str> = params
                .split('&')
                .filter(|kv| !kv.starts_with("query="))
                .collect();
            eprintln!(
                "ch-sink: {} | URL settings {settings:?} | Content-Encoding {:?} | {} body bytes \
                 | statement: {shown}",
                req.line.split(' ').next().unwrap_or(""),
                req.content_encoding,
                req.body.len()
            );
        }
        let upper = statement.trim_start().to_ascii_uppercase();
        let answer: &[u8] = if upper.starts_with("INSERT") {
            let decoded = decode(
                &req.body,
                req.content_encoding.as_deref(),
                param("decompress").as_deref() == Some("1"),
            );
            match decoded {
                Ok(data) => {
                    let n = marker.find_iter(&data).count() as u64;
                    counts
                        .body_bytes
                        .fetch_add(req.body.len() as u64, Ordering::Relaxed);
                    counts.inserts.fetch_add(1, Ordering::Relaxed);
                    let ns = counts.epoch.expect("set").elapsed().as_nanos() as u64;
                    counts.last_insert_ns.store(ns.max(1), Ordering::Release);
                    counts.rows.fetch_add(n, Ordering::AcqRel);
                }
                Err(e) => {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("ch-sink: undecodable insert ({}): {e:#}", req.line);
                }
            }
            b""
        } else if upper.starts_with("SELECT 1") || upper.starts_with("EXISTS") {
            b"1\n"
        } else if upper.contains("VERSION()") {
            b"25.3.1.1\n"
        } else {
            b""
        };
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: text/tab-separated-values; charset=UTF-8\r\n\
             X-ClickHouse-Server-Display-Name: ch-sink\r\nX-ClickHouse-Format: TabSeparated\r\n\
             Content-Length: {}\r\n\r\n",
            answer.len()
        )?;
        w.write_all(answer)?;
        if req.close {
            break;
        }
    }
    Ok(())
}

/// The insert's data as the server would parse it.
fn decode(body: &[u8], encoding: Option<&str>, native_blocks: bool) -> anyhow::Result<Vec<u8>> {
    let data = match encoding {
        None | Some("identity") => body.to_vec(),
        Some("lz4") => {
            let mut out = Vec::with_capacity(body.len() * 4);
            lz4_flex::frame::FrameDecoder::new(body).read_to_end(&mut out)?;
            out
        }
        Some("zstd") => zstd::decode_all(body)?,
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
            out
        }
        Some("deflate") => {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(body).read_to_end(&mut out)?;
            out
        }
        Some(other) => bail!("Content-Encoding {other} not supported"),
    };
    if native_blocks {
        native_decompress(&data)
    } else {
        Ok(data)
    }
}

/// Undoes ClickHouse's compressed-block framing (`decompress=1`).
fn native_decompress(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 4);
    while !data.is_empty() {
        ensure!(data.len() >= 25, "truncated compressed block header");
        let method = data[16];
        let u32_at = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().expect("4 bytes"));
        let compressed = u32_at(17) as usize;
        let size = u32_at(21) as usize;
        ensure!(
            compressed >= 9 && data.len() >= 16 + compressed,
            "compressed block of {compressed} bytes in {} left",
            data.len()
        );
        let block = &data[25..16 + compressed];
        match method {
            0x82 => {
                let at = out.len();
                out.resize(at + size, 0);
                let n = lz4_flex::block::decompress_into(block, &mut out[at..])?;
                ensure!(n == size, "LZ4 block of {n} bytes, header says {size}");
            }
            0x90 => out.extend_from_slice(&zstd::bulk::decompress(block, size)?),
            0x02 => out.extend_from_slice(block),
            m => bail!("compression method {m:#x} not supported"),
        }
        data = &data[16 + compressed..];
    }
    Ok(out)
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(port: u16, target: &str, headers: &str, body: &[u8]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "POST {target} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn counts_rows_in_every_encoding() {
        let sink = ChSink::start(false).unwrap();
        let rows: Vec<u8> = (0..5)
            .flat_map(|i| format!("row{i}\x0fwasmcol-loadgen\x051.0.0").into_bytes())
            .collect();
        let insert = "/?query=INSERT%20INTO%20otel.otel_traces%20FORMAT%20RowBinary";
        assert!(post(sink.port(), insert, "", &rows).starts_with("HTTP/1.1 200"));
        let mut lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz4.write_all(&rows).unwrap();
        post(
            sink.port(),
            insert,
            "Content-Encoding: lz4\r\n",
            &lz4.finish().unwrap(),
        );
        let zstd = zstd::bulk::compress(&rows, 1).unwrap();
        post(sink.port(), insert, "Content-Encoding: zstd\r\n", &zstd);
        // ClickHouse's compressed block: checksum, method, sizes, LZ4 block.
        let block = lz4_flex::block::compress(&rows);
        let mut native = vec![0u8; 16];
        native.push(0x82);
        native.extend_from_slice(&((block.len() + 9) as u32).to_le_bytes());
        native.extend_from_slice(&(rows.len() as u32).to_le_bytes());
        native.extend_from_slice(&block);
        post(
            sink.port(),
            &format!("{insert}&decompress=1"),
            "",
            &[native.clone(), native].concat(),
        );
        assert_eq!(sink.rows(), 25);
        assert_eq!(sink.inserts(), 4);
        assert_eq!(sink.errors(), 0);
        assert!(post(sink.port(), "/", "", b"SELECT 1").ends_with("\r\n\r\n1\n"));
    }

    #[test]
    fn reads_chunked_bodies_on_a_kept_alive_connection() {
        let sink = ChSink::start(false).unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", sink.port())).unwrap();
        for _ in 0..2 {
            write!(
                s,
                "POST /?query=INSERT+INTO+t+FORMAT+RowBinary HTTP/1.1\r\nHost: x\r\n\
                 Transfer-Encoding: chunked\r\n\r\n7\r\nwasmcol\r\n8\r\n-loadgen\r\n0\r\n\r\n"
            )
            .unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with("HTTP/1.1 200"), "{line}");
            // Headers and the empty body.
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
            }
        }
        assert_eq!(sink.rows(), 2);
    }
}
