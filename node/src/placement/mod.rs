//! Placement: which members keep a pinned image, and keeping it so.
//!
//! A pinned image (pushed, imported, or `shoal pin`) must survive the loss of any member, so
//! it lives on `replicas` members: the ones closest to the image's key by the owner rule (its
//! pushed tag's key when it has one, so that every push of a tag lands on the same members and
//! the latest one wins there; else its manifest's digest). No member is in charge: every member
//! that keeps an image asks the others it is placed on to hold it too, at once when the pin is
//! made and again every `placement_interval` — a member that was away, or joined since, learns
//! what it should hold from whichever member asks first. Holding is idempotent: a member that
//! holds the whole image answers at once.
//!
//! Unpinning and deleting are releases, recorded like pins (with a time) and sent to every
//! member. The later of a pin and a release wins on every member, so an old pin that a returning
//! member still carries is answered with "released" instead of being spread again.
//!
//! Warming (`shoal warm`) is a hold without a pin: the copies are ordinary cache entries.

mod answer;
mod checks;
pub mod cli;
mod content;
mod error;
mod warm_list;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use shoal_protocol::peer::{ImageHold, blob_key};
use shoal_protocol::{Digest, Reference, RepositoryName, Tag};

pub(crate) use error::PlacementError;

use crate::fetch::{Fetcher, Fleet, Target, tag_key};
use crate::p2p::Owner;
use crate::store::{ImagePin, PinState, Store};

/// An image this node keeps, as `shoal pins` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PinView {
    pub image: String,
    pub digest: String,
    pub tag: Option<String>,
    pub platform: Option<String>,
    pub replicas: u32,
    /// Whether every blob and manifest of the image is held on this node.
    pub whole_here: bool,
    pub pinned_at_ms: u64,
}

/// What a pin or warm-up did: the members that hold the image now, and those still fetching.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlaceReport {
    pub digest: String,
    pub whole: Vec<String>,
    pub fetching: Vec<String>,
    pub failed: Vec<String>,
}

/// How many members a warm-up puts the image on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copies {
    Replicas(u32),
    AllMembers,
}

type ImageKey = (String, RepositoryName, Digest);

pub struct Placement {
    store: Store,
    fetcher: Arc<Fetcher>,
    fleet: Option<Arc<dyn Fleet>>,
    /// Replicas of a pin that names none.
    replicas: u32,
    /// Images whose content is being brought in now, so that repeated holds start it once.
    active: Mutex<HashSet<ImageKey>>,
}

impl Placement {
    pub fn new(
        store: Store,
        fetcher: Arc<Fetcher>,
        fleet: Option<Arc<dyn Fleet>>,
        replicas: u32,
    ) -> Arc<Self> {
        Arc::new(Placement { store, fetcher, fleet, replicas, active: Mutex::default() })
    }

    pub fn default_replicas(&self) -> u32 {
        self.replicas
    }

    /// Pins an image: whole on this node first (from the fleet or the upstream), then placed
    /// on its members. A tag is resolved to the manifest it points at now; the pin keeps that
    /// manifest, not the tag (a pull-through tag still moves with its upstream).
    pub async fn pin(
        self: &Arc<Self>,
        target: &Target,
        reference: &Reference,
        platform: Option<String>,
        replicas: Option<u32>,
        with_referrers: bool,
    ) -> Result<PlaceReport, PlacementError> {
        let digest = self.resolve(target, reference).await?;
        let pin = ImagePin {
            registry: target.registry.clone(),
            repo: target.repo.clone(),
            digest,
            tag: None,
            platform,
            replicas: replicas.unwrap_or(self.replicas),
            with_referrers,
            state: PinState::Pinned { at_ms: now_ms() },
        };
        self.keep(&pin).await?;
        tracing::info!(image = %image_name(&pin), replicas = pin.replicas, "image pinned");
        Ok(self.place(&pin).await)
    }

    /// Records a pushed image (a tag push, or a manifest with a subject) and places its copies
    /// in the background. Its content is whole here: the push checked that.
    pub async fn pushed(
        self: &Arc<Self>,
        target: &Target,
        digest: Digest,
        tag: Option<Tag>,
        at_ms: u64,
    ) -> Result<(), PlacementError> {
        let pin = ImagePin {
            registry: target.registry.clone(),
            repo: target.repo.clone(),
            digest,
            tag,
            platform: None,
            replicas: self.replicas,
            // Referrers pushed later are pinned by their own push.
            with_referrers: false,
            state: PinState::Pinned { at_ms },
        };
        self.keep(&pin).await?;
        let this = Arc::clone(self);
        tokio::spawn(async move { this.place(&pin).await });
        Ok(())
    }

    /// Unpins an image on every member (with `delete`, its pushed tag goes too), whether or not
    /// this node is one of them; `false` when there was nothing to release (already released
    /// here, or a tag nobody pinned or pushed).
    pub async fn unpin(
        &self,
        target: &Target,
        reference: &Reference,
        delete: bool,
    ) -> Result<bool, PlacementError> {
        let digests = match reference {
            Reference::Digest(d) => vec![*d],
            Reference::Tag(tag) => self.pinned_under(target, tag).await?,
        };
        let mut any = false;
        for digest in digests {
            let known = self.store.image_pin(&target.registry, &target.repo, &digest)?;
            // Kept elsewhere only (this node is not one of its members): released all the
            // same, the members act on it.
            let pinned_at = match known.as_ref().map(|k| k.state) {
                Some(PinState::Released { .. }) => continue,
                Some(PinState::Pinned { at_ms }) => at_ms,
                None => 0,
            };
            let release = shoal_protocol::peer::ImageRelease {
                registry: target.registry.clone(),
                repo: target.repo.clone(),
                digest,
                released_at_ms: now_ms().max(pinned_at + 1),
                delete,
            };
            self.apply_release(&release).await?;
            self.broadcast_release(&release).await;
            tracing::info!(registry = %target.registry, repo = %target.repo, %digest, delete, "image released on every member");
            any = true;
        }
        Ok(any)
    }

    /// The digests pinned under `tag`: this node's pins that carry it (pushed tags), else what
    /// the tag points at — as a member it was pushed to answers, else as it resolves (a pin of
    /// a pull-through tag keeps the manifest, not the tag).
    async fn pinned_under(
        &self,
        target: &Target,
        tag: &Tag,
    ) -> Result<Vec<Digest>, PlacementError> {
        let here: Vec<Digest> = self
            .store
            .image_pins()?
            .into_iter()
            .filter(|p| {
                p.registry == target.registry
                    && p.repo == target.repo
                    && p.tag.as_ref() == Some(tag)
                    && matches!(p.state, PinState::Pinned { .. })
            })
            .map(|p| p.digest)
            .collect();
        if !here.is_empty() {
            return Ok(here);
        }
        if let Some(pushed) = self.fetcher.pushed_tag_in_fleet(target, tag).await? {
            return Ok(vec![pushed.manifest.digest]);
        }
        Ok(vec![self.resolve(target, &Reference::Tag(tag.clone())).await?])
    }

    /// The images pinned here, newest first.
    pub async fn list(&self) -> Result<Vec<PinView>, PlacementError> {
        let mut views = Vec::new();
        for pin in self.store.image_pins()? {
            let PinState::Pinned { at_ms } = pin.state else { continue };
            let whole_here = self.is_whole(&pin).await;
            views.push(PinView {
                image: image_name(&pin),
                digest: pin.digest.to_string(),
                tag: pin.tag.as_ref().map(|t| t.as_str().to_owned()),
                platform: pin.platform.clone(),
                replicas: pin.replicas,
                whole_here,
                pinned_at_ms: at_ms,
            });
        }
        views.sort_by_key(|v| std::cmp::Reverse(v.pinned_at_ms));
        Ok(views)
    }

    /// Fetches an image on `copies` members ahead of a rollout (one upstream fetch per blob,
    /// as ever), without pinning it.
    pub async fn warm(
        self: &Arc<Self>,
        target: &Target,
        reference: &Reference,
        platform: Option<String>,
        copies: Copies,
        with_referrers: bool,
    ) -> Result<PlaceReport, PlacementError> {
        let digest = self.resolve(target, reference).await?;
        let replicas = match copies {
            Copies::Replicas(n) => n,
            Copies::AllMembers => shoal_protocol::peer::MAX_REPLICAS,
        };
        let hold = ImageHold {
            registry: target.registry.clone(),
            repo: target.repo.clone(),
            digest,
            tag: None,
            platform,
            replicas,
            pinned_at_ms: None,
            with_referrers,
        };
        let members = match copies {
            Copies::Replicas(n) => self.members_for(&placement_key(&hold), n as usize),
            Copies::AllMembers => self.all_members(),
        };
        Ok(self.ask_members(&hold, members).await.into())
    }

    /// The manifest digest a reference names, resolving a tag through the fleet.
    async fn resolve(
        &self,
        target: &Target,
        reference: &Reference,
    ) -> Result<Digest, PlacementError> {
        match reference {
            Reference::Digest(d) => Ok(*d),
            Reference::Tag(_) => {
                Ok(self.fetcher.manifest(target, reference).await?.manifest.digest)
            }
        }
    }

    /// The members an image is placed on, this node included when it is one of them.
    fn members_for(&self, key: &[u8], n: usize) -> Vec<Owner> {
        match &self.fleet {
            Some(fleet) => fleet.placement(key, n.max(1)),
            None => vec![Owner::Local],
        }
    }

    fn all_members(&self) -> Vec<Owner> {
        let peers = self.fleet.as_ref().map(|f| f.members()).unwrap_or_default();
        std::iter::once(Owner::Local).chain(peers.into_iter().map(Owner::Remote)).collect()
    }
}

/// The key an image is placed by: its pushed tag's, else its manifest digest's.
fn placement_key(hold: &ImageHold) -> Vec<u8> {
    let target = Target { registry: hold.registry.clone(), repo: hold.repo.clone() };
    match &hold.tag {
        Some(tag) => tag_key(&target, tag).to_vec(),
        None => blob_key(&hold.digest),
    }
}

fn image_name(pin: &ImagePin) -> String {
    match &pin.tag {
        Some(tag) => format!("{}/{}:{tag}@{}", pin.registry, pin.repo, pin.digest),
        None => format!("{}/{}@{}", pin.registry, pin.repo, pin.digest),
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The hold request that asks a member to keep `pin`.
fn hold_of(pin: &ImagePin) -> ImageHold {
    ImageHold {
        registry: pin.registry.clone(),
        repo: pin.repo.clone(),
        digest: pin.digest,
        tag: pin.tag.clone(),
        platform: pin.platform.clone(),
        replicas: pin.replicas,
        pinned_at_ms: match pin.state {
            PinState::Pinned { at_ms } => Some(at_ms),
            PinState::Released { .. } => None,
        },
        with_referrers: pin.with_referrers,
    }
}
