//! The member side: a peer asks this node to hold an image it is placed on, or tells it that
//! an image was released.

use std::sync::Arc;
use std::time::Duration;

use shoal_protocol::peer::{HoldState, ImageHold, ImageRelease};

use super::{ImageKey, Placement, PlacementError};
use crate::fetch::Target;
use crate::store::{ImagePin, PinState};

/// How long a hold request waits for the content before answering "fetching": long enough
/// for an image this node already holds, short of the asker's owner-request timeout.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

impl Placement {
    /// Records the pin (unless a later release is known) and brings the image in, in the
    /// background; answers with where this node stands.
    pub async fn on_hold(self: &Arc<Self>, hold: ImageHold) -> HoldState {
        let pin = ImagePin {
            registry: hold.registry.clone(),
            repo: hold.repo.clone(),
            digest: hold.digest,
            tag: hold.tag.clone(),
            platform: hold.platform.clone(),
            replicas: hold.replicas,
            with_referrers: hold.with_referrers,
            state: match hold.pinned_at_ms {
                Some(at_ms) => PinState::Pinned { at_ms },
                // A warm-up: held in the cache, never recorded.
                None => PinState::Released { at_ms: 0, deleted: false },
            },
        };
        // Asked again for what it already keeps whole (every check does): nothing to write.
        let known = self.store.image_pin(&pin.registry, &pin.repo, &pin.digest).ok().flatten();
        match known {
            Some(k) if k.state.at_ms() > pin.state.at_ms() && hold.pinned_at_ms.is_some() => {
                if let PinState::Released { deleted, .. } = k.state {
                    return if deleted { HoldState::Deleted } else { HoldState::Released };
                }
            }
            // (With referrers, a cheap local check cannot tell: new ones may have appeared.)
            Some(k) if k == pin && !pin.with_referrers && self.is_whole(&pin).await => {
                return HoldState::Whole;
            }
            _ => {}
        }
        let key: ImageKey = (pin.registry.clone(), pin.repo.clone(), pin.digest);
        if !self.active.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone()) {
            return HoldState::Fetching;
        }
        let this = Arc::clone(self);
        let work = tokio::spawn(async move {
            let result = match pin.state {
                PinState::Pinned { .. } => this.keep(&pin).await,
                PinState::Released { .. } => this.bring_in(&pin).await.map(drop),
            };
            this.active.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            if let Err(e) = &result
                && !matches!(e, PlacementError::Released { .. })
            {
                tracing::warn!(registry = %pin.registry, repo = %pin.repo, digest = %pin.digest, error = %e, "could not hold an image placed on this node; the next check retries");
            }
            result
        });
        match tokio::time::timeout(ANSWER_WAIT, work).await {
            Ok(Ok(Ok(()))) => HoldState::Whole,
            Ok(Ok(Err(PlacementError::Released { deleted: false, .. }))) => HoldState::Released,
            Ok(Ok(Err(PlacementError::Released { deleted: true, .. }))) => HoldState::Deleted,
            // Failed (retried by the next check) or still working.
            _ => HoldState::Fetching,
        }
    }

    /// Applies a release this node was told of; answers `Released` unless a later pin is
    /// known here.
    pub async fn on_release(&self, release: ImageRelease) -> HoldState {
        match self.apply_release(&release).await {
            Ok(true) => HoldState::Released,
            Ok(false) => HoldState::Whole,
            Err(e) => {
                tracing::warn!(digest = %release.digest, error = %e, "could not apply an image release");
                HoldState::Fetching
            }
        }
    }

    /// Records the release unless a later pin is known, unpins the image's content (and with
    /// `delete`, removes its pushed tag); returns whether the release won.
    pub(super) async fn apply_release(
        &self,
        release: &ImageRelease,
    ) -> Result<bool, PlacementError> {
        let (store, release) = (self.store.clone(), release.clone());
        let target = Target { registry: release.registry.clone(), repo: release.repo.clone() };
        let withdrawn = crate::store::blocking("release image", move || {
            let old = store.image_pin(&release.registry, &release.repo, &release.digest)?;
            let row = ImagePin {
                registry: release.registry.clone(),
                repo: release.repo.clone(),
                digest: release.digest,
                tag: old.as_ref().and_then(|o| o.tag.clone()),
                platform: old.as_ref().and_then(|o| o.platform.clone()),
                replicas: old.as_ref().map_or(1, |o| o.replicas),
                with_referrers: old.as_ref().is_some_and(|o| o.with_referrers),
                state: PinState::Released {
                    at_ms: release.released_at_ms,
                    deleted: release.delete,
                },
            };
            if !store.put_image_pin(&row)? {
                return Ok(None);
            }
            let reason = row.reason();
            let digests = store.pinned_for(&reason)?;
            store.unpin(&digests, &reason)?;
            let mut withdrawn = Vec::new();
            let mut unkept = false;
            if release.delete {
                // A copy of the manifest this node holds only as a cache goes too: a member
                // asked for the deleted digest must not serve it back.
                unkept = store.pin_reasons(&row.digest)?.is_empty();
                // The pushed tags that name the image, and the answers about them this node
                // cached from the members it was pushed to.
                for tag in store.any_tags_naming(&row.registry, &row.repo, &row.digest)? {
                    store.delete_tag(&row.registry, &row.repo, &tag)?;
                    withdrawn.push(tag);
                }
            }
            Ok(Some((withdrawn, unkept)))
        })
        .await?;
        let Some((withdrawn, unkept)) = withdrawn else { return Ok(false) };
        if unkept && self.store.delete_blob(&release.digest).await? {
            self.fetcher.withdraw(&release.digest);
            tracing::info!(registry = %target.registry, repo = %target.repo, digest = %release.digest, "copy of a deleted manifest removed");
        }
        if !withdrawn.is_empty() {
            tracing::info!(registry = %target.registry, repo = %target.repo, digest = %release.digest, tags = ?withdrawn, "tags of a deleted image removed");
        }
        for tag in withdrawn {
            self.fetcher
                .withdraw(&shoal_protocol::Digest::from_raw(crate::fetch::tag_key(&target, &tag)));
        }
        Ok(true)
    }
}
