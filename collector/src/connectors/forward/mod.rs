//! `forward`: passes data on, unchanged, from the pipelines that list it as an exporter to the
//! pipelines of the same signal that list it as a receiver (one pipeline's data into several,
//! or several into one). Acknowledgement travels with the data.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::component::{BuildContext, Connector, ConnectorConfig, Lifecycle, Validate};
use crate::pipeline::{Batch, ConsumeError, Consumer, SharedConsumer, Signal};

/// `connectors.forward`: takes no options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

impl Validate for ForwardConfig {}

impl ConnectorConfig for ForwardConfig {
    crate::component::connects_every_signal_to_itself!(build);

    /// Each batch goes on with its acknowledgement, and the answer is the next stage's.
    fn passes_acknowledgement_on(&self) -> bool {
        true
    }
}

impl ForwardConfig {
    fn build<S: Signal>(
        &self,
        _ctx: &BuildContext,
        next: SharedConsumer<S>,
    ) -> anyhow::Result<Arc<dyn Connector<S>>> {
        Ok(Arc::new(Forward { next }))
    }
}

struct Forward<S: Signal> {
    next: SharedConsumer<S>,
}

#[async_trait]
impl<S: Signal> Consumer<S> for Forward<S> {
    async fn consume(&self, batch: Batch<S>) -> Result<(), ConsumeError> {
        self.next.consume(batch).await
    }
}

impl<S: Signal> Lifecycle for Forward<S> {}
