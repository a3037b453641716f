//! Whether the collector is ready to take data, for health checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// The collector's state as a health check reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Components are being built and started, at start-up or during a configuration reload.
    Starting,
    /// Every component started; data flows.
    Ready,
    /// Shutting down: receivers no longer accept data.
    Stopping,
}

/// Shared, cheap-to-clone health state.
#[derive(Debug, Clone)]
pub struct Health(Arc<AtomicU8>);

impl Default for Health {
    fn default() -> Self {
        Self(Arc::new(AtomicU8::new(0)))
    }
}

impl Health {
    /// Sets the state.
    pub fn set(&self, s: HealthState) {
        self.0.store(s as u8, Ordering::Release);
    }
    /// The current state.
    pub fn get(&self) -> HealthState {
        match self.0.load(Ordering::Acquire) {
            0 => HealthState::Starting,
            1 => HealthState::Ready,
            _ => HealthState::Stopping,
        }
    }
}
