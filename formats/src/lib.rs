//! Shale's byte formats: synchronous, no I/O, operating only on byte slices.
//!
//! # Layout
//! - [`varint`]: Kafka's zig-zag varints and unsigned varints.
//! - [`compression`]: the four Kafka codecs (gzip, snappy incl. xerial framing, lz4 frame, zstd),
//!   with decompression capped by a caller-supplied maximum.
//! - [`batch`]: record batch v2 headers: parsing, validation (length, magic, CRC-32C, counts,
//!   offsets, timestamps) and offset assignment by rewriting the header.
//! - [`record`]: records inside a batch (varint encoding, headers) and whole-batch encoding.
//! - [`ids`]: newtypes for offsets, leader epochs, producer ids and epochs, node ids.
//! - [`epoch`]: [`epoch::EpochEntry`], a leader epoch and its start offset, shared by the local
//!   log and the remote tier.
//! - [`index`]: segment index entries (`.index`, `.timeindex`), their lookups, and the rule
//!   that decides which batch gets an entry (`IndexRule`).
//! - [`archive`]: the Parquet archive: the Arrow schema of a topic's archived records, record
//!   batches decoded into rows, written as ZSTD Parquet with statistics; JSON value projection.
//! - [`wire`]: a bounded structural validator for Kafka request frames, run before any typed
//!   decoder so that a lying array count can never turn into a huge allocation.

pub mod archive;
pub mod batch;
pub mod compression;
pub mod epoch;
pub mod ids;
pub mod index;
pub mod record;
pub mod varint;
pub mod wire;
