//! The Kafka record codecs, with decompression capped by a caller-supplied maximum.
//!
//! Every decompressor reads through [`read_capped`], which never holds more than `max_out + 1`
//! bytes of output, so a compression bomb fails with [`BatchError::DecompressedTooLarge`] after
//! producing at most that much. Formats, as Kafka's Java client writes them:
//! - gzip: RFC 1952, several members accepted (Java's `GZIPInputStream` reads them all);
//! - snappy: xerial framing (`\x82SNAPPY\0`, two version words, then `[u32 BE length][raw block]`
//!   per 32 KiB of input); raw snappy from other clients is accepted too;
//! - lz4: the LZ4 frame format, 64 KiB independent blocks;
//! - zstd: standard frames, level 3 when compressing.

use std::fmt;
use std::io::{self, Read, Write};

use crate::batch::{BatchError, COMPRESSION_CODEC_MASK};

/// Attribute bits 0-2 of a record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec for a Kafka compression id (0-4).
    pub fn from_id(id: u8) -> Result<Self, BatchError> {
        match id {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            other => Err(BatchError::UnknownCompression(other)),
        }
    }

    /// The codec named by a batch's attributes (bits 0-2).
    pub fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        Self::from_id((attributes & COMPRESSION_CODEC_MASK) as u8)
    }

    /// Kafka's id for the codec, as stored in attribute bits 0-2.
    pub fn id(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Magic and version words that open a xerial snappy stream.
pub const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;
const XERIAL_VERSION: i32 = 1;
const XERIAL_COMPATIBLE_VERSION: i32 = 1;
/// Input per xerial block, as the Java client's `SnappyOutputStream` uses.
const XERIAL_BLOCK_INPUT: usize = 32 * 1024;
/// zstd level Kafka uses by default.
const ZSTD_LEVEL: i32 = 3;
/// zstd windows up to this are accepted whatever `max_out` is: 8 MiB covers every standard level
/// up to 19 even when the producer didn't declare the content size.
const ZSTD_WINDOW_LOG_FLOOR: u32 = 23;
/// zstd's own default limit (128 MiB), the most a decoder will ever allocate for a window.
const ZSTD_WINDOW_LOG_CEILING: u32 = 27;

/// Compresses `data` as Kafka producers do for `codec`.
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    let failed = |error: io::Error| BatchError::Compression {
        codec,
        reason: error.to_string(),
    };
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Compression::Snappy => compress_xerial(data),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            encoder.write_all(data).map_err(failed)?;
            encoder.finish().map_err(|error| BatchError::Compression {
                codec,
                reason: error.to_string(),
            })
        }
        Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL).map_err(failed),
    }
}

fn compress_xerial(data: &[u8]) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + snap::raw::max_compress_len(data.len()));
    out.extend_from_slice(XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    out.extend_from_slice(&XERIAL_COMPATIBLE_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for chunk in data.chunks(XERIAL_BLOCK_INPUT) {
        let block = encoder
            .compress_vec(chunk)
            .map_err(|error| BatchError::Compression {
                codec: Compression::Snappy,
                reason: error.to_string(),
            })?;
        // A 32 KiB chunk compresses to well under 2 GiB.
        let length = u32::try_from(block.len()).map_err(|_| BatchError::Compression {
            codec: Compression::Snappy,
            reason: format!(
                "a block of {} bytes does not fit a xerial length",
                block.len()
            ),
        })?;
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&block);
    }
    Ok(out)
}

/// Decompresses `data`, failing with [`BatchError::DecompressedTooLarge`] as soon as the output
/// would exceed `max_out` bytes. Memory stays bounded by `max_out` plus codec state.
pub fn decompress(codec: Compression, data: &[u8], max_out: usize) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => {
            if data.len() > max_out {
                return Err(BatchError::DecompressedTooLarge { limit: max_out });
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => read_capped(codec, flate2::read::MultiGzDecoder::new(data), max_out),
        Compression::Snappy => decompress_snappy(data, max_out),
        Compression::Lz4 => read_capped(codec, lz4_flex::frame::FrameDecoder::new(data), max_out),
        Compression::Zstd => decompress_zstd(data, max_out),
    }
}

fn malformed(codec: Compression, reason: impl Into<String>) -> BatchError {
    BatchError::Decompression {
        codec,
        reason: reason.into(),
    }
}

/// Reads `reader` to its end into a buffer that never grows past `max_out` bytes.
///
/// Capacity grows geometrically but is capped at `max_out`, so a bomb costs at most `max_out`
/// bytes of output memory before it is rejected.
pub fn read_capped(
    codec: Compression,
    mut reader: impl Read,
    max_out: usize,
) -> Result<Vec<u8>, BatchError> {
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(malformed(codec, error.to_string())),
        };
        let room = max_out - out.len();
        if n > room {
            return Err(BatchError::DecompressedTooLarge { limit: max_out });
        }
        if out.capacity() - out.len() < n {
            let grow = n.max(out.len().min(room)).max((16 * 1024).min(room));
            out.reserve_exact(grow);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

fn decompress_zstd(data: &[u8], max_out: usize) -> Result<Vec<u8>, BatchError> {
    let codec = Compression::Zstd;
    // A frame that declares its size lets us refuse a bomb before decoding a byte.
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(data) {
        if size > max_out as u64 {
            return Err(BatchError::DecompressedTooLarge { limit: max_out });
        }
    }
    let mut decoder = zstd::stream::read::Decoder::with_buffer(data)
        .map_err(|error| malformed(codec, error.to_string()))?;
    // The decoder allocates the frame's window up front; a frame can't legitimately need a
    // window much larger than its output, so cap it near max_out (never below the floor).
    let needed = usize::BITS - max_out.leading_zeros();
    let window_log = needed.clamp(ZSTD_WINDOW_LOG_FLOOR, ZSTD_WINDOW_LOG_CEILING);
    decoder
        .window_log_max(window_log)
        .map_err(|error| malformed(codec, error.to_string()))?;
    read_capped(codec, decoder, max_out)
}

fn decompress_snappy(data: &[u8], max_out: usize) -> Result<Vec<u8>, BatchError> {
    if data.starts_with(XERIAL_MAGIC) {
        decompress_xerial(data, max_out)
    } else {
        let mut out = Vec::new();
        decompress_raw_snappy_into(data, max_out, &mut out)?;
        Ok(out)
    }
}

/// Appends one raw snappy block to `out`, checking its declared length against what is left of
/// `max_out` before allocating anything.
fn decompress_raw_snappy_into(
    block: &[u8],
    max_out: usize,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    let codec = Compression::Snappy;
    let length =
        snap::raw::decompress_len(block).map_err(|error| malformed(codec, error.to_string()))?;
    if length > max_out - out.len() {
        return Err(BatchError::DecompressedTooLarge { limit: max_out });
    }
    let start = out.len();
    out.resize(start + length, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|error| malformed(codec, error.to_string()))?;
    out.truncate(start + written);
    Ok(())
}

fn decompress_xerial(data: &[u8], max_out: usize) -> Result<Vec<u8>, BatchError> {
    let codec = Compression::Snappy;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // xerial's SnappyInputStream also accepts concatenated streams, each with its header.
        if rest.starts_with(XERIAL_MAGIC) {
            rest = rest
                .get(XERIAL_HEADER_LEN..)
                .ok_or_else(|| malformed(codec, "the xerial stream header is truncated"))?;
            continue;
        }
        let (length, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| malformed(codec, "a xerial block length is truncated"))?;
        let length = u32::from_be_bytes(*length) as usize;
        let block = after.get(..length).ok_or_else(|| {
            malformed(
                codec,
                format!(
                    "a xerial block declares {length} bytes but only {} remain",
                    after.len()
                ),
            )
        })?;
        decompress_raw_snappy_into(block, max_out, &mut out)?;
        rest = &after[length..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 1 << 20;

    #[test]
    fn attributes_map_to_codecs_and_unknown_ids_fail() {
        for codec in Compression::ALL {
            assert_eq!(Compression::from_id(codec.id()), Ok(codec));
            assert_eq!(
                Compression::from_attributes(0x78 | codec.id() as i16),
                Ok(codec)
            );
        }
        for id in 5..8 {
            assert_eq!(
                Compression::from_id(id),
                Err(BatchError::UnknownCompression(id))
            );
        }
    }

    #[test]
    fn snappy_writes_xerial_framing() {
        let data = vec![7u8; 100_000];
        let compressed = compress(Compression::Snappy, &data).unwrap();
        assert!(compressed.starts_with(XERIAL_MAGIC));
        assert_eq!(&compressed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(
            decompress(Compression::Snappy, &compressed, LIMIT).unwrap(),
            data
        );
    }

    #[test]
    fn raw_snappy_is_accepted() {
        let data = b"hello hello hello hello raw snappy".repeat(50);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw, LIMIT).unwrap(), data);
    }

    #[test]
    fn concatenated_xerial_streams_are_accepted() {
        let mut both = compress(Compression::Snappy, b"first ").unwrap();
        both.extend(compress(Compression::Snappy, b"second").unwrap());
        assert_eq!(
            decompress(Compression::Snappy, &both, LIMIT).unwrap(),
            b"first second"
        );
    }

    #[test]
    fn concatenated_gzip_members_are_accepted() {
        let mut both = compress(Compression::Gzip, b"one ").unwrap();
        both.extend(compress(Compression::Gzip, b"two").unwrap());
        assert_eq!(
            decompress(Compression::Gzip, &both, LIMIT).unwrap(),
            b"one two"
        );
    }

    /// A bomb of every codec fails with DecompressedTooLarge, and the limit is exact: the same
    /// data decompresses with a limit equal to its size and fails one byte below.
    #[test]
    fn bombs_fail_and_limits_are_exact() {
        let data = vec![0u8; 4 << 20];
        for codec in Compression::ALL {
            let compressed = compress(codec, &data).unwrap();
            assert_eq!(
                decompress(codec, &compressed, 64 * 1024),
                Err(BatchError::DecompressedTooLarge { limit: 64 * 1024 }),
                "{codec}"
            );
            assert_eq!(
                decompress(codec, &compressed, data.len()).unwrap().len(),
                data.len()
            );
            assert_eq!(
                decompress(codec, &compressed, data.len() - 1),
                Err(BatchError::DecompressedTooLarge {
                    limit: data.len() - 1
                }),
                "{codec}"
            );
        }
    }

    /// A raw snappy block whose header claims 2 GiB is refused before any allocation.
    #[test]
    fn raw_snappy_length_header_is_checked_first() {
        let mut lying = Vec::new();
        let mut n: u32 = 0x7fff_ffff;
        while n >= 0x80 {
            lying.push((n as u8) | 0x80);
            n >>= 7;
        }
        lying.push(n as u8);
        lying.extend_from_slice(&[0u8; 8]);
        assert_eq!(
            decompress(Compression::Snappy, &lying, LIMIT),
            Err(BatchError::DecompressedTooLarge { limit: LIMIT })
        );
    }

    #[test]
    fn empty_input_round_trips() {
        for codec in Compression::ALL {
            let compressed = compress(codec, b"").unwrap();
            assert_eq!(decompress(codec, &compressed, 0).unwrap(), b"", "{codec}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_codec_round_trips(
            data in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..5000),
                proptest::collection::vec(0u8..4, 0..100_000),
            ],
            codec in proptest::sample::select(Compression::ALL.to_vec()),
        ) {
            let compressed = compress(codec, &data).unwrap();
            prop_assert_eq!(decompress(codec, &compressed, data.len()).unwrap(), data);
        }

        #[test]
        fn random_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            codec in proptest::sample::select(Compression::ALL.to_vec()),
            xerial in any::<bool>(),
            max_out in 0usize..100_000,
        ) {
            let mut input = data;
            if xerial && codec == Compression::Snappy {
                let mut framed = compress(Compression::Snappy, b"").unwrap();
                framed.extend(input);
                input = framed;
            }
            if let Ok(out) = decompress(codec, &input, max_out) {
                prop_assert!(out.len() <= max_out);
            }
        }

        /// Flipping bytes of valid compressed data yields an error or some output, never a panic
        /// or more than max_out bytes.
        #[test]
        fn corrupted_streams_never_panic(
            data in proptest::collection::vec(0u8..8, 0..20_000),
            codec in proptest::sample::select(Compression::ALL.to_vec()),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut compressed = compress(codec, &data).unwrap();
            for (index, byte) in flips {
                if !compressed.is_empty() {
                    let at = index.index(compressed.len());
                    compressed[at] ^= byte;
                }
            }
            if let Ok(out) = decompress(codec, &compressed, 20_000) {
                prop_assert!(out.len() <= 20_000);
            }
        }
    }
}
