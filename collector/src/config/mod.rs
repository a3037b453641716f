//! Loading and checking the YAML configuration.
//!
//! The file has the OpenTelemetry Collector's shape. Loading goes: parse YAML → expand
//! `${env:...}` → check the top-level keys → parse each component's section with its type's
//! config struct → check every pipeline's references. Problems from all steps are gathered and
//! reported together, each with its YAML path and line. The OpenTelemetry Collector's other
//! spellings are rewritten after expansion ([`compat`]); what that rewrite accepts but does
//! not use comes back as notes ([`Config::notes`]), printed by `validate` and logged at start.

pub mod compat;
mod env;
pub mod opaque;
mod position;
mod service;
pub mod sources;
pub mod tls;
pub mod units;
pub mod wildcard;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

use crate::component::{
    ComponentId, ConnectorConfig, ExporterConfig, ExtensionConfig, Problem, ProcessorConfig,
    ReceiverConfig, Validate,
};
use crate::components::{self, Factory};
use crate::pipeline::{SignalKind, Signals};
pub use position::PositionIndex;
pub use service::depths as service_depths;
pub use service::{
    Link, LogsConfig, MetricsConfig, PipelineConfig, ServiceConfig, TelemetryConfig,
};
pub use units::{ByteSize, Duration};

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted YAML path (`processors.batch/x.timeout`).
    pub path: String,
    /// 1-based line, when the path (or an ancestor) is in the file.
    pub line: Option<usize>,
    /// The source the line is in, when the configuration was merged from several (one file
    /// is named by [`ConfigErrors::source`]).
    pub file: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `path: message`; the line is printed by [`ConfigErrors`] as `file:line:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    /// The file the errors are about.
    pub source: String,
    /// The problems, in file order.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} problem{}:",
            self.source,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            let file = e.file.as_deref().unwrap_or(&self.source);
            match e.line {
                Some(line) => writeln!(f, "  {file}:{line}: {e}")?,
                None => writeln!(f, "  {}: {e}", self.source)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Something about an accepted configuration the user should know: an option read in another
/// spelling (info) or accepted and not used (warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigNote {
    /// Info or warning.
    pub level: compat::Level,
    /// The option, its line and what happened to it.
    pub note: ConfigError,
}

impl fmt::Display for ConfigNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            compat::Level::Info => "info",
            compat::Level::Warning => "warning",
        };
        write!(f, "{level}: {}", self.note)
    }
}

/// A fully parsed and checked configuration.
#[derive(Debug)]
pub struct Config {
    /// Receivers by id.
    pub receivers: BTreeMap<ComponentId, Box<dyn ReceiverConfig>>,
    /// Processors by id.
    pub processors: BTreeMap<ComponentId, Box<dyn ProcessorConfig>>,
    /// Exporters by id.
    pub exporters: BTreeMap<ComponentId, Box<dyn ExporterConfig>>,
    /// Extensions by id.
    pub extensions: BTreeMap<ComponentId, Box<dyn ExtensionConfig>>,
    /// Connectors by id.
    pub connectors: BTreeMap<ComponentId, Box<dyn ConnectorConfig>>,
    /// The `service` section.
    pub service: ServiceConfig,
    /// Options read in another spelling, or accepted and not used, in file order.
    pub notes: Vec<ConfigNote>,
    /// The whole configuration as resolved, which a reload compares with the running one.
    pub resolved: sources::Resolved,
}

/// The top level of the file: exactly these keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopLevel {
    #[serde(default)]
    receivers: Option<Mapping>,
    #[serde(default)]
    processors: Option<Mapping>,
    #[serde(default)]
    exporters: Option<Mapping>,
    #[serde(default)]
    extensions: Option<Mapping>,
    #[serde(default)]
    connectors: Option<Mapping>,
    service: Option<Value>,
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            source: source.clone(),
            errors: vec![ConfigError {
                path: String::new(),
                line: None,
                file: None,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Self::parse(&source, &text, &|name| std::env::var(name).ok())
    }

    /// Reads the `--config` sources (paths, `file:`, `env:`, `yaml:`), merges them in order
    /// with the `--set` values last, and checks the result. Errors name a line only when the
    /// configuration is one file.
    pub fn load_sources(sources: &[String], sets: &[String]) -> Result<Self, ConfigErrors> {
        let lookup = |name: &str| std::env::var(name).ok();
        if let [one] = sources
            && sets.is_empty()
            && !one.starts_with("env:")
            && !one.starts_with("yaml:")
        {
            return Self::load(Path::new(one.strip_prefix("file:").unwrap_or(one)));
        }
        let source = sources.join(" + ");
        let fail = |message| ConfigErrors {
            source: source.clone(),
            errors: vec![ConfigError {
                path: String::new(),
                line: None,
                file: None,
                message,
            }],
        };
        let texts = sources::read_all(sources, &lookup).map_err(fail)?;
        let merged = sources::resolve_texts(&texts, sets).map_err(fail)?;
        let mut loader = Loader {
            index: Index::Merged(
                texts
                    .iter()
                    .map(|(name, text)| (name.clone(), PositionIndex::build(text)))
                    .collect(),
            ),
            errors: Vec::new(),
            bad_references: Vec::new(),
            notes: Vec::new(),
        };
        let config = loader.load_value(merged, &lookup);
        loader.finish(&source, config)
    }

    /// The merged `--config` sources and `--set` values with `${...}` expanded and secrets
    /// redacted, as YAML: what `wasmcol print-config` shows.
    pub fn print_sources(sources: &[String], sets: &[String]) -> Result<String, String> {
        let lookup = |name: &str| std::env::var(name).ok();
        let mut merged = sources::resolve(sources, sets, &lookup)?;
        let mut problems = Vec::new();
        env::expand(&mut merged, "", &lookup, &mut problems);
        if !problems.is_empty() {
            return Err(problems
                .into_iter()
                .map(|(path, msg)| format!("{path}: {msg}"))
                .collect::<Vec<_>>()
                .join("\n"));
        }
        sources::redact(&mut merged);
        serde_yaml_ng::to_string(&merged).map_err(|e| e.to_string())
    }

    /// Parses and checks `text`; `source` names it in errors, `lookup` resolves `${env:...}`.
    pub fn parse(
        source: &str,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        let mut loader = Loader {
            index: Index::One(PositionIndex::build(text)),
            errors: Vec::new(),
            bad_references: Vec::new(),
            notes: Vec::new(),
        };
        let config = loader.load(text, lookup);
        loader.finish(source, config)
    }
}

/// Where a YAML path is: in the one file, or in the last of several merged sources that has
/// it (the one whose value won).
enum Index {
    One(PositionIndex),
    Merged(Vec<(String, PositionIndex)>),
}

impl Index {
    /// The source (when merged) and line of `path`, or of its nearest ancestor found.
    fn locate(&self, path: &str) -> (Option<String>, Option<usize>) {
        match self {
            Index::One(index) => (None, index.line_of(path)),
            Index::Merged(sources) => {
                let mut p = path;
                loop {
                    for (name, index) in sources.iter().rev() {
                        if let Some(line) = index.exact(p) {
                            return (Some(name.clone()), Some(line));
                        }
                    }
                    match p.rfind(['.', '[']) {
                        Some(cut) => p = &p[..cut],
                        None => return (None, None),
                    }
                }
            }
        }
    }
}

struct Loader {
    index: Index,
    errors: Vec<ConfigError>,
    /// Paths whose `${...}` reference was malformed: already reported, so later checks of
    /// the unexpanded value are not.
    bad_references: Vec<String>,
    /// Infos and warnings from the compatibility rewrite.
    notes: Vec<ConfigNote>,
}

impl Loader {
    fn finish(self, source: &str, config: Option<Config>) -> Result<Config, ConfigErrors> {
        let mut errors = self.errors;
        if errors.is_empty()
            && let Some(mut c) = config
        {
            c.notes = self.notes;
            c.notes.sort_by_key(|n| n.note.line.unwrap_or(usize::MAX));
            return Ok(c);
        }
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(ConfigErrors {
            source: source.to_string(),
            errors,
        })
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        if self.bad_references.contains(&path) {
            return;
        }
        let (file, line) = self.index.locate(&path);
        self.errors.push(ConfigError {
            line,
            file,
            path,
            message: message.into(),
        });
    }

    fn load(&mut self, text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<Config> {
        let root: Value = match serde_yaml_ng::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.errors.push(ConfigError {
                    path: String::new(),
                    line: e.location().map(|l| l.line()),
                    file: None,
                    message: format!("not valid YAML: {e}"),
                });
                return None;
            }
        };
        self.load_value(root, lookup)
    }

    fn load_value(
        &mut self,
        mut root: Value,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Config> {
        let mut env_problems = Vec::new();
        env::expand(&mut root, "", lookup, &mut env_problems);
        for (path, msg) in env_problems {
            self.error(path.clone(), msg);
            self.bad_references.push(path);
        }
        for r in compat::rewrite(&mut root) {
            if r.error {
                self.error(r.path, r.message);
            } else {
                self.notes.push(ConfigNote {
                    level: r.level,
                    note: {
                        let (file, line) = self.index.locate(&r.path);
                        ConfigError {
                            line,
                            file,
                            path: r.path,
                            message: r.message,
                        }
                    },
                });
            }
        }
        if root.is_null() {
            self.error(
                "",
                "the file is empty: it needs at least `service.pipelines`",
            );
            return None;
        }
        let resolved = sources::Resolved(root.clone());
        let top: TopLevel = match deserialize_at(root) {
            Ok(t) => t,
            Err(problems) => {
                for p in problems {
                    self.error(p.path, p.message);
                }
                return None;
            }
        };
        let receivers = self.components("receivers", top.receivers, components::RECEIVERS);
        let processors = self.components("processors", top.processors, components::processors());
        let exporters = self.components("exporters", top.exporters, components::EXPORTERS);
        let extensions = self.components("extensions", top.extensions, components::EXTENSIONS);
        let connectors = self.components("connectors", top.connectors, components::CONNECTORS);
        // A pipeline names receivers and connectors in one list (exporters likewise), so an
        // id may not be both.
        for id in &connectors.keys {
            for (what, keys) in [
                ("a receiver", &receivers.keys),
                ("an exporter", &exporters.keys),
            ] {
                if keys.contains(id) {
                    self.error(
                        format!("connectors.{id}"),
                        format!(
                            "ambiguous id: \"{id}\" is both {what} and a connector; rename one (e.g. the connector to \"{id}/connector\")"
                        ),
                    );
                }
            }
        }
        let service = match top.service {
            None => {
                self.error("service", "missing: the file needs `service.pipelines`");
                None
            }
            Some(v) => match deserialize_at::<ServiceConfig>(v) {
                Ok(s) => Some(s),
                Err(problems) => {
                    for p in problems {
                        self.error(join("service", &p.path), p.message);
                    }
                    None
                }
            },
        };
        let service = service?;
        for p in service.check_references(
            &receivers.keys,
            &processors.keys,
            &exporters.keys,
            &extensions.keys,
            &connectors.keys,
        ) {
            self.error(join("service", &p.path), p.message);
        }
        if let Some(exporters) = &exporters.built {
            for (id, exporter) in exporters {
                let Some(storage) = exporter.storage() else {
                    continue;
                };
                let path = format!("exporters.{id}.sending_queue.storage");
                if !extensions.keys.contains(&storage) {
                    self.error(
                        path,
                        format!("extension \"{storage}\" is not defined in the extensions section"),
                    );
                } else if !service.extensions.iter().any(|e| *e == storage.to_string()) {
                    self.error(
                        path,
                        format!(
                            "extension \"{storage}\" is not enabled: add it to service.extensions"
                        ),
                    );
                }
            }
        }
        self.check_signals(&receivers, &processors, &exporters, &service);
        self.check_connectors(&connectors, &service);
        self.check_authenticators(&receivers, &exporters, &extensions, &service);
        Some(Config {
            receivers: receivers.built?,
            processors: processors.built?,
            exporters: exporters.built?,
            extensions: extensions.built?,
            connectors: connectors.built?,
            service,
            notes: Vec::new(),
            resolved,
        })
    }

    /// Checks that every component a pipeline lists supports the pipeline's signal.
    fn check_signals(
        &mut self,
        receivers: &Section<dyn ReceiverConfig>,
        processors: &Section<dyn ProcessorConfig>,
        exporters: &Section<dyn ExporterConfig>,
        service: &ServiceConfig,
    ) {
        for (name, p) in &service.pipelines {
            let Some(signal) = ComponentId::parse(name)
                .ok()
                .and_then(|id| crate::pipeline::SignalKind::from_name(&id.type_name))
            else {
                continue;
            };
            let supported = |what: &str, id: &ComponentId| -> Option<Signals> {
                match what {
                    "receiver" => receivers.built.as_ref()?.get(id).map(|c| c.signals()),
                    "processor" => processors.built.as_ref()?.get(id).map(|c| c.signals()),
                    _ => exporters.built.as_ref()?.get(id).map(|c| c.signals()),
                }
            };
            let because = |what: &str, id: &ComponentId| -> Option<String> {
                match what {
                    "processor" => processors
                        .built
                        .as_ref()?
                        .get(id)?
                        .unsupported_because(signal),
                    _ => None,
                }
            };
            let lists = [
                ("receiver", &p.receivers),
                ("processor", &p.processors),
                ("exporter", &p.exporters),
            ];
            for (what, list) in lists {
                for (i, component) in list.iter().enumerate() {
                    let Some(supported) = ComponentId::parse(component)
                        .ok()
                        .and_then(|id| supported(what, &id))
                    else {
                        continue;
                    };
                    if !supported.contains(signal) {
                        let because = ComponentId::parse(component)
                            .ok()
                            .and_then(|id| because(what, &id))
                            .map(|why| format!(": {why}"))
                            .unwrap_or_default();
                        self.error(
                            format!("service.pipelines.{name}.{what}s[{i}]"),
                            format!(
                                "{what} {component:?} does not support {signal} (it supports \
                                 {}){because}",
                                supported.names()
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Checks how pipelines use connectors, as the OpenTelemetry Collector does: each signal
    /// a connector takes as an exporter must reach a pipeline it is a receiver of through a
    /// pair it supports, and each signal it is a receiver for must come from a pipeline it is
    /// an exporter of; and no pipeline may feed itself through connectors.
    fn check_connectors(
        &mut self,
        connectors: &Section<dyn ConnectorConfig>,
        service: &ServiceConfig,
    ) {
        let Some(built) = &connectors.built else {
            return;
        };
        let pairs_of = |id: &ComponentId| built.get(id).map(|c| c.pairs());
        for (id, connector) in built {
            let name = id.to_string();
            let pairs = connector.pairs();
            let uses =
                |list: fn(&PipelineConfig) -> &Vec<String>| -> Vec<(String, usize, SignalKind)> {
                    service
                        .pipelines
                        .iter()
                        .filter_map(|(pname, p)| {
                            let i = list(p).iter().position(|n| *n == name)?;
                            Some((pname.clone(), i, service::pipeline_signal(pname)?))
                        })
                        .collect()
                };
            let as_exporter = uses(|p| &p.exporters);
            let as_receiver = uses(|p| &p.receivers);
            let connects = pairs
                .iter()
                .map(|(a, b)| format!("{a} to {b}"))
                .collect::<Vec<_>>()
                .join(", ");
            let listed = |uses: &[(String, usize, SignalKind)]| {
                uses.iter()
                    .map(|(p, _, _)| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut reported = Vec::new();
            for (pname, i, signal) in &as_exporter {
                if reported.contains(signal)
                    || as_receiver
                        .iter()
                        .any(|(_, _, r)| pairs.contains(&(*signal, *r)))
                {
                    continue;
                }
                reported.push(*signal);
                let message = if as_receiver.is_empty() {
                    format!(
                        "connector {name:?} is used as an exporter in {signal} pipeline {pname:?} but as a receiver in no pipeline: it connects {connects}"
                    )
                } else {
                    format!(
                        "connector {name:?} is used as an exporter in {signal} pipeline {pname:?} but in no pipeline it can feed: it connects {connects}, and is a receiver of {}",
                        listed(&as_receiver)
                    )
                };
                self.error(format!("service.pipelines.{pname}.exporters[{i}]"), message);
            }
            let mut reported = Vec::new();
            for (pname, i, signal) in &as_receiver {
                if reported.contains(signal)
                    || as_exporter
                        .iter()
                        .any(|(_, _, e)| pairs.contains(&(*e, *signal)))
                {
                    continue;
                }
                reported.push(*signal);
                let message = if as_exporter.is_empty() {
                    format!(
                        "connector {name:?} is used as a receiver in {signal} pipeline {pname:?} but as an exporter in no pipeline: it connects {connects}"
                    )
                } else {
                    format!(
                        "connector {name:?} is used as a receiver in {signal} pipeline {pname:?} but in no pipeline it can take data from: it connects {connects}, and is an exporter of {}",
                        listed(&as_exporter)
                    )
                };
                self.error(format!("service.pipelines.{pname}.receivers[{i}]"), message);
            }
        }
        let links = service.links(&pairs_of);
        if let Some(cycle) = service::find_cycle(&links) {
            self.error(
                format!("service.pipelines.{}", cycle[0].from),
                format!(
                    "pipelines feed themselves through connectors: {}",
                    service::describe_cycle(&cycle)
                ),
            );
        }
    }

    /// Checks every `auth.authenticator`: it names a defined, enabled extension that
    /// authenticates on the right side (server for receivers, client for exporters).
    fn check_authenticators(
        &mut self,
        receivers: &Section<dyn ReceiverConfig>,
        exporters: &Section<dyn ExporterConfig>,
        extensions: &Section<dyn ExtensionConfig>,
        service: &ServiceConfig,
    ) {
        use crate::auth::{Side, check_reference};
        let defined = |id: &ComponentId| -> Option<Vec<Side>> {
            if !extensions.keys.contains(id) {
                return None;
            }
            // A declared extension whose own config is broken was reported already.
            Some(match &extensions.built {
                Some(b) => b
                    .get(id)
                    .map(|e| e.authenticator_sides())
                    .unwrap_or_default(),
                None => vec![Side::Server, Side::Client],
            })
        };
        let mut refs: Vec<(String, String, Side)> = Vec::new();
        for (id, r) in receivers.built.iter().flatten() {
            for (path, name) in r.authenticators() {
                refs.push((format!("receivers.{id}.{path}"), name, Side::Server));
            }
        }
        for (id, e) in exporters.built.iter().flatten() {
            for (path, name) in e.authenticators() {
                refs.push((format!("exporters.{id}.{path}"), name, Side::Client));
            }
        }
        for (path, name, side) in refs {
            if let Some(msg) = check_reference(&name, side, &defined, &service.extensions) {
                self.error(path, msg);
            }
        }
    }

    /// Parses one section (`receivers`, ...). `keys` holds every id that was declared, even
    /// those whose config is broken, so references to them are not reported twice.
    fn components<C: ?Sized + 'static>(
        &mut self,
        section: &str,
        map: Option<Mapping>,
        factories: &'static [Factory<C>],
    ) -> Section<C> {
        let mut keys = Vec::new();
        let mut built = Some(BTreeMap::new());
        for (key, value) in map.unwrap_or_default() {
            let Some(key) = key.as_str().map(str::to_string) else {
                self.error(
                    section,
                    format!("component ids must be strings, got {key:?}"),
                );
                built = None;
                continue;
            };
            let path = format!("{section}.{key}");
            let id = match ComponentId::parse(&key) {
                Ok(id) => id,
                Err(msg) => {
                    self.error(&path, msg);
                    built = None;
                    continue;
                }
            };
            keys.push(id.clone());
            let Some(factory) = factories.iter().find(|f| f.type_name == id.type_name) else {
                if let Some(instead) = compat::missing(section, &id.type_name) {
                    self.error(&path, instead);
                    built = None;
                    continue;
                }
                let known: Vec<_> = factories.iter().map(|f| f.type_name).collect();
                self.error(
                    &path,
                    format!(
                        "unknown {} type {:?}; known types: {}",
                        singular(section),
                        id.type_name,
                        known.join(", ")
                    ),
                );
                built = None;
                continue;
            };
            match (factory.parse)(value) {
                Ok(cfg) => {
                    if let Some(b) = built.as_mut() {
                        b.insert(id, cfg);
                    }
                }
                Err(problems) => {
                    for p in problems {
                        self.error(join(&path, &p.path), p.message);
                    }
                    built = None;
                }
            }
        }
        Section { keys, built }
    }
}

struct Section<C: ?Sized> {
    keys: Vec<ComponentId>,
    built: Option<BTreeMap<ComponentId, Box<C>>>,
}

fn singular(section: &str) -> &str {
    section.strip_suffix('s').unwrap_or(section)
}

fn join(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (_, true) => parent.to_string(),
        (true, false) => child.to_string(),
        (false, false) if child.starts_with('[') => format!("{parent}{child}"),
        _ => format!("{parent}.{child}"),
    }
}

/// Deserializes `value` into `T`, turning a serde error into a [`Problem`] with the path of
/// the offending field. An empty section (`otlp:` with nothing under it) means all defaults.
fn deserialize_at<T: DeserializeOwned>(value: Value) -> Result<T, Vec<Problem>> {
    let value = if value.is_null() {
        Value::Mapping(Mapping::new())
    } else {
        value
    };
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        // For unknown fields the path already ends at the offending key.
        let message = e.inner().to_string();
        vec![Problem::new(path, message)]
    })
}

/// Parses a component's section into its config type and validates it.
pub fn parse_component<T: DeserializeOwned + Validate>(value: Value) -> Result<T, Vec<Problem>> {
    let cfg: T = deserialize_at(value)?;
    let problems = cfg.validate();
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(problems)
    }
}
