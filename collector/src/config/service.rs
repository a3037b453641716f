//! The `service` section: which components run, wired into which pipelines.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::units::Duration;
use crate::component::{ComponentId, Problem};
use crate::pipeline::SignalKind;

/// `service:`: pipelines, extensions and the collector's own telemetry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Extensions to start, by id.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Pipelines by id: `traces`, `metrics` or `logs`, alone or followed by `/NAME`.
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// Logs and metrics about the collector itself.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// How long SIGTERM/SIGINT waits for in-flight data to drain before exiting anyway.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Duration,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One pipeline: receivers fan in, processors run in order, exporters fan out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Receiver ids feeding this pipeline.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Processor ids, applied in this order.
    #[serde(default)]
    pub processors: Vec<String>,
    /// Exporter ids, each receiving every batch.
    #[serde(default)]
    pub exporters: Vec<String>,
}

/// `service.telemetry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's log output.
    #[serde(default)]
    pub logs: LogsConfig,
    /// The collector's own metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `service.telemetry.logs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// `debug`, `info`, `warn` or `error`; `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
    /// `console` (human-readable) or `json` (one object per line).
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// Where logs go: `stderr` (default) or `stdout`; the first is used.
    #[serde(default = "default_output_paths")]
    pub output_paths: Vec<String>,
}

fn default_output_paths() -> Vec<String> {
    vec!["stderr".into()]
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            level: default_level(),
            encoding: default_encoding(),
            output_paths: default_output_paths(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}
fn default_encoding() -> String {
    "console".into()
}

/// `service.telemetry.metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` serving Prometheus text at `/metrics`; `none` turns it off.
    #[serde(default = "default_metrics_address")]
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            address: default_metrics_address(),
        }
    }
}

fn default_metrics_address() -> String {
    "localhost:8888".into()
}

/// The signals a pipeline id may name.
const SIGNALS: &[&str] = &["traces", "metrics", "logs", "profiles"];

impl ServiceConfig {
    /// Checks pipeline ids, references to components, and telemetry values. Paths are
    /// relative to `service`.
    pub fn check_references(
        &self,
        receivers: &[ComponentId],
        processors: &[ComponentId],
        exporters: &[ComponentId],
        extensions: &[ComponentId],
        connectors: &[ComponentId],
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        // A pipeline's receivers and exporters may be connectors too.
        let receivers = &[receivers, connectors].concat();
        let exporters = &[exporters, connectors].concat();
        if self.pipelines.is_empty() {
            problems.push(Problem::new(
                "pipelines",
                "no pipeline is defined: add at least one (`traces`, `metrics` or `logs`) with receivers and exporters",
            ));
        }
        check_list(
            &mut problems,
            "extensions",
            &self.extensions,
            extensions,
            "extension",
            true,
        );
        for (name, p) in &self.pipelines {
            let path = format!("pipelines.{name}");
            match ComponentId::parse(name) {
                Ok(id) if SignalKind::from_name(&id.type_name).is_some() => {}
                Ok(id) if SIGNALS.contains(&id.type_name.as_str()) => problems.push(Problem::new(
                    &path,
                    format!(
                        "{} pipelines are not supported yet: wasmcol handles traces, metrics and logs",
                        id.type_name
                    ),
                )),
                _ => problems.push(Problem::new(
                    &path,
                    format!(
                        "invalid pipeline id {name:?}: expected traces, metrics or logs, alone or \
                         followed by /NAME"
                    ),
                )),
            }
            check_list(
                &mut problems,
                &format!("{path}.receivers"),
                &p.receivers,
                receivers,
                "receiver",
                false,
            );
            check_list(
                &mut problems,
                &format!("{path}.processors"),
                &p.processors,
                processors,
                "processor",
                true,
            );
            check_list(
                &mut problems,
                &format!("{path}.exporters"),
                &p.exporters,
                exporters,
                "exporter",
                false,
            );
        }
        if !matches!(
            self.telemetry.logs.level.as_str(),
            "debug" | "info" | "warn" | "error"
        ) {
            problems.push(Problem::new(
                "telemetry.logs.level",
                format!(
                    "expected one of debug, info, warn, error, got {:?}",
                    self.telemetry.logs.level
                ),
            ));
        }
        if !matches!(self.telemetry.logs.encoding.as_str(), "console" | "json") {
            problems.push(Problem::new(
                "telemetry.logs.encoding",
                format!(
                    "expected console or json, got {:?}",
                    self.telemetry.logs.encoding
                ),
            ));
        }
        for (i, p) in self.telemetry.logs.output_paths.iter().enumerate() {
            if p != "stderr" && p != "stdout" {
                problems.push(Problem::new(
                    format!("telemetry.logs.output_paths[{i}]"),
                    format!("expected stderr or stdout, got {p:?}"),
                ));
            }
        }
        let addr = &self.telemetry.metrics.address;
        if addr != "none" && crate::net::check_endpoint(addr).is_err() {
            problems.push(Problem::new(
                "telemetry.metrics.address",
                format!("expected host:port or none, got {addr:?}"),
            ));
        }
        if self.shutdown_timeout.is_zero() {
            problems.push(Problem::new("shutdown_timeout", "must be greater than 0"));
        }
        problems
    }
}

/// The signal of a pipeline id (`traces`, `logs/2`), if it names one.
pub fn pipeline_signal(pipeline: &str) -> Option<SignalKind> {
    SignalKind::from_name(&ComponentId::parse(pipeline).ok()?.type_name)
}

/// One way data goes from a pipeline to another: `from` lists `connector` as an exporter,
/// `to` lists it as a receiver, and the connector supports the pair of their signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The pipeline the connector is an exporter of.
    pub from: String,
    /// The connector.
    pub connector: ComponentId,
    /// The pipeline the connector is a receiver of.
    pub to: String,
}

/// A connector's supported (exporter side, receiver side) signal pairs.
pub type Pairs = Vec<(SignalKind, SignalKind)>;

impl ServiceConfig {
    /// Every link between pipelines through a connector; `pairs` gives a connector's
    /// supported (exporter side, receiver side) signal pairs, `None` for an id that is no
    /// connector.
    pub fn links(&self, pairs: &dyn Fn(&ComponentId) -> Option<Pairs>) -> Vec<Link> {
        let mut links = Vec::new();
        for (from, p) in &self.pipelines {
            let Some(from_signal) = pipeline_signal(from) else {
                continue;
            };
            for name in &p.exporters {
                let Ok(id) = ComponentId::parse(name) else {
                    continue;
                };
                let Some(pairs) = pairs(&id) else {
                    continue;
                };
                for (to, q) in &self.pipelines {
                    let Some(to_signal) = pipeline_signal(to) else {
                        continue;
                    };
                    if q.receivers.contains(name) && pairs.contains(&(from_signal, to_signal)) {
                        links.push(Link {
                            from: from.clone(),
                            connector: id.clone(),
                            to: to.clone(),
                        });
                    }
                }
            }
        }
        links
    }
}

/// A chain of links that ends where it starts, if there is one.
pub fn find_cycle(links: &[Link]) -> Option<Vec<Link>> {
    // Depth-first from each pipeline in turn; `path` is the chain being followed.
    fn visit(at: &str, links: &[Link], path: &mut Vec<Link>, done: &mut Vec<String>) -> bool {
        for link in links.iter().filter(|l| l.from == at) {
            if let Some(start) = path.iter().position(|l| l.from == link.to) {
                path.drain(..start);
                path.push(link.clone());
                return true;
            }
            if link.to == at {
                path.clear();
                path.push(link.clone());
                return true;
            }
            if done.contains(&link.to) {
                continue;
            }
            path.push(link.clone());
            if visit(&link.to, links, path, done) {
                return true;
            }
            path.pop();
        }
        done.push(at.to_string());
        false
    }
    let mut done = Vec::new();
    let mut starts: Vec<&String> = links.iter().map(|l| &l.from).collect();
    starts.dedup();
    for start in starts {
        let mut path = Vec::new();
        if !done.contains(start) && visit(start, links, &mut path, &mut done) {
            return Some(path);
        }
    }
    None
}

/// `pipeline "a" → connector "c" → pipeline "b" → ... → pipeline "a"`.
pub fn describe_cycle(cycle: &[Link]) -> String {
    let mut out = format!("pipeline {:?}", cycle[0].from);
    for link in cycle {
        out.push_str(&format!(
            " → connector \"{}\" → pipeline {:?}",
            link.connector, link.to
        ));
    }
    out
}

/// Each pipeline's depth along the links (0 for one no connector feeds; otherwise one more
/// than the deepest pipeline feeding it). The links must have no cycle.
pub fn depths<'a>(
    pipelines: impl IntoIterator<Item = &'a String>,
    links: &[Link],
) -> BTreeMap<String, usize> {
    let mut depth: BTreeMap<String, usize> =
        pipelines.into_iter().map(|p| (p.clone(), 0)).collect();
    // Longest paths in a graph without cycles: relaxing every link as many times as there are
    // pipelines is enough.
    for _ in 0..depth.len() {
        let mut changed = false;
        for l in links {
            let d = depth.get(&l.from).copied().unwrap_or(0) + 1;
            let to = depth.entry(l.to.clone()).or_insert(0);
            if *to < d {
                *to = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

fn check_list(
    problems: &mut Vec<Problem>,
    path: &str,
    names: &[String],
    defined: &[ComponentId],
    what: &str,
    may_be_empty: bool,
) {
    if names.is_empty() && !may_be_empty {
        problems.push(Problem::new(
            path,
            format!("a pipeline needs at least one {what}"),
        ));
    }
    for (i, name) in names.iter().enumerate() {
        let item = format!("{path}[{i}]");
        if names[..i].contains(name) {
            problems.push(Problem::new(
                &item,
                format!("{what} {name:?} is listed twice"),
            ));
            continue;
        }
        match ComponentId::parse(name) {
            Ok(id) if defined.contains(&id) => {}
            Ok(_) => problems.push(Problem::new(
                &item,
                format!("{what} {name:?} is not defined in the {what}s section"),
            )),
            Err(msg) => problems.push(Problem::new(&item, msg)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pipelines` as (id, receivers, exporters); every id starting with `fwd` is a
    /// connector of each signal to itself, `sm` one of traces to metrics.
    fn service(pipelines: &[(&str, &[&str], &[&str])]) -> ServiceConfig {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        ServiceConfig {
            extensions: Vec::new(),
            pipelines: pipelines
                .iter()
                .map(|(id, r, e)| {
                    let p = PipelineConfig {
                        receivers: list(r),
                        processors: Vec::new(),
                        exporters: list(e),
                    };
                    (id.to_string(), p)
                })
                .collect(),
            telemetry: TelemetryConfig::default(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }

    fn pairs(id: &ComponentId) -> Option<Pairs> {
        match id.type_name.as_str() {
            "fwd" => Some(SignalKind::ALL.into_iter().map(|s| (s, s)).collect()),
            "sm" => Some(vec![(SignalKind::Traces, SignalKind::Metrics)]),
            _ => None,
        }
    }

    #[test]
    fn links_follow_supported_pairs_only() {
        let s = service(&[
            ("traces", &["otlp"], &["sm", "fwd", "nop"]),
            ("metrics", &["sm", "fwd"], &["nop"]),
            ("logs", &["sm"], &["nop"]),
            ("traces/2", &["fwd"], &["nop"]),
        ]);
        let links: Vec<(String, String, String)> = s
            .links(&pairs)
            .into_iter()
            .map(|l| (l.from, l.connector.to_string(), l.to))
            .collect();
        let want = [("traces", "sm", "metrics"), ("traces", "fwd", "traces/2")]
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
        assert_eq!(links, want);
    }

    #[test]
    fn a_diamond_is_no_cycle_and_its_depths_are_the_longest_paths() {
        // traces → a, b; a → b; a, b → metrics.
        let s = service(&[
            ("traces", &["otlp"], &["fwd/a", "fwd/b"]),
            ("traces/a", &["fwd/a"], &["fwd/b", "sm"]),
            ("traces/b", &["fwd/b"], &["sm"]),
            ("metrics", &["sm"], &["nop"]),
        ]);
        let links = s.links(&pairs);
        assert_eq!(find_cycle(&links), None);
        let d = depths(s.pipelines.keys(), &links);
        let got: Vec<(&str, usize)> = d.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            got,
            [
                ("metrics", 3),
                ("traces", 0),
                ("traces/a", 1),
                ("traces/b", 2)
            ]
        );
    }

    #[test]
    fn cycles_are_found_and_described() {
        let s = service(&[("traces", &["otlp", "fwd"], &["fwd"])]);
        let cycle = find_cycle(&s.links(&pairs)).unwrap();
        assert_eq!(
            describe_cycle(&cycle),
            r#"pipeline "traces" → connector "fwd" → pipeline "traces""#
        );
        let s = service(&[
            ("logs", &["otlp"], &["nop"]),
            ("traces", &["otlp", "fwd/c"], &["fwd/a"]),
            ("traces/a", &["fwd/a"], &["fwd/b"]),
            ("traces/b", &["fwd/b"], &["fwd/c"]),
        ]);
        let cycle = find_cycle(&s.links(&pairs)).unwrap();
        assert_eq!(
            describe_cycle(&cycle),
            r#"pipeline "traces" → connector "fwd/a" → pipeline "traces/a" → connector "fwd/b" → pipeline "traces/b" → connector "fwd/c" → pipeline "traces""#
        );
    }
}
