//! An image's content on this node: the manifest, the children of an index (those of the
//! pin's platform), and every blob they name, brought in the way a pull would (a peer, else
//! the upstream) and pinned under the image.

use std::time::{Duration, UNIX_EPOCH};

use shoal_protocol::manifest::{ManifestRefs, is_image_manifest};
use shoal_protocol::media_type::MAX_MANIFEST_SIZE;
use shoal_protocol::{Digest, Reference};

use super::{Placement, PlacementError};
use crate::fetch::{FetchError, Target};
use crate::store::{ImagePin, PinState, TagRecord};

impl Placement {
    /// Records `pin` and makes its image whole and pinned here; for a pushed tag, serves the
    /// tag too unless a later push of it is known. A release newer than the pin wins: then
    /// nothing is kept and `Released` is the error.
    pub(super) async fn keep(&self, pin: &ImagePin) -> Result<(), PlacementError> {
        let (store, row) = (self.store.clone(), pin.clone());
        let refused = crate::store::blocking("record image pin", move || {
            if store.put_image_pin(&row)? {
                return Ok(None);
            }
            let known = store.image_pin(&row.registry, &row.repo, &row.digest)?;
            Ok(Some(match known.map(|k| k.state) {
                Some(PinState::Released { deleted, .. }) => Some(deleted),
                // A later pin of the same image: its own checks keep it.
                _ => None,
            }))
        })
        .await?;
        match refused {
            None => {}
            Some(None) => return Ok(()),
            Some(Some(deleted)) => {
                return Err(PlacementError::Released { digest: pin.digest, deleted });
            }
        }
        let (digests, media_type) = self.bring_in(pin).await?;
        let (store, row) = (self.store.clone(), pin.clone());
        crate::store::blocking("pin image content", move || {
            // Released while its content came in (a release is applied at once, a hold may
            // take minutes): the release stands.
            let current = store.image_pin(&row.registry, &row.repo, &row.digest)?;
            if current.is_none_or(|c| c.state != row.state) {
                return Ok(());
            }
            store.pin(&digests, &row.reason())?;
            // Kept as part of that repository: served and mounted under its name.
            store.record_seen(&digests, &row.registry, &row.repo)?;
            if let (Some(tag), PinState::Pinned { at_ms }) = (&row.tag, row.state) {
                // A push's tag record carries the push's time: the later push wins everywhere.
                let pushed_at = UNIX_EPOCH + Duration::from_millis(at_ms);
                let later = store
                    .get_pushed_tag(&row.registry, &row.repo, tag)?
                    .is_some_and(|t| t.fetched_at > pushed_at);
                if !later {
                    let record =
                        TagRecord { digest: row.digest, media_type, fetched_at: pushed_at };
                    store.put_pushed_tag(&row.registry, &row.repo, tag, &record)?;
                }
            }
            Ok(())
        })
        .await?;
        if let Some(tag) = &pin.tag {
            let target = Target { registry: pin.registry.clone(), repo: pin.repo.clone() };
            self.fetcher.announce(&Digest::from_raw(crate::fetch::tag_key(&target, tag)));
        }
        Ok(())
    }

    /// Brings in every manifest and blob of the image that this node lacks; returns them all,
    /// and the media type of the image's manifest.
    pub(super) async fn bring_in(
        &self,
        pin: &ImagePin,
    ) -> Result<(Vec<Digest>, String), PlacementError> {
        let target = Target { registry: pin.registry.clone(), repo: pin.repo.clone() };
        let mut digests = vec![pin.digest];
        let root = self.manifest(&target, &pin.digest).await?;
        let (media_type, root) = root;
        let images = if is_image_manifest(&media_type) {
            vec![root]
        } else {
            let children = root.children(pin.platform.as_deref());
            if children.is_empty() {
                return Err(PlacementError::NoPlatform {
                    digest: pin.digest,
                    platform: pin.platform.clone().unwrap_or_default(),
                });
            }
            let mut images = Vec::with_capacity(children.len());
            for child in children {
                let (child_type, refs) = self.manifest(&target, &child).await?;
                digests.push(child);
                // An index of indexes is not an image anyone runs; only image manifests count.
                if is_image_manifest(&child_type) {
                    images.push(refs);
                }
            }
            images
        };
        let mut images = images;
        if pin.with_referrers {
            let manifests = digests.clone();
            for subject in manifests {
                for referrer in self.referrers_of(&target, &subject).await {
                    let (_, refs) = self.manifest(&target, &referrer).await?;
                    digests.push(referrer);
                    images.push(refs);
                }
            }
        }
        for image in images {
            let (blobs, _) = image.required(shoal_protocol::media_type::OCI_MANIFEST);
            for blob in blobs {
                if !self.fetcher.hold_blob(&target, &blob).await? {
                    return Err(PlacementError::Missing(blob));
                }
                digests.push(blob);
            }
        }
        Ok((digests, media_type))
    }

    /// The referrers of `subject`: those pushed here, and those its upstream lists. One level:
    /// signatures of signatures are not followed.
    async fn referrers_of(&self, target: &Target, subject: &Digest) -> Vec<Digest> {
        let mut found: Vec<Digest> = self
            .store
            .referrers(&target.registry, &target.repo, subject)
            .map(|r| r.into_iter().map(|r| r.digest).collect())
            .unwrap_or_default();
        match self.fetcher.upstream_referrers(target, subject, None).await {
            Ok(upstream) => found.extend(upstream.into_iter().map(|r| r.digest)),
            Err(FetchError::UnknownRegistry(_)) => {}
            Err(e) => {
                tracing::warn!(%subject, error = %e, "cannot list the upstream's referrers; keeping the image without them");
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// Whether every manifest and blob of the image is held here, without fetching anything.
    pub(super) async fn is_whole(&self, pin: &ImagePin) -> bool {
        let local = |d: &Digest| self.store.contains(d);
        let Some((media_type, refs)) = self.local_manifest(&pin.digest).await else {
            return false;
        };
        let images = if is_image_manifest(&media_type) {
            vec![refs]
        } else {
            let mut images = Vec::new();
            for child in refs.children(pin.platform.as_deref()) {
                match self.local_manifest(&child).await {
                    Some((_, refs)) => images.push(refs),
                    None => return false,
                }
            }
            images
        };
        images.iter().all(|i| {
            let (blobs, _) = i.required(shoal_protocol::media_type::OCI_MANIFEST);
            blobs.iter().all(local)
        })
    }

    /// A manifest through the fleet: its media type and what it names.
    async fn manifest(
        &self,
        target: &Target,
        digest: &Digest,
    ) -> Result<(String, ManifestRefs), PlacementError> {
        let m = match self.fetcher.manifest(target, &Reference::Digest(*digest)).await {
            Ok(m) => m,
            Err(e) if e.is_unknown() => return Err(PlacementError::Missing(*digest)),
            Err(e) => return Err(PlacementError::Fetch(e)),
        };
        let mut refs =
            ManifestRefs::parse(&m.manifest.bytes).ok_or(PlacementError::NotAManifest(*digest))?;
        self.fetcher.resolve_refs(target, &mut refs).await?;
        if let Some(unknown) = refs.aliases().first() {
            return Err(PlacementError::MissingAlias(*unknown));
        }
        Ok((m.manifest.media_type, refs))
    }

    async fn local_manifest(&self, digest: &Digest) -> Option<(String, ManifestRefs)> {
        let (meta, bytes) = self.store.read_small(digest, MAX_MANIFEST_SIZE).await.ok()??;
        let mut refs = ManifestRefs::parse(&bytes)?;
        if !refs.aliases().is_empty() {
            let store = self.store.clone();
            refs = crate::store::blocking("read aliases", move || {
                store.resolve_known_aliases(&mut refs);
                Ok(refs)
            })
            .await
            .ok()?;
            // Content named by an alias this node does not know is not held here either.
            if !refs.aliases().is_empty() {
                return None;
            }
        }
        let media_type = meta.media_type.or_else(|| refs.media_type.clone()).unwrap_or_default();
        Some((media_type, refs))
    }
}

impl From<FetchError> for PlacementError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Store(s) => PlacementError::Store(s),
            other => PlacementError::Fetch(other),
        }
    }
}
