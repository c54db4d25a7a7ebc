//! Tags: (upstream, repository, tag) → the digest it pointed to when last fetched, or when
//! pushed.
//!
//! Tags are mutable upstream; a fetched tag is the last known answer, kept so that a node can
//! serve pulls by tag while its upstream is down and answer `tags/list` from what it has seen.
//! A pushed tag is the truth for its name until it is deleted or pushed again.

use std::time::SystemTime;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use shoal_protocol::{Digest, RepositoryName, Tag};

use super::tables::{self, PUSHED_TAGS, TAGS, TagRow};
use super::{Store, StoreError};

/// The last known resolution of a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    pub digest: Digest,
    /// Media type of the manifest the tag pointed to.
    pub media_type: String,
    /// When the upstream last confirmed this digest.
    pub fetched_at: SystemTime,
}

type TagTable = TableDefinition<'static, (&'static str, &'static str, &'static str), &'static [u8]>;

impl Store {
    /// The stored record of a tag; `None` when unknown (or stored by an incompatible version).
    /// A short index read; fine on an async thread.
    pub fn get_tag(
        &self,
        upstream: &str,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<TagRecord>, StoreError> {
        self.read_tag(TAGS, upstream, repo, tag)
    }

    /// Records (or replaces) the resolution of a tag, durably. Blocking (an index commit with
    /// fsync): call it from `spawn_blocking` on a busy server.
    pub fn put_tag(
        &self,
        upstream: &str,
        repo: &RepositoryName,
        tag: &Tag,
        record: &TagRecord,
    ) -> Result<(), StoreError> {
        self.write_tag(TAGS, upstream, repo, tag, Some(record)).map(drop)
    }

    /// The tags known for one repository of one upstream, sorted.
    pub fn list_tags(
        &self,
        upstream: &str,
        repo: &RepositoryName,
    ) -> Result<Vec<String>, StoreError> {
        self.scan_tags(TAGS, upstream, repo)
    }

    /// A tag pushed to this node (`fetched_at` is when it was pushed). A short index read.
    pub fn get_pushed_tag(
        &self,
        upstream: &str,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<TagRecord>, StoreError> {
        self.read_tag(PUSHED_TAGS, upstream, repo, tag)
    }

    /// Records a pushed tag, durably; it is served as the truth until deleted or pushed again.
    /// Blocking (an index commit).
    pub fn put_pushed_tag(
        &self,
        upstream: &str,
        repo: &RepositoryName,
        tag: &Tag,
        record: &TagRecord,
    ) -> Result<(), StoreError> {
        self.write_tag(PUSHED_TAGS, upstream, repo, tag, Some(record)).map(drop)
    }

    /// Deletes a pushed tag and the last known upstream answer for the same name; returns the
    /// digests they named. Blocking (an index commit).
    pub fn delete_tag(
        &self,
        upstream: &str,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Vec<Digest>, StoreError> {
        let mut gone = Vec::new();
        gone.extend(self.write_tag(PUSHED_TAGS, upstream, repo, tag, None)?);
        gone.extend(self.write_tag(TAGS, upstream, repo, tag, None)?);
        Ok(gone)
    }

    /// The tags pushed to one repository, sorted.
    pub fn list_pushed_tags(
        &self,
        upstream: &str,
        repo: &RepositoryName,
    ) -> Result<Vec<String>, StoreError> {
        self.scan_tags(PUSHED_TAGS, upstream, repo)
    }

    /// Every pushed tag: (registry, repository, tag), for announcing them after a restart.
    pub fn all_pushed_tags(&self) -> Result<Vec<(String, RepositoryName, Tag)>, StoreError> {
        let index = self.inner.index.path();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table = txn
                .open_table(PUSHED_TAGS)
                .map_err(|e| StoreError::index("open tags table", index, e))?;
            let mut all = Vec::new();
            for item in table.iter().map_err(|e| StoreError::index("scan tags", index, e))? {
                let (key, _) = item.map_err(|e| StoreError::index("scan tags", index, e))?;
                let (registry, repo, tag) = key.value();
                if let (Ok(repo), Ok(tag)) = (RepositoryName::parse(repo), Tag::parse(tag)) {
                    all.push((registry.to_owned(), repo, tag));
                }
            }
            Ok(all)
        })
    }

    /// Every pushed tag of a repository with what it names, for deleting a manifest that tags
    /// point at.
    pub fn pushed_tags_naming(
        &self,
        upstream: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<String>, StoreError> {
        let mut naming = Vec::new();
        for name in self.list_pushed_tags(upstream, repo)? {
            let Ok(tag) = Tag::parse(&name) else { continue };
            if self.get_pushed_tag(upstream, repo, &tag)?.is_some_and(|r| r.digest == *digest) {
                naming.push(name);
            }
        }
        Ok(naming)
    }

    /// Tags of one repository, pushed or cached from an answer, that name `digest`.
    pub fn any_tags_naming(
        &self,
        upstream: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<Tag>, StoreError> {
        let mut naming = Vec::new();
        for table in [PUSHED_TAGS, TAGS] {
            for name in self.scan_tags(table, upstream, repo)? {
                let Ok(tag) = Tag::parse(&name) else { continue };
                let record = self.read_tag(table, upstream, repo, &tag)?;
                if record.is_some_and(|r| r.digest == *digest) && !naming.contains(&tag) {
                    naming.push(tag);
                }
            }
        }
        Ok(naming)
    }

    fn read_tag(
        &self,
        table: TagTable,
        upstream: &str,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<TagRecord>, StoreError> {
        let index = self.inner.index.path();
        let row: Option<TagRow> = self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table = txn
                .open_table(table)
                .map_err(|e| StoreError::index("open tags table", index, e))?;
            let value = table
                .get((upstream, repo.as_str(), tag.as_str()))
                .map_err(|e| StoreError::index("read tag", index, e))?;
            Ok(value.and_then(|v| tables::decode(v.value())))
        })?;
        Ok(row.map(|row| TagRecord {
            digest: Digest::from_raw(row.digest),
            media_type: row.media_type,
            fetched_at: tables::from_millis(row.fetched_at_ms),
        }))
    }

    /// Writes a tag row, or removes it when `record` is `None`; returns the digest the row it
    /// replaced or removed named.
    fn write_tag(
        &self,
        table: TagTable,
        upstream: &str,
        repo: &RepositoryName,
        tag: &Tag,
        record: Option<&TagRecord>,
    ) -> Result<Option<Digest>, StoreError> {
        let index = self.inner.index.path();
        let key = (upstream, repo.as_str(), tag.as_str());
        self.inner.write_index(|db| {
            let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
            let old = {
                let mut table = txn
                    .open_table(table)
                    .map_err(|e| StoreError::index("open tags table", index, e))?;
                let old = match record {
                    Some(record) => {
                        let row = TagRow {
                            digest: *record.digest.as_bytes(),
                            media_type: record.media_type.clone(),
                            fetched_at_ms: tables::to_millis(record.fetched_at),
                        };
                        table
                            .insert(key, tables::encode(&row).as_slice())
                            .map_err(|e| StoreError::index("write tag", index, e))?
                            .map(|v| v.value().to_vec())
                    }
                    None => table
                        .remove(key)
                        .map_err(|e| StoreError::index("remove tag", index, e))?
                        .map(|v| v.value().to_vec()),
                };
                old.and_then(|bytes| tables::decode::<TagRow>(&bytes))
            };
            txn.commit().map_err(|e| StoreError::index("commit tag", index, e))?;
            Ok(old.map(|row| Digest::from_raw(row.digest)))
        })
    }

    fn scan_tags(
        &self,
        table: TagTable,
        upstream: &str,
        repo: &RepositoryName,
    ) -> Result<Vec<String>, StoreError> {
        let index = self.inner.index.path();
        let repo = repo.as_str();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table = txn
                .open_table(table)
                .map_err(|e| StoreError::index("open tags table", index, e))?;
            // The empty tag sorts first, so the range starts at this repository's first tag; it
            // ends where the key's first two parts change.
            let range = table
                .range((upstream, repo, "")..)
                .map_err(|e| StoreError::index("scan tags", index, e))?;
            let mut tags = Vec::new();
            for item in range {
                let (key, value) = item.map_err(|e| StoreError::index("scan tags", index, e))?;
                let (u, r, t) = key.value();
                if u != upstream || r != repo {
                    break;
                }
                // Rows this version cannot read are not listed, as get_tag would not find them.
                if tables::decode::<TagRow>(value.value()).is_some() {
                    tags.push(t.to_owned());
                }
            }
            Ok(tags)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::store::tables;
    use crate::store::test_util::{fresh, open};

    fn repo(s: &str) -> RepositoryName {
        RepositoryName::parse(s).unwrap()
    }

    fn tag(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }

    fn record(content: &[u8]) -> TagRecord {
        TagRecord {
            digest: Digest::of(content),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            fetched_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        }
    }

    #[test]
    fn tags_round_trip_and_survive_reopen() {
        let (dir, store) = fresh(None);
        assert_eq!(store.get_tag("docker.io", &repo("library/app"), &tag("v1")).unwrap(), None);
        store.put_tag("docker.io", &repo("library/app"), &tag("v1"), &record(b"one")).unwrap();
        store.put_tag("docker.io", &repo("library/app"), &tag("v1"), &record(b"two")).unwrap();
        drop(store);
        let store = open(dir.path(), None);
        let got = store.get_tag("docker.io", &repo("library/app"), &tag("v1")).unwrap();
        assert_eq!(got, Some(record(b"two")));
        assert_eq!(store.get_tag("ghcr.io", &repo("library/app"), &tag("v1")).unwrap(), None);
    }

    #[test]
    fn list_tags_is_sorted_and_isolated_per_upstream_and_repository() {
        let (_dir, store) = fresh(None);
        let puts = [
            ("docker.io", "a", "v2"),
            ("docker.io", "a", "latest"),
            ("docker.io", "a", "v1"),
            ("docker.io", "a/b", "only-a-b"),
            ("docker.io", "ab", "only-ab"),
            ("docker.io", "a.b", "only-a-dot"),
            ("ghcr.io", "a", "only-ghcr"),
            ("docker.i", "a", "only-docker-i"),
        ];
        for (u, r, t) in puts {
            store.put_tag(u, &repo(r), &tag(t), &record(t.as_bytes())).unwrap();
        }
        assert_eq!(store.list_tags("docker.io", &repo("a")).unwrap(), ["latest", "v1", "v2"]);
        assert_eq!(store.list_tags("docker.io", &repo("a/b")).unwrap(), ["only-a-b"]);
        assert_eq!(store.list_tags("docker.io", &repo("ab")).unwrap(), ["only-ab"]);
        assert_eq!(store.list_tags("ghcr.io", &repo("a")).unwrap(), ["only-ghcr"]);
        assert!(store.list_tags("docker.io", &repo("b")).unwrap().is_empty());
        assert!(store.list_tags("quay.io", &repo("a")).unwrap().is_empty());
    }

    #[test]
    fn pushed_tags_are_apart_from_fetched_ones_and_delete_removes_both() {
        let (_dir, store) = fresh(None);
        let (r, t) = (repo("library/app"), tag("v1"));
        store.put_tag("docker.io", &r, &t, &record(b"fetched")).unwrap();
        assert_eq!(store.get_pushed_tag("docker.io", &r, &t).unwrap(), None);
        store.put_pushed_tag("docker.io", &r, &t, &record(b"pushed")).unwrap();
        assert_eq!(store.get_pushed_tag("docker.io", &r, &t).unwrap(), Some(record(b"pushed")));
        assert_eq!(store.list_pushed_tags("docker.io", &r).unwrap(), ["v1"]);
        let pushed = Digest::of(b"pushed");
        assert_eq!(store.pushed_tags_naming("docker.io", &r, &pushed).unwrap(), ["v1"]);
        let gone = store.delete_tag("docker.io", &r, &t).unwrap();
        assert_eq!(gone, [pushed, Digest::of(b"fetched")]);
        assert_eq!(store.get_tag("docker.io", &r, &t).unwrap(), None);
        assert!(store.list_pushed_tags("docker.io", &r).unwrap().is_empty());
        assert!(store.delete_tag("docker.io", &r, &t).unwrap().is_empty());
    }

    #[test]
    fn a_tag_row_of_an_unknown_version_reads_as_missing() {
        let (_dir, store) = fresh(None);
        store.put_tag("docker.io", &repo("app"), &tag("good"), &record(b"g")).unwrap();
        let mut future_row =
            tables::encode(&TagRow { digest: [1; 32], media_type: "m".into(), fetched_at_ms: 5 });
        future_row[0] = 99;
        store
            .inner
            .write_index(|db| {
                let txn = db.begin_write().unwrap();
                {
                    let mut table = txn.open_table(TAGS).unwrap();
                    table.insert(("docker.io", "app", "future"), future_row.as_slice()).unwrap();
                    table.insert(("docker.io", "app", "garbage"), &[1u8, 0xff][..]).unwrap();
                }
                txn.commit().unwrap();
                Ok(())
            })
            .unwrap();

        assert_eq!(store.get_tag("docker.io", &repo("app"), &tag("future")).unwrap(), None);
        assert_eq!(store.get_tag("docker.io", &repo("app"), &tag("garbage")).unwrap(), None);
        assert_eq!(store.list_tags("docker.io", &repo("app")).unwrap(), ["good"]);
    }
}
