//! The glue [`crate::export_plugin!`] expands to: one plugin value per instance, built by
//! `init` and driven by `process`.

use std::any::Any;
use std::cell::RefCell;

use crate::{Batch, Output, Plugin, PluginConfig};

thread_local! {
    static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Builds the plugin from its configuration (JSON text).
pub fn init<P: Plugin>(config: String) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(&config)
        .map_err(|e| format!("the host sent a configuration that is not JSON: {e}"))?;
    let plugin = P::new(PluginConfig::new(value))?;
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
