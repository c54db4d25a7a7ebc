//! The one error type of the store boundary, with constructors that classify I/O failures.
//!
//! A full disk is its own variant so the API can answer "insufficient storage" instead of a
//! generic server error, whether the write that hit it was a blob file or the index. So are the
//! refusals that come before a write (a blob that cannot fit), and an index out of service
//! after a failed write, so that each message can say what the operator should do.

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
    /// The index is out of service since a write to it failed: redb refuses every operation on
    /// a database after an I/O error. The store reopens it once the disk takes writes again.
    #[error(
        "store index {} is out of service since a write to it failed ({}); it is reopened \
         once its file system takes writes again",
        path.display(),
        if *disk_full { "no space left on the file system" } else { "I/O error" }
    )]
    IndexUnavailable { path: PathBuf, disk_full: bool },
    /// The file system holding the store is mounted read-only.
    #[error("the file system holding the store at {} is read-only", path.display())]
    ReadOnly { path: PathBuf },
    /// A blob was refused before its response started: it does not fit in the free space of
    /// the store's file system plus what eviction could free.
    #[error(
        "blob {digest} is {} but the store at {} can make room for only {} (free space, less a \
         margin for its index and what downloads in progress need, plus what eviction could \
         free); free space on that file system or move the data directory to a larger one",
        human_size(*size),
        path.display(),
        human_size(*usable)
    )]
    NoRoom { digest: Digest, size: u64, usable: u64, path: PathBuf },
    /// A blob was refused: it is larger than the store's size cap, so evicting everything else
    /// would not make it fit. Before its first byte when its size was announced; else at the
    /// write that took it past the cap, `size` being the bytes it had reached.
    #[error(
        "blob {digest} is at least {}, larger than the store's whole size cap (--max-size) of \
         {}; raise --max-size to cache it",
        human_size(*size),
        human_size(*max)
    )]
    OverCap { digest: Digest, size: u64, max: u64 },
    /// A pushed blob grew past what the store can take: the free space of its file system,
    /// less the index's margin and what downloads in progress need, plus what eviction could
    /// free. The upload is removed.
    #[error(
        "the upload reached {} but the store at {} can take only {}; free space on that file \
         system or move the data directory to a larger one",
        human_size(*size),
        path.display(),
        human_size(*usable)
    )]
    UploadNoRoom { size: u64, usable: u64, path: PathBuf },
    /// A pushed blob grew past the store's size cap. The upload is removed.
    #[error(
        "the upload reached {}, more than the store's size cap (--max-size) of {}; raise \
         --max-size to take it",
        human_size(*size),
        human_size(*max)
    )]
    UploadOverCap { size: u64, max: u64 },
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

    /// True when the failure is a full disk, now or at the index write that took the index out
    /// of service.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            StoreError::DiskFull { .. } | StoreError::IndexUnavailable { disk_full: true, .. }
        )
    }

    /// True when redb has latched this failure: the database refuses everything after it until
    /// it is reopened. Only index operations produce these, so a full disk here is the index's.
    pub(crate) fn latches_index(&self) -> bool {
        match self {
            StoreError::DiskFull { .. } => true,
            StoreError::Index { source, .. } => matches!(
                **source,
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            ),
            _ => false,
        }
    }
}

/// A byte count for people: `7.8 MiB (8200000 bytes)`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] =
        [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    match UNITS.iter().find(|(_, size)| bytes >= *size) {
        Some((name, size)) => format!("{:.1} {name} ({bytes} bytes)", bytes as f64 / *size as f64),
        None => format!("{bytes} bytes"),
    }
}

fn is_disk_full(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}
