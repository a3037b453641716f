//! The collector's own telemetry: metrics, health and logs.

mod health;
pub mod log_limit;
mod logging;
mod metrics;
pub mod process;
mod server;

pub use health::{Health, HealthState};
pub(crate) use log_limit::log_limited;
pub use log_limit::{LogLimiter, flush_suppressed};
pub use logging::init_logging;
pub use metrics::{
    ExporterMetrics, Metrics, ProcessorMetrics, ReceiverMetrics, TailSamplingMetrics,
    TraceAnalysisMetrics,
};
pub use server::serve_metrics;
