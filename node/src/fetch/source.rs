//! Where the bytes of a missing blob come from.
//!
//! The miss path asks its sources in order and resumes a broken transfer at the offset it
//! reached, from the same source or the next. Today the only source is the upstream registry;
//! the fleet adds peers and the digest's owner in front of it without touching the miss path.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use shoal_protocol::Digest;

use super::{FetchError, Target, Upstreams};
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
}

/// The upstream registry that the request's name maps to.
pub struct UpstreamSource {
    upstreams: std::sync::Arc<Upstreams>,
}

impl UpstreamSource {
    pub fn new(upstreams: std::sync::Arc<Upstreams>) -> Self {
        Self { upstreams }
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
            match upstream.get_blob(&target.repo, digest, offset).await {
                Ok(blob) => Ok(Some(SourceStream {
                    size: blob.size,
                    chunks: blob.stream.map(|r| r.map_err(FetchError::from)).boxed(),
                })),
                Err(UpstreamError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }
}
