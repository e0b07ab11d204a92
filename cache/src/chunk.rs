//! What the cache stores: [`Chunk`]s under [`ChunkKey`]s, and the arithmetic that maps byte
//! ranges of an object onto chunk indexes.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64};

use bytes::Bytes;
use object_store::path::Path;

/// Which part of an object an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// Bytes `[index * chunk_bytes, min((index + 1) * chunk_bytes, object_size))`.
    Chunk(u64),
    /// The whole object, as `read_all` caches it.
    Whole,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ChunkKey {
    pub path: Path,
    pub slot: Slot,
}

impl ChunkKey {
    pub fn chunk(path: &Path, index: u64) -> Self {
        ChunkKey {
            path: path.clone(),
            slot: Slot::Chunk(index),
        }
    }

    pub fn whole(path: &Path) -> Self {
        ChunkKey {
            path: path.clone(),
            slot: Slot::Whole,
        }
    }
}

/// "No reader yet": the chunk was fetched by read-ahead and nobody has read it.
pub(crate) const NO_READER: u64 = 0;

/// One cached entry: the bytes, plus what the admission policy needs to know about who read them.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub data: Bytes,
    /// The reader stream that read this chunk last, or [`NO_READER`]. A read by a different
    /// stream is reuse, which promotes the chunk out of probation.
    pub last_reader: AtomicU64,
    /// Set once the chunk has been moved to the protected part (it is moved at most once).
    pub promoted: AtomicBool,
    /// Fetched by read-ahead rather than by a waiting reader.
    pub by_readahead: bool,
}

impl Chunk {
    pub fn new(data: Bytes, by_readahead: bool) -> Self {
        Chunk {
            data,
            last_reader: AtomicU64::new(NO_READER),
            promoted: AtomicBool::new(false),
            by_readahead,
        }
    }

    /// The moka weight: the byte length (chunk sizes are validated to fit in a `u32`).
    pub fn weight(&self) -> u32 {
        u32::try_from(self.data.len()).unwrap_or(u32::MAX)
    }
}

/// Chunk arithmetic for one object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub chunk_bytes: u64,
    pub object_size: u64,
}

impl Geometry {
    /// Number of chunks in the object.
    pub fn chunk_count(&self) -> u64 {
        self.object_size.div_ceil(self.chunk_bytes)
    }

    /// The chunk indexes a non-empty `range` touches.
    pub fn chunks_of(&self, range: &Range<u64>) -> Range<u64> {
        debug_assert!(range.start < range.end);
        range.start / self.chunk_bytes..(range.end - 1) / self.chunk_bytes + 1
    }

    /// Byte range of chunks `chunks` (clamped to the object's end).
    pub fn byte_range(&self, chunks: &Range<u64>) -> Range<u64> {
        let start = chunks.start.saturating_mul(self.chunk_bytes);
        let end = chunks
            .end
            .saturating_mul(self.chunk_bytes)
            .min(self.object_size);
        start.min(end)..end
    }

    /// The first chunk wholly after byte `offset`'s chunk ends, i.e. the first chunk a read ending
    /// at `offset` did not touch.
    pub fn first_chunk_after(&self, offset: u64) -> u64 {
        offset.div_ceil(self.chunk_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunk arithmetic at and around chunk boundaries.
    #[test]
    fn geometry_at_boundaries() {
        let g = Geometry {
            chunk_bytes: 10,
            object_size: 25,
        };
        assert_eq!(g.chunk_count(), 3);
        assert_eq!(g.chunks_of(&(0..1)), 0..1);
        assert_eq!(g.chunks_of(&(0..10)), 0..1);
        assert_eq!(g.chunks_of(&(9..11)), 0..2);
        assert_eq!(g.chunks_of(&(10..25)), 1..3);
        assert_eq!(g.byte_range(&(2..3)), 20..25);
        assert_eq!(g.byte_range(&(0..2)), 0..20);
        assert_eq!(g.first_chunk_after(10), 1);
        assert_eq!(g.first_chunk_after(11), 2);
        assert_eq!(g.first_chunk_after(0), 0);
        let empty = Geometry {
            chunk_bytes: 10,
            object_size: 0,
        };
        assert_eq!(empty.chunk_count(), 0);
    }
}
