//! Where the replicas of new partitions go: spread over the unfenced brokers, balanced by the
//! number of partitions each leads and hosts, and across racks when brokers have them (Kafka's
//! rack-aware assignment, simplified to a greedy choice that is deterministic for a given
//! input, so every retry of a CreateTopics proposes the same placement).

use crate::BrokerId;

/// A broker that can take replicas, and how many it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLoad {
    pub id: BrokerId,
    pub rack: Option<String>,
    /// Partitions it leads (or will once elected: the first replica is the preferred leader).
    pub leaders: usize,
    /// Replicas it hosts, leaders included.
    pub replicas: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "replication factor {replication_factor} is larger than the {brokers} available brokers"
    )]
    NotEnoughBrokers {
        replication_factor: usize,
        brokers: usize,
    },
    #[error("the replication factor must be at least 1")]
    ZeroReplicationFactor,
}

/// Replicas for `partitions` new partitions, the preferred leader first in each. `brokers` is
/// updated with the new load, so consecutive calls keep balancing.
pub fn place_replicas(
    brokers: &mut [BrokerLoad],
    partitions: usize,
    replication_factor: usize,
) -> Result<Vec<Vec<BrokerId>>, PlacementError> {
    if replication_factor == 0 {
        return Err(PlacementError::ZeroReplicationFactor);
    }
    if replication_factor > brokers.len() {
        return Err(PlacementError::NotEnoughBrokers {
            replication_factor,
            brokers: brokers.len(),
        });
    }
    let mut out = Vec::with_capacity(partitions);
    for _ in 0..partitions {
        let leader = (0..brokers.len())
            .min_by_key(|&i| (brokers[i].leaders, brokers[i].replicas, brokers[i].id))
            .expect("at least one broker");
        brokers[leader].leaders += 1;
        brokers[leader].replicas += 1;
        let mut chosen = vec![leader];
        while chosen.len() < replication_factor {
            let racks_used: Vec<&Option<String>> =
                chosen.iter().map(|&i| &brokers[i].rack).collect();
            let next = (0..brokers.len())
                .filter(|i| !chosen.contains(i))
                .min_by_key(|&i| {
                    let rack_taken = racks_used.contains(&&brokers[i].rack);
                    (rack_taken, brokers[i].replicas, brokers[i].id)
                })
                .expect("replication factor checked against the broker count");
            brokers[next].replicas += 1;
            chosen.push(next);
        }
        out.push(chosen.into_iter().map(|i| brokers[i].id).collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[Option<&str>]) -> Vec<BrokerLoad> {
        racks
            .iter()
            .enumerate()
            .map(|(i, rack)| BrokerLoad {
                id: i as BrokerId + 1,
                rack: rack.map(str::to_string),
                leaders: 0,
                replicas: 0,
            })
            .collect()
    }

    /// 12 partitions over 3 brokers: 4 leaders each; a later topic goes on balancing.
    #[test]
    fn leaders_are_balanced() {
        let mut b = brokers(&[None, None, None]);
        let placed = place_replicas(&mut b, 12, 1).unwrap();
        for id in 1..=3 {
            assert_eq!(placed.iter().filter(|r| r[0] == id).count(), 4);
        }
        b[0].leaders += 3; // broker 1 got more elsewhere
        let more = place_replicas(&mut b, 3, 1).unwrap();
        assert!(more.iter().all(|r| r[0] != 1), "{more:?}");
    }

    /// With racks, the replicas of a partition land on different racks when they can, and the
    /// replicas per broker stay even.
    #[test]
    fn replicas_spread_over_racks() {
        let mut b = brokers(&[Some("a"), Some("a"), Some("b"), Some("b")]);
        let placed = place_replicas(&mut b, 8, 2).unwrap();
        for replicas in &placed {
            let racks: Vec<_> = replicas
                .iter()
                .map(|&id| b[(id - 1) as usize].rack.clone())
                .collect();
            assert_ne!(racks[0], racks[1], "{replicas:?}");
        }
        assert!(b.iter().all(|x| x.replicas == 4 && x.leaders == 2), "{b:?}");
    }

    #[test]
    fn too_few_brokers_is_an_error() {
        let mut b = brokers(&[None, None]);
        assert_eq!(
            place_replicas(&mut b, 1, 3),
            Err(PlacementError::NotEnoughBrokers {
                replication_factor: 3,
                brokers: 2
            })
        );
        assert_eq!(
            place_replicas(&mut b, 1, 0),
            Err(PlacementError::ZeroReplicationFactor)
        );
    }
}
