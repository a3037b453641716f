//! What OTLP says of each signal: its gRPC service and HTTP path, its response, and its JSON.
//!
//! Receivers and exporters of OTLP are written once, generic over [`OtlpSignal`].

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::json::{self, DecodeError};
use super::wire::valid_id;
use crate::component::Wiring;
use crate::pipeline::{Logs, Metrics, Traces};

/// A signal's decoded OTLP/JSON request: its resource-level messages, and how many items were
/// left out as invalid.
pub struct JsonDecoded<R> {
    /// The resource-level messages.
    pub resources: Vec<R>,
    /// Items left out as invalid (spans with an empty or all-zero id).
    pub invalid: usize,
}

/// A signal as OTLP carries it.
pub trait OtlpSignal: Wiring {
    /// The gRPC service, `opentelemetry.proto.collector.trace.v1.TraceService`.
    const GRPC_SERVICE: &'static str;
    /// The gRPC method's path, `/opentelemetry.proto.collector.trace.v1.TraceService/Export`.
    const GRPC_EXPORT_PATH: &'static str;
    /// The OTLP/HTTP path a client posts to by default, `/v1/traces`.
    const HTTP_PATH: &'static str;
    /// The name of the partial success's count in OTLP/JSON, `rejectedSpans`.
    const REJECTED_JSON: &'static str;

    /// The export response.
    type Response: prost::Message + Default + Send + Sync + 'static;

    /// The response to an accepted request: a partial success when `rejected` items were left
    /// out, for the reason `message`.
    fn response(rejected: usize, message: String) -> Self::Response;

    /// The items a response says were rejected, and its message, when it carries a partial
    /// success.
    fn rejected(response: &Self::Response) -> Option<(u64, String)>;

    /// Removes invalid items (spans with an empty or all-zero trace or span id); returns how
    /// many. Signals whose items cannot be invalid remove none.
    fn drop_invalid(resources: &mut [Self::Resource]) -> usize {
        let _ = resources;
        0
    }

    /// Decodes an OTLP/JSON export request, leaving invalid items out, and stops as soon as
    /// the decoded data would pass `budget` bytes.
    fn decode_json(bytes: &[u8], budget: usize)
    -> Result<JsonDecoded<Self::Resource>, DecodeError>;

    /// Appends the OTLP/JSON export request holding `resources`, on one line.
    fn encode_json(resources: &[Self::Resource], out: &mut Vec<u8>);
}

impl OtlpSignal for Traces {
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const GRPC_EXPORT_PATH: &'static str =
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const HTTP_PATH: &'static str = "/v1/traces";
    const REJECTED_JSON: &'static str = "rejectedSpans";

    type Response = ExportTraceServiceResponse;

    fn response(rejected: usize, message: String) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
                error_message: message,
            }),
        }
    }

    fn rejected(response: &Self::Response) -> Option<(u64, String)> {
        let p = response.partial_success.as_ref()?;
        Some((p.rejected_spans.max(0) as u64, p.error_message.clone()))
    }

    fn drop_invalid(resources: &mut [ResourceSpans]) -> usize {
        let mut dropped = 0;
        for ss in resources.iter_mut().flat_map(|rs| &mut rs.scope_spans) {
            let before = ss.spans.len();
            ss.spans
                .retain(|s| valid_id(&s.trace_id, 16) && valid_id(&s.span_id, 8));
            dropped += before - ss.spans.len();
        }
        dropped
    }

    fn decode_json(bytes: &[u8], budget: usize) -> Result<JsonDecoded<ResourceSpans>, DecodeError> {
        json::decode_traces_within(bytes, budget).map(|d| JsonDecoded {
            resources: d.request.resource_spans,
            invalid: d.invalid,
        })
    }

    fn encode_json(resources: &[ResourceSpans], out: &mut Vec<u8>) {
        json::encode_traces(resources, out)
    }
}

impl OtlpSignal for Logs {
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const GRPC_EXPORT_PATH: &'static str =
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const HTTP_PATH: &'static str = "/v1/logs";
    const REJECTED_JSON: &'static str = "rejectedLogRecords";

    type Response = ExportLogsServiceResponse;

    fn response(rejected: usize, message: String) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(rejected).unwrap_or(i64::MAX),
                error_message: message,
            }),
        }
    }

    fn rejected(response: &Self::Response) -> Option<(u64, String)> {
        let p = response.partial_success.as_ref()?;
        Some((
            p.rejected_log_records.max(0) as u64,
            p.error_message.clone(),
        ))
    }

    fn decode_json(bytes: &[u8], budget: usize) -> Result<JsonDecoded<ResourceLogs>, DecodeError> {
        json::decode_logs_within(bytes, budget).map(|d| JsonDecoded {
            resources: d.request.resource_logs,
            invalid: d.invalid,
        })
    }

    fn encode_json(resources: &[ResourceLogs], out: &mut Vec<u8>) {
        json::encode_logs(resources, out)
    }
}

impl OtlpSignal for Metrics {
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const GRPC_EXPORT_PATH: &'static str =
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const HTTP_PATH: &'static str = "/v1/metrics";
    const REJECTED_JSON: &'static str = "rejectedDataPoints";

    type Response = ExportMetricsServiceResponse;

    fn response(rejected: usize, message: String) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
                error_message: message,
            }),
        }
    }

    fn rejected(response: &Self::Response) -> Option<(u64, String)> {
        let p = response.partial_success.as_ref()?;
        Some((
            p.rejected_data_points.max(0) as u64,
            p.error_message.clone(),
        ))
    }

    fn decode_json(
        bytes: &[u8],
        budget: usize,
    ) -> Result<JsonDecoded<ResourceMetrics>, DecodeError> {
        json::decode_metrics_within(bytes, budget).map(|d| JsonDecoded {
            resources: d.request.resource_metrics,
            invalid: d.invalid,
        })
    }

    fn encode_json(resources: &[ResourceMetrics], out: &mut Vec<u8>) {
        json::encode_metrics(resources, out)
    }
}
