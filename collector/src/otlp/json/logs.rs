//! The log messages: which JSON field is which prost field, both ways.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use serde::de::MapAccess;

use super::common::{write_any_value, write_key_value, write_resource, write_scope};
use super::decode::{EnumSeed, Field, HexId, JsonMessage, Path, fields, nested, repeated, scalar};
use super::encode::Obj;

fields! { LogsRequestField { ResourceLogs = "resourceLogs" | "resource_logs" } }

impl JsonMessage for ExportLogsServiceRequest {
    const NAME: &'static str = "ExportLogsServiceRequest";
    type Field = LogsRequestField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: LogsRequestField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            LogsRequestField::ResourceLogs => self.resource_logs = repeated(map, path)?,
        }
        Ok(())
    }
}

fields! {
    ResourceLogsField {
        Resource = "resource",
        ScopeLogs = "scopeLogs" | "scope_logs",
        SchemaUrl = "schemaUrl" | "schema_url",
    }
}

impl JsonMessage for ResourceLogs {
    const NAME: &'static str = "ResourceLogs";
    type Field = ResourceLogsField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ResourceLogsField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ResourceLogsField::Resource => self.resource = nested(map, path)?,
            ResourceLogsField::ScopeLogs => self.scope_logs = repeated(map, path)?,
            ResourceLogsField::SchemaUrl => self.schema_url = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    ScopeLogsField {
        Scope = "scope",
        LogRecords = "logRecords" | "log_records",
        SchemaUrl = "schemaUrl" | "schema_url",
    }
}

impl JsonMessage for ScopeLogs {
    const NAME: &'static str = "ScopeLogs";
    type Field = ScopeLogsField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ScopeLogsField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ScopeLogsField::Scope => self.scope = nested(map, path)?,
            ScopeLogsField::LogRecords => self.log_records = repeated(map, path)?,
            ScopeLogsField::SchemaUrl => self.schema_url = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    LogRecordField {
        TimeUnixNano = "timeUnixNano" | "time_unix_nano",
        ObservedTimeUnixNano = "observedTimeUnixNano" | "observed_time_unix_nano",
        SeverityNumber = "severityNumber" | "severity_number",
        SeverityText = "severityText" | "severity_text",
        Body = "body",
        Attributes = "attributes",
        DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
        Flags = "flags",
        TraceId = "traceId" | "trace_id",
        SpanId = "spanId" | "span_id",
        EventName = "eventName" | "event_name",
    }
}

/// Every log record is kept by a bounded decoding: its ids are optional (empty outside a
/// span), and a wrong length is malformed, not invalid.
impl JsonMessage for LogRecord {
    const NAME: &'static str = "LogRecord";
    type Field = LogRecordField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: LogRecordField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            LogRecordField::TimeUnixNano => self.time_unix_nano = scalar(map)?,
            LogRecordField::ObservedTimeUnixNano => self.observed_time_unix_nano = scalar(map)?,
            LogRecordField::SeverityNumber => {
                self.severity_number = map.next_value_seed(EnumSeed::SEVERITY_NUMBER)?;
            }
            LogRecordField::SeverityText => self.severity_text = scalar(map)?,
            LogRecordField::Body => self.body = nested(map, path)?,
            LogRecordField::Attributes => self.attributes = repeated(map, path)?,
            LogRecordField::DroppedAttributesCount => self.dropped_attributes_count = scalar(map)?,
            LogRecordField::Flags => self.flags = scalar(map)?,
            LogRecordField::TraceId => self.trace_id = map.next_value_seed(HexId::TRACE_ID)?,
            LogRecordField::SpanId => self.span_id = map.next_value_seed(HexId::SPAN_ID)?,
            LogRecordField::EventName => self.event_name = scalar(map)?,
        }
        Ok(())
    }
}

impl EnumSeed {
    const SEVERITY_NUMBER: EnumSeed = EnumSeed {
        field: "severityNumber",
        enum_name: "SeverityNumber",
        example: "SEVERITY_NUMBER_INFO",
        from_name: severity_number_from_name,
    };
}

fn severity_number_from_name(name: &str) -> Option<i32> {
    SeverityNumber::from_str_name(name).map(|severity| severity as i32)
}

pub(super) fn write_resource_logs(out: &mut Vec<u8>, rl: &ResourceLogs) {
    let mut o = Obj::start(out);
    o.message("resource", rl.resource.as_ref(), write_resource);
    o.list("scopeLogs", &rl.scope_logs, write_scope_logs);
    o.string("schemaUrl", &rl.schema_url);
    o.end();
}

fn write_scope_logs(out: &mut Vec<u8>, sl: &ScopeLogs) {
    let mut o = Obj::start(out);
    o.message("scope", sl.scope.as_ref(), write_scope);
    o.list("logRecords", &sl.log_records, write_log_record);
    o.string("schemaUrl", &sl.schema_url);
    o.end();
}

fn write_log_record(out: &mut Vec<u8>, record: &LogRecord) {
    let mut o = Obj::start(out);
    o.u64("timeUnixNano", record.time_unix_nano);
    o.u64("observedTimeUnixNano", record.observed_time_unix_nano);
    o.i32("severityNumber", record.severity_number);
    o.string("severityText", &record.severity_text);
    o.message("body", record.body.as_ref(), write_any_value);
    o.list("attributes", &record.attributes, write_key_value);
    o.u32("droppedAttributesCount", record.dropped_attributes_count);
    o.u32("flags", record.flags);
    o.hex("traceId", &record.trace_id);
    o.hex("spanId", &record.span_id);
    o.string("eventName", &record.event_name);
    o.end();
}
