//! `otlp::json`'s decoders (traces, logs, metrics) on any bytes; what one decodes, its encoder
//! writes back to the same request. The receivers' bounded forms agree with them: the same
//! request less its invalid spans (logs and metrics leave nothing out), and never more than
//! the budget.
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use wasmcol_fuzz::measure;
use wasmcol_fuzz::otlp::json::{self, DecodeError, Decoded};

/// Small enough that the seed requests (3 spans) sit near it, so both answers are common.
const BUDGET: usize = 4 * 1024;

fuzz_target!(|data: &[u8]| {
    traces(data);
    logs(data);
    metrics(data);
});

fn traces(data: &[u8]) {
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
            assert_eq!(kept.invalid, measure::invalid_spans(rs));
            assert_eq!(
                measure::spans(&kept.request.resource_spans) + kept.invalid,
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

    round_trip(
        &request,
        |r| &r.resource_spans[..],
        json::encode_traces,
        json::decode_traces,
    );
}

fn logs(data: &[u8]) {
    let decoded = json::decode_logs(data);
    let bounded = json::decode_logs_within(data, BUDGET);
    let Ok(request) = decoded else {
        assert!(bounded.is_err(), "{bounded:?}");
        return;
    };
    let elements = || measure::measure_logs(&request.resource_logs).elements;
    bounded_agrees(&request, bounded, elements);
    round_trip(
        &request,
        |r| &r.resource_logs[..],
        json::encode_logs,
        json::decode_logs,
    );
}

fn metrics(data: &[u8]) {
    let decoded = json::decode_metrics(data);
    let bounded = json::decode_metrics_within(data, BUDGET);
    let Ok(request) = decoded else {
        assert!(bounded.is_err(), "{bounded:?}");
        return;
    };
    let elements = || measure::measure_metrics(&request.resource_metrics).elements;
    bounded_agrees(&request, bounded, elements);
    round_trip(
        &request,
        |r| &r.resource_metrics[..],
        json::encode_metrics,
        json::decode_metrics,
    );
}

/// For logs and metrics, which leave nothing out: the bounded decoding of a request the
/// unbounded one accepted is the whole request if it is within the budget, and a refusal
/// otherwise.
fn bounded_agrees<R: PartialEq + Debug>(
    request: &R,
    bounded: Result<Decoded<R>, DecodeError>,
    elements: impl Fn() -> usize,
) {
    match bounded {
        Ok(kept) => {
            assert_eq!(kept.invalid, 0);
            same(&kept.request, request);
            let elements = elements();
            assert!(elements <= BUDGET, "kept {elements} bytes");
        }
        Err(DecodeError::OverBudget { budget }) => {
            assert_eq!(budget, BUDGET);
            let elements = elements();
            assert!(elements > BUDGET, "refused a request of {elements} bytes");
        }
        Err(e) => panic!("the unbounded decoder accepted, the bounded one: {e:?}"),
    }
}

/// Encodes `request`, decodes it back to the same request, and encodes that to the same bytes.
fn round_trip<R: PartialEq + Debug, T>(
    request: &R,
    items: impl Fn(&R) -> &[T],
    encode: fn(&[T], &mut Vec<u8>),
    decode: fn(&[u8]) -> Result<R, String>,
) {
    let mut encoded = Vec::new();
    encode(items(request), &mut encoded);
    let again =
        decode(&encoded).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&encoded)));
    same(&again, request);
    let mut re_encoded = Vec::new();
    encode(items(&again), &mut re_encoded);
    assert_eq!(encoded, re_encoded);
}

/// Equal, or (NaN is not equal to itself) equal in their Debug forms.
fn same<R: PartialEq + Debug>(a: &R, b: &R) {
    if a != b {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}
