//! The client side of the peer data plane: what a peer holds of a blob, one piece of it, or
//! a whole small blob (a manifest).
//!
//! Every request goes to the peer's `/v2/_shoal/peer/blobs/<digest>`; pieces are `Range`
//! requests, and every answer carries the peer's `x-shoal-pieces` status (see
//! `shoal_protocol::peer::PieceStatus`). Every request is signed for its method, path and
//! range (`crate::peer_auth`), and waits a bounded time for the answer's head and a bounded
//! time between two chunks of its body, so a dead or silent peer costs a moment and the swarm
//! asks someone else.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use shoal_protocol::peer::{PEERS_HEADER, PIECES_HEADER, PieceStatus, parse_referrals};
use shoal_protocol::{Digest, Sha512Digest};
use tokio::sync::mpsc;

use super::fleet::FleetError;
use super::swarm::Failure;
use crate::metrics::Metrics;
use crate::p2p::{PeerId, PeerInfo};
use crate::peer_auth::{PEER_AUTH_HEADER, RequestSigner};

/// The data-plane path of a blob on a peer.
pub fn peer_blob_path(digest: &Digest) -> String {
    format!("/v2/_shoal/peer/blobs/{digest}")
}

/// The data-plane path of a stored blob's piece digests on a peer.
fn peer_pieces_path(digest: &Digest) -> String {
    format!("/v2/_shoal/peer/pieces/{digest}")
}

/// The data-plane path where a peer says which sha256 a sha512 digest names.
fn peer_alias_path(alias: &Sha512Digest) -> String {
    format!("/v2/_shoal/peer/aliases/{alias}")
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

/// HTTP access to peers' data planes.
pub struct PeerClient {
    http: reqwest::Client,
    signer: RequestSigner,
    metrics: Arc<Metrics>,
    header_timeout: Duration,
    stall_timeout: Duration,
    /// Peers that sent wrong bytes for a digest: never asked for that digest again.
    distrusted: Mutex<HashSet<(Digest, PeerId)>>,
}

impl PeerClient {
    /// `roots`: CA certificates members serving HTTPS are checked against, besides the public
    /// roots (`--peer-ca`).
    pub fn new(
        signer: RequestSigner,
        timeouts: PeerTimeouts,
        roots: Vec<reqwest::Certificate>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            // A peer serves its own bytes or answers 404; it has no reason to send us elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
        let http = builder.build().unwrap_or_default();
        Self {
            http,
            signer,
            metrics,
            header_timeout: timeouts.headers,
            stall_timeout: timeouts.stall,
            distrusted: Mutex::default(),
        }
    }

    pub fn trusted(&self, digest: &Digest, peer: &PeerId) -> bool {
        !self.lock_distrusted().contains(&(*digest, *peer))
    }

    fn lock_distrusted(&self) -> std::sync::MutexGuard<'_, HashSet<(Digest, PeerId)>> {
        self.distrusted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(
        &self,
        method: reqwest::Method,
        peer: &PeerInfo,
        digest: &Digest,
        range: Option<String>,
    ) -> reqwest::RequestBuilder {
        self.request(method, peer, &peer_blob_path(digest), range)
    }

    /// Every request to a peer goes through here, so none leaves unsigned. `path` is sent as
    /// it is signed: it needs no percent-encoding (digests and fixed words only).
    fn request(
        &self,
        method: reqwest::Method,
        peer: &PeerInfo,
        path: &str,
        range: Option<String>,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", peer.http_url.trim_end_matches('/'));
        let auth = self.signer.header_value(method.as_str(), path, range.as_deref());
        let mut request = self.http.request(method, &url).header(PEER_AUTH_HEADER, auth);
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        request
    }

    /// Sends a request and waits at most the header timeout for the answer's head: a peer
    /// that accepts connections but never answers must cost a moment, not a download.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        peer: &PeerInfo,
    ) -> Result<reqwest::Response, FleetError> {
        match tokio::time::timeout(self.header_timeout, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(FleetError::Unreachable { peer: peer.id, detail: e.to_string() }),
            Err(_) => Err(FleetError::Timeout { peer: peer.id }),
        }
    }

    /// What a peer holds of `digest`.
    pub async fn status(
        &self,
        peer: &PeerInfo,
        digest: &Digest,
    ) -> Result<(StatusReply, Referrals), FleetError> {
        let response = self.send(self.get(reqwest::Method::HEAD, peer, digest, None), peer).await?;
        let status = pieces_header(&response);
        let referrals = referrals(&response);
        let reply = match (response.status(), status) {
            (reqwest::StatusCode::OK, Some(status)) => Ok(StatusReply::Has(status)),
            (reqwest::StatusCode::OK, None) => Err(FleetError::Internal {
                peer: peer.id,
                detail: format!("no valid {PIECES_HEADER} header"),
            }),
            (
                reqwest::StatusCode::RANGE_NOT_SATISFIABLE
                | reqwest::StatusCode::SERVICE_UNAVAILABLE,
                Some(status),
            ) => Ok(StatusReply::Has(status)),
            (reqwest::StatusCode::SERVICE_UNAVAILABLE, None) => Ok(StatusReply::NotYet),
            (reqwest::StatusCode::NOT_FOUND, _) => Ok(StatusReply::Nothing),
            (other, _) => {
                Err(FleetError::Unreachable { peer: peer.id, detail: format!("answered {other}") })
            }
        };
        reply.map(|reply| (reply, referrals))
    }

    /// Bytes `[start, end)` of `digest` from a peer, handed to `sink` with their offsets as they
    /// arrive. Returns the peer's status when it sent one, the peers it named, and whether
    /// every byte came.
    pub async fn piece(
        &self,
        peer: &PeerInfo,
        digest: &Digest,
        start: u64,
        end: u64,
        sink: &mpsc::Sender<(u64, Bytes)>,
    ) -> (Option<PieceStatus>, Referrals, Result<(), PieceError>) {
        let range = format!("bytes={start}-{}", end - 1);
        let request = self.get(reqwest::Method::GET, peer, digest, Some(range));
        let response = match self.send(request, peer).await {
            Ok(response) => response,
            Err(e) => return (None, Vec::new(), Err(PieceError::Peer(e))),
        };
        let status = pieces_header(&response);
        let referrals = referrals(&response);
        let result = match response.status() {
            reqwest::StatusCode::PARTIAL_CONTENT => {
                self.receive(response, peer, digest, start, end, sink).await
            }
            reqwest::StatusCode::SERVICE_UNAVAILABLE => Err(PieceError::Busy),
            reqwest::StatusCode::TOO_MANY_REQUESTS => Err(PieceError::Spread),
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::RANGE_NOT_SATISFIABLE => {
                Err(PieceError::NotHeld)
            }
            other => Err(PieceError::Peer(FleetError::Unreachable {
                peer: peer.id,
                detail: format!("answered {other} to a piece request"),
            })),
        };
        (status, referrals, result)
    }

    /// The sha256 of bytes `[start, end)` of `digest` as a peer serves them now.
    pub async fn piece_digest(
        &self,
        peer: &PeerInfo,
        digest: &Digest,
        start: u64,
        end: u64,
    ) -> Result<Digest, PieceError> {
        let (sink, mut chunks) = mpsc::channel(8);
        let hash = async move {
            let mut hasher = Sha256::new();
            while let Some((_, chunk)) = chunks.recv().await {
                hasher.update(&chunk);
            }
            Digest::from_raw(hasher.finalize().into())
        };
        let fetch = async move {
            let (_, _, result) = self.piece(peer, digest, start, end, &sink).await;
            result
        };
        let (result, hashed) = tokio::join!(fetch, hash);
        result.map(|()| hashed)
    }

    async fn receive(
        &self,
        response: reqwest::Response,
        peer: &PeerInfo,
        digest: &Digest,
        start: u64,
        end: u64,
        sink: &mpsc::Sender<(u64, Bytes)>,
    ) -> Result<(), PieceError> {
        let broken =
            |detail: String| PieceError::Peer(FleetError::Unreachable { peer: peer.id, detail });
        let range =
            response.headers().get(reqwest::header::CONTENT_RANGE).and_then(|v| v.to_str().ok());
        let expected = format!("bytes {start}-{}/", end - 1);
        if !range.is_some_and(|r| r.starts_with(&expected)) {
            return Err(broken(format!("sent Content-Range {range:?} for {expected}")));
        }
        let mut at = start;
        let mut chunks = std::pin::pin!(stall_guard(response.bytes_stream(), self.stall_timeout));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(broken)?;
            if at + chunk.len() as u64 > end {
                return Err(broken(format!(
                    "sent more than the {} bytes asked for {digest}",
                    end - start
                )));
            }
            let len = chunk.len() as u64;
            self.metrics.peer_bytes.inc_by(len);
            if sink.send((at, chunk)).await.is_err() {
                return Err(PieceError::Stopped);
            }
            at += len;
        }
        if at < end {
            return Err(broken(format!(
                "ended a piece of {digest} after {} of {} bytes",
                at - start,
                end - start
            )));
        }
        Ok(())
    }

    /// A small blob (a manifest) from a peer's data plane, read into memory up to `max` bytes
    /// and verified; with the media type the peer stored it with.
    pub async fn fetch_small(
        &self,
        peer: &PeerInfo,
        digest: &Digest,
        max: u64,
    ) -> Result<Option<(Option<String>, bytes::Bytes)>, FleetError> {
        let unreachable = |detail: String| FleetError::Unreachable { peer: peer.id, detail };
        let response = self.send(self.get(reqwest::Method::GET, peer, digest, None), peer).await?;
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
        let mut chunks = std::pin::pin!(stall_guard(response.bytes_stream(), self.stall_timeout));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(unreachable)?;
            if (body.len() + chunk.len()) as u64 > max {
                return Ok(None);
            }
            body.extend_from_slice(&chunk);
        }
        if Digest::of(&body) != *digest {
            tracing::warn!(%digest, peer = %peer.id, "peer sent a manifest that does not match its digest");
            self.metrics.peer_corrupt.inc();
            self.lock_distrusted().insert((*digest, peer.id));
            return Ok(None);
        }
        Ok(Some((media_type, body.into())))
    }

    /// The sha256 a peer says `alias` names (a lead: the caller checks the content); `None`
    /// when it knows no such alias.
    pub async fn alias(
        &self,
        peer: &PeerInfo,
        alias: &Sha512Digest,
    ) -> Result<Option<Digest>, FleetError> {
        let request = self.request(reqwest::Method::HEAD, peer, &peer_alias_path(alias), None);
        let response = self.send(request, peer).await?;
        match response.status() {
            reqwest::StatusCode::OK => {}
            reqwest::StatusCode::NOT_FOUND => return Ok(None),
            status => {
                return Err(FleetError::Unreachable {
                    peer: peer.id,
                    detail: format!("answered {status} for alias {alias}"),
                });
            }
        }
        let named = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok());
        match named {
            Some(digest) => Ok(Some(digest)),
            None => Err(FleetError::Unreachable {
                peer: peer.id,
                detail: format!("answered alias {alias} without a sha256 Docker-Content-Digest"),
            }),
        }
    }

    /// The piece digests of a blob the peer holds verified, `count` of them; `None` when it
    /// does not hold it (yet).
    pub async fn piece_digests(
        &self,
        peer: &PeerInfo,
        digest: &Digest,
        count: u32,
    ) -> Result<Option<Vec<Digest>>, FleetError> {
        let broken = |detail: String| FleetError::Internal { peer: peer.id, detail };
        let request = self.request(reqwest::Method::GET, peer, &peer_pieces_path(digest), None);
        let response = self.send(request, peer).await?;
        match response.status() {
            reqwest::StatusCode::OK => {}
            reqwest::StatusCode::NOT_FOUND => return Ok(None),
            other => return Err(broken(format!("answered {other} for piece digests"))),
        }
        let expected = count as u64 * 32;
        if response.content_length().is_some_and(|len| len != expected) {
            return Err(broken(format!("sent piece digests of the wrong length for {digest}")));
        }
        let body = tokio::time::timeout(self.stall_timeout, response.bytes())
            .await
            .map_err(|_| FleetError::Timeout { peer: peer.id })?
            .map_err(|e| broken(e.to_string()))?;
        if body.len() as u64 != expected {
            return Err(broken(format!(
                "sent {} bytes of piece digests, not {expected}",
                body.len()
            )));
        }
        let digests = body
            .chunks_exact(32)
            .map(|raw| Digest::from_raw(raw.try_into().unwrap_or([0; 32])))
            .collect();
        Ok(Some(digests))
    }

    /// The peers that sent the pieces of a download that failed verification: none of them is
    /// asked for this digest again.
    pub fn distrust(&self, digest: &Digest, peers: &[PeerId]) {
        for peer in peers {
            tracing::warn!(%digest, %peer, "peer sent bytes of a blob that failed verification; not asking it again");
            self.metrics.peer_corrupt.inc();
            self.lock_distrusted().insert((*digest, *peer));
        }
    }
}

/// A peer's answer to "what do you hold?".
#[derive(Debug)]
pub enum StatusReply {
    Has(PieceStatus),
    /// It is starting a download and does not know the size yet: ask again shortly.
    NotYet,
    Nothing,
}

/// Why a piece did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum PieceError {
    #[error("the peer's upload slots are full")]
    Busy,
    #[error("the peer sent that piece often enough just now")]
    Spread,
    #[error("the peer does not hold that piece")]
    NotHeld,
    #[error("the download stopped taking bytes")]
    Stopped,
    #[error(transparent)]
    Peer(FleetError),
}

impl PieceError {
    pub(crate) fn failure(&self) -> Failure {
        match self {
            PieceError::Busy => Failure::Busy,
            PieceError::Spread => Failure::Spread,
            PieceError::NotHeld => Failure::NotHeld,
            PieceError::Stopped | PieceError::Peer(_) => Failure::Error,
        }
    }
}

/// The members a peer named in `x-shoal-peers`: nodes it sent pieces of the blob to lately.
pub(crate) type Referrals = Vec<PeerId>;

fn referrals(response: &reqwest::Response) -> Referrals {
    let Some(value) = response.headers().get(PEERS_HEADER).and_then(|v| v.to_str().ok()) else {
        return Vec::new();
    };
    parse_referrals(value).into_iter().filter_map(|id| id.parse().ok()).collect()
}

fn pieces_header(response: &reqwest::Response) -> Option<PieceStatus> {
    let value = response.headers().get(PIECES_HEADER)?.to_str().ok()?;
    PieceStatus::parse(value).ok()
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
