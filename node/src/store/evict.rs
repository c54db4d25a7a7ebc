//! Removing blobs: LRU eviction under the size cap or to make room on the disk, and forgetting
//! blobs that went bad.
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

use super::blocking;
use super::state::{Entry, State};
use super::tables::BLOBS;
use super::{Inner, Store, StoreError};

impl Store {
    /// Evicts least recently used blobs until the store is within its size cap; returns what
    /// was evicted. Blobs being read or written are never chosen. Commit calls this itself.
    pub async fn evict(&self) -> Result<Vec<Digest>, StoreError> {
        evict(&self.inner).await
    }

    /// Deletes a blob (a client's `DELETE`), pinned or not, and its pins; false when it was not
    /// stored. A reader that has it open keeps reading its file to the end.
    pub async fn delete_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        let inner = Arc::clone(&self.inner);
        let digest = *digest;
        let store = self.clone();
        blocking("delete blob", move || {
            store.unpin_all(&[digest])?;
            let moved = {
                let mut state = inner.state();
                let Some(entry) = state.get(&digest) else { return Ok(false) };
                move_out(&inner, &mut state, vec![(digest, entry)])
            };
            Ok(!finish_removal(&inner, moved)?.is_empty())
        })
        .await
    }
}

pub(crate) async fn evict(inner: &Arc<Inner>) -> Result<Vec<Digest>, StoreError> {
    let inner = Arc::clone(inner);
    blocking("evict", move || evict_blocking(&inner)).await
}

pub(crate) fn evict_blocking(inner: &Inner) -> Result<Vec<Digest>, StoreError> {
    let Some(max) = inner.max_size else { return Ok(Vec::new()) };
    let moved = {
        let mut state = inner.state();
        let victims = state.pick_victims(max);
        let moved = move_out(inner, &mut state, victims);
        inner.evictions.fetch_add(moved.len() as u64, Ordering::Relaxed);
        moved
    };
    finish_removal(inner, moved)
}

/// A victim taken out of the store, its file (if it still had one) waiting in `tmp/`.
pub(crate) struct Moved {
    digest: Digest,
    size: u64,
    file: Option<PathBuf>,
}

/// Takes victims out of the store: out of the in-memory state, their files renamed into
/// `tmp/`. Called under the state lock, so that no reader can open them from now on; a victim
/// whose file cannot be moved is kept.
pub(crate) fn move_out(
    inner: &Inner,
    state: &mut State,
    victims: Vec<(Digest, Entry)>,
) -> Vec<Moved> {
    let mut moved = Vec::new();
    for (digest, entry) in victims {
        let from = inner.paths.blob(&digest);
        let seq = inner.temp_seq.fetch_add(1, Ordering::Relaxed);
        let to = inner.paths.tmp.join(format!("{}.{seq}.evicted", digest.hex()));
        let file = match fs::rename(&from, &to) {
            Ok(()) => Some(to),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                warn!(%digest, error = %e, "could not evict blob; keeping it");
                continue;
            }
        };
        state.remove(&digest);
        moved.push(Moved { digest, size: entry.size, file });
    }
    moved
}

/// The slow half of eviction, after the state lock is released: deletes the moved files,
/// drops their index rows, and tells whoever announced them.
pub(crate) fn finish_removal(inner: &Inner, moved: Vec<Moved>) -> Result<Vec<Digest>, StoreError> {
    if moved.is_empty() {
        return Ok(Vec::new());
    }
    for Moved { digest, size, file } in &moved {
        if let Some(file) = file
            && let Err(e) = fs::remove_file(file)
        {
            // Left in tmp/, it is removed at the next start.
            warn!(%digest, error = %e, "could not delete evicted blob file");
        }
        info!(%digest, size, "evicted blob");
    }
    let digests: Vec<Digest> = moved.into_iter().map(|m| m.digest).collect();
    drop_rows(inner, &digests)?;
    inner.announce_removed(&digests);
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
        drop_rows(&inner, &[digest])?;
        inner.announce_removed(&[digest]);
        Ok(())
    })
    .await
}

/// Deletes the index rows of blobs that are gone from memory. The check runs inside the write
/// transaction: a commit that re-added a digest meanwhile either finished its row write before
/// this transaction began or will write it after this one ends, so its row survives either way.
fn drop_rows(inner: &Inner, digests: &[Digest]) -> Result<(), StoreError> {
    let index = inner.index.path();
    inner.write_index(|db| {
        let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
        {
            let gone: Vec<Digest> = {
                let state = inner.state();
                digests.iter().filter(|d| state.get(d).is_none()).copied().collect()
            };
            let mut table = txn
                .open_table(BLOBS)
                .map_err(|e| StoreError::index("open blobs table", index, e))?;
            for digest in gone {
                table
                    .remove(digest.as_bytes())
                    .map_err(|e| StoreError::index("remove blob row", index, e))?;
            }
        }
        txn.commit().map_err(|e| StoreError::index("commit blob removal", index, e))
    })
}

#[cfg(test)]
mod tests {
    use shoal_protocol::Digest;

    use crate::store::Store;
    use crate::store::test_util::{content, files_under, fresh, open, put};

    fn blob_path(dir: &std::path::Path, digest: &Digest) -> std::path::PathBuf {
        let hex = digest.hex();
        dir.join("blobs/sha256").join(&hex[..2]).join(&hex)
    }

    async fn touch(store: &Store, digest: &Digest) {
        drop(store.open_blob(digest).await.unwrap().expect("stored"));
    }

    #[tokio::test]
    async fn evicts_least_recently_used_first() {
        let (dir, store) = fresh(Some(250));
        let a = put(&store, &content(1, 100)).await;
        let b = put(&store, &content(2, 100)).await;
        touch(&store, &a).await;
        let c = put(&store, &content(3, 100)).await;

        assert!(store.contains(&a) && store.contains(&c));
        assert!(!store.contains(&b));
        assert!(!blob_path(dir.path(), &b).exists());
        assert!(store.blob_meta(&b).is_none());
        assert_eq!(store.total_size(), 200);
        assert!(files_under(&dir.path().join("tmp")).is_empty());

        // The row went with the file: a reopen without the cap finds the same two blobs.
        drop(store);
        let store = open(dir.path(), None);
        assert_eq!(store.total_size(), 200);
        assert!(!store.contains(&b));
    }

    #[tokio::test]
    async fn never_evicts_a_blob_being_read_or_written() {
        let (dir, store) = fresh(Some(250));
        let a_bytes = content(1, 100);
        let a = put(&store, &a_bytes).await;
        let b = put(&store, &content(2, 100)).await;
        let reader = store.open_blob(&a).await.unwrap().expect("stored");
        touch(&store, &b).await;
        // `a` is the oldest access now that `b` was touched, but it is being read.
        let c = put(&store, &content(3, 100)).await;
        assert!(store.contains(&a), "a blob with a live reader was evicted");
        assert!(!store.contains(&b));
        assert!(store.contains(&c));

        // A blob being written is not a candidate either, even over the cap.
        let d_bytes = content(4, 100);
        let d = Digest::of(&d_bytes);
        let mut writing = store.create_temp(&d).await.unwrap();
        writing.write(&d_bytes).await.unwrap();
        let mut back = vec![0; 100];
        std::os::unix::fs::FileExt::read_exact_at(&reader.file, &mut back, 0).unwrap();
        assert_eq!(back, a_bytes);

        drop(reader);
        let evicted = store.evict().await.unwrap();
        assert!(evicted.is_empty(), "within the cap, nothing to evict: {evicted:?}");
        writing.commit(None).await.unwrap();
        // 300 bytes with a, c, d: the oldest unused one (a, its reader gone) goes.
        assert!(!store.contains(&a));
        assert!(store.contains(&c) && store.contains(&d));
        assert!(!blob_path(dir.path(), &a).exists());
    }

    #[tokio::test]
    async fn open_evicts_down_to_a_lowered_cap() {
        let (dir, store) = fresh(None);
        let a = put(&store, &content(1, 100)).await;
        let b = put(&store, &content(2, 100)).await;
        let c = put(&store, &content(3, 100)).await;
        touch(&store, &a).await;
        store.flush_access_times().await.unwrap();
        drop(store);

        let store = open(dir.path(), Some(150));
        assert_eq!(store.total_size(), 100);
        assert!(store.contains(&a), "the most recently used blob should survive");
        assert!(!store.contains(&b) && !store.contains(&c));
    }
}
