//! Receivers: where data enters the collector.

pub mod kafka;
pub mod otlp;
