//! The detectors' options: one section per detector, as the `trace_analysis` connector takes
//! them (`n_plus_one: { min_calls: 5 }`) and as `builtin:trace-analysis` takes its `config`.

use serde::Deserialize;

use wasmcol_plugin_sdk::units::Duration;

/// Every detector's section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detectors {
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
    /// Self time on each trace's critical path (not a finding: the collector's metric).
    #[serde(default)]
    pub critical_path: CriticalPath,
    /// Strong and weak dependencies between services (not a finding: the collector's
    /// metrics).
    #[serde(default)]
    pub dependencies: Dependencies,
}

impl Detectors {
    /// What is wrong with the options: (path, message) per problem, all of them.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for (path, min_calls) in [
            ("n_plus_one.min_calls", self.n_plus_one.min_calls),
            ("duplicate_call.min_calls", self.duplicate_call.min_calls),
            ("serial_calls.min_calls", self.serial_calls.min_calls),
        ] {
            if min_calls < 2 {
                problems.push((path, format!("must be at least 2, got {min_calls}")));
            }
        }
        problems
    }
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
