//! `connectors.trace_analysis/NAME`.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::{ByteSize, Duration};
use crate::plugin_host::Limits;
use crate::plugin_host::analyser::LoadedAnalyser;
pub use trace_analysis_plugin::config::{
    CriticalPath, Dependencies, Detectors, DuplicateCall, ErrorOrigin, FanOut, NPlusOne,
    SerialCalls,
};

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
    /// Series per metric family at most (findings, critical-path self time, dependency
    /// edges; default 10000, 0: no limit). Service and span names come from clients and
    /// patterns from plugins: what would start a series past the limit is summed into one
    /// overflow series whose only attribute is `otel.metric.overflow="true"`, as in
    /// `spanmetrics`.
    #[serde(default = "default_aggregation_cardinality_limit")]
    pub aggregation_cardinality_limit: usize,
    /// A series not updated for this long is no longer sent, making room under the limit (a
    /// later finding starts it again from zero). `0s` (default): series are kept for the
    /// connector's lifetime, as in `spanmetrics`.
    #[serde(default)]
    pub metrics_expiration: Duration,
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
fn default_aggregation_cardinality_limit() -> usize {
    10_000
}
impl TraceAnalysisConfig {
    /// The detector sections.
    pub fn detectors(&self) -> Detectors {
        Detectors {
            n_plus_one: self.n_plus_one.clone(),
            duplicate_call: self.duplicate_call.clone(),
            serial_calls: self.serial_calls.clone(),
            fan_out: self.fan_out.clone(),
            error_origin: self.error_origin.clone(),
            critical_path: self.critical_path.clone(),
            dependencies: self.dependencies.clone(),
        }
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
        for (path, message) in self.detectors().problems() {
            problems.push(Problem::new(path, message));
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
