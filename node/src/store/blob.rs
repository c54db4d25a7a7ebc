//! Reading committed blobs, and the in-memory path for small ones (manifests).
//!
//! A [`BlobReader`] carries an in-use mark: eviction skips any blob that has one alive. Hot
//! reads touch only the in-memory state; access times reach the index in batches.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use shoal_protocol::media_type::MAX_MANIFEST_SIZE;
use shoal_protocol::{Digest, DigestMismatch};
use tracing::warn;

use super::error::blocking;
use super::{BlobMeta, Inner, Store, StoreError, evict};

/// A committed blob opened for reading. Use positional reads (`FileExt::read_at`, or
/// [`BlobReader::read_chunk`]) so that one reader can serve several ranges at once.
pub struct BlobReader {
    pub file: File,
    pub size: u64,
    guard: ReadGuard,
}

/// Marks a blob as being read until dropped.
struct ReadGuard {
    inner: Arc<Inner>,
    digest: Digest,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        self.inner.state().release_reader(&self.digest);
    }
}

impl BlobReader {
    pub fn digest(&self) -> Digest {
        self.guard.digest
    }

    /// Reads up to `max_len` bytes at `offset` off the async threads; empty at end of blob.
    pub async fn read_chunk(
        self: Arc<Self>,
        offset: u64,
        max_len: usize,
    ) -> Result<Bytes, StoreError> {
        let len =
            usize::try_from(self.size.saturating_sub(offset)).unwrap_or(usize::MAX).min(max_len);
        blocking("read blob", move || {
            let mut buf = BytesMut::zeroed(len);
            let mut filled = 0;
            while filled < len {
                match self.file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(StoreError::io("read blob", &self.path(), e)),
                }
            }
            buf.truncate(filled);
            Ok(buf.freeze())
        })
        .await
    }

    fn path(&self) -> PathBuf {
        self.guard.inner.paths.blob(&self.guard.digest)
    }
}

impl Store {
    /// Opens a committed blob and records the access. `None` when it is not stored.
    pub async fn open_blob(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError> {
        let (size, guard) = {
            let mut state = self.inner.state();
            let Some(entry) = state.get(digest) else { return Ok(None) };
            state.touch(digest);
            state.acquire_reader(*digest);
            (entry.size, ReadGuard { inner: Arc::clone(&self.inner), digest: *digest })
        };
        let path = self.inner.paths.blob(digest);
        let file = blocking("open blob", move || match File::open(&path) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("open blob", &path, e)),
        })
        .await?;
        match file {
            Some(file) => Ok(Some(BlobReader { file, size, guard })),
            None => {
                drop(guard);
                warn!(%digest, "blob file vanished from the store; forgetting it");
                evict::forget(&self.inner, *digest, None).await?;
                Ok(None)
            }
        }
    }

    /// Reads a whole small blob into memory, refusing one larger than `max` bytes. The bytes
    /// are verified again; a file that no longer matches its digest is quarantined and `None`
    /// returned, so the caller refetches it.
    pub async fn read_small(
        &self,
        digest: &Digest,
        max: u64,
    ) -> Result<Option<(BlobMeta, Bytes)>, StoreError> {
        let Some(reader) = self.open_blob(digest).await? else { return Ok(None) };
        if reader.size > max {
            return Err(StoreError::TooLarge { digest: *digest, size: reader.size, max });
        }
        let store = self.clone();
        let digest = *digest;
        let read = blocking("read small blob", move || {
            let mut bytes = Vec::with_capacity(usize::try_from(reader.size).unwrap_or(0));
            (&reader.file)
                .take(reader.size)
                .read_to_end(&mut bytes)
                .map_err(|e| StoreError::io("read blob", &reader.path(), e))?;
            if bytes.len() as u64 != reader.size || Digest::of(&bytes) != digest {
                return Ok(None);
            }
            let media_type = match store.read_blob_row(&digest) {
                Ok(row) => row.and_then(|r| r.media_type),
                Err(e) => {
                    warn!(%digest, error = %e, "could not read blob media type from the index");
                    None
                }
            };
            Ok(Some((BlobMeta { size: reader.size, media_type }, Bytes::from(bytes))))
        })
        .await?;
        if read.is_none() {
            self.quarantine(digest).await?;
        }
        Ok(read)
    }

    /// Stores a small blob held in memory (at most `MAX_MANIFEST_SIZE`), verified and durable.
    pub async fn put_small(
        &self,
        digest: &Digest,
        media_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let size = bytes.len() as u64;
        if size > MAX_MANIFEST_SIZE {
            return Err(StoreError::TooLarge { digest: *digest, size, max: MAX_MANIFEST_SIZE });
        }
        let actual = Digest::of(bytes);
        if actual != *digest {
            return Err(DigestMismatch { expected: *digest, actual, len: size }.into());
        }
        if self.contains(digest) {
            return Ok(());
        }
        let mut temp = self.create_temp(digest).await?;
        temp.write(bytes).await?;
        temp.commit(media_type).await?;
        Ok(())
    }

    /// Moves a blob whose bytes no longer match its digest out of the store, keeping it for
    /// inspection instead of serving it.
    async fn quarantine(&self, digest: Digest) -> Result<(), StoreError> {
        let dir = self.inner.paths.root.join("quarantine");
        warn!(%digest, dir = %dir.display(), "stored blob does not match its digest; quarantined");
        let target = dir.join(format!("{}.{}", digest.hex(), rand::random::<u32>()));
        let make_dir = dir.clone();
        blocking("create quarantine directory", move || {
            fs::create_dir_all(&make_dir)
                .map_err(|e| StoreError::io("create directory", &make_dir, e))
        })
        .await?;
        evict::forget(&self.inner, digest, Some(target)).await
    }
}
