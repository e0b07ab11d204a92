//! Property tests: hostile frames never panic the validator, and every frame it accepts is one
//! `kafka-protocol` decodes without error, to the last byte.
//!
//! The decode runs inside the test process, so an accepted frame that made `kafka-protocol`
//! reserve a huge array would abort the whole suite rather than fail one case.

use std::mem::size_of;
use std::sync::OnceLock;

use kafka_protocol::messages::*;
use proptest::prelude::*;

use super::conformance::{corpus, decode_with_kafka_protocol, Sample};
use super::*;

fn samples() -> &'static [Sample] {
    static SAMPLES: OnceLock<Vec<Sample>> = OnceLock::new();
    SAMPLES.get_or_init(corpus)
}

/// Validates `frame`; if accepted, decodes it with kafka-protocol, which must succeed and use
/// every byte up to the trailing bytes the validator reported. Returns whether the frame was
/// accepted.
fn check(frame: &[u8]) -> bool {
    let Ok(info) = validate_request(frame, &WireLimits::default()) else {
        return false;
    };
    match decode_with_kafka_protocol(frame) {
        Ok((header, _, left)) => {
            assert_eq!(
                left, info.trailing_bytes,
                "accepted frame left {left} bytes undecoded: {frame:?}"
            );
            assert_eq!(header.request_api_key, info.api_key);
            assert_eq!(header.correlation_id, info.correlation_id);
        }
        Err(e) => panic!("accepted frame does not decode: {e}\n{frame:?}"),
    }
    true
}

/// One edit to a frame.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    /// Overwrite with a big-endian i32: where it lands on a length or count, it lies.
    Int32(usize, i32),
    /// Overwrite with a 5-byte varint of `u32::MAX - 1` (a compact count of 2^32 - 3).
    HugeVarint(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (at, 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (at, any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        at.prop_map(Mutation::Remove),
        (
            at,
            prop_oneof![
                Just(i32::MAX),
                Just(-1),
                Just(-2),
                Just(0x10000),
                any::<i32>()
            ]
        )
            .prop_map(|(i, n)| Mutation::Int32(i, n)),
        at.prop_map(Mutation::HugeVarint),
        at.prop_map(Mutation::Truncate),
    ]
}

fn apply(frame: &mut Vec<u8>, m: &Mutation) {
    let len = frame.len().max(1);
    let overwrite = |frame: &mut Vec<u8>, i: usize, bytes: &[u8]| {
        for (k, b) in bytes.iter().enumerate() {
            if let Some(slot) = frame.get_mut(i + k) {
                *slot = *b;
            }
        }
    };
    match *m {
        Mutation::Set(i, b) => overwrite(frame, i % len, &[b]),
        Mutation::Flip(i, bit) => {
            if let Some(slot) = frame.get_mut(i % len) {
                *slot ^= 1 << bit;
            }
        }
        Mutation::Insert(i, b) => frame.insert(i % (frame.len() + 1), b),
        Mutation::Remove(i) => {
            if !frame.is_empty() {
                frame.remove(i % len);
            }
        }
        Mutation::Int32(i, n) => overwrite(frame, i % len, &n.to_be_bytes()),
        Mutation::HugeVarint(i) => overwrite(frame, i % len, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
        Mutation::Truncate(i) => frame.truncate(i % len),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic the validator.
    #[test]
    fn wire_random_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..96)) {
        check(&frame);
    }

    /// A real header (any API we cover, any version near its range) over a random body: the
    /// body is parsed by schema, so this reaches deep into each message's grammar.
    #[test]
    fn wire_random_bodies_never_panic(
        api in 0usize..39,
        version_offset in -1i16..20,
        flexible_header in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let api_key = supported_api_keys().nth(api).unwrap();
        let (min, _) = supported_versions(api_key).unwrap();
        let version = min + version_offset;
        let mut frame = Vec::new();
        frame.extend_from_slice(&api_key.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&7i32.to_be_bytes());
        frame.extend_from_slice(&[0xff, 0xff]);
        if flexible_header {
            frame.push(0);
        }
        frame.extend_from_slice(&body);
        check(&frame);
    }

    /// Valid frames of every API and version, edited a few times: never a panic, and whatever
    /// is still accepted decodes completely.
    #[test]
    fn wire_mutated_frames_never_panic(
        pick in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let sample = &samples()[pick % samples().len()];
        let mut frame = sample.frame.to_vec();
        for m in &mutations {
            apply(&mut frame, m);
        }
        check(&frame);
    }
}

/// Every position of every sample frame, overwritten with a lying count (as `i32` and as a
/// compact varint): the validator never panics, and nothing it accepts trips the decoder. This
/// is the deterministic sweep of exactly the attack the module exists for.
#[test]
fn wire_lying_counts_at_every_offset() {
    let mut accepted = 0usize;
    let mut tried = 0usize;
    for sample in samples() {
        let clean = sample.frame.to_vec();
        for i in 0..clean.len() {
            for lie in [
                &0x7fff_ffffi32.to_be_bytes()[..],
                &[0xfe, 0xff, 0xff, 0xff, 0x0f],
            ] {
                let mut frame = clean.clone();
                let end = (i + lie.len()).min(frame.len());
                frame[i..end].copy_from_slice(&lie[..end - i]);
                tried += 1;
                accepted += usize::from(check(&frame));
            }
        }
    }
    // Most overwrites land in fixed-width fields or string bytes and stay valid; the point is
    // that the ones landing on counts were all refused rather than decoded.
    assert!(tried > 50_000, "{tried}");
    assert!(accepted > 0 && accepted < tried, "{accepted} of {tried}");
}

/// The bound in the module invariant: a decode of an accepted frame reserves at most
/// `max_array_elements` × the largest array element type. This lists the element type of every
/// array in every request we cover and checks the figure the documentation of
/// [`WireLimits::max_array_elements`] relies on.
#[test]
fn wire_array_element_types_are_small() {
    use kafka_protocol::protocol::StrBytes;
    macro_rules! sizes {
        ($($t:ty),* $(,)?) => { [$((stringify!($t), size_of::<$t>())),*] };
    }
    let sizes = sizes![
        i32,
        StrBytes,
        BrokerId,
        GroupId,
        TopicName,
        add_partitions_to_txn_request::AddPartitionsToTxnTopic,
        add_partitions_to_txn_request::AddPartitionsToTxnTransaction,
        alter_configs_request::AlterConfigsResource,
        alter_configs_request::AlterableConfig,
        consumer_group_heartbeat_request::TopicPartitions,
        create_acls_request::AclCreation,
        create_partitions_request::CreatePartitionsAssignment,
        create_partitions_request::CreatePartitionsTopic,
        create_topics_request::CreatableReplicaAssignment,
        create_topics_request::CreatableTopic,
        create_topics_request::CreatableTopicConfig,
        delete_acls_request::DeleteAclsFilter,
        delete_records_request::DeleteRecordsPartition,
        delete_records_request::DeleteRecordsTopic,
        delete_topics_request::DeleteTopicState,
        describe_configs_request::DescribeConfigsResource,
        describe_log_dirs_request::DescribableLogDirTopic,
        describe_producers_request::TopicRequest,
        elect_leaders_request::TopicPartitions,
        fetch_request::FetchPartition,
        fetch_request::FetchTopic,
        fetch_request::ForgottenTopic,
        incremental_alter_configs_request::AlterConfigsResource,
        incremental_alter_configs_request::AlterableConfig,
        join_group_request::JoinGroupRequestProtocol,
        leave_group_request::MemberIdentity,
        list_offsets_request::ListOffsetsPartition,
        list_offsets_request::ListOffsetsTopic,
        metadata_request::MetadataRequestTopic,
        offset_commit_request::OffsetCommitRequestPartition,
        offset_commit_request::OffsetCommitRequestTopic,
        offset_delete_request::OffsetDeleteRequestPartition,
        offset_delete_request::OffsetDeleteRequestTopic,
        offset_fetch_request::OffsetFetchRequestGroup,
        offset_fetch_request::OffsetFetchRequestTopic,
        offset_fetch_request::OffsetFetchRequestTopics,
        produce_request::PartitionProduceData,
        produce_request::TopicProduceData,
        sync_group_request::SyncGroupRequestAssignment,
        txn_offset_commit_request::TxnOffsetCommitRequestPartition,
        txn_offset_commit_request::TxnOffsetCommitRequestTopic,
    ];
    let (name, largest) = sizes.iter().max_by_key(|(_, size)| *size).copied().unwrap();
    assert!(largest <= 200, "{name} is {largest} bytes");
}
