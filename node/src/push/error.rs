//! Everything a push, a delete or a referrers query can fail with, before the HTTP layer maps
//! it to a status and an OCI error code.

use shoal_protocol::manifest::ManifestError;
use shoal_protocol::{AnyDigest, Digest};

use crate::fetch::FetchError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// No upload session by that id: never started, finished, cancelled or abandoned.
    #[error("upload {0:?} is unknown: it finished, was cancelled or expired; start a new upload")]
    UploadUnknown(String),
    /// A chunk that does not continue the upload where it stands.
    #[error("chunk starts at byte {got} but the upload has {have} bytes; send from byte {have}")]
    OutOfOrder { have: u64, got: u64 },
    /// A `Content-Range` or `Content-Length` that disagrees with the bytes sent.
    #[error("{0}")]
    SizeInvalid(String),
    /// The bytes do not hash to the digest the client named, or the digest is missing.
    #[error("{0}")]
    DigestInvalid(String),
    #[error("invalid manifest: {0}")]
    ManifestInvalid(#[from] ManifestError),
    #[error("the manifest is {size} bytes, more than the {max} accepted")]
    ManifestTooLarge { size: u64, max: u64 },
    /// A pushed manifest names content this registry does not hold.
    #[error("the manifest names {0}, which was not pushed to this registry first")]
    ManifestBlobUnknown(AnyDigest),
    #[error("manifest {0} is unknown in this repository")]
    ManifestUnknown(String),
    #[error("blob {0} is unknown to this node")]
    BlobUnknown(Digest),
    /// Too many uploads are open at once.
    #[error("{0} uploads are open on this node; finish or cancel some, or retry later")]
    TooManyUploads(usize),
    /// The request body broke off or could not be read.
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bringing in content a pushed manifest names failed (the upstream is down, say).
    #[error(transparent)]
    Fetch(FetchError),
}

/// A failure to bring in or look up content that is not "it does not exist" (a manifest's
/// missing content is `ManifestBlobUnknown`): the store's, or the upstream's while it is down.
impl From<FetchError> for PushError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Store(s) => PushError::Store(s),
            other => PushError::Fetch(other),
        }
    }
}
