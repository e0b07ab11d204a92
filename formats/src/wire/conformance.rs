//! Conformance of the schemas with `kafka-protocol`, the decoder the broker runs after us.
//!
//! For every API and every version we cover, requests with real content are encoded by
//! `kafka-protocol` (header and body), and must be accepted by [`validate_request`], report the
//! right header, decode back with `kafka-protocol` to the same request, and be refused when cut
//! short or extended by a byte. The builders set each field only in the versions it exists in
//! (the encoder refuses anything else); a wrong version range in our schema then shows up as a
//! misparse of a frame `kafka-protocol` wrote.

use super::*;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Message, StrBytes, VersionRange};
use uuid::Uuid;

/// One encoded request of the corpus, with what went into it.
pub(super) struct Sample {
    pub(super) api_key: i16,
    pub(super) api_version: i16,
    pub(super) correlation_id: i32,
    pub(super) header_len: usize,
    pub(super) request: RequestKind,
    pub(super) frame: Bytes,
}

/// What a builder is asked for: a version, and whether to fill nullable fields and tagged
/// fields (`full`) or leave them null and the arrays short (`!full`).
#[derive(Clone, Copy)]
struct Ask {
    v: i16,
    full: bool,
    flexible: bool,
}

impl Ask {
    /// Unknown tagged fields go on every struct of full, flexible samples.
    fn tags(self) -> bool {
        self.full && self.flexible
    }

    /// `Some(x)` when full, else null, if null is allowed in this version.
    fn opt<T>(self, x: T, null_allowed: bool) -> Option<T> {
        (self.full || !null_allowed).then_some(x)
    }
}

/// Adds two unknown tagged fields to a kafka-protocol struct when the sample asks for them.
/// Tags 9 and 10 are above every known tag.
macro_rules! tags {
    ($ask:expr, $x:expr) => {{
        let x = $x;
        if $ask.tags() {
            x.with_unknown_tagged_field(9, Bytes::from_static(b"\x2a"))
                .with_unknown_tagged_field(10, Bytes::from_static(b"unknown"))
        } else {
            x
        }
    }};
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

fn topic(x: &str) -> TopicName {
    TopicName(s(x))
}

fn group(x: &str) -> GroupId {
    GroupId(s(x))
}

fn txn(x: &str) -> TransactionalId {
    TransactionalId(s(x))
}

fn id(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

/// `n` copies made by `f(i)`, at least one.
fn some<T>(a: Ask, f: impl Fn(i32) -> T) -> Vec<T> {
    let n = if a.full { 3 } else { 1 };
    (0..n).map(f).collect()
}

fn api_versions(a: Ask) -> RequestKind {
    let mut r = ApiVersionsRequest::default();
    if a.v >= 3 {
        r = r
            .with_client_software_name(s("shale-test"))
            .with_client_software_version(s(if a.full { "1.0" } else { "" }));
    }
    RequestKind::ApiVersions(tags!(a, r))
}

fn metadata(a: Ask) -> RequestKind {
    use metadata_request::MetadataRequestTopic as T;
    let topics = some(a, |i| {
        let mut t = T::default().with_name(a.opt(topic(&format!("t{i}")), a.v >= 10));
        if a.v >= 10 {
            t = t.with_topic_id(id(i as u8 + 1));
        }
        tags!(a, t)
    });
    let mut r = MetadataRequest::default().with_topics(a.opt(topics, a.v >= 1));
    if a.v >= 4 {
        r = r.with_allow_auto_topic_creation(!a.full);
    }
    if (8..=10).contains(&a.v) {
        r = r.with_include_cluster_authorized_operations(a.full);
    }
    if a.v >= 8 {
        r = r.with_include_topic_authorized_operations(a.full);
    }
    RequestKind::Metadata(tags!(a, r))
}

fn produce(a: Ask) -> RequestKind {
    use produce_request::{PartitionProduceData as P, TopicProduceData as T};
    let topics = some(a, |i| {
        let partitions = some(a, |p| {
            let records = a.opt(Bytes::from(vec![p as u8; 20 + p as usize]), true);
            tags!(a, P::default().with_index(p).with_records(records))
        });
        let mut t = T::default().with_partition_data(partitions);
        if a.v <= 12 {
            t = t.with_name(topic(&format!("t{i}")));
        } else {
            t = t.with_topic_id(id(i as u8 + 1));
        }
        tags!(a, t)
    });
    let r = ProduceRequest::default()
        .with_transactional_id(a.opt(txn("tx"), true))
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(topics);
    RequestKind::Produce(tags!(a, r))
}

fn fetch(a: Ask) -> RequestKind {
    use fetch_request::{FetchPartition as P, FetchTopic as T, ForgottenTopic as F, ReplicaState};
    let v = a.v;
    let topics = some(a, |i| {
        let partitions = some(a, |p| {
            let mut x = P::default()
                .with_partition(p)
                .with_fetch_offset(100 + i64::from(p))
                .with_partition_max_bytes(1 << 20);
            if v >= 9 {
                x = x.with_current_leader_epoch(4);
            }
            if v >= 12 {
                x = x.with_last_fetched_epoch(3);
            }
            if v >= 5 {
                x = x.with_log_start_offset(7);
            }
            if v >= 17 && a.full {
                x = x.with_replica_directory_id(id(9));
            }
            if v >= 18 && a.full {
                x = x.with_high_watermark(99);
            }
            tags!(a, x)
        });
        let mut t = T::default().with_partitions(partitions);
        if v <= 12 {
            t = t.with_topic(topic(&format!("t{i}")));
        } else {
            t = t.with_topic_id(id(i as u8 + 1));
        }
        tags!(a, t)
    });
    let mut r = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_isolation_level(1)
        .with_topics(topics);
    if v <= 14 {
        r = r.with_replica_id(BrokerId(if a.full { 3 } else { -1 }));
    }
    if v >= 7 {
        r = r.with_session_id(11).with_session_epoch(2);
        let forgotten = some(a, |i| {
            let mut f = F::default().with_partitions(vec![1, 2, i]);
            if v <= 12 {
                f = f.with_topic(topic(&format!("gone{i}")));
            } else {
                f = f.with_topic_id(id(20 + i as u8));
            }
            tags!(a, f)
        });
        r = r.with_forgotten_topics_data(if a.full { forgotten } else { vec![] });
    }
    if v >= 11 {
        r = r.with_rack_id(s("rack-a"));
    }
    if v >= 12 {
        r = r.with_cluster_id(a.opt(s("cluster"), true));
    }
    if v >= 15 && a.full {
        let state = tags!(
            a,
            ReplicaState::default()
                .with_replica_id(BrokerId(2))
                .with_replica_epoch(8)
        );
        r = r.with_replica_state(state);
    }
    RequestKind::Fetch(tags!(a, r))
}

fn list_offsets(a: Ask) -> RequestKind {
    use list_offsets_request::{ListOffsetsPartition as P, ListOffsetsTopic as T};
    let topics = some(a, |i| {
        let partitions = some(a, |p| {
            let mut x = P::default().with_partition_index(p).with_timestamp(-1);
            if a.v >= 4 {
                x = x.with_current_leader_epoch(5);
            }
            tags!(a, x)
        });
        tags!(
            a,
            T::default()
                .with_name(topic(&format!("t{i}")))
                .with_partitions(partitions)
        )
    });
    let mut r = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(topics);
    if a.v >= 2 {
        r = r.with_isolation_level(1);
    }
    if a.v >= 10 {
        r = r.with_timeout_ms(1_000);
    }
    RequestKind::ListOffsets(tags!(a, r))
}

fn create_topics(a: Ask) -> RequestKind {
    use create_topics_request::{
        CreatableReplicaAssignment as Assignment, CreatableTopic as T, CreatableTopicConfig as C,
    };
    let topics = some(a, |i| {
        let assignments = some(a, |p| {
            tags!(
                a,
                Assignment::default()
                    .with_partition_index(p)
                    .with_broker_ids(vec![BrokerId(1), BrokerId(2)])
            )
        });
        let configs = some(a, |c| {
            let value = a.opt(s("compact"), true).filter(|_| c != 1);
            tags!(
                a,
                C::default()
                    .with_name(s(&format!("config.{c}")))
                    .with_value(value)
            )
        });
        tags!(
            a,
            T::default()
                .with_name(topic(&format!("t{i}")))
                .with_num_partitions(if a.full { -1 } else { 3 })
                .with_replication_factor(if a.full { -1 } else { 1 })
                .with_assignments(if a.full { assignments } else { vec![] })
                .with_configs(configs)
        )
    });
    let r = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(5_000)
        .with_validate_only(a.full);
    RequestKind::CreateTopics(tags!(a, r))
}

fn delete_topics(a: Ask) -> RequestKind {
    use delete_topics_request::DeleteTopicState as T;
    let mut r = DeleteTopicsRequest::default().with_timeout_ms(5_000);
    if a.v >= 6 {
        r = r.with_topics(some(a, |i| {
            let name = a.opt(topic(&format!("t{i}")), true);
            tags!(a, T::default().with_name(name).with_topic_id(id(i as u8)))
        }));
    } else {
        r = r.with_topic_names(some(a, |i| topic(&format!("t{i}"))));
    }
    RequestKind::DeleteTopics(tags!(a, r))
}

fn create_partitions(a: Ask) -> RequestKind {
    use create_partitions_request::{CreatePartitionsAssignment as A, CreatePartitionsTopic as T};
    let topics = some(a, |i| {
        let assignments = some(a, |_| {
            tags!(
                a,
                A::default().with_broker_ids(vec![BrokerId(1), BrokerId(3)])
            )
        });
        tags!(
            a,
            T::default()
                .with_name(topic(&format!("t{i}")))
                .with_count(6)
                .with_assignments(a.opt(assignments, true))
        )
    });
    let r = CreatePartitionsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(5_000)
        .with_validate_only(a.full);
    RequestKind::CreatePartitions(tags!(a, r))
}

fn describe_configs(a: Ask) -> RequestKind {
    use describe_configs_request::DescribeConfigsResource as R;
    let resources = some(a, |i| {
        let keys = a.opt(vec![s("retention.ms"), s("cleanup.policy")], true);
        tags!(
            a,
            R::default()
                .with_resource_type(2)
                .with_resource_name(s(&format!("t{i}")))
                .with_configuration_keys(keys)
        )
    });
    let mut r = DescribeConfigsRequest::default()
        .with_resources(resources)
        .with_include_synonyms(a.full);
    if a.v >= 3 {
        r = r.with_include_documentation(a.full);
    }
    RequestKind::DescribeConfigs(tags!(a, r))
}

fn describe_cluster(a: Ask) -> RequestKind {
    let mut r =
        DescribeClusterRequest::default().with_include_cluster_authorized_operations(a.full);
    if a.v >= 1 {
        r = r.with_endpoint_type(2);
    }
    if a.v >= 2 {
        r = r.with_include_fenced_brokers(a.full);
    }
    RequestKind::DescribeCluster(tags!(a, r))
}

fn describe_quorum(a: Ask) -> RequestKind {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    let partitions = (0..if a.full { 3 } else { 1 })
        .map(|p| PartitionData::default().with_partition_index(p))
        .collect();
    let r = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(s("__cluster_metadata")))
        .with_partitions(partitions)]);
    RequestKind::DescribeQuorum(tags!(a, r))
}

fn init_producer_id(a: Ask) -> RequestKind {
    let mut r = InitProducerIdRequest::default()
        .with_transactional_id(a.opt(txn("tx"), true))
        .with_transaction_timeout_ms(60_000);
    if a.v >= 3 {
        r = r.with_producer_id(ProducerId(42)).with_producer_epoch(3);
    }
    RequestKind::InitProducerId(tags!(a, r))
}

fn find_coordinator(a: Ask) -> RequestKind {
    let mut r = FindCoordinatorRequest::default();
    if a.v <= 3 {
        r = r.with_key(s("group-a"));
    }
    if a.v >= 1 {
        r = r.with_key_type(1);
    }
    if a.v >= 4 {
        r = r.with_coordinator_keys(some(a, |i| s(&format!("key{i}"))));
    }
    RequestKind::FindCoordinator(tags!(a, r))
}

fn join_group(a: Ask) -> RequestKind {
    use join_group_request::JoinGroupRequestProtocol as P;
    let protocols = some(a, |i| {
        tags!(
            a,
            P::default()
                .with_name(s(&format!("range{i}")))
                .with_metadata(Bytes::from_static(b"\x00\x01meta"))
        )
    });
    let mut r = JoinGroupRequest::default()
        .with_group_id(group("g"))
        .with_session_timeout_ms(10_000)
        .with_member_id(s("member-1"))
        .with_protocol_type(s("consumer"))
        .with_protocols(protocols);
    if a.v >= 1 {
        r = r.with_rebalance_timeout_ms(30_000);
    }
    if a.v >= 5 {
        r = r.with_group_instance_id(a.opt(s("instance"), true));
    }
    if a.v >= 8 {
        r = r.with_reason(a.opt(s("rebalance"), true));
    }
    RequestKind::JoinGroup(tags!(a, r))
}

fn sync_group(a: Ask) -> RequestKind {
    use sync_group_request::SyncGroupRequestAssignment as A;
    let assignments = some(a, |i| {
        tags!(
            a,
            A::default()
                .with_member_id(s(&format!("m{i}")))
                .with_assignment(Bytes::from_static(b"assignment"))
        )
    });
    let mut r = SyncGroupRequest::default()
        .with_group_id(group("g"))
        .with_generation_id(4)
        .with_member_id(s("m0"))
        .with_assignments(assignments);
    if a.v >= 3 {
        r = r.with_group_instance_id(a.opt(s("instance"), true));
    }
    if a.v >= 5 {
        r = r
            .with_protocol_type(a.opt(s("consumer"), true))
            .with_protocol_name(a.opt(s("range"), true));
    }
    RequestKind::SyncGroup(tags!(a, r))
}

fn heartbeat(a: Ask) -> RequestKind {
    let mut r = HeartbeatRequest::default()
        .with_group_id(group("g"))
        .with_generation_id(4)
        .with_member_id(s("m0"));
    if a.v >= 3 {
        r = r.with_group_instance_id(a.opt(s("instance"), true));
    }
    RequestKind::Heartbeat(tags!(a, r))
}

fn leave_group(a: Ask) -> RequestKind {
    use leave_group_request::MemberIdentity as M;
    let mut r = LeaveGroupRequest::default().with_group_id(group("g"));
    if a.v <= 2 {
        r = r.with_member_id(s("m0"));
    } else {
        r = r.with_members(some(a, |i| {
            let mut m = M::default()
                .with_member_id(s(&format!("m{i}")))
                .with_group_instance_id(a.opt(s("instance"), true));
            if a.v >= 5 {
                m = m.with_reason(a.opt(s("bye"), true));
            }
            tags!(a, m)
        }));
    }
    RequestKind::LeaveGroup(tags!(a, r))
}

fn offset_commit(a: Ask) -> RequestKind {
    use offset_commit_request::{OffsetCommitRequestPartition as P, OffsetCommitRequestTopic as T};
    let topics = some(a, |i| {
        let partitions = some(a, |p| {
            let mut x = P::default()
                .with_partition_index(p)
                .with_committed_offset(1_000)
                .with_committed_metadata(a.opt(s("meta"), true));
            if a.v >= 6 {
                x = x.with_committed_leader_epoch(2);
            }
            tags!(a, x)
        });
        tags!(
            a,
            T::default()
                .with_name(topic(&format!("t{i}")))
                .with_partitions(partitions)
        )
    });
    let mut r = OffsetCommitRequest::default()
        .with_group_id(group("g"))
        .with_generation_id_or_member_epoch(5)
        .with_member_id(s("m0"))
        .with_topics(topics);
    if a.v >= 7 {
        r = r.with_group_instance_id(a.opt(s("instance"), true));
    }
    if a.v <= 4 {
        r = r.with_retention_time_ms(60_000);
    }
    RequestKind::OffsetCommit(tags!(a, r))
}

fn offset_fetch(a: Ask) -> RequestKind {
    use offset_fetch_request::{
        OffsetFetchRequestGroup as G, OffsetFetchRequestTopic as T, OffsetFetchRequestTopics as Ts,
    };
    let mut r = OffsetFetchRequest::default();
    if a.v <= 7 {
        let topics = some(a, |i| {
            tags!(
                a,
                T::default()
                    .with_name(topic(&format!("t{i}")))
                    .with_partition_indexes(vec![0, 1, i])
            )
        });
        r = r
            .with_group_id(group("g"))
            .with_topics(a.opt(topics, a.v >= 2));
    } else {
        r = r.with_groups(some(a, |g| {
            let topics = some(a, |i| {
                tags!(
                    a,
                    Ts::default()
                        .with_name(topic(&format!("t{i}")))
                        .with_partition_indexes(vec![0, i])
                )
            });
            let mut x = G::default()
                .with_group_id(group(&format!("g{g}")))
                .with_topics(a.opt(topics, true));
            if a.v >= 9 {
                x = x.with_member_id(a.opt(s("m0"), true)).with_member_epoch(7);
            }
            tags!(a, x)
        }));
    }
    if a.v >= 7 {
        r = r.with_require_stable(a.full);
    }
    RequestKind::OffsetFetch(tags!(a, r))
}

fn describe_groups(a: Ask) -> RequestKind {
    let mut r = DescribeGroupsRequest::default().with_groups(some(a, |i| group(&format!("g{i}"))));
    if a.v >= 3 {
        r = r.with_include_authorized_operations(a.full);
    }
    RequestKind::DescribeGroups(tags!(a, r))
}

fn list_groups(a: Ask) -> RequestKind {
    let mut r = ListGroupsRequest::default();
    if a.v >= 4 && a.full {
        r = r.with_states_filter(vec![s("Stable"), s("Empty")]);
    }
    if a.v >= 5 && a.full {
        r = r.with_types_filter(vec![s("classic")]);
    }
    RequestKind::ListGroups(tags!(a, r))
}

fn delete_groups(a: Ask) -> RequestKind {
    let r = DeleteGroupsRequest::default().with_groups_names(some(a, |i| group(&format!("g{i}"))));
    RequestKind::DeleteGroups(tags!(a, r))
}

fn offset_delete(a: Ask) -> RequestKind {
    use offset_delete_request::{OffsetDeleteRequestPartition as P, OffsetDeleteRequestTopic as T};
    let topics = some(a, |i| {
        let partitions = some(a, |p| P::default().with_partition_index(p));
        T::default()
            .with_name(topic(&format!("t{i}")))
            .with_partitions(partitions)
    });
    RequestKind::OffsetDelete(
        OffsetDeleteRequest::default()
            .with_group_id(group("g"))
            .with_topics(topics),
    )
}

fn alter_configs(a: Ask) -> RequestKind {
    use alter_configs_request::{AlterConfigsResource as R, AlterableConfig as C};
    let resources = some(a, |i| {
        let configs = some(a, |c| {
            tags!(
                a,
                C::default()
                    .with_name(s(&format!("config.{c}")))
                    .with_value(a.opt(s("1"), true))
            )
        });
        tags!(
            a,
            R::default()
                .with_resource_type(2)
                .with_resource_name(s(&format!("t{i}")))
                .with_configs(configs)
        )
    });
    let r = AlterConfigsRequest::default()
        .with_resources(resources)
        .with_validate_only(a.full);
    RequestKind::AlterConfigs(tags!(a, r))
}

fn incremental_alter_configs(a: Ask) -> RequestKind {
    use incremental_alter_configs_request::{AlterConfigsResource as R, AlterableConfig as C};
    let resources = some(a, |i| {
        let configs = some(a, |c| {
            tags!(
                a,
                C::default()
                    .with_name(s(&format!("config.{c}")))
                    .with_config_operation(c as i8)
                    .with_value(a.opt(s("1"), true))
            )
        });
        tags!(
            a,
            R::default()
                .with_resource_type(2)
                .with_resource_name(s(&format!("t{i}")))
                .with_configs(configs)
        )
    });
    let r = IncrementalAlterConfigsRequest::default()
        .with_resources(resources)
        .with_validate_only(a.full);
    RequestKind::IncrementalAlterConfigs(tags!(a, r))
}

fn delete_records(a: Ask) -> RequestKind {
    use delete_records_request::{DeleteRecordsPartition as P, DeleteRecordsTopic as T};
    let topics = some(a, |i| {
        let partitions = some(a, |p| {
            tags!(a, P::default().with_partition_index(p).with_offset(-1))
        });
        tags!(
            a,
            T::default()
                .with_name(topic(&format!("t{i}")))
                .with_partitions(partitions)
        )
    });
    let r = DeleteRecordsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(5_000);
    RequestKind::DeleteRecords(tags!(a, r))
}

fn describe_log_dirs(a: Ask) -> RequestKind {
    use describe_log_dirs_request::DescribableLogDirTopic as T;
    let topics = some(a, |i| {
        tags!(
            a,
            T::default()
                .with_topic(topic(&format!("t{i}")))
                .with_partitions(vec![0, 1])
        )
    });
    let r = DescribeLogDirsRequest::default().with_topics(a.opt(topics, true));
    RequestKind::DescribeLogDirs(tags!(a, r))
}

fn describe_producers(a: Ask) -> RequestKind {
    use describe_producers_request::TopicRequest as T;
    let topics = some(a, |i| {
        tags!(
            a,
            T::default()
                .with_name(topic(&format!("t{i}")))
                .with_partition_indexes(vec![0, 2])
        )
    });
    RequestKind::DescribeProducers(tags!(
        a,
        DescribeProducersRequest::default().with_topics(topics)
    ))
}

fn sasl_handshake(a: Ask) -> RequestKind {
    let mechanism = if a.full { "SCRAM-SHA-256" } else { "" };
    RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(s(mechanism)))
}

fn sasl_authenticate(a: Ask) -> RequestKind {
    let bytes = if a.full {
        &b"\0user\0secret"[..]
    } else {
        &b""[..]
    };
    let r = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(bytes));
    RequestKind::SaslAuthenticate(tags!(a, r))
}

fn add_partitions_to_txn(a: Ask) -> RequestKind {
    use add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic as T, AddPartitionsToTxnTransaction as X,
    };
    let topics = || {
        some(a, |i| {
            tags!(
                a,
                T::default()
                    .with_name(topic(&format!("t{i}")))
                    .with_partitions(vec![0, i])
            )
        })
    };
    let mut r = AddPartitionsToTxnRequest::default();
    if a.v <= 3 {
        r = r
            .with_v3_and_below_transactional_id(txn("tx"))
            .with_v3_and_below_producer_id(ProducerId(9))
            .with_v3_and_below_producer_epoch(1)
            .with_v3_and_below_topics(topics());
    } else {
        r = r.with_transactions(some(a, |i| {
            tags!(
                a,
                X::default()
                    .with_transactional_id(txn(&format!("tx{i}")))
                    .with_producer_id(ProducerId(9))
                    .with_producer_epoch(1)
                    .with_verify_only(a.full)
                    .with_topics(topics())
            )
        }));
    }
    RequestKind::AddPartitionsToTxn(tags!(a, r))
}

fn add_offsets_to_txn(a: Ask) -> RequestKind {
    let r = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn("tx"))
        .with_producer_id(ProducerId(9))
        .with_producer_epoch(1)
        .with_group_id(group("g"));
    RequestKind::AddOffsetsToTxn(tags!(a, r))
}

fn end_txn(a: Ask) -> RequestKind {
    let r = EndTxnRequest::default()
        .with_transactional_id(txn("tx"))
        .with_producer_id(ProducerId(9))
        .with_producer_epoch(1)
        .with_committed(a.full);
    RequestKind::EndTxn(tags!(a, r))
}

fn txn_offset_commit(a: Ask) -> RequestKind {
    use txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition as P, TxnOffsetCommitRequestTopic as T,
    };
    let topics = some(a, |i| {
        let partitions = some(a, |p| {
            let mut x = P::default()
                .with_partition_index(p)
                .with_committed_offset(77)
                .with_committed_metadata(a.opt(s("meta"), true));
            if a.v >= 2 {
                x = x.with_committed_leader_epoch(3);
            }
            tags!(a, x)
        });
        tags!(
            a,
            T::default()
                .with_name(topic(&format!("t{i}")))
                .with_partitions(partitions)
        )
    });
    let mut r = TxnOffsetCommitRequest::default()
        .with_transactional_id(txn("tx"))
        .with_group_id(group("g"))
        .with_producer_id(ProducerId(9))
        .with_producer_epoch(1)
        .with_topics(topics);
    if a.v >= 3 {
        r = r
            .with_generation_id(4)
            .with_member_id(s("m0"))
            .with_group_instance_id(a.opt(s("instance"), true));
    }
    RequestKind::TxnOffsetCommit(tags!(a, r))
}

fn consumer_group_heartbeat(a: Ask) -> RequestKind {
    use consumer_group_heartbeat_request::TopicPartitions as T;
    let owned = some(a, |i| {
        tags!(
            a,
            T::default()
                .with_topic_id(id(i as u8))
                .with_partitions(vec![0, 1])
        )
    });
    let mut r = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group("g"))
        .with_member_id(s("m0"))
        .with_member_epoch(3)
        .with_instance_id(a.opt(s("instance"), true))
        .with_rack_id(a.opt(s("rack"), true))
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(a.opt(vec![topic("t0"), topic("t1")], true))
        .with_server_assignor(a.opt(s("uniform"), true))
        .with_topic_partitions(a.opt(owned, true));
    if a.v >= 1 {
        r = r.with_subscribed_topic_regex(a.opt(s("t.*"), true));
    }
    RequestKind::ConsumerGroupHeartbeat(tags!(a, r))
}

fn consumer_group_describe(a: Ask) -> RequestKind {
    let r = ConsumerGroupDescribeRequest::default()
        .with_group_ids(some(a, |i| group(&format!("g{i}"))))
        .with_include_authorized_operations(a.full);
    RequestKind::ConsumerGroupDescribe(tags!(a, r))
}

fn elect_leaders(a: Ask) -> RequestKind {
    use elect_leaders_request::TopicPartitions as T;
    let topics = some(a, |i| {
        tags!(
            a,
            T::default()
                .with_topic(topic(&format!("t{i}")))
                .with_partitions(vec![0, 1, 2])
        )
    });
    let mut r = ElectLeadersRequest::default()
        .with_topic_partitions(a.opt(topics, true))
        .with_timeout_ms(5_000);
    if a.v >= 1 {
        r = r.with_election_type(1);
    }
    RequestKind::ElectLeaders(tags!(a, r))
}

fn describe_acls(a: Ask) -> RequestKind {
    let r = DescribeAclsRequest::default()
        .with_resource_type_filter(2)
        .with_resource_name_filter(a.opt(s("t0"), true))
        .with_pattern_type_filter(3)
        .with_principal_filter(a.opt(s("User:alice"), true))
        .with_host_filter(a.opt(s("*"), true))
        .with_operation(2)
        .with_permission_type(3);
    RequestKind::DescribeAcls(tags!(a, r))
}

fn create_acls(a: Ask) -> RequestKind {
    use create_acls_request::AclCreation as C;
    let creations = some(a, |i| {
        tags!(
            a,
            C::default()
                .with_resource_type(2)
                .with_resource_name(s(&format!("t{i}")))
                .with_resource_pattern_type(3)
                .with_principal(s("User:alice"))
                .with_host(s("*"))
                .with_operation(2)
                .with_permission_type(3)
        )
    });
    RequestKind::CreateAcls(tags!(
        a,
        CreateAclsRequest::default().with_creations(creations)
    ))
}

fn delete_acls(a: Ask) -> RequestKind {
    use delete_acls_request::DeleteAclsFilter as F;
    let filters = some(a, |i| {
        tags!(
            a,
            F::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter(a.opt(s(&format!("t{i}")), true))
                .with_pattern_type_filter(3)
                .with_principal_filter(a.opt(s("User:alice"), true))
                .with_host_filter(a.opt(s("*"), true))
                .with_operation(2)
                .with_permission_type(3)
        )
    });
    RequestKind::DeleteAcls(tags!(a, DeleteAclsRequest::default().with_filters(filters)))
}

type Builder = fn(Ask) -> RequestKind;

/// Every API we cover, with the versions its kafka-protocol request type encodes and decodes,
/// and its builder.
const BUILDERS: &[(ApiKey, VersionRange, Builder)] = &[
    (
        ApiKey::ApiVersions,
        ApiVersionsRequest::VERSIONS,
        api_versions,
    ),
    (ApiKey::Metadata, MetadataRequest::VERSIONS, metadata),
    (ApiKey::Produce, ProduceRequest::VERSIONS, produce),
    (ApiKey::Fetch, FetchRequest::VERSIONS, fetch),
    (
        ApiKey::ListOffsets,
        ListOffsetsRequest::VERSIONS,
        list_offsets,
    ),
    (
        ApiKey::CreateTopics,
        CreateTopicsRequest::VERSIONS,
        create_topics,
    ),
    (
        ApiKey::DeleteTopics,
        DeleteTopicsRequest::VERSIONS,
        delete_topics,
    ),
    (
        ApiKey::CreatePartitions,
        CreatePartitionsRequest::VERSIONS,
        create_partitions,
    ),
    (
        ApiKey::DescribeConfigs,
        DescribeConfigsRequest::VERSIONS,
        describe_configs,
    ),
    (
        ApiKey::DescribeCluster,
        DescribeClusterRequest::VERSIONS,
        describe_cluster,
    ),
    (
        ApiKey::DescribeQuorum,
        DescribeQuorumRequest::VERSIONS,
        describe_quorum,
    ),
    (
        ApiKey::InitProducerId,
        InitProducerIdRequest::VERSIONS,
        init_producer_id,
    ),
    (
        ApiKey::FindCoordinator,
        FindCoordinatorRequest::VERSIONS,
        find_coordinator,
    ),
    (ApiKey::JoinGroup, JoinGroupRequest::VERSIONS, join_group),
    (ApiKey::SyncGroup, SyncGroupRequest::VERSIONS, sync_group),
    (ApiKey::Heartbeat, HeartbeatRequest::VERSIONS, heartbeat),
    (ApiKey::LeaveGroup, LeaveGroupRequest::VERSIONS, leave_group),
    (
        ApiKey::OffsetCommit,
        OffsetCommitRequest::VERSIONS,
        offset_commit,
    ),
    (
        ApiKey::OffsetFetch,
        OffsetFetchRequest::VERSIONS,
        offset_fetch,
    ),
    (
        ApiKey::DescribeGroups,
        DescribeGroupsRequest::VERSIONS,
        describe_groups,
    ),
    (ApiKey::ListGroups, ListGroupsRequest::VERSIONS, list_groups),
    (
        ApiKey::DeleteGroups,
        DeleteGroupsRequest::VERSIONS,
        delete_groups,
    ),
    (
        ApiKey::OffsetDelete,
        OffsetDeleteRequest::VERSIONS,
        offset_delete,
    ),
    (
        ApiKey::AlterConfigs,
        AlterConfigsRequest::VERSIONS,
        alter_configs,
    ),
    (
        ApiKey::IncrementalAlterConfigs,
        IncrementalAlterConfigsRequest::VERSIONS,
        incremental_alter_configs,
    ),
    (
        ApiKey::DeleteRecords,
        DeleteRecordsRequest::VERSIONS,
        delete_records,
    ),
    (
        ApiKey::DescribeLogDirs,
        DescribeLogDirsRequest::VERSIONS,
        describe_log_dirs,
    ),
    (
        ApiKey::DescribeProducers,
        DescribeProducersRequest::VERSIONS,
        describe_producers,
    ),
    (
        ApiKey::SaslHandshake,
        SaslHandshakeRequest::VERSIONS,
        sasl_handshake,
    ),
    (
        ApiKey::SaslAuthenticate,
        SaslAuthenticateRequest::VERSIONS,
        sasl_authenticate,
    ),
    (
        ApiKey::AddPartitionsToTxn,
        AddPartitionsToTxnRequest::VERSIONS,
        add_partitions_to_txn,
    ),
    (
        ApiKey::AddOffsetsToTxn,
        AddOffsetsToTxnRequest::VERSIONS,
        add_offsets_to_txn,
    ),
    (ApiKey::EndTxn, EndTxnRequest::VERSIONS, end_txn),
    (
        ApiKey::TxnOffsetCommit,
        TxnOffsetCommitRequest::VERSIONS,
        txn_offset_commit,
    ),
    (
        ApiKey::ConsumerGroupHeartbeat,
        ConsumerGroupHeartbeatRequest::VERSIONS,
        consumer_group_heartbeat,
    ),
    (
        ApiKey::ConsumerGroupDescribe,
        ConsumerGroupDescribeRequest::VERSIONS,
        consumer_group_describe,
    ),
    (
        ApiKey::ElectLeaders,
        ElectLeadersRequest::VERSIONS,
        elect_leaders,
    ),
    (
        ApiKey::DescribeAcls,
        DescribeAclsRequest::VERSIONS,
        describe_acls,
    ),
    (ApiKey::CreateAcls, CreateAclsRequest::VERSIONS, create_acls),
    (ApiKey::DeleteAcls, DeleteAclsRequest::VERSIONS, delete_acls),
];

/// Encodes `request` as a full frame (header + body) the way a client would, with
/// `kafka-protocol` choosing the header version.
fn encode(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    request: &RequestKind,
) -> (Bytes, usize) {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(api_version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(s));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api_key.request_header_version(api_version))
        .expect("encode header");
    let header_len = buf.len();
    request
        .encode(&mut buf, api_version)
        .unwrap_or_else(|e| panic!("encode {api_key:?} v{api_version}: {e:#}"));
    (buf.freeze(), header_len)
}

/// Every API, every version, full and sparse: about 500 frames.
pub(super) fn corpus() -> Vec<Sample> {
    let mut out = Vec::new();
    for &(api_key, range, build) in BUILDERS {
        for v in range.min..=range.max {
            for full in [true, false] {
                let flexible = api_key.request_header_version(v) >= 2;
                let request = build(Ask { v, full, flexible });
                let correlation_id = i32::from(v) * 1000 + api_key as i32;
                let client_id = full.then_some("shale-conformance");
                let (frame, header_len) = encode(api_key, v, correlation_id, client_id, &request);
                out.push(Sample {
                    api_key: api_key as i16,
                    api_version: v,
                    correlation_id,
                    header_len,
                    request,
                    frame,
                });
            }
        }
    }
    out
}

/// Decodes a frame with `kafka-protocol` the way the broker will, returning the request and
/// how many body bytes were left over.
pub(super) fn decode_with_kafka_protocol(
    frame: &[u8],
) -> Result<(RequestHeader, RequestKind, usize), String> {
    let mut bytes = Bytes::copy_from_slice(frame);
    let header = kafka_protocol::protocol::decode_request_header_from_buffer(&mut bytes)
        .map_err(|e| format!("header: {e:#}"))?;
    let api_key = ApiKey::try_from(header.request_api_key)
        .map_err(|_| format!("unknown api key {}", header.request_api_key))?;
    let request = RequestKind::decode(api_key, &mut bytes, header.request_api_version)
        .map_err(|e| format!("body: {e:#}"))?;
    Ok((header, request, bytes.len()))
}

/// Our schema covers exactly the versions kafka-protocol's request types decode for each API, and
/// agrees with it on which versions are flexible.
///
/// `ApiKey::valid_versions()` in kafka-protocol 0.18 claims one version more than the request
/// type can decode for three APIs (OffsetCommit v10, OffsetFetch v10, InitProducerId v6, from
/// Kafka 4.1's schemas); a broker advertising those would accept the version and then fail to
/// decode it. We follow the request types, and this test notices if that ever changes.
#[test]
fn wire_versions_match_kafka_protocol() {
    let ours: Vec<i16> = supported_api_keys().collect();
    assert_eq!(ours.len(), BUILDERS.len());
    for &(api_key, range, _) in BUILDERS {
        let key = api_key as i16;
        assert!(ours.contains(&key), "{api_key:?} has no schema");
        let claimed = api_key.valid_versions();
        let overclaimed = matches!(
            api_key,
            ApiKey::OffsetCommit | ApiKey::OffsetFetch | ApiKey::InitProducerId
        );
        assert_eq!(
            (claimed.min, claimed.max),
            (range.min, range.max + i16::from(overclaimed)),
            "{api_key:?}"
        );
        assert_eq!(
            supported_versions(key),
            Some((range.min, range.max)),
            "{api_key:?}"
        );
        for v in range.min..=range.max {
            assert_eq!(
                request_header_version(key, v),
                Some(api_key.request_header_version(v)),
                "{api_key:?} v{v}"
            );
        }
        assert_eq!(request_is_flexible(key, range.max + 1), None);
        assert_eq!(request_is_flexible(key, range.min - 1), None);
    }
}

/// Every frame kafka-protocol encodes, for every API and version, is accepted with the right
/// header facts, and decodes back with kafka-protocol to the request that was encoded.
#[test]
fn wire_accepts_every_kafka_protocol_encoding() {
    let samples = corpus();
    assert!(samples.len() > 400, "{} samples", samples.len());
    for x in &samples {
        let what = format!("api {} v{}", x.api_key, x.api_version);
        let info = validate_request(&x.frame, &WireLimits::default())
            .unwrap_or_else(|e| panic!("{what}: refused: {e}"));
        assert_eq!(
            (info.api_key, info.api_version, info.correlation_id),
            (x.api_key, x.api_version, x.correlation_id),
            "{what}"
        );
        assert_eq!(info.header_len, x.header_len, "{what}");
        assert_eq!(
            Some(info.header_version),
            request_header_version(x.api_key, x.api_version),
            "{what}"
        );
        assert_eq!(
            peek_header(&x.frame).unwrap(),
            (x.api_key, x.api_version, x.correlation_id)
        );
        let (header, decoded, left) =
            decode_with_kafka_protocol(&x.frame).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(header.correlation_id, x.correlation_id, "{what}");
        assert_eq!(left, 0, "{what}");
        assert_eq!(decoded, x.request, "{what}");
    }
}

/// Cutting any frame short, by any number of bytes, is refused as truncated; one byte too many
/// is refused as trailing.
#[test]
fn wire_refuses_every_truncation_and_trailing_byte() {
    for x in corpus() {
        for len in 0..x.frame.len() {
            match validate_request(&x.frame[..len], &WireLimits::default()) {
                Err(WireError::Truncated { .. } | WireError::HeaderTruncated { .. }) => {}
                other => panic!(
                    "api {} v{} cut to {len} of {} bytes: {other:?}",
                    x.api_key,
                    x.api_version,
                    x.frame.len()
                ),
            }
        }
        let mut longer = x.frame.to_vec();
        longer.extend_from_slice(&[1, 0, 0]);
        let info = validate_request(&longer, &WireLimits::default()).unwrap_or_else(|e| {
            panic!(
                "api {} v{} with trailing bytes: {e}",
                x.api_key, x.api_version
            )
        });
        assert_eq!(
            info.trailing_bytes, 3,
            "api {} v{}",
            x.api_key, x.api_version
        );
    }
}

/// Element counts are exact, and the limit applies to the sum over nested arrays.
#[test]
fn wire_counts_nested_elements_against_the_limit() {
    // Fetch v12 full: 3 topics x 3 partitions, 3 forgotten topics x 3 partition ids.
    let request = fetch(Ask {
        v: 12,
        full: true,
        flexible: true,
    });
    let (frame, _) = encode(ApiKey::Fetch, 12, 1, Some("c"), &request);
    let info = validate_request(&frame, &WireLimits::default()).unwrap();
    assert_eq!(info.array_elements, 3 + 9 + 3 + 9);
    // Header none, request 2, each topic 2 and each partition 2 (unknown tags 9 and 10), each
    // forgotten topic 2: 2 + 6 + 18 + 6, plus cluster_id (tag 0).
    assert_eq!(info.tagged_fields, 33);
    let exact = WireLimits {
        max_array_elements: 24,
        max_tagged_fields: 33,
    };
    assert!(validate_request(&frame, &exact).is_ok());
    let err = validate_request(
        &frame,
        &WireLimits {
            max_array_elements: 23,
            ..exact
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, WireError::TooManyElements { limit: 23, .. }),
        "{err}"
    );
    let err = validate_request(
        &frame,
        &WireLimits {
            max_tagged_fields: 32,
            ..exact
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, WireError::TooManyTaggedFields { limit: 32, .. }),
        "{err}"
    );
}

/// Known tagged fields: one outside its versions, one whose declared size disagrees with its
/// value, and tags out of order are all refused; kafka-protocol would have read the first two
/// by type, ignoring the size.
#[test]
fn wire_checks_known_and_ordered_tags() {
    // Fetch v14 with a ReplicaState tag (valid from v15 only).
    let v14 = fetch(Ask {
        v: 14,
        full: false,
        flexible: true,
    });
    let (frame, _) = encode(ApiKey::Fetch, 14, 1, None, &v14);
    // The sparse sample ends with the request's tagged section: count 0.
    assert_eq!(*frame.last().unwrap(), 0);
    let body_end = frame.len() - 1;
    let with_tags = |section: &[u8]| {
        let mut f = frame[..body_end].to_vec();
        f.extend_from_slice(section);
        f
    };
    // Tag 1 (ReplicaState) in v14.
    let err = validate_request(
        &with_tags(&[1, 1, 13, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0]),
        &WireLimits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, WireError::TagNotValidForVersion { tag: 1, .. }),
        "{err}"
    );
    // Tag 0 (ClusterId, compact nullable string "ab") declaring 4 bytes but taking 3.
    let err = validate_request(
        &with_tags(&[1, 0, 4, 3, b'a', b'b', 0]),
        &WireLimits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TaggedFieldSizeMismatch {
                tag: 0,
                declared: 4,
                actual: 3,
                ..
            }
        ),
        "{err}"
    );
    // The same value with the right size is fine, and decodes.
    let good = with_tags(&[1, 0, 3, 3, b'a', b'b']);
    validate_request(&good, &WireLimits::default()).unwrap();
    assert_eq!(decode_with_kafka_protocol(&good).unwrap().2, 0);
    // Unknown tags 5 then 4.
    let err = validate_request(&with_tags(&[2, 5, 0, 4, 0]), &WireLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TagOutOfOrder {
                tag: 4,
                previous: 5,
                ..
            }
        ),
        "{err}"
    );
}

/// Null where the version does not allow it is refused, even where kafka-protocol's types would
/// take it (Metadata v0 topics, a Metadata v9 topic name).
#[test]
fn wire_refuses_null_outside_nullable_versions() {
    // Metadata v0, header v1 with null client id, topics = -1.
    let frame = [0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    let err = validate_request(&frame, &WireLimits::default()).unwrap_err();
    assert!(matches!(err, WireError::UnexpectedNull { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "field MetadataRequest.Topics of a Metadata v0 request is null, but it is not nullable \
         in this version"
    );
    let mut v1 = frame;
    v1[3] = 1;
    validate_request(&v1, &WireLimits::default()).unwrap();
    // Metadata v9: one topic with a null name, then the three booleans and tags.
    let frame = [0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0, 2, 0, 0, 1, 0, 0];
    let err = validate_request(&frame, &WireLimits::default()).unwrap_err();
    assert!(matches!(err, WireError::UnexpectedNull { .. }), "{err}");
}
