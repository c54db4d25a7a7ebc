//! The miss path: serve from the store, else join or start one fetch per digest.
//!
//! [`Fetcher`] is all the HTTP layer sees. It answers manifests (tags resolved at most once per
//! TTL), blobs (single-flight downloads that every asking client follows while the bytes
//! arrive), tag lists, and the referrers an upstream lists (`referrers.rs`).

mod access;
mod aliases;
mod body;
mod buffers;
mod coverage;
mod download;
mod error;
mod fleet;
mod held;
mod inflight;
mod keyed_lock;
mod manifests;
mod peer_client;
mod provenance;
mod range;
mod referrers;
mod served;
mod source;
mod swarm;
mod tags;
mod uploads;
mod upstreams;

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_protocol::{Digest, RepositoryName, Tag};

pub(crate) use access::{Access, PassThrough};
pub use aliases::AliasOf;
pub(crate) use body::BlobBody;
pub(crate) use buffers::BufferBudget;
pub(crate) use download::Plan;
pub use error::FetchError;
pub(crate) use fleet::tag_key;
pub use fleet::{Fleet, FleetError};
pub use manifests::ManifestData;
pub use peer_client::{PeerClient, PeerTimeouts};
pub use range::RangeSpec;
pub(crate) use referrers::parse_index as parse_referrers_index;
pub(crate) use served::Origin;
pub use served::Served;
pub use source::{BlobSource, UpstreamSource};
pub use swarm::Swarm;
pub use swarm::sim as swarm_sim;
pub use upstreams::Upstreams;

use inflight::{InFlightBlobs, Joined};
use keyed_lock::KeyedLock;
use shoal_protocol::peer::PieceStatus;
use uploads::{Refusal, Uploads};

use crate::clock::Clock;
use crate::store::{Store, Writable};
use crate::upstream::UpstreamError;

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
    pub origin: Origin,
}

/// The answer to a `HEAD` of a blob.
pub struct BlobHead {
    pub size: u64,
    /// The half-open range a `GET` with the same `Range` would send.
    pub range: Option<(u64, u64)>,
    pub source: Served,
}

pub struct Fetcher {
    store: Store,
    upstreams: Arc<Upstreams>,
    /// For a client's miss: the swarm of peers, then the upstream.
    miss: Plan,
    /// For an owner request from a peer: this node is the one that goes upstream.
    as_owner: Plan,
    /// For a peer of this node's site asking it to bring a blob into the site.
    into_site: Plan,
    /// Piece uploads to peers running now, per digest.
    uploads: Uploads,
    fleet: Option<Arc<dyn Fleet>>,
    /// Reads manifests from peers' data planes.
    peer_client: Option<Arc<PeerClient>>,
    inflight: Arc<InFlightBlobs>,
    manifest_locks: KeyedLock<Digest>,
    tag_locks: KeyedLock<(String, RepositoryName, Tag)>,
    /// One upstream referrers question at a time per subject and filter.
    referrer_locks: KeyedLock<referrers::ReferrersKey>,
    tag_ttl: Duration,
    /// What `tag_ttl` is counted on.
    clock: Clock,
    /// Serve a digest under a name only once it is known to be there (`provenance.rs`).
    repo_check: bool,
    /// Registries whose clients' own credentials decide what they may pull (`access.rs`).
    pass_through: Option<PassThrough>,
    /// The memory response bodies may hold (`buffers.rs`).
    buffers: BufferBudget,
}

/// Where a [`Fetcher`] gets missing bytes from.
pub struct Sources {
    /// For a client's miss, before `miss`: the peers that hold the blob, in pieces.
    pub swarm: Option<Arc<Swarm>>,
    /// For a client's miss when no peer can serve, in order (the upstream).
    pub miss: Vec<Arc<dyn BlobSource>>,
    /// For an owner request from a peer (normally the upstream alone).
    pub owner: Vec<Arc<dyn BlobSource>>,
    /// For pieces and manifests held by peers.
    pub peers: Option<Arc<PeerClient>>,
    /// Piece uploads this node runs at once per digest; more are answered "busy".
    pub upload_slots: usize,
}

/// A blob download running now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadProgress {
    pub digest: Digest,
    /// Bytes written and verified in order from the first.
    pub written: u64,
    /// The blob's size, once a source announced it.
    pub size: Option<u64>,
    pub source: Served,
}

/// What this node answers a peer asking for a blob or a piece of it.
pub enum PeerAnswer {
    Blob(BlobResponse, Option<PieceStatus>),
    /// Not here, or not that piece yet; the status says what is.
    NotHeld(Option<PieceStatus>),
    /// Every upload slot for this digest is taken; ask someone else.
    Busy(Option<PieceStatus>),
    /// That piece was sent often enough just now; take it from the nodes that got it (other
    /// pieces may still be asked here).
    Spread(Option<PieceStatus>),
}

impl Fetcher {
    pub fn new(
        store: Store,
        upstreams: Arc<Upstreams>,
        sources: Sources,
        fleet: Option<Arc<dyn Fleet>>,
        tag_ttl: Duration,
    ) -> Self {
        let swarm = sources.swarm.zip(sources.peers.clone());
        let miss: Arc<[Arc<dyn BlobSource>]> = sources.miss.into();
        Self {
            store,
            upstreams,
            miss: Plan { swarm: swarm.clone(), sequential: miss.clone(), into_site: false },
            as_owner: Plan { swarm: None, sequential: sources.owner.into(), into_site: false },
            into_site: Plan { swarm, sequential: miss, into_site: true },
            uploads: Uploads::new(sources.upload_slots),
            peer_client: sources.peers,
            inflight: Arc::new(InFlightBlobs::new(fleet.clone())),
            fleet,
            manifest_locks: KeyedLock::new(),
            tag_locks: KeyedLock::new(),
            referrer_locks: KeyedLock::new(),
            tag_ttl,
            clock: Clock::system(),
            repo_check: false,
            pass_through: None,
            buffers: BufferBudget::new(BufferBudget::DEFAULT_LIMIT, Default::default()),
        }
    }

    /// Counts tag and referrers TTLs on `clock` rather than the system's.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Bounds the memory that response bodies hold (`[server] buffer_memory`).
    pub fn with_buffer_budget(mut self, buffers: BufferBudget) -> Self {
        self.buffers = buffers;
        self
    }

    /// Serves a digest under a client's name only once the node knows the digest belongs
    /// there: for nodes whose clients may pull some names and not others.
    pub fn with_repo_check(mut self, on: bool) -> Self {
        self.repo_check = on;
        self
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
        self.check_seen(target, digest, provenance::Kind::Blob).await?;
        self.blob_from(target, digest, range, &self.miss).await
    }

    /// What a `HEAD` of a blob answers: its size, and the range a `GET` would send. A blob the
    /// node neither holds nor is downloading is asked of the upstream with a `HEAD`, rather
    /// than downloaded: clients ask whether a blob exists before they push one, and tools
    /// probe what they may never pull. Only when the upstream cannot say (it is down, or it
    /// gave no size) does the node find the blob the way a `GET` would.
    pub async fn blob_head(
        &self,
        target: &Target,
        digest: &Digest,
        range: Option<RangeSpec>,
    ) -> Result<BlobHead, FetchError> {
        self.check_seen(target, digest, provenance::Kind::Blob).await?;
        let local = self.store.contains(digest) || self.inflight.get(digest).await.is_some();
        if !local {
            let upstream = self.upstreams.get(&target.registry)?;
            match upstream.head_blob(&target.repo, digest).await {
                Ok(Some(size)) => {
                    let (start, end) = select(range, size)?;
                    let range = range.map(|_| (start, end));
                    return Ok(BlobHead { size, range, source: Served::Upstream });
                }
                Err(UpstreamError::NotFound { .. }) => {
                    return Err(FetchError::BlobUnknown(*digest));
                }
                // The upstream is down (an air-gapped site, say): only a peer can have it, and
                // asking the upstream again on the GET path would cost the same wait twice.
                // Clients pushing ask this of every blob before they upload it.
                Err(UpstreamError::Unavailable { .. } | UpstreamError::Timeout { .. })
                    if !self.peers_have(digest).await =>
                {
                    return Err(FetchError::BlobUnknown(*digest));
                }
                Ok(None) | Err(_) => {}
            }
        }
        let blob = self.blob_from(target, digest, range, &self.miss).await?;
        Ok(BlobHead { size: blob.size, range: blob.range, source: blob.origin.source() })
    }

    /// Whether some peer announces the digest (within the fleet's short lookup budget).
    async fn peers_have(&self, digest: &Digest) -> bool {
        match &self.fleet {
            Some(fleet) => !fleet.providers(digest).await.is_empty(),
            None => false,
        }
    }

    /// Serves an owner request: starts (or joins) this node's download of the blob, from the
    /// upstream — or, with `into_site`, from wherever the fleet has it — and returns once it
    /// runs. The asker streams it from the data plane.
    pub async fn fetch_for_peer(
        &self,
        target: &Target,
        digest: &Digest,
        into_site: bool,
    ) -> Result<(), FetchError> {
        let plan = if into_site { &self.into_site } else { &self.as_owner };
        self.blob_from(target, digest, None, plan).await.map(drop)
    }

    /// A blob this node holds or is downloading, or a piece of it, for a peer. Never starts a
    /// download, so peers can never make each other fetch in circles.
    ///
    /// Of a download in progress a peer gets bytes that are written, and, while the download
    /// streams in order from the upstream, bytes from the live edge on as they arrive. Anything
    /// else is refused with what this node does hold: a peer waiting on this node for a piece
    /// this node waits for from someone else could wait in a circle.
    ///
    /// `asker` is the peer that asked (its signed id): a piece sent to it is remembered, and
    /// it is named to later askers (see [`Fetcher::referrals`]).
    pub async fn local_blob(
        &self,
        digest: &Digest,
        range: Option<RangeSpec>,
        asker: &str,
    ) -> Result<PeerAnswer, FetchError> {
        let now = Instant::now();
        if range.is_some() && self.fetching_upstream(digest).await {
            self.uploads.first_hand(digest, now);
        }
        let slot = match range {
            Some(range) => match self.uploads.acquire(digest, range.start(), now) {
                Ok(slot) => Some(slot),
                Err(Refusal::Busy) => return Ok(PeerAnswer::Busy(self.piece_status(digest).await)),
                Err(Refusal::Spread) => {
                    return Ok(PeerAnswer::Spread(self.piece_status(digest).await));
                }
            },
            None => None,
        };
        if let Some(reader) = self.store.open_blob(digest).await? {
            let status = PieceStatus::complete(reader.size);
            let mut response = respond_stored(digest, reader, range, &self.buffers)?;
            response.body = uploads::hold(response.body, slot);
            if range.is_some() {
                self.uploads.sent_to(digest, asker, now);
            }
            return Ok(PeerAnswer::Blob(response, Some(status)));
        }
        let Some(inflight) = self.inflight.get(digest).await else {
            return Ok(PeerAnswer::NotHeld(None));
        };
        let origin = Origin::Download(inflight.subscribe());
        let progress = inflight.subscribe().borrow().clone();
        let status = progress.piece_status();
        let Some(size) = progress.size else {
            // The download has no source yet: the asker comes back in a moment.
            return Ok(PeerAnswer::Busy(None));
        };
        let (start, end) = select(range, size)?;
        let in_file = end <= progress.written
            || progress.pieces.as_ref().is_some_and(|pieces| {
                covering(size, start.max(progress.written), end).all(|p| pieces.contains(p))
            });
        let body = if in_file {
            body::written_part(inflight, start, end, self.buffers.clone())
        } else if (progress.live && start <= progress.written) || range.is_none() {
            // Readers at the live edge, and readers of a whole blob from its start (a
            // manifest), follow the download as it goes.
            body::growing_file(inflight, start, end, self.buffers.clone())
        } else {
            return Ok(PeerAnswer::NotHeld(status));
        };
        let body = uploads::hold(body, slot);
        if range.is_some() {
            self.uploads.sent_to(digest, asker, now);
        }
        Ok(PeerAnswer::Blob(
            BlobResponse { size, range: range.map(|_| (start, end)), body, origin },
            status,
        ))
    }

    /// The peers this node sent pieces of `digest` to lately, `asker` left out: named in its
    /// answers to `asker`, which can take those pieces from them.
    pub fn referrals(&self, digest: &Digest, asker: &str) -> Vec<String> {
        self.uploads.recipients(digest, asker, Instant::now())
    }

    /// The piece digests of a stored blob, for a peer whose copy failed verification.
    pub async fn piece_digests(&self, digest: &Digest) -> Result<Option<Vec<Digest>>, FetchError> {
        Ok(self.store.piece_digests(digest).await?)
    }

    /// Whether this node's download of `digest` is running from the upstream: it is the
    /// blob's first holder, whose every piece the others wait for.
    async fn fetching_upstream(&self, digest: &Digest) -> bool {
        let Some(inflight) = self.inflight.get(digest).await else { return false };
        inflight.subscribe().borrow().source == Served::Upstream
    }

    /// What this node holds of a digest, for a peer's status request.
    async fn piece_status(&self, digest: &Digest) -> Option<PieceStatus> {
        if let Some(meta) = self.store.blob_meta(digest) {
            return Some(PieceStatus::complete(meta.size));
        }
        self.inflight.get(digest).await?.subscribe().borrow().piece_status()
    }

    /// The blob downloads running on this node, for the status report.
    pub async fn downloads(&self) -> Vec<DownloadProgress> {
        let mut downloads: Vec<_> = (self.inflight.snapshot().await.into_iter())
            .map(|(digest, written, size, source)| DownloadProgress {
                digest,
                written,
                size,
                source,
            })
            .collect();
        downloads.sort_by_key(|d| d.digest.to_string());
        downloads
    }

    /// What the store holds, for the metrics and the status report.
    pub fn store_stats(&self) -> crate::store::StoreStats {
        self.store.stats()
    }

    /// Whether the store can take writes now, for a readiness probe.
    pub async fn store_writable(&self) -> Result<Writable, FetchError> {
        Ok(self.store.check_writable().await?)
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
        plan: &Plan,
    ) -> Result<BlobResponse, FetchError> {
        // At most two rounds: a miss can turn into a hit if the download commits meanwhile.
        for _ in 0..2 {
            if let Some(reader) = self.store.open_blob(digest).await? {
                return respond_stored(digest, reader, range, &self.buffers);
            }
            match self.inflight.join_or_start(&self.store, plan, target, *digest).await? {
                Joined::Stored => continue,
                Joined::Following(inflight) => {
                    return respond_following(&self.store, inflight, range, &self.buffers).await;
                }
            }
        }
        Err(FetchError::BlobUnknown(*digest))
    }
}

fn respond_stored(
    digest: &Digest,
    reader: crate::store::BlobReader,
    range: Option<RangeSpec>,
    buffers: &BufferBudget,
) -> Result<BlobResponse, FetchError> {
    let size = reader.size;
    let (start, end) = select(range, size)?;
    let body = body::complete_file(*digest, reader, start, end, buffers.clone());
    Ok(BlobResponse { size, range: range.map(|_| (start, end)), body, origin: Origin::Stored })
}

async fn respond_following(
    store: &Store,
    inflight: Arc<inflight::InFlight>,
    range: Option<RangeSpec>,
    buffers: &BufferBudget,
) -> Result<BlobResponse, FetchError> {
    let size = inflight.size().await?;
    // The last moment to refuse a blob that cannot fit: once the response starts, a client can
    // only be cut off, and it retries (downloading it again). A refusal stops the download too.
    store.reserve(&inflight.digest, size).await?;
    // A download that failed already (the disk filled, or it outgrew the size cap before the
    // claim) is answered with its error now, not with a 200 whose body breaks off.
    if let inflight::FetchState::Failed(cause) = &inflight.subscribe().borrow().state {
        return Err(FetchError::Joined { digest: inflight.digest, cause: cause.clone() });
    }
    let (start, end) = select(range, size)?;
    let origin = Origin::Download(inflight.subscribe());
    let body = body::growing_file(inflight, start, end, buffers.clone());
    Ok(BlobResponse { size, range: range.map(|_| (start, end)), body, origin })
}

/// The pieces that hold bytes `[from, to)`.
fn covering(size: u64, from: u64, to: u64) -> impl Iterator<Item = u32> {
    let piece = shoal_protocol::peer::piece_size(size);
    let first = (from / piece) as u32;
    let last = if to > from { ((to - 1) / piece) as u32 } else { first };
    (first..=last).filter(move |_| to > from)
}

fn select(range: Option<RangeSpec>, size: u64) -> Result<(u64, u64), FetchError> {
    match range {
        None => Ok((0, size)),
        Some(spec) => spec.resolve(size).ok_or(FetchError::RangeNotSatisfiable { size }),
    }
}
