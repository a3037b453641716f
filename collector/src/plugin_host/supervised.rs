//! A plugin instance called under supervision, for the worlds whose calls a component makes
//! one at a time: tail-sampling policies and trace analysers. The instance is made on first
//! use and handed its configuration; a failed call (a trap, an error, its deadline, its
//! memory budget, or a panic on the host's side) is counted by reason and replaces the
//! instance; an instance grown past `recycle_memory_mib` is replaced after its call; after
//! repeated failures the plugin is paused ([`pause_after`]). The caller says what a failure
//! means for its data.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::host::Services;
use super::instance::CallError;
use super::limits::Limits;
use super::plugin::StartupError;
use super::tables::Tables;
use super::worker::pause_after;
use crate::panics;
use crate::telemetry::Metrics;

/// An instance of a loaded plugin of one world.
pub trait Instance: Sized {
    /// The compiled plugin it is made from.
    type Plugin;
    /// What the world's plugins are called in messages (`policy`, `analyser`).
    const KIND: &'static str;
    /// Makes an instance of `plugin` and calls its `init` with `config_json`.
    fn instantiate(
        plugin: &Self::Plugin,
        services: Arc<Services>,
        limits: &Limits,
        config_json: &str,
    ) -> Result<Self, CallError>;
    /// Linear memory the instance holds now, in bytes.
    fn memory_bytes(&self) -> usize;
}

/// Instantiates `plugin` (loaded from `source`) once and hands it `config_json`, as start-up
/// will: how `wasmcol validate` checks a plugin's configuration.
pub fn check_config<I: Instance>(
    plugin: &I::Plugin,
    source: &str,
    config_json: &str,
    limits: &Limits,
) -> Result<(), StartupError> {
    let services = Arc::new(Services::new(
        "validate".into(),
        Arc::new(Metrics::new()),
        Arc::new(Tables::default()),
    ));
    match I::instantiate(plugin, services, limits, config_json) {
        Ok(_) => Ok(()),
        Err(CallError::Rejected(reason)) => Err(StartupError {
            path: "config",
            message: format!(
                "the {} plugin rejected its configuration: {reason}",
                I::KIND
            ),
        }),
        Err(e) => Err(StartupError {
            path: "plugin",
            message: format!("{source:?} failed while starting: {e}"),
        }),
    }
}

/// How a supervised call failed.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: CallError,
    /// Failed calls in a row, this one included.
    pub failures: u32,
    /// How long the plugin is paused now, if it is.
    pub pause: Option<Duration>,
    /// How long the call took.
    pub elapsed: Duration,
}

/// One plugin and its (lazily made) instance, called under supervision.
pub struct Supervised<I: Instance> {
    plugin: Arc<I::Plugin>,
    config_json: String,
    services: Arc<Services>,
    limits: Limits,
    instance: Option<I>,
    failures: u32,
    paused_until: Option<Instant>,
    calls: Counter,
    instantiations: Counter,
}

impl<I: Instance> Supervised<I> {
    /// Supervises `plugin` with its configuration; `services.id` labels its metrics and logs.
    pub fn new(
        plugin: Arc<I::Plugin>,
        config_json: String,
        services: Arc<Services>,
        limits: Limits,
    ) -> Self {
        let calls = services.metrics.plugin_calls(&services.id);
        let instantiations = services.metrics.plugin_instantiations(&services.id);
        Self {
            plugin,
            config_json,
            services,
            limits,
            instance: None,
            failures: 0,
            paused_until: None,
            calls,
            instantiations,
        }
    }

    /// The plugin supervised.
    pub fn plugin(&self) -> &I::Plugin {
        &self.plugin
    }

    /// The services of its instances (its id, metrics and tables).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Drops the instance: the next call makes a new one (after a panic outside the call,
    /// which may have left it half-way through one).
    pub fn reset(&mut self) {
        self.instance = None;
    }

    /// Until when the plugin is paused after failing repeatedly, while it is.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until.filter(|t| Instant::now() < *t)
    }

    /// Calls `f` on the instance, made first when there is none. A host-side panic counts
    /// as the plugin failing (`reason="panic"`); it is reported for `component`
    /// (`processor`, `connector`) as `what` failing, with `consequence` saying what happens
    /// to the data.
    pub fn call<T>(
        &mut self,
        component: &str,
        what: &str,
        consequence: &str,
        f: impl FnOnce(&mut I) -> Result<T, CallError>,
    ) -> Result<T, Failure> {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            if self.instance.is_none() {
                self.instantiations.inc();
                self.instance = Some(I::instantiate(
                    &self.plugin,
                    self.services.clone(),
                    &self.limits,
                    &self.config_json,
                )?);
            }
            f(self.instance.as_mut().expect("just made"))
        }))
        .unwrap_or_else(|payload| {
            let message = panics::message(&*payload);
            panics::report(
                &self
                    .services
                    .metrics
                    .component_panics(component, &self.services.id),
                &self.services.id,
                what,
                &message,
                consequence,
            );
            Err(CallError::Panic(message))
        });
        match result {
            Ok(answer) => {
                self.calls.inc();
                self.failures = 0;
                self.paused_until = None;
                if self
                    .instance
                    .as_ref()
                    .is_some_and(|i| i.memory_bytes() > self.limits.recycle_bytes())
                {
                    self.instance = None;
                }
                Ok(answer)
            }
            Err(error) => {
                self.instance = None;
                self.failures += 1;
                self.services
                    .metrics
                    .plugin_failures(&self.services.id, error.reason())
                    .inc();
                let pause = pause_after(self.failures);
                if let Some(p) = pause {
                    self.paused_until = Some(Instant::now() + p);
                }
                Err(Failure {
                    error,
                    failures: self.failures,
                    pause,
                    elapsed: started.elapsed(),
                })
            }
        }
    }
}
