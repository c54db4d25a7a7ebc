//! The miss path: serve from the store, else join or start one fetch per digest.
//!
//! [`Fetcher`] is all the HTTP layer sees. It answers manifests (tags resolved at most once per
//! TTL), blobs (single-flight downloads that every asking client follows while the bytes
//! arrive), and tag lists.

mod body;
mod download;
mod error;
mod fleet;
mod inflight;
mod keyed_lock;
mod manifests;
mod peers;
mod range;
mod source;
mod tags;
mod upstreams;

use std::sync::Arc;
use std::time::Duration;

use shoal_protocol::{Digest, RepositoryName, Tag};

pub use body::BlobBody;
pub use error::FetchError;
pub use fleet::{Fleet, FleetError, Owner, PeerRef, tag_key};
pub use manifests::ManifestData;
pub use peers::{
    OwnerSource, PEER_TOKEN_HEADER, PeerClient, PeerTimeouts, ProviderSource, peer_blob_path,
};
pub use range::RangeSpec;
pub use source::{BlobSource, SourceStream, UpstreamFallback, UpstreamSource};
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
    /// Asked in order on a client's miss: providers, owner, upstream.
    sources: Arc<[Arc<dyn BlobSource>]>,
    /// Asked when this node serves an owner request: it is the one that goes upstream.
    owner_sources: Arc<[Arc<dyn BlobSource>]>,
    fleet: Option<Arc<dyn Fleet>>,
    /// Reads manifests from peers' data planes.
    peer_client: Option<Arc<PeerClient>>,
    inflight: Arc<InFlightBlobs>,
    manifest_locks: KeyedLock<Digest>,
    tag_locks: KeyedLock<(String, RepositoryName, Tag)>,
    tag_ttl: Duration,
}

/// Where a [`Fetcher`] gets missing bytes from.
pub struct Sources {
    /// For a client's miss, in order.
    pub miss: Vec<Arc<dyn BlobSource>>,
    /// For an owner request from a peer (normally the upstream alone).
    pub owner: Vec<Arc<dyn BlobSource>>,
    /// For manifests by digest held by peers.
    pub peers: Option<Arc<PeerClient>>,
}

impl Fetcher {
    pub fn new(
        store: Store,
        upstreams: Arc<Upstreams>,
        sources: Sources,
        fleet: Option<Arc<dyn Fleet>>,
        tag_ttl: Duration,
    ) -> Self {
        Self {
            store,
            upstreams,
            sources: sources.miss.into(),
            owner_sources: sources.owner.into(),
            peer_client: sources.peers,
            inflight: Arc::new(InFlightBlobs::new(fleet.clone())),
            fleet,
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
        self.blob_from(target, digest, range, &self.sources).await
    }

    /// Serves an owner request: starts (or joins) this node's download of the blob, from the
    /// upstream, and returns once it runs. The asker streams it from the data plane.
    pub async fn fetch_for_peer(&self, target: &Target, digest: &Digest) -> Result<(), FetchError> {
        self.blob_from(target, digest, None, &self.owner_sources).await.map(drop)
    }

    /// A blob this node holds or is downloading, for a peer; never starts a download, so peers
    /// can never make each other fetch in circles.
    pub async fn local_blob(
        &self,
        digest: &Digest,
        range: Option<RangeSpec>,
    ) -> Result<BlobResponse, FetchError> {
        if let Some(reader) = self.store.open_blob(digest).await? {
            return respond_stored(digest, reader, range);
        }
        let Some(inflight) = self.inflight.get(digest).await else {
            return Err(FetchError::BlobUnknown(*digest));
        };
        // A peer resuming past what this node has written would wait on this node while this
        // node may be resuming from it: two partial copies following each other in a circle.
        // Refuse, so the peer asks another source (the owner, the upstream) instead.
        let resume_from = match range {
            Some(RangeSpec::From(start) | RangeSpec::FromTo(start, _)) => start,
            _ => 0,
        };
        if resume_from > 0 && resume_from >= inflight.written() {
            return Err(FetchError::BlobUnknown(*digest));
        }
        respond_following(inflight, range).await
    }

    /// The media type a blob was stored with (manifests have one), for peers reading it.
    pub fn stored_media_type(&self, digest: &Digest) -> Option<String> {
        self.store.blob_meta(digest)?.media_type
    }

    async fn blob_from(
        &self,
        target: &Target,
        digest: &Digest,
        range: Option<RangeSpec>,
        sources: &Arc<[Arc<dyn BlobSource>]>,
    ) -> Result<BlobResponse, FetchError> {
        // At most two rounds: a miss can turn into a hit if the download commits meanwhile.
        for _ in 0..2 {
            if let Some(reader) = self.store.open_blob(digest).await? {
                return respond_stored(digest, reader, range);
            }
            match self.inflight.join_or_start(&self.store, sources, target, *digest).await? {
                Joined::Stored => continue,
                Joined::Following(inflight) => return respond_following(inflight, range).await,
            }
        }
        Err(FetchError::BlobUnknown(*digest))
    }
}

fn respond_stored(
    digest: &Digest,
    reader: crate::store::BlobReader,
    range: Option<RangeSpec>,
) -> Result<BlobResponse, FetchError> {
    let size = reader.size;
    let (start, end) = select(range, size)?;
    let body = body::complete_file(*digest, reader, start, end);
    Ok(BlobResponse { size, range: range.map(|_| (start, end)), body })
}

async fn respond_following(
    inflight: Arc<inflight::InFlight>,
    range: Option<RangeSpec>,
) -> Result<BlobResponse, FetchError> {
    let size = inflight.size().await?;
    let (start, end) = select(range, size)?;
    let body = body::growing_file(inflight, start, end);
    Ok(BlobResponse { size, range: range.map(|_| (start, end)), body })
}

fn select(range: Option<RangeSpec>, size: u64) -> Result<(u64, u64), FetchError> {
    match range {
        None => Ok((0, size)),
        Some(spec) => spec.resolve(size).ok_or(FetchError::RangeNotSatisfiable { size }),
    }
}
