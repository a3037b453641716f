//! `ExportLogsServiceRequest`: [`validate_logs`] and its counts.

use super::cursor::{
    self, I32, I64, Step, any_value_field, read_request, resource_field, scope_field,
    sizes as shared,
};
use super::error::WireError;

/// Returned by [`validate_logs`] for bytes that decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValidatedLogs {
    /// The number of `ResourceLogs`.
    pub resource_logs: usize,
    /// The number of log records, counting all `ResourceLogs` and `ScopeLogs`.
    pub log_records: usize,
    /// An upper bound on the heap memory prost's structures take once the bytes are decoded,
    /// by the measure of [`super::Validated::decoded_bytes`].
    pub decoded_bytes: usize,
}

/// Element sizes of the repeated log fields, as prost lays them out.
mod sizes {
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use std::mem::size_of;

    pub const RESOURCE_LOGS: usize = size_of::<ResourceLogs>();
    pub const SCOPE_LOGS: usize = size_of::<ScopeLogs>();
    pub const LOG_RECORD: usize = size_of::<LogRecord>();
}

/// Checks that `buf` is an `ExportLogsServiceRequest` (encoded the same way as `LogsData`)
/// that prost would decode, and counts its log records. It accepts exactly the inputs for
/// which `ExportLogsServiceRequest::decode(buf)` is `Ok`, and when it rejects one, the error
/// message is the one prost gives. It does not allocate unless it fails.
pub fn validate_logs(buf: &[u8]) -> Result<ValidatedLogs, WireError> {
    let (counts, decoded_bytes) = read_request(buf, ValidatedLogs::default(), request_field)?;
    Ok(ValidatedLogs {
        decoded_bytes,
        ..counts
    })
}

type Cursor<'a> = cursor::Cursor<'a, ValidatedLogs>;

// One function per message type, named after the message. The `at` names are the prost struct
// and field names, which prost uses in its error path.

fn request_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    match tag {
        1 => {
            c.state.resource_logs += 1;
            c.element(sizes::RESOURCE_LOGS);
            c.message(wire_type, depth, resource_logs_field)
                .map_err(|e| e.at("ExportLogsServiceRequest", "resource_logs"))
        }
        _ => c.skip(wire_type, tag, depth),
    }
}

fn resource_logs_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "ResourceLogs";
    match tag {
        1 => c
            .message(wire_type, depth, resource_field)
            .map_err(|e| e.at(M, "resource")),
        2 => {
            c.element(sizes::SCOPE_LOGS);
            c.message(wire_type, depth, scope_logs_field)
                .map_err(|e| e.at(M, "scope_logs"))
        }
        3 => c.string(wire_type).map_err(|e| e.at(M, "schema_url")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn scope_logs_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "ScopeLogs";
    match tag {
        1 => c
            .message(wire_type, depth, scope_field)
            .map_err(|e| e.at(M, "scope")),
        2 => {
            c.state.log_records += 1;
            c.element(sizes::LOG_RECORD);
            c.message(wire_type, depth, log_record_field)
                .map_err(|e| e.at(M, "log_records"))
        }
        3 => c.string(wire_type).map_err(|e| e.at(M, "schema_url")),
        _ => c.skip(wire_type, tag, depth),
    }
}

fn log_record_field(c: &mut Cursor<'_>, tag: u32, wire_type: u8, depth: u32) -> Step {
    const M: &str = "LogRecord";
    match tag {
        1 => c
            .fixed(wire_type, I64, 8)
            .map_err(|e| e.at(M, "time_unix_nano")),
        2 => c.int(wire_type).map_err(|e| e.at(M, "severity_number")),
        3 => c.string(wire_type).map_err(|e| e.at(M, "severity_text")),
        // A singular message: occurrences merge, as prost merges them.
        5 => c
            .message(wire_type, depth, any_value_field)
            .map_err(|e| e.at(M, "body")),
        6 => {
            c.element(shared::KEY_VALUE);
            c.key_value(wire_type, depth)
                .map_err(|e| e.at(M, "attributes"))
        }
        7 => c
            .int(wire_type)
            .map_err(|e| e.at(M, "dropped_attributes_count")),
        8 => c.fixed(wire_type, I32, 4).map_err(|e| e.at(M, "flags")),
        9 => c.bytes(wire_type).map_err(|e| e.at(M, "trace_id")),
        10 => c.bytes(wire_type).map_err(|e| e.at(M, "span_id")),
        11 => c
            .fixed(wire_type, I64, 8)
            .map_err(|e| e.at(M, "observed_time_unix_nano")),
        12 => c.string(wire_type).map_err(|e| e.at(M, "event_name")),
        _ => c.skip(wire_type, tag, depth),
    }
}
