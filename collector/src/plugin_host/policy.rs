//! Tail-sampling policy plugins (the `wasmcol:plugin/policy` world): loading, and one
//! sandboxed instance answering "keep or drop?" for batches of buffered traces. The
//! `tail_sampling` processor owns the buffer; this is only the call into the guest, with the
//! same limits, deadline and failure handling as processor plugins.

use std::sync::Arc;

use wasmcol_plugin_sdk::policy::{Decision, TraceSummary};
use wasmtime::Store;

use super::bindings::policy::PolicyPre;
use super::bindings::policy::exports::wasmcol::plugin::sampler as wit;
use super::bindings::v0_2::policy::exports::wasmcol::plugin::sampler as wit_v0_2;
use super::bindings::{self, CURRENT_VERSION, V0_2_VERSION};
use super::host::{HostState, Services};
use super::instance::{CallError, Deadline, classify, new_store, too_large};
use super::limits::Limits;
use super::plugin::{StartupError, compile};
use super::supervised::{Instance, check_config};

/// Longest policy name a plugin may return; names label metrics, so they stay short.
const MAX_POLICY_NAME: usize = 128;

/// A compiled and linked policy plugin, ready to instantiate.
pub struct LoadedPolicy {
    /// `builtin:NAME` or the file path, for messages.
    pub source: String,
    pre: Pre,
}

/// A policy plugin pre-linked with the bindings of the package version it was built for.
enum Pre {
    /// `wasmcol:plugin@0.3.0`.
    Current(PolicyPre<HostState>),
    /// `wasmcol:plugin@0.2.0`: the same `sampler` interface.
    V0_2(bindings::v0_2::policy::PolicyPre<HostState>),
}

/// An instantiated policy plugin.
enum Bindings {
    Current(bindings::policy::Policy),
    V0_2(bindings::v0_2::policy::Policy),
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("source", &self.source)
            .finish()
    }
}

impl LoadedPolicy {
    /// Loads `source`: `builtin:NAME` or a path to a `.wasm` component.
    pub fn load(source: &str) -> Result<Self, String> {
        let (linked, version) = compile(source)?;
        let not_a_policy = |e: wasmtime::Error| {
            format!(
                "{source:?} is not a tail-sampling policy plugin (it does not implement the \
                 wasmcol:plugin/policy world): {e:#}"
            )
        };
        let pre = match version.as_deref() {
            None | Some(CURRENT_VERSION) => {
                Pre::Current(PolicyPre::new(linked).map_err(not_a_policy)?)
            }
            Some(V0_2_VERSION) => {
                Pre::V0_2(bindings::v0_2::policy::PolicyPre::new(linked).map_err(not_a_policy)?)
            }
            Some(v) => {
                return Err(format!(
                    "{source:?} was built for wasmcol:plugin@{v}; policy plugins must be built \
                     for wasmcol:plugin@{CURRENT_VERSION} (or @{V0_2_VERSION}): rebuild it with \
                     the current wasmcol-plugin-sdk"
                ));
            }
        };
        Ok(Self {
            source: source.to_string(),
            pre,
        })
    }

    /// Instantiates the plugin once and hands it its configuration, as start-up will.
    pub fn check_config(&self, config_json: &str, limits: &Limits) -> Result<(), StartupError> {
        check_config::<PolicyInstance>(self, &self.source, config_json, limits)
    }
}

/// A live policy instance.
pub struct PolicyInstance {
    store: Store<HostState>,
    bindings: Bindings,
    deadline: Deadline,
    max_output: usize,
    needs_spans: bool,
}

impl Instance for PolicyInstance {
    type Plugin = LoadedPolicy;
    const KIND: &'static str = "policy";

    /// Instantiates `policy` and calls its `init` with `config_json`.
    fn instantiate(
        policy: &LoadedPolicy,
        services: Arc<Services>,
        limits: &Limits,
        config_json: &str,
    ) -> Result<Self, CallError> {
        let (mut store, deadline) = new_store(services, limits)?;
        let bindings = match &policy.pre {
            Pre::Current(pre) => pre.instantiate(&mut store).map(Bindings::Current),
            Pre::V0_2(pre) => pre.instantiate(&mut store).map(Bindings::V0_2),
        }
        .map_err(|e| classify(&store, e))?;
        let needs_spans = match &bindings {
            Bindings::Current(b) => b
                .wasmcol_plugin_sampler()
                .call_init(&mut store, config_json)
                .map(|r| r.map(|info| info.needs_spans)),
            Bindings::V0_2(b) => b
                .wasmcol_plugin_sampler()
                .call_init(&mut store, config_json)
                .map(|r| r.map(|info| info.needs_spans)),
        }
        .map_err(|e| classify(&store, e))?
        .map_err(CallError::Rejected)?;
        Ok(Self {
            store,
            bindings,
            deadline,
            max_output: limits.max_output_bytes.0 as usize,
            needs_spans,
        })
    }

    fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory_bytes
    }
}

impl PolicyInstance {
    /// Whether the plugin reads span contents (else the host sends summaries only).
    pub fn needs_spans(&self) -> bool {
        self.needs_spans
    }

    /// Asks for one decision per trace. `batch` is the traces' `TracesData` (empty when the
    /// plugin does not read spans), `counts[i]` the resource spans of trace `i` in it. Every
    /// answer is checked: one decision per trace, a short policy name, a probability in (0, 1]
    /// for kept traces.
    pub fn decide(
        &mut self,
        batch: &[u8],
        summaries: &[TraceSummary],
        counts: &[u32],
    ) -> Result<Vec<Decision>, CallError> {
        let traces: Vec<wit::TraceSummary> = summaries
            .iter()
            .zip(counts)
            .map(|(s, &n)| to_wit(s, n))
            .collect();
        self.deadline.arm(&mut self.store);
        let answer = match &self.bindings {
            Bindings::Current(b) => {
                b.wasmcol_plugin_sampler()
                    .call_decide(&mut self.store, batch, &traces)
            }
            Bindings::V0_2(b) => {
                let traces: Vec<wit_v0_2::TraceSummary> = traces.into_iter().map(to_v0_2).collect();
                b.wasmcol_plugin_sampler()
                    .call_decide(&mut self.store, batch, &traces)
                    .map(|r| r.map(|d| d.into_iter().map(from_v0_2).collect()))
            }
        }
        .map_err(|e| classify(&self.store, e))?
        .map_err(CallError::Failed)?;
        if answer.len() != summaries.len() {
            return Err(CallError::InvalidOutput(format!(
                "{} decisions for {} traces",
                answer.len(),
                summaries.len()
            )));
        }
        let mut size = 0usize;
        answer
            .into_iter()
            .map(|d| {
                size += 16 + d.policy.len();
                if size > self.max_output {
                    return Err(too_large(size, self.max_output));
                }
                check(d)
            })
            .collect()
    }
}

fn check(d: wit::Decision) -> Result<Decision, CallError> {
    if d.policy.len() > MAX_POLICY_NAME {
        return Err(CallError::InvalidOutput(format!(
            "a policy name is {} bytes long, at most {MAX_POLICY_NAME} are allowed",
            d.policy.len()
        )));
    }
    if d.sample && !(d.probability > 0.0 && d.probability <= 1.0) {
        return Err(CallError::InvalidOutput(format!(
            "policy {:?} kept a trace with probability {}, which is not in (0, 1]",
            d.policy, d.probability
        )));
    }
    Ok(Decision {
        sample: d.sample,
        policy: d.policy,
        probability: if d.sample { d.probability } else { 0.0 },
    })
}

fn to_wit(s: &TraceSummary, resource_spans: u32) -> wit::TraceSummary {
    let hi = u64::from_be_bytes(s.trace_id[..8].try_into().expect("8 bytes"));
    let lo = u64::from_be_bytes(s.trace_id[8..].try_into().expect("8 bytes"));
    wit::TraceSummary {
        trace_id: (hi, lo),
        resource_spans,
        span_count: s.span_count,
        encoded_bytes: s.encoded_bytes,
        start_unix_nano: s.start_unix_nano,
        end_unix_nano: s.end_unix_nano,
        has_root: s.has_root,
        error_spans: s.error_spans,
        ok_spans: s.ok_spans,
        service_name: s.service_name.clone(),
        first_seen_unix_nano: s.first_seen_unix_nano,
    }
}

/// A summary in 0.2.0's types (the same record).
fn to_v0_2(t: wit::TraceSummary) -> wit_v0_2::TraceSummary {
    wit_v0_2::TraceSummary {
        trace_id: t.trace_id,
        resource_spans: t.resource_spans,
        span_count: t.span_count,
        encoded_bytes: t.encoded_bytes,
        start_unix_nano: t.start_unix_nano,
        end_unix_nano: t.end_unix_nano,
        has_root: t.has_root,
        error_spans: t.error_spans,
        ok_spans: t.ok_spans,
        service_name: t.service_name,
        first_seen_unix_nano: t.first_seen_unix_nano,
    }
}

/// A 0.2.0 decision in the current types (the same record).
fn from_v0_2(d: wit_v0_2::Decision) -> wit::Decision {
    wit::Decision {
        sample: d.sample,
        policy: d.policy,
        probability: d.probability,
    }
}
