//! Edits: what a plugin returns instead of a whole new batch.
//!
//! The host checks and applies them to the protobuf bytes of the batch it handed the plugin,
//! with [`crate::wire::edit::apply`]; the native test harness ([`crate::testing::Harness`])
//! runs that same function on the same bytes, so a plugin tested natively behaves the same in
//! the collector, error texts included.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, status};
use prost::Message;

use crate::value::Value;

/// What an attribute edit applies to. Indices count in batch order (see the WIT `target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The n-th resource of the batch.
    Resource(u32),
    /// The n-th instrumentation scope of the batch, counted across resources.
    Scope(u32),
    /// The n-th span of the batch, counted across resources and scopes.
    Span(u32),
    /// An event of a span: (span, event).
    Event(u32, u32),
    /// A link of a span: (span, link).
    Link(u32, u32),
    /// The n-th log record of a logs batch, counted across resources and scopes.
    LogRecord(u32),
    /// The n-th data point of a metrics batch, counted across resources, scopes and metrics
    /// (whatever the metric's type).
    DataPoint(u32),
}

/// A span status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    /// Unset.
    Unset,
    /// Ok.
    Ok,
    /// Error.
    Error,
}

impl StatusCode {
    /// The OTLP enum value.
    pub(crate) fn to_otlp(self) -> i32 {
        match self {
            StatusCode::Unset => status::StatusCode::Unset as i32,
            StatusCode::Ok => status::StatusCode::Ok as i32,
            StatusCode::Error => status::StatusCode::Error as i32,
        }
    }
}

/// One change to a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Insert or replace an attribute.
    SetAttribute {
        /// Where.
        target: Target,
        /// The attribute key.
        key: String,
        /// The new value.
        value: Value,
    },
    /// Remove an attribute.
    RemoveAttribute {
        /// Where.
        target: Target,
        /// The attribute key.
        key: String,
    },
    /// Rename a span.
    SetSpanName {
        /// The span index.
        span: u32,
        /// The new name.
        name: String,
    },
    /// Rename an event.
    SetEventName {
        /// The span index.
        span: u32,
        /// The event's position in the span.
        event: u32,
        /// The new name.
        name: String,
    },
    /// Set a span's status.
    SetStatus {
        /// The span index.
        span: u32,
        /// The status code.
        code: StatusCode,
        /// The status message.
        message: String,
    },
    /// Remove a span from the batch.
    DropSpan {
        /// The span index.
        span: u32,
    },
    /// Set a log record's body.
    SetBody {
        /// The log record index.
        record: u32,
        /// The new body.
        value: Value,
    },
    /// Remove a log record from the batch.
    DropLogRecord {
        /// The log record index.
        record: u32,
    },
    /// Remove a data point from a metrics batch (a metric left without points goes too).
    DropDataPoint {
        /// The data point index.
        point: u32,
    },
    /// Remove a metric, with all its data points, from a metrics batch.
    DropMetric {
        /// The metric index, counted across resources and scopes.
        metric: u32,
    },
}

/// A plugin's answer for one batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Nothing changed.
    Unchanged,
    /// Apply these edits in order.
    Edits(Vec<Edit>),
    /// Replace the batch with this `TracesData` (or, for a logs batch, `LogsData`; for a
    /// metrics batch, `MetricsData`), protobuf.
    Replace(Vec<u8>),
}

/// Decodes a replacement batch (`TracesData`, protobuf) as the host does: as an
/// `ExportTraceServiceRequest` (the same field 1), so a bad one fails with the host's message.
pub fn decode_replacement(bytes: &[u8]) -> Result<Vec<ResourceSpans>, String> {
    ExportTraceServiceRequest::decode(bytes)
        .map(|t| t.resource_spans)
        .map_err(|e| format!("the replacement batch is not valid OTLP protobuf: {e}"))
}

/// Decodes a replacement logs batch (`LogsData`, protobuf) as the host does.
pub fn decode_logs_replacement(bytes: &[u8]) -> Result<Vec<ResourceLogs>, String> {
    ExportLogsServiceRequest::decode(bytes)
        .map(|t| t.resource_logs)
        .map_err(|e| format!("the replacement batch is not valid OTLP protobuf: {e}"))
}

/// Encodes a logs batch the way the host hands it to a plugin.
pub fn encode_logs_batch(data: &[ResourceLogs]) -> Vec<u8> {
    let len = prost::encoding::message::encoded_len_repeated(1, data);
    let mut buf = Vec::with_capacity(len);
    prost::encoding::message::encode_repeated(1, data, &mut buf);
    buf
}

/// Decodes a replacement metrics batch (`MetricsData`, protobuf) as the host does.
pub fn decode_metrics_replacement(bytes: &[u8]) -> Result<Vec<ResourceMetrics>, String> {
    ExportMetricsServiceRequest::decode(bytes)
        .map(|t| t.resource_metrics)
        .map_err(|e| format!("the replacement batch is not valid OTLP protobuf: {e}"))
}

/// Encodes a metrics batch the way the host hands it to a plugin.
pub fn encode_metrics_batch(data: &[ResourceMetrics]) -> Vec<u8> {
    let len = prost::encoding::message::encoded_len_repeated(1, data);
    let mut buf = Vec::with_capacity(len);
    prost::encoding::message::encode_repeated(1, data, &mut buf);
    buf
}

/// Encodes a batch the way the host hands it to a plugin.
pub fn encode_batch(data: &[ResourceSpans]) -> Vec<u8> {
    let len = prost::encoding::message::encoded_len_repeated(1, data);
    let mut buf = Vec::with_capacity(len);
    prost::encoding::message::encode_repeated(1, data, &mut buf);
    buf
}
