//! Live configuration reload: what asks for one (SIGHUP, or a change in the config files
//! with `--watch-config`), and the switch that lets a receiver keep its listener and
//! connections while the pipelines behind it are replaced.
//!
//! A reload reads the very `--config` sources and `--set` values the process started with,
//! checks the result as start-up does, and hands it to [`crate::service::Service::reload`],
//! which keeps what did not change and replaces the rest.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::component::{ComponentId, Consumers, Exporter, Lifecycle};
use crate::pipeline::{self, Batch, ConsumeError, Consumer, Logs, SharedConsumer, Signal, Traces};

/// Where the configuration comes from, so a reload reads it again the same way.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The `--config` sources, in order.
    pub sources: Vec<String>,
    /// The `--set` values.
    pub sets: Vec<String>,
    /// `--watch-config`: reload when a config file's content changes.
    pub watch: bool,
}

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// A watched config file changed.
    FileChange,
}

impl Trigger {
    /// How logs name it.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChange => "config file change",
        }
    }
}

/// How often `--watch-config` reads the config files.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Watches the file sources in `sources` for changes in their content and sends
/// [`Trigger::FileChange`] once a change has settled: the content read is the same on two
/// reads in a row, so a burst of writes (an editor saving in steps, kubelet's swap of a
/// ConfigMap's `..data` link) makes one reload. Each read opens the path anew, following
/// the symbolic links it holds as they are then, so a ConfigMap whose link is swapped is
/// seen (no file descriptor or inode is held).
pub fn watch_files(sources: &[String], triggers: mpsc::UnboundedSender<Trigger>) {
    let files: Vec<String> = sources
        .iter()
        .filter(|s| !s.starts_with("env:") && !s.starts_with("yaml:"))
        .cloned()
        .collect();
    if files.is_empty() {
        tracing::warn!("--watch-config: no config file to watch (only env: and yaml: sources)");
        return;
    }
    tracing::info!(files = ?files, interval = ?WATCH_INTERVAL, "watching the config files for changes");
    let read = move || -> Vec<Result<String, String>> {
        files
            .iter()
            .map(|f| crate::config::sources::text_of(f, &|_| None))
            .collect()
    };
    // The baseline is read now, before the collector's listeners open.
    let mut running = read();
    let mut seen = running.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let now = read();
            if now != running && now == seen {
                running = now.clone();
                if triggers.send(Trigger::FileChange).is_err() {
                    return;
                }
            }
            seen = now;
        }
    });
}

/// One target of a [`Switch`]: the calls in flight hold a reference to it, so the switch can
/// tell when the last call into the pipelines it replaced has returned.
struct Target<S: Signal>(SharedConsumer<S>);

/// Stands between a receiver and the pipelines it feeds; a reload points it at the new
/// pipelines without the receiver noticing. While it is held (pointed at nothing), calls
/// wait; they are not refused.
pub struct Switch<S: Signal> {
    target: watch::Sender<Option<Arc<Target<S>>>>,
}

impl<S: Signal> Switch<S> {
    /// A switch pointed at `next`.
    pub fn new(next: SharedConsumer<S>) -> Arc<Self> {
        Arc::new(Self {
            target: watch::Sender::new(Some(Arc::new(Target(next)))),
        })
    }

    /// Points the switch at `next` (`None`: holds new calls until it is pointed again), and
    /// waits, until `deadline`, for the calls into the previous target to return; false if
    /// some had not by then.
    pub async fn point(&self, next: Option<SharedConsumer<S>>, deadline: Instant) -> bool {
        let previous = self.target.send_replace(next.map(|n| Arc::new(Target(n))));
        let Some(previous) = previous else {
            return true;
        };
        // Calls take their reference under the channel's lock, so once replaced, no new call
        // can reach `previous`: the count only falls.
        while Arc::strong_count(&previous) > 1 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

#[async_trait]
impl<S: Signal> Consumer<S> for Switch<S> {
    async fn consume(&self, batch: Batch<S>) -> Result<(), ConsumeError> {
        let target = loop {
            if let Some(t) = self.target.borrow().clone() {
                break t;
            }
            let mut pointed = self.target.subscribe();
            // The sender lives as long as `self`.
            let _ = pointed.wait_for(Option::is_some).await;
        };
        target.0.consume(batch).await
    }
}

/// Builds an exporter; see [`Deferred`].
type Build<S> = Box<dyn FnOnce() -> anyhow::Result<Arc<dyn Exporter<S>>> + Send>;

/// An exporter that replaces a running one of the same id, built only when started: by then
/// its predecessor has drained and closed what the two may share (an output file, an on-disk
/// queue's directory), since building may already open it.
pub struct Deferred<S: Signal> {
    id: ComponentId,
    build: Mutex<Option<Build<S>>>,
    built: OnceLock<Arc<dyn Exporter<S>>>,
}

impl<S: Signal> Deferred<S> {
    /// Exporter `id`, which `build` builds when it starts.
    pub fn new(id: ComponentId, build: Build<S>) -> Arc<Self> {
        Arc::new(Self {
            id,
            build: Mutex::new(Some(build)),
            built: OnceLock::new(),
        })
    }
}

#[async_trait]
impl<S: Signal> Lifecycle for Deferred<S> {
    async fn start(&self) -> anyhow::Result<()> {
        let build = self.build.lock().expect("deferred build lock").take();
        let Some(build) = build else {
            return Ok(());
        };
        let built = build()?;
        built.start().await?;
        let _ = self.built.set(built);
        Ok(())
    }

    async fn shutdown(&self) {
        if let Some(built) = self.built.get() {
            built.shutdown().await;
        }
    }
}

#[async_trait]
impl<S: Signal> Consumer<S> for Deferred<S> {
    async fn consume(&self, batch: Batch<S>) -> Result<(), ConsumeError> {
        match self.built.get() {
            Some(built) => built.consume(batch).await,
            None => Err(ConsumeError::retryable(format!(
                "exporters.{} is not running",
                self.id
            ))),
        }
    }
}

/// A receiver's switches, one per signal it feeds.
#[derive(Clone, Default)]
pub struct Switches {
    traces: Option<Arc<Switch<Traces>>>,
    logs: Option<Arc<Switch<Logs>>>,
    metrics: Option<Arc<Switch<pipeline::Metrics>>>,
}

impl Switches {
    /// Switches pointed at `next`, signal by signal.
    pub fn new(next: &Consumers) -> Self {
        Self {
            traces: next.traces.clone().map(Switch::new),
            logs: next.logs.clone().map(Switch::new),
            metrics: next.metrics.clone().map(Switch::new),
        }
    }

    /// What the receiver is built with: the switches, as its consumers.
    pub fn consumers(&self) -> Consumers {
        Consumers {
            traces: self.traces.clone().map(|s| s as SharedConsumer<Traces>),
            logs: self.logs.clone().map(|s| s as SharedConsumer<Logs>),
            metrics: self
                .metrics
                .clone()
                .map(|s| s as SharedConsumer<pipeline::Metrics>),
        }
    }

    /// Points each switch at its signal's pipelines in `next` (`None`: holds), and waits until
    /// `deadline` for the calls into the previous ones; false if some had not returned.
    pub async fn point(&self, next: Option<&Consumers>, deadline: Instant) -> bool {
        let mut done = true;
        if let Some(s) = &self.traces {
            done &= s.point(next.and_then(|n| n.traces.clone()), deadline).await;
        }
        if let Some(s) = &self.logs {
            done &= s.point(next.and_then(|n| n.logs.clone()), deadline).await;
        }
        if let Some(s) = &self.metrics {
            done &= s
                .point(next.and_then(|n| n.metrics.clone()), deadline)
                .await;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::pipeline::TraceBatch;

    /// Records which consumer got each batch; `gate` (when set) holds calls until notified.
    struct Sink {
        name: &'static str,
        log: Arc<Mutex<Vec<&'static str>>>,
        gate: Option<Arc<tokio::sync::Notify>>,
    }

    #[async_trait]
    impl Consumer<Traces> for Sink {
        async fn consume(&self, _: TraceBatch) -> Result<(), ConsumeError> {
            if let Some(g) = &self.gate {
                g.notified().await;
            }
            self.log.lock().unwrap().push(self.name);
            Ok(())
        }
    }

    fn sink(
        name: &'static str,
        log: &Arc<Mutex<Vec<&'static str>>>,
        gate: Option<Arc<tokio::sync::Notify>>,
    ) -> SharedConsumer<Traces> {
        Arc::new(Sink {
            name,
            log: log.clone(),
            gate,
        })
    }

    #[tokio::test]
    async fn a_switch_waits_for_calls_into_what_it_replaced_and_holds_while_unpointed() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Notify::new());
        let switch = Switch::new(sink("old", &log, Some(gate.clone())));
        let in_flight = tokio::spawn({
            let s = switch.clone();
            async move { s.consume(TraceBatch::default()).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The call into "old" has not returned: pointing elsewhere reports it by the deadline.
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(!switch.point(None, soon).await);
        // Held: a new call waits instead of failing.
        let held = tokio::spawn({
            let s = switch.clone();
            async move { s.consume(TraceBatch::default()).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!held.is_finished());
        gate.notify_one();
        in_flight.await.unwrap().unwrap();
        let later = Instant::now() + Duration::from_secs(5);
        assert!(switch.point(Some(sink("new", &log, None)), later).await);
        held.await.unwrap().unwrap();
        assert_eq!(*log.lock().unwrap(), ["old", "new"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watched_file_triggers_once_its_change_settles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        watch_files(&[path.display().to_string(), "yaml:b: 2".into()], tx);
        // Between two reads.
        tokio::time::sleep(WATCH_INTERVAL * 3 + WATCH_INTERVAL / 2).await;
        assert!(rx.try_recv().is_err(), "no change, no trigger");
        std::fs::write(&path, "a: 2\n").unwrap();
        tokio::time::sleep(WATCH_INTERVAL * 4 / 10).await;
        std::fs::write(&path, "a: 3\n").unwrap();
        tokio::time::sleep(WATCH_INTERVAL * 4).await;
        assert_eq!(rx.try_recv(), Ok(Trigger::FileChange));
        assert!(rx.try_recv().is_err(), "one trigger for the burst");
    }
}
