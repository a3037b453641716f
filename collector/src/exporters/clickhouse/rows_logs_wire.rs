//! The rows of [`super::rows_logs`], read straight out of checked OTLP protobuf: the bytes a
//! receiver accepted (`otlp::wire::validate_logs`) are never decoded into prost structures.
//!
//! As for spans ([`super::rows_wire`], whose readers and renderers of resources, scopes,
//! attribute maps and `AnyValue`s this uses), every value is copied from the received bytes
//! into the row, a handful of buffers are allocated per batch and reused for every record,
//! and prost's reading rules are followed so that the rows are byte for byte those
//! [`super::rows_logs::encode`] writes for the decoded batch (a differential test holds the
//! two together): the last occurrence of a singular field wins; occurrences of a singular
//! message (`resource`, `scope`, `body`) merge.

use wasmcol_plugin_sdk::wire::{FieldValue, Fields};

use super::rows::{put_id, put_time};
use super::rows_wire::{
    AnySource, Render, ResourceColumns, Sink, len_fields, put_any, put_bytes, put_map, read_scope,
};

// Field numbers of the OTLP messages read here.
const REQUEST_RESOURCE_LOGS: u32 = 1;
const RESOURCE_LOGS_SCOPE_LOGS: u32 = 2;
const RESOURCE_LOGS_SCHEMA_URL: u32 = 3;
const SCOPE_LOGS_LOG_RECORDS: u32 = 2;
const SCOPE_LOGS_SCHEMA_URL: u32 = 3;
const LOG_TIME: u32 = 1;
const LOG_SEVERITY_NUMBER: u32 = 2;
const LOG_SEVERITY_TEXT: u32 = 3;
const LOG_BODY: u32 = 5;
const LOG_ATTRIBUTES: u32 = 6;
const LOG_FLAGS: u32 = 8;
const LOG_TRACE_ID: u32 = 9;
const LOG_SPAN_ID: u32 = 10;
const LOG_OBSERVED_TIME: u32 = 11;

/// Appends one row per log record of `parts` to `out`; returns the number of rows. The
/// parts, concatenated, are one `ExportLogsServiceRequest` (or `LogsData`) encoding that
/// `wire::validate_logs` accepted.
pub fn encode<'a>(parts: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) -> usize {
    encode_chunked(parts, out, usize::MAX, &mut |_| {})
}

/// [`encode`], handing the rows over as they are written: whenever `out` holds `chunk` bytes
/// or more after a row, they go to `flush` and `out` is cleared. The rows written after the
/// last flush are left in `out`.
pub fn encode_chunked<'a>(
    parts: impl IntoIterator<Item = &'a [u8]>,
    out: &mut Vec<u8>,
    chunk: usize,
    flush: &mut dyn FnMut(&[u8]),
) -> usize {
    let mut b = Buffers::default();
    let mut sink = Sink::new(out, chunk, flush);
    let mut rows = 0;
    for part in parts {
        for rl in len_fields(part, REQUEST_RESOURCE_LOGS) {
            rows += put_resource_logs(&mut sink, rl, &mut b);
        }
    }
    rows
}

/// Reused from record to record, so that a record costs no allocation once they have grown.
#[derive(Default)]
struct Buffers<'a> {
    resource: ResourceColumns,
    /// The current scope's `ScopeAttributes` map, as written.
    scope_map: Vec<u8>,
    /// The current record's (or scope's, or resource's) attributes: `KeyValue` bodies.
    attributes: Vec<&'a [u8]>,
    render: Render<'a>,
}

/// The columns every record of a `ScopeLogs` shares.
struct Scope<'a> {
    resource_schema_url: &'a [u8],
    schema_url: &'a [u8],
    name: &'a [u8],
    version: &'a [u8],
}

/// The last occurrence of the string field `number` of a message body (empty when absent).
fn last_string(body: &[u8], number: u32) -> &[u8] {
    len_fields(body, number).last().unwrap_or_default()
}

fn put_resource_logs<'a>(sink: &mut Sink<'_, '_>, rl: &'a [u8], b: &mut Buffers<'a>) -> usize {
    // The same for every record under the resource: written once.
    b.resource.read(rl, &mut b.attributes, &mut b.render);
    let resource_schema_url = last_string(rl, RESOURCE_LOGS_SCHEMA_URL);
    let mut rows = 0;
    for sl in len_fields(rl, RESOURCE_LOGS_SCOPE_LOGS) {
        b.attributes.clear();
        let (name, version) = read_scope(sl, Some(&mut b.attributes));
        b.scope_map.clear();
        put_map(&mut b.scope_map, &b.attributes, &mut b.render);
        let scope = Scope {
            resource_schema_url,
            schema_url: last_string(sl, SCOPE_LOGS_SCHEMA_URL),
            name,
            version,
        };
        for record in len_fields(sl, SCOPE_LOGS_LOG_RECORDS) {
            put_log_record(sink.out, record, &scope, b);
            sink.row_done();
            rows += 1;
        }
    }
    rows
}

/// One row, from one pass over the record's fields.
fn put_log_record<'a>(out: &mut Vec<u8>, record: &'a [u8], scope: &Scope<'_>, b: &mut Buffers<'a>) {
    let (mut time, mut observed) = (0u64, 0u64);
    let (mut trace_id, mut span_id, mut severity_text): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let (mut severity_number, mut flags) = (0i32, 0u32);
    let (mut body, mut bodies): (&[u8], usize) = (&[], 0);
    b.attributes.clear();
    for field in Fields::new(record) {
        match field {
            (LOG_TIME, FieldValue::Fixed64(v)) => time = v,
            // int32 fields keep the low 32 bits of the varint, as prost's `as i32` does.
            (LOG_SEVERITY_NUMBER, FieldValue::Varint(v)) => severity_number = v as i32,
            (LOG_SEVERITY_TEXT, FieldValue::Len(v)) => severity_text = v,
            (LOG_BODY, FieldValue::Len(v)) => {
                body = v;
                bodies += 1;
            }
            (LOG_ATTRIBUTES, FieldValue::Len(kv)) => b.attributes.push(kv),
            (LOG_FLAGS, FieldValue::Fixed32(v)) => flags = v,
            (LOG_TRACE_ID, FieldValue::Len(v)) => trace_id = v,
            (LOG_SPAN_ID, FieldValue::Len(v)) => span_id = v,
            (LOG_OBSERVED_TIME, FieldValue::Fixed64(v)) => observed = v,
            _ => {}
        }
    }

    put_time(out, if time == 0 { observed } else { time });
    put_id(out, trace_id);
    put_id(out, span_id);
    // As in `rows_logs`: the low byte of the flags, and a severity outside 0..=255 is 0.
    out.push(flags as u8);
    put_bytes(out, severity_text);
    out.push(u8::try_from(severity_number).unwrap_or(0));
    put_bytes(out, &b.resource.service);
    // The body is almost always given once (when given more often, the occurrences merge);
    // absent, it is an empty string.
    let source = if bodies > 1 {
        AnySource::Field(record, LOG_BODY)
    } else {
        AnySource::Element(body)
    };
    put_any(out, source, &mut b.render);
    put_bytes(out, scope.resource_schema_url);
    out.extend_from_slice(&b.resource.map);
    put_bytes(out, scope.schema_url);
    put_bytes(out, scope.name);
    put_bytes(out, scope.version);
    out.extend_from_slice(&b.scope_map);
    put_map(out, &b.attributes, &mut b.render);
}
