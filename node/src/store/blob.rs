//! Reading committed blobs, and the in-memory path for small ones (manifests).
//!
//! A [`BlobReader`] carries an in-use mark: eviction skips any blob that has one alive. Hot
//! reads touch only the in-memory state; access times reach the index in batches.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use shoal_protocol::media_type::MAX_MANIFEST_SIZE;
use shoal_protocol::{Digest, DigestMismatch};
use tracing::warn;

use super::blocking;
use super::{BlobMeta, Inner, Store, StoreError, evict};

/// A committed blob opened for reading. Use positional reads ([`super::read_at`]) so that one
/// reader can serve several ranges at once.
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

#[cfg(test)]
mod tests {
    use shoal_protocol::Digest;
    use shoal_protocol::media_type::OCI_MANIFEST;

    use super::super::StoreError;
    use super::super::test_util::{content, files_under, fresh, put};

    #[tokio::test]
    async fn small_blobs_round_trip_with_their_media_type() {
        let (_dir, store) = fresh(None);
        let manifest = br#"{"schemaVersion":2}"#;
        let digest = Digest::of(manifest);
        store.put_small(&digest, Some(OCI_MANIFEST), manifest).await.unwrap();
        // A second put of the same bytes is a no-op, not a second copy.
        store.put_small(&digest, Some(OCI_MANIFEST), manifest).await.unwrap();
        assert_eq!(store.total_size(), manifest.len() as u64);

        let (meta, bytes) = store.read_small(&digest, 1024).await.unwrap().expect("stored");
        assert_eq!(&bytes[..], manifest);
        assert_eq!(meta.size, manifest.len() as u64);
        assert_eq!(meta.media_type.as_deref(), Some(OCI_MANIFEST));
        assert_eq!(store.blob_meta(&digest).unwrap().media_type.as_deref(), Some(OCI_MANIFEST));

        let err = store.read_small(&digest, 4).await.unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { size, max: 4, .. } if size == manifest.len() as u64)
        );
    }

    #[tokio::test]
    async fn put_small_refuses_wrong_bytes_and_oversized_blobs() {
        let (dir, store) = fresh(None);
        let digest = Digest::of(b"one");
        let err = store.put_small(&digest, None, b"two").await.unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch(_)), "{err:?}");
        assert!(!store.contains(&digest));

        let big = vec![0u8; (shoal_protocol::media_type::MAX_MANIFEST_SIZE + 1) as usize];
        let err = store.put_small(&Digest::of(&big), None, &big).await.unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
        assert!(files_under(&dir.path().join("blobs")).is_empty());
        assert_eq!(store.total_size(), 0);
    }

    #[tokio::test]
    async fn missing_blobs_read_as_none() {
        let (_dir, store) = fresh(None);
        let digest = Digest::of(b"never stored");
        assert!(store.open_blob(&digest).await.unwrap().is_none());
        assert!(store.read_small(&digest, 100).await.unwrap().is_none());
        assert!(store.blob_meta(&digest).is_none());
    }

    #[tokio::test]
    async fn a_corrupted_small_blob_is_quarantined_not_served() {
        let (dir, store) = fresh(None);
        let manifest = br#"{"schemaVersion":2,"layers":[]}"#;
        let digest = Digest::of(manifest);
        store.put_small(&digest, None, manifest).await.unwrap();
        let hex = digest.hex();
        let path = dir.path().join("blobs/sha256").join(&hex[..2]).join(&hex);
        let mut damaged = manifest.to_vec();
        damaged[3] ^= 1;
        std::fs::write(&path, &damaged).unwrap();

        assert!(store.read_small(&digest, 1024).await.unwrap().is_none());
        assert!(!store.contains(&digest));
        assert!(!path.exists());
        let quarantined = files_under(&dir.path().join("quarantine"));
        assert_eq!(quarantined.len(), 1);
        assert_eq!(std::fs::read(&quarantined[0]).unwrap(), damaged);
        assert_eq!(store.total_size(), 0);
    }

    #[tokio::test]
    async fn a_blob_file_deleted_behind_our_back_is_forgotten() {
        let (dir, store) = fresh(None);
        let digest = put(&store, &content(8, 3000)).await;
        let hex = digest.hex();
        std::fs::remove_file(dir.path().join("blobs/sha256").join(&hex[..2]).join(&hex)).unwrap();
        assert!(store.open_blob(&digest).await.unwrap().is_none());
        assert!(!store.contains(&digest));
        assert_eq!(store.total_size(), 0);
    }
}
