//! `[warm]` in the configuration: images the fleet keeps fetched ahead of rollouts, resolved
//! again every tag TTL so that a moved tag is warmed as soon as the fleet would see it.
//!
//! Every node reads the same list; each image is warmed by the member that owns its tag's key,
//! so the list costs the fleet one warm-up per image per TTL, not one per node.

use std::sync::{Arc, Weak};
use std::time::Duration;

use shoal_protocol::Reference;
use shoal_protocol::peer::blob_key;

use super::{Copies, Placement};
use crate::config::WarmConfig;
use crate::fetch::{Target, tag_key};
use crate::p2p::Owner;

impl Placement {
    /// Warms the list after `first` (time for the fleet to gather), then every `every`.
    pub fn spawn_warm_list(self: &Arc<Self>, list: WarmConfig, first: Duration, every: Duration) {
        if list.images.is_empty() {
            return;
        }
        let weak: Weak<Placement> = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(first).await;
            loop {
                let Some(this) = weak.upgrade() else { return };
                this.warm_list(&list).await;
                drop(this);
                tokio::time::sleep(every).await;
            }
        });
    }

    async fn warm_list(self: &Arc<Self>, list: &WarmConfig) {
        let copies = list.replicas.map_or(Copies::AllMembers, Copies::Replicas);
        for image in &list.images {
            let target = Target { registry: image.registry.clone(), repo: image.repo.clone() };
            let key = match &image.reference {
                Reference::Tag(tag) => tag_key(&target, tag).to_vec(),
                Reference::Digest(d) => blob_key(d),
            };
            let owner = self.fleet.as_ref().map_or(Owner::Local, |f| f.owner(&key));
            if owner != Owner::Local {
                continue;
            }
            let warmed = self
                .warm(&target, &image.reference, list.platform.clone(), copies, list.with_referrers)
                .await;
            match warmed {
                Ok(report) => {
                    tracing::info!(%image, digest = %report.digest, whole = report.whole.len(), fetching = report.fetching.len(), failed = report.failed.len(), "image on the warm list warmed")
                }
                Err(e) => {
                    tracing::warn!(%image, error = %e, "could not warm an image on the warm list; retried at the next tag TTL")
                }
            }
        }
    }
}
