//! `wasmcol-loadgen`: sends synthetic traces (or logs, or metrics: `--signal`) to an OTLP
//! endpoint, like the OpenTelemetry `telemetrygen` tool, and reports how many were accepted.
//!
//! It exists to drive benchmarks of the collector on small machines, so the sending path is
//! kept cheap:
//! - each worker builds its request once, as a template, and per send only rewrites ids,
//!   timestamps, statuses and attribute values in place (no per-span allocation);
//! - the request is encoded (and compressed, and for gRPC framed) once per send into one
//!   buffer handed to the transport as it is, so a retry resends the same bytes;
//! - one HTTP/2 connection (tonic `Channel`) or one HTTP/1 keep-alive connection per worker;
//! - rate limiting hands out numbered requests with absolute send times, so timer jitter
//!   never accumulates into drift.
//!
//! Counting: every attempt is a sent request. "accepted" is a success response, "refused" a
//! retryable refusal (gRPC `UNAVAILABLE`/`RESOURCE_EXHAUSTED` from the server, HTTP
//! 429/502/503/504), "failed" everything else (connection errors, timeouts, other statuses).
//!
//! Latency: the time from handing an attempt to the transport to its complete success
//! response, for accepted attempts only, summarised as p50/p90/p99/max. It is the server's
//! answer time as one client sees it, not time since the rate schedule said the request was
//! due (a worker waiting on a slow answer sends its next request late; the end-of-run lag
//! warning says when that happened).

use std::error::Error as StdError;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use rand::rngs::SmallRng;
use rand::{Rng as _, RngExt as _, SeedableRng as _};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::client::GrpcService as _;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use wasmcol::config::tls::client::{ClientTls, ClientTlsConfig, HttpsConnector};

mod signals;

use signals::{Converter, Request, SignalArg};

/// Identifies the load generator in `user-agent` headers and the instrumentation scope.
const USER_AGENT: &str = concat!("wasmcol-loadgen/", env!("CARGO_PKG_VERSION"));
/// Message put on root spans that get status ERROR.
const ERROR_MESSAGE: &str = "loadgen: simulated error";
/// First wait between retries of a refused request (doubles up to [`MAX_BACKOFF`]).
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between retries when the server gives no `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Pause after a connection-level failure, so a dead endpoint does not turn a worker into a
/// busy loop of connect attempts.
const TRANSPORT_FAILURE_PAUSE: Duration = Duration::from_millis(100);
/// Upper bound on memory spent on pre-generated attribute values.
const VALUE_POOL_BYTES: usize = 16 << 20;
/// Number of distinct pre-generated attribute values (fewer if they are large).
const VALUE_POOL_LEN: usize = 64;

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// Sends synthetic OTLP traces to a collector and reports how many it accepted.
///
/// Stops after --traces traces, after --duration, or on Ctrl-C, whichever comes first
/// (one trace if neither limit is given). The summary goes to stdout, progress to stderr.
#[derive(Parser, Debug, Clone)]
#[command(name = "wasmcol-loadgen", version, about, long_about = None)]
struct Args {
    /// What to send: traces, or the same load as log records (one per span the trace shape
    /// has, logged inside it) or metric data points (one per span, over a sum, a gauge and a
    /// histogram). --traces, --rate and --batch-traces count traces either way; the summary's
    /// `spans_*` fields count the items sent.
    #[arg(long, value_enum, default_value_t = SignalArg::Traces)]
    signal: SignalArg,

    /// Transport: OTLP/gRPC or OTLP/HTTP.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,

    /// HOST:PORT to send to [default: localhost:4317 for grpc, localhost:4318 for http].
    /// HTTP posts to http://ENDPOINT/v1/traces (/v1/logs, /v1/metrics). A leading "http://" is accepted; "https://"
    /// means TLS (verified against the system's roots unless --tls-ca is given).
    #[arg(long, value_name = "HOST:PORT")]
    endpoint: Option<String>,

    /// PEM CA certificate that signed the collector's certificate; turns TLS on.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<String>,

    /// PEM client certificate for mutual TLS (with --tls-key); turns TLS on.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<String>,

    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<String>,

    /// Body encoding for --protocol http.
    #[arg(long, value_enum, default_value_t = HttpEncoding::Proto)]
    http_encoding: HttpEncoding,

    /// Compression of request bodies.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,

    /// Extra header (gRPC metadata) sent with every request; repeatable.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,

    /// Total number of traces to send [default: 1 unless --duration is given].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    traces: Option<u64>,

    /// How long to send for, e.g. 500ms, 10s, 2m (a bare number is seconds).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Traces per second across all workers; 0 sends as fast as the workers can.
    #[arg(long, value_name = "R", default_value_t = 0.0, value_parser = parse_rate)]
    rate: f64,

    /// Number of concurrent senders, each with its own connection.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    workers: u32,

    /// Runtime threads [default: the smaller of --workers and the number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,

    /// Spans per trace: one root SERVER span, the rest CLIENT/INTERNAL descendants.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    spans_per_trace: u32,

    /// String attributes per span.
    #[arg(long, value_name = "N", default_value_t = 4)]
    attributes: u32,

    /// Length in bytes of each string attribute value.
    #[arg(long, value_name = "BYTES", default_value_t = 16)]
    attribute_size: u32,

    /// Traces per request; a request always holds whole traces.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    batch_traces: u32,

    /// Value of the resource attribute service.name.
    #[arg(long, value_name = "NAME", default_value = "loadgen")]
    service: String,

    /// Fraction (0..=1) of traces whose root span has status ERROR.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_ratio)]
    status_error_ratio: f64,

    /// Retry refused requests (gRPC UNAVAILABLE/RESOURCE_EXHAUSTED, HTTP 429/502/503/504) with
    /// exponential backoff, honouring HTTP Retry-After, until accepted or the run ends.
    #[arg(long)]
    retry: bool,

    /// Give up on a request (counted as failed) after this long.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,

    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,

    /// Do not print progress to stderr every second.
    #[arg(long, short)]
    quiet: bool,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// OTLP/gRPC (HTTP/2).
    Grpc,
    /// OTLP/HTTP (HTTP/1.1 POST).
    Http,
}

/// Body encoding for OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HttpEncoding {
    /// Binary protobuf (`application/x-protobuf`).
    Proto,
    /// OTLP/JSON (`application/json`).
    Json,
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompressionArg {
    /// Uncompressed.
    None,
    /// gzip at level 1, to keep the generator cheap.
    Gzip,
    /// Zstandard at level 1.
    Zstd,
}

/// Parses `500ms`, `10s`, `2m` or a bare number of seconds; fractions are allowed (`1.5s`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit_secs) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. 500ms, 10s, 2m)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "invalid duration {s:?}: must be a non-negative number"
        ));
    }
    Duration::try_from_secs_f64(value * unit_secs)
        .map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses a non-negative, finite traces-per-second rate.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("invalid rate {s:?}: expected a number >= 0")),
    }
}

/// Parses a fraction between 0 and 1.
fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "invalid ratio {s:?}: expected a number from 0 to 1"
        )),
    }
}

/// Parses `KEY=VALUE` (split at the first `=`).
fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("invalid header {s:?}: expected KEY=VALUE")),
    }
}

// ---------------------------------------------------------------------------------------------
// What to send and when
// ---------------------------------------------------------------------------------------------

/// How many requests to send, how big, and on what schedule.
///
/// Requests are numbered 0, 1, 2, ... in the order workers claim them; every number maps to a
/// fixed size and (with a rate) a fixed send time relative to the start.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    /// Total traces to send, or `None` to send until the deadline / Ctrl-C.
    total_traces: Option<u64>,
    /// Traces per request.
    batch_traces: u64,
    /// Traces per second across all workers; 0 means unlimited.
    rate: f64,
}

impl Plan {
    /// Traces in request `k`, or `None` once all traces have been handed out.
    fn traces_in_request(&self, k: u64) -> Option<u64> {
        match self.total_traces {
            None => Some(self.batch_traces),
            Some(total) => {
                let first = k.checked_mul(self.batch_traces)?;
                (first < total).then(|| (total - first).min(self.batch_traces))
            }
        }
    }

    /// When request `k` is due, measured from the start; `None` without a rate limit.
    ///
    /// Computed from `k` rather than from the previous send, so a late wake-up is caught up
    /// by the following requests instead of shifting every later one.
    fn send_offset(&self, k: u64) -> Option<Duration> {
        if self.rate <= 0.0 {
            return None;
        }
        let secs = k as f64 * self.batch_traces as f64 / self.rate;
        Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
    }
}

// ---------------------------------------------------------------------------------------------
// Trace generation
// ---------------------------------------------------------------------------------------------

/// The shape of generated traces.
#[derive(Debug, Clone)]
struct TraceShape {
    /// Spans per trace (at least 1).
    spans_per_trace: usize,
    /// String attributes per span.
    attributes: usize,
    /// Bytes per attribute value.
    attribute_size: usize,
    /// Fraction of traces whose root span has status ERROR.
    status_error_ratio: f64,
    /// `service.name` of the resource.
    service: String,
}

/// Parent of the span at `pos` within its trace: spans form a binary tree in heap order
/// (root 0; 1 and 2 under 0; 3 and 4 under 1; ...), which gives realistic depth (log2 of
/// the span count) while a parent always precedes its children.
fn parent_of(pos: usize) -> Option<usize> {
    pos.checked_sub(1).map(|p| p / 2)
}

/// Kind of the span at `pos`: the root serves a request, descendants alternate between
/// outgoing calls and internal work.
fn kind_of(pos: usize) -> SpanKind {
    match pos {
        0 => SpanKind::Server,
        p if p % 2 == 1 => SpanKind::Client,
        _ => SpanKind::Internal,
    }
}

/// Builds one ExportTraceServiceRequest per send by rewriting a template in place.
///
/// All strings and id buffers are allocated once (when the template first grows to a batch
/// size); a send only overwrites bytes, so generation does no per-span heap work.
struct Generator {
    shape: TraceShape,
    /// The request being reused; always one ResourceSpans with one ScopeSpans.
    request: ExportTraceServiceRequest,
    /// Attribute keys, shared by every span (cloned into the template once).
    keys: Vec<String>,
    /// Pre-generated attribute values; each send copies randomly chosen ones into the spans
    /// so that consecutive requests do not compress unrealistically well.
    values: Vec<String>,
    /// Span names per position in a trace.
    names: Vec<String>,
    rng: SmallRng,
    /// Scratch: span ids of the trace being filled, by position.
    ids: Vec<[u8; 8]>,
    /// Scratch: (start, end) nanos of the trace being filled, by position.
    times: Vec<(u64, u64)>,
    /// What a send carries.
    signal: SignalArg,
    /// The log and metric templates made from the spans.
    converter: Converter,
}

impl Generator {
    /// Creates a generator; `rng` decides every id, value and duration it produces.
    fn new(shape: TraceShape, mut rng: SmallRng) -> Self {
        let keys = (0..shape.attributes)
            .map(|i| format!("loadgen.attr.{i}"))
            .collect();
        let pool_len = VALUE_POOL_BYTES
            .checked_div(shape.attribute_size)
            .map_or(1, |n| n.clamp(1, VALUE_POOL_LEN));
        let values = (0..pool_len)
            .map(|_| random_text(&mut rng, shape.attribute_size))
            .collect();
        let names = (0..shape.spans_per_trace)
            .map(|pos| match kind_of(pos) {
                SpanKind::Server => "GET /loadgen".to_owned(),
                SpanKind::Client => format!("call-{pos}"),
                _ => format!("work-{pos}"),
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_kv("service.name", &shape.service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "wasmcol-loadgen".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..Default::default()
                    }),
                    spans: Vec::new(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let n = shape.spans_per_trace;
        Self {
            shape,
            request,
            keys,
            values,
            names,
            rng,
            ids: vec![[0; 8]; n],
            times: vec![(0, 0); n],
            signal: SignalArg::Traces,
            converter: Converter::default(),
        }
    }

    /// The same generator sending `signal`.
    fn for_signal(mut self, signal: SignalArg) -> Self {
        self.signal = signal;
        self
    }

    /// [`Generator::fill`], then made into the requested signal's request.
    fn next_request(&mut self, traces: usize, now_nanos: u64) -> Request<'_> {
        self.fill(traces, now_nanos);
        match self.signal {
            SignalArg::Traces => Request::Traces(&self.request),
            SignalArg::Logs => Request::Logs(self.converter.logs(&self.request)),
            SignalArg::Metrics => Request::Metrics(self.converter.metrics(&self.request)),
        }
    }

    /// The template span for position `pos` of a trace; ids and times are filled per send.
    fn template_span(&self, pos: usize) -> Span {
        Span {
            trace_id: vec![0; 16],
            span_id: vec![0; 8],
            parent_span_id: if pos == 0 { Vec::new() } else { vec![0; 8] },
            name: self.names[pos].clone(),
            kind: kind_of(pos) as i32,
            attributes: self
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| string_kv(k, &self.values[i % self.values.len()]))
                .collect(),
            // Only the root carries a status; keeping it allocated lets a send flip it
            // between UNSET and ERROR without allocating.
            status: (pos == 0).then(Status::default),
            ..Default::default()
        }
    }

    /// Rewrites the request to hold `traces` fresh traces ending around `now_nanos` (Unix
    /// time) and returns it.
    fn fill(&mut self, traces: usize, now_nanos: u64) -> &ExportTraceServiceRequest {
        let spt = self.shape.spans_per_trace;
        let want = traces * spt;
        let have = self.request.resource_spans[0].scope_spans[0].spans.len();
        if have > want {
            self.request.resource_spans[0].scope_spans[0]
                .spans
                .truncate(want);
        } else if have < want {
            let more: Vec<Span> = (have..want).map(|i| self.template_span(i % spt)).collect();
            self.request.resource_spans[0].scope_spans[0]
                .spans
                .extend(more);
        }

        let Self {
            request,
            values,
            rng,
            ids,
            times,
            shape,
            ..
        } = self;
        let spans = &mut request.resource_spans[0].scope_spans[0].spans;
        for trace in spans.chunks_exact_mut(spt) {
            let mut trace_id = [0u8; 16];
            while trace_id == [0; 16] {
                rng.fill_bytes(&mut trace_id);
            }
            // Traces finished within the last millisecond and took 5..200ms.
            let end = now_nanos.saturating_sub(rng.random_range(0..1_000_000));
            let root_duration = rng.random_range(5_000_000..200_000_000);
            let is_error =
                shape.status_error_ratio > 0.0 && rng.random_bool(shape.status_error_ratio);

            for (pos, span) in trace.iter_mut().enumerate() {
                let span_id = random_span_id(rng);
                ids[pos] = span_id;
                span.trace_id.copy_from_slice(&trace_id);
                span.span_id.copy_from_slice(&span_id);
                let (start, stop) = match parent_of(pos) {
                    None => (end.saturating_sub(root_duration), end),
                    Some(parent) => {
                        span.parent_span_id.copy_from_slice(&ids[parent]);
                        // The two children of a parent run one after the other inside it.
                        let (p_start, p_end) = times[parent];
                        let p_len = p_end - p_start;
                        let sibling = ((pos - 1) % 2) as u64;
                        let start = p_start + p_len * (1 + 4 * sibling) / 10;
                        (start, start + p_len * 4 / 10)
                    }
                };
                times[pos] = (start, stop);
                span.start_time_unix_nano = start;
                span.end_time_unix_nano = stop;
                for kv in &mut span.attributes {
                    if let Some(AnyValue {
                        value: Some(Value::StringValue(s)),
                        ..
                    }) = &mut kv.value
                    {
                        s.clear();
                        s.push_str(&values[rng.random_range(0..values.len())]);
                    }
                }
                if let Some(status) = &mut span.status {
                    status.message.clear();
                    if is_error {
                        status.code = StatusCode::Error as i32;
                        status.message.push_str(ERROR_MESSAGE);
                    } else {
                        status.code = StatusCode::Unset as i32;
                    }
                }
            }
        }
        &self.request
    }
}

/// A non-zero random span id (all-zero ids are invalid in OTLP).
fn random_span_id(rng: &mut SmallRng) -> [u8; 8] {
    loop {
        let id = rng.next_u64();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// `len` random alphanumeric ASCII characters.
fn random_text(rng: &mut SmallRng, len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// A string attribute.
fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// Current Unix time in nanoseconds.
fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Size of the gRPC message frame header: compressed flag (1 byte) and length (4 bytes).
const GRPC_FRAME_HEADER: usize = 5;

/// Turns a request into the bytes that go on the wire, reusing buffers between sends.
///
/// For gRPC it also writes the message frame and does the compression itself, instead of
/// leaving both to tonic's client: tonic would need an owned message per call (a deep clone of
/// the request per send) and always compresses at gzip level 6, which costs several times the
/// CPU of level 1 that this uses for both protocols.
struct BodyEncoder {
    /// OTLP/JSON rather than protobuf (HTTP only).
    json: bool,
    /// Compression applied to the payload.
    compression: CompressionArg,
    /// Prefix the gRPC frame header.
    grpc_frame: bool,
    /// Uncompressed payload, reused between sends when compressing.
    scratch: Vec<u8>,
    /// Compressed payload, reused between sends (zstd writes it before the frame is built).
    compressed: Vec<u8>,
    /// Zstandard context kept between sends (creating one per request is costly).
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl BodyEncoder {
    /// An encoder for the given payload format, compression and framing.
    fn new(json: bool, compression: CompressionArg, grpc_frame: bool) -> anyhow::Result<Self> {
        let zstd = match compression {
            CompressionArg::Zstd => {
                Some(zstd::bulk::Compressor::new(1).context("creating zstd context")?)
            }
            _ => None,
        };
        Ok(Self {
            json,
            compression,
            grpc_frame,
            scratch: Vec::new(),
            compressed: Vec::new(),
            zstd,
        })
    }

    /// Appends the encoded (uncompressed) payload to `out`.
    fn payload(json: bool, request: &Request<'_>, out: &mut Vec<u8>) {
        if json {
            request.encode_json(out);
        } else {
            request.encode_protobuf(out);
        }
    }

    /// Encodes, compresses and frames `request` into a fresh `Bytes` (the only allocation of
    /// a send once the buffers have warmed up).
    fn encode(&mut self, request: &Request<'_>) -> anyhow::Result<Bytes> {
        let prefix = if self.grpc_frame {
            GRPC_FRAME_HEADER
        } else {
            0
        };
        let mut out = match self.compression {
            CompressionArg::None => {
                let mut out = Vec::with_capacity(prefix + self.scratch.capacity());
                out.resize(prefix, 0);
                Self::payload(self.json, request, &mut out);
                // Remember the size so the next buffer is allocated once, at the right size.
                if out.len() > self.scratch.capacity() {
                    self.scratch.reserve(out.len());
                }
                out
            }
            CompressionArg::Gzip => {
                self.scratch.clear();
                Self::payload(self.json, request, &mut self.scratch);
                let mut out = Vec::with_capacity(prefix + self.scratch.len() / 3 + 64);
                out.resize(prefix, 0);
                let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                gz.write_all(&self.scratch).context("gzip")?;
                gz.finish().context("gzip")?
            }
            CompressionArg::Zstd => {
                self.scratch.clear();
                Self::payload(self.json, request, &mut self.scratch);
                let Some(z) = &mut self.zstd else {
                    bail!("zstd context missing");
                };
                self.compressed.clear();
                self.compressed
                    .reserve(zstd::zstd_safe::compress_bound(self.scratch.len()));
                z.compress_to_buffer(&self.scratch, &mut self.compressed)
                    .context("zstd")?;
                let mut out = Vec::with_capacity(prefix + self.compressed.len());
                out.resize(prefix, 0);
                out.extend_from_slice(&self.compressed);
                out
            }
        };
        if self.grpc_frame {
            let len = u32::try_from(out.len() - GRPC_FRAME_HEADER)
                .context("request too large for one gRPC message")?;
            out[0] = u8::from(self.compression != CompressionArg::None);
            out[1..GRPC_FRAME_HEADER].copy_from_slice(&len.to_be_bytes());
        }
        Ok(Bytes::from(out))
    }
}

// ---------------------------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------------------------

/// What became of one attempt to send a request.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Success response; `rejected_spans` is the server's OTLP partial-success count.
    Accepted { rejected_spans: u64 },
    /// Retryable refusal; the server may say how long to wait.
    Refused { retry_after: Option<Duration> },
    /// Anything else. `transport` marks connection-level failures (no response at all).
    Failed { message: String, transport: bool },
}

/// A connection-level failure.
fn transport_failure(err: &(dyn StdError + 'static)) -> Outcome {
    Outcome::Failed {
        message: wasmcol::net::error_chain(err),
        transport: true,
    }
}

/// Classifies a complete gRPC response: its HTTP status, headers (which carry the status in a
/// trailers-only response), trailers and body.
fn classify_grpc(
    http_status: http::StatusCode,
    headers: &http::HeaderMap,
    trailers: Option<&http::HeaderMap>,
    body: &[u8],
) -> Outcome {
    let status = tonic::Status::from_header_map(headers)
        .or_else(|| trailers.and_then(tonic::Status::from_header_map));
    let Some(status) = status else {
        // No gRPC status at all: a proxy or a non-gRPC server answered. Map the HTTP status
        // as gRPC clients do (429/502/503/504 mean UNAVAILABLE).
        return match http_status.as_u16() {
            429 | 502 | 503 | 504 => Outcome::Refused { retry_after: None },
            _ => Outcome::Failed {
                message: format!("HTTP {http_status} without a gRPC status"),
                transport: false,
            },
        };
    };
    match status.code() {
        tonic::Code::Ok => Outcome::Accepted {
            rejected_spans: grpc_rejected_spans(body),
        },
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted => {
            Outcome::Refused { retry_after: None }
        }
        code => Outcome::Failed {
            message: format!("gRPC {code:?}: {}", status.message()),
            transport: false,
        },
    }
}

/// The partial-success `rejected_spans` of a gRPC response body (one uncompressed message
/// frame, as no compressed response is asked for); 0 if absent or unreadable.
fn grpc_rejected_spans(body: &[u8]) -> u64 {
    let Some((&[0, a, b, c, d], rest)) = body.split_first_chunk::<GRPC_FRAME_HEADER>() else {
        return 0;
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    rest.get(..len)
        .and_then(|m| ExportTraceServiceResponse::decode(m).ok())
        .and_then(|r| r.partial_success)
        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
}

/// Classifies an OTLP/HTTP response (OTLP/HTTP marks 429, 502, 503 and 504 as retryable).
/// `json_rejected` names the partial success's count in a JSON body (`rejectedSpans`); `None`
/// for a protobuf body.
fn classify_http(
    status: http::StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    json_rejected: Option<&str>,
) -> Outcome {
    if status.is_success() {
        return Outcome::Accepted {
            rejected_spans: http_rejected_spans(body, json_rejected),
        };
    }
    match status.as_u16() {
        429 | 502 | 503 | 504 => Outcome::Refused { retry_after },
        _ => {
            // The body is a google.rpc.Status (protobuf or JSON); its message is readable
            // text inside either, which is enough for a diagnostic.
            let text: String = String::from_utf8_lossy(body)
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            Outcome::Failed {
                message: format!("HTTP {status}: {}", text.trim()),
                transport: false,
            }
        }
    }
}

/// The partial-success rejected count of a successful OTLP/HTTP response body (0 if absent
/// or unreadable); `json_rejected` as for [`classify_http`]. The three signals' protobuf
/// responses share one layout (the count is field 1 of field 1), so one decoder reads them.
fn http_rejected_spans(body: &[u8], json_rejected: Option<&str>) -> u64 {
    if body.is_empty() {
        return 0;
    }
    let rejected = if let Some(field) = json_rejected {
        // int64 travels as a string in OTLP/JSON, but accept a number as well.
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                let r = v.get("partialSuccess")?.get(field)?.clone();
                r.as_i64().or_else(|| r.as_str()?.parse().ok())
            })
            .unwrap_or(0)
    } else {
        ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_spans)
    };
    u64::try_from(rejected).unwrap_or(0)
}

/// Parses `Retry-After` given in seconds (the HTTP-date form is not supported and ignored).
fn parse_retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// TCP with TLS when `tls` is set; the collector's exporters' connector.
fn connector(tls: &Option<Arc<ClientTls>>) -> HttpsConnector {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    match tls {
        Some(tls) => tls.connector(http),
        None => HttpsConnector::plaintext(http),
    }
}

/// One worker's connection to the endpoint.
enum Sender {
    /// OTLP/gRPC over one HTTP/2 connection; requests are framed by [`BodyEncoder`].
    Grpc {
        channel: Channel,
        /// Every request header: gRPC ones and the user's.
        headers: http::HeaderMap,
        /// The signal's export method.
        path: &'static str,
    },
    /// OTLP/HTTP over one HTTP/1.1 keep-alive connection.
    Http {
        client: Box<HttpClient<HttpsConnector, Full<Bytes>>>,
        uri: http::Uri,
        headers: http::HeaderMap,
        json: bool,
        signal: SignalArg,
    },
}

/// Connection settings shared by all workers, validated once at start-up.
#[derive(Debug, Clone)]
enum Target {
    Grpc {
        endpoint: Box<Endpoint>,
        headers: http::HeaderMap,
        tls: Option<Arc<ClientTls>>,
        signal: SignalArg,
    },
    Http {
        uri: http::Uri,
        headers: http::HeaderMap,
        json: bool,
        tls: Option<Arc<ClientTls>>,
        signal: SignalArg,
    },
}

impl Target {
    /// Validates endpoint and headers for the chosen protocol.
    fn from_args(args: &Args) -> anyhow::Result<Self> {
        let default = match args.protocol {
            Protocol::Grpc => "localhost:4317",
            Protocol::Http => "localhost:4318",
        };
        let raw = args.endpoint.as_deref().unwrap_or(default).trim();
        let https = raw.starts_with("https://");
        let host_port = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"))
            .unwrap_or(raw)
            .trim_end_matches('/');
        // TLS with the collector's own client settings (and its certificate reload).
        let tls = if https || args.tls_ca.is_some() || args.tls_cert.is_some() {
            let config = ClientTlsConfig {
                ca_file: args.tls_ca.clone().unwrap_or_default(),
                cert_file: args.tls_cert.clone().unwrap_or_default(),
                key_file: args.tls_key.clone().unwrap_or_default(),
                ..ClientTlsConfig::default()
            };
            let alpn = match args.protocol {
                Protocol::Grpc => "h2",
                Protocol::Http => "http/1.1",
            };
            let built = config
                .build("tls", &[alpn])
                .map_err(|e| anyhow::anyhow!("--tls-ca/--tls-cert/--tls-key: {e}"))?;
            Some(Arc::new(built))
        } else {
            None
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        if host_port.is_empty() || host_port.contains('/') {
            bail!("--endpoint {raw:?}: expected HOST:PORT");
        }
        let content_encoding = match args.compression {
            CompressionArg::None => None,
            CompressionArg::Gzip => Some(http::HeaderValue::from_static("gzip")),
            CompressionArg::Zstd => Some(http::HeaderValue::from_static("zstd")),
        };
        match args.protocol {
            Protocol::Grpc => {
                let endpoint = Endpoint::from_shared(format!("{scheme}://{host_port}"))
                    .with_context(|| format!("--endpoint {raw:?}"))?
                    .user_agent(USER_AGENT)
                    .context("user agent")?
                    .connect_timeout(args.timeout)
                    .tcp_nodelay(true);
                // Validate as gRPC metadata (lower-case ASCII keys, no binary "-bin" keys).
                let mut metadata = MetadataMap::new();
                for (k, v) in &args.headers {
                    let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .with_context(|| format!("--header {k:?}: invalid gRPC metadata key"))?;
                    let value = AsciiMetadataValue::try_from(v.as_str())
                        .with_context(|| format!("--header {k:?}: invalid gRPC metadata value"))?;
                    metadata.append(key, value);
                }
                let mut headers = metadata.into_headers();
                headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
                if let Some(encoding) = content_encoding {
                    headers.insert("grpc-encoding", encoding);
                }
                Ok(Self::Grpc {
                    endpoint: Box::new(endpoint),
                    headers,
                    tls,
                    signal: args.signal,
                })
            }
            Protocol::Http => {
                let uri: http::Uri = format!("{scheme}://{host_port}{}", args.signal.http_path())
                    .parse()
                    .with_context(|| format!("--endpoint {raw:?}"))?;
                let json = args.http_encoding == HttpEncoding::Json;
                let mut headers = http::HeaderMap::new();
                let content_type = if json {
                    "application/json"
                } else {
                    "application/x-protobuf"
                };
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(content_type),
                );
                headers.insert(
                    http::header::USER_AGENT,
                    http::HeaderValue::from_static(USER_AGENT),
                );
                if let Some(encoding) = content_encoding {
                    headers.insert(http::header::CONTENT_ENCODING, encoding);
                }
                for (k, v) in &args.headers {
                    let name = http::HeaderName::try_from(k.as_str())
                        .with_context(|| format!("--header {k:?}: invalid header name"))?;
                    let value = http::HeaderValue::try_from(v.as_str())
                        .with_context(|| format!("--header {k:?}: invalid header value"))?;
                    headers.append(name, value);
                }
                Ok(Self::Http {
                    uri,
                    headers,
                    json,
                    tls,
                    signal: args.signal,
                })
            }
        }
    }

    /// Where and how requests go, for the summary.
    fn describe(&self) -> String {
        match self {
            Self::Grpc { endpoint, .. } => format!("OTLP/gRPC to {}", endpoint.uri()),
            Self::Http { uri, json, .. } => {
                format!(
                    "OTLP/HTTP ({}) to {uri}",
                    if *json { "json" } else { "proto" }
                )
            }
        }
    }

    /// Opens one worker's connection (lazily: a dead endpoint shows up as failed requests).
    fn connect(&self) -> Sender {
        match self {
            Self::Grpc {
                endpoint,
                headers,
                tls,
                signal,
            } => Sender::Grpc {
                channel: endpoint.connect_with_connector_lazy(connector(tls)),
                headers: headers.clone(),
                path: signal.grpc_path(),
            },
            Self::Http {
                uri,
                headers,
                json,
                tls,
                signal,
            } => {
                let client =
                    Box::new(HttpClient::builder(TokioExecutor::new()).build(connector(tls)));
                Sender::Http {
                    client,
                    uri: uri.clone(),
                    headers: headers.clone(),
                    json: *json,
                    signal: *signal,
                }
            }
        }
    }

    /// The body encoder matching this target.
    fn body_encoder(&self, compression: CompressionArg) -> anyhow::Result<BodyEncoder> {
        match self {
            Self::Grpc { .. } => BodyEncoder::new(false, compression, true),
            Self::Http { json, .. } => BodyEncoder::new(*json, compression, false),
        }
    }
}

impl Sender {
    /// Sends one request body and classifies the result.
    async fn send(&mut self, body: Bytes) -> Outcome {
        match self {
            Self::Grpc {
                channel,
                headers,
                path,
            } => {
                if let Err(e) = std::future::poll_fn(|cx| channel.poll_ready(cx)).await {
                    return transport_failure(&e);
                }
                let mut request = http::Request::new(tonic::body::Body::new(Full::new(body)));
                *request.method_mut() = http::Method::POST;
                // The channel fills in scheme and authority.
                *request.uri_mut() = http::Uri::from_static(path);
                *request.version_mut() = http::Version::HTTP_2;
                *request.headers_mut() = headers.clone();
                let response = match channel.call(request).await {
                    Ok(r) => r,
                    Err(e) => return transport_failure(&e),
                };
                let (parts, body) = response.into_parts();
                match body.collect().await {
                    Ok(collected) => {
                        let trailers = collected.trailers().cloned();
                        let data = collected.to_bytes();
                        classify_grpc(parts.status, &parts.headers, trailers.as_ref(), &data)
                    }
                    Err(e) => transport_failure(&e),
                }
            }
            Self::Http {
                client,
                uri,
                headers,
                json,
                signal,
            } => {
                let mut request = http::Request::new(Full::new(body));
                *request.method_mut() = http::Method::POST;
                *request.uri_mut() = uri.clone();
                *request.headers_mut() = headers.clone();
                let response = match client.request(request).await {
                    Ok(r) => r,
                    Err(e) => return transport_failure(&e),
                };
                let status = response.status();
                let retry_after = parse_retry_after(response.headers());
                // Read the body to the end so the connection can be reused.
                match response.into_body().collect().await {
                    Ok(body) => {
                        let rejected = json.then(|| signal.rejected_json());
                        classify_http(status, retry_after, &body.to_bytes(), rejected)
                    }
                    Err(e) => transport_failure(&e),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

/// Counters shared by all workers.
#[derive(Debug, Default)]
struct Stats {
    requests_sent: AtomicU64,
    requests_accepted: AtomicU64,
    requests_refused: AtomicU64,
    requests_failed: AtomicU64,
    spans_sent: AtomicU64,
    spans_accepted: AtomicU64,
    spans_refused: AtomicU64,
    /// Spans the server rejected through OTLP partial success.
    spans_rejected: AtomicU64,
    /// Answer times of accepted attempts.
    latency: LatencyHistogram,
    /// Most recent failure, for the summary.
    last_error: Mutex<Option<String>>,
}

/// Sub-buckets per power of two in [`LatencyHistogram`]: a value is reported within 1/128
/// (0.8 %) of itself.
const LATENCY_SUB_BITS: u32 = 7;
const LATENCY_SUB: u64 = 1 << LATENCY_SUB_BITS;
/// Buckets covering every `u64` of nanoseconds.
const LATENCY_BUCKETS: usize = ((64 - LATENCY_SUB_BITS + 1) as usize) << LATENCY_SUB_BITS;

/// Nanosecond latencies in log-linear buckets (as HdrHistogram does): fixed memory however long
/// the run, lock-free recording from every worker, percentiles within 0.8 %.
#[derive(Debug)]
struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The largest value recorded, exactly.
    max: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    /// The bucket of `nanos`: exact below [`LATENCY_SUB`], then [`LATENCY_SUB`] buckets per
    /// power of two.
    fn index(nanos: u64) -> usize {
        if nanos < LATENCY_SUB {
            return nanos as usize;
        }
        let shift = 63 - nanos.leading_zeros() - LATENCY_SUB_BITS;
        ((u64::from(shift) + 1) * LATENCY_SUB + ((nanos >> shift) - LATENCY_SUB)) as usize
    }

    /// The largest value that falls in bucket `index`.
    fn upper_bound(index: usize) -> u64 {
        let i = index as u64;
        if i < LATENCY_SUB {
            return i;
        }
        let shift = i / LATENCY_SUB - 1;
        let mantissa = u128::from(i % LATENCY_SUB + LATENCY_SUB);
        u64::try_from(((mantissa + 1) << shift) - 1).unwrap_or(u64::MAX)
    }

    fn record(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[Self::index(nanos)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(nanos, Ordering::Relaxed);
    }

    /// The value below or at which a fraction `q` of the recorded values lie (nearest rank,
    /// rounded up to its bucket's bound, never above the maximum); `None` when empty.
    fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let max = self.max.load(Ordering::Relaxed);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(Self::upper_bound(i).min(max)));
            }
        }
        Some(Duration::from_nanos(max))
    }

    /// p50, p90, p99 and max in milliseconds, for the summary.
    fn summary_ms(&self) -> [Option<f64>; 4] {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let max = (self.count.load(Ordering::Relaxed) > 0)
            .then(|| ms(Duration::from_nanos(self.max.load(Ordering::Relaxed))));
        [
            self.quantile(0.50).map(ms),
            self.quantile(0.90).map(ms),
            self.quantile(0.99).map(ms),
            max,
        ]
    }
}

impl Stats {
    /// Records one attempt and its outcome.
    fn record(&self, spans: u64, outcome: &Outcome) {
        self.requests_sent.fetch_add(1, Ordering::Relaxed);
        self.spans_sent.fetch_add(spans, Ordering::Relaxed);
        match outcome {
            Outcome::Accepted { rejected_spans } => {
                let rejected = (*rejected_spans).min(spans);
                self.requests_accepted.fetch_add(1, Ordering::Relaxed);
                self.spans_accepted
                    .fetch_add(spans - rejected, Ordering::Relaxed);
                self.spans_rejected.fetch_add(rejected, Ordering::Relaxed);
            }
            Outcome::Refused { .. } => {
                self.requests_refused.fetch_add(1, Ordering::Relaxed);
                self.spans_refused.fetch_add(spans, Ordering::Relaxed);
            }
            Outcome::Failed { message, .. } => {
                self.requests_failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(message.clone());
                }
            }
        }
    }

    /// A consistent-enough copy of the counters.
    fn snapshot(&self, elapsed: Duration) -> Summary {
        let spans_accepted = self.spans_accepted.load(Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let [
            latency_p50_ms,
            latency_p90_ms,
            latency_p99_ms,
            latency_max_ms,
        ] = self.latency.summary_ms();
        Summary {
            requests_sent: self.requests_sent.load(Ordering::Relaxed),
            requests_accepted: self.requests_accepted.load(Ordering::Relaxed),
            requests_refused: self.requests_refused.load(Ordering::Relaxed),
            requests_failed: self.requests_failed.load(Ordering::Relaxed),
            spans_sent: self.spans_sent.load(Ordering::Relaxed),
            spans_accepted,
            spans_refused: self.spans_refused.load(Ordering::Relaxed),
            elapsed_secs: secs,
            spans_per_sec: if secs > 0.0 {
                spans_accepted as f64 / secs
            } else {
                0.0
            },
            latency_p50_ms,
            latency_p90_ms,
            latency_p99_ms,
            latency_max_ms,
        }
    }
}

/// The end-of-run report (also the `--json` output).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Summary {
    requests_sent: u64,
    requests_accepted: u64,
    requests_refused: u64,
    requests_failed: u64,
    spans_sent: u64,
    spans_accepted: u64,
    spans_refused: u64,
    elapsed_secs: f64,
    spans_per_sec: f64,
    /// Answer time of accepted attempts, in milliseconds (`null` when none was accepted).
    latency_p50_ms: Option<f64>,
    latency_p90_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_max_ms: Option<f64>,
}

/// State shared by the workers of one run.
struct Run {
    plan: Plan,
    start: Instant,
    stats: Stats,
    /// Next request number to claim.
    next_request: AtomicU64,
    /// How late (nanoseconds) the most recent rate-limited request started; a large value at
    /// the end means the workers could not keep up with --rate.
    lag_nanos: AtomicU64,
    /// End of a --duration run. Checked by the workers as well as enforced through `stop`,
    /// so no request due exactly at the deadline slips out before the timer task runs.
    deadline: Option<Instant>,
    /// Cancelled at the deadline or on Ctrl-C; workers finish their request in flight.
    stop: CancellationToken,
    retry: bool,
    timeout: Duration,
}

/// Sleeps for `d` unless the run stops first; returns false if it stopped.
async fn pause(run: &Run, d: Duration) -> bool {
    tokio::select! {
        biased;
        () = run.stop.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// One sender: claims request numbers, waits for their send time, builds and sends them.
async fn worker(
    run: Arc<Run>,
    mut sender: Sender,
    mut generator: Generator,
    mut encoder: BodyEncoder,
) {
    let spans_per_trace = generator.shape.spans_per_trace as u64;
    // Set after a connection-level failure; the pause happens only if there is a next
    // request, so it never lengthens the run.
    let mut cool_down = false;
    loop {
        if run.stop.is_cancelled() || run.deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let k = run.next_request.fetch_add(1, Ordering::Relaxed);
        let Some(traces) = run.plan.traces_in_request(k) else {
            return;
        };
        if std::mem::take(&mut cool_down) && !pause(&run, TRANSPORT_FAILURE_PAUSE).await {
            return;
        }
        if let Some(offset) = run.plan.send_offset(k) {
            let Some(at) = run.start.checked_add(offset) else {
                return;
            };
            if run.deadline.is_some_and(|d| at >= d) {
                return;
            }
            let now = Instant::now();
            if at > now {
                // The timer goes first: `at` is before the deadline, so when both fire in
                // the same timer tick the request is still due and must go out.
                tokio::select! {
                    biased;
                    () = tokio::time::sleep_until(at) => {}
                    () = run.stop.cancelled() => return,
                }
            }
            let lag =
                u64::try_from(now.saturating_duration_since(at).as_nanos()).unwrap_or(u64::MAX);
            run.lag_nanos.store(lag, Ordering::Relaxed);
        }

        let request = generator.next_request(traces as usize, unix_nanos());
        let body = match encoder.encode(&request) {
            Ok(b) => b,
            Err(e) => {
                // Cannot happen with in-memory buffers; count it rather than abort the run.
                run.stats.record(
                    0,
                    &Outcome::Failed {
                        message: format!("encoding: {e:#}"),
                        transport: false,
                    },
                );
                continue;
            }
        };
        let spans = traces * spans_per_trace;

        let mut backoff = INITIAL_BACKOFF;
        loop {
            let sent_at = Instant::now();
            let outcome = match tokio::time::timeout(run.timeout, sender.send(body.clone())).await {
                Ok(o) => o,
                Err(_) => Outcome::Failed {
                    message: format!("no response within {:?}", run.timeout),
                    transport: true,
                },
            };
            if matches!(outcome, Outcome::Accepted { .. }) {
                run.stats.latency.record(sent_at.elapsed());
            }
            run.stats.record(spans, &outcome);
            match outcome {
                Outcome::Refused { retry_after } if run.retry => {
                    let wait = retry_after.unwrap_or_else(|| jitter(&mut generator.rng, backoff));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if !pause(&run, wait).await {
                        return;
                    }
                }
                Outcome::Failed {
                    transport: true, ..
                } => {
                    cool_down = true;
                    break;
                }
                _ => break,
            }
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.0), so workers refused together do not retry
/// in lockstep.
fn jitter(rng: &mut SmallRng, d: Duration) -> Duration {
    d.mul_f64(rng.random_range(0.5..1.0))
}

/// Prints progress to stderr once a second until the run stops.
async fn report_progress(run: Arc<Run>, done: CancellationToken) {
    let mut ticker =
        tokio::time::interval_at(run.start + Duration::from_secs(1), Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_spans = 0;
    let mut last_at = run.start;
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            at = ticker.tick() => {
                let s = run.stats.snapshot(at - run.start);
                let interval = (at - last_at).as_secs_f64();
                let rate = (s.spans_accepted - last_spans) as f64 / interval.max(1e-9);
                last_spans = s.spans_accepted;
                last_at = at;
                eprintln!(
                    "[{:>6.1}s] requests: {} sent, {} accepted, {} refused, {} failed \
                     | spans: {} accepted, {:.0}/s",
                    s.elapsed_secs,
                    s.requests_sent,
                    s.requests_accepted,
                    s.requests_refused,
                    s.requests_failed,
                    s.spans_accepted,
                    rate,
                );
            }
        }
    }
}

/// Runs the load and returns the summary.
async fn run(args: &Args, target: &Target) -> anyhow::Result<(Summary, Arc<Run>)> {
    let plan = Plan {
        total_traces: match (args.traces, args.duration) {
            (None, None) => Some(1),
            (t, _) => t,
        },
        batch_traces: u64::from(args.batch_traces),
        rate: args.rate,
    };
    let shape = TraceShape {
        spans_per_trace: args.spans_per_trace as usize,
        attributes: args.attributes as usize,
        attribute_size: args.attribute_size as usize,
        status_error_ratio: args.status_error_ratio,
        service: args.service.clone(),
    };

    // Everything that can fail or allocate much happens before the clock starts.
    let mut seed = rand::rng();
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        workers.push((
            target.connect(),
            Generator::new(shape.clone(), SmallRng::from_rng(&mut seed)).for_signal(args.signal),
            target.body_encoder(args.compression)?,
        ));
    }

    let start = Instant::now();
    let run = Arc::new(Run {
        plan,
        start,
        deadline: args.duration.and_then(|d| start.checked_add(d)),
        stats: Stats::default(),
        next_request: AtomicU64::new(0),
        lag_nanos: AtomicU64::new(0),
        stop: CancellationToken::new(),
        retry: args.retry,
        timeout: args.timeout,
    });

    if let Some(deadline) = run.deadline {
        let stop = run.stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            stop.cancel();
        });
    }
    {
        let stop = run.stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("wasmcol-loadgen: interrupted, finishing requests in flight");
                stop.cancel();
            }
        });
    }
    let progress_done = CancellationToken::new();
    let progress =
        (!args.quiet).then(|| tokio::spawn(report_progress(run.clone(), progress_done.clone())));

    let handles: Vec<_> = workers
        .into_iter()
        .map(|(sender, generator, encoder)| {
            tokio::spawn(worker(run.clone(), sender, generator, encoder))
        })
        .collect();
    for h in handles {
        h.await.context("worker panicked")?;
    }
    let summary = run.stats.snapshot(run.start.elapsed());
    progress_done.cancel();
    if let Some(p) = progress {
        let _ = p.await;
    }
    run.stop.cancel();
    Ok((summary, run))
}

/// The human-readable summary.
fn format_summary(args: &Args, target: &Target, s: &Summary, spans_rejected: u64) -> String {
    let mut out = format!(
        "wasmcol-loadgen: {}, {} worker(s), {:.2}s\n\
         requests: {} sent, {} accepted, {} refused, {} failed\n\
         spans:    {} sent, {} accepted, {} refused\n\
         throughput: {:.1} accepted spans/s",
        target.describe(),
        args.workers,
        s.elapsed_secs,
        s.requests_sent,
        s.requests_accepted,
        s.requests_refused,
        s.requests_failed,
        s.spans_sent,
        s.spans_accepted,
        s.spans_refused,
        s.spans_per_sec,
    );
    if let (Some(p50), Some(p90), Some(p99), Some(max)) = (
        s.latency_p50_ms,
        s.latency_p90_ms,
        s.latency_p99_ms,
        s.latency_max_ms,
    ) {
        out.push_str(&format!(
            "\nlatency of accepted requests: p50 {p50:.2} ms, p90 {p90:.2} ms, \
             p99 {p99:.2} ms, max {max:.2} ms"
        ));
    }
    if spans_rejected > 0 {
        out.push_str(&format!(
            "\n{spans_rejected} spans rejected by the server (partial success)"
        ));
    }
    out
}

fn main() -> ExitCode {
    let args = Args::parse();
    let target = match Target::from_args(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("wasmcol-loadgen: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let threads = args.threads.map_or_else(
        || {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            cpus.min(args.workers as usize)
        },
        |t| t as usize,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wasmcol-loadgen: error: starting runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let (summary, run) = match runtime.block_on(run(&args, &target)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wasmcol-loadgen: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    // Do not wait for the Ctrl-C listener task.
    runtime.shutdown_background();

    if args.json {
        match serde_json::to_string(&summary) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("wasmcol-loadgen: error: {e}"),
        }
    } else {
        println!(
            "{}",
            format_summary(
                &args,
                &target,
                &summary,
                run.stats.spans_rejected.load(Ordering::Relaxed)
            )
        );
    }

    let lag = Duration::from_nanos(run.lag_nanos.load(Ordering::Relaxed));
    if lag >= Duration::from_secs(1) {
        eprintln!(
            "wasmcol-loadgen: warning: {:.1}s behind the --rate schedule at the end; \
             the workers could not keep up (try more --workers or larger --batch-traces)",
            lag.as_secs_f64()
        );
    }
    let last_error = run.stats.last_error.lock().ok().and_then(|e| e.clone());
    if summary.requests_accepted == 0 && summary.requests_refused == 0 {
        if summary.requests_sent == 0 {
            eprintln!("wasmcol-loadgen: nothing was sent");
        } else {
            eprintln!(
                "wasmcol-loadgen: nothing could be sent: all {} requests failed (last error: {})",
                summary.requests_failed,
                last_error.as_deref().unwrap_or("unknown"),
            );
        }
        return ExitCode::FAILURE;
    }
    if let Some(e) = last_error {
        eprintln!(
            "wasmcol-loadgen: {} requests failed; last error: {e}",
            summary.requests_failed
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::{HashMap, HashSet};
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicI64;

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };

    fn shape(spans_per_trace: usize, attributes: usize, attribute_size: usize) -> TraceShape {
        TraceShape {
            spans_per_trace,
            attributes,
            attribute_size,
            status_error_ratio: 0.0,
            service: "svc".to_owned(),
        }
    }

    fn generator(shape: TraceShape) -> Generator {
        Generator::new(shape, SmallRng::seed_from_u64(7))
    }

    fn spans(request: &ExportTraceServiceRequest) -> &[Span] {
        &request.resource_spans[0].scope_spans[0].spans
    }

    #[test]
    fn trace_shape_has_one_root_and_valid_parent_links() {
        let mut g = generator(shape(7, 0, 0));
        let now = unix_nanos();
        let request = g.fill(3, now).clone();
        let all = spans(&request);
        assert_eq!(all.len(), 21);

        let mut trace_ids = HashSet::new();
        for trace in all.chunks(7) {
            let trace_id = &trace[0].trace_id;
            assert_eq!(trace_id.len(), 16);
            assert!(trace_ids.insert(trace_id.clone()), "trace ids repeat");
            let by_id: HashMap<&[u8], &Span> =
                trace.iter().map(|s| (s.span_id.as_slice(), s)).collect();
            assert_eq!(by_id.len(), 7, "span ids repeat within a trace");

            let roots: Vec<_> = trace
                .iter()
                .filter(|s| s.parent_span_id.is_empty())
                .collect();
            assert_eq!(roots.len(), 1);
            assert_eq!(roots[0].kind, SpanKind::Server as i32);
            assert!(roots[0].end_time_unix_nano <= now);
            assert!(roots[0].start_time_unix_nano < roots[0].end_time_unix_nano);

            for span in trace {
                assert_eq!(&span.trace_id, trace_id);
                assert_eq!(span.span_id.len(), 8);
                assert_ne!(span.span_id, vec![0; 8]);
                if span.parent_span_id.is_empty() {
                    continue;
                }
                assert!(
                    span.kind == SpanKind::Client as i32 || span.kind == SpanKind::Internal as i32
                );
                let parent = by_id[span.parent_span_id.as_slice()];
                // Children lie within their parent's time window.
                assert!(span.start_time_unix_nano >= parent.start_time_unix_nano);
                assert!(span.end_time_unix_nano <= parent.end_time_unix_nano);
                assert!(span.start_time_unix_nano < span.end_time_unix_nano);
                assert!(span.status.is_none());
            }
        }
        let resource = request.resource_spans[0].resource.as_ref().unwrap();
        assert_eq!(resource.attributes, vec![string_kv("service.name", "svc")]);
    }

    #[test]
    fn single_span_traces_are_roots() {
        let mut g = generator(shape(1, 4, 16));
        let request = g.fill(5, unix_nanos());
        assert_eq!(spans(request).len(), 5);
        assert!(spans(request).iter().all(|s| s.parent_span_id.is_empty()));
    }

    #[test]
    fn attributes_have_requested_count_and_size() {
        for (count, size) in [(0, 16), (5, 33), (3, 0), (2, 4096)] {
            let mut g = generator(shape(4, count, size));
            let request = g.fill(2, unix_nanos());
            for span in spans(request) {
                assert_eq!(span.attributes.len(), count);
                let keys: HashSet<_> = span.attributes.iter().map(|kv| &kv.key).collect();
                assert_eq!(keys.len(), count, "keys must be distinct");
                for kv in &span.attributes {
                    match &kv.value {
                        Some(AnyValue {
                            value: Some(Value::StringValue(v)),
                        }) => assert_eq!(v.len(), size),
                        other => panic!("unexpected value {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn refilling_rewrites_in_place() {
        let mut g = generator(shape(3, 4, 16));
        let first = g.fill(2, 1_000_000_000_000).clone();
        let spans_ptr = spans(&g.request).as_ptr();
        let value_ptr = match &spans(&g.request)[0].attributes[0].value {
            Some(AnyValue {
                value: Some(Value::StringValue(v)),
            }) => v.as_ptr(),
            _ => unreachable!(),
        };
        let second = g.fill(2, 2_000_000_000_000).clone();
        assert_eq!(spans(&g.request).as_ptr(), spans_ptr);
        match &spans(&g.request)[0].attributes[0].value {
            Some(AnyValue {
                value: Some(Value::StringValue(v)),
            }) => assert_eq!(v.as_ptr(), value_ptr),
            _ => unreachable!(),
        }
        assert_ne!(spans(&first)[0].trace_id, spans(&second)[0].trace_id);
        assert!(spans(&second)[0].end_time_unix_nano > 1_500_000_000_000);
    }

    #[test]
    fn batch_size_changes_resize_the_request() {
        let mut g = generator(shape(3, 1, 8));
        assert_eq!(spans(g.fill(4, unix_nanos())).len(), 12);
        assert_eq!(spans(g.fill(1, unix_nanos())).len(), 3);
        let request = g.fill(2, unix_nanos());
        assert_eq!(spans(request).len(), 6);
        // Still whole traces: a root at every multiple of spans_per_trace.
        for (i, span) in spans(request).iter().enumerate() {
            assert_eq!(span.parent_span_id.is_empty(), i % 3 == 0);
        }
    }

    #[test]
    fn status_error_ratio_marks_roots_only() {
        let mut all = TraceShape {
            status_error_ratio: 1.0,
            ..shape(3, 0, 0)
        };
        let mut g = generator(all.clone());
        for span in spans(g.fill(4, unix_nanos())) {
            match &span.status {
                Some(s) => {
                    assert_eq!(s.code, StatusCode::Error as i32);
                    assert_eq!(s.message, ERROR_MESSAGE);
                }
                None => assert!(!span.parent_span_id.is_empty()),
            }
        }
        all.status_error_ratio = 0.0;
        let mut g = generator(all.clone());
        for span in spans(g.fill(4, unix_nanos())) {
            if let Some(s) = &span.status {
                assert_eq!(s.code, StatusCode::Unset as i32);
            }
        }
        all.status_error_ratio = 0.25;
        let mut g = generator(all);
        let errors = spans(g.fill(4000, unix_nanos()))
            .iter()
            .filter(|s| {
                s.status
                    .as_ref()
                    .is_some_and(|s| s.code == StatusCode::Error as i32)
            })
            .count();
        assert!((800..1200).contains(&errors), "{errors} errors out of 4000");
    }

    #[test]
    fn requests_hold_whole_batches_and_a_final_remainder() {
        let plan = Plan {
            total_traces: Some(10),
            batch_traces: 3,
            rate: 0.0,
        };
        let sizes: Vec<_> = (0..).map_while(|k| plan.traces_in_request(k)).collect();
        assert_eq!(sizes, vec![3, 3, 3, 1]);
        let exact = Plan {
            total_traces: Some(6),
            ..plan.clone()
        };
        assert_eq!((0..).map_while(|k| exact.traces_in_request(k)).count(), 2);
        let endless = Plan {
            total_traces: None,
            ..plan
        };
        assert_eq!(endless.traces_in_request(1_000_000), Some(3));
        assert_eq!(endless.traces_in_request(u64::MAX), Some(3));
    }

    #[test]
    fn rate_schedule_spaces_requests_evenly() {
        let plan = Plan {
            total_traces: None,
            batch_traces: 5,
            rate: 100.0,
        };
        // 5 traces per request at 100 traces/s: one request every 50ms.
        assert_eq!(plan.send_offset(0), Some(Duration::ZERO));
        assert_eq!(plan.send_offset(1), Some(Duration::from_millis(50)));
        assert_eq!(plan.send_offset(20), Some(Duration::from_secs(1)));
        // Absolute, not cumulative: the millionth request is exactly on time.
        assert_eq!(
            plan.send_offset(1_000_000),
            Some(Duration::from_secs(50_000))
        );
        let slow = Plan {
            batch_traces: 1,
            rate: 0.5,
            ..plan.clone()
        };
        assert_eq!(slow.send_offset(3), Some(Duration::from_secs(6)));
        let unlimited = Plan { rate: 0.0, ..plan };
        assert_eq!(unlimited.send_offset(5), None);
        let tiny = Plan {
            total_traces: None,
            batch_traces: 1,
            rate: 1e-300,
        };
        assert_eq!(tiny.send_offset(1), Some(Duration::MAX));
    }

    #[test]
    fn parses_durations_headers_and_numbers() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(
            parse_header("x-tenant=a=b"),
            Ok(("x-tenant".to_owned(), "a=b".to_owned()))
        );
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("=v").is_err());
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("inf").is_err());
        assert!(parse_ratio("1.5").is_err());
        assert_eq!(parse_ratio("0.1"), Ok(0.1));
    }

    #[test]
    fn args_defaults_and_targets() {
        let args = Args::try_parse_from(["loadgen"]).unwrap();
        assert_eq!(args.protocol, Protocol::Grpc);
        assert_eq!(args.traces, None);
        assert_eq!(args.attributes, 4);
        assert_eq!(args.attribute_size, 16);
        assert_eq!(args.rate, 0.0);
        let target = Target::from_args(&args).unwrap();
        assert_eq!(target.describe(), "OTLP/gRPC to http://localhost:4317/");

        let args = Args::try_parse_from([
            "loadgen",
            "--protocol",
            "http",
            "--http-encoding",
            "json",
            "--header",
            "X-Tenant=t1",
            "--compression",
            "gzip",
        ])
        .unwrap();
        match Target::from_args(&args).unwrap() {
            Target::Http {
                uri, headers, json, ..
            } => {
                assert_eq!(uri, "http://localhost:4318/v1/traces");
                assert!(json);
                assert_eq!(headers["x-tenant"], "t1");
                assert_eq!(headers["content-encoding"], "gzip");
                assert_eq!(headers["content-type"], "application/json");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            vec!["loadgen", "--tls-ca", "/nonexistent/ca.pem"],
            vec!["loadgen", "--endpoint", "x:1/path"],
            vec!["loadgen", "--header", "bad key=v"],
        ] {
            assert!(Target::from_args(&Args::try_parse_from(bad).unwrap()).is_err());
        }
        assert!(Args::try_parse_from(["loadgen", "--traces", "0"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--workers", "0"]).is_err());
    }

    #[test]
    fn encodings_round_trip() {
        let mut g = generator(shape(3, 2, 10));
        let request = g.fill(2, unix_nanos()).clone();
        let encode = |json, compression, grpc| {
            let mut e = BodyEncoder::new(json, compression, grpc).unwrap();
            // Twice, so the second send runs with warmed-up buffers.
            let first = e.encode(&Request::Traces(&request)).unwrap();
            let second = e.encode(&Request::Traces(&request)).unwrap();
            assert_eq!(first, second);
            second
        };
        let proto = encode(false, CompressionArg::None, false);
        assert_eq!(
            ExportTraceServiceRequest::decode(proto.as_ref()).unwrap(),
            request
        );
        let json = encode(true, CompressionArg::None, false);
        assert_eq!(wasmcol::otlp::json::decode_traces(&json).unwrap(), request);
        let gunzip = |b: &[u8]| {
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut raw).unwrap();
            raw
        };
        assert_eq!(gunzip(&encode(false, CompressionArg::Gzip, false)), proto);
        assert_eq!(gunzip(&encode(true, CompressionArg::Gzip, false)), json);
        let zst = encode(false, CompressionArg::Zstd, false);
        assert_eq!(zstd::decode_all(zst.as_ref()).unwrap(), proto);

        // gRPC frames: flag byte, big-endian length, then the (compressed) message.
        let frame = |compression| {
            let b = encode(false, compression, true);
            let len = u32::from_be_bytes(b[1..5].try_into().unwrap()) as usize;
            assert_eq!(len, b.len() - 5);
            (b[0], b.slice(5..))
        };
        assert_eq!(frame(CompressionArg::None), (0, proto.clone()));
        let (flag, gz) = frame(CompressionArg::Gzip);
        assert_eq!((flag, gunzip(&gz)), (1, proto.to_vec()));
        let (flag, zst) = frame(CompressionArg::Zstd);
        assert_eq!(flag, 1);
        assert_eq!(zstd::decode_all(zst.as_ref()).unwrap(), proto);
    }

    #[test]
    fn classifies_responses() {
        use http::StatusCode as S;
        assert_eq!(
            classify_http(S::OK, None, b"", None),
            Outcome::Accepted { rejected_spans: 0 }
        );
        let partial = ExportTraceServiceResponse {
            partial_success: Some(
                opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
                    rejected_spans: 2,
                    error_message: "x".to_owned(),
                },
            ),
        }
        .encode_to_vec();
        assert_eq!(
            classify_http(S::OK, None, &partial, None),
            Outcome::Accepted { rejected_spans: 2 }
        );
        assert_eq!(
            classify_http(
                S::OK,
                None,
                br#"{"partialSuccess":{"rejectedSpans":"3"}}"#,
                Some("rejectedSpans")
            ),
            Outcome::Accepted { rejected_spans: 3 }
        );
        for code in [
            S::TOO_MANY_REQUESTS,
            S::SERVICE_UNAVAILABLE,
            S::BAD_GATEWAY,
            S::GATEWAY_TIMEOUT,
        ] {
            assert_eq!(
                classify_http(code, Some(Duration::from_secs(2)), b"", None),
                Outcome::Refused {
                    retry_after: Some(Duration::from_secs(2))
                }
            );
        }
        assert!(matches!(
            classify_http(S::BAD_REQUEST, None, b"bad\x01 body", None),
            Outcome::Failed { transport: false, message } if message == "HTTP 400 Bad Request: bad body"
        ));

        let mut headers = http::HeaderMap::new();
        assert_eq!(parse_retry_after(&headers), None);
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(7)));

        let ok = http::StatusCode::OK;
        let status = |code: tonic::Code| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-status", (code as i32).to_string().parse().unwrap());
            h.insert("grpc-message", "msg".parse().unwrap());
            h
        };
        let empty = http::HeaderMap::new();
        let mut frame = vec![0, 0, 0, 0, partial.len() as u8];
        frame.extend_from_slice(&partial);
        assert_eq!(
            classify_grpc(ok, &empty, Some(&status(tonic::Code::Ok)), &frame),
            Outcome::Accepted { rejected_spans: 2 }
        );
        for code in [tonic::Code::Unavailable, tonic::Code::ResourceExhausted] {
            // In trailers, or in the headers of a trailers-only response.
            assert_eq!(
                classify_grpc(ok, &empty, Some(&status(code)), b""),
                Outcome::Refused { retry_after: None }
            );
            assert_eq!(
                classify_grpc(ok, &status(code), None, b""),
                Outcome::Refused { retry_after: None }
            );
        }
        assert_eq!(
            classify_grpc(ok, &status(tonic::Code::InvalidArgument), None, b""),
            Outcome::Failed {
                message: "gRPC InvalidArgument: msg".to_owned(),
                transport: false
            }
        );
        assert_eq!(
            classify_grpc(S::SERVICE_UNAVAILABLE, &empty, None, b""),
            Outcome::Refused { retry_after: None }
        );
        assert!(matches!(
            classify_grpc(S::NOT_FOUND, &empty, None, b""),
            Outcome::Failed {
                transport: false,
                ..
            }
        ));
        assert!(matches!(
            classify_grpc(ok, &empty, None, b""),
            Outcome::Failed {
                transport: false,
                ..
            }
        ));
    }

    // ----- end to end against in-process sinks -----

    /// What a sink answers.
    #[derive(Clone, Copy)]
    enum Answer {
        Accept,
        /// Refuse the first N requests, then accept.
        RefuseFirst(i64),
        Invalid,
        /// Accept, answering every Nth request only after this long (gRPC only).
        SlowEvery(u64, Duration),
    }

    /// Counts what reaches it and answers as told.
    struct Sink {
        answer: Answer,
        requests: AtomicU64,
        spans: AtomicU64,
        /// Requests still to refuse.
        refusals_left: AtomicI64,
        /// The last `x-tenant` header seen.
        tenant: Mutex<Option<String>>,
    }

    impl Sink {
        fn new(answer: Answer) -> Arc<Self> {
            let refusals = match answer {
                Answer::RefuseFirst(n) => n,
                _ => 0,
            };
            Arc::new(Self {
                answer,
                requests: AtomicU64::new(0),
                spans: AtomicU64::new(0),
                refusals_left: AtomicI64::new(refusals),
                tenant: Mutex::new(None),
            })
        }

        /// Records a request; `Ok` to accept, `Err(true)` to refuse, `Err(false)` to reject.
        fn take(&self, request: &ExportTraceServiceRequest) -> Result<(), bool> {
            self.requests.fetch_add(1, Ordering::Relaxed);
            match self.answer {
                Answer::Invalid => return Err(false),
                Answer::RefuseFirst(_)
                    if self.refusals_left.fetch_sub(1, Ordering::Relaxed) > 0 =>
                {
                    return Err(true);
                }
                _ => {}
            }
            let n: usize = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            self.spans.fetch_add(n as u64, Ordering::Relaxed);
            Ok(())
        }
    }

    struct GrpcSink(Arc<Sink>);

    #[tonic::async_trait]
    impl TraceService for GrpcSink {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            if let Some(t) = request.metadata().get("x-tenant") {
                *self.0.tenant.lock().unwrap() = t.to_str().ok().map(str::to_owned);
            }
            let taken = self.0.take(request.get_ref());
            if let Answer::SlowEvery(n, delay) = self.0.answer
                && self.0.requests.load(Ordering::Relaxed).is_multiple_of(n)
            {
                tokio::time::sleep(delay).await;
            }
            match taken {
                Ok(()) => Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
                Err(true) => Err(tonic::Status::unavailable("busy")),
                Err(false) => Err(tonic::Status::invalid_argument("no")),
            }
        }
    }

    async fn grpc_sink(answer: Answer) -> (Arc<Sink>, SocketAddr) {
        let sink = Sink::new(answer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(GrpcSink(sink.clone()))
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Zstd);
        tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(
            service,
            tonic::transport::server::TcpIncoming::from(listener),
        ));
        (sink, addr)
    }

    async fn http_sink(answer: Answer) -> (Arc<Sink>, SocketAddr) {
        let sink = Sink::new(answer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = sink.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: http::HeaderMap, body: Bytes| {
                let sink = state.clone();
                async move {
                    let raw = match headers.get("content-encoding").map(|v| v.as_bytes()) {
                        Some(b"gzip") => {
                            let mut out = Vec::new();
                            std::io::Read::read_to_end(
                                &mut flate2::read::GzDecoder::new(body.as_ref()),
                                &mut out,
                            )
                            .unwrap();
                            out
                        }
                        Some(b"zstd") => zstd::decode_all(body.as_ref()).unwrap(),
                        _ => body.to_vec(),
                    };
                    let request = if headers["content-type"] == "application/json" {
                        wasmcol::otlp::json::decode_traces(&raw).unwrap()
                    } else {
                        ExportTraceServiceRequest::decode(raw.as_slice()).unwrap()
                    };
                    if let Some(t) = headers.get("x-tenant") {
                        *sink.tenant.lock().unwrap() = t.to_str().ok().map(str::to_owned);
                    }
                    match sink.take(&request) {
                        Ok(()) => (http::StatusCode::OK, [("retry-after", "0")], Vec::new()),
                        Err(true) => (
                            http::StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "0")],
                            Vec::new(),
                        ),
                        Err(false) => (
                            http::StatusCode::BAD_REQUEST,
                            [("retry-after", "0")],
                            b"invalid".to_vec(),
                        ),
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (sink, addr)
    }

    async fn run_with(args: &[&str]) -> (Summary, Arc<Run>) {
        let args = Args::try_parse_from(["loadgen", "--quiet"].iter().chain(args)).unwrap();
        let target = Target::from_args(&args).unwrap();
        run(&args, &target).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grpc_sends_every_span() {
        for compression in ["none", "gzip", "zstd"] {
            let (sink, addr) = grpc_sink(Answer::Accept).await;
            let endpoint = addr.to_string();
            let (s, _) = run_with(&[
                "--endpoint",
                &endpoint,
                "--traces",
                "20",
                "--spans-per-trace",
                "3",
                "--batch-traces",
                "4",
                "--workers",
                "2",
                "--compression",
                compression,
                "--header",
                "X-Tenant=t1",
            ])
            .await;
            assert_eq!(s.requests_sent, 5, "{compression}");
            assert_eq!(s.requests_accepted, 5);
            assert_eq!(s.spans_sent, 60);
            assert_eq!(s.spans_accepted, 60);
            assert_eq!(sink.requests.load(Ordering::Relaxed), 5);
            assert_eq!(sink.spans.load(Ordering::Relaxed), 60);
            assert_eq!(sink.tenant.lock().unwrap().as_deref(), Some("t1"));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grpc_refusals_are_counted_or_retried() {
        let (_, addr) = grpc_sink(Answer::RefuseFirst(3)).await;
        let endpoint = addr.to_string();
        let (s, _) = run_with(&["--endpoint", &endpoint, "--traces", "5"]).await;
        assert_eq!(
            (s.requests_sent, s.requests_accepted, s.requests_refused),
            (5, 2, 3)
        );
        assert_eq!(s.spans_refused, 3);

        let (sink, addr) = grpc_sink(Answer::RefuseFirst(3)).await;
        let endpoint = addr.to_string();
        let (s, _) = run_with(&["--endpoint", &endpoint, "--traces", "5", "--retry"]).await;
        assert_eq!(
            (s.requests_sent, s.requests_accepted, s.requests_refused),
            (8, 5, 3)
        );
        assert_eq!(sink.spans.load(Ordering::Relaxed), 5);

        let (_, addr) = grpc_sink(Answer::Invalid).await;
        let endpoint = addr.to_string();
        let (s, run) = run_with(&["--endpoint", &endpoint, "--traces", "2", "--retry"]).await;
        assert_eq!((s.requests_sent, s.requests_failed), (2, 2));
        let last = run.stats.last_error.lock().unwrap().clone().unwrap();
        assert!(last.contains("InvalidArgument"), "{last}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_proto_and_json() {
        for (encoding, compression) in [
            ("proto", "none"),
            ("proto", "gzip"),
            ("json", "none"),
            ("json", "zstd"),
        ] {
            let (sink, addr) = http_sink(Answer::Accept).await;
            let endpoint = addr.to_string();
            let (s, _) = run_with(&[
                "--protocol",
                "http",
                "--endpoint",
                &endpoint,
                "--http-encoding",
                encoding,
                "--compression",
                compression,
                "--traces",
                "7",
                "--batch-traces",
                "2",
                "--spans-per-trace",
                "5",
                "--header",
                "X-Tenant=t2",
            ])
            .await;
            assert_eq!((s.requests_sent, s.requests_accepted), (4, 4));
            assert_eq!(s.spans_accepted, 35);
            assert_eq!(sink.spans.load(Ordering::Relaxed), 35);
            assert_eq!(sink.tenant.lock().unwrap().as_deref(), Some("t2"));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_refusals_and_failures() {
        let (sink, addr) = http_sink(Answer::RefuseFirst(3)).await;
        let endpoint = addr.to_string();
        let (s, _) = run_with(&[
            "--protocol",
            "http",
            "--endpoint",
            &endpoint,
            "--traces",
            "3",
            "--retry",
        ])
        .await;
        assert_eq!(
            (s.requests_sent, s.requests_accepted, s.requests_refused),
            (6, 3, 3)
        );
        // Retry-After: 0 was honoured instead of the backoff (at least 50+100+200ms).
        assert!(s.elapsed_secs < 0.3, "{}", s.elapsed_secs);
        assert_eq!(sink.spans.load(Ordering::Relaxed), 3);

        let (_, addr) = http_sink(Answer::Invalid).await;
        let endpoint = addr.to_string();
        let (s, run) = run_with(&[
            "--protocol",
            "http",
            "--endpoint",
            &endpoint,
            "--traces",
            "2",
        ])
        .await;
        assert_eq!((s.requests_failed, s.requests_accepted), (2, 0));
        let last = run.stats.last_error.lock().unwrap().clone().unwrap();
        assert_eq!(last, "HTTP 400 Bad Request: invalid");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connection_refused_is_a_failure() {
        // Bind and drop to get a port nobody listens on.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        for protocol in ["grpc", "http"] {
            let (s, _) = run_with(&[
                "--protocol",
                protocol,
                "--endpoint",
                &addr,
                "--traces",
                "2",
                "--retry",
            ])
            .await;
            assert_eq!((s.requests_sent, s.requests_failed), (2, 2), "{protocol}");
            assert_eq!(s.requests_refused, 0);
        }
    }

    #[test]
    fn latency_histogram_buckets_and_percentiles() {
        // Every value lands in a bucket whose bound is at or above it and within 1/128.
        for v in [
            0,
            1,
            127,
            128,
            129,
            255,
            256,
            257,
            1_000,
            123_456_789,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let i = LatencyHistogram::index(v);
            assert!(i < LATENCY_BUCKETS, "{v}");
            let upper = LatencyHistogram::upper_bound(i);
            assert!(upper >= v, "{v}: bound {upper}");
            assert!((upper - v) as f64 <= v as f64 / 128.0, "{v}: bound {upper}");
            if i > 0 {
                assert!(LatencyHistogram::upper_bound(i - 1) < v, "{v}");
            }
        }

        let h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.summary_ms(), [None; 4]);
        // 1..=1000 ms: nearest-rank p50 = 500 ms, p90 = 900 ms, p99 = 990 ms, max 1000 ms.
        for ms in 1..=1000 {
            h.record(Duration::from_millis(ms));
        }
        let close = |got: Option<Duration>, want_ms: f64| {
            let got = got.unwrap().as_secs_f64() * 1e3;
            assert!(
                got >= want_ms && got <= want_ms * (1.0 + 1.0 / 128.0),
                "{got} vs {want_ms}"
            );
        };
        close(h.quantile(0.5), 500.0);
        close(h.quantile(0.9), 900.0);
        close(h.quantile(0.99), 990.0);
        assert_eq!(h.quantile(1.0), Some(Duration::from_millis(1000)));
        let [p50, p90, p99, max] = h.summary_ms();
        let (p50, p90, p99) = (p50.unwrap(), p90.unwrap(), p99.unwrap());
        assert!(
            p50 < p90 && p90 < p99 && p99 < max.unwrap(),
            "{p50} {p90} {p99}"
        );
        assert_eq!(max, Some(1000.0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn latency_of_accepted_requests() {
        // Requests 10 and 20 of 20 are answered after 150 ms, the rest at once.
        let (_, addr) = grpc_sink(Answer::SlowEvery(10, Duration::from_millis(150))).await;
        let endpoint = addr.to_string();
        let (s, run) = run_with(&["--endpoint", &endpoint, "--traces", "20"]).await;
        assert_eq!(s.requests_accepted, 20);
        assert_eq!(run.stats.latency.count.load(Ordering::Relaxed), 20);
        let (p50, p90, p99, max) = (
            s.latency_p50_ms.unwrap(),
            s.latency_p90_ms.unwrap(),
            s.latency_p99_ms.unwrap(),
            s.latency_max_ms.unwrap(),
        );
        // Nearest rank: p90 is the 18th of 20 (fast), p99 the 20th (slow).
        assert!(p50 > 0.0 && p50 < 100.0, "{s:?}");
        assert!(p90 >= p50 && p90 < 100.0, "{s:?}");
        assert!(p99 >= 150.0 && p99 <= max, "{s:?}");
        assert!((150.0..2_000.0).contains(&max), "{s:?}");
        let text = format_summary(
            &Args::try_parse_from(["loadgen"]).unwrap(),
            &Target::from_args(&Args::try_parse_from(["loadgen"]).unwrap()).unwrap(),
            &s,
            0,
        );
        assert!(
            text.contains("latency of accepted requests: p50 "),
            "{text}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["latency_max_ms"].as_f64(), Some(max));

        // Nothing accepted: no latency figures, in JSON as null.
        let (_, addr) = grpc_sink(Answer::Invalid).await;
        let endpoint = addr.to_string();
        let (s, _) = run_with(&["--endpoint", &endpoint, "--traces", "2"]).await;
        assert_eq!(s.requests_failed, 2);
        assert_eq!(s.latency_p50_ms, None);
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["latency_p99_ms"].is_null(), "{json}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limit_paces_sends() {
        let (sink, addr) = grpc_sink(Answer::Accept).await;
        let endpoint = addr.to_string();
        // 41 traces at 200/s: the last is due at 200ms.
        let (s, _) = run_with(&[
            "--endpoint",
            &endpoint,
            "--traces",
            "41",
            "--rate",
            "200",
            "--workers",
            "3",
        ])
        .await;
        assert_eq!(s.spans_accepted, 41);
        assert!(
            (0.2..1.0).contains(&s.elapsed_secs),
            "elapsed {}",
            s.elapsed_secs
        );
        assert_eq!(sink.requests.load(Ordering::Relaxed), 41);

        // A duration bounds an unlimited number of traces.
        let (s, _) = run_with(&[
            "--endpoint",
            &endpoint,
            "--duration",
            "300ms",
            "--rate",
            "100",
            "--batch-traces",
            "2",
        ])
        .await;
        // Requests due at 0, 20, ..., 280ms: 15 requests, 30 traces.
        // (Fewer only if this machine stalls for a while near the end.)
        assert!((12..=15).contains(&s.requests_sent), "{s:?}");
        assert!((0.28..1.0).contains(&s.elapsed_secs), "{s:?}");
    }
}
