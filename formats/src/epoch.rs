//! Leader epochs as the local log and the remote tier both record them.

use serde::{Deserialize, Serialize};

use crate::ids::{LeaderEpoch, Offset};

/// A leader epoch and the first offset its leader appended (one line of Kafka's
/// `leader-epoch-checkpoint`). The local log keeps a list of them per partition; the remote tier
/// keeps, per segment, the entries that concern that segment. One type for both, so an entry
/// crosses from the log to an upload without a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}
