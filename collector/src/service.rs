//! Builds the components named by a [`Config`], wires them into pipelines, runs them, and
//! shuts them down in order.
//!
//! Build order is backwards along the data path: exporters (one instance each, shared by the
//! pipelines that name them), then each pipeline's processors from last to first (one instance
//! per pipeline), then receivers, which fan out to the head of every pipeline that lists them.
//! Start order is the same; shutdown is the reverse (receivers first, so nothing new enters,
//! then processors flush, then exporters drain), bounded by `service.shutdown_timeout`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, ComponentId, Exporter, Lifecycle, Processor};
use crate::config::Config;
use crate::pipeline::{SharedConsumer, fan_out};
use crate::storage::Store;
use crate::telemetry::{Health, HealthState, Metrics, serve_metrics};

/// One pipeline's processors, in data order.
type PipelineProcessors = (String, Vec<(ComponentId, Arc<dyn Processor>)>);

/// A built collector, ready to start.
pub struct Service {
    metrics: Arc<Metrics>,
    health: Health,
    metrics_address: String,
    shutdown_timeout: Duration,
    extensions: Vec<(ComponentId, Arc<dyn Lifecycle>)>,
    exporters: Vec<(ComponentId, Arc<dyn Exporter>)>,
    /// Per pipeline, processors in data order.
    processors: Vec<PipelineProcessors>,
    receivers: Vec<(ComponentId, Arc<dyn Lifecycle>)>,
    stop_telemetry: CancellationToken,
}

fn ctx(
    id: &ComponentId,
    pipeline: Option<&str>,
    metrics: &Arc<Metrics>,
    stores: &Arc<BTreeMap<ComponentId, Store>>,
) -> BuildContext {
    BuildContext {
        id: id.clone(),
        pipeline: pipeline.map(str::to_string),
        metrics: metrics.clone(),
        stores: stores.clone(),
        acknowledge_when_stored: false,
    }
}

fn id_of(s: &str) -> ComponentId {
    ComponentId::parse(s).expect("ids were checked when the config was loaded")
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
        let metrics = &metrics;

        let mut exporters: BTreeMap<ComponentId, Arc<dyn Exporter>> = BTreeMap::new();
        for p in pipelines.values() {
            for name in &p.exporters {
                let id = id_of(name);
                if exporters.contains_key(&id) {
                    continue;
                }
                let exp = config.exporters[&id]
                    .build(&ctx(&id, None, metrics, &stores))
                    .with_context(|| format!("exporters.{id}"))?;
                exporters.insert(id, exp);
            }
        }

        let mut heads: BTreeMap<&str, SharedConsumer> = BTreeMap::new();
        let mut processors = Vec::new();
        for (pname, p) in pipelines {
            let mut next: SharedConsumer = fan_out(
                p.exporters
                    .iter()
                    .map(|n| exporters[&id_of(n)].clone() as SharedConsumer)
                    .collect(),
            );
            let mut built = Vec::new();
            for name in p.processors.iter().rev() {
                let id = id_of(name);
                let proc = config.processors[&id]
                    .build(&ctx(&id, Some(pname), metrics, &stores), next)
                    .with_context(|| format!("processors.{id} (pipeline {pname})"))?;
                next = proc.clone();
                built.push((id, proc));
            }
            built.reverse();
            processors.push((pname.clone(), built));
            heads.insert(pname.as_str(), next);
        }

        // Pipelines whose every exporter keeps its queue on disk: their receivers answer once
        // the data is stored, so what a client was told is accepted survives a crash.
        let mut stored_pipelines: Vec<&String> = Vec::new();
        for (name, p) in pipelines {
            if !p
                .exporters
                .iter()
                .all(|e| config.exporters[&id_of(e)].storage().is_some())
            {
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

        let mut receivers = Vec::new();
        let mut receiver_ids: Vec<ComponentId> = pipelines
            .values()
            .flat_map(|p| p.receivers.iter().map(|r| id_of(r)))
            .collect();
        receiver_ids.sort();
        receiver_ids.dedup();
        for id in receiver_ids {
            let targets: Vec<SharedConsumer> = pipelines
                .iter()
                .filter(|(_, p)| p.receivers.iter().any(|r| id_of(r) == id))
                .map(|(name, _)| heads[name.as_str()].clone())
                .collect();
            let mut rctx = ctx(&id, None, metrics, &stores);
            rctx.acknowledge_when_stored = pipelines
                .iter()
                .filter(|(_, p)| p.receivers.iter().any(|r| id_of(r) == id))
                .all(|(name, _)| stored_pipelines.contains(&name));
            let rec = config.receivers[&id]
                .build(&rctx, fan_out(targets))
                .with_context(|| format!("receivers.{id}"))?;
            receivers.push((id, rec));
        }

        let mut extensions = Vec::new();
        for name in &config.service.extensions {
            let id = id_of(name);
            let ext = config.extensions[&id]
                .build(&ctx(&id, None, metrics, &stores), health.clone())
                .with_context(|| format!("extensions.{id}"))?;
            extensions.push((id, ext));
        }

        Ok(Self {
            metrics: metrics.clone(),
            health,
            metrics_address: config.service.telemetry.metrics.address.clone(),
            shutdown_timeout: config.service.shutdown_timeout.get(),
            extensions,
            exporters: exporters.into_iter().collect(),
            processors,
            receivers,
            stop_telemetry: CancellationToken::new(),
        })
    }

    /// The health state shared with the health check.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Starts extensions, the metrics endpoint, exporters, processors, then receivers.
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
        for (id, e) in &self.exporters {
            e.start().await.with_context(|| format!("exporters.{id}"))?;
        }
        for (pname, procs) in &self.processors {
            for (id, p) in procs {
                p.start()
                    .await
                    .with_context(|| format!("processors.{id} (pipeline {pname})"))?;
            }
        }
        for (id, r) in &self.receivers {
            r.start().await.with_context(|| format!("receivers.{id}"))?;
        }
        self.health.set(HealthState::Ready);
        Ok(())
    }

    /// Stops receivers, flushes processors, drains exporters; gives up after the shutdown
    /// timeout. Returns false if the timeout cut the drain short.
    pub async fn shutdown(&self) -> bool {
        self.health.set(HealthState::Stopping);
        let drain = async {
            for (_, r) in &self.receivers {
                r.shutdown().await;
            }
            for (_, procs) in &self.processors {
                for (_, p) in procs {
                    p.shutdown().await;
                }
            }
            // Exporters drain independently: in parallel, so their drain times do not add up.
            futures::future::join_all(self.exporters.iter().map(|(_, e)| e.shutdown())).await;
        };
        let completed = tokio::time::timeout(self.shutdown_timeout, drain)
            .await
            .is_ok();
        if !completed {
            tracing::warn!(
                timeout = ?self.shutdown_timeout,
                "shutdown timed out: data still queued was not delivered"
            );
        }
        for (_, e) in &self.extensions {
            e.shutdown().await;
        }
        self.stop_telemetry.cancel();
        completed
    }
}

/// Runs the collector described by `config` until SIGTERM or SIGINT, then drains and returns.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let service = Service::build(&config, metrics)?;
    if let Err(e) = service.start().await {
        service.shutdown().await;
        return Err(e);
    }
    let pipelines: Vec<_> = config.service.pipelines.keys().cloned().collect();
    tracing::info!(?pipelines, "collector started");
    wait_for_signal().await;
    tracing::info!("shutting down: draining in-flight data");
    service.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
