//! Why an image could not be pinned, placed or released.

use shoal_protocol::Digest;

use crate::fetch::FetchError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("{0} is not known to any member or to the upstream")]
    Missing(Digest),
    #[error("{0} (a sha512 an image names) is not known to any member")]
    MissingAlias(shoal_protocol::Sha512Digest),
    #[error("{0} is not an image manifest or index")]
    NotAManifest(Digest),
    #[error("the index {digest} has no image for platform {platform:?}")]
    NoPlatform { digest: Digest, platform: String },
    #[error("{0} is not pinned here")]
    NotPinned(String),
    #[error("the image {digest} was unpinned after this pin was made; pin it again to keep it")]
    Released { digest: Digest, deleted: bool },
    #[error(transparent)]
    Fetch(FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
