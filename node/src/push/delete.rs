//! Deletes: `DELETE` of a manifest by digest, of a tag, and of a blob.
//!
//! Deleting a manifest removes the tags pushed to it in that repository, its referrer record,
//! and its pins; its bytes go when no other pushed repository pins them. What it named stays
//! stored but is no longer pinned by it, so eviction may take it once nothing else needs it.
//! Under an upstream's name a deleted tag is resolved upstream again on the next pull: this is
//! a cache, and the upstream still has it.

use shoal_protocol::manifest::ManifestRefs;
use shoal_protocol::media_type::MAX_MANIFEST_SIZE;
use shoal_protocol::{Digest, Reference};

use super::{PushError, Pusher, blocking, manifest_pin};
use crate::fetch::{Target, tag_key};

impl Pusher {
    pub async fn delete_manifest(
        &self,
        target: &Target,
        reference: &Reference,
    ) -> Result<(), PushError> {
        let digest = match reference {
            Reference::Tag(tag) => {
                let (store, t, owned) = (self.store.clone(), target.clone(), tag.clone());
                let gone =
                    blocking("delete tag", move || store.delete_tag(&t.registry, &t.repo, &owned))
                        .await?;
                if gone.is_empty() {
                    // Not pushed to this node: deleted on the members it was pushed to, if any.
                    let elsewhere = self.fetcher.pushed_tag_in_fleet(target, tag).await;
                    if !matches!(elsewhere, Ok(Some(_))) {
                        return Err(PushError::ManifestUnknown(reference.to_string()));
                    }
                }
                self.fetcher.withdraw(&Digest::from_raw(tag_key(target, tag)));
                self.release_everywhere(target, reference).await;
                // What asking the members cached here goes too.
                let (store, t, owned) = (self.store.clone(), target.clone(), tag.clone());
                blocking("delete tag", move || store.delete_tag(&t.registry, &t.repo, &owned))
                    .await?;
                tracing::info!(registry = %target.registry, repo = %target.repo, %reference, "tag deleted");
                return Ok(());
            }
            Reference::Digest(digest) => *digest,
        };
        let tags: Vec<shoal_protocol::Tag> = self
            .store
            .pushed_tags_naming(&target.registry, &target.repo, &digest)?
            .iter()
            .filter_map(|t| shoal_protocol::Tag::parse(t).ok())
            .collect();
        let tags_deleted = tags.clone();
        let held = self.store.read_small(&digest, MAX_MANIFEST_SIZE).await?;
        let seen = self.store.seen_in(&digest, &target.registry, &target.repo)?;
        // Unknown here unless a pushed tag names it, or it is held and in this repository.
        if tags.is_empty() && (held.is_none() || !seen) {
            return Err(PushError::ManifestUnknown(digest.to_string()));
        }
        // Released first: the image pin is one of the reasons the bytes are kept.
        self.release_everywhere(target, reference).await;
        let refs = held.as_ref().and_then(|(_, bytes)| ManifestRefs::parse(bytes));
        let (store, t) = (self.store.clone(), target.clone());
        let last_pin = blocking("delete manifest", move || {
            for tag in &tags {
                store.delete_tag(&t.registry, &t.repo, tag)?;
            }
            let mut refs = refs;
            if let Some(refs) = &mut refs {
                // What it names by sha512 was pinned under the sha256 those name.
                store.resolve_known_aliases(refs);
            }
            let mut named = refs.as_ref().map(ManifestRefs::references).unwrap_or_default();
            named.push(digest);
            if let Some(subject) = refs.as_ref().and_then(ManifestRefs::subject) {
                store.remove_referrer(&t.registry, &t.repo, &subject, &digest)?;
            }
            store.unpin(&named, &manifest_pin(&t, &digest))?;
            Ok(store.pin_reasons(&digest)?.is_empty())
        })
        .await?;
        for tag in &tags_deleted {
            self.fetcher.withdraw(&Digest::from_raw(tag_key(target, tag)));
        }
        if last_pin {
            self.store.delete_blob(&digest).await?;
        }
        tracing::info!(registry = %target.registry, repo = %target.repo, %digest, "manifest deleted");
        Ok(())
    }

    /// Deletes the image on the members that keep it too. This node's delete stands whatever
    /// they answer; a member that was away learns it at its next placement check.
    async fn release_everywhere(&self, target: &Target, reference: &Reference) {
        if let Err(e) = self.placement.unpin(target, reference, true).await {
            tracing::warn!(registry = %target.registry, repo = %target.repo, %reference, error = %e, "could not release the deleted image on its members");
        }
    }

    pub async fn delete_blob(&self, target: &Target, digest: &Digest) -> Result<(), PushError> {
        let seen = self.store.seen_in(digest, &target.registry, &target.repo)?;
        if !seen || !self.store.delete_blob(digest).await? {
            return Err(PushError::BlobUnknown(*digest));
        }
        tracing::info!(registry = %target.registry, repo = %target.repo, %digest, "blob deleted");
        Ok(())
    }
}
