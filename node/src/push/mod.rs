//! The push side of the registry API: blob uploads, manifest pushes, deletes and referrers.
//!
//! [`Pusher`] is to pushes what `Fetcher` is to pulls: all the HTTP layer sees of them. Pushed
//! content is verified before it is stored (blobs against the digest their upload names,
//! manifests against their schema and the content they name) and pinned, since no upstream can
//! give it back once evicted. A tag pushed under an upstream's name is served as the truth for
//! that name until deleted or pushed again; under a hosted name (one that is no upstream) the
//! node is a plain registry.

mod blobs;
mod delete;
mod error;
mod manifests;
mod referrers;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use shoal_protocol::{AnyDigest, Digest};

pub use error::PushError;
pub use manifests::PushedAs;

use crate::fetch::{Fetcher, Target};
use crate::placement::Placement;
use crate::store::{Store, StoreError};
use sessions::Sessions;

/// A request body as the HTTP layer hands it over: chunks as they arrive.
pub type BodyStream = BoxStream<'static, Result<Bytes, String>>;

/// Where an upload stands: what the `Location` and `Range` headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadState {
    pub id: String,
    /// Bytes received so far.
    pub written: u64,
}

/// What a `POST .../blobs/uploads/` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// The blob is stored (a monolithic upload, or a mount), named as the client named it.
    Stored(AnyDigest),
    /// An upload session is open.
    Open(UploadState),
}

pub struct Pusher {
    store: Store,
    /// Brings in what a pushed manifest names and this node lacks, when the fleet or the
    /// upstream has it (a push under an upstream's name skips what the upstream holds).
    fetcher: Arc<Fetcher>,
    /// Keeps pushed images on their members.
    placement: Arc<Placement>,
    sessions: Arc<Sessions>,
    /// Whether some clients may pull names others may not: then a mount without `from` is
    /// refused, as it could read a blob of a repository the client may not pull.
    restricts_names: bool,
}

impl Pusher {
    /// A pusher whose abandoned uploads are removed after `idle`. Call inside the runtime.
    pub fn new(
        store: Store,
        fetcher: Arc<Fetcher>,
        placement: Arc<Placement>,
        idle: Duration,
        restricts_names: bool,
    ) -> Self {
        let sessions = Arc::new(Sessions::default());
        sessions::spawn_expiry(Arc::downgrade(&sessions), idle);
        Pusher { store, fetcher, placement, sessions, restricts_names }
    }

    /// Uploads open now, for the status report.
    pub fn open_uploads(&self) -> usize {
        self.sessions.len()
    }
}

/// The pin reason of content pushed as part of `target` under manifest `digest`.
fn manifest_pin(target: &Target, digest: &Digest) -> String {
    format!("manifest:{}/{}@{digest}", target.registry, target.repo)
}

/// The pin reason of a blob uploaded to `target` and not yet named by a manifest: it must not
/// be evicted between its upload and the manifest push that names it.
fn upload_pin(target: &Target) -> String {
    format!("upload:{}/{}", target.registry, target.repo)
}

/// Runs an index commit off the async threads.
async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, PushError> {
    Ok(crate::store::blocking(op, f).await?)
}
