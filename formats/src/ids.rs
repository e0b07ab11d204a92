//! Newtypes for the numbers that name positions and owners in Kafka's model: offsets, leader
//! epochs, producer ids and epochs, node ids.
//!
//! They cross every crate boundary (log → server, log → tiering, tiering → server), where a bare
//! `i64` could be an offset, a timestamp or a byte count and a bare `i32` a partition, an epoch or
//! a node. Each is `Copy`, ordered, and prints and serialises as its bare number (`serde
//! transparent`), so the manifest's JSON and the checkpoint files keep their format.
//!
//! Arithmetic is only what the log needs: an [`Offset`] moves by a count (`offset + 1`) and the
//! distance between two offsets is a count (`end - start: i64`); epochs and ids have no
//! arithmetic except [`LeaderEpoch::next`]. Wire and file formats read and write the raw value
//! through [`get`](Offset::get) and [`new`](Offset::new) at their edge.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($raw:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name($raw);

        impl $name {
            /// Wraps a raw value read from the wire or a file.
            pub const fn new(raw: $raw) -> Self {
                Self(raw)
            }

            /// The raw value, for the wire or a file.
            pub const fn get(self) -> $raw {
                self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = <$raw as std::str::FromStr>::Err;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                text.parse().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type! {
    /// A position in one partition's log: the offset of a record, or an exclusive end (the log end
    /// offset, a high watermark). Kafka's sentinel for "none" is -1 ([`Offset::UNKNOWN`]).
    Offset(i64)
}

id_type! {
    /// The epoch of a partition's leader, stamped into every batch it appends
    /// (`partitionLeaderEpoch`). Kafka's sentinel for "none" is -1 ([`LeaderEpoch::UNDEFINED`]).
    LeaderEpoch(i32)
}

id_type! {
    /// An idempotent or transactional producer's id. -1 ([`ProducerId::NONE`]) in batches of
    /// producers without one.
    ProducerId(i64)
}

id_type! {
    /// A producer id's epoch, bumped to fence older instances. -1 ([`ProducerEpoch::NONE`]) in
    /// batches of producers without one.
    ProducerEpoch(i16)
}

id_type! {
    /// A broker's or controller's `node.id`.
    NodeId(i32)
}

impl Offset {
    pub const ZERO: Offset = Offset(0);
    /// Kafka's -1: no such offset.
    pub const UNKNOWN: Offset = Offset(-1);
    /// No lower bound.
    pub const MIN: Offset = Offset(i64::MIN);
    /// No upper bound (a read limit that does not limit).
    pub const MAX: Offset = Offset(i64::MAX);

    /// The offset after this one.
    pub const fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl Add<i64> for Offset {
    type Output = Offset;

    fn add(self, count: i64) -> Offset {
        Offset(self.0 + count)
    }
}

impl AddAssign<i64> for Offset {
    fn add_assign(&mut self, count: i64) {
        self.0 += count;
    }
}

impl Sub<i64> for Offset {
    type Output = Offset;

    fn sub(self, count: i64) -> Offset {
        Offset(self.0 - count)
    }
}

impl SubAssign<i64> for Offset {
    fn sub_assign(&mut self, count: i64) {
        self.0 -= count;
    }
}

/// The number of offsets from `start` up to (not including) `self`.
impl Sub<Offset> for Offset {
    type Output = i64;

    fn sub(self, start: Offset) -> i64 {
        self.0 - start.0
    }
}

impl LeaderEpoch {
    /// Kafka's `UNDEFINED_EPOCH`.
    pub const UNDEFINED: LeaderEpoch = LeaderEpoch(-1);

    /// A real epoch (≥ 0), not the "none" of batches written without one.
    pub const fn is_defined(self) -> bool {
        self.0 >= 0
    }

    /// The epoch a new leader takes.
    pub const fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0 + 1)
    }
}

impl ProducerId {
    /// Kafka's `NO_PRODUCER_ID`.
    pub const NONE: ProducerId = ProducerId(-1);
}

impl ProducerEpoch {
    /// Kafka's `NO_PRODUCER_EPOCH`.
    pub const NONE: ProducerEpoch = ProducerEpoch(-1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_move_by_counts_and_measure_distances() {
        let start = Offset::new(10);
        let end = start + 5;
        assert_eq!(end, Offset::new(15));
        assert_eq!(end - start, 5);
        assert_eq!(end - 1, Offset::new(14));
        assert_eq!(start.next(), Offset::new(11));
        assert!(start < end);
    }

    #[test]
    fn ids_print_and_serialise_as_bare_numbers() {
        assert_eq!(
            format!("{} {:?}", Offset::new(7), LeaderEpoch::new(3)),
            "7 3"
        );
        assert_eq!(serde_json::to_string(&Offset::new(42)).unwrap(), "42");
        let epoch: LeaderEpoch = serde_json::from_str("5").unwrap();
        assert_eq!(epoch, LeaderEpoch::new(5));
        assert_eq!(LeaderEpoch::UNDEFINED.next(), LeaderEpoch::new(0));
    }
}
