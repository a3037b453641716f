//! `nop`: accepts and discards everything. For benchmarks and for testing pipelines.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::component::{BuildContext, Exporter, ExporterConfig, Lifecycle, Validate};
use crate::pipeline::{Batch, ConsumeError, Consumer, Signal};
use crate::telemetry::ExporterMetrics;

/// `exporters.nop`: takes no options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NopExporterConfig {}

impl Validate for NopExporterConfig {}

impl ExporterConfig for NopExporterConfig {
    crate::component::exports_every_signal!(build);
}

impl NopExporterConfig {
    fn build<S: Signal>(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<S>>> {
        Ok(Arc::new(NopExporter {
            metrics: ctx.metrics.exporter(&ctx.id.to_string(), S::KIND),
        }))
    }
}

struct NopExporter {
    metrics: ExporterMetrics,
}

#[async_trait]
impl<S: Signal> Consumer<S> for NopExporter {
    async fn consume(&self, batch: Batch<S>) -> Result<(), ConsumeError> {
        self.metrics.sent.inc_by(batch.item_count() as u64);
        Ok(())
    }
}

impl Lifecycle for NopExporter {}
