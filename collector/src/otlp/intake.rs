//! From the body of a request (or a Kafka message) to a batch, within bounds: what every
//! receiver of OTLP traces does with the bytes it got.
//!
//! A size limit on the bytes alone does not bound what they cost. Protobuf is compact where
//! the structures it decodes into are not: an empty span is two bytes on the wire and about
//! 250 in memory, so a 20 KB gzip body holding ten million of them decodes into gigabytes in
//! whatever stage reads spans (a JSON exporter, ClickHouse, a plugin). So every body is held to
//! a [`Budget`] on its decoded size, derived from the limit on its bytes, and refused whole
//! when over it, before anything is decoded (protobuf is measured by [`wire::validate`], which
//! allocates nothing) or as soon as decoding passes it (JSON).
//!
//! Spans whose trace id or span id is invalid (empty, or all zeros; the OTLP specification says
//! such ids are invalid) are dropped and counted: they cannot be sampled, joined into traces or
//! stored by id, and a flood of them costs memory for nothing. The rest of the request goes on;
//! the sender hears how many were dropped (OTLP's partial success). A request with nothing
//! valid in it is refused as malformed.

use bytes::Bytes;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;

use super::ExportTraceServiceRequest;
use super::json::{self, DecodeError};
use super::wire::{self, valid_id};
use crate::pipeline::TraceBatch;

/// How many bytes of decoded structures each byte of a request's size limit allows. Real
/// spans take two to five times their protobuf size once decoded (a span with a dozen short
/// attributes about three and a half), so eight leaves room for legitimate requests while
/// bounding a hostile one to a small multiple of what the limit already lets in.
pub const DECODED_BYTES_PER_LIMIT_BYTE: usize = 8;

/// The most a request's spans may take once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes of decoded structures (see [`wire::Validated::decoded_bytes`]).
    pub decoded_bytes: usize,
    /// The size limit the budget comes from, and its name, for the refusal's message.
    limit: usize,
    option: &'static str,
}

impl Budget {
    /// The budget of a request whose bytes are limited to `limit` by the option named
    /// `option` (e.g. `max_request_body_size`).
    pub fn for_limit(limit: usize, option: &'static str) -> Self {
        Budget {
            decoded_bytes: limit.saturating_mul(DECODED_BYTES_PER_LIMIT_BYTE),
            limit,
            option,
        }
    }

    fn refusal(&self, spans: Option<usize>) -> Refusal {
        let what = match spans {
            Some(n) => format!("the request's {n} spans would take more than"),
            None => "the request would take more than".to_string(),
        };
        Refusal::OverBudget(format!(
            "{what} {} bytes once decoded ({DECODED_BYTES_PER_LIMIT_BYTE} x {} = {}); send \
             fewer spans per request",
            self.decoded_bytes, self.option, self.limit
        ))
    }
}

/// Why a body became no batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an OTLP trace request, or one with no valid span in it.
    Malformed(String),
    /// Over its [`Budget`]: a retry of the same request fails the same way.
    OverBudget(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed(m) | Refusal::OverBudget(m) => f.write_str(m),
        }
    }
}

/// A batch made from a body, and what was left out of it.
#[derive(Debug)]
pub struct Accepted {
    /// The valid spans.
    pub batch: TraceBatch,
    /// Spans dropped for an invalid trace or span id.
    pub invalid_spans: usize,
}

impl Accepted {
    /// The message of an OTLP partial success, when spans were dropped.
    pub fn partial_success(&self) -> Option<String> {
        (self.invalid_spans > 0).then(|| {
            format!(
                "{} spans dropped: their trace id or span id is empty or all zeros",
                self.invalid_spans
            )
        })
    }
}

fn all_invalid(n: usize) -> Refusal {
    Refusal::Malformed(format!(
        "all {n} spans have an empty or all-zero trace id or span id"
    ))
}

/// An OTLP protobuf `ExportTraceServiceRequest`, checked and measured without decoding; it
/// stays bytes unless it holds invalid spans, which are then cut out.
pub fn protobuf(bytes: Bytes, budget: Budget) -> Result<Accepted, Refusal> {
    let checked = wire::validate(&bytes).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if checked.decoded_bytes > budget.decoded_bytes {
        return Err(budget.refusal(Some(checked.spans)));
    }
    if checked.invalid_spans == 0 {
        return Ok(Accepted {
            batch: TraceBatch::from_trusted_protobuf(bytes, checked.spans),
            invalid_spans: 0,
        });
    }
    if checked.invalid_spans == checked.spans {
        return Err(all_invalid(checked.spans));
    }
    // Rare, and within the budget: decode, filter, encode again.
    let mut request = ExportTraceServiceRequest::decode(bytes).map_err(|e| {
        Refusal::Malformed(format!("checked protobuf failed to decode (a defect): {e}"))
    })?;
    let dropped = drop_invalid(&mut request.resource_spans);
    debug_assert_eq!(dropped, checked.invalid_spans);
    let spans = checked.spans - checked.invalid_spans;
    Ok(Accepted {
        batch: TraceBatch::from_trusted_protobuf(request.encode_to_vec().into(), spans),
        invalid_spans: checked.invalid_spans,
    })
}

/// An OTLP/JSON `ExportTraceServiceRequest`, decoded with invalid spans left out and the
/// decoding stopped as soon as it passes the budget.
pub fn json(bytes: &[u8], budget: Budget) -> Result<Accepted, Refusal> {
    match json::decode_traces_within(bytes, budget.decoded_bytes) {
        Ok(decoded) => {
            let batch = TraceBatch::new(decoded.request.resource_spans);
            if batch.item_count() == 0 && decoded.invalid > 0 {
                return Err(all_invalid(decoded.invalid));
            }
            Ok(Accepted {
                batch,
                invalid_spans: decoded.invalid,
            })
        }
        Err(DecodeError::Malformed(m)) => Err(Refusal::Malformed(m)),
        Err(DecodeError::OverBudget { .. }) => Err(budget.refusal(None)),
    }
}

/// Removes spans with an invalid trace or span id; returns how many.
fn drop_invalid(resource_spans: &mut [ResourceSpans]) -> usize {
    let mut dropped = 0;
    for ss in resource_spans.iter_mut().flat_map(|rs| &mut rs.scope_spans) {
        let before = ss.spans.len();
        ss.spans
            .retain(|s| valid_id(&s.trace_id, 16) && valid_id(&s.span_id, 8));
        dropped += before - ss.spans.len();
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};

    fn span(trace: u8, id: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: "op".into(),
            ..Default::default()
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn budget() -> Budget {
        Budget::for_limit(1 << 20, "max_request_body_size")
    }

    #[test]
    fn valid_protobuf_stays_bytes() {
        let bytes = Bytes::from(request(vec![span(1, 2), span(3, 4)]).encode_to_vec());
        let accepted = protobuf(bytes, budget()).unwrap();
        assert_eq!(accepted.batch.item_count(), 2);
        assert_eq!(accepted.invalid_spans, 0);
        assert_eq!(accepted.partial_success(), None);
    }

    #[test]
    fn invalid_ids_are_dropped_and_counted() {
        let mut no_trace = span(1, 2);
        no_trace.trace_id.clear();
        let zero_span = span(1, 0);
        let short = Span {
            trace_id: vec![1; 8],
            ..span(1, 2)
        };
        let req = request(vec![span(5, 6), no_trace, zero_span, short, span(7, 8)]);
        let accepted = protobuf(req.encode_to_vec().into(), budget()).unwrap();
        assert_eq!(accepted.batch.item_count(), 2);
        assert_eq!(accepted.invalid_spans, 3);
        let kept: Vec<_> = accepted.batch.resources()[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.trace_id[0])
            .collect();
        assert_eq!(kept, [5, 7]);
        assert!(
            accepted
                .partial_success()
                .unwrap()
                .starts_with("3 spans dropped")
        );
    }

    #[test]
    fn all_invalid_is_malformed() {
        let req = request(vec![Span::default(); 3]);
        assert_eq!(
            protobuf(req.encode_to_vec().into(), budget()).unwrap_err(),
            all_invalid(3)
        );
        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{},{},{}]}]}]}"#;
        assert_eq!(
            json::decode_traces(json.as_bytes())
                .unwrap()
                .resource_spans
                .len(),
            1
        );
        assert_eq!(
            super::json(json.as_bytes(), budget()).unwrap_err(),
            all_invalid(3)
        );
    }

    #[test]
    fn empty_spans_over_the_budget_are_refused_before_decoding() {
        // 100,000 empty spans: 200 KB of protobuf, 25 MB decoded.
        let req = request(vec![Span::default(); 100_000]);
        let bytes = req.encode_to_vec();
        let limit = Budget::for_limit(bytes.len(), "max_recv_msg_size_mib");
        match protobuf(bytes.into(), limit).unwrap_err() {
            Refusal::OverBudget(m) => {
                assert!(m.contains("100000 spans"), "{m}");
                assert!(m.contains("max_recv_msg_size_mib"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_stops_at_the_budget() {
        let one = r#"{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"}"#;
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            vec![one; 1000].join(",")
        );
        let ok = super::json(body.as_bytes(), Budget::for_limit(body.len(), "x")).unwrap();
        assert_eq!(ok.batch.item_count(), 1000);
        let tight = Budget {
            decoded_bytes: 100 * std::mem::size_of::<Span>(),
            limit: 1,
            option: "x",
        };
        assert!(matches!(
            super::json(body.as_bytes(), tight),
            Err(Refusal::OverBudget(_))
        ));
    }

    #[test]
    fn json_drops_invalid_spans_and_keeps_the_rest() {
        let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"","spanId":"0102030405060708"},
            {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0000000000000000"},
            {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"kept"}
        ]}]}]}"#;
        let accepted = super::json(body.as_bytes(), budget()).unwrap();
        assert_eq!(accepted.invalid_spans, 2);
        assert_eq!(accepted.batch.item_count(), 1);
        assert_eq!(
            accepted.batch.resources()[0].scope_spans[0].spans[0].name,
            "kept"
        );
        // A wrong length is malformed, as it is for the OpenTelemetry Collector.
        let bad = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"01"}]}]}]}"#;
        assert!(matches!(
            super::json(bad.as_bytes(), budget()),
            Err(Refusal::Malformed(_))
        ));
    }
}
