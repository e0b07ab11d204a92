//! Disk space as a managed resource: produce stops *before* the data dir's filesystem is full,
//! so that what frees space (deletions, retention, metadata records of them) always has room,
//! and resumes by itself once space is back.
//!
//! # States
//! ```text
//! ok --free < storage_min_free_bytes--> low: produce answered KAFKA_STORAGE_ERROR (counted,
//!                                            logged loudly); uploaded local segments of tiered
//!                                            topics deleted at once, whatever local.retention.*
//! low --free >= storage_min_free_bytes + 1/16 of it--> ok (the margin keeps it from flapping)
//! ```
//! A poll (`storage_space_check_interval_ms`, statvfs: a few microseconds) moves between the
//! states; the produce path only reads a flag.
//!
//! # The reserve
//! `.shale-reserve` in the data dir is a file of [`RESERVE_BYTES`] zeros made at startup while
//! there is room. When a metadata write fails with "no space left" (a disk filled by something
//! else, or `storage_min_free_bytes = 0`), the reserve is deleted and the write tried once
//! more, so DeleteTopics, AlterConfigs and a restart still work on a full disk; the poll makes
//! the reserve again once the disk is back above the minimum.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Size of the reserve file: room for a cluster-metadata file of ~40 000 topics.
pub const RESERVE_BYTES: u64 = 8 << 20;
const RESERVE_FILE: &str = ".shale-reserve";

/// Free space of the data dir's filesystem, as the poll last saw it.
pub struct DiskSpace {
    dir: PathBuf,
    min_free_bytes: u64,
    low: AtomicBool,
    free_bytes: AtomicU64,
    total_bytes: AtomicU64,
    /// Produce requests refused for lack of space since startup.
    pub refused: AtomicU64,
}

impl DiskSpace {
    /// Takes a first reading and makes the reserve if there is room for it.
    pub fn open(dir: &Path, min_free_bytes: u64) -> std::io::Result<Self> {
        let space = Self {
            dir: dir.to_path_buf(),
            min_free_bytes,
            low: AtomicBool::new(false),
            free_bytes: AtomicU64::new(u64::MAX),
            total_bytes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        };
        space.check()?;
        Ok(space)
    }

    /// Reads the filesystem's free space, moves between `ok` and `low`, and remakes the
    /// reserve when there is room again. Returns whether space is low.
    pub fn check(&self) -> std::io::Result<bool> {
        let stat = rustix::fs::statvfs(&self.dir).map_err(std::io::Error::from)?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        self.free_bytes.store(free, Ordering::Relaxed);
        self.total_bytes.store(
            stat.f_blocks.saturating_mul(stat.f_frsize),
            Ordering::Relaxed,
        );
        let was_low = self.low.load(Ordering::Relaxed);
        let low = if was_low {
            free < self.min_free_bytes.saturating_add(self.min_free_bytes / 16)
        } else {
            free < self.min_free_bytes
        };
        if low != was_low {
            self.low.store(low, Ordering::Relaxed);
            if low {
                tracing::error!(
                    dir = %self.dir.display(),
                    free_bytes = free,
                    storage_min_free_bytes = self.min_free_bytes,
                    "disk space is low: produce is refused (KAFKA_STORAGE_ERROR) until space is freed; uploaded segments of tiered topics are deleted locally"
                );
            } else {
                tracing::warn!(
                    dir = %self.dir.display(),
                    free_bytes = free,
                    refused_produces = self.refused.load(Ordering::Relaxed),
                    "disk space is back above storage_min_free_bytes: produce resumes"
                );
            }
        }
        if !low && free >= self.min_free_bytes.saturating_add(2 * RESERVE_BYTES) {
            self.make_reserve();
        }
        Ok(low)
    }

    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    pub fn free_bytes(&self) -> u64 {
        self.free_bytes.load(Ordering::Relaxed)
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }

    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_bytes
    }

    /// The answer to a produce while space is low; counts it.
    pub fn refusal(&self) -> String {
        self.refused.fetch_add(1, Ordering::Relaxed);
        format!(
            "the data dir has {} bytes free, below storage_min_free_bytes ({}): produce is refused until space is freed",
            self.free_bytes(),
            self.min_free_bytes
        )
    }

    /// Runs `write`; if it fails for lack of space, gives up the reserve and runs it once more.
    pub fn with_reserve<T, E>(
        &self,
        mut write: impl FnMut() -> Result<T, E>,
        is_no_space: impl Fn(&E) -> bool,
    ) -> Result<T, E> {
        match write() {
            Err(e) if is_no_space(&e) && self.release_reserve() => write(),
            other => other,
        }
    }

    /// Deletes the reserve; false if there was none.
    fn release_reserve(&self) -> bool {
        release_reserve_in(&self.dir)
    }

    /// A function that gives up the reserve, for writers outside this crate (the metadata log).
    pub fn reserve_releaser(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let dir = self.dir.clone();
        move || release_reserve_in(&dir)
    }

    fn make_reserve(&self) {
        let path = self.dir.join(RESERVE_FILE);
        if path.metadata().is_ok_and(|m| m.len() == RESERVE_BYTES) {
            return;
        }
        // Written, not just sized: a sparse file reserves nothing.
        let made = (|| {
            let mut f = std::fs::File::create(&path)?;
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..RESERVE_BYTES / zeros.len() as u64 {
                f.write_all(&zeros)?;
            }
            f.sync_all()
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            tracing::warn!(path = %path.display(), error = %e, "cannot make the reserve file");
        }
    }
}

/// Deletes the reserve in `dir`; false if there was none.
fn release_reserve_in(dir: &Path) -> bool {
    let path = dir.join(RESERVE_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), "the disk is full: released the reserve file to record a change");
            true
        }
        Err(_) => false,
    }
}

pub use shale_log::is_no_space;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_made_and_released_for_a_full_disk() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::open(dir.path(), 0).unwrap();
        let reserve = dir.path().join(RESERVE_FILE);
        assert_eq!(reserve.metadata().unwrap().len(), RESERVE_BYTES);
        assert!(!space.is_low());
        let mut attempts = 0;
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        let out = space.with_reserve(
            || {
                attempts += 1;
                if attempts == 1 {
                    Err(full())
                } else {
                    Ok(attempts)
                }
            },
            is_no_space,
        );
        assert_eq!(out.unwrap(), 2);
        assert!(!reserve.exists(), "the reserve was given up");
        // Without a reserve a second failure is final.
        let out: Result<(), _> = space.with_reserve(|| Err(full()), is_no_space);
        assert!(out.is_err());
        space.check().unwrap();
        assert!(reserve.exists(), "the poll remakes the reserve");
    }

    #[test]
    fn low_below_the_minimum() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::open(dir.path(), u64::MAX / 4).unwrap();
        assert!(space.is_low());
        assert!(!dir.path().join(RESERVE_FILE).exists());
        assert!(space.refusal().contains("storage_min_free_bytes"));
        assert_eq!(space.refused.load(Ordering::Relaxed), 1);
    }
}
