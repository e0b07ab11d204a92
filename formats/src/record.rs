//! Records inside a v2 batch, and whole-batch encoding.
//!
//! ```text
//! length          varint   bytes after this field
//! attributes      i8       unused, 0
//! timestampDelta  varlong  relative to the batch's base_timestamp
//! offsetDelta     varint   relative to the batch's base_offset
//! keyLength       varint   -1 for a null key
//! key             bytes
//! valueLength     varint   -1 for a null value
//! value           bytes
//! headerCount     varint
//!   headerKeyLength   varint   never negative
//!   headerKey         bytes    UTF-8 by convention; kept as bytes so re-encoding is exact
//!   headerValueLength varint   -1 for a null value
//!   headerValue       bytes
//! ```
//!
//! Decoding trusts nothing: every length is checked against the bytes that remain, and counts
//! from the wire never size an allocation beyond what the remaining bytes could hold.

use bytes::{BufMut, Bytes};

use crate::batch::{
    BatchError, RecordBatchHeader, TimestampType, ATTRIBUTES_OFFSET, CONTROL_FLAG_MASK, CRC_OFFSET,
    DELETE_HORIZON_FLAG_MASK, LOG_OVERHEAD, MAGIC_V2, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID, NO_SEQUENCE, RECORDS_OFFSET, RECORD_BATCH_OVERHEAD, RECORD_SIZE_MIN,
    TIMESTAMP_TYPE_MASK, TRANSACTIONAL_FLAG_MASK,
};
use crate::compression::{self, Compression};
use crate::ids::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};
use crate::varint::{self, VarintError};

/// One record header. Kafka's API exposes the key as a `String`; on the wire it is bytes, and
/// Java decodes invalid UTF-8 leniently, so we keep the bytes (see [`key_str`](Self::key_str)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl RecordHeader {
    /// The key as UTF-8, if it is valid UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.key).ok()
    }
}

/// One record, with its offset and timestamp relative to its batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Record {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// The record's offset in a batch with this base offset.
    pub fn offset(&self, base_offset: Offset) -> Offset {
        Offset::new(
            base_offset
                .get()
                .saturating_add(i64::from(self.offset_delta)),
        )
    }

    /// The record's timestamp as Kafka reports it: the batch's `max_timestamp` for a
    /// `LogAppendTime` batch, `base_timestamp + timestamp_delta` otherwise.
    pub fn timestamp(&self, header: &RecordBatchHeader) -> i64 {
        match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            TimestampType::CreateTime => header.base_timestamp.wrapping_add(self.timestamp_delta),
        }
    }

    /// Bytes of the encoded record body, after its length prefix.
    fn body_len(&self) -> usize {
        1 + varint::size_of_varlong(self.timestamp_delta)
            + varint::size_of_varint(self.offset_delta)
            + bytes_field_len(self.key.as_deref())
            + bytes_field_len(self.value.as_deref())
            + varint::size_of_varint(saturating_i32(self.headers.len()))
            + self
                .headers
                .iter()
                .map(|h| bytes_field_len(Some(&h.key)) + bytes_field_len(h.value.as_deref()))
                .sum::<usize>()
    }

    /// Appends the encoded record, length prefix included.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), BatchError> {
        let body_len = self.body_len();
        varint::write_varint(checked_len(body_len, "record")?, out);
        out.put_i8(self.attributes);
        varint::write_varlong(self.timestamp_delta, out);
        varint::write_varint(self.offset_delta, out);
        write_bytes_field(self.key.as_deref(), "record key", out)?;
        write_bytes_field(self.value.as_deref(), "record value", out)?;
        varint::write_varint(checked_len(self.headers.len(), "header count")?, out);
        for header in &self.headers {
            write_bytes_field(Some(&header.key), "header key", out)?;
            write_bytes_field(header.value.as_deref(), "header value", out)?;
        }
        Ok(())
    }

    /// Encoded size, length prefix included.
    pub fn encoded_len(&self) -> usize {
        let body_len = self.body_len();
        varint::size_of_varint(saturating_i32(body_len)) + body_len
    }
}

fn saturating_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn checked_len(n: usize, what: &str) -> Result<i32, BatchError> {
    i32::try_from(n).map_err(|_| {
        BatchError::InvalidRecord(format!("the {what} length {n} does not fit in an i32"))
    })
}

fn bytes_field_len(field: Option<&[u8]>) -> usize {
    match field {
        None => varint::size_of_varint(-1),
        Some(bytes) => varint::size_of_varint(saturating_i32(bytes.len())) + bytes.len(),
    }
}

fn write_bytes_field(
    field: Option<&[u8]>,
    what: &str,
    out: &mut impl BufMut,
) -> Result<(), BatchError> {
    match field {
        None => varint::write_varint(-1, out),
        Some(bytes) => {
            varint::write_varint(checked_len(bytes.len(), what)?, out);
            out.put_slice(bytes);
        }
    }
    Ok(())
}

impl From<VarintError> for BatchError {
    fn from(error: VarintError) -> Self {
        BatchError::InvalidRecord(format!("a record field is malformed: {error}"))
    }
}

/// A cursor over untrusted record bytes; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        let (value, read) = varint::read_varint(self.rest())?;
        self.pos += read;
        Ok(value)
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        let (value, read) = varint::read_varlong(self.rest())?;
        self.pos += read;
        Ok(value)
    }

    fn i8(&mut self) -> Result<i8, BatchError> {
        let byte = *self.rest().first().ok_or_else(|| {
            BatchError::InvalidRecord("a record ends before its attributes".to_owned())
        })?;
        self.pos += 1;
        Ok(byte as i8)
    }

    fn bytes(&mut self, len: usize, what: &str) -> Result<Bytes, BatchError> {
        if len > self.remaining() {
            return Err(BatchError::InvalidRecord(format!(
                "the {what} declares {len} bytes but only {} remain",
                self.remaining()
            )));
        }
        let slice = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(slice)
    }

    /// A length-prefixed field; any negative length means null, as in Kafka's `DefaultRecord`.
    fn nullable_bytes(&mut self, what: &str) -> Result<Option<Bytes>, BatchError> {
        let len = self.varint()?;
        match usize::try_from(len) {
            Ok(len) => self.bytes(len, what).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn record(&mut self) -> Result<Record, BatchError> {
        let body_len = self.varint()?;
        let body_len = usize::try_from(body_len).map_err(|_| {
            BatchError::InvalidRecord(format!("a record declares a negative size {body_len}"))
        })?;
        if body_len > self.remaining() {
            return Err(BatchError::InvalidRecord(format!(
                "a record declares {body_len} bytes but only {} remain",
                self.remaining()
            )));
        }
        let batch_end = self.end;
        self.end = self.pos + body_len;
        let record = self.record_body();
        let consumed_all = self.pos == self.end;
        self.end = batch_end;
        let record = record?;
        if !consumed_all {
            return Err(BatchError::InvalidRecord(format!(
                "a record declares {body_len} bytes but its fields use fewer"
            )));
        }
        Ok(record)
    }

    fn record_body(&mut self) -> Result<Record, BatchError> {
        let attributes = self.i8()?;
        let timestamp_delta = self.varlong()?;
        let offset_delta = self.varint()?;
        let key = self.nullable_bytes("record key")?;
        let value = self.nullable_bytes("record value")?;
        let count = self.varint()?;
        let count = usize::try_from(count)
            .map_err(|_| BatchError::InvalidRecord(format!("a record declares {count} headers")))?;
        // Each header takes at least two bytes (two one-byte lengths).
        let mut headers = Vec::with_capacity(count.min(self.remaining() / 2));
        for _ in 0..count {
            let key_len = self.varint()?;
            let key_len = usize::try_from(key_len).map_err(|_| {
                BatchError::InvalidRecord(format!(
                    "a record header declares a negative key size {key_len}"
                ))
            })?;
            let key = self.bytes(key_len, "header key")?;
            let value = self.nullable_bytes("header value")?;
            headers.push(RecordHeader { key, value });
        }
        Ok(Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        })
    }
}

/// Decodes the records of one batch (exactly one batch, magic 2).
///
/// Decompresses with the batch's codec, never producing more than `max_decompressed` bytes, then
/// reads exactly `records_count` records; bytes left over are an error, as in Kafka
/// (`InvalidRecordException: Incorrect declared batch size`). `max_decompressed` bounds the
/// output of a compressed batch; an uncompressed batch's records are already in memory and are
/// not limited by it. The CRC is not checked here: call
/// [`validate_batch`](crate::batch::validate_batch) first. Record offset deltas are returned as
/// stored; a compacted batch may have gaps.
pub fn decode_records(batch: &[u8], max_decompressed: usize) -> Result<Vec<Record>, BatchError> {
    let header = RecordBatchHeader::parse(batch)?;
    let records = batch_records_slice(batch, &header)?;
    let compression = header.compression()?;
    let data = match compression {
        Compression::None => Bytes::copy_from_slice(records),
        codec => Bytes::from(compression::decompress(codec, records, max_decompressed)?),
    };
    decode_record_bytes(&data, header.records_count)
}

/// Like [`decode_records`] for a batch already held in `Bytes`: uncompressed keys and values
/// are slices of `batch`, not copies.
pub fn decode_records_bytes(
    batch: &Bytes,
    max_decompressed: usize,
) -> Result<Vec<Record>, BatchError> {
    let header = RecordBatchHeader::parse(batch)?;
    batch_records_slice(batch, &header)?;
    let data = match header.compression()? {
        Compression::None => batch.slice(RECORDS_OFFSET..),
        codec => Bytes::from(compression::decompress(
            codec,
            &batch[RECORDS_OFFSET..],
            max_decompressed,
        )?),
    };
    decode_record_bytes(&data, header.records_count)
}

fn batch_records_slice<'a>(
    batch: &'a [u8],
    header: &RecordBatchHeader,
) -> Result<&'a [u8], BatchError> {
    let size = header.size_bytes();
    if batch.len() != size {
        return Err(if batch.len() < size {
            BatchError::Truncated {
                position: 0,
                needed: size,
                available: batch.len(),
            }
        } else {
            BatchError::TrailingBytes {
                batch_size: size,
                buffer_size: batch.len(),
            }
        });
    }
    Ok(&batch[RECORDS_OFFSET..])
}

/// Decodes `count` records filling `data` exactly (the uncompressed records section).
pub fn decode_record_bytes(data: &Bytes, count: i32) -> Result<Vec<Record>, BatchError> {
    let count = usize::try_from(count).map_err(|_| {
        BatchError::InvalidRecord(format!("the record count is negative ({count})"))
    })?;
    let mut reader = Reader {
        buf: data,
        pos: 0,
        end: data.len(),
    };
    let mut records = Vec::with_capacity(count.min(data.len() / RECORD_SIZE_MIN));
    for _ in 0..count {
        records.push(reader.record()?);
    }
    if reader.remaining() != 0 {
        return Err(BatchError::InvalidRecord(format!(
            "{} bytes remain after the declared {count} records",
            reader.remaining()
        )));
    }
    Ok(records)
}

/// Checks that `data` (an uncompressed records section) holds exactly `count` well-formed
/// records whose offset deltas are 0, 1, 2, … — the framing a consumer will parse — without
/// allocating. The produce path runs this on uncompressed batches; compressed batches stay opaque
/// there (see DESIGN.md), so their contents are checked only where they are decoded.
pub fn validate_record_bytes(data: &[u8], count: i32) -> Result<(), BatchError> {
    fn varint(data: &[u8], pos: &mut usize) -> Result<i64, BatchError> {
        let (v, n) = crate::varint::read_varlong(data.get(*pos..).unwrap_or_default())?;
        *pos += n;
        Ok(v)
    }
    fn skip(
        data: &[u8],
        pos: &mut usize,
        len: i64,
        nullable: bool,
        what: &str,
    ) -> Result<(), BatchError> {
        if len < 0 {
            return if nullable && len == -1 {
                Ok(())
            } else {
                Err(BatchError::InvalidRecord(format!(
                    "{what} declares a negative size {len}"
                )))
            };
        }
        let end = pos.saturating_add(len as usize);
        if len > i64::from(i32::MAX) || end > data.len() {
            return Err(BatchError::InvalidRecord(format!(
                "{what} declares {len} bytes but only {} remain",
                data.len().saturating_sub(*pos)
            )));
        }
        *pos = end;
        Ok(())
    }
    let count = usize::try_from(count).map_err(|_| {
        BatchError::InvalidRecord(format!("the record count is negative ({count})"))
    })?;
    let mut pos = 0usize;
    for i in 0..count {
        let body_len = varint(data, &mut pos)?;
        let start = pos;
        skip(data, &mut pos, body_len, false, "a record")?;
        let body = &data[start..pos];
        let mut p = 1usize; // attributes
        if body.is_empty() {
            return Err(BatchError::InvalidRecord(format!("record {i} is empty")));
        }
        varint(body, &mut p)?; // timestamp delta
        let offset_delta = varint(body, &mut p)?;
        if offset_delta != i as i64 {
            return Err(BatchError::InvalidRecord(format!(
                "record {i} has offset delta {offset_delta}; a producer's records are consecutive"
            )));
        }
        let key_len = varint(body, &mut p)?;
        skip(body, &mut p, key_len, true, "a record key")?;
        let value_len = varint(body, &mut p)?;
        skip(body, &mut p, value_len, true, "a record value")?;
        let headers = varint(body, &mut p)?;
        if headers < 0 {
            return Err(BatchError::InvalidRecord(format!(
                "record {i} declares {headers} headers"
            )));
        }
        for _ in 0..headers {
            let key_len = varint(body, &mut p)?;
            skip(body, &mut p, key_len, false, "a record header key")?;
            let value_len = varint(body, &mut p)?;
            skip(body, &mut p, value_len, true, "a record header value")?;
        }
        if p != body.len() {
            return Err(BatchError::InvalidRecord(format!(
                "record {i} declares {} bytes but its fields use {p}",
                body.len()
            )));
        }
    }
    if pos != data.len() {
        return Err(BatchError::InvalidRecord(format!(
            "{} bytes remain after the declared {count} records",
            data.len() - pos
        )));
    }
    Ok(())
}

/// Header fields of a batch to encode. `Default` is a plain batch from a non-idempotent producer:
/// offset 0, no leader epoch, no compression, create time, no producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOptions {
    pub base_offset: Offset,
    pub partition_leader_epoch: LeaderEpoch,
    pub compression: Compression,
    pub timestamp_type: TimestampType,
    pub is_transactional: bool,
    pub is_control: bool,
    /// `base_timestamp` holds compaction's delete horizon (attribute bit 6).
    pub has_delete_horizon_ms: bool,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: i32,
    /// Record timestamps are deltas from this.
    pub base_timestamp: i64,
    /// Defaults to the largest record timestamp (`base_timestamp` for an empty batch). Set it to
    /// the append time for `LogAppendTime`.
    pub max_timestamp: Option<i64>,
    /// Defaults to the largest record offset delta (0 for an empty batch). Compaction sets it to
    /// keep the original batch's last offset when it drops the last record, as Kafka does.
    pub last_offset_delta: Option<i32>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            base_offset: Offset::ZERO,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            is_transactional: false,
            is_control: false,
            has_delete_horizon_ms: false,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            base_timestamp: 0,
            max_timestamp: None,
            last_offset_delta: None,
        }
    }
}

impl BatchOptions {
    fn attributes(&self) -> i16 {
        let mut attributes = i16::from(self.compression.id());
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= TIMESTAMP_TYPE_MASK;
        }
        if self.is_transactional {
            attributes |= TRANSACTIONAL_FLAG_MASK;
        }
        if self.is_control {
            attributes |= CONTROL_FLAG_MASK;
        }
        if self.has_delete_horizon_ms {
            attributes |= DELETE_HORIZON_FLAG_MASK;
        }
        attributes
    }
}

/// Encodes a complete v2 batch: header, records compressed with `options.compression`, CRC.
pub fn encode_batch(options: &BatchOptions, records: &[Record]) -> Result<Vec<u8>, BatchError> {
    let mut raw = Vec::with_capacity(records.iter().map(Record::encoded_len).sum());
    for record in records {
        record.encode(&mut raw)?;
    }
    let payload = compression::compress(options.compression, &raw)?;
    let batch_length = checked_len(
        RECORD_BATCH_OVERHEAD - LOG_OVERHEAD + payload.len(),
        "batch",
    )?;
    let max_timestamp = options.max_timestamp.unwrap_or_else(|| {
        records
            .iter()
            .map(|r| options.base_timestamp.wrapping_add(r.timestamp_delta))
            .max()
            .unwrap_or(options.base_timestamp)
    });
    let last_offset_delta = options
        .last_offset_delta
        .unwrap_or_else(|| records.iter().map(|r| r.offset_delta).max().unwrap_or(0));
    let header = RecordBatchHeader {
        base_offset: options.base_offset,
        batch_length,
        partition_leader_epoch: options.partition_leader_epoch,
        magic: MAGIC_V2,
        crc: 0,
        attributes: options.attributes(),
        last_offset_delta,
        base_timestamp: options.base_timestamp,
        max_timestamp,
        producer_id: options.producer_id,
        producer_epoch: options.producer_epoch,
        base_sequence: options.base_sequence,
        records_count: checked_len(records.len(), "record count")?,
    };
    let mut batch = Vec::with_capacity(RECORD_BATCH_OVERHEAD + payload.len());
    batch.extend_from_slice(&header.encode());
    batch.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
    Ok(batch)
}

/// Builds a batch the way a producer does: records get consecutive offset deltas from 0 and
/// timestamps relative to the first record's, which becomes the base timestamp.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    options: BatchOptions,
    records: Vec<Record>,
}

impl BatchBuilder {
    /// `options.base_timestamp` is replaced by the first appended record's timestamp.
    pub fn new(options: BatchOptions) -> Self {
        Self {
            options,
            records: Vec::new(),
        }
    }

    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<RecordHeader>,
    ) -> &mut Self {
        if self.records.is_empty() {
            self.options.base_timestamp = timestamp;
        }
        self.records.push(Record {
            attributes: 0,
            timestamp_delta: timestamp.wrapping_sub(self.options.base_timestamp),
            offset_delta: saturating_i32(self.records.len()),
            key,
            value,
            headers,
        });
        self
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Size of the batch if built uncompressed; an upper bound for the compressed size of all but
    /// incompressible data.
    pub fn uncompressed_size(&self) -> usize {
        RECORD_BATCH_OVERHEAD + self.records.iter().map(Record::encoded_len).sum::<usize>()
    }

    pub fn build(&self) -> Result<Vec<u8>, BatchError> {
        encode_batch(&self.options, &self.records)
    }
}

#[cfg(test)]
mod validate_tests {
    use super::*;
    use proptest::prelude::*;

    fn records_section(n: usize) -> (Vec<u8>, i32) {
        let mut b = BatchBuilder::new(BatchOptions::default());
        for i in 0..n {
            b.append(
                i as i64,
                Some(Bytes::from(vec![i as u8; i % 5])),
                Some(Bytes::from_static(b"value")),
                vec![RecordHeader {
                    key: Bytes::from_static(b"h"),
                    value: None,
                }],
            );
        }
        let batch = b.build().unwrap();
        (batch[crate::batch::RECORDS_OFFSET..].to_vec(), n as i32)
    }

    #[test]
    fn accepts_what_the_encoder_writes_and_rejects_lies() {
        for n in [1, 2, 17] {
            let (data, count) = records_section(n);
            validate_record_bytes(&data, count).unwrap();
            assert!(validate_record_bytes(&data, count + 1).is_err());
            assert!(validate_record_bytes(&data, count - 1).is_err());
            assert!(validate_record_bytes(&data[..data.len() - 1], count).is_err());
        }
        assert!(validate_record_bytes(&[0u8; 1024], 10).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), count in -2i32..40) {
            let _ = validate_record_bytes(&data, count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{assign_offsets, batches, validate_batch, ValidateOptions};
    use proptest::prelude::*;

    const LIMIT: usize = 1 << 20;

    fn header(key: &str, value: Option<&[u8]>) -> RecordHeader {
        RecordHeader {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: value.map(Bytes::copy_from_slice),
        }
    }

    /// A batch built by the builder validates as a client batch and decodes back to its records
    /// under every codec.
    #[test]
    fn builder_batches_validate_and_decode() {
        for codec in Compression::ALL {
            let mut builder = BatchBuilder::new(BatchOptions {
                compression: codec,
                producer_id: ProducerId::new(7),
                producer_epoch: ProducerEpoch::new(1),
                base_sequence: 10,
                ..BatchOptions::default()
            });
            builder
                .append(
                    1000,
                    Some(Bytes::from_static(b"k")),
                    Some(Bytes::from_static(b"v")),
                    vec![],
                )
                .append(
                    990,
                    None,
                    Some(Bytes::from_static(b"second")),
                    vec![header("h", Some(b"x"))],
                )
                .append(
                    1005,
                    Some(Bytes::from_static(b"k3")),
                    None,
                    vec![header("n", None)],
                );
            let batch = builder.build().unwrap();
            let parsed = validate_batch(&batch, &ValidateOptions::client_produce(LIMIT)).unwrap();
            assert_eq!(parsed.compression(), Ok(codec));
            assert_eq!(parsed.records_count, 3);
            assert_eq!(parsed.last_offset_delta, 2);
            assert_eq!(parsed.base_timestamp, 1000);
            assert_eq!(parsed.max_timestamp, 1005);
            assert_eq!(parsed.last_sequence(), 12);
            let records = decode_records(&batch, LIMIT).unwrap();
            assert_eq!(records.len(), 3);
            assert_eq!(records[1].timestamp(&parsed), 990);
            assert_eq!(records[1].offset(Offset::new(100)), Offset::new(101));
            assert_eq!(records[1].headers, vec![header("h", Some(b"x"))]);
            assert_eq!(records[2].value, None);
            assert_eq!(
                decode_records_bytes(&Bytes::from(batch), LIMIT).unwrap(),
                records
            );
        }
    }

    /// A hand-assembled record in Kafka's layout decodes field by field.
    #[test]
    fn decodes_a_known_record() {
        // length 12, attrs 0, ts delta 1 (zigzag 2), offset delta 0, key len 1 "a",
        // value len 2 "bc", 1 header: key len 1 "h", value -1.
        let body = [
            0x00, 0x02, 0x00, 0x02, b'a', 0x04, b'b', b'c', 0x02, 0x02, b'h', 0x01,
        ];
        let mut data = vec![(body.len() as u8) << 1];
        data.extend_from_slice(&body);
        let records = decode_record_bytes(&Bytes::from(data.clone()), 1).unwrap();
        let expected = Record {
            attributes: 0,
            timestamp_delta: 1,
            offset_delta: 0,
            key: Some(Bytes::from_static(b"a")),
            value: Some(Bytes::from_static(b"bc")),
            headers: vec![header("h", None)],
        };
        assert_eq!(records, vec![expected.clone()]);
        let mut encoded = Vec::new();
        expected.encode(&mut encoded).unwrap();
        assert_eq!(encoded, data);
        assert_eq!(expected.encoded_len(), data.len());
    }

    #[test]
    fn count_mismatches_and_lying_lengths_are_rejected() {
        let record = Record {
            value: Some(Bytes::from_static(b"value")),
            ..Record::default()
        };
        let mut data = Vec::new();
        record.encode(&mut data).unwrap();
        let data = Bytes::from(data);
        assert!(matches!(
            decode_record_bytes(&data, 2),
            Err(BatchError::InvalidRecord(_))
        ));
        assert!(matches!(
            decode_record_bytes(&data, 0),
            Err(BatchError::InvalidRecord(_))
        ));
        assert!(matches!(
            decode_record_bytes(&data, -1),
            Err(BatchError::InvalidRecord(_))
        ));
        // The record length claims one byte more than its fields use (and than remain).
        let mut longer = data.to_vec();
        longer[0] += 2;
        assert!(matches!(
            decode_record_bytes(&Bytes::from(longer.clone()), 1),
            Err(BatchError::InvalidRecord(_))
        ));
        longer.push(0);
        assert!(matches!(
            decode_record_bytes(&Bytes::from(longer), 1),
            Err(BatchError::InvalidRecord(_))
        ));
        // A header count of i32::MAX in a tiny record fails without a huge allocation.
        let lying = [
            0x0c, 0x00, 0x00, 0x00, 0x01, 0x01, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0x00,
        ];
        assert!(matches!(
            decode_record_bytes(&Bytes::copy_from_slice(&lying), 1),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    /// A lying records_count of i32::MAX neither allocates for it nor panics.
    #[test]
    fn huge_record_count_is_harmless() {
        let mut batch = encode_batch(&BatchOptions::default(), &[Record::default()]).unwrap();
        batch[crate::batch::RECORDS_COUNT_OFFSET..RECORDS_OFFSET]
            .copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_records(&batch, LIMIT),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn empty_batches_encode_and_decode() {
        let options = BatchOptions {
            base_timestamp: 5,
            last_offset_delta: Some(3),
            ..BatchOptions::default()
        };
        let batch = encode_batch(&options, &[]).unwrap();
        assert_eq!(batch.len(), RECORD_BATCH_OVERHEAD);
        let parsed = validate_batch(&batch, &ValidateOptions::stored()).unwrap();
        assert_eq!(
            (
                parsed.records_count,
                parsed.last_offset_delta,
                parsed.max_timestamp
            ),
            (0, 3, 5)
        );
        assert!(validate_batch(&batch, &ValidateOptions::client_produce(LIMIT)).is_err());
        assert_eq!(decode_records(&batch, LIMIT).unwrap(), vec![]);
    }

    fn bytes_strategy() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from))
    }

    fn record_strategy() -> impl Strategy<Value = Record> {
        (
            any::<i8>(),
            any::<i64>(),
            any::<i32>(),
            bytes_strategy(),
            bytes_strategy(),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from),
                    bytes_strategy(),
                )
                    .prop_map(|(key, value)| RecordHeader { key, value }),
                0..4,
            ),
        )
            .prop_map(
                |(attributes, timestamp_delta, offset_delta, key, value, headers)| Record {
                    attributes,
                    timestamp_delta,
                    offset_delta,
                    key,
                    value,
                    headers,
                },
            )
    }

    /// Records as a producer writes them: offset deltas 0, 1, 2, …
    fn sequential_records(max: usize) -> impl Strategy<Value = Vec<Record>> {
        proptest::collection::vec(record_strategy(), 1..max).prop_map(|records| {
            records
                .into_iter()
                .enumerate()
                .map(|(i, r)| Record {
                    offset_delta: i as i32,
                    ..r
                })
                .collect()
        })
    }

    fn options_strategy() -> impl Strategy<Value = BatchOptions> {
        (
            proptest::sample::select(Compression::ALL.to_vec()),
            any::<i64>(),
            any::<i32>(),
            any::<bool>(),
            any::<i64>(),
            (any::<i64>(), any::<i16>(), any::<i32>()),
        )
            .prop_map(
                |(compression, base_offset, epoch, log_append, base_timestamp, producer)| {
                    BatchOptions {
                        base_offset: Offset::new(base_offset),
                        partition_leader_epoch: LeaderEpoch::new(epoch),
                        compression,
                        timestamp_type: if log_append {
                            TimestampType::LogAppendTime
                        } else {
                            TimestampType::CreateTime
                        },
                        base_timestamp,
                        producer_id: ProducerId::new(producer.0),
                        producer_epoch: ProducerEpoch::new(producer.1),
                        base_sequence: producer.2,
                        ..BatchOptions::default()
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn record_round_trips(records in proptest::collection::vec(record_strategy(), 0..8)) {
            let mut data = Vec::new();
            for record in &records {
                let before = data.len();
                record.encode(&mut data).unwrap();
                prop_assert_eq!(data.len() - before, record.encoded_len());
            }
            let decoded = decode_record_bytes(&Bytes::from(data), records.len() as i32).unwrap();
            prop_assert_eq!(decoded, records);
        }

        /// encode_batch → validate_batch → decode_records returns the header fields and records
        /// that went in, for every codec.
        #[test]
        fn batch_round_trips(
            options in options_strategy(),
            records in sequential_records(8),
        ) {
            let batch = encode_batch(&options, &records).unwrap();
            let header = validate_batch(&batch, &ValidateOptions::stored()).unwrap();
            prop_assert_eq!(header.base_offset, options.base_offset);
            prop_assert_eq!(header.partition_leader_epoch, options.partition_leader_epoch);
            prop_assert_eq!(header.compression(), Ok(options.compression));
            prop_assert_eq!(header.timestamp_type(), options.timestamp_type);
            prop_assert_eq!(header.base_timestamp, options.base_timestamp);
            prop_assert_eq!(header.producer_id, options.producer_id);
            prop_assert_eq!(header.producer_epoch, options.producer_epoch);
            prop_assert_eq!(header.base_sequence, options.base_sequence);
            prop_assert_eq!(header.records_count as usize, records.len());
            prop_assert_eq!(header.last_offset_delta as usize, records.len() - 1);
            prop_assert_eq!(header.size_bytes(), batch.len());
            prop_assert_eq!(decode_records(&batch, LIMIT).unwrap(), records);
        }

        /// assign_offsets leaves a valid batch valid, with the new base offset, and with
        /// LogAppendTime set when asked.
        #[test]
        fn assign_offsets_keeps_the_crc_valid(
            options in options_strategy(),
            records in sequential_records(4),
            base_offset in any::<i64>(),
            append_time in proptest::option::of(any::<i64>()),
            epoch in any::<i32>(),
        ) {
            let mut batch = encode_batch(&options, &records).unwrap();
            assign_offsets(&mut batch, Offset::new(base_offset), append_time).unwrap();
            crate::batch::set_partition_leader_epoch(&mut batch, LeaderEpoch::new(epoch)).unwrap();
            let header = validate_batch(&batch, &ValidateOptions::stored()).unwrap();
            prop_assert_eq!(header.base_offset.get(), base_offset);
            prop_assert_eq!(header.partition_leader_epoch.get(), epoch);
            prop_assert_eq!(header.base_timestamp, options.base_timestamp);
            if let Some(time) = append_time {
                prop_assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
                prop_assert_eq!(header.max_timestamp, time);
            }
            let decoded = decode_records(&batch, LIMIT).unwrap();
            prop_assert_eq!(decoded, records);
        }

        /// Random bytes, alone or behind a plausible header, never make the decoders panic.
        #[test]
        fn random_bytes_never_panic(
            garbage in proptest::collection::vec(any::<u8>(), 0..512),
            codec in proptest::sample::select(Compression::ALL.to_vec()),
            count in any::<i32>(),
        ) {
            let _ = decode_records(&garbage, 4096);
            let _ = decode_record_bytes(&Bytes::from(garbage.clone()), count.rem_euclid(64));
            let mut batch = encode_batch(&BatchOptions { compression: codec, ..BatchOptions::default() }, &[]).unwrap();
            batch.extend_from_slice(&garbage);
            let length = (batch.len() - LOG_OVERHEAD) as i32;
            batch[8..12].copy_from_slice(&length.to_be_bytes());
            batch[crate::batch::RECORDS_COUNT_OFFSET..RECORDS_OFFSET].copy_from_slice(&count.to_be_bytes());
            let _ = decode_records(&batch, 4096);
            let _ = decode_records_bytes(&Bytes::from(batch.clone()), 4096);
            for item in batches(&batch) {
                let _ = item;
            }
        }

        /// Flipping bytes of a valid batch never panics any reader; validate_batch catches the
        /// flips the CRC covers.
        #[test]
        fn corrupted_batches_never_panic(
            options in options_strategy(),
            records in proptest::collection::vec(record_strategy(), 1..4),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..4),
        ) {
            let mut batch = encode_batch(&options, &records).unwrap();
            let mut crc_covered = false;
            for (index, byte) in flips {
                let at = index.index(batch.len());
                batch[at] ^= byte;
                crc_covered |= at >= ATTRIBUTES_OFFSET;
            }
            let validated = validate_batch(&batch, &ValidateOptions::stored());
            if crc_covered {
                prop_assert!(validated.is_err());
            }
            let _ = decode_records(&batch, LIMIT);
            for item in batches(&batch) {
                let _ = item;
            }
        }
    }
}
