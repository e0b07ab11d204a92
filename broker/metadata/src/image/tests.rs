use proptest::prelude::*;

use super::*;
use crate::record::{Endpoint, LeaderChange, VersionedRecord};
use crate::snapshot::{decode_snapshot, encode_snapshot};

fn register(id: BrokerId, incarnation: u128) -> MetadataRecord {
    MetadataRecord::RegisterBroker(BrokerRegistration {
        broker_id: id,
        incarnation_id: Uuid::from_u128(incarnation),
        endpoints: vec![Endpoint {
            name: "PLAINTEXT".to_string(),
            host: "127.0.0.1".to_string(),
            port: 9000 + id as u16,
        }],
        rack: (id % 2 == 0).then(|| "even".to_string()),
    })
}

fn apply_all(image: &mut MetadataImage, records: &[MetadataRecord]) {
    for record in records {
        image
            .apply(record)
            .unwrap_or_else(|e| panic!("{record:?}: {e}"));
    }
}

#[test]
fn brokers_register_unfence_and_are_fenced_by_epoch() {
    let mut image = MetadataImage::default();
    apply_all(&mut image, &[register(1, 10), register(2, 20)]);
    assert_eq!((image.brokers[&1].epoch, image.brokers[&2].epoch), (0, 1));
    assert!(image.brokers[&1].fenced, "a new registration starts fenced");
    apply_all(
        &mut image,
        &[MetadataRecord::UnfenceBroker {
            broker_id: 1,
            broker_epoch: 0,
        }],
    );
    assert_eq!(image.unfenced_brokers().count(), 1);
    // A retried registration of the same incarnation changes nothing.
    apply_all(&mut image, &[register(1, 10)]);
    assert_eq!(image.brokers[&1].epoch, 0);
    assert!(!image.brokers[&1].fenced);
    // A restart is a new incarnation: new epoch, fenced; decisions about the old one are refused.
    apply_all(&mut image, &[register(1, 11)]);
    assert_eq!(image.brokers[&1].epoch, 2);
    let stale = MetadataRecord::UnfenceBroker {
        broker_id: 1,
        broker_epoch: 0,
    };
    let before = image.clone();
    assert!(matches!(
        image.apply(&stale),
        Err(ApplyError::StaleBrokerEpoch { .. })
    ));
    assert_eq!(image, before, "a refused record changes nothing");
    apply_all(
        &mut image,
        &[MetadataRecord::UnregisterBroker {
            broker_id: 2,
            broker_epoch: 1,
        }],
    );
    assert!(!image.brokers.contains_key(&2));
}

#[test]
fn partition_changes_are_fenced_by_partition_epoch_and_bump_leader_epochs() {
    let mut image = MetadataImage::default();
    let id = Uuid::from_u128(5);
    apply_all(
        &mut image,
        &[
            MetadataRecord::Topic {
                name: "t".to_string(),
                topic_id: id,
            },
            MetadataRecord::Partition(PartitionRecord {
                topic_id: id,
                partition: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                leader: 1,
                start_offset: None,
            }),
        ],
    );
    let shrink = |epoch, isr: Vec<BrokerId>, leader: Option<BrokerId>| {
        MetadataRecord::PartitionChange(PartitionChange {
            topic_id: id,
            partition: 0,
            partition_epoch: epoch,
            leader: leader.map(|leader| LeaderChange { leader }),
            isr: Some(isr),
            replicas: None,
        })
    };
    apply_all(&mut image, &[shrink(0, vec![1, 2], None)]);
    let p = &image.topic("t").unwrap().partitions[&0];
    assert_eq!((p.leader_epoch, p.partition_epoch), (0, 1));
    assert!(matches!(
        image.apply(&shrink(0, vec![1], None)),
        Err(ApplyError::StalePartitionEpoch { current: 1, .. })
    ));
    // The leader must stay in the ISR.
    assert!(matches!(
        image.apply(&shrink(1, vec![2], None)),
        Err(ApplyError::InvalidPartition { .. })
    ));
    apply_all(&mut image, &[shrink(1, vec![2], Some(2))]);
    let p = &image.topic("t").unwrap().partitions[&0];
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 2));
    // Partitions are numbered without gaps.
    let gap = MetadataRecord::Partition(PartitionRecord {
        topic_id: id,
        partition: 2,
        replicas: vec![1],
        isr: vec![1],
        leader: 1,
        start_offset: None,
    });
    assert!(image.apply(&gap).is_err());
}

#[test]
fn topics_names_and_configs() {
    let mut image = MetadataImage::default();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let topic = |name: &str, id| MetadataRecord::Topic {
        name: name.to_string(),
        topic_id: id,
    };
    let config = |topic: &str, value: Option<&str>| MetadataRecord::Config {
        resource: ConfigResource::Topic(topic.to_string()),
        name: "retention.ms".to_string(),
        value: value.map(str::to_string),
    };
    apply_all(&mut image, &[topic("t", a), config("t", Some("1000"))]);
    assert_eq!(image.topic("t").unwrap().configs["retention.ms"], "1000");
    assert!(image.apply(&topic("t", b)).is_err(), "a name is taken");
    assert!(image.apply(&topic("u", a)).is_err(), "an id is taken");
    assert!(image.apply(&config("nope", Some("1"))).is_err());
    apply_all(
        &mut image,
        &[MetadataRecord::RemoveTopic { topic_id: a }, topic("t", b)],
    );
    assert!(
        image.topic("t").unwrap().configs.is_empty(),
        "a recreated topic starts with no overrides"
    );
    let broker_default = |value: Option<&str>| MetadataRecord::Config {
        resource: ConfigResource::Broker(String::new()),
        name: "log.retention.ms".to_string(),
        value: value.map(str::to_string),
    };
    apply_all(&mut image, &[broker_default(Some("5"))]);
    assert_eq!(image.broker_configs[""]["log.retention.ms"], "5");
    apply_all(&mut image, &[broker_default(None)]);
    assert!(image.broker_configs.is_empty());
    let cluster = |id: &str| MetadataRecord::ClusterId {
        cluster_id: id.to_string(),
    };
    apply_all(&mut image, &[cluster("c1"), cluster("c1")]);
    assert!(image.apply(&cluster("c2")).is_err());
}

/// Records over a small universe, so that sequences collide: the same names, ids, brokers and
/// epochs come up again, valid and invalid records mixed.
fn record() -> impl Strategy<Value = MetadataRecord> {
    let broker = 0..4i32;
    let epoch = -1..6i64;
    let topic_id = (1..4u128).prop_map(Uuid::from_u128);
    let name = prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_string);
    // Distinct brokers, as a controller proposes (duplicates are refused, tested above).
    let replicas = prop::sample::subsequence(vec![0, 1, 2, 3], 0..=4).prop_shuffle();
    prop_oneof![
        1 => prop::sample::select(vec!["x", "y"]).prop_map(|c| MetadataRecord::ClusterId {
            cluster_id: c.to_string()
        }),
        1 => (broker.clone(), 0..3u128).prop_map(|(id, inc)| register(id, inc)),
        1 => (broker.clone(), epoch.clone()).prop_map(|(broker_id, broker_epoch)| {
            MetadataRecord::UnfenceBroker {
                broker_id,
                broker_epoch,
            }
        }),
        1 => (broker.clone(), epoch.clone()).prop_map(|(broker_id, broker_epoch)| {
            MetadataRecord::FenceBroker {
                broker_id,
                broker_epoch,
            }
        }),
        1 => (broker.clone(), epoch).prop_map(|(broker_id, broker_epoch)| {
            MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch,
            }
        }),
        2 => (name.clone(), topic_id.clone())
            .prop_map(|(name, topic_id)| MetadataRecord::Topic { name, topic_id }),
        4 => (
            topic_id.clone(),
            0..2i32,
            replicas.clone(),
            any::<prop::sample::Index>(),
            prop::option::weighted(0.3, 1..1_000_000i64)
        )
            .prop_map(|(topic_id, partition, replicas, leader, start_offset)| {
                let leader = if replicas.is_empty() {
                    NO_LEADER
                } else {
                    replicas[leader.index(replicas.len())]
                };
                MetadataRecord::Partition(PartitionRecord {
                    topic_id,
                    partition,
                    isr: replicas.clone(),
                    replicas,
                    leader,
                    start_offset,
                })
            }),
        6 => (
            topic_id.clone(),
            0..2i32,
            0..3i32,
            prop::option::weighted(0.8, -1..4i32),
            prop::option::weighted(0.3, replicas)
        )
            .prop_map(|(topic_id, partition, partition_epoch, leader, isr)| {
                MetadataRecord::PartitionChange(PartitionChange {
                    topic_id,
                    partition,
                    partition_epoch,
                    leader: leader.map(|leader| LeaderChange { leader }),
                    isr,
                    replicas: None,
                })
            }),
        1 => topic_id.prop_map(|topic_id| MetadataRecord::RemoveTopic { topic_id }),
        1 => (name, prop::option::of("[0-9]{1,3}")).prop_map(|(topic, value)| {
            MetadataRecord::Config {
                resource: ConfigResource::Topic(topic),
                name: "retention.ms".to_string(),
                value,
            }
        }),
        1 => (broker, 0..2000i64).prop_map(|(broker_id, next_producer_id)| {
            MetadataRecord::ProducerIds {
                broker_id,
                broker_epoch: 0,
                next_producer_id,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// After every record the invariants hold and the record survives its encoding; a refused
    /// record changes nothing; a snapshot taken at any point, restored and fed the rest of the
    /// log, ends in the same image as the node that applied everything, as does a replay from
    /// scratch.
    #[test]
    fn apply_snapshot_restore_and_replay_agree(
        records in prop::collection::vec(record(), 0..120),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(records.len() + 1);
        let mut full = MetadataImage::default();
        let mut snapshot = None;
        for (i, record) in records.iter().enumerate() {
            if i == cut {
                snapshot = Some(encode_snapshot(&full));
            }
            let before = full.clone();
            if full.apply(record).is_err() {
                prop_assert_eq!(&full, &before);
            }
            let checked = full.check_invariants();
            prop_assert!(checked.is_ok(), "{:?} after {:?}", checked, record);
            let stored = VersionedRecord::new(record.clone()).encode();
            prop_assert_eq!(&VersionedRecord::decode(&stored).unwrap().record, record);
        }
        let snapshot = snapshot.unwrap_or_else(|| encode_snapshot(&full));
        let mut restored = decode_snapshot(&snapshot).unwrap();
        for record in &records[cut.min(records.len())..] {
            let _ = restored.apply(record);
        }
        prop_assert_eq!(&restored, &full);
        let mut replayed = MetadataImage::default();
        for record in &records {
            let _ = replayed.apply(record);
        }
        prop_assert_eq!(&replayed, &full);
    }

    /// Any flipped byte of a snapshot is refused, never read as a different image.
    #[test]
    fn damaged_snapshots_are_refused(
        records in prop::collection::vec(record(), 0..40),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut image = MetadataImage::default();
        for record in &records {
            let _ = image.apply(record);
        }
        let mut bytes = encode_snapshot(&image);
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(decode_snapshot(&bytes).is_err());
    }
}

/// The generator is worth its name: over many sequences, a good share of records is accepted,
/// and partitions get created and change leaders, so the property above covers real changes
/// and not only refusals.
#[test]
fn random_sequences_exercise_real_changes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let sequences = prop::collection::vec(record(), 120);
    let (mut accepted, mut total, mut partitions, mut leader_changes) = (0, 0, 0, 0);
    for _ in 0..200 {
        let records = sequences.new_tree(&mut runner).unwrap().current();
        let mut image = MetadataImage::default();
        for record in &records {
            total += 1;
            let leaders = |image: &MetadataImage| -> i32 {
                image
                    .topics
                    .values()
                    .flat_map(|t| t.partitions.values())
                    .map(|p| p.leader_epoch)
                    .sum()
            };
            let before = leaders(&image);
            if image.apply(record).is_ok() {
                accepted += 1;
                if matches!(record, MetadataRecord::Partition(_)) {
                    partitions += 1;
                }
                leader_changes += (leaders(&image) - before).max(0);
            }
        }
    }
    assert!(accepted * 5 > total, "{accepted} of {total} accepted");
    assert!(
        partitions > 200 && leader_changes > 50,
        "{partitions} partitions, {leader_changes} leader changes"
    );
}

/// A fenced leader is replaced by the next unfenced replica of its ISR and leaves every ISR it
/// is not the last member of; the last member keeps its partition leaderless until it is back
/// (no unclean election); a fenced broker cannot be added to an ISR.
#[test]
fn fencing_elects_from_the_isr_and_unfencing_restores_the_last_leader() {
    let mut image = MetadataImage::default();
    for id in 1..=3 {
        apply_all(&mut image, &[register(id, id as u128)]);
        let epoch = image.brokers[&id].epoch;
        apply_all(
            &mut image,
            &[MetadataRecord::UnfenceBroker {
                broker_id: id,
                broker_epoch: epoch,
            }],
        );
    }
    let id = Uuid::from_u128(8);
    let partition = |partition, replicas: Vec<BrokerId>| {
        MetadataRecord::Partition(PartitionRecord {
            topic_id: id,
            partition,
            isr: replicas.clone(),
            leader: replicas[0],
            replicas,
            start_offset: None,
        })
    };
    apply_all(
        &mut image,
        &[
            MetadataRecord::Topic {
                name: "t".to_string(),
                topic_id: id,
            },
            partition(0, vec![1, 2, 3]),
            partition(1, vec![2, 1, 3]),
            partition(2, vec![1]),
        ],
    );
    let fence = |image: &MetadataImage, broker_id| MetadataRecord::FenceBroker {
        broker_id,
        broker_epoch: image.brokers[&broker_id].epoch,
    };
    let record = fence(&image, 1);
    apply_all(&mut image, &[record]);
    let parts = &image.topic("t").unwrap().partitions;
    let p0 = &parts[&0];
    assert_eq!((p0.leader, &p0.isr, p0.leader_epoch), (2, &vec![2, 3], 1));
    let p1 = &parts[&1];
    assert_eq!((p1.leader, &p1.isr, p1.leader_epoch), (2, &vec![2, 3], 0));
    assert_eq!(
        p1.partition_epoch, 1,
        "the ISR change alone moves the partition epoch"
    );
    let p2 = &parts[&2];
    assert_eq!(
        (p2.leader, &p2.isr, p2.leader_epoch),
        (NO_LEADER, &vec![1], 1)
    );
    // Broker 1 cannot rejoin an ISR while it is fenced.
    let rejoin = MetadataRecord::PartitionChange(PartitionChange {
        topic_id: id,
        partition: 0,
        partition_epoch: p0.partition_epoch,
        leader: None,
        isr: Some(vec![2, 3, 1]),
        replicas: None,
    });
    assert!(matches!(
        image.apply(&rejoin),
        Err(ApplyError::IneligibleReplica { broker_id: 1, .. })
    ));
    let unfence = MetadataRecord::UnfenceBroker {
        broker_id: 1,
        broker_epoch: image.brokers[&1].epoch,
    };
    apply_all(&mut image, &[unfence, rejoin]);
    let parts = &image.topic("t").unwrap().partitions;
    assert_eq!(parts[&0].isr, vec![2, 3, 1]);
    assert_eq!((parts[&2].leader, parts[&2].leader_epoch), (1, 2));
    // A restart (a new incarnation) of a leader is a fencing too; the replica order decides.
    apply_all(&mut image, &[register(2, 99)]);
    let p0 = &image.topic("t").unwrap().partitions[&0];
    assert_eq!((p0.leader, &p0.isr), (1, &vec![3, 1]));
    assert!(image.check_invariants().is_ok());
}
