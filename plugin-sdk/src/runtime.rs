//! The glue [`crate::export_plugin!`] and [`crate::export_policy!`] expand to: one plugin value
//! per instance, built by `init` and driven by `process` or `decide`.

use std::any::Any;
use std::cell::RefCell;

use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;

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

/// The configuration the host sends at `init` (JSON text).
fn parse_config(config: &str) -> Result<PluginConfig, String> {
    serde_json::from_str(config)
        .map(PluginConfig::new)
        .map_err(|e| format!("the host sent a configuration that is not JSON: {e}"))
}
