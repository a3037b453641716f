//! `otlp::json::decode_traces` on any bytes; what it decodes, `encode_traces` writes back to
//! the same request. The receivers' bounded form agrees with it: the same request less its
//! invalid spans, and never more than its budget.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmcol_fuzz::measure;
use wasmcol_fuzz::otlp::json::{self, DecodeError};

/// Small enough that the seed requests (3 spans) sit near it, so both answers are common.
const BUDGET: usize = 4 * 1024;

fuzz_target!(|data: &[u8]| {
    let decoded = json::decode_traces(data);
    let bounded = json::decode_traces_within(data, BUDGET);
    let Ok(request) = decoded else {
        // Malformed, or over its budget before the point where it is malformed.
        assert!(bounded.is_err(), "{bounded:?}");
        return;
    };

    let rs = &request.resource_spans;
    match bounded {
        Ok(kept) => {
            let elements = measure::measure(&kept.request.resource_spans).elements;
            assert!(elements <= BUDGET, "kept {elements} bytes");
            assert_eq!(kept.invalid_spans, measure::invalid_spans(rs));
            assert_eq!(
                measure::spans(&kept.request.resource_spans) + kept.invalid_spans,
                measure::spans(rs)
            );
            assert_eq!(measure::invalid_spans(&kept.request.resource_spans), 0);
        }
        Err(DecodeError::OverBudget { budget }) => {
            assert_eq!(budget, BUDGET);
            // Whatever it counted before it stopped, the whole request holds at least as much.
            let elements = measure::measure(rs).elements;
            assert!(elements > BUDGET, "refused a request of {elements} bytes");
        }
        Err(e) => panic!("decode_traces accepted, decode_traces_within: {e:?}"),
    }

    let mut encoded = Vec::new();
    json::encode_traces(rs, &mut encoded);
    let again = json::decode_traces(&encoded)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&encoded)));
    // NaN is not equal to itself; its Debug form is.
    if again != request {
        assert_eq!(format!("{again:?}"), format!("{request:?}"));
    }
    let mut re_encoded = Vec::new();
    json::encode_traces(&again.resource_spans, &mut re_encoded);
    assert_eq!(encoded, re_encoded);
});
