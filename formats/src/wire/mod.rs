//! A bounded structural validator for Kafka request frames, run before any typed decoder.
//!
//! The broker decodes requests with `kafka-protocol` 0.18, whose array decoders reserve
//! `Vec::with_capacity(count)` straight from the count on the wire: a 6-byte Metadata body with
//! count `0x7fffffff` asks for about 150 GB and aborts the process. [`validate_request`]
//! walks the frame first, against a schema of every request we read ([`supported_versions`]),
//! without allocating, and only a frame it accepts may reach the typed decoder.
//!
//! # What "accepted" means
//!
//! The header (v1, or v2 when the request version is flexible) and the body are parsed exactly
//! as the schema says for that API version:
//! - every string, bytes and records length is `-1` (null, where the field is nullable in that
//!   version) or fits in the bytes that remain; strings are valid UTF-8;
//! - every array count is `-1` (null, where nullable) or `≥ 0`, and that many elements are then
//!   fully parsed, so a count is never more than the elements actually present;
//! - compact (flexible-version) lengths and counts are unsigned varints holding `n + 1`, at most
//!   5 bytes and within `u32`;
//! - tagged-field sections have strictly increasing tags; known tags are parsed by their schema
//!   and must fill exactly the size they declare, unknown tags are skipped by size;
//! - all array elements of the request together number at most
//!   [`WireLimits::max_array_elements`], all tagged fields at most
//!   [`WireLimits::max_tagged_fields`];
//! - bytes after the body are tolerated and counted in [`RequestFrameInfo::trailing_bytes`], as
//!   Kafka's own parsers ignore them: librdkafka 2.16 sends a Metadata v12 request with three
//!   extra bytes, and a broker that refused it would break `list_topics()`.
//!
//! # The invariant
//!
//! **If [`validate_request`] accepts a frame, `kafka-protocol`'s decode of that frame reserves,
//! for each array, at most (elements actually present) × `size_of::<T>()` — in total at most
//! `max_array_elements` × the largest element type.**
//!
//! Why: in `kafka-protocol` 0.18 the only reservations sized from the wire are the array
//! decoders (`Array`, `CompactArray`). Strings and bytes (request types use `StrBytes` and
//! `Bytes` throughout) are sliced out of the frame's `Bytes` after a remaining-length check; unknown tagged fields go into a `BTreeMap` one entry at a time
//! (bounded here by `max_tagged_fields`). The schema here follows the same grammar as the
//! generated decoders — same fields, same version conditions, same length encodings, the same
//! known tags — so on an accepted frame the decoder visits the same positions and reads the same
//! counts, each of which this validator has seen followed by that many complete elements, and
//! whose sum it has capped. Known tagged fields are the one place the decoder ignores a declared
//! size and reads by type; requiring their value to fill the declared size exactly makes both
//! readers end at the same byte. The property tests check the consequence end to end: every
//! accepted frame, including random and mutated ones, decodes with `kafka-protocol` without
//! error and consumes the body exactly.
//!
//! # Use
//!
//! Run [`validate_request`] on every frame before `kafka-protocol` sees it (its
//! `decode_request_header_from_buffer` even panics on a frame under 4 bytes). On an error, use
//! [`peek_header`] to answer with an error response when the 8-byte prefix is there (an
//! ApiVersions request of a version we do not read must be answered, not dropped); otherwise
//! close the connection.
//!
//! # Layout
//! - `schema`: the schema language (versions, field types, structs, messages).
//! - `messages`: the schema of every request we read, one module per API.
//! - `validate`: the allocation-free walk of a frame against a schema.
//! - `error`: [`WireError`] and [`FieldPath`].

mod error;
mod messages;
mod schema;
mod validate;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod fuzz;

pub use error::{FieldPath, WireError};

/// Bounds on what a single request may ask the decoder to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// The most array elements, summed over every array in the request (nested ones included).
    /// The largest array element type in kafka-protocol 0.18's requests is 120 bytes (a test
    /// keeps it at most 200), so the default bounds what the typed decoder reserves for one
    /// request's arrays at about 120 MB, and the frame-size limit bounds it further, since every
    /// element takes at least one byte of frame. A real client's largest request (a Fetch or
    /// Produce over every partition it has) is far below it.
    pub max_array_elements: u64,
    /// The most tagged fields, summed over every tagged-field section in the request. Unknown
    /// tags become one map entry (and possibly one map node) each in the decoded message; real
    /// clients send a handful.
    pub max_tagged_fields: u64,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_array_elements: 1_000_000,
            max_tagged_fields: 10_000,
        }
    }
}

/// What [`validate_request`] learnt about an accepted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFrameInfo {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    /// 1, or 2 for flexible request versions.
    pub header_version: i16,
    /// Bytes of the frame taken by the header; the body starts here.
    pub header_len: usize,
    /// Array elements in the request, nested ones included.
    pub array_elements: u64,
    /// Tagged fields in the request, the header's included.
    pub tagged_fields: u64,
    /// Bytes after the end of the body, which decoders ignore (as Kafka does).
    pub trailing_bytes: usize,
}

/// Reads `(api_key, api_version, correlation_id)` from the first 8 bytes of `frame` (the request
/// bytes after the 4-byte size prefix), without looking further: enough to answer a request the
/// broker cannot read (unsupported API or version, malformed body) with an error response.
pub fn peek_header(frame: &[u8]) -> Result<(i16, i16, i32), WireError> {
    validate::peek_header(frame)
}

/// Checks that `frame` (the request bytes after the 4-byte size prefix) is a well-formed request
/// of an API and version we have a schema for, within `limits`. See the module documentation for
/// exactly what is checked and what acceptance guarantees. Never panics, never allocates.
pub fn validate_request(frame: &[u8], limits: &WireLimits) -> Result<RequestFrameInfo, WireError> {
    validate::validate_request(frame, limits)
}

/// Whether `api_version` of `api_key` is a flexible version (compact lengths, tagged fields,
/// request header v2); `None` if we have no schema for that API version.
pub fn request_is_flexible(api_key: i16, api_version: i16) -> Option<bool> {
    let message = schema::lookup(api_key)?;
    message
        .versions
        .contains(api_version)
        .then(|| message.flexible.contains(api_version))
}

/// The request header version (1 or 2) for `api_version` of `api_key`; `None` if we have no
/// schema for that API version.
pub fn request_header_version(api_key: i16, api_version: i16) -> Option<i16> {
    request_is_flexible(api_key, api_version).map(|flexible| if flexible { 2 } else { 1 })
}

/// The `(min, max)` versions of `api_key` the schema covers; `None` for an API we do not read.
/// The broker advertises a subset of these in ApiVersions.
pub fn supported_versions(api_key: i16) -> Option<(i16, i16)> {
    schema::lookup(api_key).map(|m| (m.versions.min, m.versions.max))
}

/// Kafka's name for `api_key` (`"Metadata"`), for the APIs we read.
pub fn api_name(api_key: i16) -> Option<&'static str> {
    schema::lookup(api_key).map(|m| m.name)
}

/// The API keys we have request schemas for, in the order of the schema tables.
pub fn supported_api_keys() -> impl Iterator<Item = i16> {
    messages::MESSAGES.iter().map(|m| m.api_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame that motivated this module: a Metadata v1 request whose topic count claims
    /// `0x7fffffff` elements in a 6-byte body. It must be refused cheaply, not decoded.
    #[test]
    fn wire_rejects_metadata_with_huge_topic_count() {
        let mut frame = vec![0, 3, 0, 1, 0, 0, 0, 7, 0xff, 0xff];
        frame.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0, 0]);
        let err = validate_request(&frame, &WireLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::TooManyElements {
                    count: 0x7fff_ffff,
                    ..
                }
            ),
            "{err}"
        );
        // Under a limit large enough to allow the count, the bytes-present check refuses it.
        let unlimited = WireLimits {
            max_array_elements: u64::MAX,
            ..WireLimits::default()
        };
        let err = validate_request(&frame, &unlimited).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Truncated {
                    needed: 0x7fff_ffff,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "field MetadataRequest.Topics of a Metadata v1 request is truncated: it needs at \
             least 2147483647 more bytes at offset 14, but only 2 remain in the frame"
        );
    }

    /// The same attack in a flexible version, with a compact count as a 5-byte varint.
    #[test]
    fn wire_rejects_compact_huge_count() {
        // Metadata v12, header v2: client_id null, no header tags, then topics = 0xffffffff - 1.
        let frame = [
            0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0,
        ];
        let err = validate_request(&frame, &WireLimits::default()).unwrap_err();
        assert!(matches!(err, WireError::TooManyElements { .. }), "{err}");
        // A sixth varint byte, or high bits in the fifth, are not a varint at all.
        let frame = [
            0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x1f, 0, 0, 0,
        ];
        let err = validate_request(&frame, &WireLimits::default()).unwrap_err();
        assert!(
            matches!(err, WireError::InvalidVarint { offset: 11, .. }),
            "{err}"
        );
    }

    /// peek_header needs exactly 8 bytes and looks at nothing else.
    #[test]
    fn wire_peek_header_reads_only_the_fixed_prefix() {
        assert_eq!(
            peek_header(&[0, 18, 0, 9, 0, 0, 1, 2]).unwrap(),
            (18, 9, 258)
        );
        assert_eq!(
            peek_header(&[0, 18, 0, 9, 0, 0, 1]),
            Err(WireError::HeaderTruncated { len: 7 })
        );
        // An ApiVersions version we do not know is reported with what is needed to answer it.
        let err = validate_request(
            &[0, 18, 0, 9, 0, 0, 1, 2, 0xff, 0xff],
            &WireLimits::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            WireError::UnsupportedVersion {
                api: "ApiVersions",
                api_key: 18,
                api_version: 9,
                min: 0,
                max: 4
            }
        );
        let err =
            validate_request(&[0x7f, 0, 0, 0, 0, 0, 0, 0], &WireLimits::default()).unwrap_err();
        assert_eq!(err, WireError::UnsupportedApi { api_key: 0x7f00 });
    }

    /// The version queries agree with the tables, and say `None` outside them.
    #[test]
    fn wire_version_queries() {
        assert_eq!(supported_versions(18), Some((0, 4)));
        assert_eq!(supported_versions(3), Some((0, 13)));
        assert_eq!(supported_versions(1000), None);
        assert_eq!(request_is_flexible(18, 2), Some(false));
        assert_eq!(request_is_flexible(18, 3), Some(true));
        assert_eq!(request_is_flexible(18, 5), None);
        assert_eq!(request_is_flexible(17, 1), Some(false));
        assert_eq!(request_header_version(60, 0), Some(2));
        assert_eq!(request_header_version(47, 0), Some(1));
        assert_eq!(api_name(1), Some("Fetch"));
        assert_eq!(supported_api_keys().count(), 40);
    }
}
