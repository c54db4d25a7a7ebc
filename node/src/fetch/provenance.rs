//! Serving a digest only under names it is known to belong to.
//!
//! The store keeps one copy of a blob however many repositories hold it, so without this a
//! client allowed to pull repository A could read a private layer of repository B by asking for
//! `/v2/A/blobs/<its digest>`. When client rights differ by name, a digest asked for under a
//! name is served only if the node has seen it there: fetched from that repository upstream,
//! listed by a manifest served from it, or confirmed by a `HEAD` to the upstream with that
//! repository's credentials (a 404, 401 or 403 there is "unknown" here). The check runs before
//! the store, the peers or the upstream are asked, so neither a local copy nor a peer's can leak.

use shoal_protocol::Digest;
use shoal_protocol::manifest::ManifestRefs;

use super::{FetchError, Fetcher, ManifestData, Target};
use crate::store::StoreError;
use crate::upstream::UpstreamError;

/// Manifests are listed by digest too; a digest asked for as one is unknown as a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Blob,
    Manifest,
}

impl Fetcher {
    /// Refuses a digest the node does not know to be in the target's repository, unless the
    /// upstream says it is (then it is known from now on).
    pub(super) async fn check_seen(
        &self,
        target: &Target,
        digest: &Digest,
        kind: Kind,
    ) -> Result<(), FetchError> {
        if !self.repo_check || self.store.seen_in(digest, &target.registry, &target.repo)? {
            return Ok(());
        }
        let upstream = self.upstreams.get(&target.registry)?;
        let reference = shoal_protocol::Reference::Digest(*digest);
        let asked = match kind {
            Kind::Blob => upstream.head_blob(&target.repo, digest).await.map(drop),
            Kind::Manifest => upstream.head_manifest(&target.repo, &reference).await.map(drop),
        };
        match asked {
            Ok(()) => self.record_seen(target, vec![*digest]).await,
            Err(UpstreamError::NotFound { .. } | UpstreamError::Unauthorized { .. }) => {
                tracing::debug!(registry = %target.registry, repo = %target.repo, %digest, "digest not in this repository upstream; not served under it");
                Err(unknown(target, digest, kind))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records that the manifest and everything it lists are in the target's repository: the
    /// names a digest may be served under, and the names lifecycle rules match.
    pub(super) async fn record_manifest(
        &self,
        target: &Target,
        manifest: &ManifestData,
    ) -> Result<(), FetchError> {
        let mut digests = vec![manifest.manifest.digest];
        digests.extend(references(&self.store, &manifest.manifest.bytes));
        let unseen = self.store.unseen_in(&digests, &target.registry, &target.repo)?;
        if unseen.is_empty() {
            return Ok(());
        }
        self.record_seen(target, unseen).await
    }

    async fn record_seen(&self, target: &Target, digests: Vec<Digest>) -> Result<(), FetchError> {
        // A durable commit: off the async threads.
        let (store, target) = (self.store.clone(), target.clone());
        tokio::task::spawn_blocking(move || {
            store.record_seen(&digests, &target.registry, &target.repo)
        })
        .await
        .map_err(|e| {
            FetchError::Store(StoreError::TaskFailed { op: "record seen", source: e })
        })??;
        Ok(())
    }
}

fn unknown(target: &Target, digest: &Digest, kind: Kind) -> FetchError {
    match kind {
        Kind::Blob => FetchError::BlobUnknown(*digest),
        Kind::Manifest => FetchError::ManifestUnknown {
            registry: target.registry.clone(),
            repo: target.repo.to_string(),
            reference: digest.to_string(),
        },
    }
}

/// The digests a manifest lists, sha512 descriptors through the aliases this node knows;
/// nothing for what is not a manifest.
fn references(store: &crate::store::Store, bytes: &[u8]) -> Vec<Digest> {
    let Some(mut refs) = ManifestRefs::parse(bytes) else { return Vec::new() };
    store.resolve_known_aliases(&mut refs);
    refs.references()
}
