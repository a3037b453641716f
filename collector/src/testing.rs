//! Helpers for unit tests of components: a recording consumer and span factories.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::component::{BuildContext, ComponentId};
use crate::pipeline::{Batch, ConsumeError, Consumer, Signal, TraceBatch, Traces};
use crate::telemetry::Metrics;

/// A consumer of signal `S` that records what it gets, and can be told to refuse (retryable).
pub struct Recorder<S: Signal = Traces> {
    batches: Mutex<Vec<Batch<S>>>,
    refusing: AtomicBool,
}

impl<S: Signal> Default for Recorder<S> {
    fn default() -> Self {
        Self {
            batches: Mutex::default(),
            refusing: AtomicBool::default(),
        }
    }
}

impl<S: Signal> Recorder<S> {
    /// A new, accepting recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// Makes `consume` refuse (retryable) or accept.
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
    }
    /// Every accepted batch, in order.
    pub fn batches(&self) -> Vec<Batch<S>> {
        self.batches.lock().unwrap().clone()
    }
    /// Item count of every accepted batch, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .map(Batch::item_count)
            .collect()
    }
}

impl Recorder<Traces> {
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
impl<S: Signal> Consumer<S> for Recorder<S> {
    async fn consume(&self, batch: Batch<S>) -> Result<(), ConsumeError> {
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
        shared: Default::default(),
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
