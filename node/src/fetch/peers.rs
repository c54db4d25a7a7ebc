//! Blob sources inside the fleet: a provider (a peer that holds the digest or is fetching it),
//! and the digest's owner (asked to fetch it upstream once for everyone).
//!
//! Both stream over the HTTP data plane from the peer's `/v2/_shoal/peer/blobs/<digest>`, with
//! a `Range` when a broken transfer resumes, so a transfer cut off midway continues at its
//! offset from another peer.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use shoal_protocol::Digest;

use super::fleet::{Fleet, FleetError, Owner, PeerRef};
use super::source::{BlobSource, SourceStream};
use super::{FetchError, Target};
use crate::metrics::Metrics;

/// The header that carries the token derived from the cluster key on peer requests.
pub const PEER_TOKEN_HEADER: &str = "x-shoal-peer-token";

/// The data-plane path of a blob on a peer.
pub fn peer_blob_path(digest: &Digest) -> String {
    format!("/v2/_shoal/peer/blobs/{digest}")
}

/// How long a peer may keep a miss waiting, at each step of a data-plane request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerTimeouts {
    pub connect: Duration,
    /// From sending the request to the response's status and headers. A peer that accepts the
    /// connection and never answers would otherwise hold the miss until the OS gives up.
    pub headers: Duration,
    /// The longest pause between two chunks of a body.
    pub stall: Duration,
}

/// HTTP access to peers' data planes, shared by both sources.
pub struct PeerClient {
    http: reqwest::Client,
    token: Option<String>,
    metrics: Arc<Metrics>,
    timeouts: PeerTimeouts,
    /// Peers that sent wrong bytes for a digest: never asked for that digest again.
    distrusted: Mutex<HashSet<(Digest, String)>>,
    /// The peer each running download is reading from, to know whom to blame.
    reading_from: Mutex<Vec<(Digest, String)>>,
}

impl PeerClient {
    pub fn new(token: Option<String>, timeouts: PeerTimeouts, metrics: Arc<Metrics>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            // A peer serves its own bytes or answers 404; it has no reason to send us elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            http,
            token,
            metrics,
            timeouts,
            distrusted: Mutex::default(),
            reading_from: Mutex::default(),
        }
    }

    pub fn trusted(&self, digest: &Digest, peer: &str) -> bool {
        !self.lock_distrusted().contains(&(*digest, peer.to_owned()))
    }

    fn lock_distrusted(&self) -> std::sync::MutexGuard<'_, HashSet<(Digest, String)>> {
        self.distrusted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Streams `digest` from `offset` out of a peer's data plane; `None` if it does not have it.
    async fn open(
        &self,
        base_url: &str,
        peer: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<Option<SourceStream>, FetchError> {
        let url = format!("{}{}", base_url.trim_end_matches('/'), peer_blob_path(digest));
        let mut request = self.http.get(&url);
        if let Some(token) = &self.token {
            request = request.header(PEER_TOKEN_HEADER, token);
        }
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let response = self.send(request, peer).await.map_err(FetchError::Peer)?;
        let unreachable =
            |detail: String| FleetError::Unreachable { peer: peer.to_owned(), detail };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let expected =
            if offset > 0 { reqwest::StatusCode::PARTIAL_CONTENT } else { reqwest::StatusCode::OK };
        if status != expected {
            return Err(FetchError::Peer(unreachable(format!("answered {status}"))));
        }
        let size = total_size(&response, offset);
        {
            let mut reading = self.reading_from.lock().unwrap_or_else(|e| e.into_inner());
            reading.retain(|(d, _)| d != digest);
            reading.push((*digest, peer.to_owned()));
        }
        Metrics::inc(&self.metrics.peer_blob_fetches);
        let metrics = self.metrics.clone();
        let peer = peer.to_owned();
        let stall = self.timeouts.stall;
        let chunks = stall_guard(response.bytes_stream(), stall)
            .map(move |chunk| {
                let chunk = chunk.map_err(|e| {
                    FetchError::Peer(FleetError::Unreachable {
                        peer: peer.clone(),
                        detail: e.to_string(),
                    })
                })?;
                Metrics::add(&metrics.peer_bytes, chunk.len() as u64);
                Ok(chunk)
            })
            .boxed();
        Ok(Some(SourceStream { size, chunks }))
    }

    /// A small blob (a manifest) from a peer's data plane, read into memory up to `max` bytes
    /// and verified; with the media type the peer stored it with.
    pub async fn fetch_small(
        &self,
        peer: &PeerRef,
        digest: &Digest,
        max: u64,
    ) -> Result<Option<(Option<String>, bytes::Bytes)>, FleetError> {
        let unreachable =
            |detail: String| FleetError::Unreachable { peer: peer.id.clone(), detail };
        let url = format!("{}{}", peer.http_url.trim_end_matches('/'), peer_blob_path(digest));
        let mut request = self.http.get(&url);
        if let Some(token) = &self.token {
            request = request.header(PEER_TOKEN_HEADER, token);
        }
        let response = self.send(request, &peer.id).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if response.status() != reqwest::StatusCode::OK {
            return Err(unreachable(format!("answered {}", response.status())));
        }
        if response.content_length().is_some_and(|len| len > max) {
            return Ok(None);
        }
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|t| *t != shoal_protocol::media_type::OCTET_STREAM)
            .map(str::to_owned);
        let mut body = Vec::new();
        let mut chunks = std::pin::pin!(stall_guard(response.bytes_stream(), self.timeouts.stall));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(unreachable)?;
            if (body.len() + chunk.len()) as u64 > max {
                return Ok(None);
            }
            body.extend_from_slice(&chunk);
        }
        if Digest::of(&body) != *digest {
            tracing::warn!(%digest, peer = %peer.id, "peer sent a manifest that does not match its digest");
            Metrics::inc(&self.metrics.peer_corrupt);
            self.lock_distrusted().insert((*digest, peer.id.clone()));
            return Ok(None);
        }
        Ok(Some((media_type, body.into())))
    }

    /// Sends a data-plane request and waits at most the header timeout for its answer.
    ///
    /// Not reqwest's own `timeout()`: that one also covers the body, which may rightly take
    /// minutes for a large blob; the body has the stall timeout instead.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        peer: &str,
    ) -> Result<reqwest::Response, FleetError> {
        match tokio::time::timeout(self.timeouts.headers, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                Err(FleetError::Unreachable { peer: peer.to_owned(), detail: e.to_string() })
            }
            Err(_) => Err(FleetError::Timeout { peer: peer.to_owned() }),
        }
    }

    /// Blames the peer the download of `digest` read from; returns whether there was one.
    fn distrust(&self, digest: &Digest) -> bool {
        let mut reading = self.reading_from.lock().unwrap_or_else(|e| e.into_inner());
        let Some(at) = reading.iter().position(|(d, _)| d == digest) else { return false };
        let (_, peer) = reading.swap_remove(at);
        drop(reading);
        tracing::warn!(%digest, %peer, "peer sent bytes that do not match the digest; not asking it again");
        Metrics::inc(&self.metrics.peer_corrupt);
        self.lock_distrusted().insert((*digest, peer));
        true
    }

    fn done(&self, digest: &Digest) {
        self.reading_from.lock().unwrap_or_else(|e| e.into_inner()).retain(|(d, _)| d != digest);
    }
}

/// Ends a peer's body with an error when no bytes arrive for `stall`: a peer that stopped
/// sending (gone, or itself waiting) must not hold a download forever; the download then
/// resumes from the next source.
fn stall_guard(
    body: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
    stall: Duration,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, String>> + Send + 'static {
    futures_util::stream::unfold(Some(Box::pin(body)), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(stall, body.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
            Ok(Some(Err(e))) => Some((Err(e.to_string()), None)),
            Ok(None) => None,
            Err(_) => Some((Err(format!("no bytes for {stall:?}")), None)),
        }
    })
}

/// The blob's total size from `Content-Range` (on 206) or `Content-Length` (on 200).
fn total_size(response: &reqwest::Response, offset: u64) -> Option<u64> {
    let headers = response.headers();
    if offset > 0 {
        let range = headers.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
        return range.rsplit_once('/')?.1.trim().parse().ok();
    }
    headers.get(reqwest::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Peers that announce the digest, same site first.
pub struct ProviderSource {
    fleet: Arc<dyn Fleet>,
    client: Arc<PeerClient>,
}

impl ProviderSource {
    pub fn new(fleet: Arc<dyn Fleet>, client: Arc<PeerClient>) -> Self {
        Self { fleet, client }
    }
}

impl BlobSource for ProviderSource {
    fn describe(&self) -> String {
        "providers".to_owned()
    }

    fn open<'a>(
        &'a self,
        _target: &'a Target,
        digest: &'a Digest,
        offset: u64,
    ) -> BoxFuture<'a, Result<Option<SourceStream>, FetchError>> {
        Box::pin(async move {
            let mut providers = self.fleet.providers(digest).await;
            let site = self.fleet.site();
            // Same site first; otherwise in the order the DHT answered.
            providers.sort_by_key(|p| site.is_none() || p.site != site);
            for peer in providers.iter().filter(|p| self.client.trusted(digest, &p.id)) {
                match self.client.open(&peer.http_url, &peer.id, digest, offset).await {
                    Ok(Some(stream)) => return Ok(Some(stream)),
                    // A provider record outlives the blob by up to its TTL: a 404 is normal.
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(%digest, peer = %peer.id, error = %e, "provider failed")
                    }
                }
            }
            // No provider could serve: the owner, after this source, is the next to ask.
            Ok(None)
        })
    }

    fn distrust(&self, digest: &Digest) -> bool {
        self.client.distrust(digest)
    }

    fn finished(&self, digest: &Digest) {
        self.client.done(digest);
    }
}

/// The digest's owner, asked to fetch it upstream and stream it while it arrives.
pub struct OwnerSource {
    fleet: Arc<dyn Fleet>,
    client: Arc<PeerClient>,
}

impl OwnerSource {
    pub fn new(fleet: Arc<dyn Fleet>, client: Arc<PeerClient>) -> Self {
        Self { fleet, client }
    }
}

impl BlobSource for OwnerSource {
    fn describe(&self) -> String {
        "owner".to_owned()
    }

    fn open<'a>(
        &'a self,
        target: &'a Target,
        digest: &'a Digest,
        offset: u64,
    ) -> BoxFuture<'a, Result<Option<SourceStream>, FetchError>> {
        Box::pin(async move {
            let Owner::Remote(owner) = self.fleet.owner(digest.as_bytes()) else {
                // This node is the owner: the upstream source after this one fetches it.
                return Ok(None);
            };
            if !self.client.trusted(digest, &owner.id) {
                return Ok(None);
            }
            let url = match self.fleet.ask_fetch(&owner, target, digest).await {
                Ok(url) => url,
                Err(FleetError::NotFound { .. }) => return Err(FetchError::BlobUnknown(*digest)),
                Err(e) => return Err(FetchError::Peer(e)),
            };
            self.client.open(&url, &owner.id, digest, offset).await
        })
    }

    fn distrust(&self, digest: &Digest) -> bool {
        self.client.distrust(digest)
    }

    fn finished(&self, digest: &Digest) {
        self.client.done(digest);
    }
}
