//! The control plane's error type: what failed at start, and what failed when asking a peer.

use libp2p::{Multiaddr, PeerId, TransportError, request_response::OutboundFailure};
use shoal_protocol::peer::{AdvertError, MessageError};

use super::IdentityError;

/// Why the control plane could not start or could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("invalid advertise URL or site: {0}")]
    Advert(#[from] AdvertError),
    #[error("provider republish interval ({republish:?}) must be shorter than the TTL ({ttl:?})")]
    RepublishNotBeforeTtl { republish: std::time::Duration, ttl: std::time::Duration },
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(std::io::Error),
    #[error("cannot set up noise: {0}")]
    Noise(libp2p::noise::Error),
    #[error("cannot start mDNS: {0}")]
    Mdns(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: Multiaddr, source: TransportError<std::io::Error> },
    #[error("listeners did not report their addresses in time")]
    ListenTimeout,
    #[error("a listener closed while starting")]
    ListenerClosed,
    #[error("the control plane has stopped")]
    Stopped,
    #[error("no answer from peer {peer} within the timeout")]
    Timeout { peer: PeerId },
    /// The peer answered no ping for a while: the request was not sent, or not waited for.
    #[error("peer {peer} has answered nothing, not even a ping, for {quiet:.1?}")]
    Silent { peer: PeerId, quiet: std::time::Duration },
    #[error("request to peer {peer} failed: {source}")]
    Request { peer: PeerId, source: OutboundFailure },
    /// Kept apart from transport failures: the peer answered, but with bytes we refuse.
    #[error("peer {peer} sent an invalid answer: {source}")]
    BadResponse { peer: PeerId, source: Box<MessageError> },
}

impl P2pError {
    /// Sorts an outbound failure into "the peer sent bad bytes" or "the request failed".
    pub(super) fn from_outbound(peer: PeerId, failure: OutboundFailure) -> Self {
        if let OutboundFailure::Io(e) = &failure
            && let Some(source) = e.get_ref().and_then(|e| e.downcast_ref::<MessageError>())
        {
            return Self::BadResponse { peer, source: Box::new(source.clone()) };
        }
        if let OutboundFailure::Timeout = failure {
            return Self::Timeout { peer };
        }
        Self::Request { peer, source: failure }
    }
}
