//! Value types with units, written in YAML the way the OpenTelemetry Collector writes them.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub use wasmcol_plugin_sdk::units::{Duration, parse_duration};

/// A size in bytes: a plain integer, or a number with a unit (`512KiB`, `20MiB`, `1GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// From mebibytes.
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Parses `123`, `64KiB`, `20MiB`, `1GiB`, `10KB`, `5MB`, `1GB` (case-insensitive units).
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let number: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * mult;
    (bytes.is_finite() && bytes >= 0.0 && bytes <= u64::MAX as f64).then_some(bytes.round() as u64)
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: u64 = 1024 * 1024;
        match self.0 {
            b if b >= MIB && b % MIB == 0 => write!(f, "{}MiB", b / MIB),
            b if b >= 1024 && b % 1024 == 0 => write!(f, "{}KiB", b / 1024),
            b => write!(f, "{b}B"),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like 20MiB")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v)
                    .map(ByteSize)
                    .ok_or_else(|| E::custom(format!("expected a size like 20MiB, got {v:?}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("expected a size like 20MiB, got {v}")))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as StdDuration;

    #[test]
    fn durations_like_go() {
        assert_eq!(parse_duration("200ms"), Some(StdDuration::from_millis(200)));
        assert_eq!(parse_duration("1m30s"), Some(StdDuration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Some(StdDuration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Some(StdDuration::ZERO));
        assert_eq!(parse_duration("fast"), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(Duration::from_millis(200).to_string(), "200ms");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("20MiB"), Some(20 * 1024 * 1024));
        assert_eq!(parse_byte_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_byte_size("4096"), Some(4096));
        assert_eq!(parse_byte_size("lots"), None);
        assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
    }
}
