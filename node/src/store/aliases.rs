//! Aliases: which stored content a sha512 digest names.
//!
//! Content is stored under its sha256 only. A client that pushes or asks for content by sha512
//! reaches it through an alias, recorded only once the bytes were found to hash to both. An
//! alias is a fact about content, not about what this node holds: it stays true when the blob is
//! evicted or deleted (the blob is then simply not here), so it is never removed with it.

use std::fs::File;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable};
use shoal_protocol::manifest::ManifestRefs;
use shoal_protocol::{Digest, Sha512Digest};

use super::read::read_into;
use super::tables::{self, ALIASES};
use super::{Store, StoreError, blocking};

/// Bytes hashed per read when a stored blob's sha512 is computed.
const HASH_CHUNK: usize = 1024 * 1024;

impl Store {
    /// Records that `alias` names `digest`. Call only after checking the bytes hash to both.
    /// Blocking (an index commit).
    pub fn put_alias(&self, alias: &Sha512Digest, digest: &Digest) -> Result<(), StoreError> {
        let index = self.inner.index.path();
        self.inner.write_index(|db| {
            let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
            {
                let mut table = txn
                    .open_table(ALIASES)
                    .map_err(|e| StoreError::index("open aliases table", index, e))?;
                table
                    .insert(alias.as_bytes(), tables::encode(digest).as_slice())
                    .map_err(|e| StoreError::index("write alias", index, e))?;
            }
            txn.commit().map_err(|e| StoreError::index("commit alias", index, e))
        })
    }

    /// The sha256 `alias` names, if this node ever verified it; the blob may not be held.
    /// Blocking (an index read).
    pub fn alias(&self, alias: &Sha512Digest) -> Result<Option<Digest>, StoreError> {
        let index = self.inner.index.path();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table = txn
                .open_table(ALIASES)
                .map_err(|e| StoreError::index("open aliases table", index, e))?;
            Ok(table
                .get(alias.as_bytes())
                .map_err(|e| StoreError::index("read alias", index, e))?
                .and_then(|v| tables::decode(v.value())))
        })
    }

    /// Every alias whose content this node holds: what it answers members for, announced again
    /// after a restart. Blocking (a scan of the aliases, which are few).
    pub fn held_aliases(&self) -> Result<Vec<Sha512Digest>, StoreError> {
        let index = self.inner.index.path();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table = txn
                .open_table(ALIASES)
                .map_err(|e| StoreError::index("open aliases table", index, e))?;
            let mut held = Vec::new();
            for item in table.iter().map_err(|e| StoreError::index("scan aliases", index, e))? {
                let (key, value) = item.map_err(|e| StoreError::index("scan aliases", index, e))?;
                let digest: Option<Digest> = tables::decode(value.value());
                if digest.is_some_and(|d| self.contains(&d)) {
                    held.push(Sha512Digest::from_raw(*key.value()));
                }
            }
            Ok(held)
        })
    }

    /// Rewrites the sha512 descriptors of a manifest to the sha256 this node knows they name
    /// (see `ManifestRefs::resolve_aliases`). Blocking (an index read, only when there are any).
    pub fn resolve_known_aliases(&self, refs: &mut ManifestRefs) {
        if !refs.aliases().is_empty() {
            refs.resolve_aliases(|alias| self.alias(alias).ok().flatten());
        }
    }

    /// The sha512 of a stored blob, read back from its file in constant memory; `None` when
    /// the store does not hold it.
    pub async fn sha512_of(&self, digest: &Digest) -> Result<Option<Sha512Digest>, StoreError> {
        let Some(reader) = self.open_blob(digest).await? else { return Ok(None) };
        let path = self.inner.paths.blob(digest);
        blocking("hash blob with sha512", move || {
            sha512_of_file(&reader.file, reader.size, &path).map(Some)
        })
        .await
    }
}

/// The sha512 of the first `size` bytes of `file`, read 1 MiB at a time. Blocking. A file
/// shorter than `size` is an incomplete write, not a shorter blob.
pub(super) fn sha512_of_file(
    file: &File,
    size: u64,
    path: &Path,
) -> Result<Sha512Digest, StoreError> {
    let mut hasher = Sha512Digest::hasher();
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut pos = 0u64;
    while pos < size {
        let n = read_into(file, pos, &mut buf).map_err(|e| StoreError::io("read", path, e))?;
        if n == 0 {
            return Err(StoreError::IncompleteWrite { path: path.to_owned() });
        }
        sha2::Digest::update(&mut hasher, &buf[..n.min((size - pos) as usize)]);
        pos += n as u64;
    }
    Ok(Sha512Digest::finish(hasher))
}

#[cfg(test)]
mod tests {
    use shoal_protocol::{Digest, Sha512Digest};

    use crate::store::test_util::{content, fresh, open, put};

    #[tokio::test]
    async fn an_alias_outlives_restarts_and_the_blob_it_names() {
        let (dir, store) = fresh(None);
        let bytes = content(9, 3 * 1024 * 1024 + 17);
        let digest = put(&store, &bytes).await;
        let alias = store.sha512_of(&digest).await.unwrap().unwrap();
        assert_eq!(alias, Sha512Digest::of(&bytes));
        assert_eq!(store.alias(&alias).unwrap(), None);
        store.put_alias(&alias, &digest).unwrap();
        let gone = Sha512Digest::of(b"not held");
        store.put_alias(&gone, &Digest::of(b"not held")).unwrap();
        assert_eq!(store.held_aliases().unwrap(), [alias]);
        drop(store);
        let store = open(dir.path(), None);
        assert_eq!(store.alias(&alias).unwrap(), Some(digest));
        assert_eq!(store.alias(&Sha512Digest::of(b"other")).unwrap(), None);
        assert_eq!(store.sha512_of(&Digest::of(b"not held")).await.unwrap(), None);
    }
}
