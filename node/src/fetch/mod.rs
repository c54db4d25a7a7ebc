//! The miss path: serve from the store, else join or start one fetch per digest.
//!
//! [`Fetcher`] is all the HTTP layer sees. It answers manifests (tags resolved at most once per
//! TTL), blobs (single-flight downloads that every asking client follows while the bytes
//! arrive), and tag lists.

mod body;
mod download;
mod error;
mod inflight;
mod keyed_lock;
mod manifests;
mod range;
mod source;
mod tags;
mod upstreams;

use std::sync::Arc;
use std::time::Duration;

use shoal_protocol::{Digest, RepositoryName, Tag};

pub use body::BlobBody;
pub use error::FetchError;
pub use manifests::ManifestData;
pub use range::RangeSpec;
pub use source::{BlobSource, SourceStream, UpstreamSource};
pub use tags::TagList;
pub use upstreams::{Upstreams, is_registry_host};

use inflight::{InFlightBlobs, Joined};
use keyed_lock::KeyedLock;

use crate::store::Store;

/// Which upstream registry and repository a request is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The registry's name as clients spell it (`docker.io`), not its URL.
    pub registry: String,
    pub repo: RepositoryName,
}

/// A blob to send: its total size, the bytes selected, and where they come from.
pub struct BlobResponse {
    pub size: u64,
    /// The half-open range sent, when the request had a `Range`.
    pub range: Option<(u64, u64)>,
    pub body: BlobBody,
}

pub struct Fetcher {
    store: Store,
    upstreams: Arc<Upstreams>,
    sources: Arc<[Arc<dyn BlobSource>]>,
    inflight: Arc<InFlightBlobs>,
    manifest_locks: KeyedLock<Digest>,
    tag_locks: KeyedLock<(String, RepositoryName, Tag)>,
    tag_ttl: Duration,
}

impl Fetcher {
    /// `sources` are asked in order on a miss; the upstream is normally the last.
    pub fn new(
        store: Store,
        upstreams: Arc<Upstreams>,
        sources: Vec<Arc<dyn BlobSource>>,
        tag_ttl: Duration,
    ) -> Self {
        Self {
            store,
            upstreams,
            sources: sources.into(),
            inflight: Arc::default(),
            manifest_locks: KeyedLock::new(),
            tag_locks: KeyedLock::new(),
            tag_ttl,
        }
    }

    /// Refuses names of registries the node may not fetch from, before any work is done.
    pub fn check_registry(&self, registry: &str) -> Result<(), FetchError> {
        self.upstreams.get(registry).map(|_| ())
    }

    /// A blob, whole or one range of it. On a miss this returns as soon as the size is known;
    /// the body then follows the download.
    pub async fn blob(
        &self,
        target: &Target,
        digest: &Digest,
        range: Option<RangeSpec>,
    ) -> Result<BlobResponse, FetchError> {
        // At most two rounds: a miss can turn into a hit if the download commits meanwhile.
        for _ in 0..2 {
            if let Some(reader) = self.store.open_blob(digest).await? {
                let size = reader.size;
                let (start, end) = select(range, size)?;
                let body = body::complete_file(*digest, reader, start, end);
                return Ok(BlobResponse { size, range: range.map(|_| (start, end)), body });
            }
            match self.inflight.join_or_start(&self.store, &self.sources, target, *digest).await? {
                Joined::Stored => continue,
                Joined::Following(inflight) => {
                    let size = inflight.size().await?;
                    let (start, end) = select(range, size)?;
                    let body = body::growing_file(inflight, start, end);
                    return Ok(BlobResponse { size, range: range.map(|_| (start, end)), body });
                }
            }
        }
        Err(FetchError::BlobUnknown(*digest))
    }
}

fn select(range: Option<RangeSpec>, size: u64) -> Result<(u64, u64), FetchError> {
    match range {
        None => Ok((0, size)),
        Some(spec) => spec.resolve(size).ok_or(FetchError::RangeNotSatisfiable { size }),
    }
}
