//! File names inside a partition directory and the atomic-replace helper every small checkpoint
//! file uses.
//!
//! Names follow Kafka's `LogFileUtils`: twenty zero-padded digits so that `ls` sorts numerically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use shale_formats::ids::Offset;

pub(super) const LOG_SUFFIX: &str = "log";
pub(super) const INDEX_SUFFIX: &str = "index";
pub(super) const TIME_INDEX_SUFFIX: &str = "timeindex";
pub(super) const SNAPSHOT_SUFFIX: &str = "snapshot";
/// Suffix of a file being written; a crash leaves it behind and `Log::open` deletes it.
pub(super) const TEMP_SUFFIX: &str = "tmp";
/// Suffixes Kafka uses for files on their way out or half-swapped; never ours to keep.
pub(super) const STRAY_SUFFIXES: [&str; 4] = [TEMP_SUFFIX, "deleted", "cleaned", "swap"];

pub(super) const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
pub(super) const LOG_START_OFFSET_FILE: &str = "log-start-offset";
/// Written by `Log::close` after everything is flushed; its presence on open means the active
/// segment and its indexes can be trusted without a full scan.
pub(super) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// `{offset:020}.{suffix}` inside `dir`.
pub(super) fn offset_file(dir: &Path, offset: Offset, suffix: &str) -> PathBuf {
    dir.join(format!("{offset:020}.{suffix}"))
}

/// The offset encoded in a file name of the form `{offset:020}.{suffix}`, if `name` has that form.
pub(super) fn parse_offset_file(name: &str, suffix: &str) -> Option<Offset> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Replaces `dir/name` with `contents` so that a reader sees either the old or the new file,
/// never a mix: write a temp file, fsync it, rename it over the target, fsync the directory.
pub(super) fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let target = dir.join(name);
    let temp = dir.join(format!("{name}.{TEMP_SUFFIX}"));
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&temp, &target)?;
    sync_dir(dir)
}

/// Makes creations, renames and deletions inside `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file, treating "already gone" as success: deletions are retried after crashes.
pub(super) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// File names round-trip through the twenty-digit form and reject look-alikes.
    #[test]
    fn offset_file_names_round_trip() {
        let path = offset_file(Path::new("/d"), Offset::new(42), LOG_SUFFIX);
        assert_eq!(path, Path::new("/d/00000000000000000042.log"));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_offset_file(name, LOG_SUFFIX), Some(Offset::new(42)));
        assert_eq!(parse_offset_file(name, INDEX_SUFFIX), None);
        assert_eq!(parse_offset_file("42.log", LOG_SUFFIX), None);
        assert_eq!(
            parse_offset_file("0000000000000000004x.log", LOG_SUFFIX),
            None
        );
        assert_eq!(
            parse_offset_file("00000000000000000042.timeindex", INDEX_SUFFIX),
            None
        );
    }
}
