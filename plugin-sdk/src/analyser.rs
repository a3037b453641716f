//! Trace analysers: the `trace_analysis` connector buffers spans by trace ID and, when a trace
//! is complete, hands it to each [`Analyser`] plugin; the findings join the connector's own
//! (the `trace_analysis.findings` metric, and the `trace_analysis.findings` attribute of the
//! spans involved).
//!
//! ```
//! use wasmcol_plugin_sdk::PluginConfig;
//! use wasmcol_plugin_sdk::analyser::{Analyser, Finding, Trace};
//!
//! /// Finds traces with more than 100 spans, on their root.
//! struct Big;
//!
//! impl Analyser for Big {
//!     fn new(_: PluginConfig) -> Result<Self, String> {
//!         Ok(Big)
//!     }
//!
//!     fn analyse(&mut self, trace: &Trace<'_>) -> Result<Vec<Finding>, String> {
//!         let spans = trace.summary.span_count;
//!         Ok(match trace.root() {
//!             Some(root) if spans > 100 => vec![Finding::new("big_trace", root).magnitude(spans)],
//!             _ => Vec::new(),
//!         })
//!     }
//! }
//!
//! wasmcol_plugin_sdk::export_analyser!(Big);
//! ```

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::PluginConfig;
pub use crate::policy::{Trace, TraceSummary};
use crate::value::Value;

/// Longest pattern name the host accepts; patterns label metrics, so they stay short.
pub const MAX_PATTERN: usize = 128;

/// A trace analyser plugin.
pub trait Analyser: Sized + 'static {
    /// Builds the analyser from its `config` (in the connector's `analysers:` list). An error
    /// rejects the configuration: the collector does not start, and the message names the
    /// connector and the analyser.
    fn new(config: PluginConfig) -> Result<Self, String>;

    /// Analyses one complete trace. Spans are numbered as [`Trace::spans`] yields them. An
    /// error fails the whole call: the traces of the batch pass on without this analyser's
    /// findings, and the failure is counted and logged.
    fn analyse(&mut self, trace: &Trace<'_>) -> Result<Vec<Finding>, String>;
}

/// One finding in one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was found: the `pattern` of the metric, and what the spans involved are marked
    /// with. At most [`MAX_PATTERN`] bytes.
    pub pattern: String,
    /// The span the finding is about (its number in [`Trace::spans`]): the metric counts the
    /// finding under its service and name, weighted by its adjusted count.
    pub anchor: u32,
    /// The spans involved, marked with `pattern` (by [`Finding::new`]: the anchor).
    pub spans: Vec<u32>,
    /// How bad; the trace with the largest magnitude is the metric series' worst trace.
    pub magnitude: u32,
    /// Attributes the host writes on the anchor span.
    pub attributes: Vec<(String, Value)>,
}

impl Finding {
    /// A finding of `pattern` about span `anchor`, marking the anchor, of magnitude 1.
    pub fn new(pattern: impl Into<String>, anchor: u32) -> Self {
        Self {
            pattern: pattern.into(),
            anchor,
            spans: vec![anchor],
            magnitude: 1,
            attributes: Vec::new(),
        }
    }

    /// Marks `spans` too (beside what is marked already).
    pub fn spans(mut self, spans: impl IntoIterator<Item = u32>) -> Self {
        for s in spans {
            if !self.spans.contains(&s) {
                self.spans.push(s);
            }
        }
        self
    }

    /// Sets the magnitude.
    pub fn magnitude(mut self, magnitude: u32) -> Self {
        self.magnitude = magnitude;
        self
    }

    /// Adds an attribute for the anchor span.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.push((key.into(), value.into()));
        self
    }
}

impl Trace<'_> {
    /// The number of the first span without a parent (the root), if the trace has one.
    pub fn root(&self) -> Option<u32> {
        self.spans()
            .position(|(_, _, s)| s.parent_span_id.is_empty())
            .map(|i| i as u32)
    }
}

/// Splits `resource_spans` into the traces the summaries describe (`counts[i]` consecutive
/// entries each) and runs `analyse` over them in order; each finding's trace index is its
/// trace's position.
pub fn analyse_all(
    resource_spans: &[ResourceSpans],
    summaries: &[TraceSummary],
    counts: &[u32],
    mut analyse: impl FnMut(&Trace<'_>) -> Result<Vec<Finding>, String>,
) -> Result<Vec<(u32, Finding)>, String> {
    let per_trace = crate::policy::decide_all(resource_spans, summaries, counts, &mut analyse)?;
    let mut out = Vec::new();
    for (at, found) in per_trace.into_iter().enumerate() {
        out.extend(found?.into_iter().map(|f| (at as u32, f)));
    }
    Ok(out)
}

/// The host's checks of one finding in a trace of `spans` spans: the anchor and every span
/// involved exist, the pattern is 1 to [`MAX_PATTERN`] bytes. The message says what is wrong.
pub fn check(f: &Finding, spans: u32) -> Result<(), String> {
    check_parts(&f.pattern, f.anchor, &f.spans, spans)
}

/// [`check`] on a finding's parts, as the host reads them from the plugin's answer.
pub fn check_parts(pattern: &str, anchor: u32, involved: &[u32], spans: u32) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > MAX_PATTERN {
        return Err(format!(
            "a finding's pattern is {} bytes long; 1 to {MAX_PATTERN} are allowed",
            pattern.len()
        ));
    }
    if let Some(bad) = std::iter::once(&anchor)
        .chain(involved)
        .find(|&&s| s >= spans)
    {
        return Err(format!(
            "finding {pattern:?} names span {bad} of a trace of {spans} spans"
        ));
    }
    Ok(())
}
