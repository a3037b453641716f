//! One trace's spans read in place from their protobuf bytes (the `Span` message bodies the
//! trace buffer holds): every field the detectors use is borrowed from the bytes, read in one
//! pass over each span, and nothing is allocated per span.

use wasmcol_plugin_sdk::wire::{FieldValue, Fields};

/// The span attributes the detectors read, by position in [`TraceSpan::attributes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `db.system`.
    DbSystem,
    /// `db.system.name`.
    DbSystemName,
    /// `db.namespace`.
    DbNamespace,
    /// `db.name`.
    DbName,
    /// `server.address`.
    ServerAddress,
    /// `db.query.text`.
    DbQueryText,
    /// `db.statement`.
    DbStatement,
    /// `peer.service`.
    PeerService,
    /// `net.peer.name`.
    NetPeerName,
    /// `rpc.service`.
    RpcService,
    /// `http.request.method`.
    HttpRequestMethod,
    /// `http.method`.
    HttpMethod,
    /// `url.full`.
    UrlFull,
    /// `http.url`.
    HttpUrl,
    /// `url.path`.
    UrlPath,
    /// `http.target`.
    HttpTarget,
    /// `http.route`.
    HttpRoute,
    /// `url.template`.
    UrlTemplate,
}

/// How many keys [`Key`] has.
pub const KEYS: usize = 18;

/// Prefix of the database query parameters that tell exact repeats apart.
const PARAMETER_PREFIX: &[u8] = b"db.query.parameter.";

fn key_of(key: &[u8]) -> Option<Key> {
    Some(match key {
        b"db.system" => Key::DbSystem,
        b"db.system.name" => Key::DbSystemName,
        b"db.namespace" => Key::DbNamespace,
        b"db.name" => Key::DbName,
        b"server.address" => Key::ServerAddress,
        b"db.query.text" => Key::DbQueryText,
        b"db.statement" => Key::DbStatement,
        b"peer.service" => Key::PeerService,
        b"net.peer.name" => Key::NetPeerName,
        b"rpc.service" => Key::RpcService,
        b"http.request.method" => Key::HttpRequestMethod,
        b"http.method" => Key::HttpMethod,
        b"url.full" => Key::UrlFull,
        b"http.url" => Key::HttpUrl,
        b"url.path" => Key::UrlPath,
        b"http.target" => Key::HttpTarget,
        b"http.route" => Key::HttpRoute,
        b"url.template" => Key::UrlTemplate,
        _ => return None,
    })
}

/// Whether the detectors read attributes named `key`.
pub fn is_read(key: &[u8]) -> bool {
    key_of(key).is_some() || key.starts_with(PARAMETER_PREFIX)
}

/// 64-bit FNV-1a, fed byte by byte: hashing `a` then `b` gives the hash of `a` and `b`
/// concatenated, so a normalized statement can be hashed while it is produced, without
/// building it.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Adds bytes.
    #[inline]
    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Adds a string.
    #[inline]
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// One span of the trace being analysed, borrowed from its bytes.
#[derive(Debug, Clone, Copy)]
pub struct TraceSpan<'a> {
    /// Its resource's `service.name` (empty if none).
    pub service: &'a str,
    /// `name`.
    pub name: &'a str,
    /// `span_id`.
    pub span_id: &'a [u8],
    /// `parent_span_id`, empty for a root.
    pub parent_span_id: &'a [u8],
    /// `trace_state`.
    pub trace_state: &'a str,
    /// `kind`.
    pub kind: i32,
    /// `start_time_unix_nano`.
    pub start: u64,
    /// `end_time_unix_nano`.
    pub end: u64,
    /// `status.code` (0 without a status).
    pub status_code: i32,
    /// The first attribute of each [`Key`], when its value is a non-empty string; empty
    /// otherwise (absent, another kind of value, or empty).
    pub attributes: [&'a str; KEYS],
    /// Hash of the `db.query.parameter.*` attributes, keys and values, in order (0 if none).
    pub parameters: u64,
}

impl<'a> TraceSpan<'a> {
    /// Reads a `Span` message body (checked protobuf: the buffer only holds spans that passed
    /// validation; other bytes read as far as they can, never panicking). As prost does, the
    /// last occurrence of a singular field wins and `status` occurrences merge.
    pub fn read(body: &'a [u8], service: &'a str) -> Self {
        let mut span = TraceSpan {
            service,
            name: "",
            span_id: &[],
            parent_span_id: &[],
            trace_state: "",
            kind: 0,
            start: 0,
            end: 0,
            status_code: 0,
            attributes: [""; KEYS],
            parameters: 0,
        };
        let mut seen = 0u32;
        let mut parameters: Option<Fnv> = None;
        for field in Fields::new(body) {
            match field {
                (2, FieldValue::Len(b)) => span.span_id = b,
                (3, FieldValue::Len(b)) => span.trace_state = as_str(b),
                (4, FieldValue::Len(b)) => span.parent_span_id = b,
                (5, FieldValue::Len(b)) => span.name = as_str(b),
                // int32 fields keep the low 32 bits of the varint, as prost's `as i32` does.
                (6, FieldValue::Varint(v)) => span.kind = v as i32,
                (7, FieldValue::Fixed64(v)) => span.start = v,
                (8, FieldValue::Fixed64(v)) => span.end = v,
                (9, FieldValue::Len(kv)) => {
                    let (key, value) = key_value(kv);
                    if let Some(k) = key_of(key) {
                        let bit = 1u32 << k as u32;
                        if seen & bit == 0 {
                            seen |= bit;
                            span.attributes[k as usize] = string_value(value);
                        }
                    } else if key.starts_with(PARAMETER_PREFIX) {
                        let h = parameters.get_or_insert_with(Fnv::default);
                        h.bytes(b"|");
                        h.bytes(key);
                        h.bytes(b"=");
                        for v in value {
                            h.bytes(v);
                        }
                    }
                }
                (15, FieldValue::Len(status)) => {
                    for field in Fields::new(status) {
                        if let (3, FieldValue::Varint(v)) = field {
                            span.status_code = v as i32;
                        }
                    }
                }
                _ => {}
            }
        }
        span.parameters = parameters.map_or(0, |h| h.0);
        span
    }

    /// The first of `keys` with a non-empty string value.
    pub fn text(&self, keys: &[Key]) -> Option<&'a str> {
        keys.iter()
            .map(|&k| self.attributes[k as usize])
            .find(|s| !s.is_empty())
    }
}

fn as_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// A `KeyValue` body: its key (the last occurrence) and the bodies of its `value`
/// occurrences (which protobuf merges), at most a few.
fn key_value(kv: &[u8]) -> (&[u8], ValueBodies<'_>) {
    let mut key: &[u8] = &[];
    let mut values = ValueBodies::default();
    for field in Fields::new(kv) {
        match field {
            (1, FieldValue::Len(b)) => key = b,
            (2, FieldValue::Len(b)) => values.push(b),
            _ => {}
        }
    }
    (key, values)
}

/// The bodies of a `KeyValue`'s `value` occurrences: almost always one.
#[derive(Default)]
struct ValueBodies<'a> {
    first: Option<&'a [u8]>,
    more: Vec<&'a [u8]>,
}

impl<'a> ValueBodies<'a> {
    fn push(&mut self, b: &'a [u8]) {
        if self.first.is_none() {
            self.first = Some(b);
        } else {
            self.more.push(b);
        }
    }
}

impl<'a> IntoIterator for ValueBodies<'a> {
    type Item = &'a [u8];
    type IntoIter = std::iter::Chain<std::option::IntoIter<&'a [u8]>, std::vec::IntoIter<&'a [u8]>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.more)
    }
}

/// The string of an `AnyValue` (its occurrences merged: the last member of the `value` oneof
/// set wins), empty when it is not a string.
fn string_value(bodies: ValueBodies<'_>) -> &str {
    let mut out = "";
    for any in bodies {
        for field in Fields::new(any) {
            match field {
                (1, FieldValue::Len(s)) => out = as_str(s),
                (2..=8, _) => out = "",
                _ => {}
            }
        }
    }
    out
}

/// The spans of one trace, read from the `ScopeSpans.spans` entries of each of its groups
/// (each with its resource's service), appended to `out` in order.
pub fn read_entries<'a>(entries: &'a [u8], service: &'a str, out: &mut Vec<TraceSpan<'a>>) {
    for field in Fields::new(entries) {
        if let (2, FieldValue::Len(body)) = field {
            out.push(TraceSpan::read(body, service));
        }
    }
}
