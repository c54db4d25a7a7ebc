//! Room on the disk: what the store's file system can still take, and whether the store can
//! take writes at all (the readiness check).

use std::path::Path;
use std::sync::Arc;

use rustix::fs::StatVfsMountFlags;

use super::{Store, StoreError, blocking};

/// The room an index commit may need: an index that a failed write took out of service is
/// tried again once its file system gained this much, and a store with less than this free
/// (or freeable by eviction) is not ready.
pub(crate) const INDEX_HEADROOM: u64 = 1 << 20;

/// The store's file system, as `statvfs` sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Disk {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    pub read_only: bool,
}

/// Asks the file system holding `path` how much room it has.
pub(crate) fn disk(path: &Path) -> Result<Disk, StoreError> {
    let stats = rustix::fs::statvfs(path)
        .map_err(|e| StoreError::io("measure free space", path, e.into()))?;
    Ok(Disk {
        free: stats.f_bavail.saturating_mul(stats.f_frsize),
        read_only: stats.f_flag.contains(StatVfsMountFlags::RDONLY),
    })
}

/// What the store reports when it can take writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writable {
    pub free_bytes: u64,
    pub stored_bytes: u64,
}

impl Store {
    /// Whether the store can take writes now, for a readiness probe: its index in service (one
    /// out of service is reopened here when the disk gained room), its file system writable,
    /// and room for the index left or freeable by eviction.
    pub async fn check_writable(&self) -> Result<Writable, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking("check the store", move || {
            if inner.index.is_out() && !inner.reopen_index() {
                return Err(inner.index.unavailable());
            }
            let root = &inner.paths.root;
            let disk = disk(root)?;
            if disk.read_only {
                return Err(StoreError::ReadOnly { path: root.clone() });
            }
            let (stored, evictable) = {
                let state = inner.state();
                (state.total(), state.evictable())
            };
            if disk.free.saturating_add(evictable) < INDEX_HEADROOM {
                return Err(StoreError::DiskFull { path: root.clone() });
            }
            Ok(Writable { free_bytes: disk.free, stored_bytes: stored })
        })
        .await
    }
}
