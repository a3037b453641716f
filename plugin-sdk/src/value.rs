//! Attribute values as plugins write them.

use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};

/// A value to store in an attribute. Scalars cross the plugin boundary as they are; arrays and
/// maps ([`Value::Any`]) cross as protobuf and are checked by the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// Anything else, typically an array or a key-value list.
    Any(AnyValue),
}

impl Value {
    /// The OTLP form of this value.
    pub fn into_any_value(self) -> AnyValue {
        let v = match self {
            Value::Str(s) => any_value::Value::StringValue(s),
            Value::Int(i) => any_value::Value::IntValue(i),
            Value::Double(d) => any_value::Value::DoubleValue(d),
            Value::Bool(b) => any_value::Value::BoolValue(b),
            Value::Bytes(b) => any_value::Value::BytesValue(b),
            Value::Any(a) => return a,
        };
        AnyValue { value: Some(v) }
    }
}

impl From<AnyValue> for Value {
    fn from(v: AnyValue) -> Self {
        match v.value {
            Some(any_value::Value::StringValue(s)) => Value::Str(s),
            Some(any_value::Value::IntValue(i)) => Value::Int(i),
            Some(any_value::Value::DoubleValue(d)) => Value::Double(d),
            Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
            Some(any_value::Value::BytesValue(b)) => Value::Bytes(b),
            other => Value::Any(AnyValue { value: other }),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::Str(s.clone())
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Self {
        Value::Double(d)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// The string inside `value`, if it holds one.
pub fn as_str(value: &AnyValue) -> Option<&str> {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}
