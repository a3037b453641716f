//! OTLP/JSON for traces, as the OTLP specification defines it.
//!
//! OTLP/JSON is the proto3 JSON mapping with OTLP's own rules on top: trace and
//! span ids are hex strings (not base64 like other `bytes` fields), and
//! enums are written as integers. [`decode_traces`] accepts everything a
//! conformant sender may send: lowerCamelCase or original snake_case field
//! names, enums as integers or names, 64-bit integers as JSON numbers or
//! decimal strings, `null` for a default value, and unknown fields (skipped
//! whole). [`encode_traces`] writes the canonical form, the one the
//! OpenTelemetry Collector's file exporter writes.
//!
//! This runs on a receiver's hot path, so decoding drives hand-written serde
//! visitors straight into the prost structs, with no `serde_json::Value` in
//! between, and encoding appends bytes to the caller's buffer. The visitors
//! keep a stack of the fields and list indexes they are inside of, which costs
//! a push and a pop per field but lets an error say where it happened
//! (`resourceSpans[0].scopeSpans[1].spans[3].traceId: ...`).
//!
//! The code is laid out by job: `decode` holds the visitor machinery (the path
//! stack, messages, lists, scalars, ids, enums), `encode` the writer, `common`
//! the messages every signal shares (resources, scopes, attributes) and
//! `traces` the trace messages: which JSON field goes to which prost field,
//! both ways.

mod common;
mod decode;
mod encode;
#[cfg(test)]
mod tests;
mod traces;

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use self::decode::{Path, decode, error_text};
use self::encode::Obj;
use self::traces::write_resource_spans;
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
    let mut path = Path::default();
    decode(bytes, &mut path).map_err(|e| error_text(&path, &e))
}

/// What [`decode_traces_within`] decoded.
#[derive(Debug)]
pub struct Decoded {
    /// The request, without its invalid spans.
    pub request: ExportTraceServiceRequest,
    /// Spans left out for an invalid trace or span id (empty or all zeros).
    pub invalid_spans: usize,
}

/// Why [`decode_traces_within`] decoded nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not an OTLP/JSON request: the message [`decode_traces`] gives.
    Malformed(String),
    /// The decoded request would take more than the budget: `budget` bytes.
    OverBudget {
        /// The budget, in bytes.
        budget: usize,
    },
}

/// [`decode_traces`] for a receiver: spans with an invalid trace or span id (empty or all
/// zeros; a wrong length is malformed) are left out and counted, never held, and decoding stops
/// as soon as the elements of repeated fields kept so far take more than `budget` bytes (the
/// same measure as [`crate::otlp::wire::Validated::decoded_bytes`], less the strings, which
/// are never longer than the JSON text they come from).
pub fn decode_traces_within(bytes: &[u8], budget: usize) -> Result<Decoded, DecodeError> {
    let mut path = Path {
        bounded: true,
        budget,
        ..Path::default()
    };
    match decode(bytes, &mut path) {
        Ok(request) => Ok(Decoded {
            request,
            invalid_spans: path.invalid_spans,
        }),
        Err(_) if path.used > path.budget => Err(DecodeError::OverBudget { budget }),
        Err(e) => Err(DecodeError::Malformed(error_text(&path, &e))),
    }
}

/// Appends `{"resourceSpans":[...]}` for `resource_spans` to `out`, on one line (no newline).
///
/// Field names are lowerCamelCase, ids lowercase hex, enums integers, 64-bit
/// integers decimal strings, `bytesValue` standard padded base64; fields with
/// default values are left out, as the proto3 JSON mapping does.
pub fn encode_traces(resource_spans: &[ResourceSpans], out: &mut Vec<u8>) {
    let mut request = Obj::start(out);
    // Written even when empty: the result is then still a recognisable request.
    let out = request.key("resourceSpans");
    out.push(b'[');
    for (i, rs) in resource_spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_resource_spans(out, rs);
    }
    out.push(b']');
    request.end();
}
