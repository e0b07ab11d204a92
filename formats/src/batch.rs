//! Record batch v2 (magic 2) headers: parsing, validation and in-place rewriting.
//!
//! A batch on the wire and on disk is a 61-byte header followed by its (possibly compressed)
//! records. The broker's produce path treats the records as opaque: it validates the header and
//! the CRC-32C, then assigns offsets by rewriting header fields (see [`assign_offsets`]). Record
//! decoding lives in [`crate::record`].
//!
//! ```text
//! @0  baseOffset            i64   not covered by the CRC
//! @8  batchLength           i32   bytes after this field
//! @12 partitionLeaderEpoch  i32   not covered by the CRC
//! @16 magic                 i8    2
//! @17 crc                   u32   CRC-32C of bytes @21..end
//! @21 attributes            i16
//! @23 lastOffsetDelta       i32
//! @27 baseTimestamp         i64
//! @35 maxTimestamp          i64
//! @43 producerId            i64
//! @51 producerEpoch         i16
//! @53 baseSequence          i32
//! @57 recordsCount          i32
//! @61 records
//! ```
//!
//! [`BatchError`] is the error type of every record-data module of this crate (`batch`,
//! `compression`, `record`); see its documentation for how each variant maps to a Kafka error.

use std::ops::{Range, RangeInclusive};

use crate::compression::Compression;
use crate::ids::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

pub const BASE_OFFSET_OFFSET: usize = 0;
pub const BATCH_LENGTH_OFFSET: usize = 8;
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub const MAGIC_OFFSET: usize = 16;
pub const CRC_OFFSET: usize = 17;
pub const ATTRIBUTES_OFFSET: usize = 21;
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub const BASE_TIMESTAMP_OFFSET: usize = 27;
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
pub const PRODUCER_ID_OFFSET: usize = 43;
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
pub const BASE_SEQUENCE_OFFSET: usize = 53;
pub const RECORDS_COUNT_OFFSET: usize = 57;
pub const RECORDS_OFFSET: usize = 61;

/// Size of the v2 batch header, i.e. of a batch with no records (Kafka's `RECORD_BATCH_OVERHEAD`).
pub const RECORD_BATCH_OVERHEAD: usize = 61;
/// baseOffset + batchLength: the bytes not counted by `batchLength` (Kafka's `LOG_OVERHEAD`).
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal `batchLength`: the header after the length field.
pub const BATCH_LENGTH_MIN: i32 = (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i32;
/// The only record batch format Shale reads or writes.
pub const MAGIC_V2: i8 = 2;

pub const NO_PRODUCER_ID: ProducerId = ProducerId::NONE;
pub const NO_PRODUCER_EPOCH: ProducerEpoch = ProducerEpoch::NONE;
pub const NO_SEQUENCE: i32 = -1;
pub const NO_PARTITION_LEADER_EPOCH: LeaderEpoch = LeaderEpoch::UNDEFINED;
pub const NO_TIMESTAMP: i64 = -1;

pub const COMPRESSION_CODEC_MASK: i16 = 0x07;
pub const TIMESTAMP_TYPE_MASK: i16 = 0x08;
pub const TRANSACTIONAL_FLAG_MASK: i16 = 0x10;
pub const CONTROL_FLAG_MASK: i16 = 0x20;
pub const DELETE_HORIZON_FLAG_MASK: i16 = 0x40;

/// The smallest possible encoded record (length, attributes, timestamp delta, offset delta, key
/// length, value length, header count: one byte each). Used to reject record counts that cannot
/// fit and to bound pre-allocation.
pub const RECORD_SIZE_MIN: usize = 7;

/// Errors from reading or building record data.
///
/// Suggested Kafka error codes, chosen at the handler edge (this crate knows no codes):
/// - `CORRUPT_MESSAGE` (2): [`Truncated`](Self::Truncated), [`InvalidLength`](Self::InvalidLength),
///   [`TrailingBytes`](Self::TrailingBytes), [`CrcMismatch`](Self::CrcMismatch),
///   [`UnknownCompression`](Self::UnknownCompression), [`Decompression`](Self::Decompression),
///   [`DecompressedTooLarge`](Self::DecompressedTooLarge).
/// - `UNSUPPORTED_VERSION`/`CORRUPT_MESSAGE`: [`UnsupportedMagic`](Self::UnsupportedMagic)
///   (Kafka answers a v3+ produce carrying magic 0/1 with `INVALID_RECORD`, magic > 2 with
///   `CORRUPT_MESSAGE`).
/// - `INVALID_RECORD` (87): [`InvalidRecord`](Self::InvalidRecord).
/// - `MESSAGE_TOO_LARGE` (10): [`BatchTooLarge`](Self::BatchTooLarge).
/// - `INVALID_TIMESTAMP` (32): [`InvalidTimestamp`](Self::InvalidTimestamp).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error(
        "the record batch at byte {position} is truncated: it needs {needed} bytes but only \
         {available} remain"
    )]
    Truncated {
        position: usize,
        needed: usize,
        available: usize,
    },
    #[error(
        "the record batch at byte {position} declares a length of {length} bytes, below the \
         minimum of {BATCH_LENGTH_MIN}"
    )]
    InvalidLength { position: usize, length: i32 },
    #[error(
        "expected exactly one record batch of {batch_size} bytes but the buffer holds {buffer_size} \
         bytes"
    )]
    TrailingBytes {
        batch_size: usize,
        buffer_size: usize,
    },
    #[error(
        "the record batch is corrupt: its stored CRC-32C is {stored:#010x} but its bytes hash to \
         {computed:#010x}"
    )]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("the record batch has magic {0}, but only magic 2 is supported")]
    UnsupportedMagic(i8),
    #[error("the record batch is invalid: {0}")]
    InvalidRecord(String),
    #[error("the record batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("the record batch's maximum timestamp {timestamp} lies outside the accepted window {lower}..={upper}")]
    InvalidTimestamp {
        timestamp: i64,
        lower: i64,
        upper: i64,
    },
    #[error("the record batch names compression codec {0}, which does not exist")]
    UnknownCompression(u8),
    #[error("the {codec} data is malformed: {reason}")]
    Decompression { codec: Compression, reason: String },
    #[error("the decompressed data exceeds the limit of {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("compressing with {codec} failed: {reason}")]
    Compression { codec: Compression, reason: String },
}

impl BatchError {
    /// True for the errors Kafka reports as `CORRUPT_MESSAGE`: the bytes are damaged or
    /// structurally impossible, as opposed to well-formed but not acceptable.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Self::Truncated { .. }
                | Self::InvalidLength { .. }
                | Self::TrailingBytes { .. }
                | Self::CrcMismatch { .. }
                | Self::UnknownCompression(_)
                | Self::Decompression { .. }
                | Self::DecompressedTooLarge { .. }
        )
    }
}

/// Bit 3 of the attributes: where the timestamps came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Timestamps were set by the producer.
    CreateTime,
    /// The broker stamped the batch on append; `max_timestamp` holds the append time and
    /// readers use it for every record in the batch.
    LogAppendTime,
}

/// The 61-byte header of a v2 record batch, field for field.
///
/// Fields keep their wire types: this is a mirror of bytes, and the log wraps them in its own
/// offset/epoch newtypes where they cross module boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordBatchHeader {
    pub base_offset: Offset,
    pub batch_length: i32,
    pub partition_leader_epoch: LeaderEpoch,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn read_array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    // Callers only pass offsets inside a 61-byte header they have already length-checked.
    out.copy_from_slice(&buf[at..at + N]);
    out
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(read_array(buf, at))
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(read_array(buf, at))
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(read_array(buf, at))
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(read_array(buf, at))
}

impl RecordBatchHeader {
    /// Reads the header at the start of `buf`.
    ///
    /// Requires at least [`RECORD_BATCH_OVERHEAD`] bytes, magic 2 (the magic byte sits at the same
    /// place in every format version, the other fields don't) and `batchLength ≥ 49`. Does
    /// not check the CRC or that `buf` holds the whole batch: see [`validate_batch`].
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        let header = buf
            .get(..RECORD_BATCH_OVERHEAD)
            .ok_or(BatchError::Truncated {
                position: 0,
                needed: RECORD_BATCH_OVERHEAD,
                available: buf.len(),
            })?;
        let magic = i8::from_be_bytes(read_array(header, MAGIC_OFFSET));
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let batch_length = read_i32(header, BATCH_LENGTH_OFFSET);
        if batch_length < BATCH_LENGTH_MIN {
            return Err(BatchError::InvalidLength {
                position: 0,
                length: batch_length,
            });
        }
        Ok(Self {
            base_offset: Offset::new(read_i64(header, BASE_OFFSET_OFFSET)),
            batch_length,
            partition_leader_epoch: LeaderEpoch::new(read_i32(
                header,
                PARTITION_LEADER_EPOCH_OFFSET,
            )),
            magic,
            crc: read_u32(header, CRC_OFFSET),
            attributes: read_i16(header, ATTRIBUTES_OFFSET),
            last_offset_delta: read_i32(header, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: read_i64(header, BASE_TIMESTAMP_OFFSET),
            max_timestamp: read_i64(header, MAX_TIMESTAMP_OFFSET),
            producer_id: ProducerId::new(read_i64(header, PRODUCER_ID_OFFSET)),
            producer_epoch: ProducerEpoch::new(read_i16(header, PRODUCER_EPOCH_OFFSET)),
            base_sequence: read_i32(header, BASE_SEQUENCE_OFFSET),
            records_count: read_i32(header, RECORDS_COUNT_OFFSET),
        })
    }

    /// The header's 61 bytes, every field written as stored in `self` (the CRC included, so a
    /// caller that changed CRC-covered fields must recompute it over the whole batch).
    pub fn encode(&self) -> [u8; RECORD_BATCH_OVERHEAD] {
        let mut out = [0u8; RECORD_BATCH_OVERHEAD];
        out[BASE_OFFSET_OFFSET..BATCH_LENGTH_OFFSET]
            .copy_from_slice(&self.base_offset.get().to_be_bytes());
        out[BATCH_LENGTH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET]
            .copy_from_slice(&self.batch_length.to_be_bytes());
        out[PARTITION_LEADER_EPOCH_OFFSET..MAGIC_OFFSET]
            .copy_from_slice(&self.partition_leader_epoch.get().to_be_bytes());
        out[MAGIC_OFFSET..CRC_OFFSET].copy_from_slice(&self.magic.to_be_bytes());
        out[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&self.crc.to_be_bytes());
        out[ATTRIBUTES_OFFSET..LAST_OFFSET_DELTA_OFFSET]
            .copy_from_slice(&self.attributes.to_be_bytes());
        out[LAST_OFFSET_DELTA_OFFSET..BASE_TIMESTAMP_OFFSET]
            .copy_from_slice(&self.last_offset_delta.to_be_bytes());
        out[BASE_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        out[MAX_TIMESTAMP_OFFSET..PRODUCER_ID_OFFSET]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[PRODUCER_ID_OFFSET..PRODUCER_EPOCH_OFFSET]
            .copy_from_slice(&self.producer_id.get().to_be_bytes());
        out[PRODUCER_EPOCH_OFFSET..BASE_SEQUENCE_OFFSET]
            .copy_from_slice(&self.producer_epoch.get().to_be_bytes());
        out[BASE_SEQUENCE_OFFSET..RECORDS_COUNT_OFFSET]
            .copy_from_slice(&self.base_sequence.to_be_bytes());
        out[RECORDS_COUNT_OFFSET..RECORDS_OFFSET]
            .copy_from_slice(&self.records_count.to_be_bytes());
        out
    }

    /// The codec named by attribute bits 0-2.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_MASK != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG_MASK != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG_MASK != 0
    }

    /// Bit 6: `base_timestamp` holds the delete horizon set by compaction.
    pub fn has_delete_horizon_ms(&self) -> bool {
        self.attributes & DELETE_HORIZON_FLAG_MASK != 0
    }

    /// `base_offset + last_offset_delta`, saturating on nonsense headers rather than overflowing.
    pub fn last_offset(&self) -> Offset {
        Offset::new(
            self.base_offset
                .get()
                .saturating_add(i64::from(self.last_offset_delta)),
        )
    }

    /// The offset after this batch: `last_offset() + 1`.
    pub fn next_offset(&self) -> Offset {
        Offset::new(self.last_offset().get().saturating_add(1))
    }

    /// The whole batch in bytes: `LOG_OVERHEAD + batch_length` (0 for a negative length, which
    /// [`parse`](Self::parse) never returns).
    pub fn size_bytes(&self) -> usize {
        usize::try_from(self.batch_length).map_or(0, |length| LOG_OVERHEAD + length)
    }

    /// The sequence number of the last record, wrapping past `i32::MAX` to 0 as Kafka's
    /// `DefaultRecordBatch.incrementSequence` does; `NO_SEQUENCE` when the batch has none.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// The producer id is set (idempotent or transactional producer).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id > NO_PRODUCER_ID
    }
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0 (Kafka `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(increment);
    if sum > i64::from(i32::MAX) {
        // Kafka: increment - (Integer.MAX_VALUE - sequence) - 1.
        (sum - i64::from(i32::MAX) - 1) as i32
    } else {
        // Only a nonsense negative increment can leave the i32 range here; wrap, never panic.
        sum as i32
    }
}

/// What [`validate_batch`] checks beyond the framing and the CRC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateOptions {
    /// Largest accepted batch, header included (Kafka's `max.message.bytes`).
    pub batch_bytes_max: usize,
    /// Apply the checks Kafka applies to batches from producing clients only
    /// (`LogValidator.validateBatch` with `AppendOrigin.CLIENT`): at least one record,
    /// `last_offset_delta == records_count - 1`, no control batches, a sequence number whenever
    /// there is a producer id, a producer id whenever the batch is transactional. Batches from the
    /// log itself may legally be empty (compaction keeps empty batches for producer state) or have
    /// gaps.
    pub client_produce: bool,
    /// For `CreateTime` batches, the accepted window for `max_timestamp` in ms (Kafka's
    /// `message.timestamp.before.max.ms` / `after.max.ms` around now). Kafka checks every record;
    /// without decompressing we can check only the batch maximum.
    pub create_time_window_ms: Option<RangeInclusive<i64>>,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        Self {
            batch_bytes_max: i32::MAX as usize,
            client_produce: false,
            create_time_window_ms: None,
        }
    }
}

impl ValidateOptions {
    /// Checks for a batch produced by a client, bounded by `batch_bytes_max`.
    pub fn client_produce(batch_bytes_max: usize) -> Self {
        Self {
            batch_bytes_max,
            client_produce: true,
            create_time_window_ms: None,
        }
    }

    /// Checks for a batch read back from a segment (local or remote).
    pub fn stored() -> Self {
        Self::default()
    }
}

/// The size of the batch starting at `rest` (which starts at `position` of some buffer), or
/// `None` if `rest` is too short to hold the length field. The magic is checked first when
/// present, so that an old-format batch is reported as such rather than as a bad length.
fn batch_size_at(rest: &[u8], position: usize) -> Result<Option<usize>, BatchError> {
    if rest.len() < LOG_OVERHEAD {
        return Ok(None);
    }
    if let Some(&magic) = rest.get(MAGIC_OFFSET) {
        if magic as i8 != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic as i8));
        }
    }
    let length = read_i32(rest, BATCH_LENGTH_OFFSET);
    if length < BATCH_LENGTH_MIN {
        return Err(BatchError::InvalidLength { position, length });
    }
    Ok(Some(LOG_OVERHEAD + length as usize))
}

/// Reads the header of exactly one batch filling `buf`: length, size and magic, no CRC.
fn frame_one(buf: &[u8]) -> Result<RecordBatchHeader, BatchError> {
    let size = batch_size_at(buf, 0)?.ok_or(BatchError::Truncated {
        position: 0,
        needed: RECORD_BATCH_OVERHEAD,
        available: buf.len(),
    })?;
    if buf.len() < size {
        return Err(BatchError::Truncated {
            position: 0,
            needed: size,
            available: buf.len(),
        });
    }
    if buf.len() > size {
        return Err(BatchError::TrailingBytes {
            batch_size: size,
            buffer_size: buf.len(),
        });
    }
    RecordBatchHeader::parse(buf)
}

/// The CRC-32C Kafka stores at [`CRC_OFFSET`]: over the bytes from the attributes to the end.
/// `batch` must be exactly one batch (at least [`RECORD_BATCH_OVERHEAD`] bytes).
pub fn compute_crc(batch: &[u8]) -> Result<u32, BatchError> {
    if batch.len() < RECORD_BATCH_OVERHEAD {
        return Err(BatchError::Truncated {
            position: 0,
            needed: RECORD_BATCH_OVERHEAD,
            available: batch.len(),
        });
    }
    Ok(crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]))
}

/// Validates `buf` as exactly one record batch and returns its header.
///
/// Checks, in Kafka's order: framing (`batchLength ≥ 49` and equal to the bytes present), size
/// limit, magic 2, CRC-32C, then counts (`records_count ≥ 0`, `last_offset_delta ≥ 0`, no more
/// records than offsets, room for that many records when uncompressed), then the
/// [`ValidateOptions`] checks. Records are not decompressed.
pub fn validate_batch(
    buf: &[u8],
    options: &ValidateOptions,
) -> Result<RecordBatchHeader, BatchError> {
    let header = frame_one(buf)?;
    let size = header.size_bytes();
    if size > options.batch_bytes_max {
        return Err(BatchError::BatchTooLarge {
            size,
            limit: options.batch_bytes_max,
        });
    }
    let computed = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    let compression = header.compression()?;
    check_counts(&header, compression)?;
    if options.client_produce {
        check_client_batch(&header)?;
    }
    if let Some(window) = &options.create_time_window_ms {
        let timestamp = header.max_timestamp;
        if header.timestamp_type() == TimestampType::CreateTime
            && timestamp != NO_TIMESTAMP
            && !window.contains(&timestamp)
        {
            return Err(BatchError::InvalidTimestamp {
                timestamp,
                lower: *window.start(),
                upper: *window.end(),
            });
        }
    }
    Ok(header)
}

fn check_counts(header: &RecordBatchHeader, compression: Compression) -> Result<(), BatchError> {
    if header.records_count < 0 {
        return Err(BatchError::InvalidRecord(format!(
            "the record count is negative ({})",
            header.records_count
        )));
    }
    if header.last_offset_delta < 0 {
        return Err(BatchError::InvalidRecord(format!(
            "the last offset delta is negative ({})",
            header.last_offset_delta
        )));
    }
    if i64::from(header.records_count) > i64::from(header.last_offset_delta) + 1 {
        return Err(BatchError::InvalidRecord(format!(
            "{} records cannot fit in the offset range of {} offsets",
            header.records_count,
            i64::from(header.last_offset_delta) + 1
        )));
    }
    let records_bytes = header.size_bytes() - RECORD_BATCH_OVERHEAD;
    if compression == Compression::None
        && (header.records_count as usize).saturating_mul(RECORD_SIZE_MIN) > records_bytes
    {
        return Err(BatchError::InvalidRecord(format!(
            "{} records cannot fit in {records_bytes} bytes",
            header.records_count
        )));
    }
    Ok(())
}

fn check_client_batch(header: &RecordBatchHeader) -> Result<(), BatchError> {
    if header.records_count <= 0 {
        return Err(BatchError::InvalidRecord(format!(
            "a produced batch must hold at least one record, this one reports {}",
            header.records_count
        )));
    }
    if header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::InvalidRecord(format!(
            "the batch reports {} records but a last offset delta of {}",
            header.records_count, header.last_offset_delta
        )));
    }
    if header.is_control() {
        return Err(BatchError::InvalidRecord(
            "clients are not allowed to write control batches".to_owned(),
        ));
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(BatchError::InvalidRecord(format!(
            "the batch has producer id {} but an invalid base sequence {}",
            header.producer_id, header.base_sequence
        )));
    }
    if header.is_transactional() && !header.has_producer_id() {
        return Err(BatchError::InvalidRecord(
            "a transactional batch must carry a producer id".to_owned(),
        ));
    }
    Ok(())
}

/// Assigns offsets to one batch in place, as the leader does on append.
///
/// Writes `base_offset` (not covered by the CRC) and sets the timestamp type the way Kafka's
/// `LogValidator` does on its in-place path with `DefaultRecordBatch.setMaxTimestamp`:
/// - `Some(now)` (topic with `message.timestamp.type=LogAppendTime`): sets the timestamp-type bit
///   and `max_timestamp = now`, leaving `base_timestamp` and the records untouched (readers of a
///   `LogAppendTime` batch use `max_timestamp` for every record);
/// - `None` (`CreateTime`): clears the bit if a client set it. Kafka would also recompute
///   `max_timestamp` from the records; without decompressing we keep the producer's value.
///
/// When the CRC-covered part changes, the CRC is rewritten. The stored CRC is checked first, so a
/// damaged batch is never re-sealed as valid; that check costs no extra pass over the records
/// (their CRC is computed once and combined with the old and the new header part).
///
/// `batch` must be exactly one batch with magic 2.
pub fn assign_offsets(
    batch: &mut [u8],
    base_offset: Offset,
    log_append_time_ms: Option<i64>,
) -> Result<(), BatchError> {
    let header = frame_one(batch)?;
    batch[BASE_OFFSET_OFFSET..BATCH_LENGTH_OFFSET]
        .copy_from_slice(&base_offset.get().to_be_bytes());
    let (attributes, max_timestamp) = match log_append_time_ms {
        Some(append_time) => (header.attributes | TIMESTAMP_TYPE_MASK, append_time),
        None => (
            header.attributes & !TIMESTAMP_TYPE_MASK,
            header.max_timestamp,
        ),
    };
    if attributes == header.attributes && max_timestamp == header.max_timestamp {
        return Ok(());
    }
    // The CRC covers [attributes .. producer_id) ++ [producer_id .. end); only the first part
    // changes, so hash the tail once and combine it with the old and the new head.
    let tail = &batch[PRODUCER_ID_OFFSET..];
    let tail_crc = crc32c::crc32c(tail);
    let old_head_crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..PRODUCER_ID_OFFSET]);
    let computed = crc32c::crc32c_combine(old_head_crc, tail_crc, tail.len());
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    batch[ATTRIBUTES_OFFSET..LAST_OFFSET_DELTA_OFFSET].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..PRODUCER_ID_OFFSET].copy_from_slice(&max_timestamp.to_be_bytes());
    let new_head_crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..PRODUCER_ID_OFFSET]);
    let crc = crc32c::crc32c_combine(new_head_crc, tail_crc, batch.len() - PRODUCER_ID_OFFSET);
    batch[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Writes the partition leader epoch (not covered by the CRC). `batch` must hold at least a header.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: LeaderEpoch) -> Result<(), BatchError> {
    if batch.len() < RECORD_BATCH_OVERHEAD {
        return Err(BatchError::Truncated {
            position: 0,
            needed: RECORD_BATCH_OVERHEAD,
            available: batch.len(),
        });
    }
    batch[PARTITION_LEADER_EPOCH_OFFSET..MAGIC_OFFSET].copy_from_slice(&epoch.get().to_be_bytes());
    Ok(())
}

/// Walks a concatenation of batches (a produce payload, a fetch response, a segment region).
pub fn batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        position: 0,
        finished: false,
        allow_incomplete_tail: false,
        incomplete_tail: None,
    }
}

/// Iterator over the batches in a buffer, by their length fields; see [`batches`].
///
/// Yields each batch's header and its byte range in the buffer. It checks framing, `batchLength`
/// and magic only: call [`validate_batch`] on a range to check its CRC and counts. After the first
/// error it yields nothing more, and [`position`](Self::position) is where the failing batch
/// starts (segment recovery truncates there).
///
/// An incomplete trailing batch (the buffer ends inside it) is an
/// `Err(BatchError::Truncated { .. })` item by default. After
/// [`allow_incomplete_tail`](Self::allow_incomplete_tail) it ends the iteration quietly instead
/// and is reported by [`incomplete_tail`](Self::incomplete_tail): a fetch that reads up to a byte
/// limit expects one.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
    finished: bool,
    allow_incomplete_tail: bool,
    incomplete_tail: Option<Range<usize>>,
}

impl BatchIter<'_> {
    /// End quietly at an incomplete trailing batch rather than yielding an error.
    pub fn allow_incomplete_tail(mut self) -> Self {
        self.allow_incomplete_tail = true;
        self
    }

    /// Where the next batch starts; after an error, where the failing batch starts.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The bytes of an incomplete trailing batch, once the iteration has reached it.
    pub fn incomplete_tail(&self) -> Option<Range<usize>> {
        self.incomplete_tail.clone()
    }

    fn fail(
        &mut self,
        error: BatchError,
    ) -> Option<Result<(RecordBatchHeader, Range<usize>), BatchError>> {
        self.finished = true;
        Some(Err(error))
    }

    fn incomplete(
        &mut self,
        needed: usize,
        available: usize,
    ) -> Option<Result<(RecordBatchHeader, Range<usize>), BatchError>> {
        self.incomplete_tail = Some(self.position..self.buf.len());
        if self.allow_incomplete_tail {
            self.finished = true;
            return None;
        }
        self.fail(BatchError::Truncated {
            position: self.position,
            needed,
            available,
        })
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(RecordBatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let rest = self.buf.get(self.position..).unwrap_or_default();
        if rest.is_empty() {
            self.finished = true;
            return None;
        }
        // A wrong magic or length is corruption even when the batch is incomplete (Kafka checks
        // them before the size), so that recovery doesn't mistake garbage for a torn write.
        let size = match batch_size_at(rest, self.position) {
            Ok(Some(size)) => size,
            Ok(None) => return self.incomplete(RECORD_BATCH_OVERHEAD, rest.len()),
            Err(error) => return self.fail(error),
        };
        if rest.len() < size {
            return self.incomplete(size, rest.len());
        }
        match RecordBatchHeader::parse(&rest[..size]) {
            Ok(header) => {
                let range = self.position..self.position + size;
                self.position = range.end;
                Some(Ok((header, range)))
            }
            Err(error) => self.fail(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_batch, BatchOptions, Record};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn sample_batch(options: BatchOptions, count: usize) -> Vec<u8> {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                offset_delta: i as i32,
                timestamp_delta: i as i64,
                value: Some(Bytes::from(format!("value {i}"))),
                ..Record::default()
            })
            .collect();
        encode_batch(&options, &records).unwrap()
    }

    fn plain(count: usize) -> Vec<u8> {
        sample_batch(
            BatchOptions {
                base_timestamp: 1_700_000_000_000,
                ..BatchOptions::default()
            },
            count,
        )
    }

    /// The header offsets are Kafka's, and parse reads every field from its place.
    #[test]
    fn parses_fields_at_kafka_offsets() {
        let header = RecordBatchHeader {
            base_offset: Offset::new(0x0102030405060708),
            batch_length: 49,
            partition_leader_epoch: LeaderEpoch::new(9),
            magic: 2,
            crc: 0xdeadbeef,
            attributes: 0x0033,
            last_offset_delta: 4,
            base_timestamp: 11,
            max_timestamp: 12,
            producer_id: ProducerId::new(13),
            producer_epoch: ProducerEpoch::new(14),
            base_sequence: 15,
            records_count: 16,
        };
        let bytes = header.encode();
        assert_eq!(bytes[..8], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(bytes[MAGIC_OFFSET], 2);
        assert_eq!(bytes[CRC_OFFSET..CRC_OFFSET + 4], [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(bytes[RECORDS_COUNT_OFFSET + 3], 16);
        let parsed = RecordBatchHeader::parse(&bytes).unwrap();
        assert_eq!(parsed, header);
        assert_eq!(parsed.compression(), Ok(Compression::Lz4));
        assert!(parsed.is_transactional() && parsed.is_control());
        assert_eq!(parsed.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(parsed.size_bytes(), 61);
        assert_eq!(parsed.last_offset(), Offset::new(0x0102030405060708 + 4));
    }

    #[test]
    fn last_sequence_wraps_like_kafka() {
        let mut header = RecordBatchHeader::parse(&plain(1)).unwrap();
        header.base_sequence = i32::MAX - 1;
        header.last_offset_delta = 3;
        // MAX-1, MAX, 0, 1
        assert_eq!(header.last_sequence(), 1);
        header.base_sequence = NO_SEQUENCE;
        assert_eq!(header.last_sequence(), NO_SEQUENCE);
        header.base_sequence = 5;
        assert_eq!(header.last_sequence(), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MIN, i32::MIN), 0);
    }

    #[test]
    fn validate_rejects_each_kind_of_damage() {
        let batch = plain(3);
        let stored = ValidateOptions::stored();
        assert!(validate_batch(&batch, &stored).is_ok());

        let mut bad_crc = batch.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        assert!(matches!(
            validate_batch(&bad_crc, &stored),
            Err(BatchError::CrcMismatch { .. })
        ));

        let mut bad_magic = batch.clone();
        bad_magic[MAGIC_OFFSET] = 1;
        assert_eq!(
            validate_batch(&bad_magic, &stored),
            Err(BatchError::UnsupportedMagic(1))
        );

        assert!(matches!(
            validate_batch(&batch[..batch.len() - 1], &stored),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            validate_batch(&batch[..5], &stored),
            Err(BatchError::Truncated { .. })
        ));
        let mut longer = batch.clone();
        longer.push(0);
        assert!(matches!(
            validate_batch(&longer, &stored),
            Err(BatchError::TrailingBytes { .. })
        ));

        // An old-format batch is reported by its magic even though its length is too short
        // for v2.
        let mut legacy = batch[..40].to_vec();
        legacy[BATCH_LENGTH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET]
            .copy_from_slice(&28i32.to_be_bytes());
        legacy[MAGIC_OFFSET] = 1;
        assert_eq!(
            validate_batch(&legacy, &stored),
            Err(BatchError::UnsupportedMagic(1))
        );
        assert!(matches!(
            batches(&legacy).next(),
            Some(Err(BatchError::UnsupportedMagic(1)))
        ));

        let mut short_length = batch.clone();
        short_length[BATCH_LENGTH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET]
            .copy_from_slice(&48i32.to_be_bytes());
        assert!(matches!(
            validate_batch(&short_length, &stored),
            Err(BatchError::InvalidLength { length: 48, .. })
        ));

        let limit = ValidateOptions::client_produce(batch.len() - 1);
        assert!(matches!(
            validate_batch(&batch, &limit),
            Err(BatchError::BatchTooLarge { .. })
        ));

        let mut unknown_codec = batch.clone();
        unknown_codec[ATTRIBUTES_OFFSET + 1] |= 0x07;
        let crc = compute_crc(&unknown_codec).unwrap();
        unknown_codec[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate_batch(&unknown_codec, &stored),
            Err(BatchError::UnknownCompression(7))
        );
    }

    /// Rewrites header fields and re-seals the CRC, as a misbehaving client could.
    fn with_header(batch: &[u8], edit: impl FnOnce(&mut RecordBatchHeader)) -> Vec<u8> {
        let mut header = RecordBatchHeader::parse(batch).unwrap();
        edit(&mut header);
        let mut out = batch.to_vec();
        out[..RECORD_BATCH_OVERHEAD].copy_from_slice(&header.encode());
        let crc = compute_crc(&out).unwrap();
        out[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn client_checks_follow_kafka_log_validator() {
        let batch = plain(3);
        let client = ValidateOptions::client_produce(1 << 20);
        let stored = ValidateOptions::stored();
        assert!(validate_batch(&batch, &client).is_ok());

        let invalid = |edit: fn(&mut RecordBatchHeader)| {
            let edited = with_header(&batch, edit);
            validate_batch(&edited, &client)
        };
        assert!(matches!(
            invalid(|h| h.last_offset_delta = 5),
            Err(BatchError::InvalidRecord(_))
        ));
        assert!(matches!(
            invalid(|h| h.records_count = 2),
            Err(BatchError::InvalidRecord(_))
        ));
        assert!(matches!(
            invalid(|h| h.attributes |= CONTROL_FLAG_MASK),
            Err(BatchError::InvalidRecord(_))
        ));
        assert!(matches!(
            invalid(|h| h.producer_id = ProducerId::new(4)),
            Err(BatchError::InvalidRecord(_))
        ));
        assert!(matches!(
            invalid(|h| h.attributes |= TRANSACTIONAL_FLAG_MASK),
            Err(BatchError::InvalidRecord(_))
        ));
        assert!(invalid(|h| {
            h.producer_id = ProducerId::new(4);
            h.producer_epoch = ProducerEpoch::new(0);
            h.base_sequence = 0;
            h.attributes |= TRANSACTIONAL_FLAG_MASK;
        })
        .is_ok());

        // A compacted batch (gap before the last offset) is fine when stored, not from a client.
        let gap = with_header(&batch, |h| h.last_offset_delta = 5);
        assert!(validate_batch(&gap, &stored).is_ok());
        // Always wrong: negative counts, more records than offsets, more records than bytes.
        for edit in [
            (|h: &mut RecordBatchHeader| h.records_count = -1) as fn(&mut RecordBatchHeader),
            |h| h.last_offset_delta = -1,
            |h| h.records_count = 4,
            |h| {
                h.records_count = 1000;
                h.last_offset_delta = 999;
            },
        ] {
            let edited = with_header(&batch, edit);
            assert!(matches!(
                validate_batch(&edited, &stored),
                Err(BatchError::InvalidRecord(_))
            ));
        }
    }

    #[test]
    fn create_time_window_checks_max_timestamp() {
        let batch = plain(2);
        let max = RecordBatchHeader::parse(&batch).unwrap().max_timestamp;
        let mut options = ValidateOptions::client_produce(1 << 20);
        options.create_time_window_ms = Some(max..=max + 10);
        assert!(validate_batch(&batch, &options).is_ok());
        options.create_time_window_ms = Some(max + 1..=max + 10);
        assert!(matches!(
            validate_batch(&batch, &options),
            Err(BatchError::InvalidTimestamp { .. })
        ));
        // A LogAppendTime batch's timestamps are the broker's, not checked.
        let mut appended = batch.clone();
        assign_offsets(&mut appended, Offset::new(0), Some(0)).unwrap();
        assert!(validate_batch(&appended, &options).is_ok());
    }

    #[test]
    fn assign_offsets_follows_kafka_set_max_timestamp() {
        let batch = plain(3);
        let before = RecordBatchHeader::parse(&batch).unwrap();

        let mut create_time = batch.clone();
        assign_offsets(&mut create_time, Offset::new(500), None).unwrap();
        let after = validate_batch(&create_time, &ValidateOptions::stored()).unwrap();
        assert_eq!(after.base_offset, Offset::new(500));
        assert_eq!(after.last_offset(), Offset::new(502));
        assert_eq!(after.crc, before.crc);
        assert_eq!(create_time[8..], batch[8..]);

        let mut log_append = batch.clone();
        assign_offsets(&mut log_append, Offset::new(7), Some(1_800_000_000_000)).unwrap();
        let after = validate_batch(&log_append, &ValidateOptions::stored()).unwrap();
        assert_eq!(after.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(after.max_timestamp, 1_800_000_000_000);
        assert_eq!(after.base_timestamp, before.base_timestamp);
        assert_eq!(after.attributes & !TIMESTAMP_TYPE_MASK, before.attributes);
        assert_ne!(after.crc, before.crc);

        // Back on a CreateTime topic the bit is cleared again, max_timestamp kept.
        let mut cleared = log_append.clone();
        assign_offsets(&mut cleared, Offset::new(7), None).unwrap();
        let after = validate_batch(&cleared, &ValidateOptions::stored()).unwrap();
        assert_eq!(after.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(after.max_timestamp, 1_800_000_000_000);

        set_partition_leader_epoch(&mut log_append, LeaderEpoch::new(42)).unwrap();
        let after = validate_batch(&log_append, &ValidateOptions::stored()).unwrap();
        assert_eq!(after.partition_leader_epoch, LeaderEpoch::new(42));
    }

    /// A damaged batch is never re-sealed with a fresh CRC.
    #[test]
    fn assign_offsets_refuses_a_bad_crc() {
        let mut batch = plain(2);
        *batch.last_mut().unwrap() ^= 0x40;
        assert!(matches!(
            assign_offsets(&mut batch, Offset::new(0), Some(1)),
            Err(BatchError::CrcMismatch { .. })
        ));
        assert!(assign_offsets(&mut [0u8; 10], Offset::new(0), None).is_err());
        assert!(set_partition_leader_epoch(&mut [0u8; 60], LeaderEpoch::new(1)).is_err());
    }

    #[test]
    fn batches_walks_a_concatenation() {
        let (a, b, c) = (plain(1), plain(2), plain(3));
        let all = [a.clone(), b.clone(), c.clone()].concat();
        let found: Vec<_> = batches(&all).map(|item| item.unwrap()).collect();
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].1, 0..a.len());
        assert_eq!(found[1].1, a.len()..a.len() + b.len());
        assert_eq!(found[2].1.end, all.len());
        assert_eq!(found[2].0.records_count, 3);
        assert_eq!(batches(&[]).count(), 0);
    }

    /// An incomplete trailing batch is an error by default and a quiet end when allowed, with
    /// its range reported in both cases.
    #[test]
    fn batches_reports_an_incomplete_tail() {
        let (a, b) = (plain(1), plain(2));
        let all = [a.clone(), b.clone()].concat();
        for cut in [
            a.len() + 1,
            a.len() + 11,
            a.len() + 12,
            a.len() + 20,
            all.len() - 1,
        ] {
            let region = &all[..cut];
            let mut strict = batches(region);
            assert!(strict.next().unwrap().is_ok());
            assert!(
                matches!(strict.next(), Some(Err(BatchError::Truncated { position, .. })) if position == a.len())
            );
            assert!(strict.next().is_none());
            assert_eq!(strict.position(), a.len());
            assert_eq!(strict.incomplete_tail(), Some(a.len()..cut));

            let mut lenient = batches(region).allow_incomplete_tail();
            assert!(lenient.next().unwrap().is_ok());
            assert!(lenient.next().is_none());
            assert_eq!(lenient.incomplete_tail(), Some(a.len()..cut));
        }
    }

    #[test]
    fn batches_stops_at_corruption() {
        let (a, b) = (plain(1), plain(2));
        let mut all = [a.clone(), b.clone(), a.clone()].concat();
        all[a.len() + BATCH_LENGTH_OFFSET..a.len() + PARTITION_LEADER_EPOCH_OFFSET]
            .copy_from_slice(&3i32.to_be_bytes());
        let mut iter = batches(&all);
        assert!(iter.next().unwrap().is_ok());
        assert!(matches!(
            iter.next(),
            Some(Err(BatchError::InvalidLength { length: 3, .. }))
        ));
        assert!(iter.next().is_none());
        assert_eq!(iter.position(), a.len());

        // Garbage with a plausible length but a wrong magic is corruption, not a torn tail.
        let mut garbage = a.clone();
        garbage.extend_from_slice(&[0u8; 8]);
        garbage.extend_from_slice(&1000i32.to_be_bytes());
        garbage.extend_from_slice(&[0u8; 10]);
        let mut iter = batches(&garbage).allow_incomplete_tail();
        assert!(iter.next().unwrap().is_ok());
        assert!(matches!(
            iter.next(),
            Some(Err(BatchError::UnsupportedMagic(0)))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random bytes never panic the header readers, and batches() yields ranges inside the
        /// buffer, in order, without overlap.
        #[test]
        fn random_bytes_never_panic(
            mut buf in proptest::collection::vec(any::<u8>(), 0..300),
            force_magic in any::<bool>(),
            length in 0i32..300,
        ) {
            if force_magic && buf.len() > MAGIC_OFFSET {
                buf[MAGIC_OFFSET] = 2;
                buf[BATCH_LENGTH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET].copy_from_slice(&length.to_be_bytes());
            }
            let _ = RecordBatchHeader::parse(&buf);
            let _ = validate_batch(&buf, &ValidateOptions::client_produce(1 << 20));
            let _ = validate_batch(&buf, &ValidateOptions::stored());
            let _ = assign_offsets(&mut buf.clone(), Offset::new(1), Some(2));
            let mut end = 0;
            for item in batches(&buf).allow_incomplete_tail() {
                match item {
                    Ok((header, range)) => {
                        prop_assert_eq!(range.start, end);
                        prop_assert!(range.end <= buf.len());
                        prop_assert_eq!(range.len(), header.size_bytes());
                        end = range.end;
                    }
                    Err(_) => break,
                }
            }
        }

        /// Any concatenation of valid batches is walked completely and each range validates.
        #[test]
        fn concatenations_walk_completely(counts in proptest::collection::vec(1usize..5, 0..6)) {
            let parts: Vec<Vec<u8>> = counts.iter().map(|&n| plain(n)).collect();
            let all = parts.concat();
            let found: Vec<_> = batches(&all).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(found.len(), parts.len());
            for ((header, range), count) in found.iter().zip(&counts) {
                prop_assert_eq!(header.records_count as usize, *count);
                prop_assert!(validate_batch(&all[range.clone()], &ValidateOptions::client_produce(1 << 20)).is_ok());
            }
        }
    }
}
