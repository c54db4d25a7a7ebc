//! What can go wrong on the miss path, by where it went wrong: the request, the upstream, the
//! store, or a fetch this request joined.

use std::sync::Arc;

use shoal_protocol::{Digest, DigestMismatch, Sha512Digest};

use super::fleet::FleetError;
use crate::store::StoreError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("registry {0:?} is not a configured upstream")]
    UnknownRegistry(String),
    #[error("registry {0:?} is not at a public address; a registry a client names must be")]
    PrivateRegistry(String),
    #[error("manifest {reference} is unknown to {registry}/{repo}")]
    ManifestUnknown { registry: String, repo: String, reference: String },
    #[error("blob {0} is unknown")]
    BlobUnknown(Digest),
    /// No content this node or a member checked hashes to this sha512.
    #[error("blob {0} is unknown")]
    AliasUnknown(Sha512Digest),
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("upstream sent more bytes than it announced for {digest} ({size} bytes)")]
    Oversized { digest: Digest, size: u64 },
    #[error("upstream ended {digest} after {got} of {expected} bytes")]
    Truncated { digest: Digest, expected: u64, got: u64 },
    #[error("{0}")]
    Mismatch(DigestMismatch),
    /// A peer's bytes failed verification; the peer is no longer asked and the blob is fetched again.
    #[error("a peer sent corrupt bytes ({0}); fetching again from another source")]
    PeerCorrupt(DigestMismatch),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(StoreError),
    /// The fetch this request was following failed; every follower sees the same cause.
    #[error("fetch of {digest} failed: {cause}")]
    Joined { digest: Digest, cause: Arc<FetchError> },
    #[error(transparent)]
    Peer(#[from] FleetError),
    #[error("owner {owner} cannot serve {digest} and upstream fallback is off")]
    FallbackForbidden { digest: Digest, owner: crate::p2p::PeerId },
    #[error("the download of {digest} failed unexpectedly (a bug); ask again")]
    Panicked { digest: Digest },
    #[error("reading {digest} from the store failed: {source}")]
    Read { digest: Digest, source: std::io::Error },
}

impl From<StoreError> for FetchError {
    fn from(e: StoreError) -> Self {
        // A digest mismatch surfaces at commit time, but it is the source's fault, not the disk's.
        match e {
            StoreError::DigestMismatch(m) => FetchError::Mismatch(m),
            other => FetchError::Store(other),
        }
    }
}

impl FetchError {
    /// The error behind a joined fetch, for mapping to a status code.
    pub fn root(&self) -> &FetchError {
        match self {
            FetchError::Joined { cause, .. } => cause.root(),
            other => other,
        }
    }

    /// Whether the content does not exist where it was asked for (as opposed to a failure
    /// that a retry could get past).
    pub fn is_unknown(&self) -> bool {
        matches!(
            self.root(),
            FetchError::UnknownRegistry(_)
                | FetchError::ManifestUnknown { .. }
                | FetchError::BlobUnknown(_)
                | FetchError::AliasUnknown(_)
                | FetchError::Upstream(UpstreamError::NotFound { .. })
        )
    }
}
