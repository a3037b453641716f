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
        String::deserialize(d).map(Self)
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
}
