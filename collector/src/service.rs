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
//!
//! A reload ([`Service::reload`]) builds the new configuration the same way, but every part
//! whose key (its resolved configuration, and the keys of what it feeds) is unchanged is taken
//! over as it runs instead of being built again; see [`Service::reload`] for the order of the
//! swap.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Authenticators};
use crate::component::{
    BuildContext, ComponentId, Connector, Consumers, Exporter, Lifecycle, SharedInstances, Wiring,
    build_connector,
};
use crate::config::{Config, Link};
use crate::pipeline::{self, Logs, SharedConsumer, SignalKind, Traces, fan_out};
use crate::reload::{Sources, Switches, Trigger};
use crate::storage::Store;
use crate::telemetry::{Health, HealthState, Metrics, serve_metrics};

/// A running processor or exporter: its id, the signal it was built for, and its lifecycle.
type Stage = (ComponentId, SignalKind, Arc<dyn Lifecycle>);

/// One pipeline's processors, in data order.
type PipelineProcessors = (String, Vec<Stage>);

/// The stages a drain stops, in its order (see [`Stages::drain`]).
#[derive(Default)]
struct Stages {
    /// Each exporter once per signal it is used for.
    exporters: Vec<Stage>,
    /// Per pipeline, processors in data order.
    processors: Vec<PipelineProcessors>,
    /// Each pipeline's depth along the connectors (0: no connector feeds it).
    depths: BTreeMap<String, usize>,
    /// Each connector once per pair of signals it is used for.
    connectors: Vec<ConnectorStage>,
    receivers: Vec<(ComponentId, Arc<dyn Lifecycle>)>,
}

/// A built collector, ready to start.
pub struct Service {
    metrics: Arc<Metrics>,
    health: Health,
    metrics_address: String,
    shutdown_timeout: Duration,
    extensions: Vec<(ComponentId, Arc<dyn Lifecycle>)>,
    stages: Stages,
    stop_telemetry: CancellationToken,
    /// Every part built, with the key it was built from, for a reload to take over.
    built: Built,
    /// Kept receivers and the pipelines a reload points them at (empty once running).
    repoint: Vec<(Switches, Consumers)>,
    /// Hash of the resolved configuration.
    hash: String,
    /// `service.telemetry` as resolved: a reload does not apply it.
    telemetry: String,
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

/// [`Erased`], shared.
type SharedErased = Arc<dyn Any + Send + Sync>;

/// Every part of a running collector with the key it was built from: a reload takes over a
/// part whose key is unchanged. A key holds the part's resolved configuration and the keys of
/// the parts it feeds, so a pipeline is kept only if its exporters are.
#[derive(Default)]
struct Built {
    /// By id and signal: key, `Arc<dyn Exporter<S>>`.
    exporters: BTreeMap<(ComponentId, SignalKind), (String, SharedErased)>,
    /// By id and pair: key, `Arc<dyn Connector<E>>`.
    connectors: BTreeMap<(ComponentId, SignalKind, SignalKind), (String, SharedErased)>,
    /// By pipeline: key, head (`SharedConsumer<S>`), processors.
    pipelines: BTreeMap<String, (String, SharedErased, Vec<Stage>)>,
    /// By id: key, the receiver, its switches.
    receivers: BTreeMap<ComponentId, (String, Arc<dyn Lifecycle>, Switches)>,
    /// By id: key, the extension, its authenticator.
    extensions: BTreeMap<ComponentId, BuiltExtension>,
}

/// A built extension: its key, the extension, the authenticator it offers.
type BuiltExtension = (String, Arc<dyn Lifecycle>, Option<Authenticator>);

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
    /// What the running collector built, when this builds a reload's configuration.
    previous: Option<&'c Built>,
    /// The reload's configuration, for the exporters built when they start.
    shared_config: Option<Arc<Config>>,
    /// What this builds (or takes over), with keys.
    built: Built,
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

    /// `section.id`'s resolved configuration, as text.
    fn value(&self, section: &str, id: &ComponentId) -> String {
        self.config.resolved.component(section, &id.to_string())
    }

    /// The resolved configurations of the extensions named `names`, as text.
    fn extension_values(&self, names: impl IntoIterator<Item = String>) -> String {
        let names: BTreeSet<String> = names.into_iter().collect();
        names
            .iter()
            .map(|n| format!("{n}={}", self.config.resolved.component("extensions", n)))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Exporter `id`'s key: its configuration, every signal it is used for (its instances
    /// share state), and the extensions it uses.
    fn exporter_key(&self, id: &ComponentId) -> String {
        let name = id.to_string();
        let signals: BTreeSet<SignalKind> = self
            .config
            .service
            .pipelines
            .iter()
            .filter(|(_, p)| p.exporters.contains(&name))
            .map(|(pname, _)| signal_of(pname))
            .collect();
        let config = &self.config.exporters[id];
        let extensions = config
            .storage()
            .map(|s| s.to_string())
            .into_iter()
            .chain(config.authenticators().into_iter().map(|(_, a)| a));
        format!(
            "exporter {id} {signals:?} [{}] {}",
            self.extension_values(extensions),
            self.value("exporters", id)
        )
    }

    /// Exporter `id` for signal `S`: built the first time (or taken over from the running
    /// collector when its key is unchanged), then the same instance for every pipeline of `S`
    /// that names it.
    fn exporter<S: Wiring>(&mut self, id: &ComponentId) -> anyhow::Result<SharedConsumer<S>> {
        let key = (id.clone(), S::KIND);
        if let Some(e) = self.built_exporters.get(&key) {
            let e = e
                .downcast_ref::<Arc<dyn Exporter<S>>>()
                .expect("keyed by signal");
            return Ok(e.clone());
        }
        let text = self.exporter_key(id);
        let running = self
            .previous
            .and_then(|p| p.exporters.get(&key))
            .filter(|(k, _)| *k == text)
            .map(|(_, e)| {
                e.downcast_ref::<Arc<dyn Exporter<S>>>()
                    .expect("keyed by signal")
                    .clone()
            });
        // One running under this id that is not taken over: built once it has drained.
        let replaces = self
            .previous
            .is_some_and(|p| p.exporters.keys().any(|(running, _)| running == id));
        let mut ctx = self.ctx(id, None);
        ctx.shared = self.exporter_instances.clone();
        let exp = match (running, &self.shared_config) {
            (Some(e), _) => e,
            (None, Some(config)) if replaces => {
                let (config, id) = (config.clone(), id.clone());
                crate::reload::Deferred::<S>::new(
                    id.clone(),
                    Box::new(move || {
                        S::exporter(config.exporters[&id].as_ref(), &ctx)
                            .with_context(|| format!("exporters.{id}"))
                    }),
                )
            }
            (None, _) => S::exporter(self.config.exporters[id].as_ref(), &ctx)
                .with_context(|| format!("exporters.{id}"))?,
        };
        self.exporters.push((id.clone(), S::KIND, exp.clone()));
        self.built_exporters
            .insert(key.clone(), Box::new(exp.clone()));
        self.built
            .exporters
            .insert(key, (text, Arc::new(exp.clone())));
        Ok(exp)
    }

    /// Connector `id` for the pair `E` → `R`: built the first time a pipeline of `E` names
    /// it, feeding the heads of every pipeline of `R` it is linked to (built already: they
    /// are deeper). Taken over from the running collector when its configuration and the
    /// pipelines it feeds are unchanged.
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
        let depth = links
            .iter()
            .map(|l| self.depths[&l.from])
            .max()
            .unwrap_or(0);
        let text = format!(
            "connector {id} {} {} {} [{}]",
            E::KIND,
            R::KIND,
            self.value("connectors", id),
            targets
                .iter()
                .map(|t| self.built.pipelines[*t].0.as_str())
                .collect::<Vec<_>>()
                .join("|")
        );
        let running = self
            .previous
            .and_then(|p| p.connectors.get(&key))
            .filter(|(k, _)| *k == text)
            .map(|(_, c)| {
                c.downcast_ref::<Arc<dyn Connector<E>>>()
                    .expect("keyed by pair")
                    .clone()
            });
        let built = match running {
            Some(c) => c,
            None => {
                let heads: Vec<SharedConsumer<R>> = targets
                    .iter()
                    .map(|t| {
                        self.pipeline_heads[*t]
                            .downcast_ref::<SharedConsumer<R>>()
                            .expect("keyed by pipeline, whose id names its signal")
                            .clone()
                    })
                    .collect();
                let ctx = self.ctx(id, None);
                build_connector::<E, R>(self.config.connectors[id].as_ref(), &ctx, fan_out(heads))
                    .with_context(|| format!("connectors.{id} ({} to {})", E::KIND, R::KIND))?
            }
        };
        self.connectors
            .push((id.clone(), E::KIND, R::KIND, built.clone(), depth));
        self.built_connectors
            .insert(key.clone(), Box::new(built.clone()));
        self.built
            .connectors
            .insert(key, (text, Arc::new(built.clone())));
        Ok(built)
    }

    /// Builds pipeline `pname` of signal `S`: what it exports to (exporters, and connectors
    /// once per signal of the pipelines they link it to), then its processors from last to
    /// first; records its head for its receivers and for connectors that feed it. Its
    /// processors are taken over from the running collector when their configurations, their
    /// order and what they export to are unchanged.
    fn pipeline<S: Wiring>(&mut self, pname: &str) -> anyhow::Result<()> {
        let config = self.config;
        let p = &config.service.pipelines[pname];
        let mut consumers: Vec<SharedConsumer<S>> = Vec::new();
        let mut consumer_keys: Vec<String> = Vec::new();
        for name in &p.exporters {
            let id = id_of(name);
            if !config.connectors.contains_key(&id) {
                consumers.push(self.exporter::<S>(&id)?);
                consumer_keys.push(self.built.exporters[&(id, S::KIND)].0.clone());
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
                consumer_keys.push(self.built.connectors[&(id.clone(), S::KIND, to)].0.clone());
            }
        }
        let answered = self.answered_pipelines.iter().any(|a| a == pname);
        let text = format!(
            "pipeline {pname} answered={answered} [{}] -> [{}]",
            p.processors
                .iter()
                .map(|n| format!("{n}={}", self.value("processors", &id_of(n))))
                .collect::<Vec<_>>()
                .join("|"),
            consumer_keys.join("|")
        );
        let running = self
            .previous
            .and_then(|prev| prev.pipelines.get(pname))
            .filter(|(k, _, _)| *k == text);
        let (next, built) = match running {
            Some((_, head, procs)) => (
                head.downcast_ref::<SharedConsumer<S>>()
                    .expect("keyed by pipeline, whose id names its signal")
                    .clone(),
                procs.clone(),
            ),
            None => {
                let mut next: SharedConsumer<S> = fan_out(consumers);
                let mut built: Vec<Stage> = Vec::new();
                for name in p.processors.iter().rev() {
                    let id = id_of(name);
                    let mut pctx = self.ctx(&id, Some(pname));
                    pctx.acknowledge_when_stored = answered;
                    let proc = S::processor(config.processors[&id].as_ref(), &pctx, next)
                        .with_context(|| format!("processors.{id} (pipeline {pname})"))?;
                    next = proc.clone();
                    built.push((id, S::KIND, proc));
                }
                built.reverse();
                (next, built)
            }
        };
        self.processors.push((pname.to_string(), built.clone()));
        self.pipeline_heads
            .insert(pname.to_string(), Box::new(next.clone()));
        self.built
            .pipelines
            .insert(pname.to_string(), (text, Arc::new(next.clone()), built));
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

/// The address of what an `Arc` points to, to tell a part taken over from one built anew.
fn addr<T: ?Sized>(a: &Arc<T>) -> usize {
    Arc::as_ptr(a) as *const () as usize
}

impl Service {
    /// Builds every component that a pipeline uses.
    pub fn build(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        Self::build_over(config, metrics, Health::default(), None, None)
    }

    /// Builds every component that a pipeline uses, taking over from `previous` (a running
    /// collector's parts) each one whose key is unchanged. An exporter that replaces a running
    /// one of its id is built from `shared_config` when it starts.
    fn build_over(
        config: &Config,
        metrics: Arc<Metrics>,
        health: Health,
        previous: Option<&Built>,
        shared_config: Option<Arc<Config>>,
    ) -> anyhow::Result<Self> {
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
            previous,
            shared_config,
            built: Built::default(),
        };
        // Extensions: taken over when their configuration is unchanged, with the
        // authenticator they offer; built otherwise.
        let mut authenticators = BTreeMap::new();
        let mut extensions = Vec::new();
        for name in &config.service.extensions {
            let id = id_of(name);
            let text = format!("extension {id} {}", builder.value("extensions", &id));
            let running = previous
                .and_then(|p| p.extensions.get(&id))
                .filter(|(k, _, _)| *k == text);
            let (ext, auth) = match running {
                Some((_, ext, auth)) => (ext.clone(), auth.clone()),
                None => {
                    let ctx = builder.ctx(&id, None);
                    let auth = config.extensions[&id]
                        .authenticator(&ctx)
                        .with_context(|| format!("extensions.{id}"))?;
                    let ext = config.extensions[&id]
                        .build(&ctx, health.clone())
                        .with_context(|| format!("extensions.{id}"))?;
                    (ext, auth)
                }
            };
            if let Some(a) = &auth {
                authenticators.insert(id.clone(), a.clone());
            }
            builder
                .built
                .extensions
                .insert(id.clone(), (text, ext.clone(), auth));
            extensions.push((id, ext));
        }
        builder.authenticators = Arc::new(authenticators);

        // Pipelines whose data is stored before it counts as delivered: every exporter keeps
        // its queue on disk, or is a connector that passes acknowledgement on (`forward`) to
        // pipelines that are stored in turn; and no processor counts data delivered early.
        // Their receivers answer once the data is stored, so what a client was told is
        // accepted survives a crash. Connectors do not loop, so this settles.
        let on_disk = |id: &ComponentId| {
            config
                .exporters
                .get(id)
                .is_some_and(|e| e.storage().is_some())
        };
        let passes_on = |id: &ComponentId| {
            config
                .connectors
                .get(id)
                .is_some_and(|c| c.passes_acknowledgement_on())
        };
        let fed_by = |connector: &ComponentId| -> Vec<&String> {
            pipelines
                .iter()
                .filter(|(_, q)| q.receivers.iter().any(|r| id_of(r) == *connector))
                .map(|(n, _)| n)
                .collect()
        };
        let feeding = |connector: &ComponentId| -> Vec<&String> {
            pipelines
                .iter()
                .filter(|(_, q)| q.exporters.iter().any(|e| id_of(e) == *connector))
                .map(|(n, _)| n)
                .collect()
        };
        let early = |p: &crate::config::PipelineConfig| -> Vec<String> {
            p.processors
                .iter()
                .filter(|n| !config.processors[&id_of(n)].passes_acknowledgement_on())
                .cloned()
                .collect()
        };
        let exporters_store = |p: &crate::config::PipelineConfig, stored: &[&String]| {
            p.exporters.iter().all(|e| {
                let id = id_of(e);
                on_disk(&id)
                    || (passes_on(&id) && {
                        let fed = fed_by(&id);
                        !fed.is_empty() && fed.iter().all(|q| stored.contains(q))
                    })
            })
        };
        let mut stored_pipelines: Vec<&String> = Vec::new();
        loop {
            let before = stored_pipelines.len();
            for (name, p) in pipelines {
                if !stored_pipelines.contains(&name)
                    && early(p).is_empty()
                    && exporters_store(p, &stored_pipelines)
                {
                    stored_pipelines.push(name);
                }
            }
            if stored_pipelines.len() == before {
                break;
            }
        }
        for (name, p) in pipelines {
            if stored_pipelines.contains(&name) {
                tracing::info!(
                    pipeline = %name,
                    "every exporter keeps its queue on disk: clients are answered once their data is stored"
                );
            } else if exporters_store(p, &stored_pipelines) {
                tracing::warn!(
                    pipeline = %name,
                    processors = ?early(p),
                    "every exporter keeps its queue on disk, but these processors count data as delivered once they buffer it: what they hold is lost if the process is killed"
                );
            }
        }

        // Pipelines exporting to connectors whose data reaches an exporter that keeps its queue
        // on disk: a connector that does not pass acknowledgement on counts data as delivered
        // once it has taken it in, so those pipelines are not stored (the loop above passed
        // over them), and the operator, who asked for a queue on disk, is told why.
        for (name, p) in pipelines {
            let connectors: Vec<&String> = p
                .exporters
                .iter()
                .filter(|e| config.connectors.contains_key(&id_of(e)) && !passes_on(&id_of(e)))
                .collect();
            if connectors.is_empty() {
                continue;
            }
            // The pipelines the data reaches through connectors (they do not loop).
            let mut todo = vec![name];
            let mut seen = BTreeSet::new();
            let mut stored = false;
            while let Some(q) = todo.pop() {
                if !seen.insert(q) {
                    continue;
                }
                for e in &pipelines[q].exporters {
                    let id = id_of(e);
                    if config.connectors.contains_key(&id) {
                        todo.extend(fed_by(&id));
                    } else if on_disk(&id) {
                        stored = true;
                    }
                }
            }
            if stored {
                tracing::warn!(
                    pipeline = %name,
                    connectors = ?connectors,
                    "these connectors count data as delivered once they take it in: clients are answered before it is stored, and what the connectors hold is lost if the process is killed (SIGTERM passes it on)"
                );
            }
        }

        // A receiver answers on store when every pipeline it feeds is stored. A pipeline is
        // answered when every sender waits for that answer: each receiver answers on store, or
        // is a connector passing acknowledgement on from pipelines that are answered in turn.
        // Its processors may then refuse instead of holding data back.
        let answers_on_store = |receiver: &ComponentId| {
            !config.connectors.contains_key(receiver)
                && fed_by(receiver)
                    .iter()
                    .all(|name| stored_pipelines.contains(name))
        };
        let mut answered: Vec<&String> = Vec::new();
        loop {
            let before = answered.len();
            for name in &stored_pipelines {
                let waited_on = pipelines[*name].receivers.iter().all(|r| {
                    let id = id_of(r);
                    if config.connectors.contains_key(&id) {
                        let from = feeding(&id);
                        passes_on(&id)
                            && !from.is_empty()
                            && from.iter().all(|q| answered.contains(q))
                    } else {
                        answers_on_store(&id)
                    }
                });
                if waited_on && !answered.contains(name) {
                    answered.push(name);
                }
            }
            if answered.len() == before {
                break;
            }
        }
        builder.answered_pipelines = answered.into_iter().cloned().collect();

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

        // Receivers see their pipelines through switches: one whose configuration, signals
        // and answering are unchanged keeps its listener and connections, and a reload points
        // its switches at the new pipelines.
        let mut receivers = Vec::new();
        let mut repoint = Vec::new();
        for (id, next) in heads {
            let acknowledge_when_stored = answers_on_store(&id);
            let config_of = &config.receivers[&id];
            let text = format!(
                "receiver {id} traces={} logs={} metrics={} answered={acknowledge_when_stored} [{}] {}",
                next.traces.is_some(),
                next.logs.is_some(),
                next.metrics.is_some(),
                builder.extension_values(config_of.authenticators().into_iter().map(|(_, a)| a)),
                builder.value("receivers", &id),
            );
            let running = previous
                .and_then(|p| p.receivers.get(&id))
                .filter(|(k, _, _)| *k == text);
            let (rec, switches) = match running {
                Some((_, rec, switches)) => {
                    repoint.push((switches.clone(), next));
                    (rec.clone(), switches.clone())
                }
                None => {
                    let switches = Switches::new(&next);
                    let mut rctx = builder.ctx(&id, None);
                    rctx.acknowledge_when_stored = acknowledge_when_stored;
                    let rec = config_of
                        .build(&rctx, switches.consumers())
                        .with_context(|| format!("receivers.{id}"))?;
                    (rec, switches)
                }
            };
            builder
                .built
                .receivers
                .insert(id.clone(), (text, rec.clone(), switches));
            receivers.push((id, rec));
        }

        Ok(Self {
            metrics: builder.metrics,
            health,
            metrics_address: config.service.telemetry.metrics.address.clone(),
            shutdown_timeout: config.service.shutdown_timeout.get(),
            extensions,
            stages: Stages {
                exporters: builder.exporters,
                processors: builder.processors,
                depths: builder.depths,
                connectors: builder.connectors,
                receivers,
            },
            stop_telemetry: CancellationToken::new(),
            built: builder.built,
            repoint,
            hash: config.resolved.hash(),
            telemetry: config
                .resolved
                .0
                .get("service")
                .and_then(|s| s.get("telemetry"))
                .and_then(|t| serde_yaml_ng::to_string(t).ok())
                .unwrap_or_default(),
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
        self.metrics.config_loaded(&self.hash);
        self.stages.start_pipelines(&|_| true, None).await?;
        for (id, r) in &self.stages.receivers {
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
        let completed = self.stages.drain(deadline).await;
        if !completed {
            tracing::warn!(
                timeout = ?self.shutdown_timeout,
                "shutdown cut short: data the stages named above still held was not delivered"
            );
        }

        // Extensions outlive the drain (exporters may use them); they get what is left, and
        // at least the grace a server needs to answer its last requests.
        let budget = share(deadline, 1).max(crate::serve::IN_FLIGHT_GRACE);
        stop_extensions(&self.extensions, budget).await;
        self.stop_telemetry.cancel();
        completed
    }

    /// Replaces the running configuration by `config` (checked already), keeping every part
    /// whose key is unchanged: such an exporter or pipeline keeps running as it is, such a
    /// receiver keeps its listener and its connections. If building the new parts fails,
    /// nothing changes and the error is returned. Otherwise, with health not-ready meanwhile:
    /// 1. receivers that changed or went stop (their port may be the new one's);
    /// 2. if an exporter is rebuilt under its id (its queue directory or file may be the
    ///    new one's), the kept receivers hold new requests (they wait, they are not refused)
    ///    and the parts that changed or went drain first, as in [`Service::shutdown`];
    /// 3. extensions that changed or went stop; the new parts start, receivers last;
    /// 4. the kept receivers are pointed at the new pipelines;
    /// 5. otherwise (step 2 did not run) the parts that changed or went drain now, once
    ///    nothing reaches them any more.
    ///
    /// Each wait is bounded by `service.shutdown_timeout`. A new part that fails to start is
    /// reported in the error; the rest of the new configuration runs.
    pub async fn reload(&mut self, config: Arc<Config>) -> anyhow::Result<()> {
        let mut next = Self::build_over(
            &config,
            self.metrics.clone(),
            self.health.clone(),
            Some(&self.built),
            Some(config.clone()),
        )?;
        drop(config);
        if next.telemetry != self.telemetry {
            tracing::warn!(
                "service.telemetry changed: it takes effect on restart (logs and the metrics endpoint stay as they are)"
            );
        }
        next.metrics_address = self.metrics_address.clone();
        next.telemetry = self.telemetry.clone();
        next.stop_telemetry = self.stop_telemetry.clone();
        // From here on the old parts are held only where they are used, so those that go are
        // dropped once drained (an on-disk queue's lock goes with its exporter).
        let old = std::mem::take(&mut self.stages);
        let old_extensions = std::mem::take(&mut self.extensions);
        self.built = Built::default();
        let plan = Plan::new(&old, &old_extensions, &next.stages, &next.extensions);
        plan.log();
        self.health.set(HealthState::Starting);
        let deadline = Instant::now() + next.shutdown_timeout;

        // 1.
        let stopping: Vec<_> = old
            .receivers
            .iter()
            .filter(|(_, r)| !plan.kept.contains(&addr(r)))
            .cloned()
            .collect();
        let budget = share(deadline, 4);
        futures::future::join_all(
            stopping
                .iter()
                .map(|(id, r)| bounded(format!("receivers.{id}"), budget, r.shutdown())),
        )
        .await;
        drop(stopping);
        let mut gone = Some(old.without(&plan.kept));
        drop(old);

        // 2.
        let mut completed = true;
        if plan.same_id_rebuilt {
            let held = futures::future::join_all(
                next.repoint
                    .iter()
                    .map(|(switches, _)| switches.point(None, deadline)),
            );
            completed &= held.await.into_iter().all(|d| d);
            if let Some(gone) = gone.take() {
                completed &= gone.drain(deadline).await;
            }
        }

        // 3.
        let (kept_extensions, old_extensions): (Vec<_>, Vec<_>) = old_extensions
            .into_iter()
            .partition(|(_, e)| plan.kept.contains(&addr(e)));
        drop(kept_extensions);
        stop_extensions(&old_extensions, crate::serve::IN_FLIGHT_GRACE).await;
        drop(old_extensions);
        let mut failed = Vec::new();
        for (id, e) in &next.extensions {
            if !plan.kept.contains(&addr(e))
                && let Err(e) = e.start().await
            {
                failed.push(format!("extensions.{id}: {e:#}"));
            }
        }
        next.stages
            .start_pipelines(&|part| !plan.kept.contains(&part), Some(&mut failed))
            .await?;

        // 4.
        let repointed = futures::future::join_all(
            next.repoint
                .iter()
                .map(|(switches, heads)| switches.point(Some(heads), deadline)),
        );
        completed &= repointed.await.into_iter().all(|d| d);
        for (id, r) in &next.stages.receivers {
            if !plan.kept.contains(&addr(r))
                && let Err(e) = r.start().await
            {
                failed.push(format!("receivers.{id}: {e:#}"));
            }
        }
        next.repoint.clear();

        // 5.
        if let Some(gone) = gone.take() {
            completed &= gone.drain(deadline).await;
        }
        if !completed {
            tracing::warn!(
                timeout = ?next.shutdown_timeout,
                "reload: the drain of the replaced parts was cut short: data the parts named above still held was not delivered"
            );
        }
        *self = next;
        self.metrics.config_loaded(&self.hash);
        self.health.set(HealthState::Ready);
        if !failed.is_empty() {
            anyhow::bail!(
                "these parts of the new configuration did not start (the rest runs): {}",
                failed.join("; ")
            );
        }
        Ok(())
    }
}

/// Every running part as (name, address): extensions, receivers, processors, connectors,
/// exporters.
fn parts(s: &Stages, ext: &[(ComponentId, Arc<dyn Lifecycle>)]) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = Vec::new();
    v.extend(
        ext.iter()
            .map(|(id, e)| (format!("extensions.{id}"), addr(e))),
    );
    v.extend(
        s.receivers
            .iter()
            .map(|(id, r)| (format!("receivers.{id}"), addr(r))),
    );
    for (pname, procs) in &s.processors {
        v.extend(
            procs
                .iter()
                .map(|(id, _, p)| (format!("processors.{id} (pipeline {pname})"), addr(p))),
        );
    }
    v.extend(
        s.connectors
            .iter()
            .map(|(id, from, to, c, _)| (format!("connectors.{id} ({from} to {to})"), addr(c))),
    );
    v.extend(
        s.exporters
            .iter()
            .map(|(id, signal, e)| (format!("exporters.{id} ({signal})"), addr(e))),
    );
    v
}

/// What a reload keeps, builds anew and stops, for its log line and its order.
struct Plan {
    /// Parts taken over as they run (by address).
    kept: BTreeSet<usize>,
    /// Some exporter is replaced by one of the same id.
    same_id_rebuilt: bool,
    kept_names: Vec<String>,
    restarted: Vec<String>,
    added: Vec<String>,
    removed: Vec<String>,
}

impl Plan {
    fn new(
        old: &Stages,
        old_extensions: &[(ComponentId, Arc<dyn Lifecycle>)],
        new: &Stages,
        new_extensions: &[(ComponentId, Arc<dyn Lifecycle>)],
    ) -> Self {
        let old_parts = parts(old, old_extensions);
        let new_parts = parts(new, new_extensions);
        let old_addrs: BTreeSet<_> = old_parts.iter().map(|(_, a)| *a).collect();
        let kept: BTreeSet<_> = new_parts
            .iter()
            .map(|(_, a)| *a)
            .filter(|a| old_addrs.contains(a))
            .collect();
        let old_names: BTreeSet<&String> = old_parts.iter().map(|(n, _)| n).collect();
        let new_names: BTreeSet<&String> = new_parts.iter().map(|(n, _)| n).collect();
        let mut plan = Self {
            same_id_rebuilt: old.exporters.iter().any(|(id, _, e)| {
                !kept.contains(&addr(e)) && new.exporters.iter().any(|(n, _, _)| n == id)
            }),
            kept,
            kept_names: Vec::new(),
            restarted: Vec::new(),
            added: Vec::new(),
            removed: Vec::new(),
        };
        for (name, a) in &new_parts {
            if plan.kept.contains(a) {
                plan.kept_names.push(name.clone());
            } else if old_names.contains(name) {
                plan.restarted.push(name.clone());
            } else {
                plan.added.push(name.clone());
            }
        }
        plan.removed = old_names
            .difference(&new_names)
            .map(|n| n.to_string())
            .collect();
        plan
    }

    fn log(&self) {
        tracing::info!(
            kept = ?self.kept_names,
            restarted = ?self.restarted,
            added = ?self.added,
            removed = ?self.removed,
            "reload: swapping the parts that changed"
        );
    }
}

impl Stages {
    /// Starts exporters, processors and connectors, each one `part` says (by address). At
    /// start-up the first failure ends it; in a reload (`failed` given) every failure is
    /// recorded there and the others still start.
    async fn start_pipelines(
        &self,
        part: &dyn Fn(usize) -> bool,
        mut failed: Option<&mut Vec<String>>,
    ) -> anyhow::Result<()> {
        let mut parts: Vec<(String, &Arc<dyn Lifecycle>)> = Vec::new();
        parts.extend(
            self.exporters
                .iter()
                .map(|(id, _, e)| (format!("exporters.{id}"), e)),
        );
        for (pname, procs) in &self.processors {
            parts.extend(
                procs
                    .iter()
                    .map(|(id, _, p)| (format!("processors.{id} (pipeline {pname})"), p)),
            );
        }
        parts.extend(
            self.connectors
                .iter()
                .map(|(id, from, to, c, _)| (format!("connectors.{id} ({from} to {to})"), c)),
        );
        for (what, p) in parts {
            if !part(addr(p)) {
                continue;
            }
            if let Err(e) = p.start().await {
                match failed.as_deref_mut() {
                    Some(failed) => failed.push(format!("{what}: {e:#}")),
                    None => return Err(e.context(what)),
                }
            }
        }
        Ok(())
    }

    /// The stages that are not in `kept` (by address): what a reload replaced or removed.
    fn without(&self, kept: &BTreeSet<usize>) -> Stages {
        let keep = |l: &Arc<dyn Lifecycle>| !kept.contains(&addr(l));
        Stages {
            exporters: self
                .exporters
                .iter()
                .filter(|s| keep(&s.2))
                .cloned()
                .collect(),
            processors: self
                .processors
                .iter()
                .map(|(p, procs)| {
                    (
                        p.clone(),
                        procs.iter().filter(|s| keep(&s.2)).cloned().collect(),
                    )
                })
                .filter(|(_, procs): &PipelineProcessors| !procs.is_empty())
                .collect(),
            depths: self.depths.clone(),
            connectors: self
                .connectors
                .iter()
                .filter(|c| keep(&c.3))
                .cloned()
                .collect(),
            receivers: Vec::new(),
        }
    }

    /// Stops receivers, then processors level by level with the connectors between the
    /// levels, then exporters, by `deadline` (see [`Service::shutdown`]); false if a stage
    /// was cut short.
    async fn drain(&self, deadline: Instant) -> bool {
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
        completed
    }
}

/// Stops `extensions` side by side, each within `budget`.
async fn stop_extensions(extensions: &[(ComponentId, Arc<dyn Lifecycle>)], budget: Duration) {
    futures::future::join_all(
        extensions
            .iter()
            .map(|(id, e)| bounded(format!("extensions.{id}"), budget, e.shutdown())),
    )
    .await;
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
/// once ([`Stopped::Forced`]). SIGHUP (and, with `sources.watch`, a change in a config file)
/// reloads the configuration from `sources` (see [`Service::reload`]); a stop signal that arrives
/// during a reload is acted on once the reload is done.
pub async fn run(config: Config, sources: Sources) -> anyhow::Result<Stopped> {
    // Before building anything: plugins may take seconds to compile, and a SIGHUP or SIGTERM
    // in that time must not get the default action (death).
    let (triggers, mut reloads) = tokio::sync::mpsc::unbounded_channel();
    let mut signals = Signals::install(triggers.clone())?;
    if sources.watch {
        crate::reload::watch_files(&sources.sources, triggers);
    }
    let metrics = Arc::new(Metrics::new());
    let mut service = Service::build(&config, metrics)?;
    if let Err(e) = service.start().await {
        service.shutdown().await;
        return Err(e);
    }
    drop(config);
    let pipelines: Vec<_> = service.built.pipelines.keys().cloned().collect();
    tracing::info!(?pipelines, hash = %short(&service.hash), "collector started");
    let first = loop {
        tokio::select! {
            stop = signals.stop() => break stop,
            Some(trigger) = reloads.recv() => {
                // Triggers that queued up meanwhile are served by this reload.
                while reloads.try_recv().is_ok() {}
                reload(&mut service, &sources, trigger).await;
            }
        }
    };
    // A SIGHUP from now on is logged and ignored.
    drop(reloads);
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

/// The first 12 hex digits of a configuration hash, as logs and metrics show it.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Reads the configuration from `sources` again, checks it as start-up does, and swaps it in
/// (see [`Service::reload`]); on any problem the running configuration stays and each
/// problem is logged on its own error line.
async fn reload(service: &mut Service, sources: &Sources, trigger: Trigger) {
    tracing::info!(
        trigger = trigger.name(),
        sources = ?sources.sources,
        "reloading the configuration"
    );
    let (s, sets) = (sources.sources.clone(), sources.sets.clone());
    // Loading reads files and may compile plugins: off the runtime's threads.
    let loaded = tokio::task::spawn_blocking(move || Config::load_sources(&s, &sets)).await;
    let config = match loaded {
        Ok(Ok(c)) => c,
        Ok(Err(errors)) => {
            for e in &errors.errors {
                let file = e.file.as_deref().unwrap_or(&errors.source);
                match e.line {
                    Some(line) => tracing::error!("config reload: {file}:{line}: {e}"),
                    None => tracing::error!("config reload: {file}: {e}"),
                }
            }
            service.metrics.config_reload(false);
            tracing::error!(
                problems = errors.errors.len(),
                hash = %short(&service.hash),
                "config reload failed: the running configuration stays"
            );
            return;
        }
        Err(e) => {
            service.metrics.config_reload(false);
            tracing::error!(error = %e, "config reload failed: the running configuration stays");
            return;
        }
    };
    for note in &config.notes {
        match note.level {
            crate::config::compat::Level::Info => tracing::info!("config: {}", note.note),
            crate::config::compat::Level::Warning => tracing::warn!("config: {}", note.note),
        }
    }
    let started = Instant::now();
    match service.reload(Arc::new(config)).await {
        Ok(()) => {
            service.metrics.config_reload(true);
            tracing::info!(
                hash = %short(&service.hash),
                took = ?started.elapsed(),
                "config reloaded"
            );
        }
        Err(e) => {
            service.metrics.config_reload(false);
            tracing::error!("config reload failed: {e:#}; hash {}", short(&service.hash));
        }
    }
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

/// The process's signal handlers: SIGTERM and SIGINT stop it, SIGHUP asks for a reload.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; each SIGHUP sends [`Trigger::Signal`] to `reloads`. Installing
    /// one replaces the signal's default action for the rest of the process's life, so SIGHUP
    /// never kills it, even after the task that forwards it ends with the runtime.
    fn install(reloads: tokio::sync::mpsc::UnboundedSender<Trigger>) -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if reloads.send(Trigger::Signal).is_err() {
                    tracing::warn!("SIGHUP while shutting down: ignored");
                }
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
            stages: Stages {
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
            },
            built: Built::default(),
            repoint: Vec::new(),
            hash: String::new(),
            telemetry: String::new(),
            stop_telemetry: CancellationToken::new(),
        }
    }

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    /// A traces pipeline `traces/in` (otlp → batch) feeding `traces/out` through the
    /// `forward` connector, which exports to `out`.
    fn chain(batch: &str, out: &str) -> Arc<Config> {
        let text = format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  batch:
    timeout: {batch}
exporters:
  nop:
  nop/2:
connectors:
  forward:
service:
  pipelines:
    traces/in:
      receivers: [otlp]
      processors: [batch]
      exporters: [forward]
    traces/out:
      receivers: [forward]
      exporters: [{out}]
  telemetry:
    metrics:
      address: none
"#
        );
        Arc::new(Config::parse("chain", &text, &|_| None).unwrap_or_else(|e| panic!("{e}")))
    }

    /// The names of the parts of `s` whose address is in (`kept`) or not in `before`.
    fn compared(s: &Service, before: &[(String, usize)], kept: bool) -> Vec<String> {
        let old: BTreeSet<usize> = before.iter().map(|(_, a)| *a).collect();
        parts(&s.stages, &s.extensions)
            .into_iter()
            .filter(|(_, a)| old.contains(a) == kept)
            .map(|(n, _)| n)
            .collect()
    }

    #[tokio::test]
    async fn a_reload_keeps_each_part_whose_key_and_downstream_are_unchanged() {
        let mut s = Service::build(&chain("100ms", "nop"), Arc::new(Metrics::new())).unwrap();
        s.start().await.unwrap();
        let hash = s.hash.clone();

        // The exporter at the end changes: everything upstream of it is rebuilt but the
        // receiver, which keeps its listener.
        let before = parts(&s.stages, &s.extensions);
        s.reload(chain("100ms", "nop/2")).await.unwrap();
        assert_eq!(compared(&s, &before, true), ["receivers.otlp"]);
        assert_eq!(
            compared(&s, &before, false),
            [
                "processors.batch (pipeline traces/in)",
                "connectors.forward (traces to traces)",
                "exporters.nop/2 (traces)"
            ]
        );
        assert_eq!(s.health.get(), HealthState::Ready);
        assert_ne!(s.hash, hash);

        // Only the first pipeline's processor changes: the connector and what it feeds stay.
        let before = parts(&s.stages, &s.extensions);
        s.reload(chain("200ms", "nop/2")).await.unwrap();
        assert_eq!(
            compared(&s, &before, false),
            ["processors.batch (pipeline traces/in)"]
        );

        // Nothing changes: nothing is rebuilt.
        let before = parts(&s.stages, &s.extensions);
        s.reload(chain("200ms", "nop/2")).await.unwrap();
        assert!(compared(&s, &before, false).is_empty());
        assert!(s.shutdown().await);
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
        let p2 = s.stages.processors[0].1.pop().unwrap();
        s.stages.processors.push(("metrics".into(), vec![p2]));
        s.stages.depths.insert("metrics".into(), 1);
        s.stages.connectors.push((
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
