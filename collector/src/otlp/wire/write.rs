//! Writing protobuf by hand, for stages that assemble OTLP messages out of bytes they already
//! hold (buffered spans, edited `tracestate`s) instead of encoding decoded structures.

use prost::encoding::{WireType, encode_key, encode_varint};

/// Writes a length-delimited field.
pub fn write_bytes_field(tag: u32, body: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}
