//! CPU-heavy work off the async reactor.
//!
//! Decompressing, checking and decoding a 20 MiB request takes tens to hundreds of
//! milliseconds of CPU. Done on a tokio worker thread, it holds that thread for as long, and on
//! a two-core machine a few such requests stall everything else the workers run: health
//! checks, other clients' small requests, Kafka heartbeats and exporters' sends. So work on
//! large inputs goes to blocking threads, at most [`slots`] jobs at once (the CPU quota the
//! process has, as `std::thread::available_parallelism` reads it from the cgroup); further jobs
//! wait for a slot without holding a worker. Small inputs are handled in place: handing them
//! to another thread costs more than the work.

use std::sync::OnceLock;

use tokio::sync::Semaphore;

/// Inputs at least this large are worked on off the reactor.
pub const OFF_REACTOR_BYTES: usize = 256 * 1024;

/// The effort [`run`] is told of for a request body of `len` bytes: a compressed body is
/// weighed as what it may inflate to (a 20 KB gzip body can hold 20 MB).
pub fn body_effort(len: usize, compressed: bool) -> usize {
    if compressed {
        len.saturating_mul(64)
    } else {
        len
    }
}

/// How many heavy jobs run at once.
pub fn slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn gate() -> &'static Semaphore {
    static GATE: OnceLock<Semaphore> = OnceLock::new();
    GATE.get_or_init(|| Semaphore::new(slots()))
}

/// A job that panicked; the panic's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked(pub String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "internal error: {}", self.0)
    }
}

/// Runs `job`, on a blocking thread once a slot is free if `size` (the bytes it works on) is
/// at least [`OFF_REACTOR_BYTES`], in place otherwise. A panic in the job comes back as
/// [`Panicked`] and is counted like other components' panics.
pub async fn run<T, F>(size: usize, job: F) -> Result<T, Panicked>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if size < OFF_REACTOR_BYTES {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
            .map_err(|p| panicked(p.as_ref()));
    }
    // The semaphore is never closed.
    let _slot = gate().acquire().await.expect("never closed");
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(p) => panicked(p.as_ref()),
            Err(e) => Panicked(e.to_string()),
        })
}

fn panicked(payload: &(dyn std::any::Any + Send)) -> Panicked {
    let message = crate::panics::message(payload);
    tracing::error!(panic = %message, "work run off the reactor panicked; its data is refused");
    Panicked(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn large_jobs_leave_the_worker_free() {
        // One worker thread: had the heavy job run on it, no other task could run until the
        // job ended, and the job waits for the other task.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let heavy = tokio::spawn(run(OFF_REACTOR_BYTES, move || {
            rx.recv_timeout(std::time::Duration::from_secs(5))
                .expect("the other task ran meanwhile");
            7
        }));
        tokio::task::yield_now().await;
        let other = tokio::spawn(async move { tx.send(()).unwrap() });
        other.await.unwrap();
        assert_eq!(heavy.await.unwrap(), Ok(7));
    }

    #[tokio::test]
    async fn panics_come_back_as_errors() {
        for size in [0, OFF_REACTOR_BYTES] {
            let r = run(size, || -> u8 { panic!("boom {}", 1) }).await;
            assert_eq!(r, Err(Panicked("boom 1".into())));
        }
    }
}
