//! Encoding: the canonical OTLP/JSON form, appended to a byte buffer.

use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose;

/// Writes a JSON object's members, leaving out those with default values.
pub(super) struct Obj<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Obj<'a> {
    pub(super) fn start(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, empty: true }
    }

    /// Writes the member name `name` (which needs no escaping) and returns
    /// the buffer for its value.
    pub(super) fn key(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub(super) fn string(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            write_str(self.key(name), value);
        }
    }

    pub(super) fn strings(&mut self, name: &str, values: &[String]) {
        if !values.is_empty() {
            write_list(self.key(name), values, |out, s| write_str(out, s));
        }
    }

    /// A 64-bit integer, as a decimal string.
    pub(super) fn u64(&mut self, name: &str, value: u64) {
        if value != 0 {
            write_u64_string(self.key(name), value);
        }
    }

    /// A repeated 64-bit integer, as decimal strings.
    pub(super) fn u64s(&mut self, name: &str, values: &[u64]) {
        if !values.is_empty() {
            write_list(self.key(name), values, |out, &v| write_u64_string(out, v));
        }
    }

    /// A double, as a number (or one of the strings for NaN and the infinities).
    pub(super) fn f64(&mut self, name: &str, value: f64) {
        // -0.0 too, as prost leaves it out of the binary form.
        if value != 0.0 {
            write_f64(self.key(name), value);
        }
    }

    /// A proto3 `optional` double: written whenever it is set, even to zero.
    pub(super) fn optional_f64(&mut self, name: &str, value: Option<f64>) {
        if let Some(value) = value {
            write_f64(self.key(name), value);
        }
    }

    pub(super) fn f64s(&mut self, name: &str, values: &[f64]) {
        if !values.is_empty() {
            write_list(self.key(name), values, |out, &v| write_f64(out, v));
        }
    }

    pub(super) fn bool(&mut self, name: &str, value: bool) {
        if value {
            self.key(name).extend_from_slice(b"true");
        }
    }

    /// A 32-bit integer (or enum), as a number.
    pub(super) fn i32(&mut self, name: &str, value: i32) {
        if value != 0 {
            write_i64(self.key(name), value.into());
        }
    }

    pub(super) fn u32(&mut self, name: &str, value: u32) {
        if value != 0 {
            write_u64(self.key(name), value.into());
        }
    }

    /// A trace or span id, as lowercase hex.
    pub(super) fn hex(&mut self, name: &str, value: &[u8]) {
        if !value.is_empty() {
            write_hex(self.key(name), value);
        }
    }

    pub(super) fn message<T>(
        &mut self,
        name: &str,
        value: Option<&T>,
        write: fn(&mut Vec<u8>, &T),
    ) {
        if let Some(value) = value {
            write(self.key(name), value);
        }
    }

    pub(super) fn list<T>(&mut self, name: &str, items: &[T], write: fn(&mut Vec<u8>, &T)) {
        if !items.is_empty() {
            write_list(self.key(name), items, write);
        }
    }

    pub(super) fn end(self) {
        self.out.push(b'}');
    }
}

/// Writes a request: `{"<name>":[...]}` with `items` written by `write`.
pub(super) fn write_request<T>(
    out: &mut Vec<u8>,
    name: &str,
    items: &[T],
    write: fn(&mut Vec<u8>, &T),
) {
    let mut request = Obj::start(out);
    // Written even when empty: the result is then still a recognisable request.
    write_list(request.key(name), items, write);
    request.end();
}

/// Writes a JSON array of `items`, each written by `write`.
fn write_list<T>(out: &mut Vec<u8>, items: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

/// Writes a 64-bit integer as proto3 JSON does, as a decimal string.
pub(super) fn write_u64_string(out: &mut Vec<u8>, v: u64) {
    out.push(b'"');
    write_u64(out, v);
    out.push(b'"');
}

/// Writes a signed 64-bit integer as a decimal string.
pub(super) fn write_i64_string(out: &mut Vec<u8>, v: i64) {
    out.push(b'"');
    write_i64(out, v);
    out.push(b'"');
}

/// Writes `s` as a JSON string.
pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Copies runs of bytes that need no escaping in one go.
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX_DIGITS[usize::from(b >> 4)]);
            out.push(HEX_DIGITS[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as a JSON string of lowercase hex digits.
pub(super) fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() * 2 + 2);
    out.push(b'"');
    for &b in bytes {
        out.push(HEX_DIGITS[usize::from(b >> 4)]);
        out.push(HEX_DIGITS[usize::from(b & 0xf)]);
    }
    out.push(b'"');
}

/// Writes `bytes` as a JSON string of standard, padded base64.
pub(super) fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).expect("base64 length overflows usize");
    out.resize(start + len, 0);
    general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .expect("buffer sized by encoded_len");
    out.push(b'"');
}

/// Writes `v` in decimal, without going through `fmt`.
fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub(super) fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// Writes a double: finite ones as the shortest number that reads back the
/// same, the others as the strings proto3 JSON uses for them.
pub(super) fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v.is_infinite() {
        let text: &[u8] = if v > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        };
        out.extend_from_slice(text);
    } else {
        // `Debug` (unlike `Display`) switches to exponent notation for very
        // large and small magnitudes; both forms are valid JSON numbers.
        write!(out, "{v:?}").expect("writing to a Vec cannot fail");
    }
}
