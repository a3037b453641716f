//! `connectors.trace_analysis/NAME`.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::{ByteSize, Duration};
use crate::plugin_host::Limits;
use crate::plugin_host::analyser::LoadedAnalyser;

/// `connectors.trace_analysis/NAME`: the trace buffer's options (as `tail_sampling`'s), one
/// section per detector, and analyser plugins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceAnalysisConfig {
    /// Time from a trace's first span to its analysis (default 30s, as `tail_sampling`).
    #[serde(default = "default_decision_wait")]
    pub decision_wait: Duration,
    /// Most traces buffered at once; past it, the oldest is analysed early (default 50000).
    #[serde(default = "default_num_traces")]
    pub num_traces: usize,
    /// Byte budget of the buffer (spans as encoded, plus bookkeeping; default 256MiB). Past
    /// it the oldest traces are analysed early; while that has not freed enough, new spans
    /// are refused with a retryable error.
    #[serde(default = "default_max_buffer_bytes")]
    pub max_buffer_bytes: ByteSize,
    /// A trace with more spans is analysed at once (default 10000).
    #[serde(default = "default_max_spans_per_trace")]
    pub max_spans_per_trace: u32,
    /// Analysed trace ids remembered, so that a span arriving after its trace was analysed
    /// is passed on (traces side) without starting a second, partial analysis (default
    /// 100000; 0 forgets them).
    #[serde(default = "default_late_span_cache_size")]
    pub late_span_cache_size: usize,
    /// How often the findings metric is sent (default 60s, as `spanmetrics`).
    #[serde(default = "default_metrics_flush_interval")]
    pub metrics_flush_interval: Duration,
    /// Serial loops of one statement.
    #[serde(default)]
    pub n_plus_one: NPlusOne,
    /// Exact repeats of one call.
    #[serde(default)]
    pub duplicate_call: DuplicateCall,
    /// Sequential independent calls that could run at once.
    #[serde(default)]
    pub serial_calls: SerialCalls,
    /// Call amplification.
    #[serde(default)]
    pub fan_out: FanOut,
    /// Where errors start.
    #[serde(default)]
    pub error_origin: ErrorOrigin,
    /// Self time on each trace's critical path.
    #[serde(default)]
    pub critical_path: CriticalPath,
    /// Strong and weak dependencies between services.
    #[serde(default)]
    pub dependencies: Dependencies,
    /// Trace analyser plugins, each handed every batch of due traces after the detectors
    /// above; their findings join the detectors' (default: none).
    #[serde(default)]
    pub analysers: Vec<AnalyserConfig>,
    /// Loaded and checked by `validate`, reused by `build`: (plugin, config JSON) per entry
    /// of `analysers`.
    #[serde(skip)]
    pub(super) loaded: OnceLock<Vec<(Arc<LoadedAnalyser>, String)>>,
}

/// One entry of `analysers`: a plugin built for the `wasmcol:plugin/analyser` world.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyserConfig {
    /// `builtin:NAME` or the path of a `.wasm` component.
    pub plugin: String,
    /// The plugin's own options, handed to it as JSON at start-up; it may reject them.
    #[serde(default)]
    pub config: serde_yaml_ng::Value,
    /// Limits of the plugin's instance (as a `wasm` processor's: `memory_mib`,
    /// `call_timeout`, `max_output_bytes`, `recycle_memory_mib`).
    #[serde(default)]
    pub limits: Limits,
}

/// `n_plus_one`: at least `min_calls` calls of one normalized statement (same target), each
/// starting after the previous ended, under one parent span.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NPlusOne {
    /// Whether the detector runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Sequential calls that make a finding (default 5, as Sentry's N+1 query detector).
    #[serde(default = "default_n_plus_one_min_calls")]
    pub min_calls: u32,
}

/// `duplicate_call`: the same call (same target, same statement with its parameters) made at
/// least `min_calls` times under one parent span. Calls already reported as `n_plus_one` are
/// not reported again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicateCall {
    /// Whether the detector runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Identical calls that make a finding (default 2).
    #[serde(default = "default_duplicate_min_calls")]
    pub min_calls: u32,
}

/// `serial_calls`: calls under one parent span made one after the other that could have run
/// at once: a run of at least `min_calls` calls (in start order, each starting after every
/// earlier call of the run ended and at most `max_gap` after, no two of one normalized
/// statement, which would be `n_plus_one`) whose total saving if run in parallel (the sum of
/// their durations minus the longest) is at least `min_saving`. The defaults follow Sentry's
/// "Consecutive HTTP" detector (at least 3 sequential calls, at most 500ms between them) and
/// its "Consecutive DB Queries" detector (at least 100ms to save).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialCalls {
    /// Whether the detector runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Sequential calls that make a finding (default 3, as Sentry's Consecutive HTTP
    /// detector).
    #[serde(default = "default_serial_min_calls")]
    pub min_calls: u32,
    /// Least time the run would save if its calls ran at once: the sum of their durations
    /// minus the longest (default 100ms, as Sentry's Consecutive DB Queries detector).
    #[serde(default = "default_serial_min_saving")]
    pub min_saving: Duration,
    /// Longest gap between the end of the run so far and the next call's start (default
    /// 500ms, as Sentry's Consecutive HTTP detector); a longer gap starts a new run.
    #[serde(default = "default_serial_max_gap")]
    pub max_gap: Duration,
}

/// `fan_out`: more than `max_calls_per_callee` calls to one callee (the service that answered,
/// else the call's target) under one entry span (a `SERVER` or `CONSUMER` span, or the root).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanOut {
    /// Whether the detector runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Calls per callee per entry span allowed (default 20).
    #[serde(default = "default_max_calls_per_callee")]
    pub max_calls_per_callee: u32,
}

/// `error_origin`: every error span without an erroring descendant, with the services of the
/// chain of erroring spans above it (where the error propagated).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorOrigin {
    /// Whether the detector runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// `critical_path`: each trace's critical path (from the end of the root span back, the
/// child that finished last before the cursor, recursively), and each span's self time on it,
/// summed per service and span name in `trace_analysis.critical_path.self_time`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticalPath {
    /// Whether it is computed (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for CriticalPath {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `dependencies`: per caller service → callee, calls, failed calls and failed calls whose
/// caller's request (entry span) failed too; `failed_entries / failed_calls` is how strong the
/// dependency is (1: a callee failure fails the request; 0: the caller copes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependencies {
    /// Whether they are counted (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for Dependencies {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn yes() -> bool {
    true
}
fn default_decision_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_num_traces() -> usize {
    50_000
}
fn default_max_buffer_bytes() -> ByteSize {
    ByteSize(256 << 20)
}
fn default_max_spans_per_trace() -> u32 {
    10_000
}
fn default_late_span_cache_size() -> usize {
    100_000
}
fn default_metrics_flush_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_n_plus_one_min_calls() -> u32 {
    5
}
fn default_duplicate_min_calls() -> u32 {
    2
}
fn default_max_calls_per_callee() -> u32 {
    20
}
fn default_serial_min_calls() -> u32 {
    3
}
fn default_serial_min_saving() -> Duration {
    Duration::from_millis(100)
}
fn default_serial_max_gap() -> Duration {
    Duration::from_millis(500)
}

impl Default for NPlusOne {
    fn default() -> Self {
        Self {
            enabled: true,
            min_calls: default_n_plus_one_min_calls(),
        }
    }
}

impl Default for DuplicateCall {
    fn default() -> Self {
        Self {
            enabled: true,
            min_calls: default_duplicate_min_calls(),
        }
    }
}

impl Default for SerialCalls {
    fn default() -> Self {
        Self {
            enabled: true,
            min_calls: default_serial_min_calls(),
            min_saving: default_serial_min_saving(),
            max_gap: default_serial_max_gap(),
        }
    }
}

impl Default for FanOut {
    fn default() -> Self {
        Self {
            enabled: true,
            max_calls_per_callee: default_max_calls_per_callee(),
        }
    }
}

impl Default for ErrorOrigin {
    fn default() -> Self {
        Self { enabled: true }
    }
}

impl Default for TraceAnalysisConfig {
    fn default() -> Self {
        serde_yaml_ng::from_str("{}").expect("defaults")
    }
}

impl Validate for TraceAnalysisConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.decision_wait.0.is_zero() {
            problems.push(Problem::new("decision_wait", "must be more than 0"));
        }
        if self.num_traces == 0 {
            problems.push(Problem::new("num_traces", "must be more than 0"));
        }
        if self.metrics_flush_interval.0.is_zero() {
            problems.push(Problem::new(
                "metrics_flush_interval",
                "must be more than 0",
            ));
        }
        if self.n_plus_one.min_calls < 2 {
            problems.push(Problem::new(
                "n_plus_one.min_calls",
                format!("must be at least 2, got {}", self.n_plus_one.min_calls),
            ));
        }
        if self.duplicate_call.min_calls < 2 {
            problems.push(Problem::new(
                "duplicate_call.min_calls",
                format!("must be at least 2, got {}", self.duplicate_call.min_calls),
            ));
        }
        if self.serial_calls.min_calls < 2 {
            problems.push(Problem::new(
                "serial_calls.min_calls",
                format!("must be at least 2, got {}", self.serial_calls.min_calls),
            ));
        }
        if !problems.is_empty() {
            return problems;
        }
        let mut loaded = Vec::new();
        for (i, a) in self.analysers.iter().enumerate() {
            let at = |option: &str| format!("analysers[{i}].{option}");
            let before = problems.len();
            let l = &a.limits;
            if l.memory_mib < 1 || l.memory_mib > 4096 {
                problems.push(Problem::new(
                    at("limits.memory_mib"),
                    format!(
                        "must be between 1 and 4096 (wasm32 addresses 4 GiB), got {}",
                        l.memory_mib
                    ),
                ));
            }
            if l.call_timeout.0 < std::time::Duration::from_millis(1) {
                problems.push(Problem::new(
                    at("limits.call_timeout"),
                    format!("must be at least 1ms, got {:?}", l.call_timeout.0),
                ));
            }
            if l.max_output_bytes.0 == 0 {
                problems.push(Problem::new(
                    at("limits.max_output_bytes"),
                    "must be more than 0",
                ));
            }
            if let Some(r) = l.recycle_memory_mib
                && (r == 0 || r > l.memory_mib)
            {
                problems.push(Problem::new(
                    at("limits.recycle_memory_mib"),
                    format!(
                        "must be between 1 and limits.memory_mib ({}), got {r}",
                        l.memory_mib
                    ),
                ));
            }
            let json = match serde_json::to_string(&a.config) {
                Ok(j) => j,
                Err(e) => {
                    problems.push(Problem::new(
                        at("config"),
                        format!("cannot be passed to the plugin as JSON: {e}"),
                    ));
                    continue;
                }
            };
            if problems.len() > before {
                continue;
            }
            let analyser = match LoadedAnalyser::load(&a.plugin) {
                Ok(p) => Arc::new(p),
                Err(message) => {
                    problems.push(Problem::new(at("plugin"), message));
                    continue;
                }
            };
            if let Err(e) = analyser.check_config(&json, &a.limits) {
                problems.push(Problem::new(at(e.path), e.message));
                continue;
            }
            loaded.push((analyser, json));
        }
        if problems.is_empty() {
            let _ = self.loaded.set(loaded);
        }
        problems
    }
}
