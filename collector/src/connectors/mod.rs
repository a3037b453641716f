//! Connectors: components that are an exporter of some pipelines and a receiver of others
//! (see [`crate::component::ConnectorConfig`]).

pub mod adjusted;
pub mod forward;
pub mod servicegraph;
pub mod spanmetrics;
pub mod trace_analysis;
