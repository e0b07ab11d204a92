//! Opening the object store from configuration ([`StoreConfig`], [`open_store`]) and the
//! startup check that it is reachable, writable and fences conditional writes ([`check_store`]).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::TieringError;

/// Where remote segments go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A local directory (object_store's `LocalFileSystem`): the embedded default. Created if
    /// missing.
    Local { root: PathBuf },
    /// An S3-compatible store (AWS S3, MinIO, SeaweedFS, Ceph).
    S3(S3Config),
    /// In memory, for tests: gone when the process ends.
    Memory,
}

/// An S3-compatible bucket. Credentials follow AWS conventions through object_store's
/// `AmazonS3Builder::from_env`: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`,
/// web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), ECS/EKS container
/// credentials and EC2 instance roles (IMDS). The explicit fields below win over the
/// environment. `~/.aws` profiles and SSO are not read (object_store doesn't): export the
/// variables instead.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Config {
    pub bucket: String,
    /// e.g. `http://127.0.0.1:9000` for MinIO; `None` for AWS (or `AWS_ENDPOINT` from the env).
    pub endpoint: Option<String>,
    /// `None`: `AWS_REGION`/`AWS_DEFAULT_REGION` from the environment, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), which MinIO, SeaweedFS and Ceph usually
    /// need; virtual-hosted style (`bucket.endpoint/key`) otherwise.
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// Opens the store `config` names. Checks only the configuration; [`check_store`] talks to it.
pub fn open_store(config: &StoreConfig) -> Result<Arc<dyn ObjectStore>, TieringError> {
    match config {
        StoreConfig::Memory => Ok(Arc::new(InMemory::new())),
        StoreConfig::Local { root } => {
            std::fs::create_dir_all(root).map_err(|e| TieringError::InvalidConfig {
                reason: format!(
                    "the local object-store directory {} cannot be created: {e}",
                    root.display()
                ),
            })?;
            let store = LocalFileSystem::new_with_prefix(root).map_err(|e| {
                TieringError::InvalidConfig {
                    reason: format!(
                        "the local object-store directory {} cannot be used: {e}",
                        root.display()
                    ),
                }
            })?;
            Ok(Arc::new(store))
        }
        StoreConfig::S3(s3) => {
            if s3.bucket.is_empty() {
                return Err(TieringError::InvalidConfig {
                    reason: "the S3 bucket name is empty".to_string(),
                });
            }
            // object_store retries transport and 5xx errors itself; keep that short (a few
            // attempts within 30 s) since the remote log retries whole steps with its own
            // backoff on top, and a startup check against a dead endpoint should fail fast.
            let retry = object_store::RetryConfig {
                backoff: object_store::BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: std::time::Duration::from_secs(30),
            };
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(&s3.bucket)
                .with_virtual_hosted_style_request(!s3.path_style)
                .with_retry(retry);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            if let Some(key) = &s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            let store = builder.build().map_err(|e| TieringError::InvalidConfig {
                reason: format!(
                    "the S3 store for bucket {:?} cannot be built: {e}",
                    s3.bucket
                ),
            })?;
            Ok(Arc::new(store))
        }
    }
}

/// The startup check: the store is reachable, writable, readable, deletable, and refuses a
/// second conditional create of the same object (the manifest fencing depends on it).
/// Leaves nothing behind on success. The error says which step failed and why.
pub async fn check_store(store: &dyn ObjectStore, prefix: &Path) -> Result<(), TieringError> {
    let path = prefix
        .clone()
        .join("_shale_probe")
        .join(uuid::Uuid::new_v4().simple().to_string().as_str());
    let body = Bytes::from(format!("shale store probe {path}"));
    let unusable = |what| probe_unusable(store, &path, what);
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    store
        .put_opts(&path, PutPayload::from(body.clone()), create.clone())
        .await
        .map_err(unusable(
            "writing a probe object (is the store reachable, does the bucket exist, may these \
             credentials write?)",
        ))?;
    let result = check_written_probe(store, &path, &body, create).await;
    // Clean up whatever the checks found, then report the first problem.
    let deleted = store.delete(&path).await.map_err(unusable(
        "deleting the probe object (may these credentials delete?)",
    ));
    result?;
    deleted?;
    match store.head(&path).await {
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        Ok(_) => Err(probe_misbehaves(
            store,
            &path,
            "the probe object is still there after a successful DELETE".to_string(),
        )),
        Err(source) => Err(unusable("looking up the deleted probe object")(source)),
    }
}

async fn check_written_probe(
    store: &dyn ObjectStore,
    path: &Path,
    body: &Bytes,
    create: PutOptions,
) -> Result<(), TieringError> {
    let unusable = |what| probe_unusable(store, path, what);
    let misbehaves = |reason| probe_misbehaves(store, path, reason);
    let read = store
        .get(path)
        .await
        .map_err(unusable("reading the probe object back"))?
        .bytes()
        .await
        .map_err(unusable("reading the probe object's body"))?;
    if read != body {
        return Err(misbehaves(format!(
            "reading it back gave {} bytes that differ from the {} written",
            read.len(),
            body.len()
        )));
    }
    match store
        .put_opts(path, PutPayload::from(Bytes::from_static(b"x")), create)
        .await
    {
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(()),
        Ok(_) => Err(misbehaves(
            "a second create-if-absent PUT of an existing object succeeded: this store does not \
             enforce conditional writes (If-None-Match), so manifest fencing cannot work on it"
                .to_string(),
        )),
        Err(source) => Err(unusable("a conditional create of an existing object")(
            source,
        )),
    }
}

/// The error for a probe request (step `what`) that failed.
fn probe_unusable(
    store: &dyn ObjectStore,
    path: &Path,
    what: &'static str,
) -> impl FnOnce(object_store::Error) -> TieringError {
    let store = store.to_string();
    let path = path.to_string();
    move |source| TieringError::StoreUnusable {
        store,
        what,
        path,
        source: Box::new(source),
    }
}

/// The error for a probe request that succeeded with a wrong answer.
fn probe_misbehaves(store: &dyn ObjectStore, path: &Path, reason: String) -> TieringError {
    TieringError::StoreMisbehaves {
        store: store.to_string(),
        path: path.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::flaky;
    use shale_cache::testing::FaultyStore;

    /// A failing step is named in the error, with the store and the probe object.
    #[tokio::test]
    async fn check_names_the_failed_step() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let down = flaky(inner.clone(), 1, 1000, 0, std::time::Duration::ZERO);
        let err = check_store(&down, &Path::from("p")).await.unwrap_err();
        assert!(
            matches!(&err, TieringError::StoreUnusable { what, store, path, .. }
                if what.starts_with("writing a probe object")
                    && store.starts_with("FaultyStore(")
                    && path.starts_with("p/_shale_probe/")),
            "{err}"
        );
        // The first PUT goes through; the second, the conditional create, fails.
        let crashes = FaultyStore::crash_at(inner, 1, false);
        let err = check_store(&crashes, &Path::from("p")).await.unwrap_err();
        assert!(
            matches!(
                &err,
                TieringError::StoreUnusable {
                    what: "a conditional create of an existing object",
                    ..
                }
            ),
            "{err}"
        );
    }

    /// The startup check passes on the embedded default and in memory, and leaves nothing.
    #[tokio::test]
    async fn check_passes_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        for config in [
            StoreConfig::Memory,
            StoreConfig::Local {
                root: dir.path().join("objects"),
            },
        ] {
            let store = open_store(&config).unwrap();
            check_store(store.as_ref(), &Path::from("p")).await.unwrap();
            use futures::TryStreamExt;
            let left: Vec<_> = store.list(None).try_collect().await.unwrap();
            assert!(left.is_empty(), "{config:?} left {left:?}");
        }
    }

    /// An unreachable S3 endpoint fails with a sentence that names the step.
    #[tokio::test]
    async fn unreachable_store_is_reported() {
        let store = open_store(&StoreConfig::S3(S3Config {
            bucket: "b".to_string(),
            endpoint: Some("http://127.0.0.1:9".to_string()),
            region: Some("us-east-1".to_string()),
            path_style: true,
            access_key_id: Some("k".to_string()),
            secret_access_key: Some("s".to_string()),
        }))
        .unwrap();
        let err = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            check_store(store.as_ref(), &Path::from("p")),
        )
        .await
        .expect("the check gives up on its own")
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("writing a probe object"), "{message}");
    }

    #[test]
    fn empty_bucket_is_a_config_error() {
        let err = open_store(&StoreConfig::S3(S3Config::default())).unwrap_err();
        assert!(err.to_string().contains("bucket name is empty"));
    }
}
