//! Bindings generated from `wit/plugin.wit` for the guest side (wasm32 builds only).

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "wasmcol_plugin_sdk::guest",
});

/// `fn summary`: a [`crate::policy::TraceSummary`] from a world's `trace-summary` record (the
/// policy and analyser worlds each generate their own type of it, with the same fields).
macro_rules! summary_from_wit {
    ($wit:ty) => {
        fn summary(t: $wit) -> TraceSummary {
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&t.trace_id.0.to_be_bytes());
            trace_id[8..].copy_from_slice(&t.trace_id.1.to_be_bytes());
            TraceSummary {
                trace_id,
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
    };
}

/// Bindings for the tail-sampling policy world.
pub mod policy {
    wit_bindgen::generate!({
        path: "wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "wasmcol_plugin_sdk::guest::policy",
    });

    use exports::wasmcol::plugin::sampler as wit;

    use crate::policy::{Decision, TraceSummary};

    /// Decides for a batch through the runtime, converting from and to the WIT types.
    pub fn decide<P: crate::policy::Policy>(
        batch: Vec<u8>,
        traces: Vec<wit::TraceSummary>,
    ) -> Result<Vec<wit::Decision>, String> {
        let counts: Vec<u32> = traces.iter().map(|t| t.resource_spans).collect();
        let summaries: Vec<TraceSummary> = traces.into_iter().map(summary).collect();
        let decisions = crate::runtime::decide::<P>(&batch, &summaries, &counts)?;
        Ok(decisions.into_iter().map(decision).collect())
    }

    summary_from_wit!(wit::TraceSummary);

    fn decision(d: Decision) -> wit::Decision {
        wit::Decision {
            sample: d.sample,
            policy: d.policy,
            probability: d.probability,
        }
    }

    pub use wit::PolicyInfo;
}

/// Bindings for the trace analyser world.
pub mod analyser {
    wit_bindgen::generate!({
        path: "wit",
        world: "analyser",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "wasmcol_plugin_sdk::guest::analyser",
    });

    use exports::wasmcol::plugin::analysis as wit;

    use crate::policy::TraceSummary;

    /// Analyses a batch through the runtime, converting from and to the WIT types.
    pub fn analyse<A: crate::analyser::Analyser>(
        batch: Vec<u8>,
        traces: Vec<wit::TraceSummary>,
    ) -> Result<Vec<wit::Finding>, String> {
        let counts: Vec<u32> = traces.iter().map(|t| t.resource_spans).collect();
        let summaries: Vec<TraceSummary> = traces.into_iter().map(summary).collect();
        let found = crate::runtime::analyse::<A>(&batch, &summaries, &counts)?;
        Ok(found
            .into_iter()
            .map(|(trace, f)| wit::Finding {
                trace,
                pattern: f.pattern,
                anchor: f.anchor,
                spans: f.spans,
                magnitude: f.magnitude,
                attributes: f
                    .attributes
                    .into_iter()
                    .map(|(k, v)| (k, value(v)))
                    .collect(),
            })
            .collect())
    }

    summary_from_wit!(wit::TraceSummary);

    fn value(v: crate::value::Value) -> wasmcol::plugin::types::Value {
        use crate::value::Value;
        use prost::Message;
        use wasmcol::plugin::types::Value as W;
        match v {
            Value::Str(s) => W::Str(s),
            Value::Int(i) => W::Int(i),
            Value::Double(d) => W::Double(d),
            Value::Bool(b) => W::Boolean(b),
            Value::Bytes(b) => W::Bytes(b),
            Value::Any(a) => W::Encoded(a.encode_to_vec()),
        }
    }
}

use wasmcol::plugin::types as wit;

use crate::edit::{Edit, Output, StatusCode, Target};
use crate::value::Value;
use prost::Message;

/// Converts the SDK's output into the WIT type.
pub fn to_wit(output: Output) -> wit::Output {
    match output {
        Output::Unchanged => wit::Output::Unchanged,
        Output::Replace(b) => wit::Output::Replace(b),
        Output::Edits(edits) => wit::Output::Edits(edits.into_iter().map(edit).collect()),
    }
}

fn edit(e: Edit) -> wit::Edit {
    match e {
        Edit::SetAttribute {
            target: t,
            key,
            value: v,
        } => wit::Edit::SetAttribute(wit::SetAttribute {
            target: target(t),
            key,
            value: value(v),
        }),
        Edit::RemoveAttribute { target: t, key } => {
            wit::Edit::RemoveAttribute(wit::RemoveAttribute {
                target: target(t),
                key,
            })
        }
        Edit::SetSpanName { span, name } => wit::Edit::SetSpanName((span, name)),
        Edit::SetEventName { span, event, name } => wit::Edit::SetEventName((span, event, name)),
        Edit::SetStatus {
            span,
            code,
            message,
        } => wit::Edit::SetStatus(wit::SetStatus {
            span,
            code: match code {
                StatusCode::Unset => wit::StatusCode::Unset,
                StatusCode::Ok => wit::StatusCode::Ok,
                StatusCode::Error => wit::StatusCode::Error,
            },
            message,
        }),
        Edit::DropSpan { span } => wit::Edit::DropSpan(span),
        Edit::SetBody { record, value: v } => wit::Edit::SetBody(wit::SetBody {
            log_record: record,
            value: value(v),
        }),
        Edit::DropLogRecord { record } => wit::Edit::DropLogRecord(record),
        Edit::DropDataPoint { point } => wit::Edit::DropDataPoint(point),
        Edit::DropMetric { metric } => wit::Edit::DropMetric(metric),
    }
}

fn target(t: Target) -> wit::Target {
    match t {
        Target::Resource(i) => wit::Target::Resource(i),
        Target::Scope(i) => wit::Target::Scope(i),
        Target::Span(i) => wit::Target::Span(i),
        Target::Event(s, e) => wit::Target::Event((s, e)),
        Target::Link(s, l) => wit::Target::Link((s, l)),
        Target::LogRecord(i) => wit::Target::LogRecord(i),
        Target::DataPoint(i) => wit::Target::DataPoint(i),
    }
}

fn value(v: Value) -> wit::Value {
    match v {
        Value::Str(s) => wit::Value::Str(s),
        Value::Int(i) => wit::Value::Int(i),
        Value::Double(d) => wit::Value::Double(d),
        Value::Bool(b) => wit::Value::Boolean(b),
        Value::Bytes(b) => wit::Value::Bytes(b),
        Value::Any(a) => wit::Value::Encoded(a.encode_to_vec()),
    }
}
