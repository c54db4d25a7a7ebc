//! Manifests: by digest (immutable, cached forever) and by tag (resolved upstream at most once
//! per TTL, last known digest served when the upstream is down).
//!
//! In a fleet a tag's owner answers for it. A member's answer is checked for what can be
//! checked cheaply: its bytes must hash to its digest, and when it moves a tag away from the
//! digest this node last knew, the node asks the upstream itself (one `HEAD`) and believes the
//! upstream. An owner can therefore never move a tag this node has seen to content the
//! upstream does not name; it can still answer first for a tag this node has never seen.

use shoal_protocol::media_type::{MAX_MANIFEST_SIZE, OCI_MANIFEST, sniff_manifest_media_type};
use shoal_protocol::{Digest, Manifest, Reference, Tag};

use super::fleet::{FleetError, tag_key};
use super::provenance::Kind;
use super::{FetchError, Fetcher, Served, Target};
use crate::p2p::{Owner, PeerId};
use crate::store::{StoreError, TagRecord};
use crate::upstream::UpstreamError;

/// A manifest as served, and where this node got it (for the metrics and the log).
#[derive(Debug, Clone)]
pub struct ManifestData {
    pub manifest: Manifest,
    pub source: Served,
}

impl ManifestData {
    pub fn new(manifest: Manifest, source: Served) -> Self {
        Self { manifest, source }
    }
}

impl Fetcher {
    pub async fn manifest(
        &self,
        target: &Target,
        reference: &Reference,
    ) -> Result<ManifestData, FetchError> {
        let manifest = match reference {
            Reference::Digest(digest) => {
                self.check_seen(target, digest, Kind::Manifest).await?;
                self.manifest_by_digest(target, digest).await?
            }
            Reference::Tag(tag) => self.manifest_by_tag(target, tag, true).await?,
        };
        // What it lists is in this repository too: the client's next requests. Not knowing it
        // costs those requests a HEAD upstream each, not this one its answer.
        if let Err(e) = self.record_manifest(target, &manifest).await {
            tracing::warn!(registry = %target.registry, repo = %target.repo, digest = %manifest.manifest.digest, error = %e, "cannot record where the manifest's blobs are");
        }
        Ok(manifest)
    }

    async fn manifest_by_digest(
        &self,
        target: &Target,
        digest: &Digest,
    ) -> Result<ManifestData, FetchError> {
        if let Some(found) = self.stored_manifest(digest, None).await? {
            return Ok(found);
        }
        let _guard = self.manifest_locks.lock(digest).await;
        if let Some(found) = self.stored_manifest(digest, None).await? {
            return Ok(found);
        }
        if let Some(found) = self.manifest_from_peers(digest).await {
            self.keep_manifest(&found).await?;
            return Ok(found);
        }
        let manifest = self.upstream_manifest(target, &Reference::Digest(*digest)).await?;
        self.keep_manifest(&manifest).await?;
        Ok(manifest)
    }

    /// Serves a tag owner request from a peer: resolve here, never forward to another owner.
    pub async fn resolve_tag_for_peer(
        &self,
        target: &Target,
        tag: &Tag,
    ) -> Result<ManifestData, FetchError> {
        self.manifest_by_tag(target, tag, false).await
    }

    async fn manifest_by_tag(
        &self,
        target: &Target,
        tag: &Tag,
        ask_owner: bool,
    ) -> Result<ManifestData, FetchError> {
        if let Some(found) = self.pushed_tag(target, tag).await? {
            return Ok(found);
        }
        // A peer asking about a hosted name wants this node's pushed tags only: an answer it
        // cached from another member could be one deleted since, and asking on would pass
        // stale answers around the fleet.
        if !ask_owner && self.upstreams.get(&target.registry).is_err() {
            return Err(FetchError::ManifestUnknown {
                registry: target.registry.clone(),
                repo: target.repo.to_string(),
                reference: tag.to_string(),
            });
        }
        if let Some(found) = self.fresh_tag(target, tag).await? {
            return Ok(found);
        }
        let key = (target.registry.clone(), target.repo.clone(), tag.clone());
        let _guard = self.tag_locks.lock(&key).await;
        // Whoever held the lock before us may have just resolved it.
        if let Some(found) = self.fresh_tag(target, tag).await? {
            return Ok(found);
        }
        if ask_owner && let Some(found) = self.tag_from_owner(target, tag).await? {
            return Ok(found);
        }
        // A hosted name has no upstream: `UnknownRegistry` here, which the registry layer
        // answers as an unknown manifest once the members it was pushed to had their say.
        let resolved = match self.upstreams.get(&target.registry) {
            Err(e) => Err(e),
            Ok(_) => self.tag_from_upstream(target, tag).await,
        };
        match resolved {
            // The upstream does not know it, or cannot be asked (an air-gapped site seeded by
            // pushes under the upstream's names): a member it was pushed to may. Only for a
            // client: a peer asking is itself about to ask those members.
            Err(e) if ask_owner && (e.is_unknown() || is_unavailable(&e)) => {
                match self.tag_from_pushers(target, tag).await? {
                    Some(found) => Ok(found),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    async fn tag_from_upstream(
        &self,
        target: &Target,
        tag: &Tag,
    ) -> Result<ManifestData, FetchError> {
        let known = self.store.get_tag(&target.registry, &target.repo, tag)?;
        let Some(known) = known else {
            // Never seen: one GET by tag gives the digest and the bytes at once.
            let manifest = self.upstream_manifest(target, &Reference::Tag(tag.clone())).await?;
            self.keep_manifest(&manifest).await?;
            self.remember_tag(target, tag, &manifest.manifest).await?;
            return Ok(manifest);
        };

        let upstream = self.upstreams.get(&target.registry)?;
        // HEAD, because registries (Docker Hub) do not count it against pull rate limits.
        let result = upstream.head_manifest(&target.repo, &Reference::Tag(tag.clone())).await;
        match self.upstreams.counted(&target.registry, "manifest", result) {
            Ok(head) => {
                let manifest =
                    match self.stored_manifest(&head.digest, Some(&head.media_type)).await? {
                        Some(stored) => stored,
                        None => {
                            let m = self
                                .upstream_manifest(target, &Reference::Digest(head.digest))
                                .await?;
                            self.keep_manifest(&m).await?;
                            m
                        }
                    };
                if manifest.manifest.digest != known.digest {
                    tracing::info!(registry = %target.registry, repo = %target.repo, %tag, old = %known.digest, new = %manifest.manifest.digest, "tag moved");
                }
                self.remember_tag(target, tag, &manifest.manifest).await?;
                Ok(manifest)
            }
            Err(e) if stale_if_error(&e) => {
                tracing::warn!(registry = %target.registry, repo = %target.repo, %tag, digest = %known.digest, error = %e, "upstream unavailable; serving last known digest");
                match self.stored_manifest(&known.digest, Some(&known.media_type)).await? {
                    Some(stored) => Ok(stored),
                    None => Err(e.into()),
                }
            }
            Err(UpstreamError::NotFound { .. }) => Err(FetchError::ManifestUnknown {
                registry: target.registry.clone(),
                repo: target.repo.to_string(),
                reference: tag.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Asks the tag's owner, when it is another node; `None` means "resolve it here".
    async fn tag_from_owner(
        &self,
        target: &Target,
        tag: &Tag,
    ) -> Result<Option<ManifestData>, FetchError> {
        let Some(fleet) = &self.fleet else { return Ok(None) };
        let Owner::Remote(owner) = fleet.owner(&tag_key(target, tag)) else { return Ok(None) };
        match fleet.ask_tag(&owner, target, tag).await {
            Ok(m) if deleted_here(&self.store, target, &m.manifest.digest)? => {
                tracing::info!(owner = %owner.id, %tag, digest = %m.manifest.digest, "tag owner names an image this node knows was deleted; resolving here");
                Ok(None)
            }
            Ok(m) if Digest::of(&m.manifest.bytes) == m.manifest.digest => {
                let m = self.check_owner_answer(target, tag, &owner.id, m).await?;
                self.keep_manifest(&m).await?;
                self.remember_tag(target, tag, &m.manifest).await?;
                Ok(Some(m))
            }
            Ok(m) => {
                tracing::warn!(owner = %owner.id, %tag, claimed = %m.manifest.digest, "tag owner sent a manifest that does not match its digest; resolving here");
                Ok(None)
            }
            Err(FleetError::NotFound { .. }) => Err(FetchError::ManifestUnknown {
                registry: target.registry.clone(),
                repo: target.repo.to_string(),
                reference: tag.to_string(),
            }),
            Err(e) => {
                tracing::warn!(owner = %owner.id, %tag, error = %e, "tag owner unavailable; resolving here");
                Ok(None)
            }
        }
    }

    /// A tag pushed to some member of the fleet, as those members answer for it; `None` when
    /// no member announces it. Never asks an upstream.
    pub async fn pushed_tag_in_fleet(
        &self,
        target: &Target,
        tag: &Tag,
    ) -> Result<Option<ManifestData>, FetchError> {
        if let Some(found) = self.pushed_tag(target, tag).await? {
            return Ok(Some(found));
        }
        self.tag_from_pushers(target, tag).await
    }

    /// Asks the members that announced a pushed tag (they provide its tag key) for it.
    async fn tag_from_pushers(
        &self,
        target: &Target,
        tag: &Tag,
    ) -> Result<Option<ManifestData>, FetchError> {
        let Some(fleet) = &self.fleet else { return Ok(None) };
        let key = Digest::from_raw(tag_key(target, tag));
        for peer in fleet.providers(&key).await {
            match fleet.ask_tag(&peer, target, tag).await {
                Ok(m) if deleted_here(&self.store, target, &m.manifest.digest)? => {
                    tracing::info!(peer = %peer.id, %tag, digest = %m.manifest.digest, "member still serves a pushed tag this node knows was deleted; ignored");
                }
                Ok(m) if Digest::of(&m.manifest.bytes) == m.manifest.digest => {
                    self.keep_manifest(&m).await?;
                    self.remember_tag(target, tag, &m.manifest).await?;
                    return Ok(Some(m));
                }
                Ok(m) => {
                    tracing::warn!(peer = %peer.id, %tag, claimed = %m.manifest.digest, "member sent a pushed tag's manifest that does not match its digest");
                }
                Err(e) => {
                    tracing::debug!(peer = %peer.id, %tag, error = %e, "member announcing a pushed tag did not answer for it");
                }
            }
        }
        Ok(None)
    }

    /// The owner's answer, unless it moves the tag away from the digest this node knows and
    /// the upstream names another one: then the upstream's. Answers that agree with this
    /// node's record, and answers for tags it has no record of, cost no upstream request, so
    /// a fleet still resolves a tag once per TTL; a tag that really moved costs each node that
    /// knew the old digest one `HEAD` (not counted against Docker Hub's pull limit).
    async fn check_owner_answer(
        &self,
        target: &Target,
        tag: &Tag,
        owner: &PeerId,
        answer: ManifestData,
    ) -> Result<ManifestData, FetchError> {
        let Some(known) = self.store.get_tag(&target.registry, &target.repo, tag)? else {
            return Ok(answer);
        };
        if known.digest == answer.manifest.digest {
            return Ok(answer);
        }
        let upstream = self.upstreams.get(&target.registry)?;
        let result = upstream.head_manifest(&target.repo, &Reference::Tag(tag.clone())).await;
        match self.upstreams.counted(&target.registry, "manifest", result) {
            Ok(head) if head.digest == answer.manifest.digest => {
                tracing::info!(registry = %target.registry, repo = %target.repo, %tag, old = %known.digest, new = %answer.manifest.digest, "tag moved (owner's answer confirmed upstream)");
                Ok(answer)
            }
            Ok(head) => {
                tracing::warn!(%owner, registry = %target.registry, repo = %target.repo, %tag, claimed = %answer.manifest.digest, upstream = %head.digest, "tag owner's answer contradicts the upstream; believing the upstream");
                match self.stored_manifest(&head.digest, Some(&head.media_type)).await? {
                    Some(stored) => Ok(stored),
                    None => self.upstream_manifest(target, &Reference::Digest(head.digest)).await,
                }
            }
            Err(UpstreamError::NotFound { .. }) => {
                tracing::warn!(%owner, registry = %target.registry, repo = %target.repo, %tag, claimed = %answer.manifest.digest, "tag owner names a digest for a tag the upstream does not have; believing the upstream");
                Err(FetchError::ManifestUnknown {
                    registry: target.registry.clone(),
                    repo: target.repo.to_string(),
                    reference: tag.to_string(),
                })
            }
            // The owner may well reach an upstream this node cannot: its word is the best
            // there is, and its bytes match its digest.
            Err(e) => {
                tracing::info!(%owner, %tag, claimed = %answer.manifest.digest, error = %e, "cannot check the tag owner's new digest upstream; taking it");
                Ok(answer)
            }
        }
    }

    /// A manifest by digest from a peer that holds it: immutable, so any holder will do.
    async fn manifest_from_peers(&self, digest: &Digest) -> Option<ManifestData> {
        let (fleet, client) = (self.fleet.as_ref()?, self.peer_client.as_ref()?);
        for peer in fleet.providers(digest).await {
            if !client.trusted(digest, &peer.id) {
                continue;
            }
            match client.fetch_small(&peer, digest, MAX_MANIFEST_SIZE).await {
                Ok(Some((media_type, bytes))) => {
                    let media_type = media_type
                        .or_else(|| sniff_manifest_media_type(&bytes))
                        .unwrap_or_else(|| OCI_MANIFEST.to_owned());
                    let manifest = Manifest { digest: *digest, media_type, bytes };
                    return Some(ManifestData::new(manifest, Served::Peer));
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(%digest, error = %e, "manifest provider failed"),
            }
        }
        None
    }

    /// The cached manifest for a tag whose record is younger than the TTL.
    async fn fresh_tag(
        &self,
        target: &Target,
        tag: &Tag,
    ) -> Result<Option<ManifestData>, FetchError> {
        let Some(record) = self.store.get_tag(&target.registry, &target.repo, tag)? else {
            return Ok(None);
        };
        if self.clock.age(record.fetched_at) > self.tag_ttl {
            return Ok(None);
        }
        self.stored_manifest(&record.digest, Some(&record.media_type)).await
    }

    /// A tag pushed to this node: the truth for its name, never asked of the upstream. Its
    /// manifest is read here, else from a peer that holds it.
    async fn pushed_tag(
        &self,
        target: &Target,
        tag: &Tag,
    ) -> Result<Option<ManifestData>, FetchError> {
        let Some(pushed) = self.store.get_pushed_tag(&target.registry, &target.repo, tag)? else {
            return Ok(None);
        };
        if let Some(found) = self.stored_manifest(&pushed.digest, Some(&pushed.media_type)).await? {
            return Ok(Some(found));
        }
        if let Some(found) = self.manifest_from_peers(&pushed.digest).await {
            self.keep_manifest(&found).await?;
            return Ok(Some(found));
        }
        tracing::warn!(registry = %target.registry, repo = %target.repo, %tag, digest = %pushed.digest, "pushed tag names a manifest no member holds");
        Err(FetchError::ManifestUnknown {
            registry: target.registry.clone(),
            repo: target.repo.to_string(),
            reference: tag.to_string(),
        })
    }

    async fn stored_manifest(
        &self,
        digest: &Digest,
        media_type: Option<&str>,
    ) -> Result<Option<ManifestData>, FetchError> {
        let Some((meta, bytes)) = self.store.read_small(digest, MAX_MANIFEST_SIZE).await? else {
            return Ok(None);
        };
        let media_type = meta
            .media_type
            .or_else(|| media_type.map(str::to_owned))
            .or_else(|| sniff_manifest_media_type(&bytes))
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        let manifest = Manifest { digest: *digest, media_type, bytes };
        Ok(Some(ManifestData::new(manifest, Served::Local)))
    }

    async fn upstream_manifest(
        &self,
        target: &Target,
        reference: &Reference,
    ) -> Result<ManifestData, FetchError> {
        let upstream = self.upstreams.get(&target.registry)?;
        let result = upstream.get_manifest(&target.repo, reference).await;
        match self.upstreams.counted(&target.registry, "manifest", result) {
            Ok(m) => Ok(ManifestData::new(m, Served::Upstream)),
            Err(UpstreamError::NotFound { .. }) => Err(FetchError::ManifestUnknown {
                registry: target.registry.clone(),
                repo: target.repo.to_string(),
                reference: reference.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn keep_manifest(&self, m: &ManifestData) -> Result<(), FetchError> {
        self.store
            .put_small(&m.manifest.digest, Some(&m.manifest.media_type), &m.manifest.bytes)
            .await?;
        if let Some(fleet) = &self.fleet {
            fleet.provide(&m.manifest.digest);
        }
        Ok(())
    }

    /// Records that `tag` now names `manifest`, as of now.
    async fn remember_tag(
        &self,
        target: &Target,
        tag: &Tag,
        manifest: &Manifest,
    ) -> Result<(), FetchError> {
        let record = TagRecord {
            digest: manifest.digest,
            media_type: manifest.media_type.clone(),
            fetched_at: self.clock.now(),
        };
        // A durable commit: off the async threads.
        let (store, target, tag) = (self.store.clone(), target.clone(), tag.clone());
        tokio::task::spawn_blocking(move || {
            store.put_tag(&target.registry, &target.repo, &tag, &record)
        })
        .await
        .map_err(|e| FetchError::Store(StoreError::TaskFailed { op: "put tag", source: e }))??;
        Ok(())
    }
}

/// Failures for which a cache serves what it last saw rather than an error.
fn stale_if_error(e: &UpstreamError) -> bool {
    e.is_unavailable() || matches!(e, UpstreamError::TooManyRequests { .. })
}

/// The upstream cannot answer now (down, 5xx, too slow, rate limiting), at the root of `e`.
pub(super) fn is_unavailable(e: &FetchError) -> bool {
    matches!(e.root(), FetchError::Upstream(u) if u.is_unavailable())
}

/// Whether this node knows `digest` of `target` was deleted fleet-wide (a member that was
/// away may still serve its tag until its next placement check).
fn deleted_here(
    store: &crate::store::Store,
    target: &Target,
    digest: &Digest,
) -> Result<bool, FetchError> {
    let row = store.image_pin(&target.registry, &target.repo, digest)?;
    Ok(row
        .is_some_and(|r| matches!(r.state, crate::store::PinState::Released { deleted: true, .. })))
}
