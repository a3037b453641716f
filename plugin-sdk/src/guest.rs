//! Bindings generated from `wit/plugin.wit` for the guest side (wasm32 builds only).

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "wasmcol_plugin_sdk::guest",
});

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
    }
}

fn target(t: Target) -> wit::Target {
    match t {
        Target::Resource(i) => wit::Target::Resource(i),
        Target::Scope(i) => wit::Target::Scope(i),
        Target::Span(i) => wit::Target::Span(i),
        Target::Event(s, e) => wit::Target::Event((s, e)),
        Target::Link(s, l) => wit::Target::Link((s, l)),
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
