//! Referrers: which manifests pushed to a repository name another manifest as their `subject`
//! (signatures, SBOMs, attestations), for the OCI 1.1 referrers API.
//!
//! Recorded when such a manifest is pushed, dropped when it is deleted; one range read lists
//! the referrers of a subject.

use redb::ReadableDatabase;
use shoal_protocol::{Digest, RepositoryName};

use super::tables::{self, REFERRERS, ReferrerRow};
use super::{Store, StoreError};

/// A manifest that refers to a subject, as the referrers API describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    /// The referrer's annotations, as JSON text.
    pub annotations: Option<String>,
}

impl Store {
    /// Records that `referrer` names `subject`. Blocking (an index commit).
    pub fn add_referrer(
        &self,
        registry: &str,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Referrer,
    ) -> Result<(), StoreError> {
        let index = self.inner.index.path();
        let row = ReferrerRow {
            media_type: referrer.media_type.clone(),
            size: referrer.size,
            artifact_type: referrer.artifact_type.clone(),
            annotations: referrer.annotations.clone(),
        };
        let key = (registry, repo.as_str(), subject.as_bytes(), referrer.digest.as_bytes());
        self.inner.write_index(|db| {
            let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
            {
                let mut table = txn
                    .open_table(REFERRERS)
                    .map_err(|e| StoreError::index("open referrers table", index, e))?;
                table
                    .insert(key, tables::encode(&row).as_slice())
                    .map_err(|e| StoreError::index("write referrer", index, e))?;
            }
            txn.commit().map_err(|e| StoreError::index("commit referrer", index, e))
        })
    }

    /// Forgets that `referrer` names `subject`. Blocking (an index commit).
    pub fn remove_referrer(
        &self,
        registry: &str,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<(), StoreError> {
        let index = self.inner.index.path();
        let key = (registry, repo.as_str(), subject.as_bytes(), referrer.as_bytes());
        self.inner.write_index(|db| {
            let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
            {
                let mut table = txn
                    .open_table(REFERRERS)
                    .map_err(|e| StoreError::index("open referrers table", index, e))?;
                table.remove(key).map_err(|e| StoreError::index("remove referrer", index, e))?;
            }
            txn.commit().map_err(|e| StoreError::index("commit referrer removal", index, e))
        })
    }

    /// The manifests of `registry/repo` that name `subject`, by digest. A short index read.
    pub fn referrers(
        &self,
        registry: &str,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Referrer>, StoreError> {
        let index = self.inner.index.path();
        let repo = repo.as_str();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table = txn
                .open_table(REFERRERS)
                .map_err(|e| StoreError::index("open referrers table", index, e))?;
            let from = (registry, repo, subject.as_bytes(), &[0u8; 32]);
            let range =
                table.range(from..).map_err(|e| StoreError::index("scan referrers", index, e))?;
            let mut found = Vec::new();
            for item in range {
                let (key, value) =
                    item.map_err(|e| StoreError::index("scan referrers", index, e))?;
                let (r, n, s, d) = key.value();
                if r != registry || n != repo || s != subject.as_bytes() {
                    break;
                }
                let Some(row) = tables::decode::<ReferrerRow>(value.value()) else { continue };
                found.push(Referrer {
                    digest: Digest::from_raw(*d),
                    media_type: row.media_type,
                    size: row.size,
                    artifact_type: row.artifact_type,
                    annotations: row.annotations,
                });
            }
            Ok(found)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util::fresh;

    fn referrer(seed: &[u8], artifact: &str) -> Referrer {
        Referrer {
            digest: Digest::of(seed),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 100,
            artifact_type: Some(artifact.into()),
            annotations: Some(r#"{"a":"b"}"#.into()),
        }
    }

    #[test]
    fn referrers_are_listed_per_repository_and_subject() {
        let (_dir, store) = fresh(None);
        let repo = RepositoryName::parse("acme/app").unwrap();
        let other = RepositoryName::parse("acme/app2").unwrap();
        let subject = Digest::of(b"image");
        let (sig, sbom) = (referrer(b"sig", "sig"), referrer(b"sbom", "sbom"));
        store.add_referrer("local", &repo, &subject, &sig).unwrap();
        store.add_referrer("local", &repo, &subject, &sbom).unwrap();
        store.add_referrer("local", &other, &subject, &sig).unwrap();
        store.add_referrer("local", &repo, &Digest::of(b"another"), &sig).unwrap();

        let mut found = store.referrers("local", &repo, &subject).unwrap();
        found.sort_by_key(|r| r.digest);
        let mut want = vec![sig.clone(), sbom];
        want.sort_by_key(|r| r.digest);
        assert_eq!(found, want);
        store.remove_referrer("local", &repo, &subject, &sig.digest).unwrap();
        assert_eq!(store.referrers("local", &repo, &subject).unwrap().len(), 1);
        assert!(store.referrers("docker.io", &repo, &subject).unwrap().is_empty());
    }
}
