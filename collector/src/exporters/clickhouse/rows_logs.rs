//! Log records as ClickHouse `RowBinary` rows of the logs table, one per record, columns in
//! [`LOGS_COLUMNS`] order, with the values the OpenTelemetry Collector's ClickHouse exporter
//! writes: the record's time, or its observed time when it has none; ids in lower-case hex
//! (empty when absent); the body and attribute values as strings (arrays and maps as JSON).
//! Strings, ids, maps and times are written by the traces encoder's functions ([`super::rows`]).
//!
//! This encoder takes decoded records: a batch a stage has decoded or rebuilt. A batch still
//! holding the protobuf it was received as goes through [`super::rows_logs_wire`], which
//! writes the same rows from the bytes (held to this encoder by a differential test).
//!
//! [`LOGS_COLUMNS`]: super::schema::LOGS_COLUMNS

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;

use super::rows::{put_id, put_map, put_str, put_time, service_name, value_string};

/// Appends one row per log record to `out`; returns the number of rows.
pub fn encode(resource_logs: &[ResourceLogs], out: &mut Vec<u8>) -> usize {
    encode_chunked(resource_logs, out, usize::MAX, &mut |_| {})
}

/// [`encode`], handing the rows over as they are written: whenever `out` holds `chunk` bytes
/// or more after a row, they go to `flush` and `out` is cleared. The rows written after the
/// last flush are left in `out`.
pub fn encode_chunked(
    resource_logs: &[ResourceLogs],
    out: &mut Vec<u8>,
    chunk: usize,
    flush: &mut dyn FnMut(&[u8]),
) -> usize {
    let mut rows = 0;
    for rl in resource_logs {
        let resource_attrs: &[KeyValue] = rl.resource.as_ref().map_or(&[], |r| &r.attributes);
        let service = service_name(resource_attrs);
        // The same for every record under the resource: encoded once.
        let mut resource_map = Vec::new();
        put_map(&mut resource_map, resource_attrs);
        for sl in &rl.scope_logs {
            let scope = sl.scope.as_ref();
            let scope_name = scope.map_or("", |s| s.name.as_str());
            let scope_version = scope.map_or("", |s| s.version.as_str());
            let mut scope_map = Vec::new();
            put_map(&mut scope_map, scope.map_or(&[], |s| &s.attributes));
            for r in &sl.log_records {
                let time = if r.time_unix_nano == 0 {
                    r.observed_time_unix_nano
                } else {
                    r.time_unix_nano
                };
                put_time(out, time);
                put_id(out, &r.trace_id);
                put_id(out, &r.span_id);
                // TraceFlags UInt8: the low byte of the flags, the W3C trace flags.
                out.push(r.flags as u8);
                put_str(out, &r.severity_text);
                out.push(u8::try_from(r.severity_number).unwrap_or(0));
                put_str(out, &service);
                put_str(out, &value_string(r.body.as_ref()));
                put_str(out, &rl.schema_url);
                out.extend_from_slice(&resource_map);
                put_str(out, &sl.schema_url);
                put_str(out, scope_name);
                put_str(out, scope_version);
                out.extend_from_slice(&scope_map);
                put_map(out, &r.attributes);
                rows += 1;
                if out.len() >= chunk {
                    flush(out);
                    out.clear();
                }
            }
        }
    }
    rows
}
