//! One blob download, run by the single-flight task of `inflight.rs`.
//!
//! Two stages joined by a short queue: the fetch stage pulls bytes from the sources in order
//! (resuming a broken transfer at the offset reached) and groups the chunks into batches
//! without copying them; the writer stage hashes and appends each batch to the temp file and
//! publishes the progress that followers read, the batch included. The network and the disk
//! work at the same time, and at most a few batches are held in memory.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use shoal_protocol::Digest;
use tokio::sync::{mpsc, watch};

use super::fleet::Fleet;
use super::inflight::{Progress, Recent};
use super::source::{BlobSource, SourceStream};
use super::{FetchError, Target};
use crate::store::{StoreError, TempBlob};

/// Upper bound of one write to the temp file.
const WRITE_BATCH: usize = 1024 * 1024;
/// Batches received but not yet written.
const WRITE_QUEUE: usize = 2;
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
    let (batches, inbox) = mpsc::channel(WRITE_QUEUE);
    let writer = tokio::spawn(write_batches(temp, inbox, progress.clone()));
    let mut contributors = Vec::new();
    let fetched =
        fetch(sources, target, digest, &batches, progress, &mut contributors, fleet).await;
    drop(batches);
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

type Batch = Arc<[Bytes]>;

async fn write_batches(
    mut temp: TempBlob,
    mut inbox: mpsc::Receiver<Batch>,
    progress: Arc<watch::Sender<Progress>>,
) -> Result<TempBlob, FetchError> {
    while let Some(batch) = inbox.recv().await {
        let offset = temp.written();
        temp.write_chunks(Arc::clone(&batch)).await?;
        let written = temp.written();
        progress.send_modify(|p| {
            p.written = written;
            p.recent = Some(Recent { offset, chunks: batch });
        });
    }
    Ok(temp)
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
    batches: &mpsc::Sender<Batch>,
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
            match copy(stream, digest, &mut received, batches, progress).await {
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

/// Moves one source's stream into batches for the writer.
async fn copy(
    stream: SourceStream,
    digest: Digest,
    received: &mut u64,
    batches: &mpsc::Sender<Batch>,
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
    let mut batch = Vec::new();
    let mut batch_len = 0;
    let mut chunks = stream.chunks.peekable();
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                // Hand over what did arrive: the resume starts where `received` says.
                if !batch.is_empty() && batches.send(batch.into()).await.is_err() {
                    return Ok(Copied::WriterStopped);
                }
                return Err(e);
            }
        };
        if let Some(size) = size
            && *received + chunk.len() as u64 > size
        {
            return Err(FetchError::Oversized { digest, size });
        }
        *received += chunk.len() as u64;
        batch_len += chunk.len();
        batch.push(chunk);
        // Batches keep the hops to the blocking pool few, but bytes that the source is slow to
        // follow with go out at once, so followers see a trickling download as it trickles.
        let more_ready = batch_len < WRITE_BATCH
            && std::pin::Pin::new(&mut chunks).peek().now_or_never().is_some();
        if !more_ready {
            batch_len = 0;
            if batches.send(std::mem::take(&mut batch).into()).await.is_err() {
                return Ok(Copied::WriterStopped);
            }
        }
    }
    if !batch.is_empty() && batches.send(batch.into()).await.is_err() {
        return Ok(Copied::WriterStopped);
    }
    match size {
        Some(size) if *received < size => {
            Err(FetchError::Truncated { digest, expected: size, got: *received })
        }
        _ => Ok(Copied::Complete),
    }
}
