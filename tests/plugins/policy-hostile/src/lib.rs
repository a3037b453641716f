//! A tail-sampling policy plugin for the tests (`tests/tail_sampling.rs`). `config.mode`:
//!
//! - `keep-all`: keeps every trace, as `hostile:keep-all`.
//! - `keep-service`: keeps the traces whose `service.name` (of the root span's resource, as
//!   the host summarises it) is `config.service`, as `hostile:keep-service`; drops the others.
//!   Does not ask for span contents.
//! - `trap-on-trigger`: panics (a trap, for the host) on any batch holding a span named
//!   `trigger`; otherwise decides like `keep-service` (like `keep-all` without `service`).
//!   Reads span contents, so the host sends them.
//! - `sleep-on-trigger`: like `trap-on-trigger`, but sleeps 20 s instead of trapping (a policy
//!   that never answers).

use serde::Deserialize;
use wasmcol_plugin_sdk::PluginConfig;
use wasmcol_plugin_sdk::policy::{Decision, Policy, Trace};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: String,
    #[serde(default)]
    service: Option<String>,
}

/// The policy.
pub struct PolicyHostile {
    mode: Mode,
    service: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    KeepAll,
    KeepService,
    TrapOnTrigger,
    SleepOnTrigger,
}

impl PolicyHostile {
    fn by_service(&self, trace: &Trace<'_>) -> Decision {
        match &self.service {
            None => Decision::sample("hostile:keep-all", 1.0),
            Some(s) if trace.summary.service_name == *s => {
                Decision::sample("hostile:keep-service", 1.0)
            }
            Some(_) => Decision::drop("hostile:keep-service"),
        }
    }
}

impl Policy for PolicyHostile {
    fn new(config: PluginConfig) -> Result<Self, String> {
        let c: Config = config.parse()?;
        let mode = match c.mode.as_str() {
            "keep-all" => Mode::KeepAll,
            "keep-service" => Mode::KeepService,
            "trap-on-trigger" => Mode::TrapOnTrigger,
            "sleep-on-trigger" => Mode::SleepOnTrigger,
            other => {
                return Err(format!(
                    "config.mode: unknown mode {other:?}, expected keep-all, keep-service, trap-on-trigger or sleep-on-trigger"
                ));
            }
        };
        if mode == Mode::KeepService && c.service.is_none() {
            return Err("config.service: required in mode keep-service".into());
        }
        Ok(Self {
            mode,
            service: c.service,
        })
    }

    fn needs_spans(&self) -> bool {
        matches!(self.mode, Mode::TrapOnTrigger | Mode::SleepOnTrigger)
    }

    fn decide(&mut self, trace: &Trace<'_>) -> Decision {
        match self.mode {
            Mode::KeepAll => Decision::sample("hostile:keep-all", 1.0),
            Mode::KeepService => self.by_service(trace),
            Mode::TrapOnTrigger => {
                if trace.spans().any(|(_, _, span)| span.name == "trigger") {
                    panic!("policy-hostile: a span named `trigger`, trapping on purpose");
                }
                self.by_service(trace)
            }
            Mode::SleepOnTrigger => {
                if trace.spans().any(|(_, _, span)| span.name == "trigger") {
                    std::thread::sleep(std::time::Duration::from_secs(20));
                }
                self.by_service(trace)
            }
        }
    }
}

wasmcol_plugin_sdk::export_policy!(PolicyHostile);
