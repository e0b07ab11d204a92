//! The schema language for request bodies, and the lookup from API key to message.
//!
//! A message is a tree of [`Struct`]s. Each field states the versions it is present in, and,
//! when it may be null, the versions in which null is allowed; a struct lists its known tagged
//! fields separately, by tag number. Whether a string, bytes or array length is an `i16`/`i32` or
//! a compact unsigned varint, and whether a struct ends with a tagged-field section, is not stated
//! per field: it follows from the message's flexible versions, exactly as in Kafka's own JSON
//! message definitions (`flexibleVersions`). The tables live in [`super::messages`].

/// An inclusive range of API versions; empty when `min > max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Versions {
    pub(crate) min: i16,
    pub(crate) max: i16,
}

impl Versions {
    pub(crate) const fn contains(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// Every version (Kafka's `"0+"`).
pub(crate) const ALL: Versions = Versions {
    min: 0,
    max: i16::MAX,
};

/// No version at all: for messages that are never flexible and fields that are never nullable.
pub(crate) const NEVER: Versions = Versions { min: 1, max: 0 };

/// `min` and every later version (Kafka's `"N+"`).
pub(crate) const fn since(min: i16) -> Versions {
    Versions { min, max: i16::MAX }
}

/// Every version up to and including `max`.
pub(crate) const fn until(max: i16) -> Versions {
    Versions { min: 0, max }
}

/// `min` to `max`, inclusive (Kafka's `"N-M"`).
pub(crate) const fn range(min: i16, max: i16) -> Versions {
    Versions { min, max }
}

/// The wire type of a field. Lengths and counts are `i16` (strings) or `i32` (bytes, arrays) in
/// non-flexible versions and `unsigned varint (n + 1)` in flexible ones; `-1` / `0` mean null.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    Uuid,
    String,
    Bytes,
    /// A record batch set (Produce): on the wire exactly `Bytes`. Its content is validated by
    /// [`crate::batch`] when the handler gets to it, not here.
    Records,
    /// `[]int32`.
    Int32Array,
    /// `[]string`; the elements themselves are never null.
    StringArray,
    /// `[]SomeStruct`.
    StructArray(&'static Struct),
    /// A struct embedded by value. In the requests we cover it only occurs as the value of a
    /// tagged field (Fetch's `ReplicaState`).
    Struct(&'static Struct),
}

/// One field of a struct, in wire order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    /// Kafka's field name, as in the JSON message definitions (`"TopicId"`).
    pub(crate) name: &'static str,
    pub(crate) ty: Ty,
    /// The versions in which the field is on the wire.
    pub(crate) versions: Versions,
    /// The versions in which the field may be null (only meaningful for strings, bytes, records
    /// and arrays).
    pub(crate) nullable: Versions,
}

impl Field {
    pub(crate) const fn nullable(self, nullable: Versions) -> Field {
        Field { nullable, ..self }
    }
}

pub(crate) const fn field(name: &'static str, ty: Ty, versions: Versions) -> Field {
    Field {
        name,
        ty,
        versions,
        nullable: NEVER,
    }
}

/// A known tagged field: in a flexible version, its value is parsed by its schema (and must fill
/// exactly the size it declares); any other tag is skipped by its size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tagged {
    pub(crate) tag: u32,
    pub(crate) field: Field,
}

impl Tagged {
    pub(crate) const fn nullable(self, nullable: Versions) -> Tagged {
        Tagged {
            field: self.field.nullable(nullable),
            ..self
        }
    }
}

pub(crate) const fn tagged(tag: u32, name: &'static str, ty: Ty, versions: Versions) -> Tagged {
    Tagged {
        tag,
        field: field(name, ty, versions),
    }
}

/// A struct: its fields in wire order, then (in flexible versions) a tagged-field section.
#[derive(Debug)]
pub(crate) struct Struct {
    /// Kafka's struct name (`"MetadataRequestTopic"`), used in error messages.
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [Field],
    /// Known tagged fields, in ascending tag order.
    pub(crate) tagged: &'static [Tagged],
}

impl Struct {
    pub(crate) fn known_tag(&self, tag: u32) -> Option<&Tagged> {
        self.tagged.iter().find(|t| t.tag == tag)
    }
}

/// A request message: which API key and versions it covers, and its body.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) api_key: i16,
    /// Kafka's API name (`"Metadata"`).
    pub(crate) name: &'static str,
    pub(crate) versions: Versions,
    /// Versions that use compact lengths, tagged fields and request header v2.
    pub(crate) flexible: Versions,
    pub(crate) body: &'static Struct,
}

pub(crate) const fn message(
    api_key: i16,
    name: &'static str,
    versions: Versions,
    flexible: Versions,
    body: &'static Struct,
) -> Message {
    Message {
        api_key,
        name,
        versions,
        flexible,
        body,
    }
}

/// The schema of requests with `api_key`, if we have one.
pub(crate) fn lookup(api_key: i16) -> Option<&'static Message> {
    super::messages::MESSAGES
        .iter()
        .find(|m| m.api_key == api_key)
}

#[cfg(test)]
mod tests {
    use super::super::messages::MESSAGES;
    use super::*;

    /// Visits every struct reachable from `s`.
    fn walk(s: &'static Struct, visit: &mut dyn FnMut(&'static Struct)) {
        visit(s);
        let fields = s.fields.iter().chain(s.tagged.iter().map(|t| &t.field));
        for f in fields {
            if let Ty::StructArray(inner) | Ty::Struct(inner) = f.ty {
                walk(inner, visit);
            }
        }
    }

    /// How many structs deep `s` nests, itself included.
    fn depth(s: &Struct) -> usize {
        let fields = s.fields.iter().chain(s.tagged.iter().map(|t| &t.field));
        let inner = fields.filter_map(|f| match f.ty {
            Ty::StructArray(inner) | Ty::Struct(inner) => Some(depth(inner)),
            _ => None,
        });
        1 + inner.max().unwrap_or(0)
    }

    /// The encoded width of fixed-size types.
    fn fixed_width(ty: Ty) -> Option<usize> {
        match ty {
            Ty::Bool | Ty::Int8 => Some(1),
            Ty::Int16 => Some(2),
            Ty::Int32 => Some(4),
            Ty::Int64 => Some(8),
            Ty::Uuid => Some(16),
            _ => None,
        }
    }

    /// The fewest bytes an element of `s` can occupy in `version`.
    fn min_encoded_len(s: &Struct, version: i16, flexible: bool) -> usize {
        let fields: usize = s
            .fields
            .iter()
            .filter(|f| f.versions.contains(version))
            .map(|f| match fixed_width(f.ty) {
                Some(w) => w,
                None if flexible => 1,
                None if matches!(f.ty, Ty::String) => 2,
                None => 4,
            })
            .sum();
        fields + usize::from(flexible)
    }

    /// The tables are well formed: keys unique, version ranges non-empty and inside the
    /// message's, tags ascending and unique, nullability only on types that have a null, and
    /// nesting shallow (it bounds the validator's recursion).
    #[test]
    fn wire_schema_tables_are_well_formed() {
        for (i, m) in MESSAGES.iter().enumerate() {
            assert!(
                MESSAGES[..i].iter().all(|o| o.api_key != m.api_key),
                "duplicate api key {}",
                m.api_key
            );
            assert!(m.versions.min <= m.versions.max, "{} versions", m.name);
            assert!(
                depth(m.body) <= 3,
                "{} nests {} deep",
                m.name,
                depth(m.body)
            );
            walk(m.body, &mut |s| {
                for f in s.fields.iter().chain(s.tagged.iter().map(|t| &t.field)) {
                    let lo = f.versions.min.max(m.versions.min);
                    let hi = f.versions.max.min(m.versions.max);
                    assert!(lo <= hi, "{}.{} is never present", s.name, f.name);
                    if f.nullable.min <= f.nullable.max {
                        assert!(
                            fixed_width(f.ty).is_none() && !matches!(f.ty, Ty::Struct(_)),
                            "{}.{} cannot be null",
                            s.name,
                            f.name
                        );
                    }
                }
                for w in s.tagged.windows(2) {
                    assert!(w[0].tag < w[1].tag, "{} tags not ascending", s.name);
                }
                for t in s.tagged {
                    assert!(
                        t.field.versions.min >= m.flexible.min,
                        "{}.{} is tagged outside flexible versions",
                        s.name,
                        t.field.name
                    );
                }
            });
        }
    }

    /// Every array element occupies at least one byte in every version, so a count that passes
    /// the validator's `count <= remaining bytes` pre-check is a real bound, and no element
    /// loop can spin without consuming input.
    #[test]
    fn wire_schema_array_elements_are_never_empty() {
        for m in MESSAGES {
            for v in m.versions.min..=m.versions.max {
                let flexible = m.flexible.contains(v);
                walk(m.body, &mut |s| {
                    for f in s.fields {
                        if let Ty::StructArray(e) = f.ty {
                            if f.versions.contains(v) {
                                assert!(
                                    min_encoded_len(e, v, flexible) >= 1,
                                    "{} v{v}: {} elements can be empty",
                                    m.name,
                                    e.name
                                );
                            }
                        }
                    }
                });
            }
        }
    }
}
