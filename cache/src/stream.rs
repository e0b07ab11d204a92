//! Sequential-reader detection: a bounded table of reader streams, each remembering where its last
//! read ended and how far ahead read-ahead has gone for it.
//!
//! The cache has no reader ids; a read belongs to a stream when it starts inside or at the end of
//! that stream's last read, or at most one chunk before its start. That tolerance is what a
//! sequential remote reader looks like in practice: it reads a window of batch headers and then
//! the batches from the same position, re-reads a partial batch at the end of its last read, and
//! starts its next fetch at a sparse-index position a little before where it stopped. A read
//! further back or past the end is another reader (or this one starting over), which matters to
//! the admission policy: a chunk read by two readers is promoted. A stream that reaches the end of
//! its object with a known successor is also entered under the successor at offset 0, so it
//! continues across objects.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use object_store::path::Path;

/// Streams kept per object: a few concurrent readers of one segment is normal; more than this is
/// not sequential reading any more.
const STREAMS_PER_OBJECT_MAX: usize = 8;
/// Streams kept in total; the least recently used go first.
const STREAMS_MAX: usize = 4096;

#[derive(Debug, Clone)]
pub(crate) struct StreamState {
    /// Identifies the reader for the admission policy (never [`crate::chunk::NO_READER`]).
    pub id: u64,
    /// The last read of this stream: `start..end` of the object it is entered under.
    pub start: u64,
    pub end: u64,
    /// Read-ahead has been requested for every chunk position below this one. Positions count
    /// this object's chunks first; positions past its last chunk are the successor's chunks.
    pub frontier: u64,
    /// Chunks read-ahead has in flight for this stream (shared by the stream's entries).
    pub outstanding: Arc<AtomicUsize>,
    tick: u64,
}

impl StreamState {
    pub fn new(id: u64) -> Self {
        StreamState {
            id,
            start: 0,
            end: 0,
            frontier: 0,
            outstanding: Arc::new(AtomicUsize::new(0)),
            tick: 0,
        }
    }

    /// Whether a read starting at `start` continues this stream.
    fn is_continued_by(&self, start: u64, chunk_bytes: u64) -> bool {
        self.start.saturating_sub(chunk_bytes) <= start && start <= self.end
    }
}

#[derive(Debug, Default)]
pub(crate) struct StreamTable {
    by_path: HashMap<Path, Vec<StreamState>>,
    len: usize,
    tick: u64,
}

impl StreamTable {
    /// Removes and returns the stream that a read of `path` starting at `start` continues, if any.
    /// The caller enters it again with [`record`](Self::record).
    pub fn take_continuation(
        &mut self,
        path: &Path,
        start: u64,
        chunk_bytes: u64,
    ) -> Option<StreamState> {
        let streams = self.by_path.get_mut(path)?;
        let found = streams
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_continued_by(start, chunk_bytes))
            .max_by_key(|(_, s)| s.tick)
            .map(|(i, _)| i)?;
        let state = streams.swap_remove(found);
        if streams.is_empty() {
            self.by_path.remove(path);
        }
        self.len -= 1;
        Some(state)
    }

    /// Enters `state` under `path`, evicting the least recently used streams beyond the bounds.
    pub fn record(&mut self, path: &Path, mut state: StreamState) {
        self.tick += 1;
        state.tick = self.tick;
        let streams = self.by_path.entry(path.clone()).or_default();
        streams.push(state);
        self.len += 1;
        if streams.len() > STREAMS_PER_OBJECT_MAX {
            if let Some(oldest) = streams
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.tick)
                .map(|(i, _)| i)
            {
                streams.swap_remove(oldest);
                self.len -= 1;
            }
        }
        if self.len > STREAMS_MAX {
            self.evict_oldest_quarter();
        }
    }

    /// Forgets every stream of `path` (the object was deleted).
    pub fn forget(&mut self, path: &Path) {
        if let Some(streams) = self.by_path.remove(path) {
            self.len -= streams.len();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Evicts in bulk so that the scan over all streams happens once per `STREAMS_MAX / 4`
    /// insertions, not on every one.
    fn evict_oldest_quarter(&mut self) {
        let mut ticks: Vec<u64> = self
            .by_path
            .values()
            .flat_map(|streams| streams.iter().map(|s| s.tick))
            .collect();
        ticks.sort_unstable();
        let Some(&threshold) = ticks.get(ticks.len() / 4) else {
            return;
        };
        let mut len = 0;
        self.by_path.retain(|_, streams| {
            streams.retain(|s| s.tick > threshold);
            len += streams.len();
            !streams.is_empty()
        });
        self.len = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(id: u64, start: u64, end: u64) -> StreamState {
        StreamState {
            start,
            end,
            ..StreamState::new(id)
        }
    }

    /// A read continues a stream when it starts within its last read, at its end, or up to one
    /// chunk before its start; a read further back or past the end is another reader.
    #[test]
    fn continuation_rules() {
        let path = Path::from("a");
        let mut table = StreamTable::default();
        for start in [200, 150, 100, 36] {
            table.record(&path, stream(1, 100, 200));
            let found = table.take_continuation(&path, start, 64).map(|s| s.id);
            assert_eq!(found, Some(1), "a read at {start}");
        }
        table.record(&path, stream(1, 100, 200));
        assert!(table.take_continuation(&path, 35, 64).is_none());
        assert!(table.take_continuation(&path, 201, 64).is_none());
        assert!(table.take_continuation(&Path::from("b"), 200, 64).is_none());
        assert_eq!(table.len(), 1);
        // Of two candidates, the most recently used stream continues.
        table.record(&path, stream(2, 150, 250));
        assert_eq!(
            table.take_continuation(&path, 180, 64).map(|s| s.id),
            Some(2)
        );
    }

    /// The table stays within its bounds however many streams are recorded.
    #[test]
    fn table_is_bounded() {
        let mut table = StreamTable::default();
        let one = Path::from("one");
        for i in 0..100 {
            table.record(&one, stream(i + 1, 0, i));
        }
        assert_eq!(table.by_path[&one].len(), STREAMS_PER_OBJECT_MAX);
        for i in 0..(3 * STREAMS_MAX as u64) {
            table.record(&Path::from(format!("p{i}")), stream(i + 1, 0, 1));
            assert!(table.len() <= STREAMS_MAX);
        }
        table.forget(&Path::from(format!("p{}", 3 * STREAMS_MAX - 1)));
        assert!(table.len() < STREAMS_MAX);
    }
}
