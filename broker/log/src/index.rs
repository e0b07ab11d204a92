//! A segment's sparse indexes held in memory: the offset index (`.index`) and the time index
//! (`.timeindex`). The rule that decides when a batch gets an entry is
//! `shale_formats::index::IndexRule`, shared with the remote tier's segment merge.
//!
//! The in-memory form is the file's bytes, so the entry encoding and the lookups are
//! `shale_formats::index`'s. Offset index entries map the *last* offset of a batch to the
//! position where that batch starts (Kafka since 0.11), so a lookup gives a batch at or before
//! the target and a short forward scan of batch headers finds the batch that holds it.

use shale_formats::index::{
    offset_index_entry, offset_index_len, offset_index_lookup, time_index_entry, time_index_len,
    time_index_len_written_whole, time_index_lookup, OffsetIndexEntry, TimeIndexEntry,
    OFFSET_INDEX_ENTRY_SIZE, TIME_INDEX_ENTRY_SIZE,
};
#[cfg(test)]
use shale_formats::{
    ids::Offset,
    index::{IndexRule, IndexedBatch},
};

/// Both indexes of a segment, as the bytes of their real entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Indexes {
    offsets: Vec<u8>,
    times: Vec<u8>,
}

impl Indexes {
    pub(super) fn offset_entries(&self) -> usize {
        self.offsets.len() / OFFSET_INDEX_ENTRY_SIZE
    }

    pub(super) fn time_entries(&self) -> usize {
        self.times.len() / TIME_INDEX_ENTRY_SIZE
    }

    pub(super) fn offset_bytes(&self) -> &[u8] {
        &self.offsets
    }

    pub(super) fn time_bytes(&self) -> &[u8] {
        &self.times
    }

    pub(super) fn push_offset(&mut self, entry: &OffsetIndexEntry) {
        self.offsets.extend_from_slice(&entry.encode());
    }

    pub(super) fn push_time(&mut self, entry: &TimeIndexEntry) {
        self.times.extend_from_slice(&entry.encode());
    }

    pub(super) fn extend(&mut self, other: &Indexes) {
        self.offsets.extend_from_slice(&other.offsets);
        self.times.extend_from_slice(&other.times);
    }

    /// Position of the last indexed batch whose last offset is ≤ `relative_offset`, or 0.
    pub(super) fn position_for(&self, relative_offset: u32) -> u64 {
        offset_index_lookup(&self.offsets, relative_offset).map_or(0, |e| u64::from(e.position))
    }

    /// Where a search for the first record with timestamp ≥ `timestamp` may start (a relative
    /// offset), or `None` for the segment start. See `shale_formats::index::time_index_lookup`.
    pub(super) fn offset_for_timestamp(&self, timestamp: i64) -> Option<u32> {
        time_index_lookup(&self.times, timestamp).map(|e| e.relative_offset)
    }

    pub(super) fn last_offset_entry(&self) -> Option<OffsetIndexEntry> {
        self.offset_entries()
            .checked_sub(1)
            .and_then(|i| offset_index_entry(&self.offsets, i))
    }

    pub(super) fn last_time_entry(&self) -> Option<TimeIndexEntry> {
        // `times` holds only real entries (see `decode`), including a real all-zero first one,
        // which `time_index_last` would take for padding.
        self.time_entries()
            .checked_sub(1)
            .and_then(|i| time_index_entry(&self.times, i))
    }

    /// Reads index files: keeps their real entries (a crash can leave a partial entry, Kafka's
    /// preallocation a zero tail) and checks that they increase and stay inside the segment.
    /// `written_whole`: the files were fsynced before a clean shutdown, so an all-zero first
    /// time entry is a real `(timestamp 0, offset 0)`, not padding.
    pub(super) fn decode(
        offset_file: &[u8],
        time_file: &[u8],
        segment_size: u64,
        written_whole: bool,
    ) -> Result<Self, String> {
        let offsets =
            offset_file[..offset_index_len(offset_file) * OFFSET_INDEX_ENTRY_SIZE].to_vec();
        let time_entries = if written_whole {
            time_index_len_written_whole(time_file)
        } else {
            time_index_len(time_file)
        };
        let times = time_file[..time_entries * TIME_INDEX_ENTRY_SIZE].to_vec();
        let ix = Self { offsets, times };
        let mut previous: Option<OffsetIndexEntry> = None;
        for i in 0..ix.offset_entries() {
            let Some(e) = offset_index_entry(&ix.offsets, i) else {
                break;
            };
            if let Some(p) = previous {
                if e.relative_offset <= p.relative_offset || e.position <= p.position {
                    return Err(format!(
                        "offset index entries {p:?} and {e:?} are out of order"
                    ));
                }
            }
            if u64::from(e.position) >= segment_size {
                return Err(format!(
                    "offset index entry {e:?} points past the {segment_size}-byte segment"
                ));
            }
            previous = Some(e);
        }
        let mut previous: Option<TimeIndexEntry> = None;
        for i in 0..ix.time_entries() {
            let Some(e) = time_index_entry(&ix.times, i) else {
                break;
            };
            if let Some(p) = previous {
                if e.timestamp <= p.timestamp || e.relative_offset < p.relative_offset {
                    return Err(format!(
                        "time index entries {p:?} and {e:?} are out of order"
                    ));
                }
            }
            previous = Some(e);
        }
        Ok(ix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries appear only after more than the interval was written, and lookups return the
    /// position of the last indexed batch at or before the target.
    #[test]
    fn rule_and_lookups() {
        let mut rule = IndexRule::new(Offset::new(100), 100);
        let mut ix = Indexes::default();
        let mut position = 0;
        for i in 0..10i64 {
            let batch = IndexedBatch {
                position,
                size: 60,
                last_offset: Offset::new(100 + i * 2 + 1),
                max_timestamp: 1_000 + i,
            };
            let (o, t) = rule.on_batch(&batch);
            o.iter().for_each(|e| ix.push_offset(e));
            t.iter().for_each(|e| ix.push_time(e));
            position += 60;
        }
        // Entries for batches 2, 4, 6, 8 (bytes since the last entry reach 120 > 100).
        assert_eq!(ix.offset_entries(), 4);
        assert_eq!(ix.position_for(4), 0);
        assert_eq!(ix.position_for(5), 120);
        assert_eq!(ix.position_for(8), 120);
        assert_eq!(ix.position_for(9), 240);
        assert_eq!(ix.last_offset_entry().unwrap().position, 480);
        assert_eq!(ix.offset_for_timestamp(1_001), None);
        assert_eq!(ix.offset_for_timestamp(1_002), Some(5));
        assert_eq!(ix.offset_for_timestamp(1_003), Some(5));
        let last = rule.maybe_time_entry().unwrap();
        assert_eq!((last.timestamp, last.relative_offset), (1_009, 19));
        assert!(rule.maybe_time_entry().is_none());
        assert_eq!(
            Indexes::decode(ix.offset_bytes(), ix.time_bytes(), 600, false).unwrap(),
            ix
        );
        assert!(Indexes::decode(ix.offset_bytes(), ix.time_bytes(), 480, false).is_err());
        // A torn last entry is dropped, not an error.
        let torn = Indexes::decode(&ix.offset_bytes()[..31], ix.time_bytes(), 600, false).unwrap();
        assert_eq!(torn.offset_entries(), 3);
    }

    /// A `(timestamp 0, offset 0)` time entry, what a batch without timestamps gives, survives a
    /// clean shutdown; in a file that may have been preallocated it stays ambiguous and is dropped.
    #[test]
    fn zero_first_time_entry_is_kept_when_written_whole() {
        let mut time = TimeIndexEntry {
            timestamp: 0,
            relative_offset: 0,
        }
        .encode()
        .to_vec();
        time.extend_from_slice(&[0u8; 24]); // a zero tail after it is still ignored
        let offsets = OffsetIndexEntry {
            relative_offset: 0,
            position: 0,
        }
        .encode();
        let whole = Indexes::decode(&offsets, &time, 100, true).unwrap();
        assert_eq!(whole.time_entries(), 1);
        let last = whole.last_time_entry().unwrap();
        assert_eq!((last.timestamp, last.relative_offset), (0, 0));
        assert_eq!(
            Indexes::decode(&offsets, &time, 100, false)
                .unwrap()
                .time_entries(),
            0
        );
    }
}
