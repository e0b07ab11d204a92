//! The metadata image as openraft's state machine.
//!
//! The image lives in memory and is published to the node's readers (Metadata, routing) after
//! every applied batch of entries. Its durable form is the snapshot file, written whenever
//! openraft builds or installs a snapshot:
//!
//! ```text
//!  snapshot: "SHRS", u32 meta length, u32 CRC-32C of meta, meta (JSON SnapshotMeta),
//!            then the image (shale_metadata's checksummed snapshot encoding)
//! ```
//!
//! At start the snapshot is loaded and openraft re-applies the committed entries after it
//! (the log store keeps the committed log id), so a restart costs O(metadata + entries since
//! the last snapshot).

use std::fs::File;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{BasicNode, EntryPayload, RaftSnapshotBuilder, StorageIOError, StoredMembership};
use shale_metadata::{decode_snapshot, encode_snapshot, MetadataImage, RECORD_VERSION};
use tokio::sync::watch;

use crate::types::{Entry, LogId, NodeId, Outcome, Proposal, StorageError, TypeConfig};

pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"SHRS";

type Meta = SnapshotMeta<NodeId, BasicNode>;

#[derive(Debug)]
struct Inner {
    image: MetadataImage,
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    /// The current snapshot: its meta and the image bytes.
    snapshot: Option<(Meta, Vec<u8>)>,
    snapshots_built: u64,
}

/// The state machine; clones share it.
#[derive(Debug, Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<Inner>>,
    dir: PathBuf,
    published: Arc<watch::Sender<Arc<MetadataImage>>>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

fn encode_file(meta: &Meta, image: &[u8]) -> Vec<u8> {
    let meta_bytes = serde_json::to_vec(meta).expect("snapshot meta serializes");
    let mut out = Vec::with_capacity(12 + meta_bytes.len() + image.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(meta_bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&meta_bytes).to_be_bytes());
    out.extend_from_slice(&meta_bytes);
    out.extend_from_slice(image);
    out
}

fn decode_file(bytes: &[u8]) -> Result<(Meta, MetadataImage, Vec<u8>), String> {
    if bytes.len() < 12 || &bytes[..4] != SNAPSHOT_MAGIC {
        return Err("it does not start with \"SHRS\"".to_string());
    }
    let len = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let meta_bytes = bytes
        .get(12..12 + len)
        .ok_or_else(|| "its meta is cut short".to_string())?;
    if crc32c::crc32c(meta_bytes) != crc {
        return Err("its meta fails its CRC-32C".to_string());
    }
    let meta: Meta = serde_json::from_slice(meta_bytes).map_err(|e| e.to_string())?;
    let image_bytes = bytes[12 + len..].to_vec();
    let image = decode_snapshot(&image_bytes).map_err(|e| e.to_string())?;
    Ok((meta, image, image_bytes))
}

impl StateMachine {
    /// Loads the snapshot in `dir`, if any. A damaged snapshot stops the node: it must not
    /// serve metadata it cannot vouch for (the quorum can send it a fresh one once the file is
    /// moved away).
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(SNAPSHOT_FILE);
        let mut inner = Inner {
            image: MetadataImage::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            snapshots_built: 0,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let (meta, image, image_bytes) = decode_file(&bytes).map_err(|reason| {
                    format!(
                        "the metadata snapshot {} is unreadable: {reason}",
                        path.display()
                    )
                })?;
                inner.image = image;
                inner.last_applied = meta.last_log_id;
                inner.membership = meta.last_membership.clone();
                inner.snapshot = Some((meta, image_bytes));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        let (published, _) = watch::channel(Arc::new(inner.image.clone()));
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            dir: dir.to_path_buf(),
            published: Arc::new(published),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The image as of the last applied entry, and every later one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.published.subscribe()
    }

    /// Snapshots built by this process (for tests and status).
    pub fn snapshots_built(&self) -> u64 {
        self.lock().snapshots_built
    }

    async fn write_snapshot_file(&self, meta: Meta, image: Vec<u8>) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
            let mut file = File::create(&tmp)?;
            file.write_all(&encode_file(&meta, &image))?;
            file.sync_all()?;
            std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
            File::open(&dir)?.sync_all()
        })
        .await
        .map_err(sm_err)?
        .map_err(|e| StorageIOError::write_snapshot(None, &e).into())
    }
}

/// Applies a proposal all or nothing.
fn apply_proposal(image: &mut MetadataImage, proposal: &Proposal) -> Outcome {
    if let Some(r) = proposal.records.iter().find(|r| r.v != RECORD_VERSION) {
        return Outcome {
            refused: Some(format!(
                "record version {} is not {RECORD_VERSION}, the one this build applies",
                r.v
            )),
        };
    }
    let refused = if let [single] = proposal.records.as_slice() {
        image.apply(&single.record).err()
    } else {
        let mut next = image.clone();
        match proposal
            .records
            .iter()
            .try_for_each(|r| next.apply(&r.record))
        {
            Ok(()) => {
                *image = next;
                None
            }
            Err(e) => Some(e),
        }
    };
    Outcome {
        refused: refused.map(|e| e.to_string()),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut outcomes = Vec::new();
        let image = {
            let mut inner = self.lock();
            for entry in entries {
                inner.last_applied = Some(entry.log_id);
                let outcome = match entry.payload {
                    EntryPayload::Blank => Outcome::default(),
                    EntryPayload::Normal(proposal) => {
                        let outcome = apply_proposal(&mut inner.image, &proposal);
                        if let Some(reason) = &outcome.refused {
                            tracing::debug!(log_id = %entry.log_id, %reason, "a metadata proposal was refused");
                        }
                        outcome
                    }
                    EntryPayload::Membership(membership) => {
                        inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Outcome::default()
                    }
                };
                outcomes.push(outcome);
            }
            Arc::new(inner.image.clone())
        };
        self.published.send_replace(image);
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let image = decode_snapshot(&bytes).map_err(|e| {
            StorageIOError::read_snapshot(
                Some(meta.signature()),
                &std::io::Error::other(e.to_string()),
            )
        })?;
        self.write_snapshot_file(meta.clone(), bytes.clone())
            .await?;
        let published = {
            let mut inner = self.lock();
            inner.image = image;
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
            inner.snapshot = Some((meta.clone(), bytes));
            Arc::new(inner.image.clone())
        };
        self.published.send_replace(published);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.lock().snapshot.clone().map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // A consistent view: the image and the log id it reflects, taken under one lock.
        let (meta, bytes) = {
            let inner = self.lock();
            let id = inner.last_applied.map_or_else(
                || "empty".to_string(),
                |l| format!("{}-{}", l.leader_id, l.index),
            );
            let meta = Meta {
                last_log_id: inner.last_applied,
                last_membership: inner.membership.clone(),
                snapshot_id: id,
            };
            (meta, encode_snapshot(&inner.image))
        };
        self.write_snapshot_file(meta.clone(), bytes.clone())
            .await?;
        {
            let mut inner = self.lock();
            inner.snapshot = Some((meta.clone(), bytes.clone()));
            inner.snapshots_built += 1;
        }
        tracing::debug!(last_log_id = ?meta.last_log_id, bytes = bytes.len(), "metadata snapshot written");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}
