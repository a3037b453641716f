//! Request body compression with a cap on the decompressed size.
//!
//! The cap is enforced while inflating, so a small gzip "bomb" never grows past the limit in
//! memory (the class of bug behind CVE-2024-36129).

use std::io::Read;

/// Content encodings a receiver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No compression.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard.
    Zstd,
    /// zlib-wrapped deflate (RFC 1950).
    Deflate,
}

impl Encoding {
    /// Parses a `Content-Encoding` header value.
    pub fn from_header(value: Option<&str>) -> Result<Self, String> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Ok(Self::Identity),
            Some("gzip") | Some("x-gzip") => Ok(Self::Gzip),
            Some("zstd") => Ok(Self::Zstd),
            Some("deflate") => Ok(Self::Deflate),
            Some(other) => Err(format!("unsupported content encoding {other:?}")),
        }
    }
}

/// Why a body could not be decompressed.
#[derive(Debug, PartialEq, Eq)]
pub enum DecompressError {
    /// The decompressed body would exceed the limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not valid for its encoding.
    Corrupt(String),
}

/// Decompresses `body` into a buffer, failing as soon as more than `limit` bytes come out.
pub fn decompress(
    encoding: Encoding,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                Err(DecompressError::TooLarge { limit })
            } else {
                Ok(body.to_vec())
            }
        }
        Encoding::Gzip => read_capped(flate2::read::MultiGzDecoder::new(body), limit),
        Encoding::Deflate => read_capped(flate2::read::ZlibDecoder::new(body), limit),
        Encoding::Zstd => match zstd::stream::read::Decoder::new(body) {
            Ok(d) => read_capped(d, limit),
            Err(e) => Err(DecompressError::Corrupt(e.to_string())),
        },
    }
}

fn read_capped(reader: impl Read, limit: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    let mut capped = reader.take(limit as u64 + 1);
    capped
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn round_trips_under_the_limit() {
        let data = vec![7u8; 1000];
        assert_eq!(
            decompress(Encoding::Gzip, &gzip(&data), 1000).unwrap(),
            data
        );
        let z = zstd::encode_all(&data[..], 1).unwrap();
        assert_eq!(decompress(Encoding::Zstd, &z, 1000).unwrap(), data);
    }

    #[test]
    fn bomb_is_stopped_at_the_limit() {
        let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
        assert!(bomb.len() < 512 * 1024, "{}", bomb.len());
        assert_eq!(
            decompress(Encoding::Gzip, &bomb, 1024 * 1024),
            Err(DecompressError::TooLarge { limit: 1024 * 1024 })
        );
    }

    #[test]
    fn corrupt_and_unknown() {
        assert!(matches!(
            decompress(Encoding::Gzip, b"not gzip", 100),
            Err(DecompressError::Corrupt(_))
        ));
        assert!(Encoding::from_header(Some("br")).is_err());
        assert_eq!(Encoding::from_header(Some("GZIP")), Ok(Encoding::Gzip));
    }
}
