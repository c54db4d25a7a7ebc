//! The one error type of the store boundary, with constructors that classify I/O failures.
//!
//! A full disk is its own variant so the API can answer "insufficient storage" instead of a
//! generic server error, whether the write that hit it was a blob file or the index.

use std::io;
use std::path::{Path, PathBuf};

use shoal_protocol::{Digest, DigestMismatch};

/// Everything that can go wrong inside the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed on the named path.
    #[error("store I/O failed: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file system holding the store is full (or over quota).
    #[error("no space left for the store at {}", path.display())]
    DiskFull { path: PathBuf },
    /// The metadata index (redb) failed during the named operation.
    #[error("store index failed during {op}: {source}")]
    Index {
        op: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
    /// The bytes written do not hash to the digest they were stored under.
    #[error(transparent)]
    DigestMismatch(#[from] DigestMismatch),
    /// A blob is larger than the caller allowed for an in-memory read or write.
    #[error("blob {digest} is {size} bytes, more than the {max} allowed here")]
    TooLarge { digest: Digest, size: u64, max: u64 },
    /// An earlier write to this temp blob failed or was cancelled midway; it cannot be committed.
    #[error("temp blob {} is incomplete after a failed or cancelled write", path.display())]
    IncompleteWrite { path: PathBuf },
    /// A blocking store task ended without a result (it panicked or the runtime is shutting down).
    #[error("store background task for {op} did not finish: {source}")]
    TaskFailed {
        op: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl StoreError {
    /// Wraps an I/O error on `path`, turning "no space" and "quota exceeded" into `DiskFull`.
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        if is_disk_full(&source) {
            StoreError::DiskFull { path: path.to_owned() }
        } else {
            StoreError::Io { op, path: path.to_owned(), source }
        }
    }

    /// Wraps an index error; a full disk under the index is reported as `DiskFull` too.
    pub(crate) fn index(
        op: &'static str,
        index_path: &Path,
        source: impl Into<redb::Error>,
    ) -> Self {
        let source = source.into();
        if let redb::Error::Io(err) = &source
            && is_disk_full(err)
        {
            return StoreError::DiskFull { path: index_path.to_owned() };
        }
        StoreError::Index { op, source: Box::new(source) }
    }

    /// True when the failure is a full disk; the HTTP layer answers 507 for these.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull { .. })
    }
}

fn is_disk_full(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}
