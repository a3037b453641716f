//! OTLP/JSON for traces, as the OTLP specification defines it.

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::ExportTraceServiceRequest;

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub fn decode_traces(bytes: &[u8]) -> Result<ExportTraceServiceRequest, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Appends `{"resourceSpans":[...]}` for `resource_spans` to `out`, on one line.
pub fn encode_traces(resource_spans: &[ResourceSpans], out: &mut Vec<u8>) {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Req<'a> {
        resource_spans: &'a [ResourceSpans],
    }
    serde_json::to_writer(out, &Req { resource_spans }).expect("writing JSON to memory");
}
