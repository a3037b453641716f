//! The `trace_analysis` connector's detectors (N+1 loops, duplicate and serial calls,
//! fan-out, error origins, and the critical path and dependencies behind its other metrics):
//! [`detect`] over one trace's spans read in place ([`spans`]), with one option section per
//! detector ([`config::Detectors`]). The collector links this crate natively.

pub mod config;
pub mod detect;
pub mod spans;
