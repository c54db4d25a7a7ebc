//! One blob download, run by the single-flight task of `inflight.rs`.
//!
//! Two stages joined by a short queue of `(offset, chunk)`: the fetch stage takes pieces from
//! the swarm of peers (`swarm/`), or, when no peer has the blob, streams it in order from the
//! sequential sources (the upstream), resuming a broken transfer at the offset reached. The
//! writer stage takes what is queued as one batch, writes it at its offsets, hashes the
//! contiguous prefix (on the fly for bytes that arrive in order, read back for pieces that
//! arrived ahead of it), and publishes the progress that followers and peers read, with the
//! last few MiB written in order. Nothing is copied on the way, and memory stays bounded by the
//! queue and the window kept for followers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use shoal_protocol::Digest;
use tokio::sync::{mpsc, watch};

use super::coverage::Coverage;
use super::fleet::Fleet;
use super::inflight::{Progress, Recent};
use super::served::Served;
use super::source::{BlobSource, SourceStream};
use super::swarm::{self, Contributions, Outcome, Swarm};
use super::{FetchError, PeerClient, Target};
use crate::store::{StoreError, TempBlob};

/// Upper bound of one write to the temp file.
const WRITE_BATCH: usize = 1024 * 1024;
/// Chunks received but not yet written.
const WRITE_QUEUE: usize = 8;
/// Bytes written last that stay in memory for followers (see [`Recent`]).
const RECENT_WINDOW: usize = 2 * 1024 * 1024;
/// Resume a broken transfer at most this many times per source before trying the next one.
const RESUMES_PER_SOURCE: u32 = 3;

/// Where a download takes its bytes from.
#[derive(Clone)]
pub struct Plan {
    /// Peers first, in pieces (a client's miss in a fleet).
    pub swarm: Option<(Arc<Swarm>, Arc<PeerClient>)>,
    /// Then these, in order, each streaming the blob from an offset (the upstream).
    pub sequential: Arc<[Arc<dyn BlobSource>]>,
    /// This node was asked to bring the blob into its site: the swarm takes it from anywhere.
    pub into_site: bool,
}

/// Fetches, verifies and commits the blob; returns its size.
pub async fn download(
    temp: TempBlob,
    plan: &Plan,
    target: &Target,
    digest: Digest,
    progress: &Arc<watch::Sender<Progress>>,
    fleet: Option<&Arc<dyn Fleet>>,
) -> Result<u64, FetchError> {
    let (to_writer, inbox) = mpsc::channel(WRITE_QUEUE);
    let writer = tokio::spawn(write_batches(temp, inbox, progress.clone()));
    let announced = AtomicBool::new(false);
    let announce = || {
        // A provider only once bytes flow from a real source: announcing at the start would
        // let nodes that miss together follow each other in a circle.
        if !announced.swap(true, Ordering::Relaxed)
            && let Some(fleet) = fleet
        {
            fleet.provide(&digest);
        }
    };
    let mut contributions = Contributions::default();
    let fetched = async {
        if let Some((swarm, _)) = &plan.swarm {
            match swarm.run(target, digest, plan.into_site, &to_writer, progress, &announce).await? {
                Outcome::Complete(sent) => {
                    contributions = sent;
                    return Ok(());
                }
                Outcome::NoSources => {}
                Outcome::Stuck { error: e, contributions: sent } => {
                    contributions = sent;
                    tracing::warn!(%digest, error = %e, "peers stopped serving; fetching the rest from the upstream");
                }
            }
        }
        progress.send_modify(|p| {
            p.live = true;
            p.source = Served::Upstream;
        });
        let sequential = fetch(&plan.sequential, target, digest, &to_writer, progress, &announce).await;
        progress.send_modify(|p| p.live = false);
        sequential
    }
    .await;
    drop(to_writer);
    // The writer's failure (a full disk) is the cause of any fetch that stopped early.
    let temp =
        writer.await.map_err(|source| StoreError::TaskFailed { op: "write blob", source })??;
    fetched?;
    if let Some((_, client)) = &plan.swarm
        && !contributions.peers().is_empty()
        && let Err(StoreError::DigestMismatch(mismatch)) = temp.check()
    {
        // Peers sent some of these bytes: find which of them lied before the copy is dropped.
        let liars = swarm::liars(&temp, client, &contributions, digest).await;
        client.distrust(&digest, &liars);
        return Err(FetchError::PeerCorrupt(mismatch));
    }
    temp.commit(None).await.map_err(FetchError::from)
}

async fn write_batches(
    mut temp: TempBlob,
    mut inbox: mpsc::Receiver<(u64, Bytes)>,
    progress: Arc<watch::Sender<Progress>>,
) -> Result<TempBlob, FetchError> {
    let mut window = Window::default();
    let mut coverage: Option<Coverage> = None;
    let mut pending = None;
    loop {
        let (offset, first) = match pending.take() {
            Some(next) => next,
            None => match inbox.recv().await {
                Some(next) => next,
                None => break,
            },
        };
        if coverage.is_none()
            && let Some(size) = progress.borrow().size
        {
            let mut new = Coverage::new(size);
            new.record(0, temp.written());
            coverage = Some(new);
        }
        // Everything queued that continues this chunk joins it in one batch.
        let mut end = offset + first.len() as u64;
        let mut batch = vec![(offset, first)];
        let mut batch_len = end - offset;
        while batch_len < WRITE_BATCH as u64 {
            match inbox.try_recv() {
                Ok((at, chunk)) if at == end => {
                    end += chunk.len() as u64;
                    batch_len += chunk.len() as u64;
                    batch.push((at, chunk));
                }
                Ok(other) => {
                    pending = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let hashed = temp.written();
        let parts: Vec<(u64, Bytes)> = match &coverage {
            Some(coverage) => {
                batch.into_iter().flat_map(|(at, c)| coverage.wanted(hashed, at, c)).collect()
            }
            None => batch
                .into_iter()
                .filter(|(at, c)| at + c.len() as u64 > hashed && *at <= hashed)
                .map(|(at, c)| (hashed, c.slice((hashed - at) as usize..)))
                .collect(),
        };
        for (start, chunks) in runs(parts) {
            let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
            if start == temp.written() {
                temp.write_chunks(Arc::from(chunks.as_slice())).await?;
                window.push_at(start, chunks);
            } else {
                temp.write_at(start, Arc::from(chunks.as_slice())).await?;
            }
            if let Some(coverage) = &mut coverage {
                coverage.record(start, len);
            }
        }
        if let Some(coverage) = &coverage {
            let end = coverage.contiguous_end(temp.written());
            if end > temp.written() {
                temp.hash_through(end).await?;
            }
        }
        let written = temp.written();
        let recent = window.recent();
        let whole = coverage.as_ref().map(|c| Arc::new(c.whole().clone()));
        progress.send_modify(|p| {
            p.written = written;
            p.recent = recent;
            p.pieces = whole;
        });
    }
    Ok(temp)
}

/// Groups parts into runs of contiguous bytes.
fn runs(parts: Vec<(u64, Bytes)>) -> Vec<(u64, Vec<Bytes>)> {
    let mut runs: Vec<(u64, u64, Vec<Bytes>)> = Vec::new();
    for (at, chunk) in parts {
        let len = chunk.len() as u64;
        match runs.last_mut() {
            Some((_, end, chunks)) if *end == at => {
                *end += len;
                chunks.push(chunk);
            }
            _ => runs.push((at, at + len, vec![chunk])),
        }
    }
    runs.into_iter().map(|(start, _, chunks)| (start, chunks)).collect()
}

/// The chunks written last, at least [`RECENT_WINDOW`] bytes of them once there are that many.
#[derive(Default)]
struct Window {
    chunks: VecDeque<Bytes>,
    /// Where the first chunk starts in the blob.
    start: u64,
    len: usize,
}

impl Window {
    /// Adds chunks just written in order at `offset`, and drops those no longer needed. Bytes
    /// that do not continue the window (the hash caught up over pieces read back from the
    /// file) start a new one.
    fn push_at(&mut self, offset: u64, written: Vec<Bytes>) {
        if offset != self.start + self.len as u64 {
            self.chunks.clear();
            self.start = offset;
            self.len = 0;
        }
        for chunk in written {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
        while self.chunks.front().is_some_and(|c| self.len - c.len() >= RECENT_WINDOW) {
            let dropped = self.chunks.pop_front().map_or(0, |c| c.len());
            self.len -= dropped;
            self.start += dropped as u64;
        }
    }

    /// What followers may take from memory now.
    fn recent(&self) -> Option<Recent> {
        (!self.chunks.is_empty())
            .then(|| Recent { offset: self.start, chunks: self.chunks.iter().cloned().collect() })
    }
}

enum Copied {
    Complete,
    /// The writer stopped (it failed); its result says why.
    WriterStopped,
}

/// Streams the blob in order from the sequential sources, from the hashed prefix on.
async fn fetch(
    sources: &[Arc<dyn BlobSource>],
    target: &Target,
    digest: Digest,
    to_writer: &mpsc::Sender<(u64, Bytes)>,
    progress: &watch::Sender<Progress>,
    announce: &(dyn Fn() + Send + Sync),
) -> Result<(), FetchError> {
    // Pieces the swarm left beyond the prefix are sent again and skipped by the writer.
    let mut received = progress.borrow().written;
    let mut last_error = None;
    for source in sources {
        let mut resumes = 0;
        loop {
            let stream = match source.open(target, &digest, received).await {
                Ok(Some(stream)) => stream,
                Ok(None) => break,
                // A hosted name has no upstream: its miss is an answer (404), not a failure.
                Err(e @ FetchError::UnknownRegistry(_)) => {
                    tracing::debug!(%digest, source = source.describe(), error = %e, "no such source");
                    last_error = Some(e);
                    break;
                }
                Err(e) => {
                    tracing::warn!(%digest, source = source.describe(), offset = received, error = %e, "source failed");
                    last_error = Some(e);
                    break;
                }
            };
            announce();
            match copy(stream, digest, &mut received, to_writer, progress).await {
                Ok(Copied::Complete | Copied::WriterStopped) => return Ok(()),
                Err(e) => {
                    tracing::warn!(%digest, source = source.describe(), received, error = %e, "transfer broke");
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

/// Hands one source's chunks to the writer, checking them against the announced size.
async fn copy(
    stream: SourceStream,
    digest: Digest,
    received: &mut u64,
    to_writer: &mpsc::Sender<(u64, Bytes)>,
    progress: &watch::Sender<Progress>,
) -> Result<Copied, FetchError> {
    let known = progress.borrow().size;
    let size = match (known, stream.size) {
        (Some(known), Some(announced)) if known != announced => {
            return Err(FetchError::Oversized { digest, size: known.min(announced) });
        }
        (known, announced) => known.or(announced),
    };
    if known.is_none() && size.is_some() {
        progress.send_modify(|p| p.size = size);
    }
    let mut chunks = stream.chunks;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if let Some(size) = size
            && *received + chunk.len() as u64 > size
        {
            return Err(FetchError::Oversized { digest, size });
        }
        let at = *received;
        *received += chunk.len() as u64;
        if to_writer.send((at, chunk)).await.is_err() {
            return Ok(Copied::WriterStopped);
        }
    }
    match size {
        Some(size) if *received < size => {
            Err(FetchError::Truncated { digest, expected: size, got: *received })
        }
        _ => Ok(Copied::Complete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_the_last_bytes_and_knows_where_they_start() {
        let chunk = |n: usize| Bytes::from(vec![0u8; n]);
        let mut window = Window::default();
        let half = RECENT_WINDOW / 2;
        window.push_at(0, vec![chunk(half), chunk(half)]);
        let recent = window.recent().unwrap();
        assert_eq!((recent.offset, recent.chunks.len()), (0, 2));
        // One more chunk: the first is no longer needed to hold RECENT_WINDOW bytes.
        window.push_at(2 * half as u64, vec![chunk(half)]);
        let recent = window.recent().unwrap();
        assert_eq!((recent.offset, recent.chunks.len()), (half as u64, 2));
        assert!(recent.slice(half as u64 - 1, u64::MAX).is_none());
        assert_eq!(recent.slice(2 * half as u64, u64::MAX).map(|b| b.len()), Some(half));
        // Bytes that do not continue the window start a new one.
        window.push_at(10 * half as u64, vec![chunk(half)]);
        let recent = window.recent().unwrap();
        assert_eq!((recent.offset, recent.chunks.len()), (10 * half as u64, 1));
    }
}
