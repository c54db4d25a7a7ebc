//! Single-flight blob downloads: one download per digest per node, however many clients ask.
//!
//! The first miss creates a temp file and spawns the download; every request for the digest,
//! the first included, follows the growing file through a `watch` of the download's progress.
//! The download runs in its own task so that it finishes (and the blob is cached) even when the
//! client that started it goes away.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use shoal_protocol::Digest;
use shoal_protocol::peer::{Have, PieceSet, PieceStatus};
use tokio::sync::{Mutex, watch};

use super::download::{self, Plan};
use super::fleet::Fleet;
use super::served::Served;
use super::{FetchError, Target};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct Progress {
    /// Bytes written and hashed from the first: what clients may follow.
    pub written: u64,
    /// The blob's total size, once a source has announced it.
    pub size: Option<u64>,
    pub state: FetchState,
    pub recent: Option<Recent>,
    /// Pieces whose every byte is in the file, once the size is known: what peers may ask for.
    pub pieces: Option<Arc<PieceSet>>,
    /// The bytes after `written` arrive in order from one stream (the upstream), so a peer
    /// may follow them as they come.
    pub live: bool,
    /// Where the bytes come from: the peers until the download turns to the upstream.
    pub source: Served,
}

impl Progress {
    /// What this download can serve to peers now, in the words of the data plane.
    pub fn piece_status(&self) -> Option<PieceStatus> {
        let size = self.size?;
        if matches!(self.state, FetchState::Committed) {
            return Some(PieceStatus::complete(size));
        }
        // Before the writer's first batch no piece is whole yet.
        let pieces = match self.pieces.as_deref() {
            Some(pieces) => pieces.clone(),
            None => PieceSet::empty(shoal_protocol::peer::piece_count(size)),
        };
        let live = self.live.then_some(self.written);
        Some(PieceStatus { size, have: Have::Partial { pieces, live } })
    }
}

/// The last few MiB written, as the chunks they arrived in, kept so that followers who keep up
/// take their bytes from memory instead of reading them back from the file: one copy and one
/// trip to the blocking pool less per chunk on the path of every first pull.
#[derive(Debug, Clone)]
pub struct Recent {
    /// Where the first chunk starts in the blob.
    pub offset: u64,
    pub chunks: Arc<[Bytes]>,
}

impl Recent {
    /// Bytes from `pos` up to `end` (or to the end of the chunk holding `pos`), without a copy;
    /// `None` when `pos` is outside these chunks.
    pub fn slice(&self, pos: u64, end: u64) -> Option<Bytes> {
        let mut at = self.offset;
        if pos < at {
            return None;
        }
        for chunk in self.chunks.iter() {
            let chunk_end = at + chunk.len() as u64;
            if pos < chunk_end {
                let to = end.min(chunk_end);
                return (to > pos).then(|| chunk.slice((pos - at) as usize..(to - at) as usize));
            }
            at = chunk_end;
        }
        None
    }
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

pub struct InFlightBlobs {
    /// Told when a download has a source and when one fails, to announce or withdraw this node.
    fleet: Option<Arc<dyn Fleet>>,
    // A tokio mutex: it is held across creating the temp file, so that a digest can never get
    // two downloads, and that is an await.
    downloads: Mutex<HashMap<Digest, Arc<InFlight>>>,
}

impl InFlightBlobs {
    pub fn new(fleet: Option<Arc<dyn Fleet>>) -> Self {
        Self { fleet, downloads: Mutex::default() }
    }

    /// Every download running now: digest, bytes written in order, size once known, source.
    pub async fn snapshot(&self) -> Vec<(Digest, u64, Option<u64>, Served)> {
        let downloads = self.downloads.lock().await;
        downloads
            .values()
            .map(|d| {
                let p = d.progress.borrow();
                (d.digest, p.written, p.size, p.source)
            })
            .collect()
    }

    /// The download of `digest` running now, if any.
    pub async fn get(&self, digest: &Digest) -> Option<Arc<InFlight>> {
        self.downloads.lock().await.get(digest).cloned()
    }

    pub fn join_or_start<'a>(
        self: &'a Arc<Self>,
        store: &'a Store,
        plan: &'a Plan,
        target: &'a Target,
        digest: Digest,
    ) -> BoxFuture<'a, Result<Joined, FetchError>> {
        Box::pin(async move {
            let mut downloads = self.downloads.lock().await;
            if let Some(inflight) = downloads.get(&digest) {
                return Ok(Joined::Following(inflight.clone()));
            }
            // Downloads commit before they leave the map, so a digest in neither is truly missing.
            if store.contains(&digest) {
                return Ok(Joined::Stored);
            }
            let temp = store.create_temp(&digest).await?;
            let (tx, rx) = watch::channel(Progress {
                written: 0,
                size: None,
                state: FetchState::Running,
                recent: None,
                pieces: None,
                live: false,
                source: if plan.swarm.is_some() { Served::Peer } else { Served::Upstream },
            });
            let tx = Arc::new(tx);
            let inflight = Arc::new(InFlight { digest, reader: temp.reader(), progress: rx });
            downloads.insert(digest, inflight.clone());
            drop(downloads);

            tracing::info!(%digest, registry = %target.registry, repo = %target.repo, "blob miss: fetching");
            let this = self.clone();
            let (store, plan, target) = (store.clone(), plan.clone(), target.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let outcome =
                    download::download(temp, &plan, &target, digest, &tx, this.fleet.as_ref());
                // A panic in the download must still fail its followers and free the digest,
                // or every later request for it would follow a download that never ends.
                let outcome = std::panic::AssertUnwindSafe(outcome)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(FetchError::Panicked { digest }));
                let retry = matches!(outcome, Err(FetchError::PeerCorrupt(_)));
                match outcome {
                    Ok(size) => {
                        let seconds = started.elapsed().as_secs_f64();
                        let mib_s = size as f64 / (1024.0 * 1024.0) / seconds.max(1e-9);
                        tracing::info!(%digest, size, seconds, mib_s, "blob stored");
                        tx.send_modify(|p| p.state = FetchState::Committed);
                    }
                    Err(e) => {
                        if matches!(e, FetchError::UnknownRegistry(_)) {
                            // A hosted name's miss: the answer is a 404, nothing went wrong.
                            tracing::debug!(%digest, error = %e, "blob not held; no upstream to ask");
                        } else {
                            tracing::warn!(%digest, error = %e, "blob fetch failed; nothing stored");
                        }
                        if let Some(fleet) = &this.fleet {
                            fleet.unprovide(&digest);
                        }
                        tx.send_modify(|p| p.state = FetchState::Failed(Arc::new(e)));
                    }
                }
                this.downloads.lock().await.remove(&digest);
                if retry {
                    // The bytes already sent to followers cannot be taken back, so their responses
                    // failed; the blob itself is fetched again, without the peer that lied, so the
                    // cache ends up right and the clients' retries find it.
                    let again: BoxFuture<'_, _> =
                        Box::pin(this.join_or_start(&store, &plan, &target, digest));
                    if let Err(e) = again.await {
                        tracing::warn!(%digest, error = %e, "refetch after a corrupt peer failed to start");
                    }
                }
            });
            Ok(Joined::Following(inflight))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_batch_slices_within_one_chunk_and_only_its_own_bytes() {
        let chunks: Arc<[Bytes]> =
            Arc::from([Bytes::from_static(b"abcd"), Bytes::from_static(b"efgh")]);
        let recent = Recent { offset: 100, chunks };
        assert_eq!(recent.slice(100, 200).unwrap(), "abcd");
        assert_eq!(recent.slice(102, 200).unwrap(), "cd");
        assert_eq!(recent.slice(104, 200).unwrap(), "efgh");
        assert_eq!(recent.slice(105, 107).unwrap(), "fg");
        // Bytes held back (the end) or outside the batch are never served from it.
        assert_eq!(recent.slice(101, 101), None);
        assert_eq!(recent.slice(99, 200), None);
        assert_eq!(recent.slice(108, 200), None);
    }
}
