//! Response bodies read from files in fixed-size chunks, so a blob of any size streams through
//! the node in constant memory.
//!
//! Reads are positional (`pread`) on a shared handle: a reader never disturbs another's offset,
//! and a reader of a file being downloaded keeps the same inode after it is renamed into place.
//! Followers that keep up with a download take its bytes from memory instead (see `Recent`).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use shoal_protocol::Digest;

use super::FetchError;
use super::buffers::{BufferBudget, Claim};
use super::inflight::{FetchState, InFlight};
use crate::store::BlobReader;

/// Chunk read from a file, while the buffer budget has room (`buffers.rs`; smaller past it).
/// Large enough that the hop to the blocking pool and the wake-ups around it cost little next
/// to the copy: hot GETs spent 0.36–0.42 s of CPU per GiB with 1 MiB chunks, 0.41–0.46 s with
/// 512 KiB (docs/benchmarks.md).
const CHUNK: u64 = super::buffers::LARGE;

pub type BlobBody = BoxStream<'static, Result<Bytes, FetchError>>;

/// Something that holds an open file for positional reads.
pub trait HasFile: Send + Sync + 'static {
    fn file(&self) -> &std::fs::File;
}

impl HasFile for std::fs::File {
    fn file(&self) -> &std::fs::File {
        self
    }
}

impl HasFile for BlobReader {
    fn file(&self) -> &std::fs::File {
        &self.file
    }
}

/// Streams bytes `[start, end)` of a committed blob. The reader lives as long as the stream,
/// and with it the in-use mark that keeps eviction away from the file.
///
/// One chunk is read ahead: the disk read of the next chunk overlaps the socket write of this
/// one. Memory per response stays at two chunks, each within `buffers`.
pub fn complete_file(
    digest: Digest,
    reader: BlobReader,
    start: u64,
    end: u64,
    buffers: BufferBudget,
) -> BlobBody {
    let reader = Arc::new(reader);
    let first = spawn_read(&reader, start, end, &buffers);
    stream::try_unfold((reader, start, first), move |(reader, pos, pending)| {
        let buffers = buffers.clone();
        async move {
            let Some(pending) = pending else { return Ok(None) };
            let chunk = pending
                .await
                .map_err(io::Error::other)
                .and_then(|read| read)
                .map_err(|source| FetchError::Read { digest, source })?;
            let next = pos + chunk.len() as u64;
            let ahead = spawn_read(&reader, next, end, &buffers);
            Ok(Some((chunk, (reader, next, ahead))))
        }
    })
    .boxed()
}

type PendingRead = tokio::task::JoinHandle<io::Result<Bytes>>;

fn spawn_read(
    reader: &Arc<BlobReader>,
    pos: u64,
    end: u64,
    buffers: &BufferBudget,
) -> Option<PendingRead> {
    if pos >= end {
        return None;
    }
    let (reader, claim) = (reader.clone(), buffers.claim((end - pos).min(CHUNK)));
    Some(tokio::task::spawn_blocking(move || read_blocking(reader.file(), pos, claim)))
}

/// Streams bytes `[start, end)` of a blob that is still being downloaded: takes what has been
/// written (from the last batch in memory when caught up with it, else from the file), then
/// waits for more. Ends with the fetch's error if the fetch fails.
///
/// The blob's last byte is held back until the download is verified: a client must never
/// receive every byte of a blob whose digest turns out wrong, or it would see a complete,
/// well-formed response. Without the last byte its response is cut short, which every client
/// treats as a failed pull.
pub fn growing_file(
    inflight: Arc<InFlight>,
    start: u64,
    end: u64,
    buffers: BufferBudget,
) -> BlobBody {
    let progress = inflight.subscribe();
    stream::try_unfold((inflight, progress, start), move |(inflight, mut progress, pos)| {
        let buffers = buffers.clone();
        async move {
            let digest = inflight.digest;
            loop {
                if pos >= end {
                    return Ok(None);
                }
                let snapshot = progress.borrow_and_update().clone();
                let verified = match snapshot.state {
                    FetchState::Failed(cause) => return Err(FetchError::Joined { digest, cause }),
                    FetchState::Committed => true,
                    FetchState::Running => false,
                };
                let available = snapshot.written.min(end);
                let readable = match snapshot.size {
                    Some(size) if !verified && available == size => available - 1,
                    _ => available,
                };
                if readable > pos {
                    let in_memory = snapshot.recent.as_ref().and_then(|r| r.slice(pos, readable));
                    let chunk = match in_memory {
                        Some(chunk) => chunk,
                        None => {
                            let claim = buffers.claim((readable - pos).min(CHUNK));
                            read_off_thread(inflight.reader.clone(), pos, claim)
                                .await
                                .map_err(|source| FetchError::Read { digest, source })?
                        }
                    };
                    let next = pos + chunk.len() as u64;
                    return Ok(Some((chunk, (inflight, progress, next))));
                }
                if verified {
                    // Everything is written and we are short of `end`: the range outran the blob.
                    return Err(FetchError::Truncated { digest, expected: end, got: pos });
                }
                if progress.changed().await.is_err() {
                    // The sender is gone without a final state: only a panicked fetch task.
                    return Err(FetchError::Truncated { digest, expected: end, got: pos });
                }
            }
        }
    })
    .boxed()
}

/// Streams bytes `[start, end)` of a blob still downloading that are already in its file (a
/// piece for a peer). Nothing is held back: the peer verifies the whole blob itself.
pub fn written_part(
    inflight: Arc<InFlight>,
    start: u64,
    end: u64,
    buffers: BufferBudget,
) -> BlobBody {
    stream::try_unfold((inflight, start), move |(inflight, pos)| {
        let buffers = buffers.clone();
        async move {
            if pos >= end {
                return Ok(None);
            }
            let claim = buffers.claim((end - pos).min(CHUNK));
            let chunk = read_off_thread(inflight.reader.clone(), pos, claim)
                .await
                .map_err(|source| FetchError::Read { digest: inflight.digest, source })?;
            let next = pos + chunk.len() as u64;
            Ok(Some((chunk, (inflight, next))))
        }
    })
    .boxed()
}

async fn read_off_thread<F: HasFile>(file: Arc<F>, pos: u64, claim: Claim) -> io::Result<Bytes> {
    tokio::task::spawn_blocking(move || read_blocking(file.file(), pos, claim))
        .await
        .map_err(io::Error::other)?
}

/// A chunk of exactly the claim's length: a file shorter than that was damaged behind the
/// store's back.
fn read_blocking(file: &std::fs::File, pos: u64, claim: Claim) -> io::Result<Bytes> {
    let len = claim.len();
    let chunk = claim.read(file, pos)?;
    if (chunk.len() as u64) < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "blob file is shorter than its recorded size",
        ));
    }
    Ok(chunk)
}
