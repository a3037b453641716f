//! `otlp::wire::validate` held to prost: it accepts exactly what
//! `ExportTraceServiceRequest::decode` accepts, with prost's error text when it refuses, the
//! same counts when it accepts, and a decoded-size estimate no smaller than what prost builds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use wasmcol_fuzz::measure;
use wasmcol_fuzz::otlp::{ExportTraceServiceRequest, wire};

fuzz_target!(|data: &[u8]| {
    let ours = wire::validate(data);
    let prost = ExportTraceServiceRequest::decode(data);
    match (ours, prost) {
        (Ok(valid), Ok(request)) => {
            let rs = &request.resource_spans;
            assert_eq!(valid.resource_spans, rs.len());
            assert_eq!(valid.spans, measure::spans(rs));
            assert_eq!(valid.invalid_spans, measure::invalid_spans(rs));
            let decoded = measure::measure(rs);
            assert!(
                decoded.total() <= valid.decoded_bytes,
                "decoded {decoded:?} > estimate {}",
                valid.decoded_bytes
            );
        }
        (Err(ours), Err(prost)) => assert_eq!(ours.to_string(), prost.to_string()),
        (ours, prost) => panic!("validate: {ours:?}, prost: {prost:?}"),
    }
});
