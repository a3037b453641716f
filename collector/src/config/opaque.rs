//! `Opaque`: a configuration string that is a secret (a password, a token), as the
//! OpenTelemetry Collector's `configopaque.String`.
//!
//! It reads from YAML as a plain string (so `${env:VAR}` and `${file:path}` work as for any
//! other value) but never prints: `Debug` and `Display` show `[REDACTED]`, so a secret cannot
//! reach a log line, an error message or a printed configuration by accident. Code that needs
//! the value asks for it with [`Opaque::expose`], which makes every such use easy to find.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// What a secret prints as.
pub const REDACTED: &str = "[REDACTED]";

/// A secret configuration string; see the module docs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Opaque(String);

impl Opaque {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must use it (a header, a handshake).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Opaque {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

/// Takes any scalar as its text: a secret that looks like a number (`${env:PIN}` read as
/// YAML) must not fail with an error message that quotes it.
struct SecretVisitor;

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = Opaque;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Opaque, E> {
        Ok(Opaque::new(v))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Opaque, E> {
        Ok(Opaque(v))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Opaque, E> {
        Ok(Opaque(v.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Opaque, E> {
        Ok(Opaque(v.to_string()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Opaque, E> {
        Ok(Opaque(v.to_string()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Opaque, E> {
        Ok(Opaque(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s: Opaque = serde_yaml_ng::from_str("hunter2").unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s} {s:?}"), "[REDACTED] [REDACTED]");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            password: Opaque,
        }
        let printed = format!("{:?}", Holder { password: s });
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn a_number_like_secret_is_its_text() {
        let s: Opaque = serde_yaml_ng::from_str("12345").unwrap();
        assert_eq!(s.expose(), "12345");
        let err = serde_yaml_ng::from_str::<Opaque>("[1]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a string"), "{err}");
    }
}
