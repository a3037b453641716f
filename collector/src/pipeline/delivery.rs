//! Acknowledgement that travels with the data.
//!
//! A receiver that must know when its data has been delivered (the Kafka receiver commits an
//! offset only then) attaches a [`DeliveryTracker`] to the batch. Every copy of the batch made by
//! fan-out, batching or splitting shares the tracker; when the last copy is dropped the tracker
//! reports [`Outcome::Delivered`], [`Outcome::Failed`] if any holder gave the data up for now
//! (worth another try), or [`Outcome::Rejected`] if a destination refused it for good.
//!
//! A copy dropped while its thread unwinds from a panic counts as failed: the holder did not
//! finish with it.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How the data behind a tracker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every exporter that received a copy delivered it.
    Delivered,
    /// At least one copy was dropped without being delivered, for a reason that may pass
    /// (a back end down past the retry budget, a shutdown, a panic): the data is worth
    /// handing over again.
    Failed,
    /// No copy failed, but at least one was refused for good (a permanent error or a partial
    /// rejection by its destination): handing the same data over again would fail the same
    /// way.
    Rejected,
}

/// `DeliveryTracker::state` values, in increasing precedence.
const DELIVERED: u8 = 0;
const REJECTED: u8 = 1;
const FAILED: u8 = 2;

type Callback = Box<dyn FnOnce(Outcome, Option<String>) + Send>;

/// Calls its callback once, when the last batch referring to it is gone.
pub struct DeliveryTracker {
    callback: Mutex<Option<Callback>>,
    /// The worst that happened to a copy: `DELIVERED`, `REJECTED` or `FAILED`.
    state: AtomicU8,
    /// Why the data was refused for good, as the first holder to say so put it.
    reason: OnceLock<String>,
}

impl DeliveryTracker {
    /// A tracker that calls `callback` with the outcome once all copies are gone.
    pub fn new(callback: impl FnOnce(Outcome) + Send + 'static) -> Arc<Self> {
        Self::with_reason(move |outcome, _| callback(outcome))
    }

    /// Like [`DeliveryTracker::new`]; with [`Outcome::Rejected`] the callback also gets the
    /// reason, when a holder gave one ([`Delivery::reject_because`]).
    pub fn with_reason(
        callback: impl FnOnce(Outcome, Option<String>) + Send + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            callback: Mutex::new(Some(Box::new(callback))),
            state: AtomicU8::new(DELIVERED),
            reason: OnceLock::new(),
        })
    }
}

impl Drop for DeliveryTracker {
    fn drop(&mut self) {
        let outcome = match self.state.load(Ordering::Acquire) {
            DELIVERED => Outcome::Delivered,
            REJECTED => Outcome::Rejected,
            _ => Outcome::Failed,
        };
        let reason = match outcome {
            Outcome::Rejected => self.reason.take(),
            _ => None,
        };
        if let Some(cb) = self.callback.lock().ok().and_then(|mut c| c.take()) {
            cb(outcome, reason);
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
    pub fn merge(&mut self, mut other: Delivery) {
        self.trackers.append(&mut other.trackers);
    }

    /// Marks the data as not delivered, for now: the trackers will report
    /// [`Outcome::Failed`].
    pub fn fail(&self) {
        self.mark(FAILED);
    }

    /// Marks the data as refused for good: unless another copy failed, the trackers will
    /// report [`Outcome::Rejected`].
    pub fn reject(&self) {
        self.mark(REJECTED);
    }

    /// [`Delivery::reject`], saying why (trackers keep the first reason they are given).
    pub fn reject_because(&self, reason: &str) {
        for t in &self.trackers {
            let _ = t.reason.get_or_init(|| reason.to_string());
        }
        self.mark(REJECTED);
    }

    /// True when no tracker listens (most receivers do not track delivery).
    pub fn is_untracked(&self) -> bool {
        self.trackers.is_empty()
    }

    fn mark(&self, state: u8) {
        for t in &self.trackers {
            t.state.fetch_max(state, Ordering::AcqRel);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // A holder that panicked did not deliver what it held.
        if std::thread::panicking() {
            self.fail();
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

    #[test]
    fn a_failure_outranks_a_rejection() {
        let (t, seen) = probe();
        let a = Delivery::tracked(t);
        let b = a.clone();
        a.reject();
        drop(a);
        b.fail();
        drop(b);
        assert_eq!(*seen.lock().unwrap(), Some(Outcome::Failed));

        let (t, seen) = probe();
        let a = Delivery::tracked(t);
        let b = a.clone();
        a.reject();
        drop(a);
        drop(b);
        assert_eq!(*seen.lock().unwrap(), Some(Outcome::Rejected));
    }

    #[test]
    fn a_rejection_keeps_the_first_reason() {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let a = Delivery::tracked(DeliveryTracker::with_reason(move |o, r| {
            *s.lock().unwrap() = Some((o, r));
        }));
        let b = a.clone();
        a.reject_because("HTTP 400: span 3 has no trace id");
        b.reject_because("another reason");
        drop((a, b));
        assert_eq!(
            seen.lock().unwrap().clone(),
            Some((
                Outcome::Rejected,
                Some("HTTP 400: span 3 has no trace id".to_string())
            ))
        );

        // A failure outranks the rejection, and its reason does not apply.
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let a = Delivery::tracked(DeliveryTracker::with_reason(move |o, r| {
            *s.lock().unwrap() = Some((o, r));
        }));
        a.reject_because("refused");
        a.fail();
        drop(a);
        assert_eq!(seen.lock().unwrap().clone(), Some((Outcome::Failed, None)));
    }

    #[test]
    fn a_copy_dropped_by_a_panic_fails() {
        let (t, seen) = probe();
        let a = Delivery::tracked(t);
        let b = a.clone();
        let r = std::thread::spawn(move || {
            let _held = b;
            panic!("a stage failed while holding the batch");
        })
        .join();
        assert!(r.is_err());
        drop(a);
        assert_eq!(*seen.lock().unwrap(), Some(Outcome::Failed));
    }
}
