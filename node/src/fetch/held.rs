//! Making sure this node holds a digest, for a push that names content it lacks.
//!
//! A client pushing under an upstream's name skips the blobs the node says exist (a `HEAD`
//! answered from the upstream), then pushes a manifest naming them. The node brings them in
//! the way a pull would — from a peer, else the upstream — so that the pushed image is whole
//! here and can be pinned.

use std::time::Duration;

use futures_util::StreamExt;
use shoal_protocol::{Digest, Reference};

use super::{FetchError, Fetcher, Target};

/// How long a drained download may take to appear committed (its commit follows its last byte).
const COMMIT_WAIT: Duration = Duration::from_secs(5);

impl Fetcher {
    /// Tells the fleet this node holds `digest` (a pushed blob or manifest).
    pub fn announce(&self, digest: &Digest) {
        if let Some(fleet) = &self.fleet {
            fleet.provide(digest);
        }
    }

    /// Withdraws the announcement of a key this node no longer serves (a deleted pushed tag).
    pub fn withdraw(&self, key: &Digest) {
        if let Some(fleet) = &self.fleet {
            fleet.unprovide(key);
        }
    }

    /// Fetches the blob `digest` of `target` unless this node holds it; `Ok(false)` when no
    /// peer and no upstream has it.
    pub async fn hold_blob(&self, target: &Target, digest: &Digest) -> Result<bool, FetchError> {
        if self.store.contains(digest) {
            return Ok(true);
        }
        let mut blob = match self.blob(target, digest, None).await {
            Ok(blob) => blob,
            Err(e) if e.is_unknown() => return Ok(false),
            Err(e) => return Err(e),
        };
        while let Some(chunk) = blob.body.next().await {
            chunk?;
        }
        let deadline = tokio::time::Instant::now() + COMMIT_WAIT;
        while !self.store.contains(digest) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(self.store.contains(digest))
    }

    /// Fetches the manifest `digest` of `target` unless this node holds it; `Ok(false)` when no
    /// peer and no upstream has it.
    pub async fn hold_manifest(
        &self,
        target: &Target,
        digest: &Digest,
    ) -> Result<bool, FetchError> {
        if self.store.contains(digest) {
            return Ok(true);
        }
        match self.manifest(target, &Reference::Digest(*digest)).await {
            Ok(_) => Ok(self.store.contains(digest)),
            Err(e) if e.is_unknown() => Ok(false),
            Err(e) => Err(e),
        }
    }
}
