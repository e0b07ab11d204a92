//! The `.indexes` object: a segment's offset index, time index, transaction index, leader
//! epochs and producer snapshot in one object, so that a copy is three PUTs however many
//! indexes a segment has, and a remote read fetches one small object per segment.
//!
//! # Encoding (format 1)
//!
//! ```text
//! "SHIX"  magic, 4 bytes
//! u16     format (1), big-endian
//! u16     section count
//! per section: u8 kind, u32 length (big-endian), that many bytes
//! u32     CRC-32C of every byte before it
//! ```
//!
//! Section kinds: 1 offset index (Kafka `.index` entries), 2 time index (`.timeindex` entries),
//! 3 transaction index (`.txnindex`), 4 leader epochs (entries of i32 epoch + i64 start offset,
//! big-endian), 5 producer snapshot. A section appears at most once; an absent one is empty.
//! Unknown kinds are refused, since a reader that skipped them could miss meaning.

use bytes::{Buf, BufMut, Bytes};
use shale_formats::ids::{LeaderEpoch, Offset};

use crate::metadata::EpochEntry;

pub const INDEXES_MAGIC: &[u8; 4] = b"SHIX";
pub const INDEXES_FORMAT: u16 = 1;

const KIND_OFFSET_INDEX: u8 = 1;
const KIND_TIME_INDEX: u8 = 2;
const KIND_TRANSACTION_INDEX: u8 = 3;
const KIND_LEADER_EPOCHS: u8 = 4;
const KIND_PRODUCER_SNAPSHOT: u8 = 5;
const EPOCH_ENTRY_SIZE: usize = 12;

/// A segment's indexes, as stored in its `.indexes` object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentIndexes {
    pub offset_index: Bytes,
    pub time_index: Bytes,
    pub transaction_index: Option<Bytes>,
    pub leader_epochs: Vec<EpochEntry>,
    pub producer_snapshot: Option<Bytes>,
}

impl SegmentIndexes {
    pub fn encode(&self) -> Bytes {
        let mut epochs = Vec::with_capacity(self.leader_epochs.len() * EPOCH_ENTRY_SIZE);
        for entry in &self.leader_epochs {
            epochs.put_i32(entry.epoch.get());
            epochs.put_i64(entry.start_offset.get());
        }
        let mut sections: Vec<(u8, &[u8])> = vec![
            (KIND_OFFSET_INDEX, &self.offset_index),
            (KIND_TIME_INDEX, &self.time_index),
            (KIND_LEADER_EPOCHS, &epochs),
        ];
        if let Some(txn) = &self.transaction_index {
            sections.push((KIND_TRANSACTION_INDEX, txn));
        }
        if let Some(snapshot) = &self.producer_snapshot {
            sections.push((KIND_PRODUCER_SNAPSHOT, snapshot));
        }
        let len = 8 + sections.iter().map(|(_, b)| 5 + b.len()).sum::<usize>() + 4;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(INDEXES_MAGIC);
        out.put_u16(INDEXES_FORMAT);
        out.put_u16(sections.len() as u16);
        for (kind, body) in sections {
            out.put_u8(kind);
            out.put_u32(u32::try_from(body.len()).expect("an index section is below 4 GiB"));
            out.extend_from_slice(body);
        }
        let crc = crc32c::crc32c(&out);
        out.put_u32(crc);
        Bytes::from(out)
    }

    /// Decodes an `.indexes` object; the error is why it is corrupt.
    pub fn decode(bytes: &Bytes) -> Result<Self, String> {
        if bytes.len() < 12 {
            return Err(format!("it has only {} bytes", bytes.len()));
        }
        let (content, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(content);
        if stored != computed {
            return Err(format!(
                "its bytes hash to CRC-32C {computed:#010x} but it stores {stored:#010x}"
            ));
        }
        let mut buf = bytes.slice(..bytes.len() - 4);
        if &buf[..4] != INDEXES_MAGIC {
            return Err("it does not start with the magic \"SHIX\"".to_string());
        }
        buf.advance(4);
        let format = buf.get_u16();
        if format != INDEXES_FORMAT {
            return Err(format!(
                "it is in format {format}; this build reads only format {INDEXES_FORMAT}"
            ));
        }
        let count = buf.get_u16();
        let mut out = SegmentIndexes::default();
        let mut seen = 0u32;
        for _ in 0..count {
            if buf.remaining() < 5 {
                return Err("a section header is truncated".to_string());
            }
            let kind = buf.get_u8();
            let len = buf.get_u32() as usize;
            if buf.remaining() < len {
                return Err(format!(
                    "section {kind} declares {len} bytes but only {} remain",
                    buf.remaining()
                ));
            }
            if kind == 0 || kind > KIND_PRODUCER_SNAPSHOT || seen & (1 << kind) != 0 {
                return Err(format!("section kind {kind} is unknown or repeated"));
            }
            seen |= 1 << kind;
            let body = buf.split_to(len);
            match kind {
                KIND_OFFSET_INDEX => out.offset_index = body,
                KIND_TIME_INDEX => out.time_index = body,
                KIND_TRANSACTION_INDEX => out.transaction_index = Some(body),
                KIND_PRODUCER_SNAPSHOT => out.producer_snapshot = Some(body),
                KIND_LEADER_EPOCHS => out.leader_epochs = decode_epochs(body)?,
                _ => unreachable!("kinds checked above"),
            }
        }
        if buf.has_remaining() {
            return Err(format!("{} bytes follow the last section", buf.remaining()));
        }
        Ok(out)
    }
}

fn decode_epochs(mut body: Bytes) -> Result<Vec<EpochEntry>, String> {
    if !body.len().is_multiple_of(EPOCH_ENTRY_SIZE) {
        return Err(format!(
            "the leader-epoch section has {} bytes, not a multiple of {EPOCH_ENTRY_SIZE}",
            body.len()
        ));
    }
    let mut entries = Vec::with_capacity(body.len() / EPOCH_ENTRY_SIZE);
    while body.has_remaining() {
        entries.push(EpochEntry {
            epoch: LeaderEpoch::new(body.get_i32()),
            start_offset: Offset::new(body.get_i64()),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
    }

    fn indexes() -> impl Strategy<Value = SegmentIndexes> {
        (
            bytes(),
            bytes(),
            proptest::option::of(bytes()),
            proptest::collection::vec((any::<i32>(), any::<i64>()), 0..5),
            proptest::option::of(bytes()),
        )
            .prop_map(|(o, t, x, e, p)| SegmentIndexes {
                offset_index: o,
                time_index: t,
                transaction_index: x,
                leader_epochs: e
                    .into_iter()
                    .map(|(epoch, start_offset)| EpochEntry {
                        epoch: LeaderEpoch::new(epoch),
                        start_offset: Offset::new(start_offset),
                    })
                    .collect(),
                producer_snapshot: p,
            })
    }

    proptest! {
        /// Encoding then decoding gives back the same indexes.
        #[test]
        fn round_trip(ix in indexes()) {
            prop_assert_eq!(SegmentIndexes::decode(&ix.encode()).unwrap(), ix);
        }

        /// A flipped byte anywhere is reported, and no input makes the decoder panic.
        #[test]
        fn corruption_is_detected(ix in indexes(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut raw = ix.encode().to_vec();
            let i = at.index(raw.len());
            raw[i] ^= flip;
            prop_assert!(SegmentIndexes::decode(&Bytes::from(raw)).is_err());
        }

        #[test]
        fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut raw = raw;
            // Give the CRC a chance to match so the section parser is exercised too.
            if raw.len() >= 12 {
                let n = raw.len() - 4;
                let crc = crc32c::crc32c(&raw[..n]);
                raw[n..].copy_from_slice(&crc.to_be_bytes());
                raw[..4].copy_from_slice(INDEXES_MAGIC);
                raw[4..6].copy_from_slice(&INDEXES_FORMAT.to_be_bytes());
                let crc = crc32c::crc32c(&raw[..n]);
                raw[n..].copy_from_slice(&crc.to_be_bytes());
            }
            let _ = SegmentIndexes::decode(&Bytes::from(raw));
        }
    }
}
