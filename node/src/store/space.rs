//! Room on the disk: what the store's file system can still take.

use std::path::Path;

use super::StoreError;

/// The room an index commit may need: an index that a failed write took out of service is
/// tried again once its file system gained this much.
pub(crate) const INDEX_HEADROOM: u64 = 1 << 20;

/// The store's file system, as `statvfs` sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Disk {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
}

/// Asks the file system holding `path` how much room it has.
pub(crate) fn disk(path: &Path) -> Result<Disk, StoreError> {
    let stats = rustix::fs::statvfs(path)
        .map_err(|e| StoreError::io("measure free space", path, e.into()))?;
    Ok(Disk { free: stats.f_bavail.saturating_mul(stats.f_frsize) })
}
