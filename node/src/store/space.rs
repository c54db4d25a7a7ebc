//! Room on the disk: what the store's file system can still take, and the room claimed for
//! blobs being written.
//!
//! A download whose size is known claims room before its response starts ([`Store::reserve`]),
//! so a blob that cannot fit is refused with a clear error instead of being answered `200` and
//! cut off when the disk fills — which clients retry, downloading it again each time. What a
//! claim may use is the free space, less what other claimed downloads have still to write and
//! a margin kept for the index, plus what eviction could free. It evicts least recently used
//! blobs when that is what makes the blob fit, and nothing when the blob cannot fit anyway. A
//! claim lives as long as its temp blob; a refused temp blob fails its next write, so its
//! download stops.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustix::fs::StatVfsMountFlags;
use shoal_protocol::Digest;
use tracing::info;

use super::state::State;
use super::{Inner, Store, StoreError, blocking, evict};

/// The room an index commit may need. Blob downloads leave it free: an index commit must not
/// be the write that finds the disk full, since redb then refuses everything after it. An index
/// out of service is tried again once its file system gained this much, and a store with less
/// than this free (or freeable by eviction) is not ready.
pub(crate) const INDEX_HEADROOM: u64 = 1 << 20;

/// The store's file system, as `statvfs` sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Disk {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    /// The file system's size.
    pub total: u64,
    pub read_only: bool,
}

/// Asks the file system holding `path` how much room it has.
pub(crate) fn disk(path: &Path) -> Result<Disk, StoreError> {
    let stats = rustix::fs::statvfs(path)
        .map_err(|e| StoreError::io("measure free space", path, e.into()))?;
    Ok(Disk {
        free: stats.f_bavail.saturating_mul(stats.f_frsize),
        total: stats.f_blocks.saturating_mul(stats.f_frsize),
        read_only: stats.f_flag.contains(StatVfsMountFlags::RDONLY),
    })
}

/// Why room for a blob was refused; kept so the temp blob's next write fails the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoRoom { size: u64, usable: u64 },
    OverCap { size: u64, max: u64 },
}

impl Refusal {
    pub fn error(self, digest: Digest, root: &Path) -> StoreError {
        match self {
            Refusal::NoRoom { size, usable } => {
                StoreError::NoRoom { digest, size, usable, path: root.to_owned() }
            }
            Refusal::OverCap { size, max } => StoreError::OverCap { digest, size, max },
        }
    }
}

/// The temp blobs being written, and the room claimed for each.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    temps: HashMap<u64, TempClaim>,
}

#[derive(Debug)]
struct TempClaim {
    digest: Digest,
    written: u64,
    claim: Claim,
}

#[derive(Debug, Clone, Copy)]
enum Claim {
    Unclaimed,
    Claimed { size: u64 },
    Refused(Refusal),
}

impl Claims {
    pub fn add(&mut self, id: u64, digest: Digest) {
        self.temps.insert(id, TempClaim { digest, written: 0, claim: Claim::Unclaimed });
    }

    pub fn remove(&mut self, id: u64) {
        self.temps.remove(&id);
    }

    /// Accounts for `len` bytes about to be written to temp blob `id`; refused when its claim
    /// was, or when they take it past the size cap (a size no source announced).
    pub fn write(&mut self, id: u64, len: u64, max: Option<u64>) -> Result<(), Refusal> {
        let Some(temp) = self.temps.get_mut(&id) else { return Ok(()) };
        if let Claim::Refused(refusal) = temp.claim {
            return Err(refusal);
        }
        let size = temp.written.saturating_add(len);
        if let Some(max) = max
            && size > max
        {
            let refusal = Refusal::OverCap { size, max };
            temp.claim = Claim::Refused(refusal);
            return Err(refusal);
        }
        temp.written = size;
        Ok(())
    }

    /// Bytes that claimed temp blobs have still to write.
    pub fn pending(&self) -> u64 {
        self.temps
            .values()
            .map(|t| match t.claim {
                Claim::Claimed { size } => size.saturating_sub(t.written),
                Claim::Unclaimed | Claim::Refused(_) => 0,
            })
            .sum()
    }

    /// Bytes that claimed temp blobs of other digests have still to write.
    fn pending_except(&self, digest: &Digest) -> u64 {
        self.temps
            .values()
            .filter(|t| t.digest != *digest)
            .map(|t| match t.claim {
                Claim::Claimed { size } => size.saturating_sub(t.written),
                Claim::Unclaimed | Claim::Refused(_) => 0,
            })
            .sum()
    }

    /// Bytes written so far and the claim of `digest`'s temp blob; `None` when none is open.
    fn of(&self, digest: &Digest) -> Option<(u64, Claim)> {
        self.temps.values().find(|t| t.digest == *digest).map(|t| (t.written, t.claim))
    }

    fn set(&mut self, digest: &Digest, claim: Claim) {
        for temp in self.temps.values_mut().filter(|t| t.digest == *digest) {
            temp.claim = claim;
        }
    }
}

/// What the store reports when it can take writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writable {
    pub free_bytes: u64,
    pub stored_bytes: u64,
}

impl Store {
    /// Claims room for the blob `digest` being written, now that its size is known: call it
    /// before the response starts, so that a blob that cannot fit is refused while the client
    /// can still be told why. Refused with [`StoreError::OverCap`] when `size` is over the size
    /// cap (nothing is evicted), with [`StoreError::NoRoom`] when it does not fit in the free
    /// space plus what evicting unused blobs could free (nothing is evicted); else it evicts the
    /// least recently used blobs if that is what makes room. A refused temp blob fails its next
    /// write, which stops its download. Asking again for the same blob answers the same way at
    /// once; a blob with no temp blob open (stored meanwhile, or its download ended) is `Ok`.
    pub async fn reserve(&self, digest: &Digest, size: u64) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        let digest = *digest;
        blocking("reserve room", move || reserve_blocking(&inner, digest, size)).await
    }

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

fn reserve_blocking(inner: &Inner, digest: Digest, size: u64) -> Result<(), StoreError> {
    let root = &inner.paths.root;
    let moved = {
        let mut state = inner.state();
        let Some((written, claim)) = state.claims.of(&digest) else { return Ok(()) };
        match claim {
            Claim::Claimed { .. } => return Ok(()),
            Claim::Refused(refusal) => return Err(refusal.error(digest, root)),
            Claim::Unclaimed => {}
        }
        if let Some(max) = inner.max_size
            && size > max
        {
            return Err(refuse(&mut state, digest, root, Refusal::OverCap { size, max }));
        }
        let need = size.saturating_sub(written);
        // Measured under the state lock, so that two claims cannot both count the same room.
        let free = disk(root)?.free;
        let usable_now = free
            .saturating_sub(state.claims.pending_except(&digest))
            .saturating_sub(INDEX_HEADROOM);
        if need <= usable_now {
            state.claims.set(&digest, Claim::Claimed { size });
            return Ok(());
        }
        let Some(victims) = state.pick_to_free(need - usable_now) else {
            let usable = usable_now.saturating_add(state.evictable()).saturating_add(written);
            return Err(refuse(&mut state, digest, root, Refusal::NoRoom { size, usable }));
        };
        let moved = evict::move_out(inner, &mut state, victims);
        inner.evictions.fetch_add(moved.len() as u64, std::sync::atomic::Ordering::Relaxed);
        state.claims.set(&digest, Claim::Claimed { size });
        moved
    };
    evict::finish_removal(inner, moved)?;
    Ok(())
}

/// Records the refusal, so that the temp blob's next write and every later ask get it too.
fn refuse(state: &mut State, digest: Digest, root: &Path, refusal: Refusal) -> StoreError {
    state.claims.set(&digest, Claim::Refused(refusal));
    let error = refusal.error(digest, root);
    info!(%digest, %error, "blob refused before its download");
    error
}

#[cfg(test)]
mod tests {
    use shoal_protocol::Digest;

    use crate::store::StoreError;
    use crate::store::test_util::{content, files_under, fresh, put};

    #[tokio::test]
    async fn a_blob_over_the_size_cap_is_refused_and_nothing_is_evicted() {
        let (dir, store) = fresh(Some(1 << 20));
        let a = put(&store, &content(1, 300 << 10)).await;
        let b = put(&store, &content(2, 300 << 10)).await;
        let big = content(3, 2 << 20);
        let digest = Digest::of(&big);
        let mut temp = store.create_temp(&digest).await.unwrap();

        let err = store.reserve(&digest, big.len() as u64).await.unwrap_err();
        assert!(
            matches!(err, StoreError::OverCap { size, max, .. } if size == 2 << 20 && max == 1 << 20),
            "{err:?}"
        );
        assert!(err.to_string().contains("--max-size"), "{err}");
        assert!(
            store.contains(&a) && store.contains(&b),
            "a blob was evicted for one that can never fit"
        );
        let err = temp.write(&big[..4096]).await.unwrap_err();
        assert!(matches!(err, StoreError::OverCap { .. }), "{err:?}");
        assert!(files_under(&dir.path().join("tmp")).is_empty());
    }

    #[tokio::test]
    async fn a_blob_of_unknown_size_is_refused_once_it_outgrows_the_cap() {
        let (dir, store) = fresh(Some(1 << 20));
        let a = put(&store, &content(1, 300 << 10)).await;
        let big = content(3, 2 << 20);
        let mut temp = store.create_temp(&Digest::of(&big)).await.unwrap();
        let mut failure = None;
        for chunk in big.chunks(256 << 10) {
            if let Err(e) = temp.write(chunk).await {
                failure = Some(e);
                break;
            }
        }
        let err = failure.expect("2 MiB cannot be written under a 1 MiB cap");
        assert!(matches!(err, StoreError::OverCap { max, .. } if max == 1 << 20), "{err:?}");
        assert!(temp.written() <= 1 << 20);
        let err = temp.commit(None).await.unwrap_err();
        assert!(matches!(err, StoreError::IncompleteWrite { .. }), "{err:?}");
        assert!(store.contains(&a), "a blob was evicted for one that can never fit");
        assert!(files_under(&dir.path().join("tmp")).is_empty());
    }

    #[tokio::test]
    async fn a_blob_that_fits_is_claimed_once_and_one_with_no_download_is_not_refused() {
        let (_dir, store) = fresh(Some(1 << 20));
        let bytes = content(4, 100 << 10);
        let digest = Digest::of(&bytes);
        // No temp blob: stored already, or its download ended; the caller's own read decides.
        store.reserve(&digest, 100 << 10).await.unwrap();
        let mut temp = store.create_temp(&digest).await.unwrap();
        store.reserve(&digest, bytes.len() as u64).await.unwrap();
        store.reserve(&digest, bytes.len() as u64).await.unwrap();
        temp.write(&bytes).await.unwrap();
        temp.commit(None).await.unwrap();
        assert!(store.contains(&digest));
    }
}
