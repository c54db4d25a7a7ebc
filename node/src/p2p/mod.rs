//! The control plane: a libp2p swarm that finds the other nodes, keeps the DHT of who holds
//! which blob, names the owner of a key, and carries owner requests.
//!
//! One task owns the [`libp2p::Swarm`]; everything else talks to it through the cloneable
//! [`P2p`] handle over a command channel, so no lock ever surrounds the swarm. The handle
//! reads the table of live peers from a `watch` snapshot the task publishes, which lets
//! [`P2p::owner`] answer without a round trip. Bytes never travel here: the data plane is HTTP.

mod behaviour;
mod codec;
mod config;
mod error;
mod events;
mod handle;
mod identity;
mod key;
mod key_check;
mod liveness;
mod peers;
mod provider_store;
mod task;

#[cfg(test)]
mod tests;

pub(crate) use codec::OwnerCodec;
pub(crate) use config::P2pConfig;
pub(crate) use error::P2pError;
pub(crate) use handle::P2p;
pub(crate) use identity::IdentityError;
pub use key::ClusterKey;
pub(crate) use key::KeyError;
pub(crate) use libp2p::Multiaddr;
pub use libp2p::PeerId;
pub use peers::{Owner, PeerInfo};
pub use shoal_protocol::peer::{ErrorCode, HoldState, OwnerRequest, OwnerResponse};
pub(crate) use shoal_protocol::peer::{ImageHold, ImageRelease};

use futures_util::future::BoxFuture;
use shoal_protocol::{Digest, Manifest, RepositoryName, Tag};

/// What this node does when a peer asks it, as the owner of a key, to do something.
///
/// The swarm task never awaits these futures itself: each request runs in its own task, so a
/// slow upstream cannot stall the control plane.
pub trait OwnerService: Send + Sync + 'static {
    /// Start (or join) the single-flight download of a blob and return as soon as it has
    /// started; the asker then reads it from this node's data-plane URL while it arrives.
    /// With `into_site`, this node is its site's owner of the digest and takes it from the
    /// fleet (not necessarily the upstream).
    fn fetch_blob(
        &self,
        registry: String,
        repo: RepositoryName,
        digest: Digest,
        into_site: bool,
    ) -> BoxFuture<'static, Result<(), ErrorCode>>;

    /// Resolve a tag (at most one upstream `HEAD` per TTL) and return its manifest.
    fn resolve_tag(
        &self,
        registry: String,
        repo: RepositoryName,
        tag: Tag,
    ) -> BoxFuture<'static, Result<Manifest, ErrorCode>>;

    /// Keep an image this node is a placement of: record it and start bringing in what it
    /// lacks; answers at once with where it stands.
    fn hold(&self, hold: ImageHold) -> BoxFuture<'static, Result<HoldState, ErrorCode>>;

    /// Apply an image's release (unpin, or delete) unless a later pin is known.
    fn release(&self, release: ImageRelease) -> BoxFuture<'static, Result<HoldState, ErrorCode>>;
}
