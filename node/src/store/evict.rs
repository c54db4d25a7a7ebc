//! Removing blobs: LRU eviction under the size cap, and forgetting blobs that went bad.
//!
//! A victim leaves the in-memory state and is renamed into `tmp/` under the state lock, so no
//! new reader can open it and a concurrent commit of the same digest cannot be lost; the slow
//! part — unlinking large files and the index commit — happens after the lock is released, on a
//! blocking thread.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use shoal_protocol::Digest;
use tracing::{info, warn};

use super::error::blocking;
use super::tables::BLOBS;
use super::{Inner, Store, StoreError};

impl Store {
    /// Evicts least recently used blobs until the store is within its size cap; returns what
    /// was evicted. Blobs being read or written are never chosen. Commit calls this itself.
    pub async fn evict(&self) -> Result<Vec<Digest>, StoreError> {
        evict(&self.inner).await
    }
}

pub(crate) async fn evict(inner: &Arc<Inner>) -> Result<Vec<Digest>, StoreError> {
    let inner = Arc::clone(inner);
    blocking("evict", move || evict_blocking(&inner)).await
}

pub(crate) fn evict_blocking(inner: &Inner) -> Result<Vec<Digest>, StoreError> {
    let Some(max) = inner.max_size else { return Ok(Vec::new()) };
    let mut moved = Vec::new();
    {
        let mut state = inner.state();
        for (digest, entry) in state.pick_victims(max) {
            let from = inner.paths.blob(&digest);
            let seq = inner.temp_seq.fetch_add(1, Ordering::Relaxed);
            let to = inner.paths.tmp.join(format!("{}.{seq}.evicted", digest.hex()));
            match fs::rename(&from, &to) {
                Ok(()) => moved.push((digest, entry.size, Some(to))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    moved.push((digest, entry.size, None))
                }
                Err(e) => {
                    warn!(%digest, error = %e, "could not evict blob; keeping it");
                    continue;
                }
            }
            state.remove(&digest);
        }
    }
    if moved.is_empty() {
        return Ok(Vec::new());
    }
    for (digest, size, path) in &moved {
        if let Some(path) = path
            && let Err(e) = fs::remove_file(path)
        {
            // Left in tmp/, it is removed at the next start.
            warn!(%digest, error = %e, "could not delete evicted blob file");
        }
        info!(%digest, size, "evicted blob");
    }
    let digests: Vec<Digest> = moved.into_iter().map(|(d, _, _)| d).collect();
    drop_rows(inner, &digests)?;
    Ok(digests)
}

/// Removes one blob from the store: from memory, its file moved to `move_to` (quarantine) or
/// assumed gone, and its index row.
pub(crate) async fn forget(
    inner: &Arc<Inner>,
    digest: Digest,
    move_to: Option<PathBuf>,
) -> Result<(), StoreError> {
    let inner = Arc::clone(inner);
    blocking("forget blob", move || {
        {
            let mut state = inner.state();
            state.remove(&digest);
            if let Some(target) = &move_to {
                let from = inner.paths.blob(&digest);
                match fs::rename(&from, target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("move blob to quarantine", &from, e)),
                }
            }
        }
        drop_rows(&inner, &[digest])
    })
    .await
}

/// Deletes the index rows of blobs that are gone from memory. The check runs inside the write
/// transaction: a commit that re-added a digest meanwhile either finished its row write before
/// this transaction began or will write it after this one ends, so its row survives either way.
fn drop_rows(inner: &Inner, digests: &[Digest]) -> Result<(), StoreError> {
    let index = &inner.paths.index;
    let txn = inner.db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
    {
        let gone: Vec<Digest> = {
            let state = inner.state();
            digests.iter().filter(|d| state.get(d).is_none()).copied().collect()
        };
        let mut table =
            txn.open_table(BLOBS).map_err(|e| StoreError::index("open blobs table", index, e))?;
        for digest in gone {
            table
                .remove(digest.as_bytes())
                .map_err(|e| StoreError::index("remove blob row", index, e))?;
        }
    }
    txn.commit().map_err(|e| StoreError::index("commit blob removal", index, e))
}
