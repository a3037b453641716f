//! `builtin:enrich`: adds the context operators need to spans, logs and metrics: ownership from
//! lookup tables, the environment a sidecar runs in, and attributes derived from others.
//!
//! Steps are listed under `resource:` (run once per resource) and `span:` (run on each span,
//! on each log record and on each metric data point, after the resource steps), each
//! optionally guarded by a `when`
//! condition. Tables are
//! loaded by the host from the processor's `tables:` and read with `host::lookup`; results
//! are cached, as tables do not change while the collector runs. See `plugins/README.md` for
//! every option.

mod config;
mod steps;

#[cfg(test)]
mod tests;

use wasmcol_plugin_sdk::prelude::*;

pub use config::Config;
use steps::{Scratch, Step};

/// The plugin.
pub struct Enrich {
    resource: Vec<Step>,
    span: Vec<Step>,
    scratch: Scratch,
}

impl Plugin for Enrich {
    fn new(config: PluginConfig) -> Result<Self, String> {
        let (resource, span) = config.parse::<Config>()?.build()?;
        Ok(Self {
            resource,
            span,
            scratch: Scratch::default(),
        })
    }

    fn process(&mut self, batch: &mut Batch) -> Result<(), String> {
        let Self {
            resource,
            span,
            scratch: sc,
        } = self;
        if !resource.is_empty() {
            batch.for_each_resource(|r| {
                for step in resource.iter_mut() {
                    step.apply(r, sc);
                }
            });
        }
        if !span.is_empty() {
            batch.for_each_span(|s| {
                for step in span.iter_mut() {
                    step.apply(s, sc);
                }
            });
        }
        report(sc);
        Ok(())
    }
    /// The same steps on logs: `resource:` on each resource, `span:` on each log record.
    fn process_logs(&mut self, batch: &mut LogBatch) -> Result<(), String> {
        let Self {
            resource,
            span,
            scratch: sc,
        } = self;
        if !resource.is_empty() {
            batch.for_each_resource(|r| {
                for step in resource.iter_mut() {
                    step.apply(r, sc);
                }
            });
        }
        if !span.is_empty() {
            batch.for_each_log_record(|record| {
                for step in span.iter_mut() {
                    step.apply(record, sc);
                }
            });
        }
        report(sc);
        Ok(())
    }

    /// The same steps on metrics: `resource:` on each resource, `span:` on each data point.
    fn process_metrics(&mut self, batch: &mut MetricBatch) -> Result<(), String> {
        let Self {
            resource,
            span,
            scratch: sc,
        } = self;
        if !resource.is_empty() {
            batch.for_each_resource(|r| {
                for step in resource.iter_mut() {
                    step.apply(r, sc);
                }
            });
        }
        if !span.is_empty() {
            batch.for_each_data_point(|point| {
                for step in span.iter_mut() {
                    step.apply(point, sc);
                }
            });
        }
        report(sc);
        Ok(())
    }
}

/// Hands the batch's counts to the host's counters and starts the next batch's from zero.
fn report(sc: &mut Scratch) {
    let counts = std::mem::take(&mut sc.counts);
    host::add_counter("attributes_set", counts.set);
    host::add_counter("lookup_hits", counts.hits);
    host::add_counter("lookup_misses", counts.misses);
}

export_plugin!(Enrich);
