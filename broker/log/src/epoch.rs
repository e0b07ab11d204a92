//! The leader epoch cache: for each leader epoch, the first offset written in it (Kafka's
//! `LeaderEpochFileCache`), persisted in `leader-epoch-checkpoint`.
//!
//! File format (Kafka's checkpoint text format, so operators can read it with `cat`):
//! ```text
//! 0            <- version
//! 2            <- number of entries
//! 3 0          <- "epoch start_offset", epochs and offsets strictly increasing
//! 5 1200
//! ```
//! The file is rewritten whole through a temp file, rename and directory fsync on every change;
//! changes happen once per leader election, not per produce.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use shale_formats::ids::{LeaderEpoch, Offset};

use super::files::{write_atomically, LEADER_EPOCH_CHECKPOINT};
use super::LogError;

const CHECKPOINT_VERSION: u32 = 0;

pub use shale_formats::epoch::EpochEntry;

pub(super) struct LeaderEpochCache {
    dir: PathBuf,
    /// Strictly increasing in both epoch and start offset.
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Reads the checkpoint in `dir`; a missing file is an empty cache.
    pub(super) fn load(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let entries = match fs::read_to_string(&path) {
            Ok(text) => parse_checkpoint(&text).map_err(|reason| LogError::CorruptCheckpoint {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(LogError::Io {
                    path,
                    action: "read the leader epoch checkpoint",
                    source,
                })
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            entries,
        })
    }

    pub(super) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub(super) fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` started at `start_offset`, with Kafka's rules: nothing changes if the
    /// latest entry already has this epoch at an offset at or below `start_offset`; otherwise
    /// entries that would break monotonicity (epoch ≥ `epoch` or offset ≥ `start_offset`) are
    /// dropped first. Persists the file when something changed.
    pub(super) fn assign(
        &mut self,
        epoch: LeaderEpoch,
        start_offset: Offset,
    ) -> Result<(), LogError> {
        assert!(
            epoch.is_defined() && start_offset >= Offset::ZERO,
            "leader epoch entries must be non-negative: epoch {epoch}, start offset {start_offset}"
        );
        if let Some(latest) = self.entries.last() {
            if latest.epoch == epoch && latest.start_offset <= start_offset {
                return Ok(());
            }
        }
        let before = self.entries.len();
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        if self.entries.len() != before {
            tracing::warn!(
                dir = %self.dir.display(),
                %epoch,
                %start_offset,
                removed = before - self.entries.len(),
                "removed leader epoch entries that conflict with a new epoch"
            );
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.persist()
    }

    /// The epoch whose range contains `offset`, if any entry starts at or below it.
    pub(super) fn epoch_for_offset(&self, offset: Offset) -> Option<LeaderEpoch> {
        let idx = self.entries.partition_point(|e| e.start_offset <= offset);
        idx.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// OffsetForLeaderEpoch: the largest epoch ≤ `requested` that this log knows and the end
    /// offset of that epoch (the start of the next known epoch, or the log end offset for the
    /// latest epoch). Returns `(LeaderEpoch::UNDEFINED, Offset::UNKNOWN)` when `requested` is
    /// undefined or newer than every known epoch, as Kafka does.
    pub(super) fn end_offset_for(
        &self,
        requested: LeaderEpoch,
        log_end_offset: Offset,
    ) -> (LeaderEpoch, Offset) {
        if requested == LeaderEpoch::UNDEFINED {
            return (LeaderEpoch::UNDEFINED, Offset::UNKNOWN);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(higher_entry) = self.entries.get(higher) else {
            return (LeaderEpoch::UNDEFINED, Offset::UNKNOWN);
        };
        match higher.checked_sub(1) {
            // Older than every epoch we know: Kafka answers with the requested epoch and the
            // start of the first known one.
            None => (requested, higher_entry.start_offset),
            Some(floor) => (self.entries[floor].epoch, higher_entry.start_offset),
        }
    }

    /// After the log was truncated to `end_offset`: drops epochs that start at or after it.
    pub(super) fn truncate_from_end(&mut self, end_offset: Offset) -> Result<(), LogError> {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        if keep == self.entries.len() {
            return Ok(());
        }
        self.entries.truncate(keep);
        self.persist()
    }

    /// After the log start moved to `start_offset`: drops epochs that end at or before it and
    /// moves the start of the epoch containing it up to `start_offset`.
    pub(super) fn truncate_from_start(&mut self, start_offset: Offset) -> Result<(), LogError> {
        let below = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if below == 0 || (below == 1 && self.entries[0].start_offset == start_offset) {
            return Ok(());
        }
        let mut floor = self.entries[below - 1];
        floor.start_offset = start_offset;
        self.entries.drain(..below);
        self.entries.insert(0, floor);
        self.persist()
    }

    /// Forgets every epoch (the log was emptied and restarted elsewhere).
    pub(super) fn clear(&mut self) -> Result<(), LogError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        self.entries.clear();
        self.persist()
    }

    fn persist(&self) -> Result<(), LogError> {
        let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        write_atomically(&self.dir, LEADER_EPOCH_CHECKPOINT, text.as_bytes()).map_err(|source| {
            LogError::Io {
                path: self.dir.join(LEADER_EPOCH_CHECKPOINT),
                action: "write the leader epoch checkpoint",
                source,
            }
        })
    }
}

fn parse_checkpoint(text: &str) -> Result<Vec<EpochEntry>, String> {
    let mut lines = text.lines();
    let version = lines.next().ok_or("the file is empty")?;
    if version.trim().parse::<u32>().ok() != Some(CHECKPOINT_VERSION) {
        return Err(format!("unsupported version line {version:?}"));
    }
    let count_line = lines.next().ok_or("the entry count line is missing")?;
    let count: usize = count_line
        .trim()
        .parse()
        .map_err(|_| format!("the entry count {count_line:?} is not a number"))?;
    let mut entries: Vec<EpochEntry> = Vec::new();
    for line in lines.by_ref().take(count) {
        let mut parts = line.split_whitespace();
        let (Some(epoch), Some(offset), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("the line {line:?} is not \"epoch offset\""));
        };
        let entry = EpochEntry {
            epoch: epoch
                .parse()
                .map_err(|_| format!("the epoch in {line:?} is not a number"))?,
            start_offset: offset
                .parse()
                .map_err(|_| format!("the offset in {line:?} is not a number"))?,
        };
        if !entry.epoch.is_defined() || entry.start_offset < Offset::ZERO {
            return Err(format!("the line {line:?} holds a negative value"));
        }
        if let Some(prev) = entries.last() {
            if entry.epoch <= prev.epoch || entry.start_offset <= prev.start_offset {
                return Err(format!(
                    "the line {line:?} does not increase on the line before"
                ));
            }
        }
        entries.push(entry);
    }
    if entries.len() != count {
        return Err(format!(
            "it promises {count} entries but holds {}",
            entries.len()
        ));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(format!("it holds more than the promised {count} entries"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with(dir: &Path, entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::load(dir).unwrap();
        for &(epoch, offset) in entries {
            cache
                .assign(LeaderEpoch::new(epoch), Offset::new(offset))
                .unwrap();
        }
        cache
    }

    /// OffsetForLeaderEpoch answers follow Kafka's `endOffsetFor` case by case.
    #[test]
    fn end_offset_for_follows_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_with(dir.path(), &[(2, 10), (4, 25), (7, 40)]);
        let end_for = |epoch| {
            let (epoch, offset) = cache.end_offset_for(LeaderEpoch::new(epoch), Offset::new(50));
            (epoch.get(), offset.get())
        };
        let epoch_for = |offset| cache.epoch_for_offset(Offset::new(offset)).map(|e| e.get());
        assert_eq!(end_for(-1), (-1, -1));
        assert_eq!(end_for(7), (7, 50));
        assert_eq!(end_for(4), (4, 40));
        assert_eq!(end_for(5), (4, 40));
        assert_eq!(end_for(1), (1, 10));
        assert_eq!(end_for(8), (-1, -1));
        assert_eq!(epoch_for(9), None);
        assert_eq!(epoch_for(10), Some(2));
        assert_eq!(epoch_for(39), Some(4));
        assert_eq!(epoch_for(1000), Some(7));
    }

    /// Assignments survive a reload, repeated epochs are no-ops, and conflicting entries go.
    #[test]
    fn assign_persists_and_keeps_monotonic() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = cache_with(dir.path(), &[(1, 0), (1, 5), (3, 10)]);
        assert_eq!(cache.entries().len(), 2);
        let text = fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT)).unwrap();
        assert_eq!(text, "0\n2\n1 0\n3 10\n");
        // A new epoch starting below an existing entry removes the conflicting entry.
        cache.assign(LeaderEpoch::new(4), Offset::new(8)).unwrap();
        let reloaded = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(
            reloaded.entries(),
            &[
                EpochEntry {
                    epoch: LeaderEpoch::new(1),
                    start_offset: Offset::ZERO
                },
                EpochEntry {
                    epoch: LeaderEpoch::new(4),
                    start_offset: Offset::new(8)
                }
            ]
        );
    }

    /// Truncation from either end keeps the epochs that still cover the remaining offsets.
    #[test]
    fn truncation_from_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = cache_with(dir.path(), &[(1, 0), (2, 10), (3, 20)]);
        cache.truncate_from_end(Offset::new(20)).unwrap();
        assert_eq!(cache.latest_epoch(), Some(LeaderEpoch::new(2)));
        cache.truncate_from_start(Offset::new(15)).unwrap();
        assert_eq!(
            cache.entries(),
            &[EpochEntry {
                epoch: LeaderEpoch::new(2),
                start_offset: Offset::new(15)
            }]
        );
        let reloaded = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(reloaded.entries(), cache.entries());
    }

    /// A damaged checkpoint is reported, not silently treated as empty.
    #[test]
    fn corrupt_checkpoint_is_an_error() {
        for text in [
            "",
            "1\n0\n",
            "0\n2\n1 0\n",
            "0\n1\nx 0\n",
            "0\n2\n3 5\n2 9\n",
        ] {
            assert!(parse_checkpoint(text).is_err(), "{text:?} parsed");
        }
        assert_eq!(parse_checkpoint("0\n0\n").unwrap(), vec![]);
    }
}
