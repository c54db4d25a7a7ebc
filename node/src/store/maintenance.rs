//! The store's background job: persist access times in batches, keep within the size cap, and
//! reopen an index that a failed write took out of service.
//!
//! Access times live in memory between flushes, so a crash loses at most one interval of LRU
//! history — a cost paid in eviction order only, never in data.

use std::sync::Arc;
use std::time::Duration;

use redb::ReadableTable;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::blocking;
use super::tables::{self, BLOBS, BlobRow};
use super::{Inner, Store, StoreError};

/// How often [`Store::run_maintenance`] flushes access times, checks the size cap and tries to
/// reopen an index out of service.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(30);

impl Store {
    /// Runs until `shutdown` is cancelled, flushing access times and evicting every
    /// [`MAINTENANCE_INTERVAL`]; flushes once more before returning.
    pub async fn run_maintenance(self, shutdown: CancellationToken) {
        self.run_maintenance_every(MAINTENANCE_INTERVAL, shutdown).await;
    }

    /// [`Store::run_maintenance`] with a chosen interval.
    pub async fn run_maintenance_every(self, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
            if self.inner.index.is_out() {
                // Even when nothing writes: readiness and the next request find it in service.
                let inner = Arc::clone(&self.inner);
                let _ = blocking("reopen index", move || Ok(inner.reopen_index())).await;
            }
            if let Err(e) = self.flush_access_times().await {
                warn!(error = %e, "could not persist blob access times");
            }
            if let Err(e) = self.evict().await {
                warn!(error = %e, "eviction failed");
            }
        }
        if let Err(e) = self.flush_access_times().await {
            warn!(error = %e, "could not persist blob access times at shutdown");
        }
    }

    /// Writes the access times recorded since the last flush to the index in one transaction;
    /// returns how many rows were updated.
    pub async fn flush_access_times(&self) -> Result<usize, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking("flush access times", move || {
            let dirty = inner.state().take_dirty();
            if dirty.is_empty() {
                return Ok(0);
            }
            let result = write_access_times(&inner, &dirty);
            if result.is_err() {
                inner.state().restore_dirty(dirty.iter().map(|(d, _)| *d));
            }
            result
        })
        .await
    }
}

fn write_access_times(
    inner: &Inner,
    dirty: &[(shoal_protocol::Digest, u64)],
) -> Result<usize, StoreError> {
    let index = inner.index.path();
    let updated = inner.write_index(|db| {
        let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
        let mut updated = 0;
        {
            let mut table = txn
                .open_table(BLOBS)
                .map_err(|e| StoreError::index("open blobs table", index, e))?;
            for (digest, ms) in dirty {
                let row: Option<BlobRow> = table
                    .get(digest.as_bytes())
                    .map_err(|e| StoreError::index("read blob row", index, e))?
                    .and_then(|v| tables::decode(v.value()));
                // No row: evicted meanwhile, or its commit has not written it yet.
                let Some(mut row) = row else { continue };
                if row.last_access_ms >= *ms {
                    continue;
                }
                row.last_access_ms = *ms;
                table
                    .insert(digest.as_bytes(), tables::encode(&row).as_slice())
                    .map_err(|e| StoreError::index("write access time", index, e))?;
                updated += 1;
            }
        }
        txn.commit().map_err(|e| StoreError::index("commit access times", index, e))?;
        Ok(updated)
    })?;
    debug!(updated, "persisted blob access times");
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use crate::store::test_util::{content, fresh, open, put};

    #[tokio::test]
    async fn access_times_reach_the_index_only_when_flushed() {
        let (dir, store) = fresh(None);
        let a = put(&store, &content(1, 100)).await;
        let b = put(&store, &content(2, 100)).await;
        drop(store.open_blob(&a).await.unwrap());
        assert_eq!(store.flush_access_times().await.unwrap(), 1);
        assert_eq!(store.flush_access_times().await.unwrap(), 0);

        // Touched but never flushed: after a restart `b` still counts as the older one.
        drop(store.open_blob(&b).await.unwrap());
        drop(store);
        let store = open(dir.path(), Some(150));
        assert!(store.contains(&a));
        assert!(!store.contains(&b));
    }

    #[tokio::test]
    async fn maintenance_flushes_on_shutdown_and_stops() {
        let (dir, store) = fresh(None);
        let a = put(&store, &content(1, 100)).await;
        let b = put(&store, &content(2, 100)).await;
        drop(store.open_blob(&a).await.unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            store.clone().run_maintenance_every(Duration::from_secs(3600), shutdown.clone()),
        );
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("maintenance stops when cancelled")
            .unwrap();
        drop(store);

        let store = open(dir.path(), Some(150));
        assert!(store.contains(&a), "the access recorded before shutdown was lost");
        assert!(!store.contains(&b));
    }

    #[tokio::test]
    async fn maintenance_flushes_periodically() {
        let (_dir, store) = fresh(None);
        let a = put(&store, &content(1, 100)).await;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            store.clone().run_maintenance_every(Duration::from_millis(20), shutdown.clone()),
        );
        drop(store.open_blob(&a).await.unwrap());
        let touched = store.inner.state().get(&a).unwrap().last_access_ms;
        let persisted = || store.read_blob_row(&a).unwrap().unwrap().last_access_ms;
        assert!(persisted() < touched);
        let mut flushed = false;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if persisted() == touched {
                flushed = true;
                break;
            }
        }
        shutdown.cancel();
        task.await.unwrap();
        assert!(flushed, "the periodic flush never wrote the access time");
    }
}
