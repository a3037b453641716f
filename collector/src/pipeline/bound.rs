//! A bound on what waits between two stages (a queue, a channel, a batch being gathered),
//! counted in any unit: bytes, batches or spans.
//!
//! Space is held by a [`Held`] guard and given back when the guard is dropped, so whatever
//! keeps the data (a queued item, a batch being sent, a panicking task's stack) keeps its
//! share of the bound for exactly as long as it keeps the data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A capacity and what is held against it; clones share the count.
#[derive(Clone, Debug)]
pub struct Bound {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    capacity: u64,
    used: AtomicU64,
}

/// Units held against a [`Bound`] until dropped.
#[derive(Debug)]
pub struct Held {
    shared: Arc<Shared>,
    units: u64,
}

impl Bound {
    /// A bound of `capacity` units, none held.
    pub fn new(capacity: u64) -> Self {
        Self {
            inner: Arc::new(Shared {
                capacity,
                used: AtomicU64::new(0),
            }),
        }
    }

    /// The capacity.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Units held now.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Holds `units` until the guard is dropped; `None` when they do not fit. Nothing held
    /// admits one item larger than the capacity, which would otherwise never get through.
    pub fn try_hold(&self, units: u64) -> Option<Held> {
        let shared = &self.inner;
        let mut used = shared.used.load(Ordering::Relaxed);
        loop {
            if used > 0 && used.saturating_add(units) > shared.capacity {
                return None;
            }
            match shared.used.compare_exchange_weak(
                used,
                used.saturating_add(units),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Held {
                        shared: shared.clone(),
                        units,
                    });
                }
                Err(now) => used = now,
            }
        }
    }
}

impl Held {
    /// The units this guard holds.
    pub fn units(&self) -> u64 {
        self.units
    }

    /// Holds `units` instead, once what is held turns out larger or smaller than reserved
    /// (admitted already, it may take the bound past its capacity; later holders wait).
    pub fn resize(&mut self, units: u64) {
        if units >= self.units {
            self.shared
                .used
                .fetch_add(units - self.units, Ordering::AcqRel);
        } else {
            self.shared
                .used
                .fetch_sub(self.units - units, Ordering::AcqRel);
        }
        self.units = units;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shared.used.fetch_sub(self.units, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_until_dropped_and_admits_one_oversized_item_when_empty() {
        let b = Bound::new(10);
        let a = b.try_hold(6).unwrap();
        assert!(b.try_hold(5).is_none());
        let c = b.try_hold(4).unwrap();
        assert_eq!(b.used(), 10);
        drop(a);
        drop(c);
        assert_eq!(b.used(), 0);
        let big = b
            .try_hold(25)
            .expect("an empty bound takes one oversized item");
        assert!(b.try_hold(1).is_none());
        drop(big);
        assert!(b.try_hold(1).is_some());
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_resized_hold_counts_its_new_size() {
        let b = Bound::new(10);
        let mut h = b.try_hold(4).unwrap();
        h.resize(9);
        assert_eq!(b.used(), 9);
        assert!(b.try_hold(2).is_none());
        h.resize(1);
        assert!(b.try_hold(2).is_some());
        drop(h);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn concurrent_holders_never_exceed_the_capacity() {
        let b = Bound::new(100);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        if let Some(h) = b.try_hold(7) {
                            assert!(b.used() <= 100);
                            drop(h);
                        }
                    }
                });
            }
        });
        assert_eq!(b.used(), 0);
    }
}
