//! The request schemas: one module per API, each with its request struct first and the structs
//! it nests below it, in wire order.
//!
//! Field order, version ranges, flexible versions and known tagged fields are those of Kafka 4.1's
//! request definitions (`clients/src/main/resources/common/message/*Request.json`) as
//! `kafka-protocol` 0.18 implements them, transcribed from that crate's generated decoders, which
//! are what the broker runs after this validator; the version ranges are exactly the ones its
//! request types decode. Field and struct names are Kafka's. Nullable versions follow Kafka's
//! `nullableVersions`; where they are narrower than the field's versions that is deliberate
//! (Metadata `Topics` is non-nullable in v0, a Metadata topic `Name` before v10, OffsetFetch
//! `Topics` in v1), even though kafka-protocol's types would take the null.
//!
//! Version ranges are written relative to what the message supports: `ALL` means every version of
//! the message, `since(n)` runs to its newest version, `until(n)` starts at its oldest.

use super::schema::Ty::*;
use super::schema::{field, message, range, since, tagged, until, Message, Struct, ALL, NEVER};

/// ApiVersions (key 18): v0-4, flexible v3+.
mod api_versions {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "ApiVersionsRequest",
        fields: &[
            field("ClientSoftwareName", String, since(3)),
            field("ClientSoftwareVersion", String, since(3)),
        ],
        tagged: &[],
    };
}

/// Metadata (key 3): v0-13, flexible v9+.
mod metadata {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "MetadataRequest",
        fields: &[
            field("Topics", StructArray(&METADATA_REQUEST_TOPIC), ALL).nullable(since(1)),
            field("AllowAutoTopicCreation", Bool, since(4)),
            field("IncludeClusterAuthorizedOperations", Bool, range(8, 10)),
            field("IncludeTopicAuthorizedOperations", Bool, since(8)),
        ],
        tagged: &[],
    };

    const METADATA_REQUEST_TOPIC: Struct = Struct {
        name: "MetadataRequestTopic",
        fields: &[
            field("TopicId", Uuid, since(10)),
            field("Name", String, ALL).nullable(since(10)),
        ],
        tagged: &[],
    };
}

/// Produce (key 0): v3-13, flexible v9+.
mod produce {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "ProduceRequest",
        fields: &[
            field("TransactionalId", String, ALL).nullable(ALL),
            field("Acks", Int16, ALL),
            field("TimeoutMs", Int32, ALL),
            field("TopicData", StructArray(&TOPIC_PRODUCE_DATA), ALL),
        ],
        tagged: &[],
    };

    const TOPIC_PRODUCE_DATA: Struct = Struct {
        name: "TopicProduceData",
        fields: &[
            field("Name", String, until(12)),
            field("TopicId", Uuid, since(13)),
            field("PartitionData", StructArray(&PARTITION_PRODUCE_DATA), ALL),
        ],
        tagged: &[],
    };

    const PARTITION_PRODUCE_DATA: Struct = Struct {
        name: "PartitionProduceData",
        fields: &[
            field("Index", Int32, ALL),
            field("Records", Records, ALL).nullable(ALL),
        ],
        tagged: &[],
    };
}

/// Fetch (key 1): v4-18, flexible v12+.
mod fetch {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "FetchRequest",
        fields: &[
            field("ReplicaId", Int32, until(14)),
            field("MaxWaitMs", Int32, ALL),
            field("MinBytes", Int32, ALL),
            field("MaxBytes", Int32, ALL),
            field("IsolationLevel", Int8, ALL),
            field("SessionId", Int32, since(7)),
            field("SessionEpoch", Int32, since(7)),
            field("Topics", StructArray(&FETCH_TOPIC), ALL),
            field(
                "ForgottenTopicsData",
                StructArray(&FORGOTTEN_TOPIC),
                since(7),
            ),
            field("RackId", String, since(11)),
        ],
        tagged: &[
            tagged(0, "ClusterId", String, since(12)).nullable(ALL),
            tagged(1, "ReplicaState", Struct(&REPLICA_STATE), since(15)),
        ],
    };

    const FETCH_TOPIC: Struct = Struct {
        name: "FetchTopic",
        fields: &[
            field("Topic", String, until(12)),
            field("TopicId", Uuid, since(13)),
            field("Partitions", StructArray(&FETCH_PARTITION), ALL),
        ],
        tagged: &[],
    };

    const FORGOTTEN_TOPIC: Struct = Struct {
        name: "ForgottenTopic",
        fields: &[
            field("Topic", String, range(7, 12)),
            field("TopicId", Uuid, since(13)),
            field("Partitions", Int32Array, since(7)),
        ],
        tagged: &[],
    };

    const REPLICA_STATE: Struct = Struct {
        name: "ReplicaState",
        fields: &[
            field("ReplicaId", Int32, since(15)),
            field("ReplicaEpoch", Int64, since(15)),
        ],
        tagged: &[],
    };

    const FETCH_PARTITION: Struct = Struct {
        name: "FetchPartition",
        fields: &[
            field("Partition", Int32, ALL),
            field("CurrentLeaderEpoch", Int32, since(9)),
            field("FetchOffset", Int64, ALL),
            field("LastFetchedEpoch", Int32, since(12)),
            field("LogStartOffset", Int64, since(5)),
            field("PartitionMaxBytes", Int32, ALL),
        ],
        tagged: &[
            tagged(0, "ReplicaDirectoryId", Uuid, since(17)),
            tagged(1, "HighWatermark", Int64, since(18)),
        ],
    };
}

/// ListOffsets (key 2): v1-10, flexible v6+.
mod list_offsets {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "ListOffsetsRequest",
        fields: &[
            field("ReplicaId", Int32, ALL),
            field("IsolationLevel", Int8, since(2)),
            field("Topics", StructArray(&LIST_OFFSETS_TOPIC), ALL),
            field("TimeoutMs", Int32, since(10)),
        ],
        tagged: &[],
    };

    const LIST_OFFSETS_TOPIC: Struct = Struct {
        name: "ListOffsetsTopic",
        fields: &[
            field("Name", String, ALL),
            field("Partitions", StructArray(&LIST_OFFSETS_PARTITION), ALL),
        ],
        tagged: &[],
    };

    const LIST_OFFSETS_PARTITION: Struct = Struct {
        name: "ListOffsetsPartition",
        fields: &[
            field("PartitionIndex", Int32, ALL),
            field("CurrentLeaderEpoch", Int32, since(4)),
            field("Timestamp", Int64, ALL),
        ],
        tagged: &[],
    };
}

/// CreateTopics (key 19): v2-7, flexible v5+.
mod create_topics {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "CreateTopicsRequest",
        fields: &[
            field("Topics", StructArray(&CREATABLE_TOPIC), ALL),
            field("TimeoutMs", Int32, ALL),
            field("ValidateOnly", Bool, ALL),
        ],
        tagged: &[],
    };

    const CREATABLE_TOPIC: Struct = Struct {
        name: "CreatableTopic",
        fields: &[
            field("Name", String, ALL),
            field("NumPartitions", Int32, ALL),
            field("ReplicationFactor", Int16, ALL),
            field(
                "Assignments",
                StructArray(&CREATABLE_REPLICA_ASSIGNMENT),
                ALL,
            ),
            field("Configs", StructArray(&CREATABLE_TOPIC_CONFIG), ALL),
        ],
        tagged: &[],
    };

    const CREATABLE_REPLICA_ASSIGNMENT: Struct = Struct {
        name: "CreatableReplicaAssignment",
        fields: &[
            field("PartitionIndex", Int32, ALL),
            field("BrokerIds", Int32Array, ALL),
        ],
        tagged: &[],
    };

    const CREATABLE_TOPIC_CONFIG: Struct = Struct {
        name: "CreatableTopicConfig",
        fields: &[
            field("Name", String, ALL),
            field("Value", String, ALL).nullable(ALL),
        ],
        tagged: &[],
    };
}

/// DeleteTopics (key 20): v1-6, flexible v4+.
mod delete_topics {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "DeleteTopicsRequest",
        fields: &[
            field("Topics", StructArray(&DELETE_TOPIC_STATE), since(6)),
            field("TopicNames", StringArray, until(5)),
            field("TimeoutMs", Int32, ALL),
        ],
        tagged: &[],
    };

    const DELETE_TOPIC_STATE: Struct = Struct {
        name: "DeleteTopicState",
        fields: &[
            field("Name", String, since(6)).nullable(ALL),
            field("TopicId", Uuid, since(6)),
        ],
        tagged: &[],
    };
}

/// CreatePartitions (key 37): v0-3, flexible v2+.
mod create_partitions {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "CreatePartitionsRequest",
        fields: &[
            field("Topics", StructArray(&CREATE_PARTITIONS_TOPIC), ALL),
            field("TimeoutMs", Int32, ALL),
            field("ValidateOnly", Bool, ALL),
        ],
        tagged: &[],
    };

    const CREATE_PARTITIONS_TOPIC: Struct = Struct {
        name: "CreatePartitionsTopic",
        fields: &[
            field("Name", String, ALL),
            field("Count", Int32, ALL),
            field(
                "Assignments",
                StructArray(&CREATE_PARTITIONS_ASSIGNMENT),
                ALL,
            )
            .nullable(ALL),
        ],
        tagged: &[],
    };

    const CREATE_PARTITIONS_ASSIGNMENT: Struct = Struct {
        name: "CreatePartitionsAssignment",
        fields: &[field("BrokerIds", Int32Array, ALL)],
        tagged: &[],
    };
}

/// DescribeConfigs (key 32): v1-4, flexible v4+.
mod describe_configs {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "DescribeConfigsRequest",
        fields: &[
            field("Resources", StructArray(&DESCRIBE_CONFIGS_RESOURCE), ALL),
            field("IncludeSynonyms", Bool, ALL),
            field("IncludeDocumentation", Bool, since(3)),
        ],
        tagged: &[],
    };

    const DESCRIBE_CONFIGS_RESOURCE: Struct = Struct {
        name: "DescribeConfigsResource",
        fields: &[
            field("ResourceType", Int8, ALL),
            field("ResourceName", String, ALL),
            field("ConfigurationKeys", StringArray, ALL).nullable(ALL),
        ],
        tagged: &[],
    };
}

/// DescribeCluster (key 60): v0-2, flexible v0+.
mod describe_cluster {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "DescribeClusterRequest",
        fields: &[
            field("IncludeClusterAuthorizedOperations", Bool, ALL),
            field("EndpointType", Int8, since(1)),
            field("IncludeFencedBrokers", Bool, since(2)),
        ],
        tagged: &[],
    };
}

/// DescribeQuorum (key 55): v0-2, flexible v0+.
mod describe_quorum {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "DescribeQuorumRequest",
        fields: &[field("Topics", StructArray(&TOPIC_DATA), ALL)],
        tagged: &[],
    };

    const TOPIC_DATA: Struct = Struct {
        name: "TopicData",
        fields: &[
            field("TopicName", String, ALL),
            field("Partitions", StructArray(&PARTITION_DATA), ALL),
        ],
        tagged: &[],
    };

    const PARTITION_DATA: Struct = Struct {
        name: "PartitionData",
        fields: &[field("PartitionIndex", Int32, ALL)],
        tagged: &[],
    };
}

/// InitProducerId (key 22): v0-5, flexible v2+.
mod init_producer_id {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "InitProducerIdRequest",
        fields: &[
            field("TransactionalId", String, ALL).nullable(ALL),
            field("TransactionTimeoutMs", Int32, ALL),
            field("ProducerId", Int64, since(3)),
            field("ProducerEpoch", Int16, since(3)),
        ],
        tagged: &[],
    };
}

/// FindCoordinator (key 10): v0-6, flexible v3+.
mod find_coordinator {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "FindCoordinatorRequest",
        fields: &[
            field("Key", String, until(3)),
            field("KeyType", Int8, since(1)),
            field("CoordinatorKeys", StringArray, since(4)),
        ],
        tagged: &[],
    };
}

/// JoinGroup (key 11): v0-9, flexible v6+.
mod join_group {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "JoinGroupRequest",
        fields: &[
            field("GroupId", String, ALL),
            field("SessionTimeoutMs", Int32, ALL),
            field("RebalanceTimeoutMs", Int32, since(1)),
            field("MemberId", String, ALL),
            field("GroupInstanceId", String, since(5)).nullable(ALL),
            field("ProtocolType", String, ALL),
            field("Protocols", StructArray(&JOIN_GROUP_REQUEST_PROTOCOL), ALL),
            field("Reason", String, since(8)).nullable(ALL),
        ],
        tagged: &[],
    };

    const JOIN_GROUP_REQUEST_PROTOCOL: Struct = Struct {
        name: "JoinGroupRequestProtocol",
        fields: &[field("Name", String, ALL), field("Metadata", Bytes, ALL)],
        tagged: &[],
    };
}

/// SyncGroup (key 14): v0-5, flexible v4+.
mod sync_group {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "SyncGroupRequest",
        fields: &[
            field("GroupId", String, ALL),
            field("GenerationId", Int32, ALL),
            field("MemberId", String, ALL),
            field("GroupInstanceId", String, since(3)).nullable(ALL),
            field("ProtocolType", String, since(5)).nullable(ALL),
            field("ProtocolName", String, since(5)).nullable(ALL),
            field(
                "Assignments",
                StructArray(&SYNC_GROUP_REQUEST_ASSIGNMENT),
                ALL,
            ),
        ],
        tagged: &[],
    };

    const SYNC_GROUP_REQUEST_ASSIGNMENT: Struct = Struct {
        name: "SyncGroupRequestAssignment",
        fields: &[
            field("MemberId", String, ALL),
            field("Assignment", Bytes, ALL),
        ],
        tagged: &[],
    };
}

/// Heartbeat (key 12): v0-4, flexible v4+.
mod heartbeat {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "HeartbeatRequest",
        fields: &[
            field("GroupId", String, ALL),
            field("GenerationId", Int32, ALL),
            field("MemberId", String, ALL),
            field("GroupInstanceId", String, since(3)).nullable(ALL),
        ],
        tagged: &[],
    };
}

/// LeaveGroup (key 13): v0-5, flexible v4+.
mod leave_group {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "LeaveGroupRequest",
        fields: &[
            field("GroupId", String, ALL),
            field("MemberId", String, until(2)),
            field("Members", StructArray(&MEMBER_IDENTITY), since(3)),
        ],
        tagged: &[],
    };

    const MEMBER_IDENTITY: Struct = Struct {
        name: "MemberIdentity",
        fields: &[
            field("MemberId", String, since(3)),
            field("GroupInstanceId", String, since(3)).nullable(ALL),
            field("Reason", String, since(5)).nullable(ALL),
        ],
        tagged: &[],
    };
}

/// OffsetCommit (key 8): v2-9, flexible v8+.
mod offset_commit {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "OffsetCommitRequest",
        fields: &[
            field("GroupId", String, ALL),
            field("GenerationIdOrMemberEpoch", Int32, ALL),
            field("MemberId", String, ALL),
            field("GroupInstanceId", String, since(7)).nullable(ALL),
            field("RetentionTimeMs", Int64, until(4)),
            field("Topics", StructArray(&OFFSET_COMMIT_REQUEST_TOPIC), ALL),
        ],
        tagged: &[],
    };

    const OFFSET_COMMIT_REQUEST_TOPIC: Struct = Struct {
        name: "OffsetCommitRequestTopic",
        fields: &[
            field("Name", String, ALL),
            field(
                "Partitions",
                StructArray(&OFFSET_COMMIT_REQUEST_PARTITION),
                ALL,
            ),
        ],
        tagged: &[],
    };

    const OFFSET_COMMIT_REQUEST_PARTITION: Struct = Struct {
        name: "OffsetCommitRequestPartition",
        fields: &[
            field("PartitionIndex", Int32, ALL),
            field("CommittedOffset", Int64, ALL),
            field("CommittedLeaderEpoch", Int32, since(6)),
            field("CommittedMetadata", String, ALL).nullable(ALL),
        ],
        tagged: &[],
    };
}

/// OffsetFetch (key 9): v1-9, flexible v6+.
mod offset_fetch {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "OffsetFetchRequest",
        fields: &[
            field("GroupId", String, until(7)),
            field("Topics", StructArray(&OFFSET_FETCH_REQUEST_TOPIC), until(7))
                .nullable(range(2, 7)),
            field("Groups", StructArray(&OFFSET_FETCH_REQUEST_GROUP), since(8)),
            field("RequireStable", Bool, since(7)),
        ],
        tagged: &[],
    };

    const OFFSET_FETCH_REQUEST_TOPIC: Struct = Struct {
        name: "OffsetFetchRequestTopic",
        fields: &[
            field("Name", String, until(7)),
            field("PartitionIndexes", Int32Array, until(7)),
        ],
        tagged: &[],
    };

    const OFFSET_FETCH_REQUEST_GROUP: Struct = Struct {
        name: "OffsetFetchRequestGroup",
        fields: &[
            field("GroupId", String, since(8)),
            field("MemberId", String, since(9)).nullable(ALL),
            field("MemberEpoch", Int32, since(9)),
            field(
                "Topics",
                StructArray(&OFFSET_FETCH_REQUEST_TOPICS),
                since(8),
            )
            .nullable(ALL),
        ],
        tagged: &[],
    };

    const OFFSET_FETCH_REQUEST_TOPICS: Struct = Struct {
        name: "OffsetFetchRequestTopics",
        fields: &[
            field("Name", String, since(8)),
            field("PartitionIndexes", Int32Array, since(8)),
        ],
        tagged: &[],
    };
}

/// DescribeGroups (key 15): v0-6, flexible v5+.
mod describe_groups {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "DescribeGroupsRequest",
        fields: &[
            field("Groups", StringArray, ALL),
            field("IncludeAuthorizedOperations", Bool, since(3)),
        ],
        tagged: &[],
    };
}

/// ListGroups (key 16): v0-5, flexible v3+.
mod list_groups {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "ListGroupsRequest",
        fields: &[
            field("StatesFilter", StringArray, since(4)),
            field("TypesFilter", StringArray, since(5)),
        ],
        tagged: &[],
    };
}

/// DeleteGroups (key 42): v0-2, flexible v2+.
mod delete_groups {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "DeleteGroupsRequest",
        fields: &[field("GroupsNames", StringArray, ALL)],
        tagged: &[],
    };
}

/// OffsetDelete (key 47): v0-0, flexible never.
mod offset_delete {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "OffsetDeleteRequest",
        fields: &[
            field("GroupId", String, ALL),
            field("Topics", StructArray(&OFFSET_DELETE_REQUEST_TOPIC), ALL),
        ],
        tagged: &[],
    };

    const OFFSET_DELETE_REQUEST_TOPIC: Struct = Struct {
        name: "OffsetDeleteRequestTopic",
        fields: &[
            field("Name", String, ALL),
            field(
                "Partitions",
                StructArray(&OFFSET_DELETE_REQUEST_PARTITION),
                ALL,
            ),
        ],
        tagged: &[],
    };

    const OFFSET_DELETE_REQUEST_PARTITION: Struct = Struct {
        name: "OffsetDeleteRequestPartition",
        fields: &[field("PartitionIndex", Int32, ALL)],
        tagged: &[],
    };
}

/// AlterConfigs (key 33): v0-2, flexible v2+.
mod alter_configs {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "AlterConfigsRequest",
        fields: &[
            field("Resources", StructArray(&ALTER_CONFIGS_RESOURCE), ALL),
            field("ValidateOnly", Bool, ALL),
        ],
        tagged: &[],
    };

    const ALTER_CONFIGS_RESOURCE: Struct = Struct {
        name: "AlterConfigsResource",
        fields: &[
            field("ResourceType", Int8, ALL),
            field("ResourceName", String, ALL),
            field("Configs", StructArray(&ALTERABLE_CONFIG), ALL),
        ],
        tagged: &[],
    };

    const ALTERABLE_CONFIG: Struct = Struct {
        name: "AlterableConfig",
        fields: &[
            field("Name", String, ALL),
            field("Value", String, ALL).nullable(ALL),
        ],
        tagged: &[],
    };
}

/// IncrementalAlterConfigs (key 44): v0-1, flexible v1+.
mod incremental_alter_configs {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "IncrementalAlterConfigsRequest",
        fields: &[
            field("Resources", StructArray(&ALTER_CONFIGS_RESOURCE), ALL),
            field("ValidateOnly", Bool, ALL),
        ],
        tagged: &[],
    };

    const ALTER_CONFIGS_RESOURCE: Struct = Struct {
        name: "AlterConfigsResource",
        fields: &[
            field("ResourceType", Int8, ALL),
            field("ResourceName", String, ALL),
            field("Configs", StructArray(&ALTERABLE_CONFIG), ALL),
        ],
        tagged: &[],
    };

    const ALTERABLE_CONFIG: Struct = Struct {
        name: "AlterableConfig",
        fields: &[
            field("Name", String, ALL),
            field("ConfigOperation", Int8, ALL),
            field("Value", String, ALL).nullable(ALL),
        ],
        tagged: &[],
    };
}

/// DeleteRecords (key 21): v0-2, flexible v2+.
mod delete_records {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "DeleteRecordsRequest",
        fields: &[
            field("Topics", StructArray(&DELETE_RECORDS_TOPIC), ALL),
            field("TimeoutMs", Int32, ALL),
        ],
        tagged: &[],
    };

    const DELETE_RECORDS_TOPIC: Struct = Struct {
        name: "DeleteRecordsTopic",
        fields: &[
            field("Name", String, ALL),
            field("Partitions", StructArray(&DELETE_RECORDS_PARTITION), ALL),
        ],
        tagged: &[],
    };

    const DELETE_RECORDS_PARTITION: Struct = Struct {
        name: "DeleteRecordsPartition",
        fields: &[
            field("PartitionIndex", Int32, ALL),
            field("Offset", Int64, ALL),
        ],
        tagged: &[],
    };
}

/// DescribeLogDirs (key 35): v1-4, flexible v2+.
mod describe_log_dirs {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "DescribeLogDirsRequest",
        fields: &[field("Topics", StructArray(&DESCRIBABLE_LOG_DIR_TOPIC), ALL).nullable(ALL)],
        tagged: &[],
    };

    const DESCRIBABLE_LOG_DIR_TOPIC: Struct = Struct {
        name: "DescribableLogDirTopic",
        fields: &[
            field("Topic", String, ALL),
            field("Partitions", Int32Array, ALL),
        ],
        tagged: &[],
    };
}

/// DescribeProducers (key 61): v0-0, flexible v0+.
mod describe_producers {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "DescribeProducersRequest",
        fields: &[field("Topics", StructArray(&TOPIC_REQUEST), ALL)],
        tagged: &[],
    };

    const TOPIC_REQUEST: Struct = Struct {
        name: "TopicRequest",
        fields: &[
            field("Name", String, ALL),
            field("PartitionIndexes", Int32Array, ALL),
        ],
        tagged: &[],
    };
}

/// SaslHandshake (key 17): v0-1, flexible never.
mod sasl_handshake {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "SaslHandshakeRequest",
        fields: &[field("Mechanism", String, ALL)],
        tagged: &[],
    };
}

/// SaslAuthenticate (key 36): v0-2, flexible v2+.
mod sasl_authenticate {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "SaslAuthenticateRequest",
        fields: &[field("AuthBytes", Bytes, ALL)],
        tagged: &[],
    };
}

/// AddPartitionsToTxn (key 24): v0-5, flexible v3+.
mod add_partitions_to_txn {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "AddPartitionsToTxnRequest",
        fields: &[
            field(
                "Transactions",
                StructArray(&ADD_PARTITIONS_TO_TXN_TRANSACTION),
                since(4),
            ),
            field("V3AndBelowTransactionalId", String, until(3)),
            field("V3AndBelowProducerId", Int64, until(3)),
            field("V3AndBelowProducerEpoch", Int16, until(3)),
            field(
                "V3AndBelowTopics",
                StructArray(&ADD_PARTITIONS_TO_TXN_TOPIC),
                until(3),
            ),
        ],
        tagged: &[],
    };

    const ADD_PARTITIONS_TO_TXN_TRANSACTION: Struct = Struct {
        name: "AddPartitionsToTxnTransaction",
        fields: &[
            field("TransactionalId", String, since(4)),
            field("ProducerId", Int64, since(4)),
            field("ProducerEpoch", Int16, since(4)),
            field("VerifyOnly", Bool, since(4)),
            field(
                "Topics",
                StructArray(&ADD_PARTITIONS_TO_TXN_TOPIC),
                since(4),
            ),
        ],
        tagged: &[],
    };

    const ADD_PARTITIONS_TO_TXN_TOPIC: Struct = Struct {
        name: "AddPartitionsToTxnTopic",
        fields: &[
            field("Name", String, ALL),
            field("Partitions", Int32Array, ALL),
        ],
        tagged: &[],
    };
}

/// AddOffsetsToTxn (key 25): v0-4, flexible v3+.
mod add_offsets_to_txn {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "AddOffsetsToTxnRequest",
        fields: &[
            field("TransactionalId", String, ALL),
            field("ProducerId", Int64, ALL),
            field("ProducerEpoch", Int16, ALL),
            field("GroupId", String, ALL),
        ],
        tagged: &[],
    };
}

/// EndTxn (key 26): v0-5, flexible v3+.
mod end_txn {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "EndTxnRequest",
        fields: &[
            field("TransactionalId", String, ALL),
            field("ProducerId", Int64, ALL),
            field("ProducerEpoch", Int16, ALL),
            field("Committed", Bool, ALL),
        ],
        tagged: &[],
    };
}

/// TxnOffsetCommit (key 28): v0-5, flexible v3+.
mod txn_offset_commit {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "TxnOffsetCommitRequest",
        fields: &[
            field("TransactionalId", String, ALL),
            field("GroupId", String, ALL),
            field("ProducerId", Int64, ALL),
            field("ProducerEpoch", Int16, ALL),
            field("GenerationId", Int32, since(3)),
            field("MemberId", String, since(3)),
            field("GroupInstanceId", String, since(3)).nullable(ALL),
            field("Topics", StructArray(&TXN_OFFSET_COMMIT_REQUEST_TOPIC), ALL),
        ],
        tagged: &[],
    };

    const TXN_OFFSET_COMMIT_REQUEST_TOPIC: Struct = Struct {
        name: "TxnOffsetCommitRequestTopic",
        fields: &[
            field("Name", String, ALL),
            field(
                "Partitions",
                StructArray(&TXN_OFFSET_COMMIT_REQUEST_PARTITION),
                ALL,
            ),
        ],
        tagged: &[],
    };

    const TXN_OFFSET_COMMIT_REQUEST_PARTITION: Struct = Struct {
        name: "TxnOffsetCommitRequestPartition",
        fields: &[
            field("PartitionIndex", Int32, ALL),
            field("CommittedOffset", Int64, ALL),
            field("CommittedLeaderEpoch", Int32, since(2)),
            field("CommittedMetadata", String, ALL).nullable(ALL),
        ],
        tagged: &[],
    };
}

/// ConsumerGroupHeartbeat (key 68): v0-1, flexible v0+.
mod consumer_group_heartbeat {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "ConsumerGroupHeartbeatRequest",
        fields: &[
            field("GroupId", String, ALL),
            field("MemberId", String, ALL),
            field("MemberEpoch", Int32, ALL),
            field("InstanceId", String, ALL).nullable(ALL),
            field("RackId", String, ALL).nullable(ALL),
            field("RebalanceTimeoutMs", Int32, ALL),
            field("SubscribedTopicNames", StringArray, ALL).nullable(ALL),
            field("SubscribedTopicRegex", String, since(1)).nullable(ALL),
            field("ServerAssignor", String, ALL).nullable(ALL),
            field("TopicPartitions", StructArray(&TOPIC_PARTITIONS), ALL).nullable(ALL),
        ],
        tagged: &[],
    };

    const TOPIC_PARTITIONS: Struct = Struct {
        name: "TopicPartitions",
        fields: &[
            field("TopicId", Uuid, ALL),
            field("Partitions", Int32Array, ALL),
        ],
        tagged: &[],
    };
}

/// ConsumerGroupDescribe (key 69): v0-1, flexible v0+.
mod consumer_group_describe {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "ConsumerGroupDescribeRequest",
        fields: &[
            field("GroupIds", StringArray, ALL),
            field("IncludeAuthorizedOperations", Bool, ALL),
        ],
        tagged: &[],
    };
}

/// ElectLeaders (key 43): v0-2, flexible v2+.
mod elect_leaders {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "ElectLeadersRequest",
        fields: &[
            field("ElectionType", Int8, since(1)),
            field("TopicPartitions", StructArray(&TOPIC_PARTITIONS), ALL).nullable(ALL),
            field("TimeoutMs", Int32, ALL),
        ],
        tagged: &[],
    };

    const TOPIC_PARTITIONS: Struct = Struct {
        name: "TopicPartitions",
        fields: &[
            field("Topic", String, ALL),
            field("Partitions", Int32Array, ALL),
        ],
        tagged: &[],
    };
}

/// DescribeAcls (key 29): v1-3, flexible v2+.
mod describe_acls {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "DescribeAclsRequest",
        fields: &[
            field("ResourceTypeFilter", Int8, ALL),
            field("ResourceNameFilter", String, ALL).nullable(ALL),
            field("PatternTypeFilter", Int8, ALL),
            field("PrincipalFilter", String, ALL).nullable(ALL),
            field("HostFilter", String, ALL).nullable(ALL),
            field("Operation", Int8, ALL),
            field("PermissionType", Int8, ALL),
        ],
        tagged: &[],
    };
}

/// CreateAcls (key 30): v1-3, flexible v2+.
mod create_acls {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "CreateAclsRequest",
        fields: &[field("Creations", StructArray(&ACL_CREATION), ALL)],
        tagged: &[],
    };

    const ACL_CREATION: Struct = Struct {
        name: "AclCreation",
        fields: &[
            field("ResourceType", Int8, ALL),
            field("ResourceName", String, ALL),
            field("ResourcePatternType", Int8, ALL),
            field("Principal", String, ALL),
            field("Host", String, ALL),
            field("Operation", Int8, ALL),
            field("PermissionType", Int8, ALL),
        ],
        tagged: &[],
    };
}

/// DeleteAcls (key 31): v1-3, flexible v2+.
mod delete_acls {
    use super::*;

    pub(super) const REQUEST: Struct = Struct {
        name: "DeleteAclsRequest",
        fields: &[field("Filters", StructArray(&DELETE_ACLS_FILTER), ALL)],
        tagged: &[],
    };

    const DELETE_ACLS_FILTER: Struct = Struct {
        name: "DeleteAclsFilter",
        fields: &[
            field("ResourceTypeFilter", Int8, ALL),
            field("ResourceNameFilter", String, ALL).nullable(ALL),
            field("PatternTypeFilter", Int8, ALL),
            field("PrincipalFilter", String, ALL).nullable(ALL),
            field("HostFilter", String, ALL).nullable(ALL),
            field("Operation", Int8, ALL),
            field("PermissionType", Int8, ALL),
        ],
        tagged: &[],
    };
}

pub(crate) const MESSAGES: &[Message] = &[
    message(
        18,
        "ApiVersions",
        range(0, 4),
        since(3),
        &api_versions::REQUEST,
    ),
    message(3, "Metadata", range(0, 13), since(9), &metadata::REQUEST),
    message(0, "Produce", range(3, 13), since(9), &produce::REQUEST),
    message(1, "Fetch", range(4, 18), since(12), &fetch::REQUEST),
    message(
        2,
        "ListOffsets",
        range(1, 10),
        since(6),
        &list_offsets::REQUEST,
    ),
    message(
        19,
        "CreateTopics",
        range(2, 7),
        since(5),
        &create_topics::REQUEST,
    ),
    message(
        20,
        "DeleteTopics",
        range(1, 6),
        since(4),
        &delete_topics::REQUEST,
    ),
    message(
        37,
        "CreatePartitions",
        range(0, 3),
        since(2),
        &create_partitions::REQUEST,
    ),
    message(
        32,
        "DescribeConfigs",
        range(1, 4),
        since(4),
        &describe_configs::REQUEST,
    ),
    message(
        60,
        "DescribeCluster",
        range(0, 2),
        since(0),
        &describe_cluster::REQUEST,
    ),
    message(
        55,
        "DescribeQuorum",
        range(0, 2),
        since(0),
        &describe_quorum::REQUEST,
    ),
    message(
        22,
        "InitProducerId",
        range(0, 5),
        since(2),
        &init_producer_id::REQUEST,
    ),
    message(
        10,
        "FindCoordinator",
        range(0, 6),
        since(3),
        &find_coordinator::REQUEST,
    ),
    message(11, "JoinGroup", range(0, 9), since(6), &join_group::REQUEST),
    message(14, "SyncGroup", range(0, 5), since(4), &sync_group::REQUEST),
    message(12, "Heartbeat", range(0, 4), since(4), &heartbeat::REQUEST),
    message(
        13,
        "LeaveGroup",
        range(0, 5),
        since(4),
        &leave_group::REQUEST,
    ),
    message(
        8,
        "OffsetCommit",
        range(2, 9),
        since(8),
        &offset_commit::REQUEST,
    ),
    message(
        9,
        "OffsetFetch",
        range(1, 9),
        since(6),
        &offset_fetch::REQUEST,
    ),
    message(
        15,
        "DescribeGroups",
        range(0, 6),
        since(5),
        &describe_groups::REQUEST,
    ),
    message(
        16,
        "ListGroups",
        range(0, 5),
        since(3),
        &list_groups::REQUEST,
    ),
    message(
        42,
        "DeleteGroups",
        range(0, 2),
        since(2),
        &delete_groups::REQUEST,
    ),
    message(
        47,
        "OffsetDelete",
        range(0, 0),
        NEVER,
        &offset_delete::REQUEST,
    ),
    message(
        33,
        "AlterConfigs",
        range(0, 2),
        since(2),
        &alter_configs::REQUEST,
    ),
    message(
        44,
        "IncrementalAlterConfigs",
        range(0, 1),
        since(1),
        &incremental_alter_configs::REQUEST,
    ),
    message(
        21,
        "DeleteRecords",
        range(0, 2),
        since(2),
        &delete_records::REQUEST,
    ),
    message(
        35,
        "DescribeLogDirs",
        range(1, 4),
        since(2),
        &describe_log_dirs::REQUEST,
    ),
    message(
        61,
        "DescribeProducers",
        range(0, 0),
        since(0),
        &describe_producers::REQUEST,
    ),
    message(
        17,
        "SaslHandshake",
        range(0, 1),
        NEVER,
        &sasl_handshake::REQUEST,
    ),
    message(
        36,
        "SaslAuthenticate",
        range(0, 2),
        since(2),
        &sasl_authenticate::REQUEST,
    ),
    message(
        24,
        "AddPartitionsToTxn",
        range(0, 5),
        since(3),
        &add_partitions_to_txn::REQUEST,
    ),
    message(
        25,
        "AddOffsetsToTxn",
        range(0, 4),
        since(3),
        &add_offsets_to_txn::REQUEST,
    ),
    message(26, "EndTxn", range(0, 5), since(3), &end_txn::REQUEST),
    message(
        28,
        "TxnOffsetCommit",
        range(0, 5),
        since(3),
        &txn_offset_commit::REQUEST,
    ),
    message(
        68,
        "ConsumerGroupHeartbeat",
        range(0, 1),
        since(0),
        &consumer_group_heartbeat::REQUEST,
    ),
    message(
        69,
        "ConsumerGroupDescribe",
        range(0, 1),
        since(0),
        &consumer_group_describe::REQUEST,
    ),
    message(
        43,
        "ElectLeaders",
        range(0, 2),
        since(2),
        &elect_leaders::REQUEST,
    ),
    message(
        29,
        "DescribeAcls",
        range(1, 3),
        since(2),
        &describe_acls::REQUEST,
    ),
    message(
        30,
        "CreateAcls",
        range(1, 3),
        since(2),
        &create_acls::REQUEST,
    ),
    message(
        31,
        "DeleteAcls",
        range(1, 3),
        since(2),
        &delete_acls::REQUEST,
    ),
];
