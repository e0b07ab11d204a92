//! The durable Raft log of the metadata quorum, in the node's metadata directory:
//!
//! ```text
//!  raft-log         append-only frames: u32 body length, u32 CRC-32C of the body, JSON entry
//!  raft-state.json  {vote, committed, last_purged}, replaced atomically (tmp, fsync, rename)
//! ```
//!
//! Every write is fsynced before openraft hears of it (an append before its flush callback, a
//! vote before `save_vote` returns), on a blocking thread, never on an async worker. A torn
//! frame at the end (a crash during an append, which was therefore never acknowledged) is cut
//! off at open. Purging persists the new `last_purged` first, then rewrites the file without
//! the purged entries, so a crash in between only keeps entries openraft no longer needs. The
//! whole log is also held in memory: after snapshots it is short (the entries since the last
//! snapshot plus `max_in_snapshot_log_to_keep`).

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
const STATE_FILE: &str = "raft-state.json";
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

    fn persist_state(&self) -> std::io::Result<()> {
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(&self.state).expect("the state serializes"))?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(STATE_FILE))?;
        fsync_dir(&self.dir)
    }

    fn append(&mut self, entries: Vec<Entry>) -> std::io::Result<()> {
        self.with_space(|inner| {
            let result = inner.append_once(&entries);
            if result.is_err() {
                // A partial frame must not stay behind the next attempt's.
                let _ = inner.file.set_len(inner.file_len);
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
        self.entries.split_off(&index);
        Ok(())
    }

    /// Deletes entries up to and including `log_id`.
    fn purge(&mut self, log_id: LogId) -> std::io::Result<()> {
        self.state.last_purged = Some(log_id);
        self.persist_state()?;
        self.entries = self.entries.split_off(&(log_id.index + 1));
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut file = File::create(&tmp)?;
        let mut len = 0u64;
        for (entry, offset) in self.entries.values_mut() {
            let bytes = frame(entry);
            file.write_all(&bytes)?;
            *offset = len;
            len += bytes.len() as u64;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(LOG_FILE))?;
        fsync_dir(&self.dir)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        self.file_len = len;
        Ok(())
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting off a torn last frame.
    pub fn open(dir: &Path, no_space: Option<NoSpaceHook>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let state = match std::fs::read(dir.join(STATE_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join(STATE_FILE).display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PersistedState::default(),
            Err(e) => return Err(e),
        };
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
        let entries = entries
            .into_iter()
            .map(|(entry, offset)| (entry.log_id.index, (entry, offset)))
            .collect();
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                no_space,
                file,
                file_len: valid,
                entries,
                state,
            })),
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
}
