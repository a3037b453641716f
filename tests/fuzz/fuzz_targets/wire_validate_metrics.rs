//! `otlp::wire::validate_metrics` held to prost: it accepts exactly what
//! `ExportMetricsServiceRequest::decode` accepts, with prost's error text when it refuses, the
//! same counts when it accepts (data points as prost keeps them after merging and replacing
//! oneof members), and a decoded-size estimate no smaller than what prost builds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use wasmcol_fuzz::measure;
use wasmcol_fuzz::otlp::{ExportMetricsServiceRequest, wire};

fuzz_target!(|data: &[u8]| {
    let ours = wire::validate_metrics(data);
    let prost = ExportMetricsServiceRequest::decode(data);
    match (ours, prost) {
        (Ok(valid), Ok(request)) => {
            let rm = &request.resource_metrics;
            assert_eq!(valid.resource_metrics, rm.len());
            assert_eq!(valid.metrics, measure::metrics(rm));
            assert_eq!(valid.data_points, measure::data_points(rm));
            let decoded = measure::measure_metrics(rm);
            assert!(
                decoded.total() <= valid.decoded_bytes,
                "decoded {decoded:?} > estimate {}",
                valid.decoded_bytes
            );
        }
        (Err(ours), Err(prost)) => assert_eq!(ours.to_string(), prost.to_string()),
        (ours, prost) => panic!("validate_metrics: {ours:?}, prost: {prost:?}"),
    }
});
