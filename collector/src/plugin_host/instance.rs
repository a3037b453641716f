//! One plugin instance: a store with its limits, the instantiated component, and the calls
//! into it with a deadline. Anything that goes wrong comes back as a [`CallError`]; the
//! caller then throws the instance away.

use std::fmt;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::AnyValue;
use prost::Message;
use wasmcol_plugin_sdk::edit::{Edit, Target};
use wasmcol_plugin_sdk::wire::edit as wire_edit;
use wasmcol_plugin_sdk::{StatusCode, Value};
use wasmtime::Store;

use super::bindings::v0_1::wasmcol::plugin::types as wit_v0_1;
use super::bindings::v0_2::wasmcol::plugin::types as wit_v0_2;
use super::bindings::wasmcol::plugin::types as wit;
use super::engine::{self, EPOCH_TICK};
use super::host::{HostState, Services};
use super::limits::{self, Limits};
use super::plugin::{LoadedPlugin, Pre};
use crate::pipeline::{Batch, Logs, Metrics, Signal, Traces};

/// An instantiated plugin, through the bindings of the package version it was built for.
pub enum Bindings {
    /// `wasmcol:plugin@0.3.0`.
    Current(super::bindings::Plugin),
    /// `wasmcol:plugin@0.2.0` (traces and logs).
    V0_2(super::bindings::v0_2::Plugin),
    /// `wasmcol:plugin@0.1.0` (traces only).
    V0_1(super::bindings::v0_1::Plugin),
}

/// A signal processor plugins handle: which export a batch goes to, and how the plugin's
/// edits are applied to the batch's bytes. Everything else (limits, deadlines, `on_error`,
/// splitting, back-off) is the same for every signal.
pub trait PluginSignal: Signal {
    /// Calls the plugin's handler for a batch of this signal (protobuf `bytes`).
    fn call(
        bindings: &Bindings,
        store: &mut Store<HostState>,
        bytes: &[u8],
    ) -> wasmtime::Result<Result<wit::Output, String>>;

    /// Checks and applies edits to the batch's bytes (`wire::edit::apply`, `apply_logs` or
    /// `apply_metrics`).
    fn apply(bytes: &[u8], edits: Vec<Edit>) -> Result<wire_edit::Edited, String>;
}

impl PluginSignal for Traces {
    fn call(
        bindings: &Bindings,
        store: &mut Store<HostState>,
        bytes: &[u8],
    ) -> wasmtime::Result<Result<wit::Output, String>> {
        match bindings {
            Bindings::Current(b) => b.wasmcol_plugin_processor().call_process(store, bytes),
            Bindings::V0_2(b) => Ok(b
                .wasmcol_plugin_processor()
                .call_process(store, bytes)?
                .map(from_v0_2)),
            Bindings::V0_1(b) => Ok(b
                .wasmcol_plugin_processor()
                .call_process(store, bytes)?
                .map(from_v0_1)),
        }
    }

    fn apply(bytes: &[u8], edits: Vec<Edit>) -> Result<wire_edit::Edited, String> {
        wire_edit::apply(bytes, edits)
    }
}

impl PluginSignal for Logs {
    fn call(
        bindings: &Bindings,
        store: &mut Store<HostState>,
        bytes: &[u8],
    ) -> wasmtime::Result<Result<wit::Output, String>> {
        match bindings {
            Bindings::Current(b) => b.wasmcol_plugin_processor().call_process_logs(store, bytes),
            Bindings::V0_2(b) => Ok(b
                .wasmcol_plugin_processor()
                .call_process_logs(store, bytes)?
                .map(from_v0_2)),
            // The processor refuses logs pipelines for these (`LoadedPlugin::lacks`).
            Bindings::V0_1(_) => Ok(Err(
                "the plugin was built for wasmcol:plugin@0.1.0, which has no logs".into(),
            )),
        }
    }

    fn apply(bytes: &[u8], edits: Vec<Edit>) -> Result<wire_edit::Edited, String> {
        wire_edit::apply_logs(bytes, edits)
    }
}

impl PluginSignal for Metrics {
    fn call(
        bindings: &Bindings,
        store: &mut Store<HostState>,
        bytes: &[u8],
    ) -> wasmtime::Result<Result<wit::Output, String>> {
        match bindings {
            Bindings::Current(b) => b
                .wasmcol_plugin_processor()
                .call_process_metrics(store, bytes),
            // The processor refuses metrics pipelines for these (`LoadedPlugin::lacks`).
            Bindings::V0_2(_) => Ok(Err(
                "the plugin was built for wasmcol:plugin@0.2.0, which has no metrics".into(),
            )),
            Bindings::V0_1(_) => Ok(Err(
                "the plugin was built for wasmcol:plugin@0.1.0, which has no metrics".into(),
            )),
        }
    }

    fn apply(bytes: &[u8], edits: Vec<Edit>) -> Result<wire_edit::Edited, String> {
        wire_edit::apply_metrics(bytes, edits)
    }
}

/// Converts an older version's answer into the current types (each version only adds cases).
macro_rules! from_older {
    // `$value` names the value conversion for the extra cases (hygiene keeps the macro's own
    // names from them).
    ($name:ident, $old:ident, $value:ident, { $($extra_edit:tt)* }, { $($extra_target:tt)* }) => {
        fn $name(output: $old::Output) -> wit::Output {
            let $value = |v: $old::Value| match v {
                $old::Value::Str(v) => wit::Value::Str(v),
                $old::Value::Int(v) => wit::Value::Int(v),
                $old::Value::Double(v) => wit::Value::Double(v),
                $old::Value::Boolean(v) => wit::Value::Boolean(v),
                $old::Value::Bytes(v) => wit::Value::Bytes(v),
                $old::Value::Encoded(v) => wit::Value::Encoded(v),
            };
            let target = |t: $old::Target| match t {
                $old::Target::Resource(i) => wit::Target::Resource(i),
                $old::Target::Scope(i) => wit::Target::Scope(i),
                $old::Target::Span(i) => wit::Target::Span(i),
                $old::Target::Event(i) => wit::Target::Event(i),
                $old::Target::Link(i) => wit::Target::Link(i),
                $($extra_target)*
            };
            let edit = |e: $old::Edit| match e {
                $old::Edit::SetAttribute(s) => wit::Edit::SetAttribute(wit::SetAttribute {
                    target: target(s.target),
                    key: s.key,
                    value: $value(s.value),
                }),
                $old::Edit::RemoveAttribute(r) => {
                    wit::Edit::RemoveAttribute(wit::RemoveAttribute {
                        target: target(r.target),
                        key: r.key,
                    })
                }
                $old::Edit::SetSpanName(n) => wit::Edit::SetSpanName(n),
                $old::Edit::SetEventName(n) => wit::Edit::SetEventName(n),
                $old::Edit::SetStatus(s) => wit::Edit::SetStatus(wit::SetStatus {
                    span: s.span,
                    code: match s.code {
                        $old::StatusCode::Unset => wit::StatusCode::Unset,
                        $old::StatusCode::Ok => wit::StatusCode::Ok,
                        $old::StatusCode::Error => wit::StatusCode::Error,
                    },
                    message: s.message,
                }),
                $old::Edit::DropSpan(i) => wit::Edit::DropSpan(i),
                $($extra_edit)*
            };
            match output {
                $old::Output::Unchanged => wit::Output::Unchanged,
                $old::Output::Replace(b) => wit::Output::Replace(b),
                $old::Output::Edits(edits) => {
                    wit::Output::Edits(edits.into_iter().map(edit).collect())
                }
            }
        }
    };
}

from_older!(from_v0_1, wit_v0_1, value, {}, {});
from_older!(
    from_v0_2,
    wit_v0_2,
    value,
    {
        wit_v0_2::Edit::SetBody(b) => wit::Edit::SetBody(wit::SetBody {
            log_record: b.log_record,
            value: value(b.value),
        }),
        wit_v0_2::Edit::DropLogRecord(i) => wit::Edit::DropLogRecord(i),
    },
    { wit_v0_2::Target::LogRecord(i) => wit::Target::LogRecord(i), }
);

/// How a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The plugin rejected its configuration (from `init`).
    Rejected(String),
    /// The plugin returned an error for a batch.
    Failed(String),
    /// The call ran past its deadline.
    Timeout,
    /// The plugin tried to grow its memory past the cap.
    MemoryLimit,
    /// The plugin trapped: a panic, stack overflow, or another fault.
    Trap(String),
    /// The plugin needs more than an instance may have (a second memory, more tables or
    /// instances than allowed): it cannot run at all.
    Unsupported(String),
    /// The plugin's answer was malformed: an index out of range, a bad value.
    InvalidOutput(String),
    /// The plugin's answer was larger than `limits.max_output_bytes` (counted as
    /// `invalid_output`).
    OutputTooLarge {
        /// Bytes the answer held, counted up to the point it passed the cap.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The plugin answered with more than `limits.max_edits` edits (counted as
    /// `invalid_output`).
    TooManyEdits {
        /// Edits in the answer.
        edits: usize,
        /// The cap.
        max: usize,
    },
    /// Lifting the plugin's answer (or the arguments of a host call) out of its memory would
    /// have taken more than `budget` bytes of host memory, so it stopped there (counted as
    /// `invalid_output`). The budget is what an answer within `limits.max_output_bytes` and
    /// `limits.max_edits` needs; strings that alias one another count once per use.
    OverBudget {
        /// The budget, in bytes.
        budget: usize,
    },
    /// The host panicked during the call (a defect on the host side, caught by the caller).
    Panic(String),
}

impl CallError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            CallError::Rejected(_) => "rejected_config",
            CallError::Failed(_) => "error",
            CallError::Timeout => "timeout",
            CallError::MemoryLimit => "memory_limit",
            CallError::Trap(_) | CallError::Unsupported(_) => "trap",
            CallError::InvalidOutput(_)
            | CallError::OutputTooLarge { .. }
            | CallError::TooManyEdits { .. }
            | CallError::OverBudget { .. } => "invalid_output",
            CallError::Panic(_) => "panic",
        }
    }

    /// True when the batch was too big for the plugin's limits (memory, output size): the
    /// same data in smaller pieces may well succeed.
    pub fn exceeds_limits(&self) -> bool {
        matches!(
            self,
            CallError::MemoryLimit
                | CallError::OutputTooLarge { .. }
                | CallError::TooManyEdits { .. }
                | CallError::OverBudget { .. }
        )
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rejected(m) => write!(f, "rejected its configuration: {m}"),
            CallError::Failed(m) => write!(f, "returned an error: {m}"),
            CallError::Timeout => f.write_str("ran past its call_timeout and was stopped"),
            CallError::MemoryLimit => {
                f.write_str("tried to grow its memory past limits.memory_mib")
            }
            CallError::Trap(m) => write!(f, "trapped: {m}"),
            CallError::Unsupported(m) => write!(
                f,
                "needs more than a plugin instance may have ({m}): at most {} linear memory, \
                 {} tables and {} core instances",
                limits::MAX_MEMORIES,
                limits::MAX_TABLES,
                limits::MAX_INSTANCES
            ),
            CallError::InvalidOutput(m) => write!(f, "returned an invalid answer: {m}"),
            CallError::OutputTooLarge { size, max } => write!(
                f,
                "returned an invalid answer: the answer is {size} bytes, more than \
                 limits.max_output_bytes ({max})"
            ),
            CallError::TooManyEdits { edits, max } => write!(
                f,
                "returned an invalid answer: {edits} edits, more than limits.max_edits ({max})"
            ),
            CallError::OverBudget { budget } => write!(
                f,
                "returned an invalid answer: lifting it out of the plugin's memory would take \
                 more than {budget} bytes (what limits.max_output_bytes and limits.max_edits \
                 allow)"
            ),
            CallError::Panic(m) => write!(f, "call ended in a host-side panic: {m}"),
        }
    }
}

/// A live plugin instance.
pub struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    deadline: Deadline,
    max_output: usize,
    max_edits: usize,
}

impl Instance {
    /// Instantiates `plugin` and calls its `init` with `config_json`.
    pub fn new(
        plugin: &LoadedPlugin,
        services: Arc<Services>,
        limits: &Limits,
        config_json: &str,
    ) -> Result<Self, CallError> {
        let (mut store, deadline) = new_store(services, limits)?;
        // Wasmtime counts every byte it copies out of guest memory (each string and list, each
        // time it is used) against this budget before allocating it, so an answer cannot make
        // the host allocate more than the limits allow, however its strings alias each other.
        store.set_hostcall_fuel(lift_budget(limits));
        let bindings = match &plugin.pre {
            Pre::Current(pre) => pre.instantiate(&mut store).map(Bindings::Current),
            Pre::V0_2(pre) => pre.instantiate(&mut store).map(Bindings::V0_2),
            Pre::V0_1(pre) => pre.instantiate(&mut store).map(Bindings::V0_1),
        }
        .map_err(|e| classify(&store, e))?;
        let mut inst = Self {
            store,
            bindings,
            deadline,
            max_output: limits.max_output_bytes.0 as usize,
            max_edits: limits.max_edits,
        };
        inst.deadline.arm(&mut inst.store);
        let result = match &inst.bindings {
            Bindings::Current(b) => b
                .wasmcol_plugin_processor()
                .call_init(&mut inst.store, config_json),
            Bindings::V0_2(b) => b
                .wasmcol_plugin_processor()
                .call_init(&mut inst.store, config_json),
            Bindings::V0_1(b) => b
                .wasmcol_plugin_processor()
                .call_init(&mut inst.store, config_json),
        }
        .map_err(|e| classify(&inst.store, e))?;
        result.map_err(CallError::Rejected)?;
        Ok(inst)
    }

    /// Linear memory the instance holds now, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory_bytes
    }

    /// Runs the plugin over the batch and applies its answer. On any error the batch is left
    /// as it was. Edits are applied to the protobuf the plugin saw, never decoding it, and
    /// the batch (which an earlier stage may still share, e.g. for a retry) is replaced by
    /// the edited bytes only when there is something to change.
    pub fn process<S: PluginSignal>(&mut self, batch: &mut Batch<S>) -> Result<(), CallError> {
        // The received bytes when no stage changed them (no encoding at all).
        let bytes = batch.to_protobuf();
        self.deadline.arm(&mut self.store);
        let output = S::call(&self.bindings, &mut self.store, &bytes)
            .map_err(|e| classify(&self.store, e))?
            .map_err(CallError::Failed)?;
        match output {
            wit::Output::Unchanged => Ok(()),
            wit::Output::Edits(edits) => {
                if edits.len() > self.max_edits {
                    return Err(CallError::TooManyEdits {
                        edits: edits.len(),
                        max: self.max_edits,
                    });
                }
                let edits = convert_edits(edits, self.max_output)?;
                if edits.is_empty() {
                    return Ok(());
                }
                let edited = S::apply(&bytes, edits).map_err(CallError::InvalidOutput)?;
                batch.set_trusted_protobuf(edited.bytes.into(), edited.spans);
                Ok(())
            }
            wit::Output::Replace(replacement) => {
                if replacement.len() > self.max_output {
                    return Err(too_large(replacement.len(), self.max_output));
                }
                let replaced = Batch::<S>::from_protobuf(replacement.into()).map_err(|e| {
                    CallError::InvalidOutput(format!(
                        "the replacement batch is not valid OTLP protobuf: {e}"
                    ))
                })?;
                batch.set_payload_of(replaced);
                Ok(())
            }
        }
    }
}

/// A call's deadline: epoch ticks for guest code, a point in time for blocking WASI waits.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    ticks: u64,
    timeout: std::time::Duration,
}

impl Deadline {
    /// Starts the clock for one call: guest code is interrupted, and blocking waits (sleep,
    /// poll) end, once `call_timeout` has passed.
    pub fn arm(&self, store: &mut Store<HostState>) {
        store.set_epoch_deadline(self.ticks);
        store.data_mut().call_deadline = std::time::Instant::now() + self.timeout;
    }
}

/// A store with the instance's memory cap and call deadline (armed for the first call), and
/// the deadline.
pub fn new_store(
    services: Arc<Services>,
    limits: &Limits,
) -> Result<(Store<HostState>, Deadline), CallError> {
    let engine = engine::get().map_err(CallError::Trap)?;
    let mut store = Store::new(
        &engine.engine,
        HostState::new(services, limits.memory_bytes()),
    );
    store.limiter(|s| &mut s.limiter);
    // The clock may tick right after the call starts, so one extra tick keeps the deadline
    // from ever coming early; it comes at most one tick late.
    let deadline = Deadline {
        ticks: limits
            .call_timeout
            .0
            .as_nanos()
            .div_ceil(EPOCH_TICK.as_nanos()) as u64
            + 1,
        timeout: limits.call_timeout.0,
    };
    deadline.arm(&mut store);
    // The epoch thread makes up ticks it missed on a busy machine, so the epoch can reach a
    // deadline before the clock does: the call is interrupted only once `call_deadline` has
    // really passed, and otherwise runs on for the ticks still left.
    store.epoch_deadline_callback(|ctx| {
        let left = ctx
            .data()
            .call_deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(wasmtime::Trap::Interrupt.into());
        }
        Ok(wasmtime::UpdateDeadline::Continue(
            left.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1) as u64,
        ))
    });
    Ok((store, deadline))
}

/// Names a failed call: deadline, memory cap, or the trap with the plugin's last words.
pub fn classify(store: &Store<HostState>, e: wasmtime::Error) -> CallError {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::Interrupt {
            return CallError::Timeout;
        }
        let stderr = store.data().stderr();
        return CallError::Trap(if stderr.is_empty() {
            trap.to_string()
        } else {
            format!("{trap}; the plugin wrote: {stderr}")
        });
    }
    if store.data().limiter.hit_limit {
        return CallError::MemoryLimit;
    }
    // The limiter's counts of memories, tables and instances, checked at instantiation.
    if let Some(m) = format!("{e:#}")
        .split(": ")
        .find(|m| m.contains("count too high"))
    {
        return CallError::Unsupported(m.to_string());
    }
    // Wasmtime's error for a lift past `Store::set_hostcall_fuel` (its type is private).
    if format!("{e:#}").contains("fuel allocated for hostcalls has been exhausted") {
        return CallError::OverBudget {
            budget: store.hostcall_fuel(),
        };
    }
    // Lifting the answer failed (e.g. a string that is not UTF-8), or another host-side
    // check refused it.
    let msg = format!("{e:#}");
    if msg.contains("utf-8") || msg.contains("UTF-8") || msg.contains("out of bounds") {
        CallError::InvalidOutput(msg)
    } else {
        CallError::Trap(msg)
    }
}

/// Host memory that lifting an answer within the limits takes, at most: its strings and byte
/// lists (`max_output_bytes`), the edit list (`max_edits` edits as the host holds them), and
/// room for an error message.
pub fn lift_budget(limits: &Limits) -> usize {
    (limits.max_output_bytes.0 as usize)
        .saturating_add(
            limits
                .max_edits
                .saturating_mul(std::mem::size_of::<wit::Edit>()),
        )
        .saturating_add(64 << 10)
}

/// The error for an answer past `limits.max_output_bytes`.
pub fn too_large(size: usize, max: usize) -> CallError {
    CallError::OutputTooLarge { size, max }
}

/// Converts WIT edits into the SDK's, counting their size against the output cap and
/// decoding nested values.
fn convert_edits(edits: Vec<wit::Edit>, max: usize) -> Result<Vec<Edit>, CallError> {
    let mut size = 0usize;
    let mut out = Vec::with_capacity(edits.len());
    for e in edits {
        size += 16;
        let converted = match e {
            wit::Edit::SetAttribute(s) => {
                size += s.key.len();
                let value = value(s.value, &mut size, || format!("attribute {:?}", s.key))?;
                Edit::SetAttribute {
                    target: target(s.target),
                    key: s.key,
                    value,
                }
            }
            wit::Edit::SetBody(b) => Edit::SetBody {
                record: b.log_record,
                value: value(b.value, &mut size, || {
                    format!("the body of log record {}", b.log_record)
                })?,
            },
            wit::Edit::DropLogRecord(record) => Edit::DropLogRecord { record },
            wit::Edit::DropDataPoint(point) => Edit::DropDataPoint { point },
            wit::Edit::DropMetric(metric) => Edit::DropMetric { metric },
            wit::Edit::RemoveAttribute(r) => {
                size += r.key.len();
                Edit::RemoveAttribute {
                    target: target(r.target),
                    key: r.key,
                }
            }
            wit::Edit::SetSpanName((span, name)) => {
                size += name.len();
                Edit::SetSpanName { span, name }
            }
            wit::Edit::SetEventName((span, event, name)) => {
                size += name.len();
                Edit::SetEventName { span, event, name }
            }
            wit::Edit::SetStatus(s) => {
                size += s.message.len();
                Edit::SetStatus {
                    span: s.span,
                    code: match s.code {
                        wit::StatusCode::Unset => StatusCode::Unset,
                        wit::StatusCode::Ok => StatusCode::Ok,
                        wit::StatusCode::Error => StatusCode::Error,
                    },
                    message: s.message,
                }
            }
            wit::Edit::DropSpan(span) => Edit::DropSpan { span },
        };
        if size > max {
            return Err(too_large(size, max));
        }
        out.push(converted);
    }
    Ok(out)
}

fn target(t: wit::Target) -> Target {
    match t {
        wit::Target::Resource(i) => Target::Resource(i),
        wit::Target::Scope(i) => Target::Scope(i),
        wit::Target::Span(i) => Target::Span(i),
        wit::Target::Event((s, e)) => Target::Event(s, e),
        wit::Target::Link((s, l)) => Target::Link(s, l),
        wit::Target::LogRecord(i) => Target::LogRecord(i),
        wit::Target::DataPoint(i) => Target::DataPoint(i),
    }
}

/// A value from the plugin's answer, counted against the output cap; `what` names it in errors.
pub(crate) fn value(
    v: wit::Value,
    size: &mut usize,
    what: impl FnOnce() -> String,
) -> Result<Value, CallError> {
    Ok(match v {
        wit::Value::Str(v) => {
            *size += v.len();
            Value::Str(v)
        }
        wit::Value::Int(v) => Value::Int(v),
        wit::Value::Double(v) => Value::Double(v),
        wit::Value::Boolean(v) => Value::Bool(v),
        wit::Value::Bytes(v) => {
            *size += v.len();
            Value::Bytes(v)
        }
        wit::Value::Encoded(v) => {
            *size += v.len();
            let any = AnyValue::decode(&v[..]).map_err(|e| {
                CallError::InvalidOutput(format!(
                    "{}: the encoded value is not an OTLP AnyValue: {e}",
                    what()
                ))
            })?;
            Value::Any(any)
        }
    })
}
