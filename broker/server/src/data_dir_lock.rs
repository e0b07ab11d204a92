//! One process per data dir.
//!
//! [`DataDirLock::acquire`] takes an exclusive, non-blocking `flock` on `<data_dir>/.lock` and
//! writes the holder's PID into it. The lock lives as long as the returned value; the kernel drops
//! it when the process exits however it exits (SIGKILL included), so a crash never leaves a stale
//! lock behind — the file may stay, the lock does not. A second broker on the same directory
//! fails at once with the directory and the PID that holds it, before it reads or writes anything
//! else there (or touches the object store).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data dir.
pub const LOCK_FILE: &str = ".lock";

/// Why the data dir could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data dir {dir} is in use by another shale process{}: stop it, or give this one another `data_dir`",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    InUse { dir: PathBuf, holder: Option<u32> },
    #[error("cannot lock data dir {dir} ({action}): {source}")]
    Io {
        dir: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

/// Held for the life of the broker; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates `dir` if needed and locks it for this process.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let io = |action| {
            move |source| LockError::Io {
                dir: dir.to_path_buf(),
                action,
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io("create the directory"))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open the lock file"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // Best effort: the holder may be between truncating and writing its PID.
                let _ = file.read_to_string(&mut text);
                return Err(LockError::InUse {
                    dir: dir.to_path_buf(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("flock the lock file")(e)),
        }
        // The PID at a fixed width, written over the old one before the length is set: a
        // restart on a full disk reuses the file's block instead of needing a new one.
        let pid = format!("{:<10}\n", std::process::id());
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .and_then(|()| file.set_len(pid.len() as u64))
            .map_err(io("write the lock file"))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let pid = std::process::id();
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap().trim(),
            pid.to_string()
        );
        // flock locks belong to the open file, so a second open in this process conflicts too.
        match DataDirLock::acquire(dir.path()) {
            Err(LockError::InUse { holder, .. }) => assert_eq!(holder, Some(pid)),
            other => panic!("expected InUse, got {other:?}"),
        }
        let message = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains(&format!("pid {pid}")), "{message}");
        drop(first);
        DataDirLock::acquire(dir.path()).expect("the lock is free once its holder is gone");
    }
}
