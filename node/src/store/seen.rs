//! Where each digest is known to be: the `registry/repository` names it was fetched or
//! listed under.
//!
//! Blobs are stored once per digest, whichever repository they came from. A node that serves
//! clients with different rights must not answer `/v2/<name A>/blobs/<digest>` from a blob that
//! it only ever saw in repository B, or any client who learns a digest of a private image could
//! read it through a name it may pull. These rows say which names a digest may be served under;
//! the fetch layer asks the upstream about any other. The list per digest is bounded: a digest
//! in more repositories than [`MAX_NAMES`] is checked upstream for the rest.

use redb::{ReadableDatabase, ReadableTable};
use shoal_protocol::{Digest, RepositoryName};

use super::tables::{self, SEEN, SeenRow};
use super::{Store, StoreError};

/// Names remembered per digest.
pub const MAX_NAMES: usize = 16;

fn name(registry: &str, repo: &RepositoryName) -> String {
    format!("{registry}/{repo}")
}

impl Store {
    /// Whether `digest` is known to be in `registry/repo`. A short index read.
    pub fn seen_in(
        &self,
        digest: &Digest,
        registry: &str,
        repo: &RepositoryName,
    ) -> Result<bool, StoreError> {
        let wanted = name(registry, repo);
        Ok(self.seen_row(digest)?.is_some_and(|row| row.names.contains(&wanted)))
    }

    /// Records that every digest of `digests` is in `registry/repo`, durably. Digests already
    /// known there, and digests known in [`MAX_NAMES`] names already, are left as they are.
    /// Blocking (an index commit): call it from `spawn_blocking` on a busy server.
    pub fn record_seen(
        &self,
        digests: &[Digest],
        registry: &str,
        repo: &RepositoryName,
    ) -> Result<(), StoreError> {
        let wanted = name(registry, repo);
        let index = self.inner.index.path();
        self.inner.write_index(|db| {
            let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
            {
                let mut table = txn
                    .open_table(SEEN)
                    .map_err(|e| StoreError::index("open seen table", index, e))?;
                for digest in digests {
                    let mut row: SeenRow = table
                        .get(digest.as_bytes())
                        .map_err(|e| StoreError::index("read seen row", index, e))?
                        .and_then(|v| tables::decode(v.value()))
                        .unwrap_or_default();
                    if row.names.contains(&wanted) || row.names.len() >= MAX_NAMES {
                        continue;
                    }
                    row.names.push(wanted.clone());
                    table
                        .insert(digest.as_bytes(), tables::encode(&row).as_slice())
                        .map_err(|e| StoreError::index("write seen row", index, e))?;
                }
            }
            txn.commit().map_err(|e| StoreError::index("commit seen rows", index, e))
        })
    }

    /// The digests of `digests` not yet known to be in `registry/repo`.
    pub fn unseen_in(
        &self,
        digests: &[Digest],
        registry: &str,
        repo: &RepositoryName,
    ) -> Result<Vec<Digest>, StoreError> {
        let mut unseen = Vec::new();
        for digest in digests {
            if !self.seen_in(digest, registry, repo)? {
                unseen.push(*digest);
            }
        }
        Ok(unseen)
    }

    /// The names each of `digests` is known under, in one index read (empty for none).
    pub fn seen_names(&self, digests: &[Digest]) -> Result<Vec<Vec<String>>, StoreError> {
        let index = self.inner.index.path();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table =
                txn.open_table(SEEN).map_err(|e| StoreError::index("open seen table", index, e))?;
            let mut names = Vec::with_capacity(digests.len());
            for digest in digests {
                let row: Option<SeenRow> = table
                    .get(digest.as_bytes())
                    .map_err(|e| StoreError::index("read seen row", index, e))?
                    .and_then(|v| tables::decode(v.value()));
                names.push(row.map(|r| r.names).unwrap_or_default());
            }
            Ok(names)
        })
    }

    fn seen_row(&self, digest: &Digest) -> Result<Option<SeenRow>, StoreError> {
        let index = self.inner.index.path();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table =
                txn.open_table(SEEN).map_err(|e| StoreError::index("open seen table", index, e))?;
            let value = table
                .get(digest.as_bytes())
                .map_err(|e| StoreError::index("read seen row", index, e))?;
            Ok(value.and_then(|v| tables::decode(v.value())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util::{fresh, open, put};

    fn repo(s: &str) -> RepositoryName {
        RepositoryName::parse(s).unwrap()
    }

    #[test]
    fn a_digest_is_seen_only_where_it_was_recorded() {
        let (_dir, store) = fresh(None);
        let d = Digest::of(b"private layer");
        assert!(!store.seen_in(&d, "docker.io", &repo("acme/private")).unwrap());
        store.record_seen(&[d], "docker.io", &repo("acme/private")).unwrap();
        assert!(store.seen_in(&d, "docker.io", &repo("acme/private")).unwrap());
        assert!(!store.seen_in(&d, "ghcr.io", &repo("acme/private")).unwrap());
        assert!(!store.seen_in(&d, "docker.io", &repo("acme/public")).unwrap());
        assert!(!store.seen_in(&d, "docker.io", &repo("acme")).unwrap());
        // Recording again changes nothing.
        store.record_seen(&[d, d], "docker.io", &repo("acme/private")).unwrap();
        assert_eq!(store.seen_row(&d).unwrap().unwrap().names, ["docker.io/acme/private"]);
    }

    #[test]
    fn names_per_digest_are_bounded() {
        let (_dir, store) = fresh(None);
        let d = Digest::of(b"base layer");
        for i in 0..MAX_NAMES + 3 {
            store.record_seen(&[d], "docker.io", &repo(&format!("team/app{i}"))).unwrap();
        }
        assert_eq!(store.seen_row(&d).unwrap().unwrap().names.len(), MAX_NAMES);
        assert!(store.seen_in(&d, "docker.io", &repo("team/app0")).unwrap());
        let late = repo(&format!("team/app{}", MAX_NAMES + 1));
        assert!(!store.seen_in(&d, "docker.io", &late).unwrap());
        assert_eq!(store.unseen_in(&[d], "docker.io", &late).unwrap(), [d]);
    }

    #[tokio::test]
    async fn rows_of_held_blobs_survive_a_restart_and_the_rest_are_dropped() {
        let (dir, store) = fresh(None);
        let held = put(&store, b"held blob").await;
        let gone = Digest::of(b"never fetched");
        store.record_seen(&[held, gone], "quay.io", &repo("org/app")).unwrap();
        drop(store);
        let store = open(dir.path(), None);
        assert!(store.seen_in(&held, "quay.io", &repo("org/app")).unwrap());
        assert!(!store.seen_in(&gone, "quay.io", &repo("org/app")).unwrap());
    }
}
