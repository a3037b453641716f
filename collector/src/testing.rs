//! Helpers for unit tests of components: a recording consumer and span factories.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::component::{BuildContext, ComponentId};
use crate::pipeline::{ConsumeError, Consumer, TraceBatch, Traces};
use crate::telemetry::Metrics;

/// A consumer that records what it gets, and can be told to refuse (retryable).
#[derive(Default)]
pub struct Recorder {
    batches: Mutex<Vec<TraceBatch>>,
    refusing: AtomicBool,
}

impl Recorder {
    /// A new, accepting recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// Makes `consume` refuse (retryable) or accept.
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
    }
    /// Every accepted batch, in order.
    pub fn batches(&self) -> Vec<TraceBatch> {
        self.batches.lock().unwrap().clone()
    }
    /// Span count of every accepted batch, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .map(TraceBatch::item_count)
            .collect()
    }

    /// The span ids of every span received, in order.
    pub fn span_ids(&self) -> Vec<Vec<u8>> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b.resources()
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .flat_map(|ss| &ss.spans)
                    .map(|s| s.span_id.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[async_trait]
impl Consumer<Traces> for Recorder {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        if self.refusing.load(Ordering::SeqCst) {
            return Err(ConsumeError::retryable("recorder refuses"));
        }
        self.batches.lock().unwrap().push(batch);
        Ok(())
    }
}

/// A build context for component `id` in pipeline `traces`.
pub fn context(id: &str) -> BuildContext {
    BuildContext {
        id: ComponentId::parse(id).unwrap(),
        pipeline: Some("traces".into()),
        metrics: Arc::new(Metrics::new()),
        stores: Default::default(),
        authenticators: Default::default(),
        acknowledge_when_stored: false,
    }
}

/// A batch of `n` spans with distinct, deterministic trace ids.
pub fn spans(n: usize) -> TraceBatch {
    TraceBatch::new(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: (0..n)
                .map(|i| {
                    let mut trace_id = vec![0u8; 16];
                    trace_id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
                    trace_id[8..].copy_from_slice(
                        &(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes(),
                    );
                    Span {
                        trace_id,
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: format!("span-{i}"),
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// SplitMix64: deterministic pseudo-random choices for tests, from one seed.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True about once in `n` calls.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}
