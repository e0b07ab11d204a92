//! The validator: a recursive walk of the schema over a byte cursor. It allocates nothing; its
//! recursion depth is the nesting depth of the static schema (three structs, checked by the
//! schema tests), never a function of the input; every loop consumes at least one byte per
//! iteration, and array loops are entered only after their count passed the element budget and
//! the bytes-left check.

use super::error::{FieldPath, WireError};
use super::schema::{Field, Message, Struct, Ty};
use super::{RequestFrameInfo, WireLimits};

/// Pseudo field names for parts of the wire that are not schema fields.
const TAGGED_FIELDS: &str = "_tagged_fields";
const HEADER: &str = "RequestHeader";

/// A position in the frame, with an end that is either the frame's end or, inside a tagged
/// field, the end of the size that field declared.
struct Cursor<'a> {
    frame: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn take(&mut self, n: u64, at: FieldPath) -> Result<&'a [u8], WireError> {
        let remaining = self.remaining();
        match usize::try_from(n) {
            Ok(n) if n <= remaining => {
                let bytes = &self.frame[self.pos..self.pos + n];
                self.pos += n;
                Ok(bytes)
            }
            _ => Err(WireError::Truncated {
                at,
                offset: self.pos,
                needed: n,
                remaining,
            }),
        }
    }

    fn i16(&mut self, at: FieldPath) -> Result<i16, WireError> {
        let b = self.take(2, at)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, at: FieldPath) -> Result<i32, WireError> {
        let b = self.take(4, at)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned varint that fits a `u32`. Stricter than Kafka's readers, which let a fifth
    /// byte's high bits fall off: such a value was never written by an honest encoder.
    fn uvarint(&mut self, at: FieldPath) -> Result<u32, WireError> {
        let start = self.pos;
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.take(1, at)?[0];
            if i == 4 && b > 0x0f {
                return Err(WireError::InvalidVarint { at, offset: start });
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        // Unreachable: the fifth byte either fails the check above or ends the varint.
        Err(WireError::InvalidVarint { at, offset: start })
    }
}

/// A length or count as read from the wire, before nullability is applied.
enum Length {
    Null,
    Some(u64),
}

/// Everything the walk needs besides the cursor: which request this is, and the budgets.
struct Walk<'l> {
    message: &'static Message,
    version: i16,
    flexible: bool,
    limits: &'l WireLimits,
    array_elements: u64,
    tagged_fields: u64,
}

impl Walk<'_> {
    fn path(&self, structure: &'static str, field: &'static str) -> FieldPath {
        FieldPath {
            api: self.message.name,
            api_version: self.version,
            structure,
            field,
        }
    }

    /// Reads the length prefix of a string (`wide == false`), bytes or array (`wide == true`).
    fn length(&self, c: &mut Cursor<'_>, wide: bool, at: FieldPath) -> Result<Length, WireError> {
        let raw: i64 = if self.flexible {
            // Compact: unsigned varint holding length + 1, 0 meaning null.
            i64::from(c.uvarint(at)?) - 1
        } else if wide {
            i64::from(c.i32(at)?)
        } else {
            i64::from(c.i16(at)?)
        };
        match raw {
            -1 => Ok(Length::Null),
            n if n < -1 => Err(WireError::NegativeLength { at, length: n }),
            n => Ok(Length::Some(n.unsigned_abs())),
        }
    }

    /// Reads a length and refuses null where the field does not allow it.
    fn non_null_length(
        &self,
        c: &mut Cursor<'_>,
        wide: bool,
        nullable: bool,
        at: FieldPath,
    ) -> Result<Option<u64>, WireError> {
        match self.length(c, wide, at)? {
            Length::Some(n) => Ok(Some(n)),
            Length::Null if nullable => Ok(None),
            Length::Null => Err(WireError::UnexpectedNull { at }),
        }
    }

    fn string(&self, c: &mut Cursor<'_>, nullable: bool, at: FieldPath) -> Result<(), WireError> {
        if let Some(n) = self.non_null_length(c, false, nullable, at)? {
            let offset = c.pos;
            let bytes = c.take(n, at)?;
            // kafka-protocol refuses non-UTF-8 strings; refusing them here keeps "validated"
            // meaning "decodes".
            if std::str::from_utf8(bytes).is_err() {
                return Err(WireError::InvalidUtf8 { at, offset });
            }
        }
        Ok(())
    }

    /// Reads an array count, charges it to the element budget and checks it against the bytes
    /// left (every element takes at least one byte: see the schema tests). `None` is null.
    fn array_count(
        &mut self,
        c: &mut Cursor<'_>,
        nullable: bool,
        at: FieldPath,
    ) -> Result<Option<u64>, WireError> {
        let Some(count) = self.non_null_length(c, true, nullable, at)? else {
            return Ok(None);
        };
        let limit = self.limits.max_array_elements;
        match self.array_elements.checked_add(count) {
            Some(total) if total <= limit => self.array_elements = total,
            _ => return Err(WireError::TooManyElements { at, count, limit }),
        }
        if count > c.remaining() as u64 {
            return Err(WireError::Truncated {
                at,
                offset: c.pos,
                needed: count,
                remaining: c.remaining(),
            });
        }
        Ok(Some(count))
    }

    fn value(
        &mut self,
        c: &mut Cursor<'_>,
        s: &'static Struct,
        f: &'static Field,
    ) -> Result<(), WireError> {
        let at = self.path(s.name, f.name);
        let nullable = f.nullable.contains(self.version);
        match f.ty {
            Ty::Bool | Ty::Int8 => c.take(1, at).map(drop),
            Ty::Int16 => c.take(2, at).map(drop),
            Ty::Int32 => c.take(4, at).map(drop),
            Ty::Int64 => c.take(8, at).map(drop),
            Ty::Uuid => c.take(16, at).map(drop),
            Ty::String => self.string(c, nullable, at),
            Ty::Bytes | Ty::Records => {
                if let Some(n) = self.non_null_length(c, true, nullable, at)? {
                    c.take(n, at)?;
                }
                Ok(())
            }
            Ty::Int32Array => {
                if let Some(count) = self.array_count(c, nullable, at)? {
                    c.take(count * 4, at)?;
                }
                Ok(())
            }
            Ty::StringArray => {
                let count = self.array_count(c, nullable, at)?.unwrap_or(0);
                for _ in 0..count {
                    self.string(c, false, at)?;
                }
                Ok(())
            }
            Ty::StructArray(inner) => {
                let count = self.array_count(c, nullable, at)?.unwrap_or(0);
                for _ in 0..count {
                    self.structure(c, inner)?;
                }
                Ok(())
            }
            Ty::Struct(inner) => self.structure(c, inner),
        }
    }

    fn structure(&mut self, c: &mut Cursor<'_>, s: &'static Struct) -> Result<(), WireError> {
        for f in s.fields {
            if f.versions.contains(self.version) {
                self.value(c, s, f)?;
            }
        }
        if self.flexible {
            self.tagged_fields(c, s.name, Some(s))?;
        }
        Ok(())
    }

    /// A tagged-field section: a count, then `(tag, size, value)` with strictly increasing tags.
    /// Known tags of `s` are parsed by their schema and must fill their declared size exactly,
    /// so a decoder that reads them by type (ignoring the size) ends where we did; unknown tags
    /// are skipped by size.
    fn tagged_fields(
        &mut self,
        c: &mut Cursor<'_>,
        structure: &'static str,
        s: Option<&'static Struct>,
    ) -> Result<(), WireError> {
        let at = self.path(structure, TAGGED_FIELDS);
        let count = u64::from(c.uvarint(at)?);
        let limit = self.limits.max_tagged_fields;
        match self.tagged_fields.checked_add(count) {
            Some(total) if total <= limit => self.tagged_fields = total,
            _ => return Err(WireError::TooManyTaggedFields { at, count, limit }),
        }
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let tag = c.uvarint(at)?;
            if let Some(previous) = previous.filter(|&p| tag <= p) {
                return Err(WireError::TagOutOfOrder { at, tag, previous });
            }
            previous = Some(tag);
            let size = c.uvarint(at)?;
            let start = c.pos;
            c.take(u64::from(size), at)?;
            let Some((s, known)) = s.and_then(|s| s.known_tag(tag).map(|k| (s, k))) else {
                continue;
            };
            if !known.field.versions.contains(self.version) {
                return Err(WireError::TagNotValidForVersion {
                    at: self.path(s.name, known.field.name),
                    tag,
                });
            }
            let mut inner = Cursor {
                frame: c.frame,
                pos: start,
                end: c.pos,
            };
            self.value(&mut inner, s, &known.field)?;
            if inner.pos != inner.end {
                return Err(WireError::TaggedFieldSizeMismatch {
                    at: self.path(s.name, known.field.name),
                    tag,
                    declared: size,
                    actual: inner.pos - start,
                });
            }
        }
        Ok(())
    }
}

/// Reads the 8 bytes every request header starts with.
pub(super) fn peek_header(frame: &[u8]) -> Result<(i16, i16, i32), WireError> {
    match frame {
        [k0, k1, v0, v1, c0, c1, c2, c3, ..] => Ok((
            i16::from_be_bytes([*k0, *k1]),
            i16::from_be_bytes([*v0, *v1]),
            i32::from_be_bytes([*c0, *c1, *c2, *c3]),
        )),
        _ => Err(WireError::HeaderTruncated { len: frame.len() }),
    }
}

pub(super) fn validate_request(
    frame: &[u8],
    limits: &WireLimits,
) -> Result<RequestFrameInfo, WireError> {
    let (api_key, api_version, correlation_id) = peek_header(frame)?;
    let message = super::schema::lookup(api_key).ok_or(WireError::UnsupportedApi { api_key })?;
    if !message.versions.contains(api_version) {
        return Err(WireError::UnsupportedVersion {
            api: message.name,
            api_key,
            api_version,
            min: message.versions.min,
            max: message.versions.max,
        });
    }
    let flexible = message.flexible.contains(api_version);
    let mut walk = Walk {
        message,
        version: api_version,
        flexible,
        limits,
        array_elements: 0,
        tagged_fields: 0,
    };
    let mut c = Cursor {
        frame,
        pos: 8,
        end: frame.len(),
    };

    // Header v1: client_id is a nullable *non-compact* string; header v2 adds a tagged-field
    // section (with no known tags) but keeps client_id non-compact.
    let client_id = walk.path(HEADER, "ClientId");
    let id_len = c.i16(client_id)?;
    match id_len {
        -1 => {}
        n if n < -1 => {
            return Err(WireError::NegativeLength {
                at: client_id,
                length: i64::from(n),
            })
        }
        n => {
            let offset = c.pos;
            let id = c.take(n.unsigned_abs().into(), client_id)?;
            if std::str::from_utf8(id).is_err() {
                return Err(WireError::InvalidUtf8 {
                    at: client_id,
                    offset,
                });
            }
        }
    }
    if flexible {
        walk.tagged_fields(&mut c, HEADER, None)?;
    }
    let header_len = c.pos;

    walk.structure(&mut c, message.body)?;
    // Kafka's own request parsers ignore bytes after the body, and librdkafka 2.16 relies on it
    // (its Metadata v12 "all topics" request carries 3 extra bytes), so they are reported, not
    // refused. They are never parsed, so they cannot affect what decoding reserves.
    let trailing_bytes = frame.len() - c.pos;
    Ok(RequestFrameInfo {
        api_key,
        api_version,
        correlation_id,
        header_version: if flexible { 2 } else { 1 },
        header_len,
        array_elements: walk.array_elements,
        tagged_fields: walk.tagged_fields,
        trailing_bytes,
    })
}
