//! Where the bytes of a missing blob come from.
//!
//! The miss path asks its sources in order and resumes a broken transfer at the offset it
//! reached, from the same source or the next: providers, then the digest's owner (see
//! `peer_client.rs`), then the upstream registry.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use shoal_protocol::Digest;

use super::fleet::Fleet;
use super::{FetchError, Target, Upstreams};
use crate::config::UpstreamFallback;
use crate::metrics::Metrics;
use crate::p2p::Owner;
use crate::upstream::UpstreamError;

/// A blob's bytes from some offset on, and the blob's total size when the source knows it.
pub struct SourceStream {
    pub size: Option<u64>,
    pub chunks: BoxStream<'static, Result<Bytes, FetchError>>,
}

pub trait BlobSource: Send + Sync + 'static {
    /// Names the source in logs.
    fn describe(&self) -> String;

    /// The blob from `offset` on, or `None` when this source does not have it.
    fn open<'a>(
        &'a self,
        target: &'a Target,
        digest: &'a Digest,
        offset: u64,
    ) -> BoxFuture<'a, Result<Option<SourceStream>, FetchError>>;

    /// The download of `digest` from this source failed verification: stop trusting whoever
    /// sent the bytes. Returns whether this source had sent any (so that a retry may help).
    fn distrust(&self, _digest: &Digest) -> bool {
        false
    }

    /// The download of `digest` ended, one way or the other.
    fn finished(&self, _digest: &Digest) {}
}

/// The upstream registry that the request's name maps to.
pub struct UpstreamSource {
    upstreams: Arc<Upstreams>,
    /// With a fleet, going upstream is the owner's job; anyone else doing it is a fallback.
    fleet: Option<Arc<dyn Fleet>>,
    fallback: UpstreamFallback,
    /// The owner that goes upstream is the site's owner, not the fleet's.
    per_site: bool,
    metrics: Arc<Metrics>,
}

impl UpstreamSource {
    pub fn new(
        upstreams: Arc<Upstreams>,
        fleet: Option<Arc<dyn Fleet>>,
        fallback: UpstreamFallback,
        per_site: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { upstreams, fleet, fallback, per_site, metrics }
    }
}

impl BlobSource for UpstreamSource {
    fn describe(&self) -> String {
        "upstream".to_owned()
    }

    fn open<'a>(
        &'a self,
        target: &'a Target,
        digest: &'a Digest,
        offset: u64,
    ) -> BoxFuture<'a, Result<Option<SourceStream>, FetchError>> {
        Box::pin(async move {
            let upstream = self.upstreams.get(&target.registry)?;
            let key = digest.as_bytes();
            let owner = self
                .fleet
                .as_ref()
                .map(|f| if self.per_site { f.site_owner(key) } else { f.owner(key) });
            if let Some(Owner::Remote(owner)) = owner {
                if self.fallback == UpstreamFallback::Never {
                    return Err(FetchError::FallbackForbidden { digest: *digest, owner: owner.id });
                }
                tracing::warn!(%digest, owner = %owner.id, "owner could not serve; fetching upstream directly");
                self.metrics.upstream_fallbacks.inc();
            }
            let result = upstream.get_blob(&target.repo, digest, offset).await;
            match self.upstreams.counted(&target.registry, "blob", result) {
                Ok(blob) => {
                    self.metrics.upstream_blob_fetches.inc();
                    let all = self.metrics.upstream_bytes.clone();
                    let by_registry = self.metrics.upstream_bytes_from(&target.registry);
                    let chunks = blob.stream.map(move |r| {
                        let chunk = r.map_err(FetchError::from)?;
                        all.inc_by(chunk.len() as u64);
                        by_registry.inc_by(chunk.len() as u64);
                        Ok(chunk)
                    });
                    Ok(Some(SourceStream { size: blob.size, chunks: chunks.boxed() }))
                }
                Err(UpstreamError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }
}
