//! The durable Raft log of the metadata quorum, in the node's metadata directory:
//!
//! ```text
//!  raft-log    append-only frames: u32 body length, u32 CRC-32C of the body, JSON entry
//!  raft-state  two 4 KiB slots, written in place in turn: u64 sequence, u32 length, u32 CRC,
//!              JSON {vote, committed, last_purged}; the valid slot with the higher sequence wins
//! ```
//!
//! Every write is fsynced before openraft hears of it (an append before its flush callback, a
//! vote before `save_vote` returns), on a blocking thread, never on an async worker. A torn
//! frame at the end (a crash during an append, which was therefore never acknowledged) is cut
//! off at open; a torn state slot leaves the other one. Purging persists the new `last_purged`
//! first, then rewrites the file without the purged entries (entries at or below `last_purged`
//! found at open are skipped, so a crash in between, or a rewrite that fails, only keeps entries
//! openraft no longer needs). The whole log is also held in memory: after snapshots it is short.
//!
//! # A full disk
//! A metadata log that cannot write stops the node (openraft treats a storage error as fatal),
//! and a single node writes on every start (a new leader appends an entry). So no routine write
//! needs a new block: the state slots are written in place in a file allocated once, and the log
//! keeps [`SLACK_BYTES`] allocated past its end (`fallocate` KEEP_SIZE), topped up after appends.
//! Beyond that, a write that finds the disk full asks the [`NoSpaceHook`] (the broker's reserve
//! file) for room and is tried once more.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

const LOG_FILE: &str = "raft-log";
const STATE_FILE: &str = "raft-state";
const SLOT_BYTES: usize = 4096;
const SLOT_HEADER: usize = 16;
/// Bytes kept allocated past the end of the log, so that appends succeed on a full disk.
pub const SLACK_BYTES: u64 = 1 << 20;
/// Largest entry body accepted when reading the log back.
const FRAME_MAX: usize = 256 << 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PersistedState {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

/// Called when a write fails because the disk is full; true if it freed space (the broker's
/// reserve file), and the write is then tried once more.
#[derive(Clone)]
pub struct NoSpaceHook(pub Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for NoSpaceHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoSpaceHook")
    }
}

fn is_no_space(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(28) // ENOSPC
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    no_space: Option<NoSpaceHook>,
    file: File,
    file_len: u64,
    /// The log file's allocated end (its length plus the slack), as far as this process knows.
    allocated: u64,
    state_file: File,
    /// Sequence number of the last state slot written.
    state_seq: u64,
    /// Index → (entry, byte offset of its frame).
    entries: BTreeMap<u64, (Entry, u64)>,
    state: PersistedState,
}

/// The log store; clones share it (openraft's replication tasks read it concurrently).
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn io_err(e: &std::io::Error) -> StorageError {
    StorageIOError::write_logs(e).into()
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn frame(entry: &Entry) -> Vec<u8> {
    let body = serde_json::to_vec(entry).expect("a log entry always serializes");
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads whole frames; returns the entries with their offsets and where the valid part ends.
fn read_frames(bytes: &[u8]) -> (Vec<(Entry, u64)>, u64, Option<String>) {
    let mut at = 0usize;
    let mut out = Vec::new();
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 8) else {
            return (
                out,
                at as u64,
                Some("a frame header is cut short".to_string()),
            );
        };
        let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
        let Some(body) = bytes.get(at + 8..at + 8 + len).filter(|_| len <= FRAME_MAX) else {
            return (
                out,
                at as u64,
                Some(format!("a {len}-byte entry is cut short")),
            );
        };
        if crc32c::crc32c(body) != crc {
            return (
                out,
                at as u64,
                Some("an entry fails its CRC-32C".to_string()),
            );
        }
        match serde_json::from_slice::<Entry>(body) {
            Ok(entry) => out.push((entry, at as u64)),
            Err(e) => {
                return (
                    out,
                    at as u64,
                    Some(format!("an entry does not decode: {e}")),
                )
            }
        }
        at += 8 + len;
    }
    (out, at as u64, None)
}

impl Inner {
    /// Runs `write`; on a full disk, asks the hook for space and runs it once more.
    fn with_space<T>(
        &mut self,
        mut write: impl FnMut(&mut Self) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        match write(self) {
            Err(e) if is_no_space(&e) && self.no_space.as_ref().is_some_and(|hook| (hook.0)()) => {
                write(self)
            }
            other => other,
        }
    }

    /// Writes the state into the older slot, in place, and fdatasyncs it.
    fn persist_state(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let body = serde_json::to_vec(&self.state).expect("the state serializes");
        if body.len() > SLOT_BYTES - SLOT_HEADER {
            return Err(std::io::Error::other(
                "the raft state does not fit its slot",
            ));
        }
        let seq = self.state_seq + 1;
        let mut slot = vec![0u8; SLOT_BYTES];
        slot[..8].copy_from_slice(&seq.to_be_bytes());
        slot[8..12].copy_from_slice(&(body.len() as u32).to_be_bytes());
        slot[12..16].copy_from_slice(
            &crc32c::crc32c_append(crc32c::crc32c(&seq.to_be_bytes()), &body).to_be_bytes(),
        );
        slot[SLOT_HEADER..SLOT_HEADER + body.len()].copy_from_slice(&body);
        let at = (seq % 2) * SLOT_BYTES as u64;
        self.state_file.write_all_at(&slot, at)?;
        self.state_file.sync_data()?;
        self.state_seq = seq;
        Ok(())
    }

    /// Keeps [`SLACK_BYTES`] allocated past the end of the log (best effort).
    fn top_up_slack(&mut self) {
        if self.allocated >= self.file_len + SLACK_BYTES / 4 {
            return;
        }
        match rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::KEEP_SIZE,
            self.file_len,
            SLACK_BYTES,
        ) {
            Ok(()) => self.allocated = self.file_len + SLACK_BYTES,
            Err(e) => tracing::debug!(error = %e, "cannot preallocate the metadata log's slack"),
        }
    }

    fn append(&mut self, entries: Vec<Entry>) -> std::io::Result<()> {
        self.with_space(|inner| {
            let result = inner.append_once(&entries);
            if result.is_err() {
                // A partial frame must not stay behind the next attempt's (and the truncation
                // frees the slack, so it is counted as gone).
                let _ = inner.file.set_len(inner.file_len);
                inner.allocated = inner.file_len;
            }
            result
        })
    }

    fn append_once(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(entries.len());
        for entry in entries {
            let offset = self.file_len + buf.len() as u64;
            buf.extend_from_slice(&frame(entry));
            placed.push((entry.clone(), offset));
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.file_len += buf.len() as u64;
        for (entry, offset) in placed {
            self.entries.insert(entry.log_id.index, (entry, offset));
        }
        self.top_up_slack();
        Ok(())
    }

    /// Deletes entries from `index` on.
    fn truncate(&mut self, index: u64) -> std::io::Result<()> {
        let Some((_, (_, offset))) = self.entries.range(index..).next() else {
            return Ok(());
        };
        let offset = *offset;
        self.file.set_len(offset)?;
        self.file.sync_data()?;
        self.file_len = offset;
        self.allocated = offset;
        self.entries.split_off(&index);
        self.top_up_slack();
        Ok(())
    }

    /// Deletes entries up to and including `log_id`.
    fn purge(&mut self, log_id: LogId) -> std::io::Result<()> {
        self.state.last_purged = Some(log_id);
        self.with_space(|inner| inner.persist_state())?;
        self.entries = self.entries.split_off(&(log_id.index + 1));
        // Only an optimisation from here: the purged entries are skipped at open anyway.
        if let Err(e) = self.rewrite() {
            tracing::warn!(error = %e, "cannot rewrite the metadata log without its purged entries; they stay on disk for now");
            let _ = std::fs::remove_file(self.dir.join(format!("{LOG_FILE}.tmp")));
        }
        Ok(())
    }

    fn rewrite(&mut self) -> std::io::Result<()> {
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut file = File::create(&tmp)?;
        let mut len = 0u64;
        let mut offsets = Vec::with_capacity(self.entries.len());
        for (entry, _) in self.entries.values() {
            let bytes = frame(entry);
            file.write_all(&bytes)?;
            offsets.push(len);
            len += bytes.len() as u64;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(LOG_FILE))?;
        fsync_dir(&self.dir)?;
        for ((_, offset), new) in self.entries.values_mut().zip(offsets) {
            *offset = new;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        self.file_len = len;
        self.allocated = len;
        self.top_up_slack();
        Ok(())
    }
}

/// Reads the newest valid state slot: (sequence, state), or (0, default) if none.
fn read_state(bytes: &[u8]) -> (u64, Option<PersistedState>) {
    let mut best: (u64, Option<PersistedState>) = (0, None);
    for slot in bytes.chunks(SLOT_BYTES).take(2) {
        if slot.len() < SLOT_HEADER {
            continue;
        }
        let seq = u64::from_be_bytes(slot[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(slot[8..12].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(slot[12..16].try_into().expect("4 bytes"));
        let Some(body) = slot.get(SLOT_HEADER..SLOT_HEADER + len) else {
            continue;
        };
        if seq == 0 || crc32c::crc32c_append(crc32c::crc32c(&seq.to_be_bytes()), body) != crc {
            continue;
        }
        if let Ok(state) = serde_json::from_slice::<PersistedState>(body) {
            if seq > best.0 {
                best = (seq, Some(state));
            }
        }
    }
    best
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting off a torn last frame.
    pub fn open(dir: &Path, no_space: Option<NoSpaceHook>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let state_path = dir.join(STATE_FILE);
        let mut state_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&state_path)?;
        let mut state_bytes = Vec::new();
        state_file.read_to_end(&mut state_bytes)?;
        if state_bytes.len() < 2 * SLOT_BYTES {
            // Allocated for real once (zeros written, not a sparse file), then only rewritten
            // in place.
            use std::os::unix::fs::FileExt;
            state_file.write_all_at(
                &vec![0u8; 2 * SLOT_BYTES - state_bytes.len()],
                state_bytes.len() as u64,
            )?;
            state_file.sync_all()?;
            fsync_dir(dir)?;
        }
        let (state_seq, state) = read_state(&state_bytes);
        let state = state.unwrap_or_default();
        let path = dir.join(LOG_FILE);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        let (entries, valid, damage) = read_frames(&bytes);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if let Some(reason) = damage {
            tracing::warn!(path = %path.display(), at = valid, %reason,
                "the metadata log ends in a torn entry (a crash during an append); cutting it off");
            file.set_len(valid)?;
            file.sync_data()?;
        }
        let purged_below = state.last_purged.map_or(0, |l| l.index + 1);
        let entries = entries
            .into_iter()
            .filter(|(entry, _)| entry.log_id.index >= purged_below)
            .map(|(entry, offset)| (entry.log_id.index, (entry, offset)))
            .collect();
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            no_space,
            file,
            file_len: valid,
            allocated: valid,
            state_file,
            state_seq,
            entries,
            state,
        };
        inner.top_up_slack();
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a write on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Inner) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().unwrap_or_else(PoisonError::into_inner);
            write(&mut guard)
        })
        .await
        .map_err(|e| io_err(&std::io::Error::other(e.to_string())))?
        .map_err(|e| io_err(&e))
    }

    /// Entries held, for tests and status.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this node has never taken part in a quorum (no vote, no entry).
    pub fn is_pristine(&self) -> bool {
        let inner = self.lock();
        inner.state.vote.is_none() && inner.entries.is_empty() && inner.state.last_purged.is_none()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last_purged_log_id = inner.state.last_purged;
        let last_log_id = inner
            .entries
            .values()
            .next_back()
            .map(|(entry, _)| entry.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |inner| {
            inner.state.vote = Some(vote);
            inner.with_space(|inner| inner.persist_state())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.lock().state.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.blocking(move |inner| {
            inner.state.committed = committed;
            inner.with_space(|inner| inner.persist_state())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().state.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self.blocking(move |inner| inner.append(entries)).await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |inner| inner.truncate(log_id.index))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |inner| inner.purge(log_id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.lock().entries.keys().copied().collect()
    }

    /// Appends, truncation and purges survive a reopen; a torn last frame is cut off.
    #[test]
    fn reopens_what_was_written_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), None).unwrap();
        store.lock().append((0..10).map(entry).collect()).unwrap();
        store.lock().truncate(7).unwrap();
        store.lock().purge(entry(2).log_id).unwrap();
        store.lock().append(vec![entry(7)]).unwrap();
        drop(store);
        let reopened = LogStore::open(dir.path(), None).unwrap();
        assert_eq!(indexes(&reopened), vec![3, 4, 5, 6, 7]);
        assert_eq!(reopened.lock().state.last_purged, Some(entry(2).log_id));
        drop(reopened);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let torn = frame(&entry(8));
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        std::fs::write(&path, &bytes).unwrap();
        let cut = LogStore::open(dir.path(), None).unwrap();
        assert_eq!(indexes(&cut), vec![3, 4, 5, 6, 7]);
        cut.lock().append(vec![entry(8)]).unwrap();
        drop(cut);
        assert_eq!(
            indexes(&LogStore::open(dir.path(), None).unwrap()),
            vec![3, 4, 5, 6, 7, 8]
        );
    }

    /// The state is written in place, in two slots taken in turn: a torn newest slot leaves the
    /// one before it, and the file never grows (so a full disk cannot refuse a vote).
    #[test]
    fn state_slots_survive_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), None).unwrap();
        for index in [3, 4] {
            let mut inner = store.lock();
            inner.state.committed = Some(entry(index).log_id);
            inner.persist_state().unwrap();
        }
        drop(store);
        let path = dir.path().join(STATE_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            2 * SLOT_BYTES as u64
        );
        let reopened = LogStore::open(dir.path(), None).unwrap();
        assert_eq!(reopened.lock().state.committed, Some(entry(4).log_id));
        let seq = reopened.lock().state_seq;
        drop(reopened);
        // Tear the newest slot (sequence `seq`).
        let mut bytes = std::fs::read(&path).unwrap();
        let at = (seq % 2) as usize * SLOT_BYTES + SLOT_HEADER + 2;
        bytes[at] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let torn = LogStore::open(dir.path(), None).unwrap();
        assert_eq!(torn.lock().state.committed, Some(entry(3).log_id));
    }
}
