//! Tags: (upstream, repository, tag) → the digest it pointed to when last fetched.
//!
//! Tags are mutable upstream; this is the last known answer, kept so that a node can serve
//! pulls by tag while its upstream is down and answer `tags/list` from what it has seen.

use std::time::SystemTime;

use redb::ReadableDatabase;
use shoal_protocol::{Digest, RepositoryName, Tag};

use super::tables::{self, TAGS, TagRow};
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

impl Store {
    /// The stored record of a tag; `None` when unknown (or stored by an incompatible version).
    /// A short index read; fine on an async thread.
    pub fn get_tag(
        &self,
        upstream: &str,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<TagRecord>, StoreError> {
        let index = self.inner.index.path();
        let row: Option<TagRow> = self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table =
                txn.open_table(TAGS).map_err(|e| StoreError::index("open tags table", index, e))?;
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

    /// Records (or replaces) the resolution of a tag, durably. Blocking (an index commit with
    /// fsync): call it from `spawn_blocking` on a busy server.
    pub fn put_tag(
        &self,
        upstream: &str,
        repo: &RepositoryName,
        tag: &Tag,
        record: &TagRecord,
    ) -> Result<(), StoreError> {
        let index = self.inner.index.path();
        let row = TagRow {
            digest: *record.digest.as_bytes(),
            media_type: record.media_type.clone(),
            fetched_at_ms: tables::to_millis(record.fetched_at),
        };
        self.inner.write_index(|db| {
            let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
            {
                let mut table = txn
                    .open_table(TAGS)
                    .map_err(|e| StoreError::index("open tags table", index, e))?;
                table
                    .insert(
                        (upstream, repo.as_str(), tag.as_str()),
                        tables::encode(&row).as_slice(),
                    )
                    .map_err(|e| StoreError::index("write tag", index, e))?;
            }
            txn.commit().map_err(|e| StoreError::index("commit tag", index, e))
        })
    }

    /// The tags known for one repository of one upstream, sorted.
    pub fn list_tags(
        &self,
        upstream: &str,
        repo: &RepositoryName,
    ) -> Result<Vec<String>, StoreError> {
        let index = self.inner.index.path();
        let repo = repo.as_str();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table =
                txn.open_table(TAGS).map_err(|e| StoreError::index("open tags table", index, e))?;
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
