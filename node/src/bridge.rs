//! The two adapters between the control plane and the miss path: [`P2pFleet`] gives the miss
//! path the fleet it asks (providers, owners, owner requests) on top of the libp2p handle, and
//! [`FetcherService`] answers peers' owner requests with this node's fetcher.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use shoal_protocol::peer::{
    ErrorCode, HoldState, ImageHold, ImageRelease, OwnerRequest, OwnerResponse,
};
use shoal_protocol::{Digest, Manifest, RepositoryName, Tag};

use crate::fetch::{FetchError, Fetcher, Fleet, FleetError, ManifestData, Served, Target};
use crate::metrics::Metrics;
use crate::p2p::{self, Owner, OwnerService, P2p, PeerInfo};
use crate::placement::Placement;
use crate::upstream::UpstreamError;

pub struct P2pFleet {
    p2p: P2p,
    site: Option<String>,
    provider_budget: Duration,
    owner_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl P2pFleet {
    pub fn new(
        p2p: P2p,
        site: Option<String>,
        provider_budget: Duration,
        owner_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { p2p, site, provider_budget, owner_timeout, metrics }
    }

    async fn ask(
        &self,
        peer: &PeerInfo,
        request: OwnerRequest,
    ) -> Result<OwnerResponse, FleetError> {
        self.p2p.ask(peer.id, request, self.owner_timeout).await.map_err(|e| match e {
            p2p::P2pError::Timeout { .. } => FleetError::Timeout { peer: peer.id },
            other => FleetError::Unreachable { peer: peer.id, detail: other.to_string() },
        })
    }
}

fn refusal(peer: &PeerInfo, code: ErrorCode) -> FleetError {
    let peer = peer.id;
    match code {
        ErrorCode::NotFound => FleetError::NotFound { peer },
        ErrorCode::UpstreamUnavailable => FleetError::UpstreamUnavailable { peer },
        ErrorCode::Refused => FleetError::Refused { peer },
        ErrorCode::Internal | ErrorCode::Unspecified => {
            FleetError::Internal { peer, detail: "internal error".to_owned() }
        }
    }
}

fn unexpected(peer: &PeerInfo) -> FleetError {
    FleetError::Internal { peer: peer.id, detail: "answered a different question".to_owned() }
}

impl Fleet for P2pFleet {
    fn providers<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Vec<PeerInfo>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let found = self.p2p.find_providers(digest, self.provider_budget).await;
            self.metrics.dht_lookup_seconds.observe(started.elapsed().as_secs_f64());
            found
        })
    }

    fn owner(&self, key: &[u8]) -> Owner {
        self.p2p.owner(key)
    }

    fn site_owner(&self, key: &[u8]) -> Owner {
        if self.site.is_none() {
            return self.owner(key);
        }
        self.p2p.site_owner(key, &self.site)
    }

    fn ask_fetch<'a>(
        &'a self,
        owner: &'a PeerInfo,
        target: &'a Target,
        digest: &'a Digest,
        into_site: bool,
    ) -> BoxFuture<'a, Result<String, FleetError>> {
        Box::pin(async move {
            let request = OwnerRequest::FetchBlob {
                registry: target.registry.clone(),
                repo: target.repo.clone(),
                digest: *digest,
                into_site,
            };
            match self.ask(owner, request).await? {
                OwnerResponse::FetchAccepted { http_url } => Ok(http_url),
                OwnerResponse::Error(code) => Err(refusal(owner, code)),
                OwnerResponse::TagResolved { .. } | OwnerResponse::Hold(_) => {
                    Err(unexpected(owner))
                }
            }
        })
    }

    fn ask_tag<'a>(
        &'a self,
        owner: &'a PeerInfo,
        target: &'a Target,
        tag: &'a Tag,
    ) -> BoxFuture<'a, Result<ManifestData, FleetError>> {
        Box::pin(async move {
            let request = OwnerRequest::ResolveTag {
                registry: target.registry.clone(),
                repo: target.repo.clone(),
                tag: tag.clone(),
            };
            match self.ask(owner, request).await? {
                OwnerResponse::TagResolved { digest, media_type, manifest } => {
                    let manifest = Manifest { digest, media_type, bytes: manifest.into() };
                    Ok(ManifestData::new(manifest, Served::Peer))
                }
                OwnerResponse::Error(code) => Err(refusal(owner, code)),
                OwnerResponse::FetchAccepted { .. } | OwnerResponse::Hold(_) => {
                    Err(unexpected(owner))
                }
            }
        })
    }

    fn provide(&self, digest: &Digest) {
        // Best effort: a lost announcement costs a peer an owner round trip, nothing more.
        if let Err(e) = self.p2p.provide(digest) {
            tracing::debug!(%digest, error = %e, "could not announce a provider record");
        }
    }

    fn unprovide(&self, digest: &Digest) {
        if let Err(e) = self.p2p.unprovide(digest) {
            tracing::debug!(%digest, error = %e, "could not withdraw a provider record");
        }
    }

    fn site(&self) -> Option<String> {
        self.site.clone()
    }

    fn placement(&self, key: &[u8], n: usize) -> Vec<Owner> {
        self.p2p.closest(key, n)
    }

    fn members(&self) -> Vec<PeerInfo> {
        self.p2p.peers()
    }

    fn ask_hold<'a>(
        &'a self,
        peer: &'a PeerInfo,
        hold: &'a ImageHold,
    ) -> BoxFuture<'a, Result<HoldState, FleetError>> {
        Box::pin(async move { self.ask_placement(peer, OwnerRequest::Hold(hold.clone())).await })
    }

    fn ask_release<'a>(
        &'a self,
        peer: &'a PeerInfo,
        release: &'a ImageRelease,
    ) -> BoxFuture<'a, Result<HoldState, FleetError>> {
        Box::pin(
            async move { self.ask_placement(peer, OwnerRequest::Release(release.clone())).await },
        )
    }
}

impl P2pFleet {
    async fn ask_placement(
        &self,
        peer: &PeerInfo,
        request: OwnerRequest,
    ) -> Result<HoldState, FleetError> {
        match self.ask(peer, request).await? {
            OwnerResponse::Hold(state) => Ok(state),
            OwnerResponse::Error(code) => Err(refusal(peer, code)),
            OwnerResponse::FetchAccepted { .. } | OwnerResponse::TagResolved { .. } => {
                Err(unexpected(peer))
            }
        }
    }
}

/// Answers owner requests from peers with this node's fetcher, and placement requests with
/// its placement.
pub struct FetcherService {
    fetcher: std::sync::OnceLock<Arc<Fetcher>>,
    placement: std::sync::OnceLock<Arc<Placement>>,
    metrics: Arc<Metrics>,
}

impl FetcherService {
    /// The swarm starts before the fetcher exists (the fetcher needs the swarm's handle);
    /// requests that arrive in between are refused.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { fetcher: std::sync::OnceLock::new(), placement: std::sync::OnceLock::new(), metrics }
    }

    pub fn set_placement(&self, placement: Arc<Placement>) {
        let _ = self.placement.set(placement);
    }

    pub fn set_fetcher(&self, fetcher: Arc<Fetcher>) {
        let _ = self.fetcher.set(fetcher);
    }

    fn fetcher(&self) -> Result<Arc<Fetcher>, ErrorCode> {
        self.fetcher.get().cloned().ok_or(ErrorCode::Refused)
    }
}

/// What an asker learns of a failed owner request: a code, never this node's error text.
fn code(e: &FetchError) -> ErrorCode {
    match e.root() {
        FetchError::ManifestUnknown { .. } | FetchError::BlobUnknown(_) => ErrorCode::NotFound,
        FetchError::Upstream(UpstreamError::NotFound { .. }) => ErrorCode::NotFound,
        // Any other upstream failure (down, 429, refused credentials) is the upstream's: the
        // asker may try it itself, which is what a fallback is for.
        FetchError::Upstream(_) | FetchError::Peer(_) | FetchError::FallbackForbidden { .. } => {
            ErrorCode::UpstreamUnavailable
        }
        FetchError::UnknownRegistry(_) => ErrorCode::Refused,
        _ => ErrorCode::Internal,
    }
}

impl OwnerService for FetcherService {
    fn fetch_blob(
        &self,
        registry: String,
        repo: RepositoryName,
        digest: Digest,
        into_site: bool,
    ) -> BoxFuture<'static, Result<(), ErrorCode>> {
        self.metrics.owner_requests.inc();
        let fetcher = self.fetcher();
        Box::pin(async move {
            let fetcher = fetcher?;
            let target = Target { registry, repo };
            fetcher.fetch_for_peer(&target, &digest, into_site).await.map_err(|e| {
                tracing::warn!(%digest, error = %e, "owner request for a blob failed");
                code(&e)
            })
        })
    }

    fn resolve_tag(
        &self,
        registry: String,
        repo: RepositoryName,
        tag: Tag,
    ) -> BoxFuture<'static, Result<Manifest, ErrorCode>> {
        self.metrics.owner_requests.inc();
        let fetcher = self.fetcher();
        Box::pin(async move {
            let fetcher = fetcher?;
            let target = Target { registry, repo };
            match fetcher.resolve_tag_for_peer(&target, &tag).await {
                Ok(m) => Ok(m.manifest),
                Err(e) => {
                    tracing::warn!(%tag, error = %e, "owner request for a tag failed");
                    Err(code(&e))
                }
            }
        })
    }

    fn hold(&self, hold: ImageHold) -> BoxFuture<'static, Result<HoldState, ErrorCode>> {
        let placement = self.placement.get().cloned();
        Box::pin(async move {
            let placement = placement.ok_or(ErrorCode::Refused)?;
            Ok(placement.on_hold(hold).await)
        })
    }

    fn release(&self, release: ImageRelease) -> BoxFuture<'static, Result<HoldState, ErrorCode>> {
        let placement = self.placement.get().cloned();
        Box::pin(async move {
            let placement = placement.ok_or(ErrorCode::Refused)?;
            Ok(placement.on_release(release).await)
        })
    }
}
