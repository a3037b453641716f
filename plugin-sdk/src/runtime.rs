//! The glue [`crate::export_plugin!`], [`crate::export_policy!`] and
//! [`crate::export_analyser!`] expand to: one plugin value per instance, built by `init` and
//! driven by `process`, `decide` or `analyse`.

use std::any::Any;
use std::cell::RefCell;

use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;

use crate::analyser::{Analyser, Finding, analyse_all};
use crate::policy::{Decision, Policy, TraceSummary, decide_all};
use crate::{Batch, Output, Plugin, PluginConfig};

thread_local! {
    static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Builds the plugin from its configuration (JSON text).
pub fn init<P: Plugin>(config: String) -> Result<(), String> {
    let plugin = P::new(parse_config(&config)?)?;
    PLUGIN.with_borrow_mut(|p| *p = Some(Box::new(plugin)));
    Ok(())
}

/// Decodes a batch, runs the plugin over it and returns what changed.
pub fn process<P: Plugin>(bytes: Vec<u8>) -> Result<Output, String> {
    // Decoded lazily: a plugin that never looks at the spans never pays for decoding.
    let mut batch = Batch::from_encoded(bytes);
    PLUGIN.with_borrow_mut(|p| {
        let plugin = p
            .as_mut()
            .and_then(|p| p.downcast_mut::<P>())
            .ok_or_else(|| "process was called before init".to_string())?;
        plugin.process(&mut batch)
    })?;
    Ok(batch.into_output())
}

/// Decodes a logs batch (lazily), runs the plugin's logs handler over it and returns what
/// changed.
pub fn process_logs<P: Plugin>(bytes: Vec<u8>) -> Result<Output, String> {
    let mut batch = crate::LogBatch::from_encoded(bytes);
    PLUGIN.with_borrow_mut(|p| {
        let plugin = p
            .as_mut()
            .and_then(|p| p.downcast_mut::<P>())
            .ok_or_else(|| "process-logs was called before init".to_string())?;
        plugin.process_logs(&mut batch)
    })?;
    Ok(batch.into_output())
}

/// Decodes a metrics batch (lazily), runs the plugin's metrics handler over it and returns
/// what changed.
pub fn process_metrics<P: Plugin>(bytes: Vec<u8>) -> Result<Output, String> {
    let mut batch = crate::MetricBatch::from_encoded(bytes);
    PLUGIN.with_borrow_mut(|p| {
        let plugin = p
            .as_mut()
            .and_then(|p| p.downcast_mut::<P>())
            .ok_or_else(|| "process-metrics was called before init".to_string())?;
        plugin.process_metrics(&mut batch)
    })?;
    Ok(batch.into_output())
}

/// Builds a tail-sampling policy from its configuration (JSON text); returns whether it reads
/// span contents.
pub fn init_policy<P: Policy>(config: String) -> Result<bool, String> {
    let policy = P::new(parse_config(&config)?)?;
    let needs_spans = policy.needs_spans();
    PLUGIN.with_borrow_mut(|p| *p = Some(Box::new(policy)));
    Ok(needs_spans)
}

/// Decides for a batch of traces: `bytes` is their `TracesData` (empty when the policy does
/// not read spans), `counts[i]` how many of its resource spans belong to trace `i`.
pub fn decide<P: Policy>(
    bytes: &[u8],
    summaries: &[TraceSummary],
    counts: &[u32],
) -> Result<Vec<Decision>, String> {
    let data = if bytes.is_empty() {
        TracesData::default()
    } else {
        TracesData::decode(bytes).map_err(|e| format!("the host sent a malformed batch: {e}"))?
    };
    PLUGIN.with_borrow_mut(|p| {
        let policy = p
            .as_mut()
            .and_then(|p| p.downcast_mut::<P>())
            .ok_or_else(|| "decide was called before init".to_string())?;
        policy.begin(crate::host::now_unix_nano());
        decide_all(&data.resource_spans, summaries, counts, |t| {
            policy.decide(t)
        })
    })
}

/// Builds a trace analyser from its configuration (JSON text).
pub fn init_analyser<A: Analyser>(config: String) -> Result<(), String> {
    let analyser = A::new(parse_config(&config)?)?;
    PLUGIN.with_borrow_mut(|p| *p = Some(Box::new(analyser)));
    Ok(())
}

/// Analyses a batch of traces: `bytes` is their `TracesData`, `counts[i]` how many of its
/// resource spans belong to trace `i`. Each finding comes with its trace's index.
pub fn analyse<A: Analyser>(
    bytes: &[u8],
    summaries: &[TraceSummary],
    counts: &[u32],
) -> Result<Vec<(u32, Finding)>, String> {
    let data =
        TracesData::decode(bytes).map_err(|e| format!("the host sent a malformed batch: {e}"))?;
    PLUGIN.with_borrow_mut(|p| {
        let analyser = p
            .as_mut()
            .and_then(|p| p.downcast_mut::<A>())
            .ok_or_else(|| "analyse was called before init".to_string())?;
        analyse_all(&data.resource_spans, summaries, counts, |t| {
            analyser.analyse(t)
        })
    })
}

/// The configuration the host sends at `init` (JSON text).
fn parse_config(config: &str) -> Result<PluginConfig, String> {
    serde_json::from_str(config)
        .map(PluginConfig::new)
        .map_err(|e| format!("the host sent a configuration that is not JSON: {e}"))
}
