//! Pins: blobs that eviction never removes, each with the reasons it is kept.
//!
//! A cache may forget anything, because the upstream has it. Pushed and imported content has no
//! upstream to come back from, so it is pinned: kept whatever the size cap says. A blob can be
//! pinned for several reasons (two pushed tags sharing a layer); it stays pinned until the last
//! reason is removed. A pin may name a blob the store does not hold (yet): it is kept as soon
//! as it arrives.

use redb::{ReadableDatabase, ReadableTable};
use shoal_protocol::Digest;

use super::tables::{self, PINS, PinRow};
use super::{Store, StoreError};

/// Reasons kept per blob; a blob pinned for more is pinned all the same.
const MAX_REASONS: usize = 64;

impl Store {
    /// Pins every digest of `digests` for `reason`, durably. Blocking (an index commit).
    pub fn pin(&self, digests: &[Digest], reason: &str) -> Result<(), StoreError> {
        self.change_pins(digests, |row| {
            if !row.reasons.iter().any(|r| r == reason) && row.reasons.len() < MAX_REASONS {
                row.reasons.push(reason.to_owned());
            }
        })
    }

    /// Removes `reason` from every digest of `digests`; a blob left with no reason may be
    /// evicted again. Blocking (an index commit).
    pub fn unpin(&self, digests: &[Digest], reason: &str) -> Result<(), StoreError> {
        self.change_pins(digests, |row| row.reasons.retain(|r| r != reason))
    }

    /// Removes every pin of a digest (it is being deleted). Blocking (an index commit).
    pub fn unpin_all(&self, digests: &[Digest]) -> Result<(), StoreError> {
        self.change_pins(digests, |row| row.reasons.clear())
    }

    /// Whether eviction must keep the blob.
    pub fn is_pinned(&self, digest: &Digest) -> bool {
        self.inner.state().is_pinned(digest)
    }

    /// The reasons a blob is pinned, oldest first; empty when it is not.
    pub fn pin_reasons(&self, digest: &Digest) -> Result<Vec<String>, StoreError> {
        let index = self.inner.index.path();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table =
                txn.open_table(PINS).map_err(|e| StoreError::index("open pins table", index, e))?;
            let row: Option<PinRow> = table
                .get(digest.as_bytes())
                .map_err(|e| StoreError::index("read pin", index, e))?
                .and_then(|v| tables::decode(v.value()));
            Ok(row.map(|r| r.reasons).unwrap_or_default())
        })
    }

    /// Every digest pinned for `reason` (a scan of the pins, which are few: only kept content).
    pub fn pinned_for(&self, reason: &str) -> Result<Vec<Digest>, StoreError> {
        let index = self.inner.index.path();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table =
                txn.open_table(PINS).map_err(|e| StoreError::index("open pins table", index, e))?;
            let mut found = Vec::new();
            for item in table.iter().map_err(|e| StoreError::index("scan pins", index, e))? {
                let (key, value) = item.map_err(|e| StoreError::index("scan pins", index, e))?;
                let row: Option<PinRow> = tables::decode(value.value());
                if row.is_some_and(|r| r.reasons.iter().any(|r| r == reason)) {
                    found.push(Digest::from_raw(*key.value()));
                }
            }
            Ok(found)
        })
    }

    /// Pinned blobs held, and their bytes.
    pub fn pinned_stats(&self) -> (u64, u64) {
        self.inner.state().pinned_bytes()
    }

    fn change_pins(
        &self,
        digests: &[Digest],
        change: impl Fn(&mut PinRow),
    ) -> Result<(), StoreError> {
        let index = self.inner.index.path();
        let mut now_pinned = Vec::with_capacity(digests.len());
        self.inner.write_index(|db| {
            let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
            {
                let mut table = txn
                    .open_table(PINS)
                    .map_err(|e| StoreError::index("open pins table", index, e))?;
                for digest in digests {
                    let mut row: PinRow = table
                        .get(digest.as_bytes())
                        .map_err(|e| StoreError::index("read pin", index, e))?
                        .and_then(|v| tables::decode(v.value()))
                        .unwrap_or_default();
                    change(&mut row);
                    if row.reasons.is_empty() {
                        table
                            .remove(digest.as_bytes())
                            .map_err(|e| StoreError::index("remove pin", index, e))?;
                    } else {
                        table
                            .insert(digest.as_bytes(), tables::encode(&row).as_slice())
                            .map_err(|e| StoreError::index("write pin", index, e))?;
                    }
                    now_pinned.push((*digest, !row.reasons.is_empty()));
                }
            }
            txn.commit().map_err(|e| StoreError::index("commit pins", index, e))
        })?;
        // Only once durable: a pin the index lost must not look kept.
        let mut state = self.inner.state();
        for (digest, pinned) in now_pinned {
            state.set_pinned(digest, pinned);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_util::{content, fresh, open, put};

    #[tokio::test]
    async fn pinned_blobs_survive_eviction_and_restarts_until_the_last_reason_goes() {
        let (dir, store) = fresh(Some(250));
        let a = put(&store, &content(1, 100)).await;
        store.pin(&[a], "push:one").unwrap();
        store.pin(&[a], "push:two").unwrap();
        assert_eq!(store.pinned_for("push:two").unwrap(), [a]);
        assert!(store.pinned_for("push:three").unwrap().is_empty());
        let _b = put(&store, &content(2, 100)).await;
        let _c = put(&store, &content(3, 100)).await;
        // `a` is the oldest, yet the pinned one stays; the cap is met from the others.
        assert!(store.contains(&a));
        assert!(store.total_size() <= 250);

        drop(store);
        let store = open(dir.path(), Some(250));
        assert!(store.is_pinned(&a));
        assert_eq!(store.pin_reasons(&a).unwrap(), ["push:one", "push:two"]);
        store.unpin(&[a], "push:one").unwrap();
        assert!(store.is_pinned(&a), "one reason is left");
        store.unpin(&[a], "push:two").unwrap();
        assert!(!store.is_pinned(&a));
        let _d = put(&store, &content(4, 100)).await;
        let _e = put(&store, &content(5, 100)).await;
        assert!(!store.contains(&a), "unpinned, the oldest blob is evicted");
    }

    #[tokio::test]
    async fn a_pin_may_come_before_its_blob() {
        let (_dir, store) = fresh(Some(150));
        let bytes = content(7, 100);
        let digest = shoal_protocol::Digest::of(&bytes);
        store.pin(&[digest], "import").unwrap();
        put(&store, &bytes).await;
        let _other = put(&store, &content(8, 100)).await;
        assert!(store.contains(&digest));
        assert_eq!(store.pinned_stats(), (1, 100));
    }
}
