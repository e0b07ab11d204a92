//! The listener: accepts connections up to `max_connections`, hands each to
//! [`crate::connection::serve`], runs the broker's background jobs, and on shutdown stops
//! accepting, lets every connection answer the request it is working on, and closes the logs.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::broker::Broker;

/// How long shutdown waits for connections to finish their current request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(listener: TcpListener, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections as usize));
    let mut connections = JoinSet::new();
    let maintenance = tokio::spawn(broker.clone().maintenance_loop(shutdown.clone()));
    let tiering = tokio::spawn(crate::tiered::tiering_loop(
        broker.clone(),
        shutdown.clone(),
    ));
    let archive = tokio::spawn(crate::tiered::archive_loop(
        broker.clone(),
        shutdown.clone(),
    ));
    // The group coordinator's offset retention; on shutdown it answers waiting JoinGroups.
    let coordinator = {
        let (broker, shutdown) = (broker.clone(), shutdown.clone());
        tokio::spawn(async move { broker.groups.run(shutdown).await })
    };
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = broker.config.max_connections, "connection limit reached; refusing connection");
            drop(stream);
            continue;
        };
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            crate::connection::serve(broker, stream, peer, shutdown).await;
            drop(permit);
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    tracing::info!(
        open_connections = connections.len(),
        "shutting down: draining connections"
    );
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections did not finish in time; closing them");
        connections.abort_all();
    }
    maintenance.abort();
    tiering.abort();
    archive.abort();
    coordinator.abort();
    let b = broker.clone();
    let _ = tokio::task::spawn_blocking(move || b.close()).await;
    tracing::info!("shutdown complete");
}
