//! Processors: stages between receivers and exporters, one instance per pipeline.

pub mod batch;
pub mod memory_limiter;
pub mod probabilistic_sampler;
pub mod tail_sampling;
pub mod test_panic;
pub mod wasm;
