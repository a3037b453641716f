//! Receivers: where data enters the collector.

pub mod otlp;
