//! The collector's own telemetry: metrics, health and logs.

mod health;
mod logging;
mod metrics;
pub mod process;
mod server;

pub use health::{Health, HealthState};
pub use logging::init_logging;
pub use metrics::{
    ExporterMetrics, Metrics, ProcessorMetrics, ReceiverMetrics, TailSamplingMetrics,
};
pub use server::serve_metrics;
