//! [`MetadataImage`]: the cluster metadata as the records so far have built it.
//!
//! ```text
//!  broker states:   (absent) ──RegisterBroker──▶ fenced ──UnfenceBroker──▶ unfenced
//!                                 ▲  new epoch     ▲  └──────FenceBroker──────┘
//!                                 └── RegisterBroker (new incarnation) from either state
//!                   fenced/unfenced ──UnregisterBroker──▶ (absent)
//! ```
//!
//! Fence, unfence and unregister name the broker epoch they were decided for, so a decision
//! about an incarnation that has since re-registered is refused, not applied to the new one.
//!
//! Leader election rides those records (KRaft's controller writes the same outcome as
//! PartitionChangeRecords; here every node derives it while applying, deterministically):
//!
//! ```text
//!  broker B fenced, unregistered, or re-registered as a new incarnation:
//!    every partition:  B leaves the ISR unless it is the last member
//!    led by B:         leader = first replica in the new ISR that is unfenced, else none
//!                      (no unclean election: an ISR of [B] stays, leaderless, until B is back)
//!  broker B unfenced:
//!    leaderless partition with B in its ISR:  leader = B
//!  every leader change bumps the leader epoch; every change the partition epoch
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{
    BrokerRegistration, ConfigResource, MetadataRecord, PartitionChange, PartitionRecord,
};
use crate::{BrokerId, NO_LEADER};

/// Why a record was refused. The image is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("the cluster id is already {existing}, not {proposed}")]
    ClusterIdConflict { existing: String, proposed: String },
    #[error("broker {broker_id} is not registered with epoch {broker_epoch}")]
    StaleBrokerEpoch {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    #[error("a topic named {name} or with id {topic_id} already exists")]
    DuplicateTopic { name: String, topic_id: Uuid },
    #[error("no topic has id {topic_id}")]
    UnknownTopicId { topic_id: Uuid },
    #[error("no topic is named {name}")]
    UnknownTopicName { name: String },
    #[error("partition {partition} of topic {topic_id} {reason}")]
    InvalidPartition {
        topic_id: Uuid,
        partition: i32,
        reason: String,
    },
    #[error(
        "the change of partition {partition} of topic {topic_id} was made for partition epoch \
         {proposed}, but it is at {current}"
    )]
    StalePartitionEpoch {
        topic_id: Uuid,
        partition: i32,
        proposed: i32,
        current: i32,
    },
    #[error(
        "partition {partition} of topic {topic_id} cannot add broker {broker_id} to its ISR: it \
         is not an unfenced broker (KIP-841)"
    )]
    IneligibleReplica {
        topic_id: Uuid,
        partition: i32,
        broker_id: BrokerId,
    },
    #[error("producer ids up to {current} are handed out already; {proposed} does not move on")]
    ProducerIdsBackwards { current: i64, proposed: i64 },
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    pub registration: BrokerRegistration,
    pub epoch: i64,
    pub fenced: bool,
}

/// A partition's replica set and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// See [`PartitionRecord::start_offset`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_offset: Option<i64>,
}

/// A topic, its partitions (numbered from 0 without gaps) and its config overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionImage>,
    pub configs: BTreeMap<String, String>,
}

/// The whole cluster metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<BrokerId, BrokerImage>,
    /// The epoch the next registration gets.
    pub next_broker_epoch: i64,
    pub topics: BTreeMap<Uuid, TopicImage>,
    pub topic_ids: BTreeMap<String, Uuid>,
    /// Dynamic broker configs by broker id, `""` being the cluster-wide default.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Producer ids below this are handed out.
    pub next_producer_id: i64,
}

impl MetadataImage {
    /// Applies one committed record (see the crate docs: all or nothing, deterministic).
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::ClusterId { cluster_id } => match &self.cluster_id {
                Some(existing) if existing != cluster_id => Err(ApplyError::ClusterIdConflict {
                    existing: existing.clone(),
                    proposed: cluster_id.clone(),
                }),
                _ => {
                    self.cluster_id = Some(cluster_id.clone());
                    Ok(())
                }
            },
            MetadataRecord::RegisterBroker(registration) => {
                let same_incarnation = self
                    .brokers
                    .get(&registration.broker_id)
                    .is_some_and(|b| b.registration.incarnation_id == registration.incarnation_id);
                if !same_incarnation {
                    // The old incarnation is gone: whatever it led is elected elsewhere.
                    if self.brokers.contains_key(&registration.broker_id) {
                        self.elect_without(registration.broker_id);
                    }
                    let epoch = self.next_broker_epoch;
                    self.next_broker_epoch += 1;
                    self.brokers.insert(
                        registration.broker_id,
                        BrokerImage {
                            registration: registration.clone(),
                            epoch,
                            fenced: true,
                        },
                    );
                }
                Ok(())
            }
            MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch,
            } => {
                self.broker_at(*broker_id, *broker_epoch)?;
                self.brokers.remove(broker_id);
                self.elect_without(*broker_id);
                Ok(())
            }
            MetadataRecord::FenceBroker {
                broker_id,
                broker_epoch,
            } => {
                self.broker_at(*broker_id, *broker_epoch)?.fenced = true;
                self.elect_without(*broker_id);
                Ok(())
            }
            MetadataRecord::UnfenceBroker {
                broker_id,
                broker_epoch,
            } => {
                self.broker_at(*broker_id, *broker_epoch)?.fenced = false;
                self.elect_returning(*broker_id);
                Ok(())
            }
            MetadataRecord::Topic { name, topic_id } => {
                if self.topic_ids.contains_key(name) || self.topics.contains_key(topic_id) {
                    return Err(ApplyError::DuplicateTopic {
                        name: name.clone(),
                        topic_id: *topic_id,
                    });
                }
                self.topic_ids.insert(name.clone(), *topic_id);
                self.topics.insert(
                    *topic_id,
                    TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        partitions: BTreeMap::new(),
                        configs: BTreeMap::new(),
                    },
                );
                Ok(())
            }
            MetadataRecord::Partition(record) => self.add_partition(record),
            MetadataRecord::PartitionChange(change) => self.change_partition(change),
            MetadataRecord::RemoveTopic { topic_id } => {
                let topic = self
                    .topics
                    .remove(topic_id)
                    .ok_or(ApplyError::UnknownTopicId {
                        topic_id: *topic_id,
                    })?;
                self.topic_ids.remove(&topic.name);
                Ok(())
            }
            MetadataRecord::Config {
                resource,
                name,
                value,
            } => {
                let configs = match resource {
                    ConfigResource::Topic(topic) => {
                        let id = self.topic_ids.get(topic).ok_or_else(|| {
                            ApplyError::UnknownTopicName {
                                name: topic.clone(),
                            }
                        })?;
                        &mut self.topics.get_mut(id).expect("ids map to topics").configs
                    }
                    ConfigResource::Broker(broker) => {
                        self.broker_configs.entry(broker.clone()).or_default()
                    }
                };
                match value {
                    Some(value) => {
                        configs.insert(name.clone(), value.clone());
                    }
                    None => {
                        configs.remove(name);
                    }
                }
                self.broker_configs.retain(|_, configs| !configs.is_empty());
                Ok(())
            }
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                if *next_producer_id <= self.next_producer_id {
                    return Err(ApplyError::ProducerIdsBackwards {
                        current: self.next_producer_id,
                        proposed: *next_producer_id,
                    });
                }
                self.next_producer_id = *next_producer_id;
                Ok(())
            }
        }
    }

    fn broker_at(
        &mut self,
        broker_id: BrokerId,
        epoch: i64,
    ) -> Result<&mut BrokerImage, ApplyError> {
        match self.brokers.get_mut(&broker_id) {
            Some(broker) if broker.epoch == epoch => Ok(broker),
            _ => Err(ApplyError::StaleBrokerEpoch {
                broker_id,
                broker_epoch: epoch,
            }),
        }
    }

    fn topic_mut(&mut self, topic_id: Uuid) -> Result<&mut TopicImage, ApplyError> {
        self.topics
            .get_mut(&topic_id)
            .ok_or(ApplyError::UnknownTopicId { topic_id })
    }

    fn add_partition(&mut self, record: &PartitionRecord) -> Result<(), ApplyError> {
        let invalid = invalid_partition(record.topic_id, record.partition);
        let topic = self.topic_mut(record.topic_id)?;
        let next = topic.partitions.len() as i32;
        if record.partition != next {
            return Err(invalid(format!(
                "cannot be added: partitions are numbered without gaps and the next is {next}"
            )));
        }
        check_assignment(&record.replicas, &record.isr, record.leader).map_err(invalid)?;
        topic.partitions.insert(
            record.partition,
            PartitionImage {
                replicas: record.replicas.clone(),
                isr: record.isr.clone(),
                leader: record.leader,
                leader_epoch: 0,
                partition_epoch: 0,
                start_offset: record.start_offset,
            },
        );
        Ok(())
    }

    fn change_partition(&mut self, change: &PartitionChange) -> Result<(), ApplyError> {
        let invalid = invalid_partition(change.topic_id, change.partition);
        let unfenced: Vec<BrokerId> = self
            .unfenced_brokers()
            .map(|b| b.registration.broker_id)
            .collect();
        let topic = self.topic_mut(change.topic_id)?;
        let partition = topic
            .partitions
            .get_mut(&change.partition)
            .ok_or_else(|| invalid("does not exist".to_string()))?;
        if change.partition_epoch != partition.partition_epoch {
            return Err(ApplyError::StalePartitionEpoch {
                topic_id: change.topic_id,
                partition: change.partition,
                proposed: change.partition_epoch,
                current: partition.partition_epoch,
            });
        }
        let replicas = change.replicas.as_ref().unwrap_or(&partition.replicas);
        let isr = change.isr.as_ref().unwrap_or(&partition.isr);
        let leader = change.leader.map_or(partition.leader, |l| l.leader);
        check_assignment(replicas, isr, leader).map_err(invalid)?;
        if let Some(&added) = isr
            .iter()
            .find(|b| !partition.isr.contains(b) && !unfenced.contains(b))
        {
            return Err(ApplyError::IneligibleReplica {
                topic_id: change.topic_id,
                partition: change.partition,
                broker_id: added,
            });
        }
        let (replicas, isr) = (replicas.clone(), isr.clone());
        if leader != partition.leader {
            partition.leader_epoch += 1;
        }
        partition.replicas = replicas;
        partition.isr = isr;
        partition.leader = leader;
        partition.partition_epoch += 1;
        Ok(())
    }

    /// `gone` may lead nothing and leaves every ISR it is not the last member of; partitions
    /// it led get the first unfenced replica of their new ISR as leader, or none.
    fn elect_without(&mut self, gone: BrokerId) {
        let unfenced: Vec<BrokerId> = self
            .unfenced_brokers()
            .map(|b| b.registration.broker_id)
            .filter(|b| *b != gone)
            .collect();
        for partition in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.values_mut())
        {
            let mut changed = false;
            if partition.isr.len() > 1 && partition.isr.contains(&gone) {
                partition.isr.retain(|b| *b != gone);
                changed = true;
            }
            if partition.leader == gone {
                partition.leader = partition
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| partition.isr.contains(r) && unfenced.contains(r))
                    .unwrap_or(NO_LEADER);
                partition.leader_epoch += 1;
                changed = true;
            }
            if changed {
                partition.partition_epoch += 1;
            }
        }
    }

    /// `back` leads every leaderless partition whose ISR holds it (it was the last in sync).
    fn elect_returning(&mut self, back: BrokerId) {
        for partition in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.values_mut())
        {
            if partition.leader == NO_LEADER && partition.isr.contains(&back) {
                partition.leader = back;
                partition.leader_epoch += 1;
                partition.partition_epoch += 1;
            }
        }
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    /// Brokers that may lead partitions now.
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Checks the invariants of the crate docs; the error names the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.topic_ids.len() != self.topics.len() {
            return Err(format!(
                "{} topic names for {} topics",
                self.topic_ids.len(),
                self.topics.len()
            ));
        }
        for (name, id) in &self.topic_ids {
            match self.topics.get(id) {
                Some(topic) if &topic.name == name && &topic.id == id => {}
                _ => {
                    return Err(format!(
                        "the name {name} maps to {id}, which is not that topic"
                    ))
                }
            }
        }
        for topic in self.topics.values() {
            for (i, (number, partition)) in topic.partitions.iter().enumerate() {
                if *number != i as i32 {
                    return Err(format!(
                        "topic {} has a gap before partition {number}",
                        topic.name
                    ));
                }
                check_assignment(&partition.replicas, &partition.isr, partition.leader)
                    .map_err(|reason| format!("partition {}-{number} {reason}", topic.name))?;
                if partition.leader_epoch > partition.partition_epoch {
                    return Err(format!(
                        "partition {}-{number} has leader epoch {} above its partition epoch {}",
                        topic.name, partition.leader_epoch, partition.partition_epoch
                    ));
                }
            }
        }
        for broker in self.brokers.values() {
            if broker.epoch >= self.next_broker_epoch {
                return Err(format!(
                    "broker {} has epoch {}, not below the next epoch {}",
                    broker.registration.broker_id, broker.epoch, self.next_broker_epoch
                ));
            }
        }
        Ok(())
    }
}

fn invalid_partition(topic_id: Uuid, partition: i32) -> impl Fn(String) -> ApplyError {
    move |reason| ApplyError::InvalidPartition {
        topic_id,
        partition,
        reason,
    }
}

/// Replicas are distinct and non-empty, the ISR is a subset of them, and the leader is in the
/// ISR or there is none.
fn check_assignment(
    replicas: &[BrokerId],
    isr: &[BrokerId],
    leader: BrokerId,
) -> Result<(), String> {
    if replicas.is_empty() {
        return Err("has no replicas".to_string());
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) || sorted.iter().any(|&r| r < 0) {
        return Err(format!("has invalid replicas {replicas:?}"));
    }
    let mut sorted_isr = isr.to_vec();
    sorted_isr.sort_unstable();
    if sorted_isr.windows(2).any(|w| w[0] == w[1]) || isr.iter().any(|r| !replicas.contains(r)) {
        return Err(format!(
            "has an ISR {isr:?} that is not a set of its replicas {replicas:?}"
        ));
    }
    if leader != NO_LEADER && !isr.contains(&leader) {
        return Err(format!(
            "has leader {leader}, which is not in its ISR {isr:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
