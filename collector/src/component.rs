//! What every component is: an id, a lifecycle, and (for processors and exporters) a consumer.
//!
//! Each component type has a config struct (serde, `deny_unknown_fields`, a doc comment per
//! field) that implements [`Validate`] and one of the `*Config` traits below, which build the
//! running component from a [`BuildContext`]. Registering a new type is one line in
//! [`crate::components`].
//!
//! As in the OpenTelemetry Collector, a component declares the signals it supports
//! ([`ProcessorConfig::signals`], ...) and is built once per signal it is used for, with one
//! builder per signal (`build_traces`, ...): a pipeline of a signal is made of that signal's
//! consumers ([`crate::pipeline::Consumer`]). A connector ([`ConnectorConfig`]) joins two
//! pipelines: it is built once per pair of signals it connects, with one builder per pair.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::pipeline::{self, Consumer, Logs, SharedConsumer, Signal, SignalKind, Signals, Traces};
use crate::storage::Store;
use crate::telemetry::Metrics;

/// A component id, `type` or `type/name` (`otlp`, `batch/fast`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    /// The component type (`otlp`, `batch`, ...).
    pub type_name: String,
    /// The optional name after the slash.
    pub name: Option<String>,
}

impl ComponentId {
    /// Parses `type` or `type/name`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (t, n) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if !valid(t) {
            return Err(format!(
                "invalid component id {s:?}: the type must be letters, digits, '_', '-' or '.'"
            ));
        }
        if let Some(n) = n
            && (n.is_empty() || n.contains('/'))
        {
            return Err(format!(
                "invalid component id {s:?}: expected type or type/name"
            ));
        }
        Ok(Self {
            type_name: t.to_string(),
            name: n.map(str::to_string),
        })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.type_name, n),
            None => f.write_str(&self.type_name),
        }
    }
}

/// Everything the runtime hands a component when building it.
#[derive(Clone)]
pub struct BuildContext {
    /// The component's id, for logs and metrics.
    pub id: ComponentId,
    /// The pipeline a processor is built for (processors get one instance per pipeline).
    pub pipeline: Option<String>,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// The storage extensions (`file_storage`) enabled in `service.extensions`, by id, for
    /// exporters whose `sending_queue.storage` names one.
    pub stores: Arc<BTreeMap<ComponentId, Store>>,
    /// The authenticator extensions enabled in `service.extensions`, by id, for receivers and
    /// exporters whose `auth.authenticator` names one.
    pub authenticators: crate::auth::Authenticators,
    /// For receivers: every exporter downstream keeps its queue on disk, so answer a client
    /// only once its data is stored there (or delivered). For processors: every sender of the
    /// pipeline waits for that answer, so data the next stage refuses can be failed back to
    /// them (they retry) instead of being held and retried here.
    pub acknowledge_when_stored: bool,
    /// What the instances of one exporter for different signals share (see
    /// [`BuildContext::shared`]).
    pub shared: SharedInstances,
}

/// Values shared by the instances one component has for different signals, by component id
/// (the OpenTelemetry Collector's shared components: one `file` exporter writes every
/// signal to its one file).
pub type SharedInstances = Arc<Mutex<BTreeMap<ComponentId, Arc<dyn Any + Send + Sync>>>>;

impl BuildContext {
    /// The value this component's instances share: made by `make` for the first signal it is
    /// built for, then the same one for the others.
    pub fn shared<T: Any + Send + Sync>(
        &self,
        make: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<Arc<T>> {
        let mut all = self.shared.lock().expect("shared instances lock");
        if let Some(found) = all.get(&self.id) {
            return found
                .clone()
                .downcast::<T>()
                .map_err(|_| anyhow::anyhow!("{}: shared with another type", self.id));
        }
        let made = Arc::new(make()?);
        all.insert(self.id.clone(), made.clone());
        Ok(made)
    }
}

/// Start and stop. Every running component has this.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Starts listeners, timers and workers. Errors stop the collector's start-up.
    async fn start(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Stops taking new work and finishes what is in flight. The service bounds this with its
    /// shutdown timeout, so implementations may simply wait.
    async fn shutdown(&self) {}
}

/// A running processor of signal `S`: a consumer that forwards to the next stage.
pub trait Processor<S: Signal>: Lifecycle + Consumer<S> {}
impl<S: Signal, T: Lifecycle + Consumer<S>> Processor<S> for T {}

/// A running exporter of signal `S`: the last consumer of a pipeline.
pub trait Exporter<S: Signal>: Lifecycle + Consumer<S> {}
impl<S: Signal, T: Lifecycle + Consumer<S>> Exporter<S> for T {}

/// A running connector whose exporter side takes signal `S`: the last consumer of the
/// pipelines that list it as an exporter, which hands what it makes of the data to the
/// pipelines that list it as a receiver.
pub trait Connector<S: Signal>: Lifecycle + Consumer<S> {}
impl<S: Signal, T: Lifecycle + Consumer<S>> Connector<S> for T {}

/// The heads of the pipelines a receiver feeds, by signal: `None` for a signal none of its
/// pipelines carries.
#[derive(Clone, Default)]
pub struct Consumers {
    /// The traces pipelines (fanned out when several).
    pub traces: Option<SharedConsumer<Traces>>,
    /// The logs pipelines.
    pub logs: Option<SharedConsumer<Logs>>,
    /// The metrics pipelines.
    pub metrics: Option<SharedConsumer<pipeline::Metrics>>,
}

impl Consumers {
    /// The traces pipelines; an error naming the receiver when it feeds none.
    pub fn traces(&self, ctx: &BuildContext) -> anyhow::Result<SharedConsumer<Traces>> {
        self.traces
            .clone()
            .ok_or_else(|| anyhow::anyhow!("receiver {} feeds no traces pipeline", ctx.id))
    }
}

/// The error a builder returns for a signal its component does not support (configurations
/// that use one are refused when checked, so this is reached only by a defect).
fn unsupported<T>(what: &str, signal: SignalKind) -> anyhow::Result<T> {
    anyhow::bail!("{what} does not support {signal}")
}

/// A problem found in a component's configuration: a path relative to the component and what
/// is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path below the component (empty for the component itself).
    pub path: String,
    /// What is wrong, naming the bad value.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Prefixes the paths of `problems` with `prefix` (`sending_queue`, `retry_on_failure`, `tls`), for
/// components that embed shared blocks in their own config.
pub fn nested(prefix: &str, problems: Vec<Problem>) -> impl Iterator<Item = Problem> + '_ {
    problems.into_iter().map(move |p| Problem {
        path: if p.path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", p.path)
        },
        message: p.message,
    })
}

/// Checks a parsed configuration; returns every problem, not the first. Checks that need
/// the files a component names (TLS certificates, lookup tables, plugins) read them here, so
/// `wasmcol validate` reports what start-up would.
pub trait Validate {
    /// The problems with this configuration; empty when it is valid.
    fn validate(&self) -> Vec<Problem> {
        Vec::new()
    }
}

/// A receiver's validated configuration.
pub trait ReceiverConfig: fmt::Debug + Send + Sync {
    /// The signals it can receive.
    fn signals(&self) -> Signals {
        Signals::TRACES
    }

    /// Builds the receiver (one instance, shared by every pipeline that names it), which will
    /// hand what it receives to the pipelines of its signal in `next`.
    fn build(&self, ctx: &BuildContext, next: Consumers) -> anyhow::Result<Arc<dyn Lifecycle>>;

    /// The `auth.authenticator` values it names (server side), each with its option's path
    /// below the receiver (`protocols.grpc.auth.authenticator`).
    fn authenticators(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A processor's validated configuration.
pub trait ProcessorConfig: fmt::Debug + Send + Sync {
    /// The signals it can process.
    fn signals(&self) -> Signals {
        Signals::TRACES
    }

    /// Why it cannot process `signal` when that depends on its configuration (a `wasm`
    /// processor's plugin built for an older ABI): added to the validation error.
    fn unsupported_because(&self, signal: SignalKind) -> Option<String> {
        let _ = signal;
        None
    }

    /// Builds one instance for one traces pipeline, forwarding to `next`.
    fn build_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Processor<Traces>>> {
        let _ = next;
        unsupported(&format!("processor {}", ctx.id), SignalKind::Traces)
    }

    /// Builds one instance for one logs pipeline, forwarding to `next`.
    fn build_logs(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Logs>,
    ) -> anyhow::Result<Arc<dyn Processor<Logs>>> {
        let _ = next;
        unsupported(&format!("processor {}", ctx.id), SignalKind::Logs)
    }

    /// Builds one instance for one metrics pipeline, forwarding to `next`.
    fn build_metrics(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<pipeline::Metrics>,
    ) -> anyhow::Result<Arc<dyn Processor<pipeline::Metrics>>> {
        let _ = next;
        unsupported(&format!("processor {}", ctx.id), SignalKind::Metrics)
    }

    /// False for a processor that reports data delivered before passing it on (one that
    /// buffers for long, like `tail_sampling`): receivers in front of it cannot wait for the
    /// exporters' disk writes, so the pipeline's answers do not mean "stored".
    fn passes_acknowledgement_on(&self) -> bool {
        true
    }
}

/// An exporter's validated configuration.
pub trait ExporterConfig: fmt::Debug + Send + Sync {
    /// The signals it can export.
    fn signals(&self) -> Signals {
        Signals::TRACES
    }

    /// Builds the exporter for traces (one instance, shared by every traces pipeline that
    /// names it).
    fn build_traces(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<Traces>>> {
        unsupported(&format!("exporter {}", ctx.id), SignalKind::Traces)
    }

    /// Builds the exporter for logs (one instance, shared by every logs pipeline that names
    /// it).
    fn build_logs(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<Logs>>> {
        unsupported(&format!("exporter {}", ctx.id), SignalKind::Logs)
    }

    /// Builds the exporter for metrics (one instance, shared by every metrics pipeline that
    /// names it).
    fn build_metrics(
        &self,
        ctx: &BuildContext,
    ) -> anyhow::Result<Arc<dyn Exporter<pipeline::Metrics>>> {
        unsupported(&format!("exporter {}", ctx.id), SignalKind::Metrics)
    }

    /// The storage extension its sending queue keeps data in (`sending_queue.storage`), if
    /// any. Data handed to such an exporter is on disk once `consume` returns and its delivery
    /// is released.
    fn storage(&self) -> Option<ComponentId> {
        None
    }

    /// The `auth.authenticator` values it names (client side), each with its option's path
    /// below the exporter.
    fn authenticators(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A connector's validated configuration: an exporter of the pipelines that list it under
/// `exporters` and a receiver of those that list it under `receivers`, as in the
/// OpenTelemetry Collector.
///
/// It declares the (exporter side, receiver side) signal pairs it supports and has one
/// builder per pair. The service builds one instance per pair in use: it takes the data of
/// every pipeline of the first signal that exports to it and hands its output to the heads
/// of every pipeline of the second signal that receives from it (`next`, fanned out).
pub trait ConnectorConfig: fmt::Debug + Send + Sync {
    /// The (exporter pipeline signal, receiver pipeline signal) pairs it connects.
    fn pairs(&self) -> Vec<(SignalKind, SignalKind)>;

    /// True for a connector that hands each batch on, with its acknowledgement, before it
    /// answers (`forward`): a pipeline exporting to it is stored when the pipelines it feeds
    /// are. False (the default) for one that counts data delivered once it has taken it in
    /// (it aggregates or holds it).
    fn passes_acknowledgement_on(&self) -> bool {
        false
    }

    /// Traces in, traces out.
    fn build_traces_to_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Connector<Traces>>> {
        let _ = next;
        unsupported_pair(ctx, SignalKind::Traces, SignalKind::Traces)
    }

    /// Traces in, metrics out.
    fn build_traces_to_metrics(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<pipeline::Metrics>,
    ) -> anyhow::Result<Arc<dyn Connector<Traces>>> {
        let _ = next;
        unsupported_pair(ctx, SignalKind::Traces, SignalKind::Metrics)
    }

    /// Traces in, logs out.
    fn build_traces_to_logs(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Logs>,
    ) -> anyhow::Result<Arc<dyn Connector<Traces>>> {
        let _ = next;
        unsupported_pair(ctx, SignalKind::Traces, SignalKind::Logs)
    }

    /// Metrics in, traces out.
    fn build_metrics_to_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Connector<pipeline::Metrics>>> {
        let _ = next;
        unsupported_pair(ctx, SignalKind::Metrics, SignalKind::Traces)
    }

    /// Metrics in, metrics out.
    fn build_metrics_to_metrics(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<pipeline::Metrics>,
    ) -> anyhow::Result<Arc<dyn Connector<pipeline::Metrics>>> {
        let _ = next;
        unsupported_pair(ctx, SignalKind::Metrics, SignalKind::Metrics)
    }

    /// Metrics in, logs out.
    fn build_metrics_to_logs(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Logs>,
    ) -> anyhow::Result<Arc<dyn Connector<pipeline::Metrics>>> {
        let _ = next;
        unsupported_pair(ctx, SignalKind::Metrics, SignalKind::Logs)
    }

    /// Logs in, traces out.
    fn build_logs_to_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Connector<Logs>>> {
        let _ = next;
        unsupported_pair(ctx, SignalKind::Logs, SignalKind::Traces)
    }

    /// Logs in, metrics out.
    fn build_logs_to_metrics(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<pipeline::Metrics>,
    ) -> anyhow::Result<Arc<dyn Connector<Logs>>> {
        let _ = next;
        unsupported_pair(ctx, SignalKind::Logs, SignalKind::Metrics)
    }

    /// Logs in, logs out.
    fn build_logs_to_logs(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Logs>,
    ) -> anyhow::Result<Arc<dyn Connector<Logs>>> {
        let _ = next;
        unsupported_pair(ctx, SignalKind::Logs, SignalKind::Logs)
    }

    /// Whether it supports `from` → `to`.
    fn supports(&self, from: SignalKind, to: SignalKind) -> bool {
        self.pairs().contains(&(from, to))
    }
}

/// The error a connector builder returns for a pair its connector does not support
/// (configurations that use one are refused when checked, so this is reached only by a defect).
fn unsupported_pair<T>(ctx: &BuildContext, from: SignalKind, to: SignalKind) -> anyhow::Result<T> {
    anyhow::bail!("connector {} does not connect {from} to {to}", ctx.id)
}

/// Builds `config`'s connector for the pair `E` → `R`: one generic entry for the service over
/// the nine per-pair builders.
pub fn build_connector<E: Signal, R: Signal>(
    config: &dyn ConnectorConfig,
    ctx: &BuildContext,
    next: SharedConsumer<R>,
) -> anyhow::Result<Arc<dyn Connector<E>>> {
    // `E` and `R` are each one of the three signals: the match below finds the builder of
    // the pair, and the downcasts only restate types the match has already established.
    let next: Box<dyn Any> = Box::new(next);
    macro_rules! pair {
        ($build:ident, $r:ty) => {{
            let next = *next
                .downcast::<SharedConsumer<$r>>()
                .expect("the receiver side is the matched signal");
            let built: Box<dyn Any> = Box::new(config.$build(ctx, next)?);
            Ok(*built
                .downcast::<Arc<dyn Connector<E>>>()
                .expect("the exporter side is the matched signal"))
        }};
    }
    use SignalKind::{Logs as L, Metrics as M, Traces as T};
    match (E::KIND, R::KIND) {
        (T, T) => pair!(build_traces_to_traces, Traces),
        (T, M) => pair!(build_traces_to_metrics, pipeline::Metrics),
        (T, L) => pair!(build_traces_to_logs, Logs),
        (M, T) => pair!(build_metrics_to_traces, Traces),
        (M, M) => pair!(build_metrics_to_metrics, pipeline::Metrics),
        (M, L) => pair!(build_metrics_to_logs, Logs),
        (L, T) => pair!(build_logs_to_traces, Traces),
        (L, M) => pair!(build_logs_to_metrics, pipeline::Metrics),
        (L, L) => pair!(build_logs_to_logs, Logs),
    }
}

/// The `pairs` and same-signal builders of a connector written once for every signal and
/// connecting each signal to itself (`forward`): each builder calls the config's generic
/// `$build::<S>(ctx, next)`.
macro_rules! connects_every_signal_to_itself {
    ($build:ident) => {
        fn pairs(&self) -> Vec<($crate::pipeline::SignalKind, $crate::pipeline::SignalKind)> {
            $crate::pipeline::SignalKind::ALL
                .into_iter()
                .map(|s| (s, s))
                .collect()
        }

        fn build_traces_to_traces(
            &self,
            ctx: &$crate::component::BuildContext,
            next: $crate::pipeline::SharedConsumer<$crate::pipeline::Traces>,
        ) -> anyhow::Result<
            std::sync::Arc<dyn $crate::component::Connector<$crate::pipeline::Traces>>,
        > {
            self.$build(ctx, next)
        }

        fn build_metrics_to_metrics(
            &self,
            ctx: &$crate::component::BuildContext,
            next: $crate::pipeline::SharedConsumer<$crate::pipeline::Metrics>,
        ) -> anyhow::Result<
            std::sync::Arc<dyn $crate::component::Connector<$crate::pipeline::Metrics>>,
        > {
            self.$build(ctx, next)
        }

        fn build_logs_to_logs(
            &self,
            ctx: &$crate::component::BuildContext,
            next: $crate::pipeline::SharedConsumer<$crate::pipeline::Logs>,
        ) -> anyhow::Result<std::sync::Arc<dyn $crate::component::Connector<$crate::pipeline::Logs>>>
        {
            self.$build(ctx, next)
        }
    };
}
pub(crate) use connects_every_signal_to_itself;

/// An extension's validated configuration.
pub trait ExtensionConfig: fmt::Debug + Send + Sync {
    /// Builds the extension.
    fn build(
        &self,
        ctx: &BuildContext,
        health: crate::telemetry::Health,
    ) -> anyhow::Result<Arc<dyn Lifecycle>>;

    /// The place and policy this extension offers exporters' sending queues
    /// (`file_storage`), if it is a storage extension.
    fn store(&self) -> Option<Store> {
        None
    }

    /// The sides this extension authenticates as configured (`bearertokenauth`, `basicauth`,
    /// `oidc`); empty for extensions that are no authenticator.
    fn authenticator_sides(&self) -> Vec<crate::auth::Side> {
        Vec::new()
    }

    /// Builds the authenticator this extension offers, if it is one. Called once, before
    /// the receivers and exporters that use it are built.
    fn authenticator(
        &self,
        ctx: &BuildContext,
    ) -> anyhow::Result<Option<crate::auth::Authenticator>> {
        let _ = ctx;
        Ok(None)
    }
}

/// What the service needs to build a pipeline of one signal: the builders of that signal and
/// the receivers' slot for it. Implemented for each signal, so pipelines are built by one
/// generic function.
pub trait Wiring: Signal {
    /// Builds `config`'s processor for this signal.
    fn processor(
        config: &dyn ProcessorConfig,
        ctx: &BuildContext,
        next: SharedConsumer<Self>,
    ) -> anyhow::Result<Arc<dyn Processor<Self>>>;

    /// Builds `config`'s exporter for this signal.
    fn exporter(
        config: &dyn ExporterConfig,
        ctx: &BuildContext,
    ) -> anyhow::Result<Arc<dyn Exporter<Self>>>;

    /// Where receivers find this signal's pipelines.
    fn slot(consumers: &mut Consumers) -> &mut Option<SharedConsumer<Self>>;

    /// This signal's pipelines, if the receiver feeds any.
    fn consumer(consumers: &Consumers) -> Option<&SharedConsumer<Self>>;
}

/// The `signals` and per-signal builders of a processor written once for every signal: each
/// builder calls the config's generic `$build::<S>(ctx, next)`.
macro_rules! every_signal {
    ($build:ident) => {
        fn signals(&self) -> $crate::pipeline::Signals {
            $crate::pipeline::Signals::ALL
        }

        fn build_traces(
            &self,
            ctx: &$crate::component::BuildContext,
            next: $crate::pipeline::SharedConsumer<$crate::pipeline::Traces>,
        ) -> anyhow::Result<
            std::sync::Arc<dyn $crate::component::Processor<$crate::pipeline::Traces>>,
        > {
            self.$build(ctx, next)
        }

        fn build_logs(
            &self,
            ctx: &$crate::component::BuildContext,
            next: $crate::pipeline::SharedConsumer<$crate::pipeline::Logs>,
        ) -> anyhow::Result<std::sync::Arc<dyn $crate::component::Processor<$crate::pipeline::Logs>>>
        {
            self.$build(ctx, next)
        }

        fn build_metrics(
            &self,
            ctx: &$crate::component::BuildContext,
            next: $crate::pipeline::SharedConsumer<$crate::pipeline::Metrics>,
        ) -> anyhow::Result<
            std::sync::Arc<dyn $crate::component::Processor<$crate::pipeline::Metrics>>,
        > {
            self.$build(ctx, next)
        }
    };
}
pub(crate) use every_signal;

/// The `signals` and per-signal builders of an exporter written once for every signal: each
/// builder calls the config's generic `$build::<S>(ctx)`.
macro_rules! exports_every_signal {
    ($build:ident) => {
        fn signals(&self) -> $crate::pipeline::Signals {
            $crate::pipeline::Signals::ALL
        }

        fn build_traces(
            &self,
            ctx: &$crate::component::BuildContext,
        ) -> anyhow::Result<std::sync::Arc<dyn $crate::component::Exporter<$crate::pipeline::Traces>>>
        {
            self.$build(ctx)
        }

        fn build_logs(
            &self,
            ctx: &$crate::component::BuildContext,
        ) -> anyhow::Result<std::sync::Arc<dyn $crate::component::Exporter<$crate::pipeline::Logs>>>
        {
            self.$build(ctx)
        }

        fn build_metrics(
            &self,
            ctx: &$crate::component::BuildContext,
        ) -> anyhow::Result<
            std::sync::Arc<dyn $crate::component::Exporter<$crate::pipeline::Metrics>>,
        > {
            self.$build(ctx)
        }
    };
}
pub(crate) use exports_every_signal;

macro_rules! wiring {
    ($signal:ty, $field:ident, $build:ident) => {
        impl Wiring for $signal {
            fn processor(
                config: &dyn ProcessorConfig,
                ctx: &BuildContext,
                next: SharedConsumer<Self>,
            ) -> anyhow::Result<Arc<dyn Processor<Self>>> {
                config.$build(ctx, next)
            }

            fn exporter(
                config: &dyn ExporterConfig,
                ctx: &BuildContext,
            ) -> anyhow::Result<Arc<dyn Exporter<Self>>> {
                config.$build(ctx)
            }

            fn slot(consumers: &mut Consumers) -> &mut Option<SharedConsumer<Self>> {
                &mut consumers.$field
            }

            fn consumer(consumers: &Consumers) -> Option<&SharedConsumer<Self>> {
                consumers.$field.as_ref()
            }
        }
    };
}

wiring!(Traces, traces, build_traces);
wiring!(Logs, logs, build_logs);
wiring!(pipeline::Metrics, metrics, build_metrics);
