//! Booting and serving. [`run`] is everything `shale serve` does once its arguments are parsed:
//! lock the data dir, check the object store, open (recover) the data dir, restore topics from the bucket, then
//! [`serve`]: accept connections up to `max_connections`, hand each to
//! [`crate::connection::serve`], run the broker's background jobs, and on shutdown stop
//! accepting, let every connection answer the request it is working on, and close the logs.
//! Tests call [`run`] with a listener on port 0 to boot the real broker in-process.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::broker::{Broker, StartupError};
use crate::config::{parse_host_port, BrokerConfig};

/// Why the broker did not start. Each message names the setting or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Locked(#[from] crate::data_dir_lock::LockError),
    #[error("cannot read the listener's address: {0}")]
    Listener(std::io::Error),
    #[error("setting `advertised_listener` is not HOST:PORT: {0:?}")]
    AdvertisedListener(String),
    /// The object store is unusable (its message names the `remote_storage_*` setting).
    #[error("{0}")]
    RemoteStorage(String),
    #[error("cannot open the broker's data: {0}")]
    Open(#[from] StartupError),
    #[error("cannot restore topics from remote storage: {0}")]
    Restore(String),
}

/// Boots the broker on `listener` with `config` (already validated) and serves until
/// `shutdown` turns true; returns once the logs are closed.
pub async fn run(
    config: BrokerConfig,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let bound = listener.local_addr().map_err(RunError::Listener)?;
    let advertised = if config.advertised_listener.is_empty() {
        (bound.ip().to_string(), bound.port())
    } else {
        parse_host_port(&config.advertised_listener)
            .ok_or_else(|| RunError::AdvertisedListener(config.advertised_listener.clone()))?
    };
    // First of all: no other broker may be using this data dir (held until `run` returns,
    // after the logs are closed).
    let _lock = crate::data_dir_lock::DataDirLock::acquire(&config.data_dir)?;
    // The object store is checked before anything else opens, so a bad URL, endpoint or
    // credential stops startup with a message naming the setting.
    let remote = crate::tiered::open_remote(&config)
        .await
        .map_err(RunError::RemoteStorage)?;
    let broker = {
        let advertised = advertised.clone();
        crate::blocking::run(move || Broker::open(config, advertised)).await?
    };
    if let Some(rlm) = remote {
        broker.set_remote(rlm);
        let restored = crate::tiered::restore(&broker)
            .await
            .map_err(RunError::Restore)?;
        if restored > 0 {
            tracing::info!(topics = restored, "restored topics from remote storage");
        }
    }
    tracing::info!(listen = %bound, advertised = %format!("{}:{}", advertised.0, advertised.1), "shale listening");
    serve(listener, broker, shutdown).await;
    Ok(())
}

/// How long shutdown waits for connections to finish their current request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves an opened broker on `listener` until `shutdown` turns true, then drains and closes.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections as usize));
    // Bytes of requests being read or waiting for an answer, across every connection.
    let request_budget = Arc::new(Semaphore::new(
        (broker.config.queued_max_request_bytes as usize).min(Semaphore::MAX_PERMITS),
    ));
    let mut connections = JoinSet::new();
    let maintenance = tokio::spawn(broker.clone().maintenance_loop(shutdown.clone()));
    let disk_space = tokio::spawn(broker.clone().disk_space_loop(shutdown.clone()));
    let isr = tokio::spawn(broker.clone().isr_loop(shutdown.clone()));
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
        let budget = request_budget.clone();
        connections.spawn(async move {
            crate::connection::serve(broker, stream, peer, shutdown, budget).await;
            drop(permit);
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // Fenced before the connections drain: clients refreshing their metadata meanwhile are
    // told this broker's partitions are offline rather than sent back here.
    {
        let b = broker.clone();
        if crate::blocking::try_run(move || b.controlled_shutdown())
            .await
            .is_err()
        {
            tracing::error!("the controlled shutdown panicked");
        }
    }
    tracing::info!(
        open_connections = connections.len(),
        "shutting down: draining connections"
    );
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections did not finish in time; closing them");
        connections.abort_all();
    }
    maintenance.abort();
    disk_space.abort();
    isr.abort();
    tiering.abort();
    archive.abort();
    coordinator.abort();
    let b = broker.clone();
    if crate::blocking::try_run(move || b.close()).await.is_err() {
        tracing::error!("closing the logs panicked");
    }
    tracing::info!("shutdown complete");
}
