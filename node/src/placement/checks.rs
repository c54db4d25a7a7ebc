//! The asking side: placing an image on its members, telling every member of a release, and
//! the periodic check that repairs copies after members leave, return or join.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use shoal_protocol::peer::{HoldState, ImageHold, ImageRelease};

use super::{Owner, PlaceReport, Placement, hold_of, placement_key};
use crate::store::{ImagePin, PinState};

/// Members asked at once: a warm-up of every member of a large fleet, or a release sent to all,
/// must not open a connection to each at the same moment.
const CONCURRENT_ASKS: usize = 32;

/// How long a release is remembered, so that members that were away learn of it.
const RELEASE_MEMORY: Duration = Duration::from_secs(30 * 24 * 3600);

impl Placement {
    /// Checks every image this node keeps every `interval`, until the placement is dropped.
    pub fn spawn_checks(self: &Arc<Self>, interval: Duration) {
        let weak: Weak<Placement> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(this) = weak.upgrade() else { return };
                this.check_all().await;
            }
        });
    }

    /// One round: every pinned image is made whole here and asked of its members; old
    /// releases are forgotten.
    pub async fn check_all(self: &Arc<Self>) {
        let rows = match self.store.image_pins() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the image pins; placement check skipped");
                return;
            }
        };
        let now = super::now_ms();
        for pin in rows {
            match pin.state {
                PinState::Pinned { .. } => {
                    if !self.is_whole(&pin).await {
                        // Lost content (a disk replaced, a blob quarantined): fetch it again.
                        self.on_hold(hold_of(&pin)).await;
                    }
                    self.place(&pin).await;
                }
                PinState::Released { at_ms, .. } => {
                    if now.saturating_sub(at_ms) > RELEASE_MEMORY.as_millis() as u64 {
                        let _ = self.store.forget_image_pin(&pin.registry, &pin.repo, &pin.digest);
                    }
                }
            }
        }
    }

    /// Asks the members `pin` is placed on to hold it. A member that knows of a later release
    /// makes this node release it too.
    pub(super) async fn place(self: &Arc<Self>, pin: &ImagePin) -> PlaceReport {
        let hold = hold_of(pin);
        let members = self.members_for(&placement_key(&hold), pin.replicas as usize);
        let report = self.ask_members(&hold, members).await;
        if !report.released.is_empty() {
            let release = ImageRelease {
                registry: pin.registry.clone(),
                repo: pin.repo.clone(),
                digest: pin.digest,
                released_at_ms: pin.state.at_ms() + 1,
                delete: report.deleted,
            };
            tracing::info!(digest = %pin.digest, members = ?report.released, deleted = report.deleted, "a member knows this image was unpinned; releasing it here");
            if let Err(e) = self.apply_release(&release).await {
                tracing::warn!(digest = %pin.digest, error = %e, "could not release an image");
            }
        }
        report.into()
    }

    /// Sends `hold` to each member (this node answers itself), all at once.
    pub(super) async fn ask_members(
        self: &Arc<Self>,
        hold: &ImageHold,
        members: Vec<Owner>,
    ) -> Asked {
        let asks = members.into_iter().map(|member| async move {
            match member {
                Owner::Local => ("this node".to_owned(), Ok(self.on_hold(hold.clone()).await)),
                Owner::Remote(peer) => {
                    let fleet = self.fleet.as_ref().expect("remote members come from a fleet");
                    (peer.id.to_string(), fleet.ask_hold(&peer, hold).await)
                }
            }
        });
        let answers: Vec<_> = stream::iter(asks).buffer_unordered(CONCURRENT_ASKS).collect().await;
        let mut report = Asked::default();
        for (who, answer) in answers {
            match answer {
                Ok(HoldState::Whole) => report.whole.push(who),
                Ok(HoldState::Released) => report.released.push(who),
                Ok(HoldState::Deleted) => {
                    report.deleted = true;
                    report.released.push(who);
                }
                Ok(_) => report.fetching.push(who),
                Err(e) => {
                    tracing::debug!(member = %who, digest = %hold.digest, error = %e, "member did not take an image placed on it");
                    report.failed.push(who);
                }
            }
        }
        report.digest = hold.digest.to_string();
        report
    }

    /// Tells every live member of a release; those away learn it from the next member that
    /// asks them to hold the image, or that they ask.
    pub(super) async fn broadcast_release(&self, release: &ImageRelease) {
        let Some(fleet) = &self.fleet else { return };
        let asks = fleet.members().into_iter().map(|peer| {
            let (fleet, release) = (Arc::clone(fleet), release.clone());
            async move {
                let answer = fleet.ask_release(&peer, &release).await;
                (peer, answer)
            }
        });
        let answers: Vec<_> = stream::iter(asks).buffer_unordered(CONCURRENT_ASKS).collect().await;
        for (peer, answer) in answers {
            if let Err(e) = answer {
                tracing::debug!(member = %peer.id, digest = %release.digest, error = %e, "member did not take a release");
            }
        }
    }
}

/// Answers gathered from the members, before releases are folded in.
#[derive(Default)]
pub(super) struct Asked {
    digest: String,
    whole: Vec<String>,
    fetching: Vec<String>,
    released: Vec<String>,
    /// A member answered that the image was deleted, not only unpinned.
    deleted: bool,
    failed: Vec<String>,
}

impl From<Asked> for PlaceReport {
    fn from(a: Asked) -> Self {
        PlaceReport { digest: a.digest, whole: a.whole, fetching: a.fetching, failed: a.failed }
    }
}
