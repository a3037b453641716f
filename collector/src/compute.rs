//! CPU-heavy work off the async reactor.
//!
//! Decompressing, checking and decoding a 20 MiB request takes tens to hundreds of
//! milliseconds of CPU. Done on a tokio worker thread, it holds that thread for as long, and on
//! a two-core machine a few such requests stall everything else the workers run: health
//! checks, other clients' small requests, Kafka heartbeats and exporters' sends. So work on
//! large inputs goes to a pool of [`slots`] threads of its own (the CPU quota the process has,
//! as `std::thread::available_parallelism` reads it from the cgroup), run at a lower priority
//! ([`NICENESS`]) so that, when the pool keeps every core busy, the async threads still get the
//! CPU as soon as they have something to do. Further jobs wait in line without holding an
//! async thread. Small inputs are handled in place: handing them to another thread costs more
//! than the work.

use std::sync::OnceLock;

/// Inputs at least this large are worked on off the reactor.
pub const OFF_REACTOR_BYTES: usize = 256 * 1024;

/// How much lower than the rest of the process the pool's threads run (Linux nice values).
pub const NICENESS: i32 = 5;

/// The effort [`run`] is told of for work that reads or writes every span of `batch`: about
/// 256 bytes a span, so batches of a thousand spans and more go off the reactor.
pub fn batch_effort(batch: &crate::pipeline::TraceBatch) -> usize {
    batch.item_count().saturating_mul(256)
}

/// How many heavy jobs run at once.
pub fn slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The effort [`run`] is told of for a request body of `len` bytes: a compressed body is
/// weighed as what it may inflate to (a 20 KB gzip body can hold 20 MB).
pub fn body_effort(len: usize, compressed: bool) -> usize {
    if compressed {
        len.saturating_mul(64)
    } else {
        len
    }
}

type Job = Box<dyn FnOnce() + Send>;

fn pool() -> &'static flume::Sender<Job> {
    static POOL: OnceLock<flume::Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = flume::unbounded::<Job>();
        for i in 0..slots() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("wasmcol-compute-{i}"))
                .spawn(move || {
                    lower_priority();
                    // Jobs catch their own panics (see `run`), so the thread outlives them.
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .expect("spawn a compute thread");
        }
        tx
    })
}

/// Lowers this thread's priority by [`NICENESS`] (on Linux a thread has a nice value of its
/// own). Best effort: where it is not allowed the thread runs at the normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let me = rustix::thread::gettid();
        let now = rustix::process::getpriority_process(Some(me)).unwrap_or(0);
        if let Err(e) = rustix::process::setpriority_process(Some(me), now + NICENESS) {
            tracing::debug!(error = %e, "cannot lower the compute thread's priority");
        }
    }
}

/// A job that panicked; the panic's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked(pub String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "internal error: {}", self.0)
    }
}

/// Runs `job`, on the pool if `size` (the bytes it works on) is at least
/// [`OFF_REACTOR_BYTES`], in place otherwise. A panic in the job comes back as [`Panicked`].
pub async fn run<T, F>(size: usize, job: F) -> Result<T, Panicked>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let guarded = move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
            .map_err(|p| panicked(p.as_ref()))
    };
    if size < OFF_REACTOR_BYTES {
        return guarded();
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = pool().send(Box::new(move || {
        let _ = tx.send(guarded());
    }));
    if sent.is_err() {
        return Err(Panicked("the compute pool is gone".into()));
    }
    rx.await
        .unwrap_or_else(|_| Err(Panicked("the compute pool dropped a job".into())))
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

    #[test]
    fn pool_threads_run_at_a_lower_priority() {
        let (tx, rx) = std::sync::mpsc::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mine = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        rt.block_on(run(OFF_REACTOR_BYTES, move || {
            tx.send(rustix::process::getpriority_process(Some(
                rustix::thread::gettid(),
            )))
            .unwrap();
        }))
        .unwrap();
        assert_eq!(rx.recv().unwrap().unwrap(), mine + NICENESS);
    }

    #[tokio::test]
    async fn panics_come_back_as_errors() {
        for size in [0, OFF_REACTOR_BYTES] {
            let r = run(size, || -> u8 { panic!("boom {}", 1) }).await;
            assert_eq!(r, Err(Panicked("boom 1".into())));
        }
    }
}
