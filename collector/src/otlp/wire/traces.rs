//! `ExportTraceServiceRequest`: [`validate`] and its counts.

use super::cursor::{
    self, I32, I64, Step, read_request, resource_field, scope_field, sizes as shared,
};
use super::error::WireError;

/// Returned by [`validate`] for bytes that decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validated {
    /// The number of `ResourceSpans`.
    pub resource_spans: usize,
    /// The number of spans, counting all `ResourceSpans` and `ScopeSpans`.
    pub spans: usize,
    /// Spans whose trace id is not 16 bytes with one of them nonzero, or whose span id is not
    /// 8 bytes with one of them nonzero: the OTLP specification calls them invalid.
    pub invalid_spans: usize,
    /// An upper bound on the heap memory prost's structures take once the bytes are decoded:
    /// the size of every element of every repeated field plus the bytes of every string and
    /// bytes field (allocator overhead and spare `Vec` capacity not counted). Protobuf is
    /// compact where those structures are not: an empty span is two bytes on the wire and
    /// about 250 in memory, so this, not the length of the bytes, is what a decoding stage
    /// costs.
    pub decoded_bytes: usize,
}

/// Element sizes of the repeated trace fields, as prost lays them out.
mod sizes {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
    use std::mem::size_of;

    pub const RESOURCE_SPANS: usize = size_of::<ResourceSpans>();
    pub const SCOPE_SPANS: usize = size_of::<ScopeSpans>();
    pub const SPAN: usize = size_of::<Span>();
    pub const EVENT: usize = size_of::<span::Event>();
    pub const LINK: usize = size_of::<span::Link>();
}

/// Checks that `buf` is an `ExportTraceServiceRequest` (encoded the same way as `TracesData`)
/// that prost would decode, and counts its spans. It accepts exactly the inputs for which
/// `ExportTraceServiceRequest::decode(buf)` is `Ok`, and when it rejects one, the error message
/// is the one prost gives. It does not allocate unless it fails.
pub fn validate(buf: &[u8]) -> Result<Validated, WireError> {
    let (counts, decoded_bytes) = read_request(buf, Counts::default(), request_field)?;
    Ok(Validated {
        resource_spans: counts.resource_spans,
        spans: counts.spans,
        invalid_spans: counts.invalid_spans,
        decoded_bytes,
    })
}

/// What [`validate`] counts as it goes.
#[derive(Default)]
struct Counts {
    resource_spans: usize,
    spans: usize,
    invalid_spans: usize,
    /// Whether the span being read has a valid trace id and span id so far (a field that
    /// occurs twice counts as its last occurrence, as in prost).
    trace_id_ok: bool,
    span_id_ok: bool,
}

type Cursor<'a> = cursor::Cursor<'a, Counts>;

// One function per message type, named after the message. The `at` names are the prost struct
// and field names, which prost uses in its error path.

fn request_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    match tag {
        1 => {
            c.state.resource_spans += 1;
            c.element(sizes::RESOURCE_SPANS);
            c.message(wire_type, depth, resource_spans_field)
                .map_err(|e| e.at("ExportTraceServiceRequest", "resource_spans"))
        }
        _ => c.skip(wire_type, tag, depth),
    }
}

fn resource_spans_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "ResourceSpans";
    match tag {
        1 => c
            .message(wire_type, depth, resource_field)
            .map_err(|e| e.at(M, "resource")),
        2 => {
            c.element(sizes::SCOPE_SPANS);
            c.message(wire_type, depth, scope_spans_field)
                .map_err(|e| e.at(M, "scope_spans"))
        }
        3 => c.string(wire_type).map_err(|e| e.at(M, "schema_url")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn scope_spans_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "ScopeSpans";
    match tag {
        1 => c
            .message(wire_type, depth, scope_field)
            .map_err(|e| e.at(M, "scope")),
        2 => {
            c.state.spans += 1;
            c.element(sizes::SPAN);
            c.state.trace_id_ok = false;
            c.state.span_id_ok = false;
            c.message(wire_type, depth, span_field)
                .map_err(|e| e.at(M, "spans"))?;
            if !(c.state.trace_id_ok && c.state.span_id_ok) {
                c.state.invalid_spans += 1;
            }
            Ok(())
        }
        3 => c.string(wire_type).map_err(|e| e.at(M, "schema_url")),
        _ => c.skip(wire_type, tag, depth),
    }
}

// Inlined into the loop over a span's fields, like `cursor::key_value_field`.
#[inline(always)]
fn span_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Span";
    match tag {
        1 => {
            c.state.trace_id_ok = c.id(wire_type, 16).map_err(|e| e.at(M, "trace_id"))?;
            Ok(())
        }
        2 => {
            c.state.span_id_ok = c.id(wire_type, 8).map_err(|e| e.at(M, "span_id"))?;
            Ok(())
        }
        3 => c.string(wire_type).map_err(|e| e.at(M, "trace_state")),
        4 => c.bytes(wire_type).map_err(|e| e.at(M, "parent_span_id")),
        5 => c.string(wire_type).map_err(|e| e.at(M, "name")),
        6 => c.int(wire_type).map_err(|e| e.at(M, "kind")),
        7 => c
            .fixed(wire_type, I64, 8)
            .map_err(|e| e.at(M, "start_time_unix_nano")),
        8 => c
            .fixed(wire_type, I64, 8)
            .map_err(|e| e.at(M, "end_time_unix_nano")),
        9 => {
            c.element(shared::KEY_VALUE);
            c.key_value(wire_type, depth)
                .map_err(|e| e.at(M, "attributes"))
        }
        10 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_attributes_count")),
        11 => {
            c.element(sizes::EVENT);
            c.message(wire_type, depth, event_field)
                .map_err(|e| e.at(M, "events"))
        }
        12 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_events_count")),
        13 => {
            c.element(sizes::LINK);
            c.message(wire_type, depth, link_field)
                .map_err(|e| e.at(M, "links"))
        }
        14 => c.int(wire_type).map_err(|e| e.at(M, "dropped_links_count")),
        15 => c
            .message(wire_type, depth, status_field)
            .map_err(|e| e.at(M, "status")),
        16 => c.fixed(wire_type, I32, 4).map_err(|e| e.at(M, "flags")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn event_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Event";
    match tag {
        1 => c
            .fixed(wire_type, I64, 8)
            .map_err(|e| e.at(M, "time_unix_nano")),
        2 => c.string(wire_type).map_err(|e| e.at(M, "name")),
        3 => {
            c.element(shared::KEY_VALUE);
            c.key_value(wire_type, depth)
                .map_err(|e| e.at(M, "attributes"))
        }
        4 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_attributes_count")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn link_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Link";
    match tag {
        1 => c.bytes(wire_type).map_err(|e| e.at(M, "trace_id")),
        2 => c.bytes(wire_type).map_err(|e| e.at(M, "span_id")),
        3 => c.string(wire_type).map_err(|e| e.at(M, "trace_state")),
        4 => {
            c.element(shared::KEY_VALUE);
            c.key_value(wire_type, depth)
                .map_err(|e| e.at(M, "attributes"))
        }
        5 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_attributes_count")),
        6 => c.fixed(wire_type, I32, 4).map_err(|e| e.at(M, "flags")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn status_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "Status";
    match tag {
        2 => c.string(wire_type).map_err(|e| e.at(M, "message")),
        3 => c.int(wire_type).map_err(|e| e.at(M, "code")),
        _ => c.skip(wire_type, tag, depth),
    }
}
