//! What the miss path needs from the rest of the fleet, as a seam: who provides a digest, who
//! owns a key, and the two questions one can ask an owner.
//!
//! The libp2p control plane implements it (`p2p/`); a node without peers has no fleet and the
//! miss path goes straight to the upstream.

use futures_util::future::BoxFuture;
use shoal_protocol::peer::{HoldState, ImageHold, ImageRelease};
use shoal_protocol::{Digest, Tag};

use super::{ManifestData, Target};
use crate::p2p::{Owner, PeerId, PeerInfo};

/// Why a question to a peer got no useful answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("peer {peer} is unreachable: {detail}")]
    Unreachable { peer: PeerId, detail: String },
    #[error("peer {peer} did not answer in time")]
    Timeout { peer: PeerId },
    #[error("peer {peer} reports the content unknown upstream")]
    NotFound { peer: PeerId },
    #[error("peer {peer} cannot reach the upstream")]
    UpstreamUnavailable { peer: PeerId },
    #[error("peer {peer} refused the request")]
    Refused { peer: PeerId },
    #[error("peer {peer} failed: {detail}")]
    Internal { peer: PeerId, detail: String },
    /// No source, of several, could finish a transfer.
    #[error("the swarm is stuck on {0}")]
    Stuck(String),
}

pub trait Fleet: Send + Sync + 'static {
    /// Peers that hold the digest or are fetching it now; never this node. Bounded by the
    /// fleet's own short time budget.
    fn providers<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Vec<PeerInfo>>;

    /// The owner of a key (see `shoal_protocol::peer` for the keys of blobs and tags).
    fn owner(&self, key: &[u8]) -> Owner;

    /// The owner of a key among the members of this node's site (this node included); the
    /// fleet's owner when this node has no site.
    fn site_owner(&self, key: &[u8]) -> Owner;

    /// Asks `owner` to fetch a blob, from the upstream, or with `into_site` into this node's
    /// site; on success, the URL to read it from while it arrives.
    fn ask_fetch<'a>(
        &'a self,
        owner: &'a PeerInfo,
        target: &'a Target,
        digest: &'a Digest,
        into_site: bool,
    ) -> BoxFuture<'a, Result<String, FleetError>>;

    /// Asks `owner` to resolve a tag; the answer carries the manifest.
    fn ask_tag<'a>(
        &'a self,
        owner: &'a PeerInfo,
        target: &'a Target,
        tag: &'a Tag,
    ) -> BoxFuture<'a, Result<ManifestData, FleetError>>;

    /// Announce that this node can serve the digest (held or being fetched).
    fn provide(&self, digest: &Digest);

    /// Withdraw the announcement (fetch failed, or blob evicted).
    fn unprovide(&self, digest: &Digest);

    /// This node's locality label.
    fn site(&self) -> Option<String>;

    /// The `n` members closest to `key` (this node included), closest first: where an image
    /// placed by that key is kept.
    fn placement(&self, key: &[u8], n: usize) -> Vec<Owner> {
        let _ = (key, n);
        vec![Owner::Local]
    }

    /// Every live member but this node.
    fn members(&self) -> Vec<PeerInfo> {
        Vec::new()
    }

    /// Asks `peer` to hold an image it is placed on.
    fn ask_hold<'a>(
        &'a self,
        peer: &'a PeerInfo,
        hold: &'a ImageHold,
    ) -> BoxFuture<'a, Result<HoldState, FleetError>> {
        let _ = hold;
        Box::pin(async move { Err(FleetError::Refused { peer: peer.id }) })
    }

    /// Tells `peer` that an image was released.
    fn ask_release<'a>(
        &'a self,
        peer: &'a PeerInfo,
        release: &'a ImageRelease,
    ) -> BoxFuture<'a, Result<HoldState, FleetError>> {
        let _ = release;
        Box::pin(async move { Err(FleetError::Refused { peer: peer.id }) })
    }
}

/// The owner key of a tag: the same on every node for the same `(registry, repository, tag)`.
pub fn tag_key(target: &Target, tag: &Tag) -> [u8; 32] {
    shoal_protocol::peer::tag_key(&target.registry, &target.repo, tag)
}
