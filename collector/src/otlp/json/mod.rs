//! OTLP/JSON for traces, logs and metrics, as the OTLP specification defines it.
//!
//! OTLP/JSON is the proto3 JSON mapping with OTLP's own rules on top: trace and
//! span ids are hex strings (not base64 like other `bytes` fields), and
//! enums are written as integers. The decoders ([`decode_traces`],
//! [`decode_logs`], [`decode_metrics`]) accept everything a conformant sender
//! may send: lowerCamelCase or original snake_case field names, enums as
//! integers or names, 64-bit integers as JSON numbers or decimal strings,
//! doubles as numbers or as the strings `"NaN"`, `"Infinity"` and
//! `"-Infinity"`, `null` for a default value, and unknown fields (skipped
//! whole). The encoders ([`encode_traces`], [`encode_logs`],
//! [`encode_metrics`]) write the canonical form, the one the OpenTelemetry
//! Collector's file exporter writes.
//!
//! This runs on a receiver's hot path, so decoding drives hand-written serde
//! visitors straight into the prost structs, with no `serde_json::Value` in
//! between, and encoding appends bytes to the caller's buffer. The visitors
//! keep a stack of the fields and list indexes they are inside of, which costs
//! a push and a pop per field but lets an error say where it happened
//! (`resourceSpans[0].scopeSpans[1].spans[3].traceId: ...`).
//!
//! The code is laid out by job: `decode` holds the visitor machinery (the path
//! stack, messages, lists, scalars, ids, enums, oneofs), `encode` the writer,
//! `common` the messages every signal shares (resources, scopes, attributes)
//! and `traces`, `logs` and `metrics` each signal's messages: which JSON field
//! goes to which prost field, both ways.

mod common;
mod decode;
mod encode;
mod logs;
mod metrics;
#[cfg(test)]
mod tests;
mod traces;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use self::decode::{JsonMessage, Path, decode, error_text};
use self::encode::write_request;
use super::ExportTraceServiceRequest;

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
///
/// Accepts both lowerCamelCase and snake_case field names, enums as integers
/// or names, 64-bit integers as numbers or decimal strings, `null` for
/// defaults, and ignores unknown fields. Trace and span ids must be hex
/// (either case) of the right length, or empty.
///
/// A malformed document yields serde_json's message; a well-formed one with a
/// bad value yields the path to that value and what is wrong with it, e.g.
/// `resourceSpans[0].scopeSpans[0].spans[2].traceId: invalid traceId "abc":
/// expected 32 hex digits at line 1 column 97`.
pub fn decode_traces(bytes: &[u8]) -> Result<ExportTraceServiceRequest, String> {
    decode_whole(bytes)
}

/// [`decode_traces`] for a receiver: spans with an invalid trace or span id (empty or all
/// zeros; a wrong length is malformed) are left out and counted, never held, and decoding stops
/// as soon as the elements of repeated fields kept so far take more than `budget` bytes (the
/// same measure as [`crate::otlp::wire::Validated::decoded_bytes`], less the strings, which
/// are never longer than the JSON text they come from).
pub fn decode_traces_within(bytes: &[u8], budget: usize) -> Result<Decoded, DecodeError> {
    decode_within(bytes, budget)
}

/// Appends `{"resourceSpans":[...]}` for `resource_spans` to `out`, on one line (no newline).
///
/// Field names are lowerCamelCase, ids lowercase hex, enums integers, 64-bit
/// integers decimal strings, `bytesValue` standard padded base64; fields with
/// default values are left out, as the proto3 JSON mapping does.
pub fn encode_traces(resource_spans: &[ResourceSpans], out: &mut Vec<u8>) {
    write_request(
        out,
        "resourceSpans",
        resource_spans,
        traces::write_resource_spans,
    );
}

/// Decodes an OTLP/JSON `ExportLogsServiceRequest`, by the rules of [`decode_traces`].
///
/// A log record's `traceId` and `spanId` are optional: empty (or absent, or `null`) is
/// fine, hex of the right length is fine, anything else is malformed, e.g.
/// `resourceLogs[0].scopeLogs[0].logRecords[1].traceId: invalid traceId "abc": expected
/// 32 hex digits at line 1 column 65`. `severityNumber` is an integer or a
/// `SeverityNumber` name (`"SEVERITY_NUMBER_INFO"`).
pub fn decode_logs(bytes: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    decode_whole(bytes)
}

/// [`decode_logs`] for a receiver: decoding stops as soon as the elements of repeated fields
/// kept so far take more than `budget` bytes, measured as [`decode_traces_within`] measures.
///
/// Nothing is left out: a log record without ids is an ordinary one (logged outside a
/// span), and an all-zero id, which W3C trace context calls invalid, is what some SDKs send
/// for "no span" and is kept as sent. [`Decoded::invalid`] is always 0.
pub fn decode_logs_within(
    bytes: &[u8],
    budget: usize,
) -> Result<Decoded<ExportLogsServiceRequest>, DecodeError> {
    decode_within(bytes, budget)
}

/// Appends `{"resourceLogs":[...]}` for `resource_logs` to `out`, on one line, in the
/// canonical form [`encode_traces`] writes; a log record's `body` is an `AnyValue`.
pub fn encode_logs(resource_logs: &[ResourceLogs], out: &mut Vec<u8>) {
    write_request(
        out,
        "resourceLogs",
        resource_logs,
        logs::write_resource_logs,
    );
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest`, by the rules of [`decode_traces`].
///
/// A metric's data is one of `gauge`, `sum`, `histogram`, `exponentialHistogram` and
/// `summary`, a data point's value one of `asDouble` and `asInt`; setting two members of one
/// of these is malformed. `aggregationTemporality` is an integer or an
/// `AggregationTemporality` name; doubles are numbers or `"NaN"`, `"Infinity"` and
/// `"-Infinity"`; an exemplar's ids are hex, or empty.
pub fn decode_metrics(bytes: &[u8]) -> Result<ExportMetricsServiceRequest, String> {
    decode_whole(bytes)
}

/// [`decode_metrics`] for a receiver: decoding stops as soon as the elements of repeated
/// fields kept so far (data points, exemplars, bucket counts and bounds among them) take more
/// than `budget` bytes, measured as [`decode_traces_within`] measures. Nothing is left out:
/// [`Decoded::invalid`] is always 0.
pub fn decode_metrics_within(
    bytes: &[u8],
    budget: usize,
) -> Result<Decoded<ExportMetricsServiceRequest>, DecodeError> {
    decode_within(bytes, budget)
}

/// Appends `{"resourceMetrics":[...]}` for `resource_metrics` to `out`, on one line, in the
/// canonical form [`encode_traces`] writes: doubles as JSON numbers (NaN and the infinities
/// as the strings proto3 JSON spells them with), `asInt`, counts and bucket counts as decimal
/// strings, `aggregationTemporality` as an integer.
pub fn encode_metrics(resource_metrics: &[ResourceMetrics], out: &mut Vec<u8>) {
    write_request(
        out,
        "resourceMetrics",
        resource_metrics,
        metrics::write_resource_metrics,
    );
}

/// What a bounded decoding ([`decode_traces_within`], [`decode_logs_within`],
/// [`decode_metrics_within`]) decoded.
#[derive(Debug)]
pub struct Decoded<R = ExportTraceServiceRequest> {
    /// The request, without the elements left out.
    pub request: R,
    /// Elements left out as invalid: spans with an invalid trace or span id (empty or all
    /// zeros). Logs and metrics have nothing to leave out.
    pub invalid: usize,
}

/// Why a bounded decoding decoded nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not an OTLP/JSON request: the message the unbounded decoder ([`decode_traces`],
    /// [`decode_logs`], [`decode_metrics`]) gives.
    Malformed(String),
    /// The decoded request would take more than the budget: `budget` bytes.
    OverBudget {
        /// The budget, in bytes.
        budget: usize,
    },
}

fn decode_whole<R: JsonMessage>(bytes: &[u8]) -> Result<R, String> {
    let mut path = Path::default();
    decode(bytes, &mut path).map_err(|e| error_text(&path, &e))
}

fn decode_within<R: JsonMessage>(bytes: &[u8], budget: usize) -> Result<Decoded<R>, DecodeError> {
    let mut path = Path {
        bounded: true,
        budget,
        ..Path::default()
    };
    match decode(bytes, &mut path) {
        Ok(request) => Ok(Decoded {
            request,
            invalid: path.invalid,
        }),
        Err(_) if path.used > path.budget => Err(DecodeError::OverBudget { budget }),
        Err(e) => Err(DecodeError::Malformed(error_text(&path, &e))),
    }
}
