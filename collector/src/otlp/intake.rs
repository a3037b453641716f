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

use super::json::DecodeError;
use super::signal::OtlpSignal;
use crate::pipeline::{Batch, SignalKind};

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

    fn refusal(&self, signal: SignalKind, items: Option<usize>) -> Refusal {
        let what = signal.items();
        let request = match items {
            Some(n) => format!("the request's {n} {what} would take more than"),
            None => "the request would take more than".to_string(),
        };
        Refusal::OverBudget(format!(
            "{request} {} bytes once decoded ({DECODED_BYTES_PER_LIMIT_BYTE} x {} = {}); send \
             fewer {what} per request",
            self.decoded_bytes, self.option, self.limit
        ))
    }
}

/// Why a body became no batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an OTLP request of the signal, or one with no valid item in it.
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
pub struct Accepted<S: OtlpSignal> {
    /// The valid items.
    pub batch: Batch<S>,
    /// Items dropped as invalid (spans with an invalid trace or span id).
    pub invalid: usize,
}

impl<S: OtlpSignal> Accepted<S> {
    /// The message of an OTLP partial success, when items were dropped.
    pub fn partial_success(&self) -> Option<String> {
        (self.invalid > 0).then(|| {
            format!(
                "{} {} dropped: their trace id or span id is empty or all zeros",
                self.invalid,
                S::KIND.items()
            )
        })
    }
}

fn all_invalid(signal: SignalKind, n: usize) -> Refusal {
    Refusal::Malformed(format!(
        "all {n} {} have an empty or all-zero trace id or span id",
        signal.items()
    ))
}

/// An OTLP protobuf export request of signal `S`, checked and measured without decoding; it
/// stays bytes unless it holds invalid items, which are then cut out.
pub fn protobuf<S: OtlpSignal>(bytes: Bytes, budget: Budget) -> Result<Accepted<S>, Refusal> {
    let checked = S::check(&bytes).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if checked.decoded_bytes > budget.decoded_bytes {
        return Err(budget.refusal(S::KIND, Some(checked.items)));
    }
    if checked.invalid == 0 {
        return Ok(Accepted {
            batch: Batch::from_trusted_protobuf(bytes, checked.items),
            invalid: 0,
        });
    }
    if checked.invalid == checked.items {
        return Err(all_invalid(S::KIND, checked.items));
    }
    // Rare, and within the budget: decode, filter, encode again.
    let mut resources = S::decode(&bytes).map_err(|e| {
        Refusal::Malformed(format!("checked protobuf failed to decode (a defect): {e}"))
    })?;
    let dropped = S::drop_invalid(&mut resources);
    debug_assert_eq!(dropped, checked.invalid);
    let mut batch = Batch::new(resources);
    let bytes = batch.to_protobuf();
    batch.set_trusted_protobuf(bytes, checked.items - checked.invalid);
    Ok(Accepted {
        batch,
        invalid: checked.invalid,
    })
}

/// An OTLP/JSON export request of signal `S`, decoded with invalid items left out and the
/// decoding stopped as soon as it passes the budget.
pub fn json<S: OtlpSignal>(bytes: &[u8], budget: Budget) -> Result<Accepted<S>, Refusal> {
    match S::decode_json(bytes, budget.decoded_bytes) {
        Ok(decoded) => {
            let batch = Batch::new(decoded.resources);
            if batch.item_count() == 0 && decoded.invalid > 0 {
                return Err(all_invalid(S::KIND, decoded.invalid));
            }
            Ok(Accepted {
                batch,
                invalid: decoded.invalid,
            })
        }
        Err(DecodeError::Malformed(m)) => Err(Refusal::Malformed(m)),
        Err(DecodeError::OverBudget { .. }) => Err(budget.refusal(S::KIND, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::ExportTraceServiceRequest;
    use crate::otlp::json;
    use crate::pipeline::Traces;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};
    use prost::Message;

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
        let accepted = protobuf::<Traces>(bytes, budget()).unwrap();
        assert_eq!(accepted.batch.item_count(), 2);
        assert_eq!(accepted.invalid, 0);
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
        let accepted = protobuf::<Traces>(req.encode_to_vec().into(), budget()).unwrap();
        assert_eq!(accepted.batch.item_count(), 2);
        assert_eq!(accepted.invalid, 3);
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
            protobuf::<Traces>(req.encode_to_vec().into(), budget()).unwrap_err(),
            all_invalid(SignalKind::Traces, 3)
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
            super::json::<Traces>(json.as_bytes(), budget()).unwrap_err(),
            all_invalid(SignalKind::Traces, 3)
        );
    }

    #[test]
    fn empty_spans_over_the_budget_are_refused_before_decoding() {
        // 100,000 empty spans: 200 KB of protobuf, 25 MB decoded.
        let req = request(vec![Span::default(); 100_000]);
        let bytes = req.encode_to_vec();
        let limit = Budget::for_limit(bytes.len(), "max_recv_msg_size_mib");
        match protobuf::<Traces>(bytes.into(), limit).unwrap_err() {
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
        let ok =
            super::json::<Traces>(body.as_bytes(), Budget::for_limit(body.len(), "x")).unwrap();
        assert_eq!(ok.batch.item_count(), 1000);
        let tight = Budget {
            decoded_bytes: 100 * std::mem::size_of::<Span>(),
            limit: 1,
            option: "x",
        };
        assert!(matches!(
            super::json::<Traces>(body.as_bytes(), tight),
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
        let accepted = super::json::<Traces>(body.as_bytes(), budget()).unwrap();
        assert_eq!(accepted.invalid, 2);
        assert_eq!(accepted.batch.item_count(), 1);
        assert_eq!(
            accepted.batch.resources()[0].scope_spans[0].spans[0].name,
            "kept"
        );
        // A wrong length is malformed, as it is for the OpenTelemetry Collector.
        let bad = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"01"}]}]}]}"#;
        assert!(matches!(
            super::json::<Traces>(bad.as_bytes(), budget()),
            Err(Refusal::Malformed(_))
        ));
    }
}
