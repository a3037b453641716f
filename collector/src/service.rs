//! Builds the components named by a [`Config`], wires them into pipelines, runs them, and
//! shuts them down in order.
//!
//! Build order is backwards along the data path: exporters (one instance each, shared by the
//! pipelines that name them), then each pipeline's processors from last to first (one instance
//! per pipeline), then receivers, which fan out to the head of every pipeline that lists them.
//! With connectors, pipelines are built one at a time, deepest first: a pipeline a connector
//! feeds is built before the connector (one instance per pair of signals it joins), which is
//! built before the pipelines that export to it; their depths come from
//! [`crate::config::Link`]s, and `wasmcol validate` refuses cycles.
//! Start order is the same; shutdown is the reverse (health turns not-ready, receivers stop so
//! nothing new enters, then processors flush, level by level with the connectors between the
//! levels, then exporters drain), each stage bounded by its share of
//! `service.shutdown_timeout` (see [`Service::shutdown`]).

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticators;
use crate::component::{
    BuildContext, ComponentId, Connector, Consumers, Exporter, Lifecycle, SharedInstances, Wiring,
    build_connector,
};
use crate::config::{Config, Link};
use crate::pipeline::{self, Logs, SharedConsumer, SignalKind, Traces, fan_out};
use crate::storage::Store;
use crate::telemetry::{Health, HealthState, Metrics, serve_metrics};

/// A running processor or exporter: its id, the signal it was built for, and its lifecycle.
type Stage = (ComponentId, SignalKind, Arc<dyn Lifecycle>);

/// One pipeline's processors, in data order.
type PipelineProcessors = (String, Vec<Stage>);

/// A built collector, ready to start.
pub struct Service {
    metrics: Arc<Metrics>,
    health: Health,
    metrics_address: String,
    shutdown_timeout: Duration,
    extensions: Vec<(ComponentId, Arc<dyn Lifecycle>)>,
    /// Each exporter once per signal it is used for.
    exporters: Vec<Stage>,
    /// Per pipeline, processors in data order.
    processors: Vec<PipelineProcessors>,
    /// Each pipeline's depth along the connectors (0: no connector feeds it).
    depths: BTreeMap<String, usize>,
    /// Each connector once per pair of signals it is used for.
    connectors: Vec<ConnectorStage>,
    receivers: Vec<(ComponentId, Arc<dyn Lifecycle>)>,
    stop_telemetry: CancellationToken,
}

fn id_of(s: &str) -> ComponentId {
    ComponentId::parse(s).expect("ids were checked when the config was loaded")
}

/// The signal a pipeline id names (`traces`, `logs/2`).
fn signal_of(pipeline: &str) -> SignalKind {
    SignalKind::from_name(&id_of(pipeline).type_name)
        .expect("pipeline ids were checked when the config was loaded")
}

/// A running connector: its id, the pair of signals it was built for, its lifecycle, and the
/// depth of the deepest pipeline that exports to it (it shuts down after that pipeline's
/// processors, before those of the pipelines it feeds).
type ConnectorStage = (
    ComponentId,
    SignalKind,
    SignalKind,
    Arc<dyn Lifecycle>,
    usize,
);

/// A value of one of the signal-generic types below, for one signal; the signal is part of
/// its key wherever it is stored, so downcasts restate what the key says.
type Erased = Box<dyn Any + Send + Sync>;

/// What building needs at every step, and what it has built so far.
struct Builder<'c> {
    config: &'c Config,
    metrics: Arc<Metrics>,
    stores: Arc<BTreeMap<ComponentId, Store>>,
    authenticators: Authenticators,
    /// Pipelines whose processors may refuse instead of holding data back (see
    /// [`Service::build`]).
    answered_pipelines: Vec<String>,
    /// How pipelines feed each other through connectors.
    links: Vec<Link>,
    /// Each pipeline's depth along `links`.
    depths: BTreeMap<String, usize>,
    exporters: Vec<Stage>,
    processors: Vec<PipelineProcessors>,
    connectors: Vec<ConnectorStage>,
    /// Built exporters by id and signal: `Arc<dyn Exporter<S>>`.
    built_exporters: BTreeMap<(ComponentId, SignalKind), Erased>,
    /// Built connectors by id and pair: `Arc<dyn Connector<E>>`.
    built_connectors: BTreeMap<(ComponentId, SignalKind, SignalKind), Erased>,
    /// Each built pipeline's head: `SharedConsumer<S>`.
    pipeline_heads: BTreeMap<String, Erased>,
    /// Per receiver and signal, the heads of the pipelines it feeds: `Vec<SharedConsumer<S>>`.
    receiver_heads: BTreeMap<(ComponentId, SignalKind), Erased>,
    /// What each exporter's instances for different signals share.
    exporter_instances: SharedInstances,
}

impl Builder<'_> {
    fn ctx(&self, id: &ComponentId, pipeline: Option<&str>) -> BuildContext {
        BuildContext {
            id: id.clone(),
            pipeline: pipeline.map(str::to_string),
            metrics: self.metrics.clone(),
            stores: self.stores.clone(),
            authenticators: self.authenticators.clone(),
            acknowledge_when_stored: false,
            shared: SharedInstances::default(),
        }
    }

    /// Exporter `id` for signal `S`: built the first time, then the same instance for every
    /// pipeline of `S` that names it.
    fn exporter<S: Wiring>(&mut self, id: &ComponentId) -> anyhow::Result<SharedConsumer<S>> {
        let key = (id.clone(), S::KIND);
        if let Some(e) = self.built_exporters.get(&key) {
            let e = e
                .downcast_ref::<Arc<dyn Exporter<S>>>()
                .expect("keyed by signal");
            return Ok(e.clone());
        }
        let mut ctx = self.ctx(id, None);
        ctx.shared = self.exporter_instances.clone();
        let exp = S::exporter(self.config.exporters[id].as_ref(), &ctx)
            .with_context(|| format!("exporters.{id}"))?;
        self.exporters.push((id.clone(), S::KIND, exp.clone()));
        self.built_exporters.insert(key, Box::new(exp.clone()));
        Ok(exp)
    }

    /// Connector `id` for the pair `E` → `R`: built the first time a pipeline of `E` names
    /// it, feeding the heads of every pipeline of `R` it is linked to (built already: they
    /// are deeper).
    fn connector<E: Wiring, R: Wiring>(
        &mut self,
        id: &ComponentId,
    ) -> anyhow::Result<SharedConsumer<E>> {
        let key = (id.clone(), E::KIND, R::KIND);
        if let Some(c) = self.built_connectors.get(&key) {
            let c = c
                .downcast_ref::<Arc<dyn Connector<E>>>()
                .expect("keyed by pair");
            return Ok(c.clone());
        }
        let links: Vec<&Link> = self
            .links
            .iter()
            .filter(|l| {
                l.connector == *id && signal_of(&l.from) == E::KIND && signal_of(&l.to) == R::KIND
            })
            .collect();
        let mut targets: Vec<&String> = links.iter().map(|l| &l.to).collect();
        targets.sort();
        targets.dedup();
        let heads: Vec<SharedConsumer<R>> = targets
            .iter()
            .map(|t| {
                self.pipeline_heads[*t]
                    .downcast_ref::<SharedConsumer<R>>()
                    .expect("keyed by pipeline, whose id names its signal")
                    .clone()
            })
            .collect();
        let depth = links
            .iter()
            .map(|l| self.depths[&l.from])
            .max()
            .unwrap_or(0);
        let ctx = self.ctx(id, None);
        let built =
            build_connector::<E, R>(self.config.connectors[id].as_ref(), &ctx, fan_out(heads))
                .with_context(|| format!("connectors.{id} ({} to {})", E::KIND, R::KIND))?;
        self.connectors
            .push((id.clone(), E::KIND, R::KIND, built.clone(), depth));
        self.built_connectors.insert(key, Box::new(built.clone()));
        Ok(built)
    }

    /// Builds pipeline `pname` of signal `S`: what it exports to (exporters, and connectors
    /// once per signal of the pipelines they link it to), then its processors from last to
    /// first; records its head for its receivers and for connectors that feed it.
    fn pipeline<S: Wiring>(&mut self, pname: &str) -> anyhow::Result<()> {
        let config = self.config;
        let p = &config.service.pipelines[pname];
        let mut consumers: Vec<SharedConsumer<S>> = Vec::new();
        for name in &p.exporters {
            let id = id_of(name);
            if !config.connectors.contains_key(&id) {
                consumers.push(self.exporter::<S>(&id)?);
                continue;
            }
            for to in SignalKind::ALL {
                let linked = self
                    .links
                    .iter()
                    .any(|l| l.from == pname && l.connector == id && signal_of(&l.to) == to);
                if !linked {
                    continue;
                }
                consumers.push(match to {
                    SignalKind::Traces => self.connector::<S, Traces>(&id)?,
                    SignalKind::Logs => self.connector::<S, Logs>(&id)?,
                    SignalKind::Metrics => self.connector::<S, pipeline::Metrics>(&id)?,
                });
            }
        }
        let mut next: SharedConsumer<S> = fan_out(consumers);
        let mut built: Vec<Stage> = Vec::new();
        for name in p.processors.iter().rev() {
            let id = id_of(name);
            let mut pctx = self.ctx(&id, Some(pname));
            pctx.acknowledge_when_stored = self.answered_pipelines.iter().any(|a| a == pname);
            let proc = S::processor(config.processors[&id].as_ref(), &pctx, next)
                .with_context(|| format!("processors.{id} (pipeline {pname})"))?;
            next = proc.clone();
            built.push((id, S::KIND, proc));
        }
        built.reverse();
        self.processors.push((pname.to_string(), built));
        self.pipeline_heads
            .insert(pname.to_string(), Box::new(next.clone()));
        for r in &p.receivers {
            let id = id_of(r);
            if config.connectors.contains_key(&id) {
                continue;
            }
            self.receiver_heads
                .entry((id, S::KIND))
                .or_insert_with(|| Box::new(Vec::<SharedConsumer<S>>::new()))
                .downcast_mut::<Vec<SharedConsumer<S>>>()
                .expect("keyed by signal")
                .push(next.clone());
        }
        Ok(())
    }

    /// Each receiver's slot for signal `S`: the pipelines of `S` it feeds, fanned out.
    fn receiver_slots<S: Wiring>(&mut self, heads: &mut BTreeMap<ComponentId, Consumers>) {
        for ((receiver, signal), consumers) in &mut self.receiver_heads {
            if *signal != S::KIND {
                continue;
            }
            let consumers = std::mem::take(
                consumers
                    .downcast_mut::<Vec<SharedConsumer<S>>>()
                    .expect("keyed by signal"),
            );
            *S::slot(heads.entry(receiver.clone()).or_default()) = Some(fan_out(consumers));
        }
    }
}

impl Service {
    /// Builds every component that a pipeline uses.
    pub fn build(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let health = Health::default();
        let pipelines = &config.service.pipelines;
        let stores: Arc<BTreeMap<ComponentId, Store>> = Arc::new(
            config
                .service
                .extensions
                .iter()
                .map(|name| id_of(name))
                .filter_map(|id| Some((id.clone(), config.extensions[&id].store()?)))
                .collect(),
        );
        let links = config
            .service
            .links(&|id| config.connectors.get(id).map(|c| c.pairs()));
        let depths = crate::config::service_depths(pipelines.keys(), &links);
        let mut builder = Builder {
            config,
            metrics,
            stores,
            authenticators: Authenticators::default(),
            answered_pipelines: Vec::new(),
            links,
            depths,
            exporters: Vec::new(),
            processors: Vec::new(),
            connectors: Vec::new(),
            built_exporters: BTreeMap::new(),
            built_connectors: BTreeMap::new(),
            pipeline_heads: BTreeMap::new(),
            receiver_heads: BTreeMap::new(),
            exporter_instances: SharedInstances::default(),
        };
        let mut authenticators = BTreeMap::new();
        for name in &config.service.extensions {
            let id = id_of(name);
            if let Some(a) = config.extensions[&id]
                .authenticator(&builder.ctx(&id, None))
                .with_context(|| format!("extensions.{id}"))?
            {
                authenticators.insert(id, a);
            }
        }
        builder.authenticators = Arc::new(authenticators);

        // Pipelines whose every exporter keeps its queue on disk: their receivers answer once
        // the data is stored, so what a client was told is accepted survives a crash.
        let mut stored_pipelines: Vec<&String> = Vec::new();
        for (name, p) in pipelines {
            // A connector keeps nothing on disk.
            if !p.exporters.iter().all(|e| {
                config
                    .exporters
                    .get(&id_of(e))
                    .is_some_and(|e| e.storage().is_some())
            }) {
                continue;
            }
            let early: Vec<&String> = p
                .processors
                .iter()
                .filter(|n| !config.processors[&id_of(n)].passes_acknowledgement_on())
                .collect();
            if early.is_empty() {
                tracing::info!(
                    pipeline = %name,
                    "every exporter keeps its queue on disk: clients are answered once their data is stored"
                );
                stored_pipelines.push(name);
            } else {
                tracing::warn!(
                    pipeline = %name,
                    processors = ?early,
                    "every exporter keeps its queue on disk, but these processors count data as delivered once they buffer it: what they hold is lost if the process is killed"
                );
            }
        }

        // A receiver answers on store when every pipeline it feeds is stored; the processors
        // of a pipeline whose every receiver does may refuse instead of holding data back. A
        // connector answers once it has the data.
        let answers_on_store = |receiver: &ComponentId| {
            !config.connectors.contains_key(receiver)
                && pipelines
                    .iter()
                    .filter(|(_, p)| p.receivers.iter().any(|r| id_of(r) == *receiver))
                    .all(|(name, _)| stored_pipelines.contains(&name))
        };
        builder.answered_pipelines = stored_pipelines
            .iter()
            .copied()
            .filter(|name| {
                pipelines[*name]
                    .receivers
                    .iter()
                    .all(|r| answers_on_store(&id_of(r)))
            })
            .cloned()
            .collect();

        // Deepest first: the pipelines a connector feeds are built before those that feed it.
        let mut order: Vec<&String> = pipelines.keys().collect();
        order.sort_by_key(|p| std::cmp::Reverse(builder.depths[*p]));
        for pname in order {
            match signal_of(pname) {
                SignalKind::Traces => builder.pipeline::<Traces>(pname)?,
                SignalKind::Logs => builder.pipeline::<Logs>(pname)?,
                SignalKind::Metrics => builder.pipeline::<pipeline::Metrics>(pname)?,
            }
        }
        let mut heads = BTreeMap::new();
        builder.receiver_slots::<Traces>(&mut heads);
        builder.receiver_slots::<Logs>(&mut heads);
        builder.receiver_slots::<pipeline::Metrics>(&mut heads);

        let mut receivers = Vec::new();
        for (id, next) in heads {
            let mut rctx = builder.ctx(&id, None);
            rctx.acknowledge_when_stored = answers_on_store(&id);
            let rec = config.receivers[&id]
                .build(&rctx, next)
                .with_context(|| format!("receivers.{id}"))?;
            receivers.push((id, rec));
        }

        let mut extensions = Vec::new();
        for name in &config.service.extensions {
            let id = id_of(name);
            let ext = config.extensions[&id]
                .build(&builder.ctx(&id, None), health.clone())
                .with_context(|| format!("extensions.{id}"))?;
            extensions.push((id, ext));
        }

        Ok(Self {
            metrics: builder.metrics,
            health,
            metrics_address: config.service.telemetry.metrics.address.clone(),
            shutdown_timeout: config.service.shutdown_timeout.get(),
            extensions,
            exporters: builder.exporters,
            processors: builder.processors,
            depths: builder.depths,
            connectors: builder.connectors,
            receivers,
            stop_telemetry: CancellationToken::new(),
        })
    }

    /// The health state shared with the health check.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Starts extensions, the metrics endpoint, exporters, processors, connectors, then
    /// receivers.
    pub async fn start(&self) -> anyhow::Result<()> {
        for (id, e) in &self.extensions {
            e.start()
                .await
                .with_context(|| format!("extensions.{id}"))?;
        }
        if self.metrics_address != "none" {
            serve_metrics(
                &self.metrics_address,
                self.metrics.clone(),
                self.stop_telemetry.clone(),
            )
            .await?;
            tracing::info!(address = %self.metrics_address, "metrics served at /metrics");
        }
        for (id, _, e) in &self.exporters {
            e.start().await.with_context(|| format!("exporters.{id}"))?;
        }
        for (pname, procs) in &self.processors {
            for (id, _, p) in procs {
                p.start()
                    .await
                    .with_context(|| format!("processors.{id} (pipeline {pname})"))?;
            }
        }
        for (id, from, to, c, _) in &self.connectors {
            c.start()
                .await
                .with_context(|| format!("connectors.{id} ({from} to {to})"))?;
        }
        for (id, r) in &self.receivers {
            r.start().await.with_context(|| format!("receivers.{id}"))?;
        }
        self.health.set(HealthState::Ready);
        Ok(())
    }

    /// Drains the collector within `service.shutdown_timeout`; returns false if some stage
    /// had to be cut short. In order:
    /// 1. health turns not-ready, so load balancers stop sending here;
    /// 2. receivers stop: listeners close, requests in progress get
    ///    [`crate::serve::IN_FLIGHT_GRACE`] to be answered, then their connections are cut;
    /// 3. each pipeline's processors shut down in data order (a batch processor flushes to
    ///    the next stage), pipelines side by side; with connectors, level by level: first the
    ///    pipelines no connector feeds, then the connectors they export to (which send what
    ///    they hold on), then the pipelines those feed, and so on;
    /// 4. exporters drain their queues, side by side;
    /// 5. extensions stop and the metrics endpoint closes.
    ///
    /// Each stage gets its share of the time that remains (what is left divided by the
    /// stages still to run, this one included), so a stuck receiver or processor cannot eat
    /// the time the exporters need; time a stage does not use passes on to the next ones,
    /// and the exporters get all that is left.
    pub async fn shutdown(&self) -> bool {
        let deadline = Instant::now() + self.shutdown_timeout;
        self.health.set(HealthState::Stopping);
        let depth_of = |pname: &str| self.depths.get(pname).copied().unwrap_or(0);
        let levels = self
            .processors
            .iter()
            .map(|(p, _)| depth_of(p))
            .chain(self.connectors.iter().map(|c| c.4))
            .max()
            .unwrap_or(0)
            + 1;
        // Per level: the longest pipeline's processors, plus one stage if connectors end it.
        let stages: Vec<usize> = (0..levels)
            .map(|d| {
                let procs = self
                    .processors
                    .iter()
                    .filter(|(p, _)| depth_of(p) == d)
                    .map(|(_, procs)| procs.len())
                    .max()
                    .unwrap_or(0);
                procs + usize::from(self.connectors.iter().any(|c| c.4 == d))
            })
            .collect();
        // Stages after level d: the later levels' and the exporters'.
        let after = |d: usize| stages[d + 1..].iter().sum::<usize>() + 1;

        let budget = share(deadline, stages.iter().sum::<usize>() + 2);
        let receivers = futures::future::join_all(
            self.receivers
                .iter()
                .map(|(id, r)| bounded(format!("receivers.{id}"), budget, r.shutdown())),
        );
        let mut completed = receivers.await.into_iter().all(|done| done);

        for d in 0..levels {
            let ends_with_connectors = usize::from(self.connectors.iter().any(|c| c.4 == d));
            let pipelines = futures::future::join_all(
                self.processors
                    .iter()
                    .filter(|(p, _)| depth_of(p) == d)
                    .map(|(pname, procs)| async move {
                        let mut done = true;
                        for (i, (id, _, p)) in procs.iter().enumerate() {
                            // This processor, the ones after it, then what follows.
                            let budget =
                                share(deadline, procs.len() - i + ends_with_connectors + after(d));
                            let what = format!("processors.{id} (pipeline {pname})");
                            done &= bounded(what, budget, p.shutdown()).await;
                        }
                        done
                    }),
            );
            completed &= pipelines.await.into_iter().all(|done| done);
            let budget = share(deadline, 1 + after(d));
            let connectors =
                futures::future::join_all(self.connectors.iter().filter(|c| c.4 == d).map(
                    |(id, from, to, c, _)| {
                        bounded(
                            format!("connectors.{id} ({from} to {to})"),
                            budget,
                            c.shutdown(),
                        )
                    },
                ));
            completed &= connectors.await.into_iter().all(|done| done);
        }

        let budget = share(deadline, 1);
        let exporters = futures::future::join_all(self.exporters.iter().map(|(id, signal, e)| {
            bounded(format!("exporters.{id} ({signal})"), budget, e.shutdown())
        }));
        completed &= exporters.await.into_iter().all(|done| done);
        if !completed {
            tracing::warn!(
                timeout = ?self.shutdown_timeout,
                "shutdown cut short: data the stages named above still held was not delivered"
            );
        }

        // Extensions outlive the drain (exporters may use them); they get what is left, and
        // at least the grace a server needs to answer its last requests.
        let budget = share(deadline, 1).max(crate::serve::IN_FLIGHT_GRACE);
        futures::future::join_all(
            self.extensions
                .iter()
                .map(|(id, e)| bounded(format!("extensions.{id}"), budget, e.shutdown())),
        )
        .await;
        self.stop_telemetry.cancel();
        completed
    }
}

/// An equal share, among `stages` stages, of the time left until `deadline`.
fn share(deadline: Instant, stages: usize) -> Duration {
    deadline.saturating_duration_since(Instant::now()) / stages.max(1) as u32
}

/// Runs one component's shutdown for at most `budget`; false (and a warning naming the
/// component) if it did not finish. What it left undone is abandoned, not waited for.
async fn bounded(what: String, budget: Duration, shutdown: impl Future<Output = ()>) -> bool {
    let started = Instant::now();
    if tokio::time::timeout(budget, shutdown).await.is_ok() {
        tracing::debug!(component = %what, took = ?started.elapsed(), "stopped");
        return true;
    }
    tracing::warn!(
        component = %what,
        budget = ?budget,
        "did not finish shutting down within its share of service.shutdown_timeout; moving on"
    );
    false
}

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The drain finished, or `service.shutdown_timeout` ran out (exit status 0).
    Drained,
    /// A second SIGTERM or SIGINT during the drain: the process exits at once, with status
    /// 128 + this signal number, as a shell reports a process killed by it.
    Forced(i32),
}

/// Runs the collector described by `config` until SIGTERM or SIGINT, then drains (see
/// [`Service::shutdown`]) and returns. A second SIGTERM or SIGINT during the drain returns at
/// once ([`Stopped::Forced`]). SIGHUP is logged and ignored from the moment this is called,
/// for the rest of the process's life.
pub async fn run(config: Config) -> anyhow::Result<Stopped> {
    // Before building anything: plugins may take seconds to compile, and a SIGHUP or SIGTERM
    // in that time must not get the default action (death).
    let mut signals = Signals::install()?;
    let metrics = Arc::new(Metrics::new());
    let service = Service::build(&config, metrics)?;
    if let Err(e) = service.start().await {
        service.shutdown().await;
        return Err(e);
    }
    let pipelines: Vec<_> = config.service.pipelines.keys().cloned().collect();
    tracing::info!(?pipelines, "collector started");
    let first = signals.stop().await;
    tracing::info!(
        signal = first.name,
        timeout = ?service.shutdown_timeout,
        "shutting down: draining in-flight data (send SIGTERM or SIGINT again to exit at once)"
    );
    tokio::select! {
        _ = service.shutdown() => {}
        second = signals.stop() => {
            tracing::error!(
                signal = second.name,
                "second stop signal during the drain: exiting at once; data not yet delivered is lost"
            );
            return Ok(Stopped::Forced(second.number));
        }
    }
    tracing::info!("stopped");
    Ok(Stopped::Drained)
}

/// A stop signal's name and number.
#[derive(Debug, Clone, Copy)]
struct StopSignal {
    name: &'static str,
    number: i32,
}

const SIGTERM: StopSignal = StopSignal {
    name: "SIGTERM",
    number: 15,
};
const SIGINT: StopSignal = StopSignal {
    name: "SIGINT",
    number: 2,
};

/// The process's signal handlers: SIGTERM and SIGINT stop it, SIGHUP is ignored.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers. Installing one replaces the signal's default action for the
    /// rest of the process's life, so SIGHUP never kills it, even after the logging task
    /// ends with the runtime.
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::warn!("config reload is not supported yet; ignoring SIGHUP");
            }
        });
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT.
    async fn stop(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.term.recv() => SIGTERM,
            _ = self.int.recv() => SIGINT,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::pipeline::{ConsumeError, Consumer, TraceBatch, Traces};

    type Log = Arc<Mutex<Vec<(String, Duration)>>>;

    /// A component whose shutdown takes `takes` (`None`: never ends) and then records its
    /// name and when it finished.
    struct Fake {
        name: &'static str,
        takes: Option<Duration>,
        t0: Instant,
        log: Log,
    }

    #[async_trait]
    impl Lifecycle for Fake {
        async fn shutdown(&self) {
            match self.takes {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
            let at = self.t0.elapsed();
            self.log.lock().unwrap().push((self.name.into(), at));
        }
    }

    #[async_trait]
    impl Consumer<Traces> for Fake {
        async fn consume(&self, _: TraceBatch) -> Result<(), ConsumeError> {
            Ok(())
        }
    }

    fn fake(name: &'static str, takes: Option<Duration>, t0: Instant, log: &Log) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            takes,
            t0,
            log: log.clone(),
        })
    }

    fn id(s: &str) -> ComponentId {
        ComponentId::parse(s).unwrap()
    }

    const TRACES: SignalKind = SignalKind::Traces;

    /// receivers `r`, one pipeline with processors `p1`, `p2`, exporters `e1`, `e2`.
    fn service(timeout: Duration, takes: &[Option<Duration>; 5], log: &Log) -> Service {
        let t0 = Instant::now();
        let [r, p1, p2, e1, e2] = takes;
        Service {
            metrics: Arc::new(Metrics::new()),
            health: Health::default(),
            metrics_address: "none".into(),
            shutdown_timeout: timeout,
            extensions: Vec::new(),
            exporters: vec![
                (
                    id("e1"),
                    TRACES,
                    fake("e1", *e1, t0, log) as Arc<dyn Lifecycle>,
                ),
                (
                    id("e2"),
                    TRACES,
                    fake("e2", *e2, t0, log) as Arc<dyn Lifecycle>,
                ),
            ],
            processors: vec![(
                "traces".into(),
                vec![
                    (
                        id("p1"),
                        TRACES,
                        fake("p1", *p1, t0, log) as Arc<dyn Lifecycle>,
                    ),
                    (
                        id("p2"),
                        TRACES,
                        fake("p2", *p2, t0, log) as Arc<dyn Lifecycle>,
                    ),
                ],
            )],
            depths: BTreeMap::new(),
            connectors: Vec::new(),
            receivers: vec![(id("r"), fake("r", *r, t0, log) as Arc<dyn Lifecycle>)],
            stop_telemetry: CancellationToken::new(),
        }
    }

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[tokio::test(start_paused = true)]
    async fn stages_stop_in_data_order() {
        let log = Log::default();
        let s = service(
            Duration::from_secs(5),
            &[ms(10), ms(10), ms(10), ms(10), ms(30)],
            &log,
        );
        s.health.set(HealthState::Ready);
        assert!(s.shutdown().await);
        assert_eq!(s.health.get(), HealthState::Stopping);
        let order: Vec<_> = log.lock().unwrap().iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(order, ["r", "p1", "p2", "e1", "e2"]);
        // Exporters drain side by side: e2 ends 30 ms after the processors, not 40.
        assert_eq!(log.lock().unwrap()[4].1, Duration::from_millis(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connector_drains_between_the_pipelines_it_joins() {
        // traces [p1] → connector c → metrics [p2] → exporters: c stops after p1 (which
        // flushes into it) and before p2 (which it flushes into).
        let log = Log::default();
        let t0 = Instant::now();
        let mut s = service(
            Duration::from_secs(5),
            &[ms(10), ms(10), ms(10), ms(10), ms(10)],
            &log,
        );
        let p2 = s.processors[0].1.pop().unwrap();
        s.processors.push(("metrics".into(), vec![p2]));
        s.depths.insert("metrics".into(), 1);
        s.connectors.push((
            id("c"),
            TRACES,
            SignalKind::Metrics,
            fake("c", ms(10), t0, &log) as Arc<dyn Lifecycle>,
            0,
        ));
        assert!(s.shutdown().await);
        let order: Vec<_> = log.lock().unwrap().iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(order, ["r", "p1", "c", "p2", "e1", "e2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn stuck_stages_leave_the_exporters_their_share() {
        let log = Log::default();
        // 8 s over four stages: the stuck receiver and first processor get 2 s each, the
        // second processor (quick) 2 s, the exporters what is left: about 4 s.
        let s = service(
            Duration::from_secs(8),
            &[None, None, ms(10), ms(3500), ms(100)],
            &log,
        );
        let t0 = Instant::now();
        assert!(!s.shutdown().await, "stuck stages were not reported");
        assert!(t0.elapsed() <= Duration::from_secs(8), "{:?}", t0.elapsed());
        let done: Vec<_> = log.lock().unwrap().iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(done, ["p2", "e2", "e1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exporter_that_never_ends_is_cut_at_the_timeout() {
        let log = Log::default();
        let s = service(
            Duration::from_secs(3),
            &[ms(10), ms(10), ms(10), None, ms(10)],
            &log,
        );
        let t0 = Instant::now();
        assert!(!s.shutdown().await);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_millis(3100),
            "{took:?}"
        );
    }
}
