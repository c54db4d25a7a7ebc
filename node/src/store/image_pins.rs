//! Image pins: the images this node keeps for the fleet, and the releases that undo them.
//!
//! A blob pin (`pins.rs`) says "never evict this blob"; an image pin says which image those
//! blobs make up, on how many members it must live, and under which pushed tag, so that the
//! placement loop can check and repair its copies. A release is kept as a row too (a
//! tombstone): a member that was away when an image was unpinned learns it from any member
//! that saw the release, instead of spreading the old pin again. The later of pin and release
//! wins, by time.

use redb::{ReadableDatabase, ReadableTable};
use shoal_protocol::{Digest, RepositoryName, Tag};

use super::tables::{self, IMAGE_PINS, ImagePinRow};
use super::{Store, StoreError};

/// Where an image pin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinState {
    Pinned {
        at_ms: u64,
    },
    /// Unpinned (with `deleted`, its pushed tag deleted too) at that time.
    Released {
        at_ms: u64,
        deleted: bool,
    },
}

impl PinState {
    pub fn at_ms(&self) -> u64 {
        match *self {
            PinState::Pinned { at_ms } | PinState::Released { at_ms, .. } => at_ms,
        }
    }
}

/// One image pin, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePin {
    pub registry: String,
    pub repo: RepositoryName,
    pub digest: Digest,
    pub tag: Option<Tag>,
    pub platform: Option<String>,
    pub replicas: u32,
    /// Its referrers (signatures, SBOMs) are kept with it.
    pub with_referrers: bool,
    pub state: PinState,
}

impl ImagePin {
    /// The blob pin reason of the content kept for this image.
    pub fn reason(&self) -> String {
        format!("image:{}/{}@{}", self.registry, self.repo, self.digest)
    }

    fn row(&self) -> ImagePinRow {
        let (at_ms, released, deleted) = match self.state {
            PinState::Pinned { at_ms } => (at_ms, false, false),
            PinState::Released { at_ms, deleted } => (at_ms, true, deleted),
        };
        ImagePinRow {
            tag: self.tag.as_ref().map(|t| t.as_str().to_owned()),
            platform: self.platform.clone(),
            replicas: self.replicas,
            at_ms,
            released,
            deleted,
            with_referrers: self.with_referrers,
        }
    }

    fn from_row(registry: &str, repo: &str, digest: &[u8; 32], row: ImagePinRow) -> Option<Self> {
        let state = if row.released {
            PinState::Released { at_ms: row.at_ms, deleted: row.deleted }
        } else {
            PinState::Pinned { at_ms: row.at_ms }
        };
        Some(ImagePin {
            registry: registry.to_owned(),
            repo: RepositoryName::parse(repo).ok()?,
            digest: Digest::from_raw(*digest),
            tag: row.tag.map(|t| Tag::parse(&t)).transpose().ok()?,
            platform: row.platform,
            replicas: row.replicas,
            with_referrers: row.with_referrers,
            state,
        })
    }
}

impl Store {
    /// Writes `pin` unless the index holds a later event for the same image; returns whether
    /// it was written. Blocking (an index commit).
    pub fn put_image_pin(&self, pin: &ImagePin) -> Result<bool, StoreError> {
        let index = self.inner.index.path();
        let key = (pin.registry.as_str(), pin.repo.as_str(), pin.digest.as_bytes());
        self.inner.write_index(|db| {
            let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
            let written = {
                let mut table = txn
                    .open_table(IMAGE_PINS)
                    .map_err(|e| StoreError::index("open image pins table", index, e))?;
                let newer = table
                    .get(key)
                    .map_err(|e| StoreError::index("read image pin", index, e))?
                    .and_then(|v| tables::decode::<ImagePinRow>(v.value()))
                    .is_some_and(|old| old.at_ms > pin.state.at_ms());
                if !newer {
                    table
                        .insert(key, tables::encode(&pin.row()).as_slice())
                        .map_err(|e| StoreError::index("write image pin", index, e))?;
                }
                !newer
            };
            txn.commit().map_err(|e| StoreError::index("commit image pin", index, e))?;
            Ok(written)
        })
    }

    /// Forgets an image's row altogether (an old release). Blocking (an index commit).
    pub fn forget_image_pin(
        &self,
        registry: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let index = self.inner.index.path();
        let key = (registry, repo.as_str(), digest.as_bytes());
        self.inner.write_index(|db| {
            let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
            {
                let mut table = txn
                    .open_table(IMAGE_PINS)
                    .map_err(|e| StoreError::index("open image pins table", index, e))?;
                table.remove(key).map_err(|e| StoreError::index("remove image pin", index, e))?;
            }
            txn.commit().map_err(|e| StoreError::index("commit image pin removal", index, e))
        })
    }

    /// The row of one image, pinned or released.
    pub fn image_pin(
        &self,
        registry: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<ImagePin>, StoreError> {
        let index = self.inner.index.path();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table = txn
                .open_table(IMAGE_PINS)
                .map_err(|e| StoreError::index("open image pins table", index, e))?;
            let key = (registry, repo.as_str(), digest.as_bytes());
            let row = table
                .get(key)
                .map_err(|e| StoreError::index("read image pin", index, e))?
                .and_then(|v| tables::decode::<ImagePinRow>(v.value()));
            Ok(row.and_then(|r| ImagePin::from_row(registry, repo.as_str(), digest.as_bytes(), r)))
        })
    }

    /// Every image row, pinned and released, in key order.
    pub fn image_pins(&self) -> Result<Vec<ImagePin>, StoreError> {
        let index = self.inner.index.path();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table = txn
                .open_table(IMAGE_PINS)
                .map_err(|e| StoreError::index("open image pins table", index, e))?;
            let mut found = Vec::new();
            for item in table.iter().map_err(|e| StoreError::index("scan image pins", index, e))? {
                let (key, value) =
                    item.map_err(|e| StoreError::index("scan image pins", index, e))?;
                let (registry, repo, digest) = key.value();
                let Some(row) = tables::decode::<ImagePinRow>(value.value()) else { continue };
                found.extend(ImagePin::from_row(registry, repo, digest, row));
            }
            Ok(found)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util::fresh;

    fn pin(at_ms: u64) -> ImagePin {
        ImagePin {
            registry: "local".into(),
            repo: RepositoryName::parse("team/app").unwrap(),
            digest: Digest::of(b"manifest"),
            tag: Some(Tag::parse("v1").unwrap()),
            platform: None,
            replicas: 2,
            with_referrers: false,
            state: PinState::Pinned { at_ms },
        }
    }

    #[test]
    fn the_later_event_wins_and_survives_a_reopen() {
        let (dir, store) = fresh(None);
        let pinned = pin(100);
        assert!(store.put_image_pin(&pinned).unwrap());
        let released =
            ImagePin { state: PinState::Released { at_ms: 200, deleted: true }, ..pin(0) };
        assert!(store.put_image_pin(&released).unwrap());
        // An old pin arriving late (a member that was away) does not undo the release.
        assert!(!store.put_image_pin(&pinned).unwrap());
        let (registry, repo, digest) = (&pinned.registry, &pinned.repo, &pinned.digest);
        assert_eq!(store.image_pin(registry, repo, digest).unwrap(), Some(released.clone()));
        // Pinned again, later: the pin wins.
        assert!(store.put_image_pin(&pin(300)).unwrap());
        drop(store);
        let store = crate::store::test_util::open(dir.path(), None);
        assert_eq!(store.image_pins().unwrap(), vec![pin(300)]);
        store.forget_image_pin(registry, repo, digest).unwrap();
        assert!(store.image_pins().unwrap().is_empty());
    }
}
