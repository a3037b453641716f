//! Keeping a panic in one worker from taking it down for good.
//!
//! A panic in a worker (a plugin worker thread, the tail-sampling decider, the batch
//! processor's task, a sending-queue consumer) is a defect, but one batch that hits it must not
//! stop the component: the panic is caught, logged at error with the component and the
//! message, counted in `wasmcol_component_panics_total`, and the worker starts again, after a
//! growing pause when it keeps panicking.
//!
//! What the worker held is not reported delivered: a `Delivery` dropped while its thread
//! unwinds marks the data failed, and a caller waiting on the worker gets a retryable error
//! (its reply channel is dropped with the worker, or the worker answers one explicitly).

use std::any::Any;
use std::future::Future;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// Panics in a row restarted at once before pauses begin.
const FREE_RESTARTS: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// A worker that ran this long since its last panic starts counting afresh.
const QUIET: Duration = Duration::from_secs(60);

/// The message a panic was raised with (`panic!("...")` gives a `&str` or a `String`).
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Logs one caught panic at error and counts it. `component` is the component id, `worker`
/// says which of its workers, `then` what happens to the data and the worker.
pub fn report(counter: &Counter, component: &str, worker: &str, message: &str, then: &str) {
    counter.inc();
    tracing::error!(
        component,
        worker,
        panic = message,
        "a worker panicked: {message}; {then}"
    );
}

/// The pause before restarting a worker that panicked: none for the first few panics in a
/// row, then `FIRST_PAUSE` doubling up to `MAX_PAUSE`; a quiet spell starts over.
#[derive(Debug)]
pub struct Restarts {
    in_a_row: u32,
    last: Option<Instant>,
}

impl Default for Restarts {
    fn default() -> Self {
        Self::new()
    }
}

impl Restarts {
    /// No panic seen yet.
    pub fn new() -> Self {
        Self {
            in_a_row: 0,
            last: None,
        }
    }

    /// Records a panic now and returns how long to wait before restarting.
    pub fn panicked(&mut self) -> Duration {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) > QUIET) {
            self.in_a_row = 0;
        }
        self.last = Some(now);
        self.in_a_row += 1;
        pause(self.in_a_row)
    }

    /// Panics in a row so far.
    pub fn in_a_row(&self) -> u32 {
        self.in_a_row
    }
}

/// "restarting now" or "restarting in 200ms", for the log.
pub fn restarting(wait: Duration) -> String {
    if wait.is_zero() {
        "restarting now".to_string()
    } else {
        format!("restarting in {wait:?}")
    }
}

fn pause(in_a_row: u32) -> Duration {
    match in_a_row.checked_sub(FREE_RESTARTS + 1) {
        None => Duration::ZERO,
        Some(exp) => (FIRST_PAUSE * 2u32.pow(exp.min(16))).min(MAX_PAUSE),
    }
}

/// Spawns thread `name` running `work` until it returns; a panic is reported (see [`report`])
/// and `work` runs again, after [`Restarts`]' pause. `work` must start from a clean state each
/// time (a fresh plugin instance, no half-processed batch).
pub fn spawn_thread(
    name: String,
    component: String,
    panics: Counter,
    mut work: impl FnMut() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let worker = name.clone();
    std::thread::Builder::new().name(name).spawn(move || {
        let mut restarts = Restarts::new();
        loop {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut work)) {
                Ok(()) => return,
                Err(payload) => {
                    let wait = restarts.panicked();
                    report(
                        &panics,
                        &component,
                        &worker,
                        &message(&*payload),
                        &format!("the batch it held failed (retryable); {}", restarting(wait)),
                    );
                    std::thread::sleep(wait);
                }
            }
        }
    })
}

/// Runs the task `make` builds until it completes; when it panics the panic is reported (see
/// [`report`]) and a new task is made, after [`Restarts`]' pause. The panicked task's state is
/// dropped while its thread unwinds, so a `Delivery` it held counts as failed.
pub async fn supervise_task<F>(
    component: String,
    worker: &str,
    panics: Counter,
    mut make: impl FnMut() -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let mut restarts = Restarts::new();
    loop {
        match tokio::spawn(make()).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                let wait = restarts.panicked();
                report(
                    &panics,
                    &component,
                    worker,
                    &message(&*e.into_panic()),
                    &format!("the data it held failed (retryable); {}", restarting(wait)),
                );
                tokio::time::sleep(wait).await;
            }
            // Cancelled: the runtime is going away.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::pipeline::{Delivery, DeliveryTracker, Outcome};

    #[test]
    fn pauses_grow_after_the_free_restarts_and_are_capped() {
        let pauses: Vec<_> = (1..=20).map(pause).collect();
        assert_eq!(&pauses[..3], &[Duration::ZERO; 3]);
        assert_eq!(pauses[3], FIRST_PAUSE);
        assert_eq!(pauses[4], FIRST_PAUSE * 2);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(pauses[19], MAX_PAUSE);
    }

    #[test]
    fn the_message_of_str_and_string_panics() {
        let p = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(message(&*p), "plain");
        let n = 3;
        let p = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(message(&*p), "formatted 3");
    }

    fn probe() -> (Delivery, Arc<Mutex<Option<Outcome>>>) {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let tracker = DeliveryTracker::new(move |o| *s.lock().unwrap() = Some(o));
        (Delivery::tracked(tracker), seen)
    }

    #[test]
    fn a_thread_worker_restarts_and_fails_what_it_held() {
        let panics = Counter::default();
        let runs = Arc::new(AtomicU32::new(0));
        let (delivery, seen) = probe();
        let held = Arc::new(Mutex::new(Some(delivery)));
        let (r, h) = (runs.clone(), held.clone());
        let t = spawn_thread("t".into(), "test".into(), panics.clone(), move || {
            if r.fetch_add(1, Ordering::SeqCst) == 0 {
                let _batch = h.lock().unwrap().take();
                panic!("first run fails");
            }
        })
        .unwrap();
        t.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(panics.get(), 1);
        assert_eq!(*seen.lock().unwrap(), Some(Outcome::Failed));
    }

    #[tokio::test]
    async fn a_task_restarts_and_fails_what_it_held() {
        let panics = Counter::default();
        let runs = Arc::new(AtomicU32::new(0));
        let (delivery, seen) = probe();
        let held = Arc::new(Mutex::new(Some(delivery)));
        supervise_task("test".into(), "task", panics.clone(), || {
            let (r, h) = (runs.clone(), held.clone());
            async move {
                // Held across an await: part of the task's state, not of a stack frame.
                let batch = h.lock().unwrap().take();
                tokio::task::yield_now().await;
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("fails twice");
                }
                drop(batch);
            }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(panics.get(), 2);
        assert_eq!(*seen.lock().unwrap(), Some(Outcome::Failed));
    }
}
