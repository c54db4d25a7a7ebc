//! `GET /v2/<name>/referrers/<digest>`: the manifests pushed with that digest as `subject`,
//! and, for a name that is an upstream's, those the upstream lists (`fetch/referrers.rs`), as
//! one OCI image index, filtered by `artifactType` when asked.
//!
//! Owned here rather than by the fetcher because the pushed referrers are the truth for this
//! node: they come first, and an upstream's entry with the same digest adds nothing.

use std::collections::HashSet;

use bytes::Bytes;
use shoal_protocol::Digest;
use shoal_protocol::media_type::OCI_INDEX;

use super::{PushError, Pusher};
use crate::fetch::{FetchError, Target};
use crate::store::Referrer;

/// A referrers answer: the index, and whether the `artifactType` filter was applied.
#[derive(Debug)]
pub struct ReferrersList {
    pub body: Bytes,
    pub filtered: bool,
}

impl Pusher {
    /// The referrers of `subject` under `target`; `upstream` says whether the name is an
    /// upstream's (not a hosted name) and so whether the upstream is asked.
    pub async fn referrers(
        &self,
        target: &Target,
        subject: &Digest,
        artifact_type: Option<&str>,
        upstream: bool,
    ) -> Result<ReferrersList, PushError> {
        let pushed = self.store.referrers(&target.registry, &target.repo, subject)?;
        let upstream = if upstream {
            match self.fetcher.upstream_referrers(target, subject, artifact_type).await {
                Ok(found) => found,
                // A name no upstream answers for holds only what was pushed to it.
                Err(FetchError::UnknownRegistry(_)) => Vec::new(),
                Err(e) => return Err(PushError::Fetch(e)),
            }
        } else {
            Vec::new()
        };
        let found = merge(pushed, upstream, artifact_type);
        Ok(ReferrersList { body: index(found), filtered: artifact_type.is_some() })
    }
}

/// The pushed referrers, then the upstream's not among them, in that order; only those of
/// `artifact_type` when given (an upstream may have ignored the filter).
fn merge(
    pushed: Vec<Referrer>,
    upstream: Vec<Referrer>,
    artifact_type: Option<&str>,
) -> Vec<Referrer> {
    let mut seen = HashSet::new();
    pushed
        .into_iter()
        .chain(upstream)
        .filter(|r| artifact_type.is_none_or(|wanted| r.artifact_type.as_deref() == Some(wanted)))
        .filter(|r| seen.insert(r.digest))
        .collect()
}

/// The image index the referrers API answers with.
fn index(found: Vec<Referrer>) -> Bytes {
    let manifests: Vec<serde_json::Value> = found
        .into_iter()
        .map(|r| {
            let mut d = serde_json::json!({
                "mediaType": r.media_type,
                "digest": r.digest.to_string(),
                "size": r.size,
            });
            if let Some(t) = r.artifact_type {
                d["artifactType"] = t.into();
            }
            if let Some(a) =
                r.annotations.and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    Bytes::from(index.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn referrer(seed: &[u8], artifact: Option<&str>, size: u64) -> Referrer {
        Referrer {
            digest: Digest::of(seed),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size,
            artifact_type: artifact.map(str::to_owned),
            annotations: None,
        }
    }

    #[test]
    fn pushed_referrers_come_first_and_win_over_the_upstreams_copy() {
        let pushed = vec![referrer(b"sig", Some("sig"), 1)];
        let upstream = vec![referrer(b"sbom", Some("sbom"), 2), referrer(b"sig", Some("sig"), 99)];
        let merged = merge(pushed, upstream, None);
        let got: Vec<_> = merged.iter().map(|r| (r.digest, r.size)).collect();
        assert_eq!(got, [(Digest::of(b"sig"), 1), (Digest::of(b"sbom"), 2)]);
    }

    #[test]
    fn the_filter_applies_to_both_sides() {
        let pushed = vec![referrer(b"a", Some("sig"), 1), referrer(b"b", None, 1)];
        let upstream = vec![referrer(b"c", Some("sbom"), 1), referrer(b"d", Some("sig"), 1)];
        let merged = merge(pushed, upstream, Some("sig"));
        let got: Vec<_> = merged.iter().map(|r| r.digest).collect();
        assert_eq!(got, [Digest::of(b"a"), Digest::of(b"d")]);
        assert!(merge(Vec::new(), Vec::new(), Some("sig")).is_empty());
    }

    #[test]
    fn the_answer_is_an_image_index() {
        let mut sig = referrer(b"sig", Some("application/x.sig"), 5);
        sig.annotations = Some(r#"{"created":"now"}"#.into());
        let body = index(vec![sig.clone(), referrer(b"plain", None, 3)]);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["mediaType"], OCI_INDEX);
        assert_eq!(json["manifests"][0]["digest"], sig.digest.to_string());
        assert_eq!(json["manifests"][0]["artifactType"], "application/x.sig");
        assert_eq!(json["manifests"][0]["annotations"]["created"], "now");
        assert!(json["manifests"][1].get("artifactType").is_none());
        // What this node answers, it can read back (a peer or an export does).
        let back = crate::fetch::parse_referrers_index(&body).unwrap();
        assert_eq!(back[0], sig);
    }
}
