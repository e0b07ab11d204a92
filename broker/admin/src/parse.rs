//! Parsers for command-line values, written as clap `value_parser`s so a bad value is a usage
//! error (exit 2) naming the argument.

/// A `key=value` pair; the value may itself contain `=` and may be empty.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{s}` has an empty key"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// A point in time as milliseconds since the Unix epoch: either the number itself, or an
/// RFC 3339 timestamp with a zone (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.250+02:00`).
pub fn datetime_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("`{s}` is too large for milliseconds since the epoch"));
    }
    rfc3339_ms(s).ok_or_else(|| {
        format!(
            "`{s}` is neither milliseconds since the epoch nor an RFC 3339 time with a zone \
             such as 2024-05-01T12:00:00Z or 2024-05-01T14:00:00.250+02:00"
        )
    })
}

fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Milliseconds: the first three digits, padded; finer digits are dropped.
        let ms: String = frac[..digits].chars().chain("00".chars()).take(3).collect();
        millis = ms.parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || rb[3] != b':' {
                return None;
            }
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            let sign = if rb[0] == b'-' { -1 } else { 1 };
            sign * (h * 60 + m)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A topic id as Kafka prints it (`Uuid.toString()`): URL-safe base64 without padding.
pub fn kafka_uuid(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_pairs() {
        assert_eq!(
            key_value("retention.ms=1000").unwrap(),
            ("retention.ms".into(), "1000".into())
        );
        assert_eq!(
            key_value("cleanup.policy=compact,delete").unwrap().1,
            "compact,delete"
        );
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(key_value("a=").unwrap(), ("a".into(), "".into()));
        assert!(key_value("retention.ms").unwrap_err().contains("KEY=VALUE"));
        assert!(key_value("=5").unwrap_err().contains("empty key"));
    }

    #[test]
    fn datetimes() {
        assert_eq!(datetime_ms("0").unwrap(), 0);
        assert_eq!(datetime_ms("1714564800000").unwrap(), 1_714_564_800_000);
        assert_eq!(datetime_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            datetime_ms("2024-05-01T12:00:00Z").unwrap(),
            1_714_564_800_000
        );
        assert_eq!(
            datetime_ms("2024-05-01T14:00:00.250+02:00").unwrap(),
            1_714_564_800_250
        );
        assert_eq!(
            datetime_ms("2024-05-01t12:00:00.1z").unwrap(),
            1_714_564_800_100
        );
        assert_eq!(
            datetime_ms("2024-05-01T07:30:00.123456-04:30").unwrap(),
            1_714_564_800_123
        );
        assert_eq!(
            datetime_ms("2000-02-29T00:00:00Z").unwrap(),
            951_782_400_000
        );
        assert_eq!(datetime_ms("1969-12-31T23:59:59Z").unwrap(), -1000);
        for bad in [
            "",
            "yesterday",
            "2024-05-01T12:00:00",
            "2024-05-01",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00+2:00",
            "2024-05-01T12:00:00.Z",
            "-5",
        ] {
            let e = datetime_ms(bad).unwrap_err();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn topic_ids_print_like_kafka() {
        assert_eq!(kafka_uuid(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        // Kafka's Uuid.METADATA_TOPIC_ID is 0..0 1 and prints as AAAAAAAAAAAAAAAAAAAAAQ.
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(kafka_uuid(&one), "AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(kafka_uuid(&[0xff; 16]), "_____________________w");
    }
}
