//! Why a request frame was refused.

use std::fmt;

/// Where in a request a problem was found, named as in Kafka's message definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPath {
    /// Kafka's API name, e.g. `"Metadata"`.
    pub api: &'static str,
    pub api_version: i16,
    /// The struct holding the field, e.g. `"MetadataRequestTopic"` or `"RequestHeader"`.
    pub structure: &'static str,
    /// The field, e.g. `"Name"`; `"_tagged_fields"` for a tagged-field section.
    pub field: &'static str,
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "field {}.{} of a {} v{} request",
            self.structure, self.field, self.api, self.api_version
        )
    }
}

/// A request frame that [`super::validate_request`] refused. Every variant means the frame must
/// not be handed to a typed decoder; the broker answers with an error response when it can (see
/// [`super::peek_header`]) and otherwise closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(
        "the request frame is {len} bytes long, too short for the 8 bytes of api_key, \
         api_version and correlation_id that start every request header"
    )]
    HeaderTruncated { len: usize },

    #[error(
        "{at} is truncated: it needs at least {needed} more bytes at offset {offset}, \
         but only {remaining} remain in the frame"
    )]
    Truncated {
        at: FieldPath,
        offset: usize,
        needed: u64,
        remaining: usize,
    },

    #[error("API key {api_key} is not one this broker knows how to read")]
    UnsupportedApi { api_key: i16 },

    #[error(
        "{api} (API key {api_key}) version {api_version} is not supported; \
         versions {min} to {max} are"
    )]
    UnsupportedVersion {
        api: &'static str,
        api_key: i16,
        api_version: i16,
        min: i16,
        max: i16,
    },

    #[error("{at} has length {length}; only -1 (null) or a non-negative length is valid")]
    NegativeLength { at: FieldPath, length: i64 },

    #[error("{at} is null, but it is not nullable in this version")]
    UnexpectedNull { at: FieldPath },

    #[error(
        "{at} holds {count} elements, which would take the request past its limit of \
         {limit} array elements"
    )]
    TooManyElements {
        at: FieldPath,
        count: u64,
        limit: u64,
    },

    #[error(
        "{at} holds {count} tagged fields, which would take the request past its limit of \
         {limit} tagged fields"
    )]
    TooManyTaggedFields {
        at: FieldPath,
        count: u64,
        limit: u64,
    },

    #[error(
        "{at} holds an invalid unsigned varint at offset {offset}: longer than 5 bytes or \
         larger than u32::MAX"
    )]
    InvalidVarint { at: FieldPath, offset: usize },

    #[error("{at} is a string that is not valid UTF-8 (at offset {offset})")]
    InvalidUtf8 { at: FieldPath, offset: usize },

    #[error("{at}: tag {tag} comes after tag {previous}, but tags must be strictly increasing")]
    TagOutOfOrder {
        at: FieldPath,
        tag: u32,
        previous: u32,
    },

    #[error("{at} (tag {tag}) is a known tagged field, but not in this version")]
    TagNotValidForVersion { at: FieldPath, tag: u32 },

    #[error("{at} (tag {tag}) declares a size of {declared} bytes, but its value takes {actual}")]
    TaggedFieldSizeMismatch {
        at: FieldPath,
        tag: u32,
        declared: u32,
        actual: usize,
    },
}
