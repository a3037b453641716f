//! Trace analyser plugins (the `wasmcol:plugin/analyser` world): loading, one sandboxed
//! instance analysing batches of complete traces, and the runner that calls it with the
//! failure handling of policy plugins (a failed call is counted, logged and skipped; the
//! instance is replaced; repeated failures pause the plugin). The `trace_analysis` connector
//! owns the buffer and the findings; this is only the call into the guest.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::AnyValue;
use prometheus_client::metrics::counter::Counter;
use wasmcol_plugin_sdk::analyser;
use wasmcol_plugin_sdk::policy::TraceSummary;
use wasmtime::Store;

use super::bindings::analyser::AnalyserPre;
use super::bindings::analyser::exports::wasmcol::plugin::analysis as wit;
use super::bindings::{self, CURRENT_VERSION};
use super::host::{HostState, Services};
use super::instance::{CallError, Deadline, classify, new_store, too_large, value};
use super::limits::Limits;
use super::plugin::{StartupError, compile};
use super::supervised::{Instance, Supervised, check_config};
use crate::telemetry::log_limited;

/// Most attributes one finding may carry.
const MAX_ATTRIBUTES: usize = 64;

/// A compiled and linked analyser plugin, ready to instantiate.
pub struct LoadedAnalyser {
    /// `builtin:NAME` or the file path, for messages.
    pub source: String,
    pre: AnalyserPre<HostState>,
}

impl std::fmt::Debug for LoadedAnalyser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedAnalyser")
            .field("source", &self.source)
            .finish()
    }
}

impl LoadedAnalyser {
    /// Loads `source`: `builtin:NAME` or a path to a `.wasm` component.
    pub fn load(source: &str) -> Result<Self, String> {
        let (linked, version) = compile(source)?;
        if let Some(v) = version.as_deref()
            && v != CURRENT_VERSION
        {
            return Err(format!(
                "{source:?} was built for wasmcol:plugin@{v}; trace analyser plugins must be \
                 built for wasmcol:plugin@{CURRENT_VERSION}: rebuild it with the current \
                 wasmcol-plugin-sdk"
            ));
        }
        let pre = AnalyserPre::new(linked).map_err(|e| {
            format!(
                "{source:?} is not a trace analyser plugin (it does not implement the \
                 wasmcol:plugin/analyser world): {e:#}"
            )
        })?;
        Ok(Self {
            source: source.to_string(),
            pre,
        })
    }

    /// Instantiates the plugin once and hands it its configuration, as start-up will.
    pub fn check_config(&self, config_json: &str, limits: &Limits) -> Result<(), StartupError> {
        check_config::<AnalyserInstance>(self, &self.source, config_json, limits)
    }
}

/// One finding of a plugin, checked: indices in range, the pattern short.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginFinding {
    /// The trace, by index into the traces of the call.
    pub trace: usize,
    /// What was found.
    pub pattern: String,
    /// The span it is about, numbered within its trace.
    pub anchor: usize,
    /// The spans involved, numbered within the trace.
    pub spans: Vec<usize>,
    /// How bad.
    pub magnitude: u32,
    /// Attributes for the anchor span.
    pub attributes: Vec<(String, AnyValue)>,
}

/// A live analyser instance.
pub struct AnalyserInstance {
    store: Store<HostState>,
    bindings: bindings::analyser::Analyser,
    deadline: Deadline,
    max_output: usize,
}

impl Instance for AnalyserInstance {
    type Plugin = LoadedAnalyser;
    const KIND: &'static str = "analyser";

    /// Instantiates `analyser` and calls its `init` with `config_json`.
    fn instantiate(
        analyser: &LoadedAnalyser,
        services: Arc<Services>,
        limits: &Limits,
        config_json: &str,
    ) -> Result<Self, CallError> {
        let (mut store, deadline) = new_store(services, limits)?;
        let bindings = analyser
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, e))?;
        bindings
            .wasmcol_plugin_analysis()
            .call_init(&mut store, config_json)
            .map_err(|e| classify(&store, e))?
            .map_err(CallError::Rejected)?;
        Ok(Self {
            store,
            bindings,
            deadline,
            max_output: limits.max_output_bytes.0 as usize,
        })
    }

    fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory_bytes
    }
}

impl AnalyserInstance {
    /// Analyses the traces of `batch` (their `TracesData`; `counts[i]` resource spans of
    /// trace `i`, `spans[i]` spans). Every finding is checked; one out of range fails the
    /// call.
    pub fn analyse(
        &mut self,
        batch: &[u8],
        summaries: &[TraceSummary],
        counts: &[u32],
        spans: &[u32],
    ) -> Result<Vec<PluginFinding>, CallError> {
        let traces: Vec<wit::TraceSummary> = summaries
            .iter()
            .zip(counts)
            .map(|(s, &n)| to_wit(s, n))
            .collect();
        self.deadline.arm(&mut self.store);
        let answer = self
            .bindings
            .wasmcol_plugin_analysis()
            .call_analyse(&mut self.store, batch, &traces)
            .map_err(|e| classify(&self.store, e))?
            .map_err(CallError::Failed)?;
        let mut size = 0usize;
        answer
            .into_iter()
            .map(|f| {
                size += 16 + f.pattern.len() + 4 * f.spans.len();
                if size > self.max_output {
                    return Err(too_large(size, self.max_output));
                }
                check(f, spans, &mut size)
            })
            .collect()
    }
}

fn check(f: wit::Finding, spans: &[u32], size: &mut usize) -> Result<PluginFinding, CallError> {
    let invalid = |m: String| Err(CallError::InvalidOutput(m));
    let Some(&n) = spans.get(f.trace as usize) else {
        return invalid(format!(
            "finding {:?} names trace {} of a call with {} traces",
            f.pattern,
            f.trace,
            spans.len()
        ));
    };
    if let Err(message) = analyser::check_parts(&f.pattern, f.anchor, &f.spans, n) {
        return invalid(message);
    }
    if f.attributes.len() > MAX_ATTRIBUTES {
        return invalid(format!(
            "finding {:?} has {} attributes, at most {MAX_ATTRIBUTES} are allowed",
            f.pattern,
            f.attributes.len()
        ));
    }
    let mut attributes = Vec::with_capacity(f.attributes.len());
    for (key, v) in f.attributes {
        *size += key.len();
        let v = value(v, size, || {
            format!("attribute {key:?} of finding {:?}", f.pattern)
        })?;
        attributes.push((key, v.into_any_value()));
    }
    Ok(PluginFinding {
        trace: f.trace as usize,
        pattern: f.pattern,
        anchor: f.anchor as usize,
        spans: f.spans.into_iter().map(|s| s as usize).collect(),
        magnitude: f.magnitude,
        attributes,
    })
}

fn to_wit(s: &TraceSummary, resource_spans: u32) -> wit::TraceSummary {
    let hi = u64::from_be_bytes(s.trace_id[..8].try_into().expect("8 bytes"));
    let lo = u64::from_be_bytes(s.trace_id[8..].try_into().expect("8 bytes"));
    wit::TraceSummary {
        trace_id: (hi, lo),
        resource_spans,
        span_count: s.span_count,
        encoded_bytes: s.encoded_bytes,
        start_unix_nano: s.start_unix_nano,
        end_unix_nano: s.end_unix_nano,
        has_root: s.has_root,
        error_spans: s.error_spans,
        ok_spans: s.ok_spans,
        service_name: s.service_name.clone(),
        first_seen_unix_nano: s.first_seen_unix_nano,
    }
}

/// One analyser plugin and its (lazily created) instance, called with the failure handling
/// of policy plugins: a failed call is counted (`wasmcol_plugin_failures_total{processor,
/// reason}`, the `processor` label naming the connector and the analyser), logged at a
/// limited rate and yields no findings; the instance is replaced; after repeated failures the
/// plugin is not called for a while (as processor plugins are paused).
pub struct AnalyserRunner {
    plugin: Supervised<AnalyserInstance>,
    skipped: Counter,
}

impl AnalyserRunner {
    /// A runner for `analyser` with its configuration; `services.id` labels its metrics and
    /// logs.
    pub fn new(
        analyser: Arc<LoadedAnalyser>,
        config_json: String,
        services: Arc<Services>,
        limits: Limits,
    ) -> Self {
        let skipped = services.metrics.plugin_skipped(&services.id);
        Self {
            plugin: Supervised::new(analyser, config_json, services, limits),
            skipped,
        }
    }

    /// The id labelling the runner's metrics.
    pub fn id(&self) -> &str {
        &self.plugin.services().id
    }

    /// The plugin's findings for one call, or nothing when it failed or is paused.
    pub fn analyse(
        &mut self,
        batch: &[u8],
        summaries: &[TraceSummary],
        counts: &[u32],
        spans: &[u32],
    ) -> Vec<PluginFinding> {
        if self.plugin.paused_until().is_some() {
            self.skipped.inc();
            return Vec::new();
        }
        let answer = self.plugin.call(
            "connector",
            "trace analyser call",
            "the analyser instance is replaced; these traces pass on without its findings",
            |inst| inst.analyse(batch, summaries, counts, spans),
        );
        answer.unwrap_or_else(|failure| {
            let e = failure.error;
            log_limited!(warn, "trace analyser plugin failed";
                analyser = %self.plugin.services().id,
                plugin = %self.plugin.plugin().source,
                traces = summaries.len(),
                failures = failure.failures,
                elapsed_ms = failure.elapsed.as_millis() as u64,
                reason = %e.reason(),
                paused_for = ?failure.pause,
                "trace analyser plugin {e}; these traces pass on without its findings"
            );
            Vec::new()
        })
    }
}
