//! Exporters: the last stage of a pipeline.

pub mod clickhouse;
pub mod debug;
pub mod file;
pub mod kafka;
pub mod nop;
pub mod otlp;
pub mod otlphttp;
pub mod sending_queue;
