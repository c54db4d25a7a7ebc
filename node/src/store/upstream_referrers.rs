//! The referrers an upstream last listed for a subject: the cached answer of its referrers API
//! (or of the referrers tag schema), kept like a tag record so that it is asked again only after
//! the tag TTL and served as it was while the upstream is down.
//!
//! Kept apart from the pushed referrers (`referrers.rs`): those are the truth for this node,
//! these only the last answer of an upstream, replaced whole by the next one.

use std::time::SystemTime;

use redb::ReadableDatabase;
use shoal_protocol::{Digest, RepositoryName};

use super::referrers::Referrer;
use super::tables::{self, ReferrerRow, UPSTREAM_REFERRERS, UpstreamReferrersRow};
use super::{Store, StoreError};

/// An upstream's referrers of one subject, as last fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamReferrers {
    pub referrers: Vec<Referrer>,
    pub fetched_at: SystemTime,
}

impl Store {
    /// The cached answer for `subject` with the filter `artifact_type`; `None` when never
    /// fetched (or stored by an incompatible version). A short index read.
    pub fn upstream_referrers(
        &self,
        registry: &str,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<UpstreamReferrers>, StoreError> {
        let index = self.inner.index.path();
        let key = (registry, repo.as_str(), subject.as_bytes(), artifact_type.unwrap_or(""));
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table = txn
                .open_table(UPSTREAM_REFERRERS)
                .map_err(|e| StoreError::index("open upstream referrers table", index, e))?;
            let value = table
                .get(key)
                .map_err(|e| StoreError::index("read upstream referrers", index, e))?;
            let Some(row) = value.and_then(|v| tables::decode::<UpstreamReferrersRow>(v.value()))
            else {
                return Ok(None);
            };
            let referrers = (row.referrers.into_iter())
                .map(|(digest, row)| Referrer {
                    digest: Digest::from_raw(digest),
                    media_type: row.media_type,
                    size: row.size,
                    artifact_type: row.artifact_type,
                    annotations: row.annotations,
                })
                .collect();
            Ok(Some(UpstreamReferrers {
                referrers,
                fetched_at: tables::from_millis(row.fetched_at_ms),
            }))
        })
    }

    /// Replaces the cached answer for `subject` with the filter `artifact_type`. Blocking (an
    /// index commit).
    pub fn put_upstream_referrers(
        &self,
        registry: &str,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
        answer: &UpstreamReferrers,
    ) -> Result<(), StoreError> {
        let index = self.inner.index.path();
        let row = UpstreamReferrersRow {
            fetched_at_ms: tables::to_millis(answer.fetched_at),
            referrers: (answer.referrers.iter())
                .map(|r| {
                    let row = ReferrerRow {
                        media_type: r.media_type.clone(),
                        size: r.size,
                        artifact_type: r.artifact_type.clone(),
                        annotations: r.annotations.clone(),
                    };
                    (*r.digest.as_bytes(), row)
                })
                .collect(),
        };
        let key = (registry, repo.as_str(), subject.as_bytes(), artifact_type.unwrap_or(""));
        self.inner.write_index(|db| {
            let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
            {
                let mut table = txn
                    .open_table(UPSTREAM_REFERRERS)
                    .map_err(|e| StoreError::index("open upstream referrers table", index, e))?;
                table
                    .insert(key, tables::encode(&row).as_slice())
                    .map_err(|e| StoreError::index("write upstream referrers", index, e))?;
            }
            txn.commit().map_err(|e| StoreError::index("commit upstream referrers", index, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::test_util::fresh;

    #[test]
    fn an_answer_is_kept_per_subject_and_filter_and_replaced_whole() {
        let (_dir, store) = fresh(None);
        let repo = RepositoryName::parse("acme/app").unwrap();
        let subject = Digest::of(b"image");
        let sig = Referrer {
            digest: Digest::of(b"sig"),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 10,
            artifact_type: Some("application/x.sig".into()),
            annotations: None,
        };
        let at = tables::from_millis(1_700_000_000_000);
        let answer = UpstreamReferrers { referrers: vec![sig.clone()], fetched_at: at };
        assert_eq!(store.upstream_referrers("docker.io", &repo, &subject, None).unwrap(), None);
        store.put_upstream_referrers("docker.io", &repo, &subject, None, &answer).unwrap();
        let got = store.upstream_referrers("docker.io", &repo, &subject, None).unwrap();
        assert_eq!(got, Some(answer));
        let filtered = store.upstream_referrers("docker.io", &repo, &subject, Some("x")).unwrap();
        assert_eq!(filtered, None, "another filter is another answer");

        let later =
            UpstreamReferrers { referrers: Vec::new(), fetched_at: at + Duration::from_secs(1) };
        store.put_upstream_referrers("docker.io", &repo, &subject, None, &later).unwrap();
        let got = store.upstream_referrers("docker.io", &repo, &subject, None).unwrap();
        assert_eq!(got, Some(later));
    }
}
