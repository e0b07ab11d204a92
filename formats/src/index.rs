//! Entries of a segment's sparse indexes, and lookups over a slice of them.
//!
//! - `.index` ([`OffsetIndexEntry`], 8 bytes): offset relative to the segment's base offset
//!   (u32 BE), byte position of the batch in the `.log` (u32 BE).
//! - `.timeindex` ([`TimeIndexEntry`], 12 bytes): timestamp (i64 BE), relative offset (u32 BE).
//!
//! Entries are appended in increasing order, so lookups binary-search. Like Kafka's
//! `AbstractIndex`, the files may be preallocated and zero-filled past the last entry, and a
//! crash may leave a partial entry at the end. [`offset_index_len`] and [`time_index_len`]
//! count the entries that are really there: a trailing partial entry is ignored, and an all-zero
//! entry marks the end (no valid entry after the first can be all zero, since relative offsets
//! strictly increase). The first entry is the one ambiguous case. In the offset index an all-zero
//! first entry is kept: "relative offset 0 is at position 0" is true of every segment, so it is
//! harmless either way. In the time index it is dropped: "timestamp 0" read from a preallocated
//! empty file would claim the segment's largest timestamp is 1970, which retention would act on;
//! without the entry, callers fall back to scanning, which is correct for a real (0, 0) entry too.

use crate::ids::Offset;

/// Bytes per `.index` entry.
pub const OFFSET_INDEX_ENTRY_SIZE: usize = 8;
/// Bytes per `.timeindex` entry.
pub const TIME_INDEX_ENTRY_SIZE: usize = 12;

/// A `.index` entry: the batch containing `base_offset + relative_offset` starts at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffsetIndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl OffsetIndexEntry {
    pub fn encode(&self) -> [u8; OFFSET_INDEX_ENTRY_SIZE] {
        let mut out = [0u8; OFFSET_INDEX_ENTRY_SIZE];
        out[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..].copy_from_slice(&self.position.to_be_bytes());
        out
    }

    /// Decodes the entry at the start of `buf`, or `None` if fewer than 8 bytes remain.
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let (relative_offset, rest) = buf.split_first_chunk::<4>()?;
        let (position, _) = rest.split_first_chunk::<4>()?;
        Some(Self {
            relative_offset: u32::from_be_bytes(*relative_offset),
            position: u32::from_be_bytes(*position),
        })
    }
}

/// A `.timeindex` entry: the largest timestamp seen in the segment up to and including the
/// record at `base_offset + relative_offset` is `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeIndexEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl TimeIndexEntry {
    pub fn encode(&self) -> [u8; TIME_INDEX_ENTRY_SIZE] {
        let mut out = [0u8; TIME_INDEX_ENTRY_SIZE];
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..].copy_from_slice(&self.relative_offset.to_be_bytes());
        out
    }

    /// Decodes the entry at the start of `buf`, or `None` if fewer than 12 bytes remain.
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let (timestamp, rest) = buf.split_first_chunk::<8>()?;
        let (relative_offset, _) = rest.split_first_chunk::<4>()?;
        Some(Self {
            timestamp: i64::from_be_bytes(*timestamp),
            relative_offset: u32::from_be_bytes(*relative_offset),
        })
    }
}

fn entry(entries: &[u8], size: usize, i: usize) -> Option<&[u8]> {
    entries.get(i.checked_mul(size)?..)?.get(..size)
}

/// Number of real entries in `entries`: whole entries, up to the zero-filled tail. The first
/// entry counts even when all zero if `keep_zero_first`.
fn index_len(entries: &[u8], size: usize, keep_zero_first: bool) -> usize {
    let whole = entries.len() / size;
    let is_zero = |i: usize| entry(entries, size, i).is_some_and(|e| e.iter().all(|&b| b == 0));
    // Real entries are nonzero, then the tail is zero: binary-search the boundary.
    let first_candidate = usize::from(keep_zero_first).min(whole);
    let (mut low, mut high) = (first_candidate, whole);
    while low < high {
        let mid = low + (high - low) / 2;
        if is_zero(mid) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    low
}

/// Number of real entries in a `.index` byte slice.
pub fn offset_index_len(entries: &[u8]) -> usize {
    index_len(entries, OFFSET_INDEX_ENTRY_SIZE, true)
}

/// Number of real entries in a `.timeindex` byte slice.
pub fn time_index_len(entries: &[u8]) -> usize {
    index_len(entries, TIME_INDEX_ENTRY_SIZE, false)
}

/// Number of real entries in a `.timeindex` byte slice that is known to have been written whole
/// and not preallocated (Shale's own file, fsynced before a clean shutdown): an all-zero first
/// entry is real. librdkafka sends batches without timestamps, so `(timestamp 0, offset 0)` is
/// a common first entry, and dropping it would make every clean restart rescan the segment.
pub fn time_index_len_written_whole(entries: &[u8]) -> usize {
    index_len(entries, TIME_INDEX_ENTRY_SIZE, true)
}

/// The `i`th entry of a `.index` byte slice.
pub fn offset_index_entry(entries: &[u8], i: usize) -> Option<OffsetIndexEntry> {
    OffsetIndexEntry::decode(entry(entries, OFFSET_INDEX_ENTRY_SIZE, i)?)
}

/// The `i`th entry of a `.timeindex` byte slice.
pub fn time_index_entry(entries: &[u8], i: usize) -> Option<TimeIndexEntry> {
    TimeIndexEntry::decode(entry(entries, TIME_INDEX_ENTRY_SIZE, i)?)
}

/// Index of the last entry among the first `len` for which `at_or_below` holds, assuming it holds
/// for a prefix. `None` if it holds for none.
fn last_at_or_below(len: usize, at_or_below: impl Fn(usize) -> bool) -> Option<usize> {
    let (mut low, mut high) = (0, len);
    while low < high {
        let mid = low + (high - low) / 2;
        if at_or_below(mid) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low.checked_sub(1)
}

/// Kafka's `OffsetIndex.lookup`: the entry with the greatest relative offset ≤ `target`, where
/// a scan of the log for `target` can start. `None` when the target precedes every entry (or the
/// index is empty): scan from position 0, as Kafka does with its `(baseOffset, 0)` answer.
pub fn offset_index_lookup(
    entries: &[u8],
    target_relative_offset: u32,
) -> Option<OffsetIndexEntry> {
    let len = offset_index_len(entries);
    let i = last_at_or_below(len, |i| {
        offset_index_entry(entries, i).is_some_and(|e| e.relative_offset <= target_relative_offset)
    })?;
    offset_index_entry(entries, i)
}

/// Kafka's `TimeIndex.lookup`: the entry with the greatest timestamp ≤ `target_timestamp`.
///
/// This is a *starting point*, not the answer: every record before that entry's offset has a
/// timestamp below `target_timestamp` (an entry records the first offset at which the segment's
/// running maximum timestamp reached its value, and entries only grow), so the first record with
/// timestamp ≥ target is at or after it. Callers map its offset through the offset index and scan
/// forward, as Kafka's `LogSegment.findOffsetByTimestamp` does. `None` when the target precedes
/// every entry: scan from the segment's start. The first entry with timestamp ≥ target (see
/// [`time_index_ceiling`]) would be the wrong start: records before it may already match.
pub fn time_index_lookup(entries: &[u8], target_timestamp: i64) -> Option<TimeIndexEntry> {
    let len = time_index_len(entries);
    let i = last_at_or_below(len, |i| {
        time_index_entry(entries, i).is_some_and(|e| e.timestamp <= target_timestamp)
    })?;
    time_index_entry(entries, i)
}

/// The first entry with timestamp ≥ `target_timestamp`: an upper bound for where the first
/// matching record can be (the record at its offset has that timestamp). `None` when every
/// entry is older.
pub fn time_index_ceiling(entries: &[u8], target_timestamp: i64) -> Option<TimeIndexEntry> {
    let len = time_index_len(entries);
    let first = last_at_or_below(len, |i| {
        time_index_entry(entries, i).is_some_and(|e| e.timestamp < target_timestamp)
    })
    .map_or(0, |i| i + 1);
    if first < len {
        time_index_entry(entries, first)
    } else {
        None
    }
}

/// The last real entry of a `.timeindex`: the segment's largest indexed timestamp.
pub fn time_index_last(entries: &[u8]) -> Option<TimeIndexEntry> {
    time_index_len(entries)
        .checked_sub(1)
        .and_then(|i| time_index_entry(entries, i))
}

/// The last real entry of a `.index`.
pub fn offset_index_last(entries: &[u8]) -> Option<OffsetIndexEntry> {
    offset_index_len(entries)
        .checked_sub(1)
        .and_then(|i| offset_index_entry(entries, i))
}

/// One batch as the index rule sees it.
#[derive(Clone, Copy, Debug)]
pub struct IndexedBatch {
    pub position: u64,
    pub size: u64,
    pub last_offset: Offset,
    pub max_timestamp: i64,
}

/// Kafka's `LogSegment.append` indexing rule, shared by appends and index rebuilds so both give
/// the same files: a batch gets an offset index entry when more than `index_interval_bytes` were
/// appended since the last entry, and at the same moment the time index gets the largest
/// timestamp so far if it grew.
#[derive(Clone, Debug)]
pub struct IndexRule {
    pub base_offset: Offset,
    pub index_interval_bytes: u64,
    pub bytes_since_last_entry: u64,
    /// Largest batch max timestamp so far in the segment, -1 before any.
    pub max_timestamp: i64,
    /// Last offset of the first batch that carried `max_timestamp`.
    pub offset_of_max_timestamp: Offset,
    /// Timestamp of the last time index entry (-1 before any): entries only go up.
    pub last_indexed_timestamp: i64,
}

impl IndexRule {
    pub fn new(base_offset: Offset, index_interval_bytes: u64) -> Self {
        Self {
            base_offset,
            index_interval_bytes,
            bytes_since_last_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            last_indexed_timestamp: -1,
        }
    }

    fn relative(&self, offset: Offset) -> u32 {
        let relative = offset - self.base_offset;
        assert!(
            (0..=i64::from(i32::MAX)).contains(&relative),
            "offset {offset} does not fit a segment based at {}",
            self.base_offset
        );
        relative as u32
    }

    /// Feeds one batch; returns the entries to append for it.
    pub fn on_batch(
        &mut self,
        batch: &IndexedBatch,
    ) -> (Option<OffsetIndexEntry>, Option<TimeIndexEntry>) {
        if batch.max_timestamp > self.max_timestamp {
            self.max_timestamp = batch.max_timestamp;
            self.offset_of_max_timestamp = batch.last_offset;
        }
        let mut entries = (None, None);
        if self.bytes_since_last_entry > self.index_interval_bytes {
            let position = u32::try_from(batch.position).unwrap_or_else(|_| {
                panic!("segment position {} does not fit in u32", batch.position)
            });
            entries.0 = Some(OffsetIndexEntry {
                relative_offset: self.relative(batch.last_offset),
                position,
            });
            entries.1 = self.maybe_time_entry();
            self.bytes_since_last_entry = 0;
        }
        self.bytes_since_last_entry += batch.size;
        entries
    }

    /// A time index entry for the largest timestamp so far if it is not indexed yet. Also used
    /// when a segment is sealed or closed, so its last time entry holds its largest timestamp.
    pub fn maybe_time_entry(&mut self) -> Option<TimeIndexEntry> {
        if self.max_timestamp <= self.last_indexed_timestamp {
            return None;
        }
        self.last_indexed_timestamp = self.max_timestamp;
        Some(TimeIndexEntry {
            timestamp: self.max_timestamp,
            relative_offset: self.relative(self.offset_of_max_timestamp),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offset_index(entries: &[(u32, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|&(relative_offset, position)| {
                OffsetIndexEntry {
                    relative_offset,
                    position,
                }
                .encode()
            })
            .collect()
    }

    fn time_index(entries: &[(i64, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|&(timestamp, relative_offset)| {
                TimeIndexEntry {
                    timestamp,
                    relative_offset,
                }
                .encode()
            })
            .collect()
    }

    #[test]
    fn entries_are_big_endian() {
        let entry = OffsetIndexEntry {
            relative_offset: 0x01020304,
            position: 0x0a0b0c0d,
        };
        assert_eq!(entry.encode(), [1, 2, 3, 4, 0xa, 0xb, 0xc, 0xd]);
        let entry = TimeIndexEntry {
            timestamp: -2,
            relative_offset: 7,
        };
        assert_eq!(
            entry.encode(),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 7]
        );
        assert_eq!(OffsetIndexEntry::decode(&[0; 7]), None);
        assert_eq!(TimeIndexEntry::decode(&[0; 11]), None);
    }

    #[test]
    fn offset_lookup_finds_the_floor_entry() {
        let index = offset_index(&[(0, 0), (10, 4096), (20, 8192)]);
        let floor =
            |target| offset_index_lookup(&index, target).map(|e| (e.relative_offset, e.position));
        assert_eq!(floor(0), Some((0, 0)));
        assert_eq!(floor(9), Some((0, 0)));
        assert_eq!(floor(10), Some((10, 4096)));
        assert_eq!(floor(19), Some((10, 4096)));
        assert_eq!(floor(u32::MAX), Some((20, 8192)));
        let late = offset_index(&[(5, 100)]);
        assert_eq!(offset_index_lookup(&late, 4), None);
        assert_eq!(offset_index_lookup(&[], 4), None);
    }

    /// A preallocated, zero-filled tail and a torn last entry are ignored; a first entry of all
    /// zeros is a real entry.
    #[test]
    fn zero_tails_and_partial_entries_are_ignored() {
        let mut index = offset_index(&[(0, 0), (10, 4096)]);
        index.extend_from_slice(&[0; 8 * 100]);
        index.extend_from_slice(&[1, 2, 3]);
        assert_eq!(offset_index_len(&index), 2);
        assert_eq!(
            offset_index_lookup(&index, 1000).map(|e| e.relative_offset),
            Some(10)
        );
        assert_eq!(offset_index_last(&index).map(|e| e.position), Some(4096));
        assert_eq!(offset_index_len(&[0; 8 * 5]), 1);
        assert_eq!(offset_index_len(&[0; 7]), 0);
        assert_eq!(time_index_len(&[0; 12 * 5]), 0);
        assert_eq!(time_index_last(&[0; 12 * 5]), None);

        let mut torn = offset_index(&[(3, 0), (10, 4096)]);
        torn.extend_from_slice(&[0, 0, 0, 20, 0]);
        assert_eq!(offset_index_len(&torn), 2);

        let mut times = time_index(&[(100, 0), (200, 5)]);
        times.extend_from_slice(&[0; 12 * 10]);
        assert_eq!(time_index_len(&times), 2);
        assert_eq!(
            time_index_last(&times),
            Some(TimeIndexEntry {
                timestamp: 200,
                relative_offset: 5
            })
        );
    }

    #[test]
    fn time_lookup_follows_kafka() {
        let index = time_index(&[(100, 0), (200, 5), (300, 9)]);
        let lookup = |ts| time_index_lookup(&index, ts).map(|e| (e.timestamp, e.relative_offset));
        let ceiling = |ts| time_index_ceiling(&index, ts).map(|e| (e.timestamp, e.relative_offset));
        assert_eq!(lookup(99), None);
        assert_eq!(lookup(100), Some((100, 0)));
        assert_eq!(lookup(250), Some((200, 5)));
        assert_eq!(lookup(i64::MAX), Some((300, 9)));
        assert_eq!(ceiling(99), Some((100, 0)));
        assert_eq!(ceiling(200), Some((200, 5)));
        assert_eq!(ceiling(201), Some((300, 9)));
        assert_eq!(ceiling(301), None);
        assert_eq!(time_index_ceiling(&[], 0), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn entries_round_trip(relative_offset in any::<u32>(), position in any::<u32>(), timestamp in any::<i64>()) {
            let entry = OffsetIndexEntry { relative_offset, position };
            prop_assert_eq!(OffsetIndexEntry::decode(&entry.encode()), Some(entry));
            let entry = TimeIndexEntry { timestamp, relative_offset };
            prop_assert_eq!(TimeIndexEntry::decode(&entry.encode()), Some(entry));
        }

        /// Binary-search lookups agree with a linear scan, with any zero tail and torn entry.
        #[test]
        fn lookups_match_a_linear_scan(
            steps in proptest::collection::vec((1u32..100, 0u32..5000, 0i64..50), 0..40),
            zero_tail in 0usize..10,
            torn in 0usize..12,
            target_offset in 0u32..5000,
            target_ts in -10i64..2500,
        ) {
            let mut offsets = Vec::new();
            let mut times = Vec::new();
            let (mut relative_offset, mut position, mut timestamp) = (0u32, 0u32, 0i64);
            for (i, (d_offset, d_position, d_ts)) in steps.into_iter().enumerate() {
                if i > 0 {
                    relative_offset += d_offset;
                    position += d_position + 1;
                }
                timestamp += d_ts + 1;
                offsets.push((relative_offset, position));
                times.push((timestamp, relative_offset));
            }
            if offsets.is_empty() && zero_tail > 0 {
                // An all-zero first offset entry is kept: (0, 0) holds for every segment.
                offsets.push((0, 0));
            }
            let mut offset_bytes = offset_index(&offsets);
            offset_bytes.extend(std::iter::repeat_n(0, zero_tail * 8 + torn.min(7)));
            let mut time_bytes = time_index(&times);
            time_bytes.extend(std::iter::repeat_n(0, zero_tail * 12 + torn));

            prop_assert_eq!(offset_index_len(&offset_bytes), offsets.len());
            prop_assert_eq!(time_index_len(&time_bytes), times.len());
            let expected = offsets.iter().rev().find(|e| e.0 <= target_offset).copied();
            prop_assert_eq!(offset_index_lookup(&offset_bytes, target_offset).map(|e| (e.relative_offset, e.position)), expected);
            let expected = times.iter().rev().find(|e| e.0 <= target_ts).copied();
            prop_assert_eq!(time_index_lookup(&time_bytes, target_ts).map(|e| (e.timestamp, e.relative_offset)), expected);
            let expected = times.iter().find(|e| e.0 >= target_ts).copied();
            prop_assert_eq!(time_index_ceiling(&time_bytes, target_ts).map(|e| (e.timestamp, e.relative_offset)), expected);
        }

        #[test]
        fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..200), target in any::<u32>(), ts in any::<i64>()) {
            let _ = offset_index_lookup(&buf, target);
            let _ = time_index_lookup(&buf, ts);
            let _ = time_index_ceiling(&buf, ts);
            let _ = (offset_index_last(&buf), time_index_last(&buf));
            prop_assert!(offset_index_len(&buf) <= buf.len() / 8);
            prop_assert!(time_index_len(&buf) <= buf.len() / 12);
        }
    }
}
