//! `nop`: accepts and discards everything. For benchmarks and for testing pipelines.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::component::{BuildContext, Exporter, ExporterConfig, Lifecycle, Validate};
use crate::pipeline::{ConsumeError, Consumer, TraceBatch, Traces};
use crate::telemetry::ExporterMetrics;

/// `exporters.nop`: takes no options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NopExporterConfig {}

impl Validate for NopExporterConfig {}

impl ExporterConfig for NopExporterConfig {
    fn build_traces(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<Traces>>> {
        Ok(Arc::new(NopExporter {
            metrics: ctx.metrics.exporter(&ctx.id.to_string()),
        }))
    }
}

struct NopExporter {
    metrics: ExporterMetrics,
}

#[async_trait]
impl Consumer<Traces> for NopExporter {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        self.metrics.sent.inc_by(batch.item_count() as u64);
        Ok(())
    }
}

impl Lifecycle for NopExporter {}
