//! On the metrics side the analysed spans go nowhere, so the buffer need only hold what the
//! analysis reads: a span's ids, trace state, name, kind, times, status, flags and the
//! attributes the detectors look at. Events, links and every other attribute are left out
//! before the spans are buffered, which makes a buffered span several times smaller than
//! the one received. Resources and scopes stay as they are.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use wasmcol_plugin_sdk::wire::{FieldValue, Fields, RawField, raw_fields};

use trace_analysis_plugin::spans::is_read;

/// `Span` fields kept as they are: trace id, span id, trace state, parent span id, name,
/// kind, start and end times, status, flags. Attributes (9) are kept when [`is_read`].
fn keep_span_field(f: &RawField<'_>) -> bool {
    match f.number {
        1..=8 | 15 | 16 => true,
        9 => is_read(key_of(f.payload)),
        _ => false,
    }
}

/// The key of a `KeyValue` body as bytes (the last occurrence wins, as in decoding).
fn key_of(kv: &[u8]) -> &[u8] {
    let mut key: &[u8] = &[];
    for field in Fields::new(kv) {
        if let (1, FieldValue::Len(b)) = field {
            key = b;
        }
    }
    key
}

fn framed(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Appends `request` (an `ExportTraceServiceRequest` that passed validation) to `out` with
/// its spans cut down to what the analysis reads: valid protobuf of the same message, with
/// the same resources, scopes and spans in the same order. `lens` is scratch.
pub fn strip_request(request: &[u8], out: &mut Vec<u8>, lens: &mut Vec<usize>) {
    lens.clear();
    // The span fields kept, found once and copied after.
    let mut kept: Vec<&[u8]> = Vec::new();
    // First the lengths, each message's before its contents (the order they are written in);
    // a span's length is followed by how many of its fields are kept.
    for rs in raw_fields(request) {
        if rs.number != 1 {
            continue;
        }
        let rs_slot = lens.len();
        lens.push(0);
        let mut rs_len = 0;
        for f in raw_fields(rs.payload) {
            if f.number != 2 {
                rs_len += f.bytes.len();
                continue;
            }
            let ss_slot = lens.len();
            lens.push(0);
            let mut ss_len = 0;
            for g in raw_fields(f.payload) {
                if g.number != 2 {
                    ss_len += g.bytes.len();
                    continue;
                }
                let before = kept.len();
                kept.extend(
                    raw_fields(g.payload)
                        .filter(keep_span_field)
                        .map(|h| h.bytes),
                );
                lens.push(kept[before..].iter().map(|h| h.len()).sum());
                lens.push(kept.len() - before);
                let span_len = lens[lens.len() - 2];
                ss_len += framed(span_len);
            }
            lens[ss_slot] = ss_len;
            rs_len += framed(ss_len);
        }
        lens[rs_slot] = rs_len;
    }
    let mut lens = lens.iter().copied();
    let mut next = move || lens.next().unwrap_or_default();
    let mut kept = kept.into_iter();
    let frame = |field: u32, len: usize, out: &mut Vec<u8>| {
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
    };
    for rs in raw_fields(request) {
        if rs.number != 1 {
            continue;
        }
        frame(1, next(), out);
        for f in raw_fields(rs.payload) {
            if f.number != 2 {
                out.extend_from_slice(f.bytes);
                continue;
            }
            frame(2, next(), out);
            for g in raw_fields(f.payload) {
                if g.number != 2 {
                    out.extend_from_slice(g.bytes);
                    continue;
                }
                frame(2, next(), out);
                for h in kept.by_ref().take(next()) {
                    out.extend_from_slice(h);
                }
            }
        }
    }
}
