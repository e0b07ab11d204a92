//! Idempotent and transactional producer bookkeeping (Kafka's `ProducerStateManager`).
//!
//! Per producer id the log keeps the producer epoch and the metadata of the last
//! [`BATCH_METADATA_RETAINED`] batches it appended, so that a retried batch is recognised as a
//! duplicate and answered with its original offsets, and a batch that skips sequence numbers is
//! rejected. The state is derived from batch headers only and is rebuilt after a restart from the
//! latest snapshot plus a replay of the headers after it.
//!
//! Snapshot file `{offset:020}.snapshot` holds the state as of `offset` (every batch below it
//! applied). Big-endian, Shale's own layout (Kafka's keeps only the last batch per producer; we
//! keep all retained batches so that duplicates are still caught after a restart):
//! ```text
//! magic "SHPS" | version u16 = 1 | crc32c u32 of everything after it | producer count u32
//! per producer: producer_id i64 | producer_epoch i16 | coordinator_epoch i32 |
//!               last_timestamp i64 | current_txn_first_offset i64 (-1: none) | batch count u8
//!   per batch:  first_sequence i32 | last_sequence i32 | first_offset i64 | last_offset i64 |
//!               timestamp i64
//! ```

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use shale_formats::batch::{increment_sequence, RecordBatchHeader, NO_PRODUCER_EPOCH, NO_SEQUENCE};
use shale_formats::ids::{Offset, ProducerEpoch, ProducerId};

use super::error::io_error;
use super::files::{
    offset_file, parse_offset_file, remove_if_exists, write_atomically, SNAPSHOT_SUFFIX,
};
use super::LogError;

/// Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`, matching the client's
/// `max.in.flight.requests.per.connection` limit of 5 for idempotence.
pub(super) const BATCH_METADATA_RETAINED: usize = 5;

const SNAPSHOT_MAGIC: &[u8; 4] = b"SHPS";
const SNAPSHOT_VERSION: u16 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 4 + 2 + 4;
const PRODUCER_BYTES: usize = 8 + 2 + 4 + 8 + 8 + 1;
const BATCH_BYTES: usize = 4 + 4 + 8 + 8 + 8;
/// Keep this many snapshots; older ones only matter for replaying further back than a crash
/// ever needs.
pub(super) const SNAPSHOTS_RETAINED: usize = 3;

/// Where one producer batch landed in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BatchMetadata {
    pub(super) first_sequence: i32,
    pub(super) last_sequence: i32,
    pub(super) first_offset: Offset,
    pub(super) last_offset: Offset,
    /// The batch's max timestamp as stored (the append time for `LogAppendTime`).
    pub(super) timestamp: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ProducerStateEntry {
    pub(super) producer_epoch: ProducerEpoch,
    /// Oldest first, at most [`BATCH_METADATA_RETAINED`].
    pub(super) batches: VecDeque<BatchMetadata>,
    pub(super) coordinator_epoch: i32,
    pub(super) last_timestamp: i64,
    pub(super) current_txn_first_offset: Option<Offset>,
}

impl ProducerStateEntry {
    fn new() -> Self {
        Self {
            producer_epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::new(),
            coordinator_epoch: -1,
            last_timestamp: -1,
            current_txn_first_offset: None,
        }
    }

    fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(NO_SEQUENCE, |b| b.last_sequence)
    }

    /// A new epoch forgets the old epoch's sequences.
    fn maybe_update_epoch(&mut self, producer_epoch: ProducerEpoch) {
        if self.producer_epoch != producer_epoch {
            self.producer_epoch = producer_epoch;
            self.batches.clear();
        }
    }

    fn apply(&mut self, batch: &ProducerBatch) {
        self.maybe_update_epoch(batch.producer_epoch);
        self.last_timestamp = batch.max_timestamp;
        if batch.is_control {
            // A transaction marker ends the producer's transaction.
            self.current_txn_first_offset = None;
            return;
        }
        self.batches.push_back(BatchMetadata {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence,
            first_offset: batch.base_offset,
            last_offset: batch.last_offset,
            timestamp: batch.max_timestamp,
        });
        while self.batches.len() > BATCH_METADATA_RETAINED {
            self.batches.pop_front();
        }
        if batch.is_transactional && self.current_txn_first_offset.is_none() {
            self.current_txn_first_offset = Some(batch.base_offset);
        }
    }
}

/// The header fields of one batch that producer bookkeeping needs, with the offsets and max
/// timestamp the batch has (or will have) in the log.
#[derive(Clone, Copy, Debug)]
pub(super) struct ProducerBatch {
    pub(super) producer_id: ProducerId,
    pub(super) producer_epoch: ProducerEpoch,
    pub(super) base_sequence: i32,
    pub(super) last_sequence: i32,
    pub(super) base_offset: Offset,
    pub(super) last_offset: Offset,
    pub(super) max_timestamp: i64,
    pub(super) is_transactional: bool,
    pub(super) is_control: bool,
}

impl ProducerBatch {
    /// `None` for batches without a producer id.
    pub(super) fn from_header(
        header: &RecordBatchHeader,
        base_offset: Offset,
        max_timestamp: i64,
    ) -> Option<Self> {
        header.has_producer_id().then(|| Self {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset,
            last_offset: base_offset + i64::from(header.last_offset_delta),
            max_timestamp,
            is_transactional: header.is_transactional(),
            is_control: header.is_control(),
        })
    }
}

/// Producer entries changed by an append that has not been written yet. Validation of a whole
/// produce payload happens against this staged copy, so nothing changes if any batch fails.
#[derive(Default)]
pub(super) struct ProducerAppend {
    updated: HashMap<ProducerId, ProducerStateEntry>,
}

pub(super) struct ProducerStateManager {
    dir: PathBuf,
    producers: HashMap<ProducerId, ProducerStateEntry>,
    /// Every batch below this offset has been applied.
    map_end_offset: Offset,
}

impl ProducerStateManager {
    pub(super) fn new(dir: &Path, map_end_offset: Offset) -> Self {
        Self {
            dir: dir.to_path_buf(),
            producers: HashMap::new(),
            map_end_offset,
        }
    }

    /// Loads the newest readable snapshot at or below `log_end_offset`, deleting snapshots above
    /// it (they describe truncated data) and unreadable ones. Without a usable snapshot the state
    /// is empty as of `replay_from` (the first offset of the log). The caller replays the batches
    /// from [`map_end_offset`](Self::map_end_offset) to the log end.
    pub(super) fn load(
        dir: &Path,
        replay_from: Offset,
        log_end_offset: Offset,
    ) -> Result<Self, LogError> {
        let mut offsets = list_snapshots(dir)?;
        while let Some(offset) = offsets.pop() {
            let path = offset_file(dir, offset, SNAPSHOT_SUFFIX);
            if offset > log_end_offset || offset < replay_from {
                remove_if_exists(&path).map_err(io_error(&path, "delete a producer snapshot"))?;
                continue;
            }
            let bytes = fs::read(&path).map_err(io_error(&path, "read a producer snapshot"))?;
            match decode_snapshot(&bytes) {
                Ok(producers) => {
                    return Ok(Self {
                        dir: dir.to_path_buf(),
                        producers,
                        map_end_offset: offset,
                    })
                }
                Err(reason) => {
                    tracing::warn!(
                        path = %path.display(),
                        reason,
                        "deleting an unreadable producer state snapshot"
                    );
                    remove_if_exists(&path)
                        .map_err(io_error(&path, "delete a producer snapshot"))?;
                }
            }
        }
        Ok(Self::new(dir, replay_from))
    }

    pub(super) fn map_end_offset(&self) -> Offset {
        self.map_end_offset
    }

    #[cfg(test)]
    pub(super) fn entry(&self, producer_id: ProducerId) -> Option<&ProducerStateEntry> {
        self.producers.get(&producer_id)
    }

    pub(super) fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Every producer with state in this log, by id (DescribeProducers).
    pub(super) fn active_producers(&self) -> Vec<super::ActiveProducer> {
        let mut out: Vec<_> = self
            .producers
            .iter()
            .map(|(&producer_id, e)| super::ActiveProducer {
                producer_id,
                producer_epoch: e.producer_epoch,
                last_sequence: e.last_sequence(),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.current_txn_first_offset,
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// The smallest first offset of an open transaction, if any (the last stable offset bound).
    pub(super) fn first_unstable_offset(&self) -> Option<Offset> {
        self.producers
            .values()
            .filter_map(|e| e.current_txn_first_offset)
            .min()
    }

    /// The original placement of `batch` if the log already holds it: same producer epoch and
    /// the same first and last sequence as one of the retained batches.
    pub(super) fn find_duplicate(&self, batch: &ProducerBatch) -> Option<BatchMetadata> {
        let entry = self.producers.get(&batch.producer_id)?;
        if entry.producer_epoch != batch.producer_epoch {
            return None;
        }
        entry
            .batches
            .iter()
            .find(|b| {
                b.first_sequence == batch.base_sequence && b.last_sequence == batch.last_sequence
            })
            .copied()
    }

    /// Checks a batch from a producing client against the state plus what `append` has staged,
    /// with Kafka's rules (`ProducerAppendInfo.checkProducerEpoch` and `checkSequence`), and
    /// stages it on success.
    pub(super) fn validate_client_batch(
        &self,
        append: &mut ProducerAppend,
        batch: &ProducerBatch,
    ) -> Result<(), LogError> {
        let current = self.producers.get(&batch.producer_id);
        let current_epoch = current.map_or(NO_PRODUCER_EPOCH, |e| e.producer_epoch);
        let updated = append
            .updated
            .entry(batch.producer_id)
            .or_insert_with(|| current.cloned().unwrap_or_else(ProducerStateEntry::new));
        if batch.producer_epoch < updated.producer_epoch {
            return Err(LogError::InvalidProducerEpoch {
                dir: self.dir.clone(),
                producer_id: batch.producer_id,
                producer_epoch: batch.producer_epoch,
                current_epoch: updated.producer_epoch,
            });
        }
        let out_of_order = |last_sequence| LogError::OutOfOrderSequence {
            dir: self.dir.clone(),
            producer_id: batch.producer_id,
            producer_epoch: batch.producer_epoch,
            first_sequence: batch.base_sequence,
            last_sequence,
        };
        if batch.producer_epoch != updated.producer_epoch {
            // A new epoch starts its sequences at 0. A producer the log has never seen (or has
            // expired) may start anywhere: since KIP-360 Kafka accepts it rather than answering
            // UNKNOWN_PRODUCER_ID, because retention can remove a live producer's state.
            if batch.base_sequence != 0 && updated.producer_epoch != NO_PRODUCER_EPOCH {
                return Err(out_of_order(NO_SEQUENCE));
            }
        } else {
            let last_sequence = updated.last_sequence();
            // Kafka's `inSequence`: the next number, wrapping from i32::MAX to 0 (and 0 after
            // NO_SEQUENCE, i.e. -1).
            let in_sequence = batch.base_sequence == increment_sequence(last_sequence, 1);
            if current_epoch != NO_PRODUCER_EPOCH && !in_sequence {
                return Err(out_of_order(last_sequence));
            }
        }
        updated.apply(batch);
        Ok(())
    }

    /// Stages a batch without checks (replication, recovery): Kafka only validates client appends.
    pub(super) fn stage_unchecked(&self, append: &mut ProducerAppend, batch: &ProducerBatch) {
        let current = self.producers.get(&batch.producer_id);
        append
            .updated
            .entry(batch.producer_id)
            .or_insert_with(|| current.cloned().unwrap_or_else(ProducerStateEntry::new))
            .apply(batch);
    }

    /// Makes a staged append part of the state; every batch below `map_end_offset` is now applied.
    pub(super) fn commit(&mut self, append: ProducerAppend, map_end_offset: Offset) {
        self.producers.extend(append.updated);
        self.map_end_offset = map_end_offset;
    }

    /// Forgets every producer (the log was emptied) and restarts at `offset`.
    pub(super) fn reset(&mut self, offset: Offset) {
        self.producers.clear();
        self.map_end_offset = offset;
    }

    /// Kafka's `producer.id.expiration.ms`: forget producers without an open transaction whose
    /// last batch is older than `expiration_ms`.
    pub(super) fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Writes `{map_end_offset}.snapshot` and prunes old snapshots.
    pub(super) fn take_snapshot(&self) -> Result<(), LogError> {
        let name = format!("{:020}.{SNAPSHOT_SUFFIX}", self.map_end_offset);
        write_atomically(&self.dir, &name, &encode_snapshot(&self.producers))
            .map_err(io_error(&self.dir.join(&name), "write a producer snapshot"))?;
        let offsets = list_snapshots(&self.dir)?;
        let excess = offsets.len().saturating_sub(SNAPSHOTS_RETAINED);
        for &offset in &offsets[..excess] {
            let path = offset_file(&self.dir, offset, SNAPSHOT_SUFFIX);
            remove_if_exists(&path).map_err(io_error(&path, "delete a producer snapshot"))?;
        }
        Ok(())
    }

    /// Deletes every snapshot (the log was emptied).
    pub(super) fn delete_all_snapshots(&self) -> Result<(), LogError> {
        self.delete_snapshots_outside(Offset::MAX, Offset::MIN)
    }

    /// Deletes snapshots above `offset` (the log was truncated to it) or below `start` (the
    /// segments they were taken for are gone).
    pub(super) fn delete_snapshots_outside(
        &self,
        start: Offset,
        offset: Offset,
    ) -> Result<(), LogError> {
        for snapshot in list_snapshots(&self.dir)? {
            if snapshot > offset || snapshot < start {
                let path = offset_file(&self.dir, snapshot, SNAPSHOT_SUFFIX);
                remove_if_exists(&path).map_err(io_error(&path, "delete a producer snapshot"))?;
            }
        }
        Ok(())
    }
}

/// Snapshot offsets in `dir`, ascending.
fn list_snapshots(dir: &Path) -> Result<Vec<Offset>, LogError> {
    let read_dir = fs::read_dir(dir).map_err(io_error(dir, "list the partition directory"))?;
    let mut offsets = Vec::new();
    for entry in read_dir {
        let entry = entry.map_err(io_error(dir, "list the partition directory"))?;
        if let Some(offset) = entry
            .file_name()
            .to_str()
            .and_then(|name| parse_offset_file(name, SNAPSHOT_SUFFIX))
        {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

fn encode_snapshot(producers: &HashMap<ProducerId, ProducerStateEntry>) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + producers.len() * (PRODUCER_BYTES + 2 * BATCH_BYTES));
    body.extend_from_slice(&(producers.len() as u32).to_be_bytes());
    // Sorted so that equal states give equal files.
    let mut ids: Vec<_> = producers.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let e = &producers[&id];
        body.extend_from_slice(&id.get().to_be_bytes());
        body.extend_from_slice(&e.producer_epoch.get().to_be_bytes());
        body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        body.extend_from_slice(&e.last_timestamp.to_be_bytes());
        let txn_first_offset = e.current_txn_first_offset.unwrap_or(Offset::UNKNOWN);
        body.extend_from_slice(&txn_first_offset.get().to_be_bytes());
        body.push(e.batches.len() as u8);
        for b in &e.batches {
            body.extend_from_slice(&b.first_sequence.to_be_bytes());
            body.extend_from_slice(&b.last_sequence.to_be_bytes());
            body.extend_from_slice(&b.first_offset.get().to_be_bytes());
            body.extend_from_slice(&b.last_offset.get().to_be_bytes());
            body.extend_from_slice(&b.timestamp.to_be_bytes());
        }
    }
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A bounds-checked big-endian reader over a snapshot body.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.buf.len() < N {
            return Err("the file ends in the middle of an entry".to_owned());
        }
        let (head, rest) = self.buf.split_at(N);
        self.buf = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_be_bytes)
    }
}

fn decode_snapshot(bytes: &[u8]) -> Result<HashMap<ProducerId, ProducerStateEntry>, String> {
    if bytes.len() < SNAPSHOT_HEADER_BYTES + 4 || &bytes[..4] != SNAPSHOT_MAGIC {
        return Err("the file does not start with a snapshot header".to_owned());
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version != SNAPSHOT_VERSION {
        return Err(format!("unsupported snapshot version {version}"));
    }
    let stored = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    let body = &bytes[SNAPSHOT_HEADER_BYTES..];
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(format!(
            "the stored CRC {stored:#010x} does not match the computed {computed:#010x}"
        ));
    }
    let mut cursor = Cursor { buf: body };
    let count = u32::from_be_bytes(cursor.take()?) as usize;
    // The count is CRC-protected, but still bound the allocation by what the bytes can hold.
    let mut producers = HashMap::with_capacity(count.min(body.len() / PRODUCER_BYTES));
    for _ in 0..count {
        let producer_id = ProducerId::new(cursor.i64()?);
        let mut entry = ProducerStateEntry::new();
        entry.producer_epoch = ProducerEpoch::new(cursor.i16()?);
        entry.coordinator_epoch = cursor.i32()?;
        entry.last_timestamp = cursor.i64()?;
        let txn = cursor.i64()?;
        entry.current_txn_first_offset = (txn >= 0).then_some(Offset::new(txn));
        let [batch_count] = cursor.take::<1>()?;
        if usize::from(batch_count) > BATCH_METADATA_RETAINED {
            return Err(format!(
                "producer {producer_id} lists {batch_count} batches"
            ));
        }
        for _ in 0..batch_count {
            entry.batches.push_back(BatchMetadata {
                first_sequence: cursor.i32()?,
                last_sequence: cursor.i32()?,
                first_offset: Offset::new(cursor.i64()?),
                last_offset: Offset::new(cursor.i64()?),
                timestamp: cursor.i64()?,
            });
        }
        producers.insert(producer_id, entry);
    }
    if !cursor.buf.is_empty() {
        return Err(format!(
            "{} bytes follow the last producer",
            cursor.buf.len()
        ));
    }
    Ok(producers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, first_seq: i32, count: i32, offset: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id: ProducerId::new(pid),
            producer_epoch: ProducerEpoch::new(epoch),
            base_sequence: first_seq,
            last_sequence: increment_sequence(first_seq, count - 1),
            base_offset: Offset::new(offset),
            last_offset: Offset::new(offset + i64::from(count) - 1),
            max_timestamp: 1_000,
            is_transactional: false,
            is_control: false,
        }
    }

    fn append_one(m: &mut ProducerStateManager, b: &ProducerBatch) -> Result<(), LogError> {
        let mut append = ProducerAppend::default();
        m.validate_client_batch(&mut append, b)?;
        m.commit(append, b.last_offset + 1);
        Ok(())
    }

    /// Sequences must follow on, epochs must not go back, a new epoch restarts at 0, and only the
    /// last five batches are remembered for duplicate detection.
    #[test]
    fn sequence_and_epoch_rules() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = ProducerStateManager::new(dir.path(), Offset::ZERO);
        // An unknown producer may start at any sequence (KIP-360).
        append_one(&mut m, &batch(7, 0, 5, 2, 0)).unwrap();
        append_one(&mut m, &batch(7, 0, 7, 1, 2)).unwrap();
        assert!(matches!(
            append_one(&mut m, &batch(7, 0, 9, 1, 3)),
            Err(LogError::OutOfOrderSequence {
                last_sequence: 7,
                ..
            })
        ));
        assert!(matches!(
            append_one(&mut m, &batch(7, 1, 3, 1, 3)),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        append_one(&mut m, &batch(7, 1, 0, 1, 3)).unwrap();
        assert!(matches!(
            append_one(&mut m, &batch(7, 0, 8, 1, 4)),
            Err(LogError::InvalidProducerEpoch {
                current_epoch,
                ..
            }) if current_epoch == ProducerEpoch::new(1)
        ));
        for i in 1..=6 {
            append_one(&mut m, &batch(7, 1, i, 1, 3 + i64::from(i))).unwrap();
        }
        assert_eq!(
            m.entry(ProducerId::new(7)).unwrap().batches.len(),
            BATCH_METADATA_RETAINED
        );
        assert!(m.find_duplicate(&batch(7, 1, 1, 1, 99)).is_none());
        let dup = m.find_duplicate(&batch(7, 1, 2, 1, 99)).unwrap();
        assert_eq!(dup.first_offset, Offset::new(5));
        assert!(m.find_duplicate(&batch(7, 0, 2, 1, 99)).is_none());
    }

    /// Sequence numbers wrap from i32::MAX to 0.
    #[test]
    fn sequence_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = ProducerStateManager::new(dir.path(), Offset::ZERO);
        append_one(&mut m, &batch(1, 0, 0, 1, 0)).unwrap();
        let mut big = batch(1, 0, 1, 1, 1);
        big.last_sequence = i32::MAX;
        append_one(&mut m, &big).unwrap();
        append_one(&mut m, &batch(1, 0, 0, 1, 2)).unwrap();
    }

    /// A failed validation leaves the committed state untouched.
    #[test]
    fn staged_failures_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = ProducerStateManager::new(dir.path(), Offset::ZERO);
        append_one(&mut m, &batch(3, 0, 0, 1, 0)).unwrap();
        let before = m.entry(ProducerId::new(3)).cloned();
        let mut append = ProducerAppend::default();
        m.validate_client_batch(&mut append, &batch(3, 0, 1, 1, 1))
            .unwrap();
        assert!(m
            .validate_client_batch(&mut append, &batch(3, 0, 5, 1, 2))
            .is_err());
        drop(append);
        assert_eq!(m.entry(ProducerId::new(3)).cloned(), before);
    }

    /// Snapshots round-trip, unreadable or too-new snapshots are deleted on load, and only the
    /// last few are kept.
    #[test]
    fn snapshots_round_trip_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = ProducerStateManager::new(dir.path(), Offset::ZERO);
        let mut txn = batch(9, 2, 0, 3, 0);
        txn.is_transactional = true;
        append_one(&mut m, &txn).unwrap();
        append_one(&mut m, &batch(4, 0, 0, 2, 3)).unwrap();
        m.take_snapshot().unwrap();
        let loaded = ProducerStateManager::load(dir.path(), Offset::ZERO, Offset::new(5)).unwrap();
        assert_eq!(loaded.map_end_offset(), Offset::new(5));
        assert_eq!(loaded.producers, m.producers);
        assert_eq!(loaded.first_unstable_offset(), Some(Offset::ZERO));

        // Too new for a log that ends at 4: deleted, state starts empty at the replay point.
        let loaded = ProducerStateManager::load(dir.path(), Offset::ZERO, Offset::new(4)).unwrap();
        assert_eq!(loaded.producer_count(), 0);
        assert!(list_snapshots(dir.path()).unwrap().is_empty());

        for offset in [10, 20, 30, 40] {
            m.map_end_offset = Offset::new(offset);
            m.take_snapshot().unwrap();
        }
        assert_eq!(
            list_snapshots(dir.path()).unwrap(),
            [20, 30, 40].map(Offset::new)
        );
        let path = offset_file(dir.path(), Offset::new(40), SNAPSHOT_SUFFIX);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let loaded =
            ProducerStateManager::load(dir.path(), Offset::ZERO, Offset::new(100)).unwrap();
        assert_eq!(loaded.map_end_offset(), Offset::new(30));
        assert_eq!(
            list_snapshots(dir.path()).unwrap(),
            [20, 30].map(Offset::new)
        );
    }

    /// Producers without an open transaction expire after the configured idle time.
    #[test]
    fn expiration() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = ProducerStateManager::new(dir.path(), Offset::ZERO);
        append_one(&mut m, &batch(1, 0, 0, 1, 0)).unwrap();
        let mut txn = batch(2, 0, 0, 1, 1);
        txn.is_transactional = true;
        append_one(&mut m, &txn).unwrap();
        assert_eq!(m.remove_expired(1_500, 1_000), 0);
        assert_eq!(m.remove_expired(2_000, 1_000), 1);
        assert!(m.entry(ProducerId::new(2)).is_some());
    }

    #[test]
    fn snapshot_decoder_rejects_garbage() {
        assert!(decode_snapshot(b"").is_err());
        assert!(decode_snapshot(b"SHPS\0\x01\0\0\0\0").is_err());
        let good = encode_snapshot(&HashMap::new());
        assert!(decode_snapshot(&good).unwrap().is_empty());
    }
}
