//! [`CacheError`], and the shared form a single-flight fetch failure takes before it is handed to
//! each waiting reader.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use object_store::path::Path;

/// Why a cache read failed. Every variant names the object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The object does not exist (any more): it was deleted, or the path is wrong.
    #[error("object {path} was not found in the object store")]
    NotFound { path: Path },

    /// The object store failed the request. Nothing was cached; a later read retries.
    #[error("reading object {path} from the object store failed: {source}")]
    Store {
        path: Path,
        source: object_store::Error,
    },

    /// The caller asked for bytes outside the object (or a backwards range).
    #[error(
        "byte range {}..{} is not inside object {path}, which is {object_size} bytes long",
        range.start,
        range.end
    )]
    InvalidRange {
        path: Path,
        range: Range<u64>,
        object_size: u64,
    },

    /// The store returned a different number of bytes than the range asked for: the size the
    /// caller holds for the object (e.g. from a manifest) is not its real size.
    #[error(
        "object {path} returned {received} bytes for byte range {}..{}, so it is not the \
         {object_size} bytes long the caller says it is",
        range.start,
        range.end
    )]
    SizeMismatch {
        path: Path,
        range: Range<u64>,
        received: u64,
        object_size: u64,
    },

    /// `read_all` refuses objects too large to cache as one entry.
    #[error(
        "object {path} is {size} bytes, more than the {limit} bytes read_all keeps as one cache \
         entry; read it with read_range instead"
    )]
    TooLarge { path: Path, size: u64, limit: u64 },

    /// The fetch was dropped before it finished (the runtime is shutting down).
    #[error("the fetch of object {path} was cancelled before it finished")]
    Cancelled { path: Path },

    /// The [`CacheConfig`](crate::CacheConfig) cannot work.
    #[error("invalid cache configuration: {reason}")]
    InvalidConfig { reason: String },
}

/// How a fetch failed, in a form every reader that waited on it can get a copy of.
#[derive(Debug, Clone)]
pub(crate) enum FetchFailure {
    Store(Arc<object_store::Error>),
    SizeMismatch {
        range: Range<u64>,
        received: u64,
        object_size: u64,
    },
    TooLarge {
        size: u64,
        limit: u64,
    },
    Cancelled,
}

impl FetchFailure {
    pub(crate) fn into_error(self, path: &Path) -> CacheError {
        let path = path.clone();
        match self {
            FetchFailure::Store(source) => match &*source {
                object_store::Error::NotFound { .. } => CacheError::NotFound { path },
                _ => CacheError::Store {
                    path,
                    source: copy_store_error(&source),
                },
            },
            FetchFailure::SizeMismatch {
                range,
                received,
                object_size,
            } => CacheError::SizeMismatch {
                path,
                range,
                received,
                object_size,
            },
            FetchFailure::TooLarge { size, limit } => CacheError::TooLarge { path, size, limit },
            FetchFailure::Cancelled => CacheError::Cancelled { path },
        }
    }
}

impl From<object_store::Error> for FetchFailure {
    fn from(e: object_store::Error) -> Self {
        FetchFailure::Store(Arc::new(e))
    }
}

/// An owned copy of a shared store error with the same variant, so callers can still match on
/// kinds such as `PermissionDenied`. The original's source stays reachable through the copy's.
fn copy_store_error(shared: &Arc<object_store::Error>) -> object_store::Error {
    use object_store::Error as E;
    let source = || -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(SharedSource(Arc::clone(shared)))
    };
    match &**shared {
        E::Generic { store, .. } => E::Generic {
            store,
            source: source(),
        },
        E::NotFound { path, .. } => E::NotFound {
            path: path.clone(),
            source: source(),
        },
        E::NotSupported { .. } => E::NotSupported { source: source() },
        E::AlreadyExists { path, .. } => E::AlreadyExists {
            path: path.clone(),
            source: source(),
        },
        E::Precondition { path, .. } => E::Precondition {
            path: path.clone(),
            source: source(),
        },
        E::NotModified { path, .. } => E::NotModified {
            path: path.clone(),
            source: source(),
        },
        E::NotImplemented {
            operation,
            implementer,
        } => E::NotImplemented {
            operation: operation.clone(),
            implementer: implementer.clone(),
        },
        E::PermissionDenied { path, .. } => E::PermissionDenied {
            path: path.clone(),
            source: source(),
        },
        E::Unauthenticated { path, .. } => E::Unauthenticated {
            path: path.clone(),
            source: source(),
        },
        E::UnknownConfigurationKey { store, key } => E::UnknownConfigurationKey {
            store,
            key: key.clone(),
        },
        // Variants without a copyable payload (and future ones): keep the whole message.
        _ => E::Generic {
            store: "object store",
            source: Box::new(SharedWhole(Arc::clone(shared))),
        },
    }
}

/// Stands in for the source of a shared error: displays as that source did.
#[derive(Debug)]
struct SharedSource(Arc<object_store::Error>);

impl fmt::Display for SharedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::error::Error::source(&*self.0) {
            Some(inner) => fmt::Display::fmt(inner, f),
            None => fmt::Display::fmt(&*self.0, f),
        }
    }
}

impl std::error::Error for SharedSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

/// Stands in for a whole shared error.
#[derive(Debug)]
struct SharedWhole(Arc<object_store::Error>);

impl fmt::Display for SharedWhole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for SharedWhole {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared store failure reaches each reader as the same variant with the same message.
    #[test]
    fn shared_store_errors_keep_their_kind_and_message() {
        let original = object_store::Error::PermissionDenied {
            path: "a/b".to_string(),
            source: "access denied by policy".into(),
        };
        let message = original.to_string();
        let shared = FetchFailure::from(original);
        let err = shared.into_error(&Path::from("a/b"));
        match &err {
            CacheError::Store {
                source: object_store::Error::PermissionDenied { .. },
                ..
            } => {}
            other => panic!("expected a PermissionDenied store error, got {other:?}"),
        }
        assert!(err.to_string().contains(&message), "{err}");
        assert!(err.to_string().starts_with("reading object a/b"), "{err}");
    }

    /// A NotFound from the store becomes `CacheError::NotFound` naming the path.
    #[test]
    fn not_found_becomes_its_own_variant() {
        let shared = FetchFailure::from(object_store::Error::NotFound {
            path: "x".to_string(),
            source: "no such key".into(),
        });
        let err = shared.into_error(&Path::from("topics/x"));
        assert!(matches!(err, CacheError::NotFound { .. }));
        assert_eq!(
            err.to_string(),
            "object topics/x was not found in the object store"
        );
    }
}
