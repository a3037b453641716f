//! `otlp::compression::decompress` with every encoding, on any body and limit: it never returns
//! more than the limit, `TooLarge` only when the body really inflates past it, and what it
//! returns is what the body holds (compressing it again and inflating gives it back).
#![no_main]

use std::io::Write as _;

use libfuzzer_sys::fuzz_target;
use wasmcol_fuzz::otlp::compression::{DecompressError, Encoding, decompress};

/// The input: one byte choosing the encoding, two bytes of limit (little endian, so at most
/// 64 KiB: enough to reach the limit from a small body), then the body.
fn split(data: &[u8]) -> Option<(Encoding, usize, &[u8])> {
    let (&[e, l0, l1], body) = data.split_first_chunk::<3>()?;
    let encoding = match e % 4 {
        0 => Encoding::Identity,
        1 => Encoding::Gzip,
        2 => Encoding::Deflate,
        _ => Encoding::Zstd,
    };
    Some((encoding, u16::from_le_bytes([l0, l1]) as usize, body))
}

fn compress(encoding: Encoding, data: &[u8]) -> Vec<u8> {
    match encoding {
        Encoding::Identity => data.to_vec(),
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Encoding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Encoding::Zstd => zstd::encode_all(data, 1).unwrap(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((encoding, limit, body)) = split(data) else {
        return;
    };
    match decompress(encoding, body, limit) {
        Ok(out) => {
            assert!(out.len() <= limit, "{} bytes out, limit {limit}", out.len());
            if encoding == Encoding::Identity {
                assert_eq!(out, body);
            }
            // Exactly at the limit is not over it.
            let again = decompress(encoding, &compress(encoding, &out), out.len());
            assert_eq!(again.as_deref(), Ok(&out[..]));
            // The limit only cuts: a larger one gives the same bytes.
            let larger = decompress(encoding, body, limit + 1024);
            assert_eq!(larger.as_deref(), Ok(&out[..]));
        }
        Err(DecompressError::TooLarge { limit: l }) => {
            assert_eq!(l, limit);
            // The body holds more than `limit` bytes: with room for them it inflates further
            // (or turns out corrupt after them), never to `limit` bytes or fewer.
            if let Ok(out) = decompress(encoding, body, limit + 1024) {
                assert!(
                    out.len() > limit,
                    "{} bytes out, refused at {limit}",
                    out.len()
                );
            }
        }
        Err(DecompressError::Corrupt(_)) => {}
    }
});
