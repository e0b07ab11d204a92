//! Broker liveness (KIP-631): brokers heartbeat to the active controller, which fences a broker
//! it has not heard from for `broker_session_timeout_ms` and unfences a fenced broker that
//! heartbeats again with its current epoch.
//!
//! ```text
//!  broker ──heartbeat(id, epoch)──▶ any controller ──forward──▶ leader: last[id] = (epoch, now)
//!  leader, every tick:  unfenced broker, now − max(last heard, leader since) > timeout
//!                          ─▶ propose FenceBroker{id, epoch}
//!  leader, on a heartbeat from a fenced broker at its current epoch ─▶ propose UnfenceBroker
//! ```
//!
//! Heartbeat times live only in the leader's memory: a new leader gives every broker a full
//! session from the moment it took over, a broker just registered or unfenced gets one from
//! then, and a leader whose own ticks stalled (the process was
//! paused) counts every broker as heard at the end of the stall, so that it does not fence the
//! brokers for its own silence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::{Raft, ServerState};
use shale_metadata::{BrokerId, MetadataImage, MetadataRecord, VersionedRecord};
use tokio::sync::watch;

use crate::controller::{propose_locally, ProposeError};
use crate::types::{Proposal, TypeConfig};

/// How often the leader looks for brokers to fence.
const TICK: Duration = Duration::from_millis(100);

/// The leader's record of heartbeats; clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Liveness {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    heard: HashMap<BrokerId, (i64, Instant)>,
    /// When this node last became leader, or when its ticks resumed after a stall.
    since: Option<Instant>,
    /// Each broker's (epoch, fenced) as the fencing loop last saw it, and since when: a broker
    /// that was just registered or unfenced gets a full session from then, whatever was heard
    /// of an earlier incarnation (a restarted broker is not fenced for its predecessor's
    /// silence).
    state: HashMap<BrokerId, (i64, bool, Instant)>,
}

impl Liveness {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A heartbeat, on the leader: records it, and unfences the broker if it is fenced at this
    /// epoch. A heartbeat for another epoch than the registered one is refused (a stale
    /// incarnation).
    pub(crate) async fn heartbeat(
        &self,
        raft: &Raft<TypeConfig>,
        image: &MetadataImage,
        broker_id: BrokerId,
        broker_epoch: i64,
    ) -> Result<(), ProposeError> {
        if raft.metrics().borrow().state != ServerState::Leader {
            let m = raft.metrics().borrow().clone();
            let address = m
                .current_leader
                .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
                .map(|n| n.addr);
            return Err(ProposeError::NotLeader {
                leader: m.current_leader,
                address,
            });
        }
        let Some(broker) = image
            .brokers
            .get(&broker_id)
            .filter(|b| b.epoch == broker_epoch)
        else {
            return Err(ProposeError::Refused(format!(
                "broker {broker_id} is not registered with epoch {broker_epoch}"
            )));
        };
        self.lock()
            .heard
            .insert(broker_id, (broker_epoch, Instant::now()));
        if broker.fenced {
            propose_one(
                raft,
                MetadataRecord::UnfenceBroker {
                    broker_id,
                    broker_epoch,
                },
            )
            .await?;
            tracing::info!(
                broker_id,
                broker_epoch,
                "broker unfenced: it heartbeats again"
            );
        }
        Ok(())
    }

    /// The leader's fencing loop; runs until the task is dropped.
    pub(crate) async fn fence_silent_brokers(
        self,
        raft: Raft<TypeConfig>,
        images: watch::Receiver<Arc<MetadataImage>>,
        session_timeout: Duration,
    ) {
        let mut last_tick = Instant::now();
        let mut was_leader = false;
        loop {
            tokio::time::sleep(TICK).await;
            let now = Instant::now();
            let leading = raft.metrics().borrow().state == ServerState::Leader;
            let stalled = now.duration_since(last_tick) > session_timeout / 2;
            last_tick = now;
            if !leading {
                was_leader = false;
                continue;
            }
            if !was_leader || stalled {
                self.lock().since = Some(now);
                was_leader = true;
            }
            let image = images.borrow().clone();
            let silent: Vec<(BrokerId, i64)> = {
                let mut inner = self.lock();
                let since = inner.since.unwrap_or(now);
                for b in image.brokers.values() {
                    let id = b.registration.broker_id;
                    let seen = (b.epoch, b.fenced);
                    match inner.state.get(&id) {
                        Some((epoch, fenced, _)) if (*epoch, *fenced) == seen => {}
                        _ => {
                            inner.state.insert(id, (b.epoch, b.fenced, now));
                        }
                    }
                }
                image
                    .unfenced_brokers()
                    .filter_map(|b| {
                        let id = b.registration.broker_id;
                        let changed = inner.state.get(&id).map_or(since, |(_, _, at)| *at);
                        let since = since.max(changed);
                        let heard = inner
                            .heard
                            .get(&id)
                            .filter(|(epoch, _)| *epoch == b.epoch)
                            .map_or(since, |(_, at)| (*at).max(since));
                        (now.duration_since(heard) > session_timeout).then_some((id, b.epoch))
                    })
                    .collect()
            };
            for (broker_id, broker_epoch) in silent {
                let fenced = propose_one(
                    &raft,
                    MetadataRecord::FenceBroker {
                        broker_id,
                        broker_epoch,
                    },
                )
                .await;
                match fenced {
                    Ok(()) => tracing::warn!(
                        broker_id,
                        broker_epoch,
                        timeout_ms = session_timeout.as_millis() as u64,
                        "broker fenced: no heartbeat within broker_session_timeout_ms"
                    ),
                    Err(e) => {
                        tracing::debug!(broker_id, error = %e, "cannot fence a silent broker yet")
                    }
                }
            }
        }
    }
}

async fn propose_one(raft: &Raft<TypeConfig>, record: MetadataRecord) -> Result<(), ProposeError> {
    let proposal = Proposal {
        records: vec![VersionedRecord::new(record)],
    };
    propose_locally(raft, proposal).await.map(|_| ())
}
