//! Acknowledgement that travels with the data.
//!
//! A receiver that must know when its data has been delivered (the Kafka receiver commits an
//! offset only then) attaches a [`DeliveryTracker`] to the batch. Every copy of the batch made by
//! fan-out, batching or splitting shares the tracker; when the last copy is dropped the tracker
//! reports [`Outcome::Delivered`], or [`Outcome::Failed`] if any holder gave the data up.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How the data behind a tracker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every exporter that received a copy delivered it.
    Delivered,
    /// At least one copy was dropped without being delivered.
    Failed,
}

type Callback = Box<dyn FnOnce(Outcome) + Send>;

/// Calls its callback once, when the last batch referring to it is gone.
pub struct DeliveryTracker {
    callback: Mutex<Option<Callback>>,
    failed: AtomicBool,
}

impl DeliveryTracker {
    /// A tracker that calls `callback` with the outcome once all copies are gone.
    pub fn new(callback: impl FnOnce(Outcome) + Send + 'static) -> Arc<Self> {
        Arc::new(Self {
            callback: Mutex::new(Some(Box::new(callback))),
            failed: AtomicBool::new(false),
        })
    }
}

impl Drop for DeliveryTracker {
    fn drop(&mut self) {
        let outcome = if self.failed.load(Ordering::Acquire) {
            Outcome::Failed
        } else {
            Outcome::Delivered
        };
        if let Some(cb) = self.callback.lock().ok().and_then(|mut c| c.take()) {
            cb(outcome);
        }
    }
}

/// The set of trackers a batch answers to. Cheap to clone; empty for most receivers.
#[derive(Clone, Default)]
pub struct Delivery {
    trackers: Vec<Arc<DeliveryTracker>>,
}

impl Delivery {
    /// Delivery tracked by one tracker.
    pub fn tracked(tracker: Arc<DeliveryTracker>) -> Self {
        Self {
            trackers: vec![tracker],
        }
    }

    /// Adds the trackers of `other`.
    pub fn merge(&mut self, other: Delivery) {
        self.trackers.extend(other.trackers);
    }

    /// Marks the data as lost: the trackers will report [`Outcome::Failed`].
    pub fn fail(&self) {
        for t in &self.trackers {
            t.failed.store(true, Ordering::Release);
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Delivery({} trackers)", self.trackers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> (Arc<DeliveryTracker>, Arc<Mutex<Option<Outcome>>>) {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        (
            DeliveryTracker::new(move |o| *s.lock().unwrap() = Some(o)),
            seen,
        )
    }

    #[test]
    fn reports_delivered_after_last_copy() {
        let (t, seen) = probe();
        let a = Delivery::tracked(t);
        let b = a.clone();
        drop(a);
        assert_eq!(*seen.lock().unwrap(), None);
        drop(b);
        assert_eq!(*seen.lock().unwrap(), Some(Outcome::Delivered));
    }

    #[test]
    fn one_failed_copy_fails_the_whole() {
        let (t, seen) = probe();
        let a = Delivery::tracked(t);
        let b = a.clone();
        b.fail();
        drop(b);
        drop(a);
        assert_eq!(*seen.lock().unwrap(), Some(Outcome::Failed));
    }
}
