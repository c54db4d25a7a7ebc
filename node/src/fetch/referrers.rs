//! The referrers an upstream knows for a subject (signatures, SBOMs, attestations), for names
//! that are an upstream's.
//!
//! The upstream's OCI 1.1 referrers API first. A registry without it answers `404`; then the
//! referrers tag schema, the fallback that cosign and oras write to such registries: the tag
//! `sha256-<hex>` of the subject, an image index listing its referrers. That tag is resolved
//! like any other (`manifests.rs`: the tag's owner, the TTL, stale-if-error), so it is cached
//! and counted like any manifest. The answer, from either, is kept per subject and filter and
//! asked again only once it is older than the tag TTL; an unfiltered answer serves filtered
//! requests too. While the upstream is down the last answer is served, or none.

use serde::Deserialize;
use shoal_protocol::media_type::OCI_INDEX;
use shoal_protocol::{Digest, Reference, Tag};

use super::manifests::is_unavailable;
use super::{FetchError, Fetcher, Target};
use crate::store::{Referrer, StoreError, UpstreamReferrers};
use crate::upstream::UpstreamError;

/// The key of one cached answer: a subject in a repository, with the filter asked for.
pub(super) type ReferrersKey = (String, shoal_protocol::RepositoryName, Digest, Option<String>);

impl Fetcher {
    /// The referrers of `subject` that the upstream of `target` lists, filtered by
    /// `artifact_type` when the upstream applies filters (the caller filters again).
    /// `UnknownRegistry` when the name has no upstream.
    pub async fn upstream_referrers(
        &self,
        target: &Target,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, FetchError> {
        // A name no upstream answers for has nothing cached and nobody to ask.
        self.upstreams.get(&target.registry)?;
        if let Some(fresh) = self.fresh_referrers(target, subject, artifact_type)? {
            return Ok(fresh);
        }
        let key = (
            target.registry.clone(),
            target.repo.clone(),
            *subject,
            artifact_type.map(str::to_owned),
        );
        let _guard = self.referrer_locks.lock(&key).await;
        // Whoever held the lock before us may have just asked.
        if let Some(fresh) = self.fresh_referrers(target, subject, artifact_type)? {
            return Ok(fresh);
        }
        match self.ask_referrers(target, subject, artifact_type).await {
            Ok(referrers) => {
                let answer = UpstreamReferrers {
                    referrers: referrers.clone(),
                    fetched_at: self.clock.now(),
                };
                let (store, target, subject) = (self.store.clone(), target.clone(), *subject);
                let wanted = artifact_type.map(str::to_owned);
                let kept = crate::store::blocking("put upstream referrers", move || {
                    store.put_upstream_referrers(
                        &target.registry,
                        &target.repo,
                        &subject,
                        wanted.as_deref(),
                        &answer,
                    )
                })
                .await;
                // The answer is in hand: a client gets it even if the index cannot keep it
                // (the next request then asks again).
                if let Err(e) = kept {
                    tracing::warn!(error = %e, "cannot keep the upstream's referrers answer");
                }
                Ok(referrers)
            }
            Err(e) if is_unavailable(&e) => {
                let known = self.known_referrers(target, subject, artifact_type)?;
                tracing::warn!(registry = %target.registry, repo = %target.repo, %subject, error = %e, known = known.is_some(), "upstream unavailable; serving the last known referrers");
                Ok(known.map(|k| k.referrers).unwrap_or_default())
            }
            Err(e) => Err(e),
        }
    }

    /// The cached answer, when it is younger than the tag TTL.
    fn fresh_referrers(
        &self,
        target: &Target,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>, StoreError> {
        let known = self.known_referrers(target, subject, artifact_type)?;
        Ok(known.filter(|k| self.clock.age(k.fetched_at) <= self.tag_ttl).map(|k| k.referrers))
    }

    /// The last answer for this filter, else the last unfiltered one, whichever is newer: the
    /// caller filters, so an unfiltered answer serves every filter (a client that asks for
    /// signatures and then for SBOMs costs one upstream request, not two).
    fn known_referrers(
        &self,
        target: &Target,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<UpstreamReferrers>, StoreError> {
        let (registry, repo) = (&target.registry, &target.repo);
        let filtered = self.store.upstream_referrers(registry, repo, subject, artifact_type)?;
        if artifact_type.is_none() {
            return Ok(filtered);
        }
        let all = self.store.upstream_referrers(registry, repo, subject, None)?;
        Ok(match (filtered, all) {
            (Some(f), Some(a)) => Some(if a.fetched_at > f.fetched_at { a } else { f }),
            (f, a) => f.or(a),
        })
    }

    /// One question to the upstream: its referrers API, else the referrers tag.
    async fn ask_referrers(
        &self,
        target: &Target,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, FetchError> {
        let upstream = self.upstreams.get(&target.registry)?;
        let result = upstream.get_referrers(&target.repo, subject, artifact_type).await;
        match self.upstreams.counted(&target.registry, "referrers", result) {
            Ok(page) => parse_index(&page.body).map_err(|detail| {
                FetchError::Upstream(UpstreamError::BadResponse {
                    registry: target.registry.clone(),
                    detail: format!("referrers of {}@{subject}: {detail}", target.repo),
                })
            }),
            Err(UpstreamError::NotFound { .. }) => self.referrers_by_tag(target, subject).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The referrers tag schema: the index tagged `sha256-<hex>`, if there is one.
    async fn referrers_by_tag(
        &self,
        target: &Target,
        subject: &Digest,
    ) -> Result<Vec<Referrer>, FetchError> {
        let tag = Tag::parse(&fallback_tag(subject)).map_err(|e| {
            // A sha256 hex digest always makes a valid tag; this is a bug if it happens.
            FetchError::Upstream(UpstreamError::Config { detail: e.to_string() })
        })?;
        match self.manifest(target, &Reference::Tag(tag)).await {
            Ok(index) => parse_index(&index.manifest.bytes).map_err(|detail| {
                FetchError::Upstream(UpstreamError::BadResponse {
                    registry: target.registry.clone(),
                    detail: format!(
                        "the referrers tag {}:{} is not a referrers index: {detail}",
                        target.repo,
                        fallback_tag(subject)
                    ),
                })
            }),
            Err(e) if e.is_unknown() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// The tag under which the referrers tag schema lists the referrers of `subject`.
fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    #[serde(default)]
    media_type: Option<String>,
    manifests: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The referrers an image index lists, each with a sha256 digest, a media type and a size; a
/// body that is not such an index is refused with why.
pub(crate) fn parse_index(body: &[u8]) -> Result<Vec<Referrer>, String> {
    let index: Index =
        serde_json::from_slice(body).map_err(|e| format!("not an image index: {e}"))?;
    if let Some(media_type) = index.media_type.as_deref()
        && media_type != OCI_INDEX
    {
        return Err(format!("media type {media_type:?} is not an image index"));
    }
    index
        .manifests
        .into_iter()
        .map(|e| {
            let digest = Digest::parse(&e.digest)
                .map_err(|_| format!("descriptor digest {:?} is not a sha256 digest", e.digest))?;
            Ok(Referrer {
                digest,
                media_type: e.media_type,
                size: e.size,
                artifact_type: e.artifact_type,
                annotations: e.annotations.map(|a| serde_json::Value::Object(a).to_string()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_lists_its_referrers() {
        let (sig, sbom) = (Digest::of(b"sig"), Digest::of(b"sbom"));
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
                {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{sig}","size":12,
                  "artifactType":"application/x.sig","annotations":{{"k":"v"}}}},
                {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{sbom}","size":7}}]}}"#
        );
        let found = parse_index(body.as_bytes()).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].digest, sig);
        assert_eq!(found[0].size, 12);
        assert_eq!(found[0].artifact_type.as_deref(), Some("application/x.sig"));
        assert_eq!(found[0].annotations.as_deref(), Some(r#"{"k":"v"}"#));
        assert_eq!((found[1].digest, found[1].artifact_type.as_deref()), (sbom, None));
        // No mediaType at the top is still an index (OCI makes it optional).
        assert_eq!(parse_index(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(), vec![]);
    }

    #[test]
    fn what_is_not_a_referrers_index_is_refused() {
        let d = Digest::of(b"x");
        let bad: Vec<String> = vec![
            "".into(),
            "<html>".into(),
            "[]".into(),
            r#"{"schemaVersion":2}"#.into(),
            r#"{"manifests":{}}"#.into(),
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}}"#
            ),
            format!(r#"{{"manifests":[{{"mediaType":"m","digest":"md5:abc","size":1}}]}}"#),
            format!(r#"{{"manifests":[{{"mediaType":"m","digest":"{d}","size":-1}}]}}"#),
            format!(r#"{{"manifests":[{{"digest":"{d}","size":1}}]}}"#),
        ];
        for body in bad {
            assert!(parse_index(body.as_bytes()).is_err(), "{body:?} was accepted");
        }
    }

    #[test]
    fn the_fallback_tag_is_the_digest_with_a_dash() {
        let d = Digest::of(b"x");
        let tag = fallback_tag(&d);
        assert_eq!(tag, format!("sha256-{}", d.hex()));
        assert!(Tag::parse(&tag).is_ok());
    }
}
