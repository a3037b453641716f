//! Message payloads: OTLP protobuf or OTLP/JSON export requests of a signal
//! (`ExportTraceServiceRequest`, `ExportLogsServiceRequest`, `ExportMetricsServiceRequest`), the
//! same bytes the OpenTelemetry Collector's Kafka exporter writes and its receiver reads.

use bytes::Bytes;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use serde::Deserialize;

use crate::otlp::intake::{self, Accepted, Budget, Refusal};
use crate::otlp::{ExportTraceServiceRequest, OtlpSignal};
use crate::pipeline::SignalKind;

/// `encoding` of the message values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The export request as protobuf (the default, and the most compact).
    #[default]
    OtlpProto,
    /// The export request as OTLP/JSON.
    OtlpJson,
}

/// The export request message of `signal`, for error messages.
fn request_name(signal: SignalKind) -> &'static str {
    match signal {
        SignalKind::Traces => "ExportTraceServiceRequest",
        SignalKind::Logs => "ExportLogsServiceRequest",
        SignalKind::Metrics => "ExportMetricsServiceRequest",
    }
}

impl Encoding {
    /// The option value (`otlp_proto`, `otlp_json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OtlpProto => "otlp_proto",
            Self::OtlpJson => "otlp_json",
        }
    }

    /// The bytes of one export request of signal `S` holding `resources`.
    pub fn encode_signal<S: OtlpSignal>(self, resources: &[S::Resource]) -> Vec<u8> {
        match self {
            Self::OtlpProto => {
                let mut out = Vec::with_capacity(proto_len_of(resources));
                for r in resources {
                    prost::encoding::message::encode(1, r, &mut out);
                }
                out
            }
            Self::OtlpJson => {
                let mut out = Vec::with_capacity(resources.len() * 1024);
                S::encode_json(resources, &mut out);
                out
            }
        }
    }

    /// The size [`Encoding::encode_signal`] would produce, when it can be known without
    /// encoding.
    pub fn encoded_len_hint_of<R: prost::Message>(self, resources: &[R]) -> Option<usize> {
        match self {
            Self::OtlpProto => Some(proto_len_of(resources)),
            Self::OtlpJson => None,
        }
    }

    /// The bytes of one request holding `resource_spans`.
    pub fn encode(self, resource_spans: &[ResourceSpans]) -> Vec<u8> {
        match self {
            Self::OtlpProto => {
                // Encoding a borrowed request would need a clone; encode the fields directly.
                let mut out = Vec::with_capacity(proto_len(resource_spans));
                for rs in resource_spans {
                    prost::encoding::message::encode(1, rs, &mut out);
                }
                out
            }
            Self::OtlpJson => {
                let mut out = Vec::with_capacity(resource_spans.len() * 1024);
                crate::otlp::json::encode_traces(resource_spans, &mut out);
                out
            }
        }
    }

    /// The size [`Encoding::encode`] would produce, when it can be known without encoding.
    pub fn encoded_len_hint(self, resource_spans: &[ResourceSpans]) -> Option<usize> {
        match self {
            Self::OtlpProto => Some(proto_len(resource_spans)),
            Self::OtlpJson => None,
        }
    }

    /// Decodes one message value.
    pub fn decode(self, bytes: &[u8]) -> Result<Vec<ResourceSpans>, String> {
        let req = match self {
            Self::OtlpProto => ExportTraceServiceRequest::decode(bytes)
                .map_err(|e| format!("not an OTLP protobuf ExportTraceServiceRequest: {e}"))?,
            Self::OtlpJson => crate::otlp::json::decode_traces(bytes)
                .map_err(|e| format!("not an OTLP/JSON ExportTraceServiceRequest: {e}"))?,
        };
        Ok(req.resource_spans)
    }

    /// Decodes one message value into a batch of signal `S` within `budget` (see
    /// [`crate::otlp::intake`]); protobuf is checked and kept as bytes, items with invalid ids
    /// are dropped and counted.
    pub fn decode_batch<S: OtlpSignal>(
        self,
        bytes: &Bytes,
        budget: Budget,
    ) -> Result<Accepted<S>, Refusal> {
        let accepted = match self {
            Self::OtlpProto => intake::protobuf::<S>(bytes.clone(), budget),
            Self::OtlpJson => intake::json::<S>(bytes, budget),
        };
        let request = request_name(S::KIND);
        accepted.map_err(|refusal| match (self, refusal) {
            (Self::OtlpProto, Refusal::Malformed(m)) => {
                Refusal::Malformed(format!("not an OTLP protobuf {request}: {m}"))
            }
            (Self::OtlpJson, Refusal::Malformed(m)) => {
                Refusal::Malformed(format!("not an OTLP/JSON {request}: {m}"))
            }
            (_, over) => over,
        })
    }
}

fn proto_len(resource_spans: &[ResourceSpans]) -> usize {
    proto_len_of(resource_spans)
}

fn proto_len_of<R: prost::Message>(resources: &[R]) -> usize {
    resources
        .iter()
        .map(|r| prost::encoding::message::encoded_len(1, r))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn both_encodings_round_trip() {
        let rs = testing::spans(7).into_resources();
        for enc in [Encoding::OtlpProto, Encoding::OtlpJson] {
            let bytes = enc.encode(&rs);
            if let Some(n) = enc.encoded_len_hint(&rs) {
                assert_eq!(n, bytes.len());
            }
            assert_eq!(enc.decode(&bytes).unwrap(), rs, "{enc:?}");
        }
        assert!(Encoding::OtlpProto.decode(b"\xff\xff\xff").is_err());
        assert!(Encoding::OtlpJson.decode(b"{nope").is_err());
    }
}
