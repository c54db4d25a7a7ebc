//! Content a client names by sha512: which sha256 that is, here or in the fleet.
//!
//! An alias is believed only once this node has checked that the content hashes to both
//! digests. A member's answer is a lead, not a fact: the content it names is brought in the way
//! a pull would (verified against its sha256), hashed again with sha512, and only a match is
//! recorded. A member that names the wrong content costs one fetch of verified bytes, never a
//! wrong answer to a client.

use shoal_protocol::manifest::ManifestRefs;
use shoal_protocol::{Digest, Sha512Digest};

use super::{FetchError, Fetcher, Target};

/// What an alias is expected to name: how to bring the content in to check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasOf {
    Blob,
    Manifest,
}

impl Fetcher {
    /// The sha256 of the content `alias` names, known here or learned from the members that
    /// announce it; `None` when none knows it. Content learned this way is held here after.
    pub async fn resolve_alias(
        &self,
        target: &Target,
        alias: &Sha512Digest,
        kind: AliasOf,
    ) -> Result<Option<Digest>, FetchError> {
        let (store, a) = (self.store.clone(), *alias);
        if let Some(found) = crate::store::blocking("read alias", move || store.alias(&a)).await? {
            return Ok(Some(found));
        }
        let (Some(fleet), Some(peers)) = (&self.fleet, &self.peer_client) else { return Ok(None) };
        let key = Digest::from_raw(alias.dht_key());
        for peer in fleet.providers(&key).await {
            let candidate = match peers.alias(&peer, alias).await {
                Ok(Some(candidate)) => candidate,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(peer = %peer.id, %alias, error = %e, "member announcing an alias did not answer for it");
                    continue;
                }
            };
            let held = match kind {
                AliasOf::Blob => self.hold_blob(target, &candidate).await?,
                AliasOf::Manifest => self.hold_manifest(target, &candidate).await?,
            };
            if !held {
                continue;
            }
            if self.store.sha512_of(&candidate).await? == Some(*alias) {
                self.record_alias(alias, &candidate).await?;
                return Ok(Some(candidate));
            }
            tracing::warn!(peer = %peer.id, %alias, named = %candidate, "member named content that does not hash to the alias; ignored");
        }
        Ok(None)
    }

    /// Records an alias this node has checked, and tells the fleet it can answer for it.
    pub async fn record_alias(
        &self,
        alias: &Sha512Digest,
        digest: &Digest,
    ) -> Result<(), FetchError> {
        let (store, a, d) = (self.store.clone(), *alias, *digest);
        crate::store::blocking("record alias", move || store.put_alias(&a, &d)).await?;
        self.announce(&Digest::from_raw(alias.dht_key()));
        Ok(())
    }

    /// For a member: the sha256 `alias` names, when this node checked it and holds the content.
    pub async fn local_alias(&self, alias: &Sha512Digest) -> Result<Option<Digest>, FetchError> {
        let (store, a) = (self.store.clone(), *alias);
        let found = crate::store::blocking("read alias", move || store.alias(&a)).await?;
        Ok(found.filter(|d| self.store.contains(d)))
    }

    /// Rewrites the sha512 descriptors of a manifest to the sha256 of the content they name,
    /// wherever that is known (here, else in the fleet); those no one knows stay as they are.
    pub async fn resolve_refs(
        &self,
        target: &Target,
        refs: &mut ManifestRefs,
    ) -> Result<(), FetchError> {
        let mut found = Vec::new();
        for alias in refs.aliases() {
            let named = alias.to_string();
            let kind = if refs.manifests.iter().chain(&refs.subject).any(|d| d.digest == named) {
                AliasOf::Manifest
            } else {
                AliasOf::Blob
            };
            if let Some(digest) = self.resolve_alias(target, &alias, kind).await? {
                found.push((alias, digest));
            }
        }
        refs.resolve_aliases(|a| found.iter().find(|(k, _)| k == a).map(|(_, d)| *d));
        Ok(())
    }
}
