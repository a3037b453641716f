//! `otlp::wire::validate_logs` held to prost: it accepts exactly what
//! `ExportLogsServiceRequest::decode` accepts, with prost's error text when it refuses, the
//! same counts when it accepts, and a decoded-size estimate no smaller than what prost builds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use wasmcol_fuzz::measure;
use wasmcol_fuzz::otlp::{ExportLogsServiceRequest, wire};

fuzz_target!(|data: &[u8]| {
    let ours = wire::validate_logs(data);
    let prost = ExportLogsServiceRequest::decode(data);
    match (ours, prost) {
        (Ok(valid), Ok(request)) => {
            let rl = &request.resource_logs;
            assert_eq!(valid.resource_logs, rl.len());
            assert_eq!(valid.log_records, measure::log_records(rl));
            let decoded = measure::measure_logs(rl);
            assert!(
                decoded.total() <= valid.decoded_bytes,
                "decoded {decoded:?} > estimate {}",
                valid.decoded_bytes
            );
        }
        (Err(ours), Err(prost)) => assert_eq!(ours.to_string(), prost.to_string()),
        (ours, prost) => panic!("validate_logs: {ours:?}, prost: {prost:?}"),
    }
});
