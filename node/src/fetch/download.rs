//! One blob download, run by the single-flight task of `inflight.rs`.
//!
//! Two stages joined by a short queue of chunks: the fetch stage pulls chunks from the sources
//! in order (resuming a broken transfer at the offset reached); the writer stage takes every
//! chunk queued so far as one batch, hashes and appends it to the temp file, and publishes the
//! progress that followers read, with the last few MiB written. Batches grow when the disk is
//! the slower side and shrink to single chunks when the network is, so followers see a
//! trickling download as it trickles. Nothing is copied on the way, and memory stays bounded
//! by the queue and the window kept for followers.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use shoal_protocol::Digest;
use tokio::sync::{mpsc, watch};

use super::fleet::Fleet;
use super::inflight::{Progress, Recent};
use super::source::{BlobSource, SourceStream};
use super::{FetchError, Target};
use crate::store::{StoreError, TempBlob};

/// Upper bound of one write to the temp file.
const WRITE_BATCH: usize = 1024 * 1024;
/// Chunks received but not yet written.
const WRITE_QUEUE: usize = 8;
/// Bytes written last that stay in memory for followers (see [`Recent`]).
const RECENT_WINDOW: usize = 2 * 1024 * 1024;
/// Resume a broken transfer at most this many times per source before trying the next one.
const RESUMES_PER_SOURCE: u32 = 3;

/// Fetches, verifies and commits the blob; returns its size.
pub async fn download(
    temp: TempBlob,
    sources: &[Arc<dyn BlobSource>],
    target: &Target,
    digest: Digest,
    progress: &Arc<watch::Sender<Progress>>,
    fleet: Option<&Arc<dyn Fleet>>,
) -> Result<u64, FetchError> {
    let (to_writer, inbox) = mpsc::channel(WRITE_QUEUE);
    let writer = tokio::spawn(write_batches(temp, inbox, progress.clone()));
    let mut contributors = Vec::new();
    let fetched =
        fetch(sources, target, digest, &to_writer, progress, &mut contributors, fleet).await;
    drop(to_writer);
    // The writer's failure (a full disk) is the cause of any fetch that stopped early.
    let temp =
        writer.await.map_err(|source| StoreError::TaskFailed { op: "write blob", source })??;
    fetched?;
    let committed = temp.commit(None).await.map_err(FetchError::from);
    if let Err(FetchError::Mismatch(mismatch)) = &committed {
        let blamed = contributors.iter().filter(|&&i| sources[i].distrust(&digest)).count();
        if blamed > 0 {
            return Err(FetchError::PeerCorrupt(mismatch.clone()));
        }
    }
    committed
}

async fn write_batches(
    mut temp: TempBlob,
    mut inbox: mpsc::Receiver<Bytes>,
    progress: Arc<watch::Sender<Progress>>,
) -> Result<TempBlob, FetchError> {
    let mut window = Window::default();
    while let Some(first) = inbox.recv().await {
        let mut batch_len = first.len();
        let mut batch = vec![first];
        while batch_len < WRITE_BATCH {
            let Ok(chunk) = inbox.try_recv() else { break };
            batch_len += chunk.len();
            batch.push(chunk);
        }
        temp.write_chunks(Arc::from(batch.as_slice())).await?;
        let recent = window.push(batch);
        let written = temp.written();
        progress.send_modify(|p| {
            p.written = written;
            p.recent = Some(recent);
        });
    }
    Ok(temp)
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
    /// Adds the chunks just written, drops those no longer needed, and returns what followers
    /// may take from memory now.
    fn push(&mut self, written: Vec<Bytes>) -> Recent {
        for chunk in written {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
        while self.chunks.front().is_some_and(|c| self.len - c.len() >= RECENT_WINDOW) {
            let dropped = self.chunks.pop_front().map_or(0, |c| c.len());
            self.len -= dropped;
            self.start += dropped as u64;
        }
        Recent { offset: self.start, chunks: self.chunks.iter().cloned().collect() }
    }
}

enum Copied {
    Complete,
    /// The writer stopped (it failed); its result says why.
    WriterStopped,
}

async fn fetch(
    sources: &[Arc<dyn BlobSource>],
    target: &Target,
    digest: Digest,
    to_writer: &mpsc::Sender<Bytes>,
    progress: &watch::Sender<Progress>,
    contributors: &mut Vec<usize>,
    fleet: Option<&Arc<dyn Fleet>>,
) -> Result<(), FetchError> {
    let mut received = 0u64;
    let mut last_error = None;
    for (index, source) in sources.iter().enumerate() {
        let mut resumes = 0;
        loop {
            let stream = match source.open(target, &digest, received).await {
                Ok(Some(stream)) => stream,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%digest, source = source.describe(), offset = received, error = %e, "source failed");
                    last_error = Some(e);
                    break;
                }
            };
            if contributors.is_empty()
                && let Some(fleet) = fleet
            {
                // A provider only once bytes flow from a real source: announcing at the start
                // would let nodes that miss together follow each other in a circle.
                fleet.provide(&digest);
            }
            if !contributors.contains(&index) {
                contributors.push(index);
            }
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
    to_writer: &mpsc::Sender<Bytes>,
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
        *received += chunk.len() as u64;
        if to_writer.send(chunk).await.is_err() {
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
        let recent = window.push(vec![chunk(half), chunk(half)]);
        assert_eq!((recent.offset, recent.chunks.len()), (0, 2));
        // One more chunk: the first is no longer needed to hold RECENT_WINDOW bytes.
        let recent = window.push(vec![chunk(half)]);
        assert_eq!((recent.offset, recent.chunks.len()), (half as u64, 2));
        assert!(recent.slice(half as u64 - 1, u64::MAX).is_none());
        assert_eq!(recent.slice(2 * half as u64, u64::MAX).map(|b| b.len()), Some(half));
    }
}
