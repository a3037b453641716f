//! Structured logs to stderr (or stdout), human-readable or JSON.

use tracing_subscriber::EnvFilter;

use crate::config::LogsConfig;

/// Installs the global log subscriber. `RUST_LOG`, when set, overrides the configured level.
/// Safe to call more than once (later calls are ignored).
pub fn init_logging(cfg: &LogsConfig) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},h2=warn,hyper=warn,tower=warn", cfg.level)));
    let stdout = cfg.output_paths.first().is_some_and(|p| p == "stdout");
    let writer =
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
            if stdout {
                Box::new(std::io::stdout())
            } else {
                Box::new(std::io::stderr())
            }
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let _ = if cfg.encoding == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
