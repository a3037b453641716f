//! OpenTelemetry's sampling threshold in a span's W3C `tracestate` (`ot=th:HEX`), shared by
//! the stages that sample and the ones that count:
//!
//! - [`tracestate`] writes it: the `tail_sampling` and `probabilistic_sampler` processors
//!   record the probability a kept span was kept with.
//! - [`adjusted`] reads it back as a span's adjusted count, by which the `spanmetrics`,
//!   `servicegraph` and `trace_analysis` connectors weigh each span.

pub mod adjusted;
pub mod tracestate;
