//! Attribute-list operations on the plugin's decoded copy (the mutable API). They mean what an
//! edit means when the host applies it to bytes (`wire::edit`): `tests/view.rs` holds the
//! mutable API's result to view mode's, whose edits go through `wire::edit`.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

/// Sets `key` to `value`: replaces the first attribute with that key, or appends one.
pub fn set(attributes: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match attributes.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = Some(value),
        None => attributes.push(KeyValue {
            key: key.to_string(),
            value: Some(value),
            ..Default::default()
        }),
    }
}

/// Removes every attribute named `key`; returns the first removed value.
pub fn remove(attributes: &mut Vec<KeyValue>, key: &str) -> Option<AnyValue> {
    let pos = attributes.iter().position(|kv| kv.key == key)?;
    let removed = attributes.remove(pos).value;
    attributes.retain(|kv| kv.key != key);
    Some(removed.unwrap_or_default())
}

/// The value of the first attribute named `key`.
pub fn get<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}
