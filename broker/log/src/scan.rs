//! Sequential and windowed reading of a segment file: the buffered window every read uses, and
//! the batch scan behind recovery, index rebuilds and producer state replay.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use shale_formats::batch::{
    validate_batch, RecordBatchHeader, ValidateOptions, RECORD_BATCH_OVERHEAD,
};
use shale_formats::ids::Offset;

use super::error::io_error;
use super::LogError;

/// Read size for sequential scans (recovery, index rebuilds, timestamp searches).
pub(super) const SCAN_CHUNK_BYTES: usize = 1 << 20;
const HEADER_BYTES: u64 = RECORD_BATCH_OVERHEAD as u64;

/// A buffered view of `[0, end)` of a segment file, refilled by positional reads.
pub(super) struct FileWindow<'a> {
    file: &'a File,
    path: &'a Path,
    end: u64,
    chunk: usize,
    buf: BytesMut,
    /// File position of `buf[0]`.
    start: u64,
}

impl<'a> FileWindow<'a> {
    /// A window over `[0, end)` of `file` that reads at least `chunk` bytes at a time.
    pub(super) fn new(file: &'a File, path: &'a Path, end: u64, chunk: usize) -> Self {
        Self {
            file,
            path,
            end,
            chunk: chunk.max(RECORD_BATCH_OVERHEAD),
            buf: BytesMut::new(),
            start: 0,
        }
    }

    /// `len` bytes at `position`, which must lie below `end`.
    pub(super) fn bytes(&mut self, position: u64, len: u64) -> Result<&[u8], LogError> {
        assert!(
            position + len <= self.end,
            "read of {len} bytes at {position} past the segment end {}",
            self.end
        );
        let buffered = self.start..self.start + self.buf.len() as u64;
        if position < buffered.start || position + len > buffered.end {
            let n = (self.chunk as u64).max(len).min(self.end - position) as usize;
            self.buf = BytesMut::zeroed(n);
            self.file
                .read_exact_at(&mut self.buf, position)
                .map_err(io_error(self.path, "read a segment"))?;
            self.start = position;
        }
        let from = (position - self.start) as usize;
        Ok(&self.buf[from..from + len as usize])
    }

    /// The batch header at `position`, or `None` when no whole header lies before `end`.
    pub(super) fn header(&mut self, position: u64) -> Result<Option<RecordBatchHeader>, LogError> {
        if position + HEADER_BYTES > self.end {
            return Ok(None);
        }
        let path = self.path;
        let bytes = self.bytes(position, HEADER_BYTES)?;
        RecordBatchHeader::parse(bytes)
            .map(Some)
            .map_err(|e| LogError::CorruptRecord {
                dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                reason: format!(
                    "the batch at byte {position} of {} is unreadable: {e}",
                    path.display()
                ),
            })
    }

    /// `[from, to)` as `Bytes`, without copying when the window already holds it.
    pub(super) fn take(mut self, from: u64, to: u64) -> Result<Bytes, LogError> {
        let buffered = self.start..self.start + self.buf.len() as u64;
        if from >= buffered.start && to <= buffered.end {
            let offset = (from - self.start) as usize;
            let mut bytes = self.buf.split_off(offset);
            bytes.truncate((to - from) as usize);
            return Ok(bytes.freeze());
        }
        let mut out = BytesMut::zeroed((to - from) as usize);
        self.file
            .read_exact_at(&mut out, from)
            .map_err(io_error(self.path, "read a segment"))?;
        Ok(out.freeze())
    }
}

/// Where a scan stopped.
pub(super) struct ScanOutcome {
    /// Bytes of whole, accepted batches from the scan start.
    pub(super) valid_bytes: u64,
    /// Why the scan stopped before `end`, if it did.
    pub(super) invalid: Option<String>,
}

/// Walks the batches in `[start, end)`, checking framing (and CRC and counts with `validate`),
/// and hands each to `visit`, which may refuse it. Stops at the first bad or incomplete batch.
pub(super) fn scan_batches(
    file: &File,
    path: &Path,
    start: u64,
    end: u64,
    validate: bool,
    mut visit: impl FnMut(u64, &RecordBatchHeader) -> Result<(), String>,
) -> Result<ScanOutcome, LogError> {
    let mut window = FileWindow::new(file, path, end, SCAN_CHUNK_BYTES);
    let mut position = start;
    let stop = |position, reason: String| {
        Ok(ScanOutcome {
            valid_bytes: position,
            invalid: Some(reason),
        })
    };
    while position < end {
        if end - position < HEADER_BYTES {
            return stop(
                position,
                format!("only {} bytes of a batch header remain", end - position),
            );
        }
        let header = match RecordBatchHeader::parse(window.bytes(position, HEADER_BYTES)?) {
            Ok(header) => header,
            Err(e) => return stop(position, e.to_string()),
        };
        let size = header.size_bytes() as u64;
        if position + size > end {
            return stop(
                position,
                format!(
                    "the batch needs {size} bytes but only {} remain",
                    end - position
                ),
            );
        }
        if validate {
            if let Err(e) =
                validate_batch(window.bytes(position, size)?, &ValidateOptions::stored())
            {
                return stop(position, e.to_string());
            }
        }
        if let Err(reason) = visit(position, &header) {
            return stop(position, reason);
        }
        position += size;
    }
    Ok(ScanOutcome {
        valid_bytes: position,
        invalid: None,
    })
}

/// Offsets a stored batch must satisfy: inside the segment's relative range and after the
/// previous batch.
pub(super) fn check_batch_offsets(
    base: Offset,
    next_offset: Offset,
    header: &RecordBatchHeader,
) -> Result<(), String> {
    if header.base_offset < base.max(next_offset) {
        return Err(format!(
            "the batch starts at offset {}, below the expected {}",
            header.base_offset,
            base.max(next_offset)
        ));
    }
    if header.last_offset_delta < 0 || header.last_offset() - base > i64::from(i32::MAX) {
        return Err(format!(
            "the batch's last offset {} does not fit a segment based at {base}",
            header.last_offset()
        ));
    }
    Ok(())
}
