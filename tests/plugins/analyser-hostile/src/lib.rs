//! A trace analyser plugin for the tests (`tests/trace_analysis.rs`). On a trace without a
//! span named `trigger` it finds `hostile_root` on the root span; on a batch holding one,
//! `config.mode` says how it fails:
//!
//! - `trap`: panics (a trap, for the host).
//! - `sleep`: sleeps 20 s (an analyser that never answers: the host's deadline stops it).
//! - `error`: returns an error.
//! - `bad-index`: answers with a finding naming a span past the end of the trace.
//! - `memory`: allocates until the memory limit stops it.

use serde::Deserialize;
use wasmcol_plugin_sdk::PluginConfig;
use wasmcol_plugin_sdk::analyser::{Analyser, Finding, Trace};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: String,
}

/// The analyser.
pub struct AnalyserHostile {
    mode: Mode,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Trap,
    Sleep,
    Error,
    BadIndex,
    Memory,
}

impl Analyser for AnalyserHostile {
    fn new(config: PluginConfig) -> Result<Self, String> {
        let c: Config = config.parse()?;
        let mode = match c.mode.as_str() {
            "trap" => Mode::Trap,
            "sleep" => Mode::Sleep,
            "error" => Mode::Error,
            "bad-index" => Mode::BadIndex,
            "memory" => Mode::Memory,
            other => {
                return Err(format!(
                    "config.mode: unknown mode {other:?}, expected trap, sleep, error, bad-index or memory"
                ));
            }
        };
        Ok(Self { mode })
    }

    fn analyse(&mut self, trace: &Trace<'_>) -> Result<Vec<Finding>, String> {
        if !trace.spans().any(|(_, _, span)| span.name == "trigger") {
            return Ok(trace
                .root()
                .map(|root| Finding::new("hostile_root", root))
                .into_iter()
                .collect());
        }
        match self.mode {
            Mode::Trap => panic!("analyser-hostile: a span named `trigger`, trapping on purpose"),
            Mode::Sleep => {
                std::thread::sleep(std::time::Duration::from_secs(20));
                Ok(Vec::new())
            }
            Mode::Error => Err("analyser-hostile: a span named `trigger`".into()),
            Mode::BadIndex => Ok(vec![Finding::new(
                "hostile_root",
                trace.summary.span_count + 7,
            )]),
            Mode::Memory => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    if hoard.len() == usize::MAX {
                        return Ok(Vec::new());
                    }
                }
            }
        }
    }
}

wasmcol_plugin_sdk::export_analyser!(AnalyserHostile);
