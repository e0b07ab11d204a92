//! Snapshots of the image, so that the metadata log can be truncated: restart time is then
//! O(metadata), not O(history).
//!
//! ```text
//! "SHMS"  magic, 4 bytes
//! u16     format (1), big-endian
//! u32     body length, big-endian
//! u32     CRC-32C of the body, big-endian
//! body    UTF-8 JSON of the MetadataImage
//! ```
//!
//! A reader refuses a format it does not know, a body whose checksum does not match, and an
//! image that breaks the invariants: a node must not serve metadata from a damaged snapshot.

use crate::image::MetadataImage;

const MAGIC: &[u8; 4] = b"SHMS";
const FORMAT: u16 = 1;
const HEADER_LEN: usize = 14;

/// Why a snapshot cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the metadata snapshot is unreadable: {reason}")]
pub struct SnapshotError {
    pub reason: String,
}

pub fn encode_snapshot(image: &MetadataImage) -> Vec<u8> {
    let body = serde_json::to_vec(image).expect("an image always serializes");
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_be_bytes());
    let len = u32::try_from(body.len()).expect("a metadata image is below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

pub fn decode_snapshot(bytes: &[u8]) -> Result<MetadataImage, SnapshotError> {
    let bad = |reason: String| SnapshotError { reason };
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| bad(format!("it has {} bytes, fewer than a header", bytes.len())))?;
    if &header[..4] != MAGIC {
        return Err(bad("it does not start with \"SHMS\"".to_string()));
    }
    let format = u16::from_be_bytes([header[4], header[5]]);
    if format != FORMAT {
        return Err(bad(format!(
            "it is in format {format}; this build reads format {FORMAT}"
        )));
    }
    let len = u32::from_be_bytes([header[6], header[7], header[8], header[9]]) as usize;
    let stored = u32::from_be_bytes([header[10], header[11], header[12], header[13]]);
    let body = &bytes[HEADER_LEN..];
    if body.len() != len {
        return Err(bad(format!(
            "its header declares {len} body bytes but {} follow",
            body.len()
        )));
    }
    let crc = crc32c::crc32c(body);
    if crc != stored {
        return Err(bad(format!(
            "its body hashes to {crc:#010x} but the header stores {stored:#010x}"
        )));
    }
    let image: MetadataImage =
        serde_json::from_slice(body).map_err(|e| bad(format!("its body is not an image: {e}")))?;
    image.check_invariants().map_err(bad)?;
    Ok(image)
}
