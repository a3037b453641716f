//! `processors.tail_sampling/NAME`.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::{ByteSize, Duration};
use crate::plugin_host::policy::LoadedPolicy;
use crate::plugin_host::{Limits, OnError};

/// The policy plugin shipped in the binary, which evaluates `policies:`.
pub const BUILTIN_POLICIES: &str = "builtin:tail-policies";

/// `processors.tail_sampling/NAME`: the OpenTelemetry Collector's options, plus a byte budget,
/// per-trace caps, early decisions and policy plugins.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailSamplingConfig {
    /// Time from a trace's first span to its decision.
    #[serde(default = "default_decision_wait")]
    pub decision_wait: Duration,
    /// Most traces buffered at once; past it, the oldest is decided early (an eviction).
    #[serde(default = "default_num_traces")]
    pub num_traces: usize,
    /// Expected new traces per second, to size the buffer up front (0: grow as needed).
    #[serde(default)]
    pub expected_new_traces_per_sec: u64,
    /// Byte budget for the whole buffer (spans as encoded, plus bookkeeping). Past it the
    /// oldest traces are decided early, and while decisions have not freed enough, new data
    /// is refused with a retryable error.
    #[serde(default = "default_max_buffer_bytes")]
    pub max_buffer_bytes: ByteSize,
    /// A trace with more spans is decided at once, so one huge trace cannot starve the rest;
    /// its later spans follow that decision.
    #[serde(default = "default_max_spans_per_trace")]
    pub max_spans_per_trace: u32,
    /// Like `max_spans_per_trace`, in buffered bytes.
    #[serde(default = "default_max_bytes_per_trace")]
    pub max_bytes_per_trace: ByteSize,
    /// Decide a trace before `decision_wait` once its root span has arrived and no span came
    /// for `quiet` (off when absent).
    #[serde(default)]
    pub early_decision: Option<EarlyDecision>,
    /// Where decisions are remembered, so that late spans follow them.
    #[serde(default)]
    pub decision_cache: DecisionCacheConfig,
    /// Stop at the first policy that keeps a trace (handed to the built-in policies).
    #[serde(default)]
    pub sample_on_first_match: bool,
    /// The OpenTelemetry Collector's policy list, evaluated by `builtin:tail-policies`.
    #[serde(default)]
    pub policies: Vec<serde_yaml_ng::Value>,
    /// A policy plugin of your own (`.wasm` path or `builtin:NAME`), consulted after the
    /// built-in policies (if any): a trace is kept when either keeps it.
    #[serde(default)]
    pub plugin: Option<String>,
    /// Handed to `plugin` as JSON at load; the plugin may reject it.
    #[serde(default)]
    pub config: serde_yaml_ng::Value,
    /// Limits of each policy plugin instance.
    #[serde(default)]
    pub limits: Limits,
    /// When a policy plugin fails (trap, timeout, bad answer): `pass` keeps the traces of that
    /// call, `drop` drops them, `refuse` keeps them too (they were accepted when buffered) and
    /// refuses new data with a retryable error while the failing plugin is paused. The buffer
    /// itself is never lost.
    #[serde(default)]
    pub on_error: OnError,
    /// On shutdown: `decide` pending traces now (and forward the kept ones), or `drop` them.
    #[serde(default)]
    pub on_shutdown: OnShutdown,
    /// Loaded and checked by `validate`, reused by `build`: (plugin, config JSON) per plugin.
    #[serde(skip)]
    pub(super) loaded: OnceLock<Vec<(Arc<LoadedPolicy>, String)>>,
}

/// `early_decision`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyDecision {
    /// How long a trace whose root span arrived must be quiet before it is decided.
    pub quiet: Duration,
}

/// `on_shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnShutdown {
    /// Decide every pending trace and forward the kept ones.
    #[default]
    Decide,
    /// Drop pending traces (counted as dropped spans).
    Drop,
}

/// `decision_cache`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionCacheConfig {
    /// Kept-trace IDs remembered (exact cache), or expected per window (Bloom cache).
    /// 0 turns the cache off: late spans of kept traces then start a new trace.
    #[serde(default = "default_cache_size")]
    pub sampled_cache_size: usize,
    /// Dropped-trace IDs remembered (exact, oldest forgotten first). 0 turns it off.
    #[serde(default = "default_cache_size")]
    pub non_sampled_cache_size: usize,
    /// `exact` (remembers the deciding policy) or `bloom` (a time-windowed Bloom filter:
    /// small at millions of traces, with a false-positive rate).
    #[serde(default)]
    pub sampled_cache_type: CacheType,
    /// Bloom cache: how long one shard takes inserts before it rotates; IDs are remembered
    /// for between one and `shards` windows.
    #[serde(default = "default_bloom_window")]
    pub window: Duration,
    /// Bloom cache: shards in the ring.
    #[serde(default = "default_bloom_shards")]
    pub shards: usize,
    /// Bloom cache: target false-positive rate (a late span of a dropped trace is kept).
    #[serde(default = "default_false_positive_rate")]
    pub false_positive_rate: f64,
}

impl Default for DecisionCacheConfig {
    fn default() -> Self {
        Self {
            sampled_cache_size: default_cache_size(),
            non_sampled_cache_size: default_cache_size(),
            sampled_cache_type: CacheType::default(),
            window: default_bloom_window(),
            shards: default_bloom_shards(),
            false_positive_rate: default_false_positive_rate(),
        }
    }
}

/// `decision_cache.sampled_cache_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheType {
    /// A map of trace IDs, oldest forgotten first.
    #[default]
    Exact,
    /// A ring of Bloom filters, each covering `window`.
    Bloom,
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
fn default_max_bytes_per_trace() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_cache_size() -> usize {
    100_000
}
fn default_bloom_window() -> Duration {
    Duration::from_secs(600)
}
fn default_bloom_shards() -> usize {
    2
}
fn default_false_positive_rate() -> f64 {
    0.001
}

impl TailSamplingConfig {
    /// The policy plugins to consult, in order, with their configuration as JSON.
    fn plugins(&self) -> Result<Vec<(String, String, &'static str)>, Problem> {
        let mut out = Vec::new();
        if !self.policies.is_empty() {
            let json = serde_json::json!({
                "policies": self.policies,
                "sample_on_first_match": self.sample_on_first_match,
            });
            out.push((BUILTIN_POLICIES.to_string(), json.to_string(), "policies"));
        }
        if let Some(p) = &self.plugin {
            let json = serde_json::to_string(&self.config).map_err(|e| {
                Problem::new(
                    "config",
                    format!("cannot be passed to the plugin as JSON: {e}"),
                )
            })?;
            out.push((p.clone(), json, "config"));
        }
        if out.is_empty() {
            return Err(Problem::new(
                "policies",
                "no policy: list `policies` (evaluated by builtin:tail-policies) or set `plugin`",
            ));
        }
        Ok(out)
    }
}

impl Validate for TailSamplingConfig {
    /// Checks the options, then loads each policy plugin and has it check its configuration,
    /// so that `wasmcol validate` and start-up both stop on a bad policy.
    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.decision_wait.0.is_zero() {
            problems.push(Problem::new("decision_wait", "must be more than 0"));
        }
        if self.num_traces == 0 {
            problems.push(Problem::new("num_traces", "must be more than 0"));
        }
        if self.max_buffer_bytes.0 < (1 << 20) {
            problems.push(Problem::new(
                "max_buffer_bytes",
                format!(
                    "must be at least 1MiB, got {} bytes",
                    self.max_buffer_bytes.0
                ),
            ));
        }
        if self.max_spans_per_trace == 0 {
            problems.push(Problem::new("max_spans_per_trace", "must be more than 0"));
        }
        if self.max_bytes_per_trace.0 == 0 || self.max_bytes_per_trace.0 > self.max_buffer_bytes.0 {
            problems.push(Problem::new(
                "max_bytes_per_trace",
                format!(
                    "must be more than 0 and at most max_buffer_bytes ({}), got {}",
                    self.max_buffer_bytes.0, self.max_bytes_per_trace.0
                ),
            ));
        }
        if let Some(e) = &self.early_decision
            && e.quiet.0.is_zero()
        {
            problems.push(Problem::new("early_decision.quiet", "must be more than 0"));
        }
        let c = &self.decision_cache;
        if c.sampled_cache_type == CacheType::Bloom {
            if c.shards < 2 || c.shards > 64 {
                problems.push(Problem::new(
                    "decision_cache.shards",
                    format!("must be between 2 and 64, got {}", c.shards),
                ));
            }
            if !(c.false_positive_rate > 0.0 && c.false_positive_rate < 0.5) {
                problems.push(Problem::new(
                    "decision_cache.false_positive_rate",
                    format!("must be between 0 and 0.5, got {}", c.false_positive_rate),
                ));
            }
            if c.window.0.is_zero() {
                problems.push(Problem::new("decision_cache.window", "must be more than 0"));
            }
        }
        let plugins = match self.plugins() {
            Ok(p) => p,
            Err(p) => {
                problems.push(p);
                return problems;
            }
        };
        if !problems.is_empty() {
            return problems;
        }
        let mut loaded = Vec::new();
        for (source, json, config_path) in plugins {
            let plugin_path = if source == BUILTIN_POLICIES {
                "policies"
            } else {
                "plugin"
            };
            let policy = match LoadedPolicy::load(&source) {
                Ok(p) => Arc::new(p),
                Err(message) => {
                    problems.push(Problem::new(plugin_path, message));
                    continue;
                }
            };
            if let Err(e) = policy.check_config(&json, &self.limits) {
                let path = if e.path == "config" {
                    config_path
                } else {
                    plugin_path
                };
                // The built-in plugin sees `policies` inside its own `config`: name the YAML.
                let message = if source == BUILTIN_POLICIES {
                    e.message.replace("config.policies", "policies")
                } else {
                    e.message
                };
                problems.push(Problem::new(path, message));
                continue;
            }
            loaded.push((policy, json));
        }
        if problems.is_empty() {
            let _ = self.loaded.set(loaded);
        }
        problems
    }
}
