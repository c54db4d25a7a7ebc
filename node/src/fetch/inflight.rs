//! Single-flight blob downloads: one download per digest per node, however many clients ask.
//!
//! The first miss creates a temp file and spawns the download; every request for the digest,
//! the first included, follows the growing file through a `watch` of the download's progress.
//! The download runs in its own task so that it finishes (and the blob is cached) even when the
//! client that started it goes away.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use shoal_protocol::Digest;
use tokio::sync::{Mutex, watch};

use super::source::BlobSource;
use super::{FetchError, Target};
use crate::store::{Store, TempBlob};

/// Resume a broken transfer at most this many times per source before trying the next one.
const RESUMES_PER_SOURCE: u32 = 3;

#[derive(Debug, Clone)]
pub struct Progress {
    pub written: u64,
    /// The blob's total size, once a source has announced it.
    pub size: Option<u64>,
    pub state: FetchState,
}

#[derive(Debug, Clone)]
pub enum FetchState {
    Running,
    /// Verified and renamed into the store.
    Committed,
    Failed(Arc<FetchError>),
}

/// A download in progress that requests can follow.
pub struct InFlight {
    pub digest: Digest,
    pub reader: Arc<std::fs::File>,
    progress: watch::Receiver<Progress>,
}

impl InFlight {
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Waits until the total size is known (sources announce it before the first byte).
    pub async fn size(&self) -> Result<u64, FetchError> {
        let mut progress = self.subscribe();
        loop {
            let snapshot = progress.borrow_and_update().clone();
            match (snapshot.size, snapshot.state) {
                (Some(size), _) => return Ok(size),
                (None, FetchState::Committed) => return Ok(snapshot.written),
                (None, FetchState::Failed(cause)) => {
                    return Err(FetchError::Joined { digest: self.digest, cause });
                }
                (None, FetchState::Running) => {}
            }
            if progress.changed().await.is_err() {
                return Err(FetchError::Truncated { digest: self.digest, expected: 0, got: 0 });
            }
        }
    }
}

pub enum Joined {
    /// The blob was committed while we looked: read it from the store.
    Stored,
    Following(Arc<InFlight>),
}

#[derive(Default)]
pub struct InFlightBlobs {
    // A tokio mutex: it is held across creating the temp file, so that a digest can never get
    // two downloads, and that is an await.
    downloads: Mutex<HashMap<Digest, Arc<InFlight>>>,
}

impl InFlightBlobs {
    pub async fn join_or_start(
        self: &Arc<Self>,
        store: &Store,
        sources: &Arc<[Arc<dyn BlobSource>]>,
        target: &Target,
        digest: Digest,
    ) -> Result<Joined, FetchError> {
        let mut downloads = self.downloads.lock().await;
        if let Some(inflight) = downloads.get(&digest) {
            return Ok(Joined::Following(inflight.clone()));
        }
        // Downloads commit before they leave the map, so a digest in neither is truly missing.
        if store.contains(&digest) {
            return Ok(Joined::Stored);
        }
        let temp = store.create_temp(&digest).await?;
        let (tx, rx) =
            watch::channel(Progress { written: 0, size: None, state: FetchState::Running });
        let inflight = Arc::new(InFlight { digest, reader: temp.reader(), progress: rx });
        downloads.insert(digest, inflight.clone());
        drop(downloads);

        tracing::info!(%digest, registry = %target.registry, repo = %target.repo, "blob miss: fetching");
        let this = self.clone();
        let (sources, target) = (sources.clone(), target.clone());
        tokio::spawn(async move {
            let outcome = download(temp, &sources, &target, digest, &tx).await;
            match outcome {
                Ok(size) => {
                    tracing::info!(%digest, size, "blob stored");
                    tx.send_modify(|p| p.state = FetchState::Committed);
                }
                Err(e) => {
                    tracing::warn!(%digest, error = %e, "blob fetch failed; nothing stored");
                    tx.send_modify(|p| p.state = FetchState::Failed(Arc::new(e)));
                }
            }
            this.downloads.lock().await.remove(&digest);
        });
        Ok(Joined::Following(inflight))
    }
}

async fn download(
    mut temp: TempBlob,
    sources: &[Arc<dyn BlobSource>],
    target: &Target,
    digest: Digest,
    progress: &watch::Sender<Progress>,
) -> Result<u64, FetchError> {
    let mut last_error = None;
    for source in sources {
        let mut resumes = 0;
        loop {
            let offset = temp.written();
            let stream = match source.open(target, &digest, offset).await {
                Ok(Some(stream)) => stream,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%digest, source = source.describe(), offset, error = %e, "source failed");
                    last_error = Some(e);
                    break;
                }
            };
            match copy(&mut temp, stream, digest, progress).await {
                Ok(()) => return Ok(temp.commit(None).await?),
                // Local failures (disk full) will not get better with another source.
                Err(e @ FetchError::Store(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(%digest, source = source.describe(), written = temp.written(), error = %e, "transfer broke");
                    last_error = Some(e);
                    resumes += 1;
                    if resumes > RESUMES_PER_SOURCE {
                        break;
                    }
                }
            }
        }
    }
    Err(last_error.unwrap_or(FetchError::BlobUnknown(digest)))
}

/// Appends one source's stream to the temp file, publishing progress after every chunk.
async fn copy(
    temp: &mut TempBlob,
    mut stream: super::source::SourceStream,
    digest: Digest,
    progress: &watch::Sender<Progress>,
) -> Result<(), FetchError> {
    let announced = stream.size;
    let known = progress.borrow().size;
    let size = match (known, announced) {
        (Some(known), Some(announced)) if known != announced => {
            return Err(FetchError::Oversized { digest, size: known.min(announced) });
        }
        (known, announced) => known.or(announced),
    };
    if known.is_none() && size.is_some() {
        progress.send_modify(|p| p.size = size);
    }
    while let Some(chunk) = stream.chunks.next().await {
        let chunk = chunk?;
        if let Some(size) = size
            && temp.written() + chunk.len() as u64 > size
        {
            return Err(FetchError::Oversized { digest, size });
        }
        temp.write_bytes(chunk).await?;
        let written = temp.written();
        progress.send_modify(|p| p.written = written);
    }
    match size {
        Some(size) if temp.written() < size => {
            Err(FetchError::Truncated { digest, expected: size, got: temp.written() })
        }
        _ => Ok(()),
    }
}
