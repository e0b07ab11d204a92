//! Kafka's variable-length integers: unsigned LEB128 varints and zig-zag signed varints, in
//! 32-bit (at most 5 bytes) and 64-bit (at most 10 bytes) widths.
//!
//! Decoding follows Kafka's `ByteUtils.readUnsignedVarint`/`readUnsignedVarlong`: a value whose
//! continuation bit is still set on the 5th (10th) byte is rejected as too long, and bits of the
//! last byte beyond the width are dropped, as Java's shifts drop them. Decoders return the value
//! and the number of bytes read.

use bytes::BufMut;

/// Longest encoding of a 32-bit varint.
pub const VARINT_LEN_MAX: usize = 5;
/// Longest encoding of a 64-bit varlong.
pub const VARLONG_LEN_MAX: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    #[error(
        "the varint is truncated: the input ends after {0} bytes with the continuation bit set"
    )]
    Truncated(usize),
    #[error("the varint is longer than the {0} bytes its width allows")]
    TooLong(usize),
}

/// Decodes an unsigned 32-bit varint from the start of `buf`.
pub fn read_unsigned_varint(buf: &[u8]) -> Result<(u32, usize), VarintError> {
    let (value, read) = read_leb128(buf, VARINT_LEN_MAX)?;
    // Java's `int` shifts drop what doesn't fit in 32 bits.
    Ok((value as u32, read))
}

/// Decodes an unsigned 64-bit varlong from the start of `buf`.
pub fn read_unsigned_varlong(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    read_leb128(buf, VARLONG_LEN_MAX)
}

/// Decodes a zig-zag signed 32-bit varint from the start of `buf`.
pub fn read_varint(buf: &[u8]) -> Result<(i32, usize), VarintError> {
    let (raw, read) = read_unsigned_varint(buf)?;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), read))
}

/// Decodes a zig-zag signed 64-bit varlong from the start of `buf`.
pub fn read_varlong(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    let (raw, read) = read_unsigned_varlong(buf)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), read))
}

fn read_leb128(buf: &[u8], len_max: usize) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().take(len_max).enumerate() {
        // For i = 9 the shift is 63: the top bits of the 10th byte fall off, as in Java.
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= len_max {
        Err(VarintError::TooLong(len_max))
    } else {
        Err(VarintError::Truncated(buf.len()))
    }
}

pub fn write_unsigned_varint(value: u32, out: &mut impl BufMut) {
    write_unsigned_varlong(u64::from(value), out);
}

pub fn write_unsigned_varlong(mut value: u64, out: &mut impl BufMut) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

pub fn write_varint(value: i32, out: &mut impl BufMut) {
    write_unsigned_varint(zigzag32(value), out);
}

pub fn write_varlong(value: i64, out: &mut impl BufMut) {
    write_unsigned_varlong(zigzag64(value), out);
}

pub fn size_of_unsigned_varint(value: u32) -> usize {
    size_of_unsigned_varlong(u64::from(value))
}

pub fn size_of_unsigned_varlong(value: u64) -> usize {
    let bits = (u64::BITS - value.leading_zeros()).max(1) as usize;
    bits.div_ceil(7)
}

pub fn size_of_varint(value: i32) -> usize {
    size_of_unsigned_varint(zigzag32(value))
}

pub fn size_of_varlong(value: i64) -> usize {
    size_of_unsigned_varlong(zigzag64(value))
}

fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out);
        out
    }

    /// Known encodings from Kafka's `ByteUtilsTest`.
    #[test]
    fn matches_kafka_encodings() {
        assert_eq!(encoded(|o| write_varint(0, o)), [0x00]);
        assert_eq!(encoded(|o| write_varint(-1, o)), [0x01]);
        assert_eq!(encoded(|o| write_varint(1, o)), [0x02]);
        assert_eq!(encoded(|o| write_varint(63, o)), [0x7e]);
        assert_eq!(encoded(|o| write_varint(-64, o)), [0x7f]);
        assert_eq!(encoded(|o| write_varint(64, o)), [0x80, 0x01]);
        assert_eq!(
            encoded(|o| write_varint(i32::MAX, o)),
            [0xfe, 0xff, 0xff, 0xff, 0x0f]
        );
        assert_eq!(
            encoded(|o| write_varint(i32::MIN, o)),
            [0xff, 0xff, 0xff, 0xff, 0x0f]
        );
        assert_eq!(encoded(|o| write_unsigned_varint(300, o)), [0xac, 0x02]);
        assert_eq!(
            encoded(|o| write_varlong(i64::MIN, o)).len(),
            VARLONG_LEN_MAX
        );
    }

    #[test]
    fn truncated_and_overlong_inputs_fail() {
        assert_eq!(read_varint(&[]), Err(VarintError::Truncated(0)));
        assert_eq!(read_varint(&[0x80, 0x80]), Err(VarintError::Truncated(2)));
        assert_eq!(read_varint(&[0xff; 5]), Err(VarintError::TooLong(5)));
        assert_eq!(read_varint(&[0xff; 9]), Err(VarintError::TooLong(5)));
        assert_eq!(read_varlong(&[0xff; 10]), Err(VarintError::TooLong(10)));
        assert_eq!(read_varlong(&[0x80; 9]), Err(VarintError::Truncated(9)));
    }

    #[test]
    fn reads_stop_at_the_value_end() {
        assert_eq!(read_varint(&[0x02, 0xff, 0xff]), Ok((1, 1)));
        assert_eq!(read_unsigned_varint(&[0xac, 0x02, 0x00]), Ok((300, 2)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn varint_round_trips(value in any::<i32>(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut buf = encoded(|o| write_varint(value, o));
            prop_assert_eq!(buf.len(), size_of_varint(value));
            let len = buf.len();
            buf.extend(tail);
            prop_assert_eq!(read_varint(&buf), Ok((value, len)));
        }

        #[test]
        fn varlong_round_trips(value in any::<i64>()) {
            let buf = encoded(|o| write_varlong(value, o));
            prop_assert_eq!(buf.len(), size_of_varlong(value));
            prop_assert_eq!(read_varlong(&buf), Ok((value, buf.len())));
        }

        #[test]
        fn unsigned_round_trips(value in any::<u32>(), long in any::<u64>()) {
            let buf = encoded(|o| write_unsigned_varint(value, o));
            prop_assert_eq!(buf.len(), size_of_unsigned_varint(value));
            prop_assert_eq!(read_unsigned_varint(&buf), Ok((value, buf.len())));
            let buf = encoded(|o| write_unsigned_varlong(long, o));
            prop_assert_eq!(buf.len(), size_of_unsigned_varlong(long));
            prop_assert_eq!(read_unsigned_varlong(&buf), Ok((long, buf.len())));
        }

        #[test]
        fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..12)) {
            if let Ok((_, read)) = read_varint(&buf) {
                prop_assert!(read <= VARINT_LEN_MAX && read <= buf.len());
            }
            if let Ok((_, read)) = read_varlong(&buf) {
                prop_assert!(read <= VARLONG_LEN_MAX && read <= buf.len());
            }
        }
    }
}
