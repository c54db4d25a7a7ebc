//! A pushed blob being received: a file in `tmp/` whose digest is known only at its end.
//!
//! A download knows its digest from the start and is checked against it byte by byte
//! (`temp.rs`). A push names its digest only when it closes (`PUT ...?digest=`), so an upload
//! hashes what it receives and compares at the end; what it writes is the same kind of temp
//! file, committed by the same durable rename. Every append checks room first, as a download's
//! claim does: a push that would fill the disk is refused, and its file removed, before the
//! write that would find the disk full (which could be the index's). Dropped unfinished (an
//! abandoned or cancelled upload), its file is removed.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use shoal_protocol::{Digest, DigestMismatch, Sha512Digest};

use super::aliases::sha512_of_file;
use super::space::{INDEX_HEADROOM, disk};
use super::temp::{commit_verified, remove_temp, remove_temp_off_thread, write_chunks_at};
use super::{Inner, Store, StoreError, blocking};

/// A blob being pushed. See the module documentation.
pub struct UploadFile {
    inner: Arc<Inner>,
    path: PathBuf,
    file: Arc<File>,
    /// `None` after a failed or cancelled append: the file may miss bytes, so it cannot finish.
    hasher: Option<Sha256>,
    written: u64,
    /// False once committed: the file is the blob's now.
    remove_on_drop: bool,
}

impl Drop for UploadFile {
    fn drop(&mut self) {
        if self.remove_on_drop {
            remove_temp_off_thread(std::mem::take(&mut self.path));
        }
    }
}

impl Store {
    /// Starts receiving a pushed blob.
    pub async fn begin_upload(&self) -> Result<UploadFile, StoreError> {
        let inner = Arc::clone(&self.inner);
        let seq = inner.temp_seq.fetch_add(1, Ordering::Relaxed);
        let path = inner.paths.tmp.join(format!("upload.{seq}.{:016x}", rand::random::<u64>()));
        let (file, path) = blocking("create upload file", move || {
            // Readable too: a blob pushed by sha512 is hashed again from the file.
            let file = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| StoreError::io("create upload file", &path, e))?;
            Ok((file, path))
        })
        .await?;
        Ok(UploadFile {
            inner,
            path,
            file: Arc::new(file),
            hasher: Some(Sha256::new()),
            written: 0,
            remove_on_drop: true,
        })
    }
}

impl UploadFile {
    /// Bytes received so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// False once an append failed or was cancelled: the upload must start over.
    pub fn is_intact(&self) -> bool {
        self.hasher.is_some()
    }

    /// Appends chunks, in order, hashing them on the way. Refused, and the file removed, when
    /// they would take the upload past the size cap or past the room the disk has.
    pub async fn append(&mut self, chunks: Arc<[Bytes]>) -> Result<(), StoreError> {
        let Some(mut hasher) = self.hasher.take() else {
            return Err(StoreError::IncompleteWrite { path: self.path.clone() });
        };
        let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        let size = self.written.saturating_add(len);
        if let Err(e) = self.check_room(size).await {
            let path = self.path.clone();
            blocking("remove refused upload", move || {
                remove_temp(&path);
                Ok(())
            })
            .await?;
            return Err(e);
        }
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        let offset = self.written;
        let hasher = blocking("write upload", move || {
            write_chunks_at(&file, &path, offset, &chunks)?;
            for chunk in chunks.iter() {
                hasher.update(chunk);
            }
            Ok(hasher)
        })
        .await?;
        self.hasher = Some(hasher);
        self.written = size;
        Ok(())
    }

    async fn check_room(&self, size: u64) -> Result<(), StoreError> {
        if let Some(max) = self.inner.max_size
            && size > max
        {
            return Err(StoreError::UploadOverCap { size, max });
        }
        let root = self.inner.paths.root.clone();
        let free = blocking("measure free space", move || disk(&root)).await?.free;
        let usable = {
            let state = self.inner.state();
            free.saturating_sub(INDEX_HEADROOM)
                .saturating_sub(state.claims.pending())
                .saturating_add(state.evictable())
                .saturating_add(self.written)
        };
        if size > usable {
            return Err(StoreError::UploadNoRoom {
                size,
                usable,
                path: self.inner.paths.root.clone(),
            });
        }
        Ok(())
    }

    /// The digest of what was received so far.
    pub fn digest(&self) -> Option<Digest> {
        let hasher = self.hasher.clone()?;
        Some(Digest::from_raw(hasher.finalize().into()))
    }

    /// The sha256 of what was received, and its sha512, read back from the file in constant
    /// memory: a client names its blob's digest only at the end, and sha512 is rare enough
    /// that hashing every upload twice on the way in would cost every push for a few.
    pub async fn both_digests(&self) -> Result<(Digest, Sha512Digest), StoreError> {
        let Some(sha256) = self.digest() else {
            return Err(StoreError::IncompleteWrite { path: self.path.clone() });
        };
        let (file, path, size) = (Arc::clone(&self.file), self.path.clone(), self.written);
        blocking("hash upload with sha512", move || {
            Ok((sha256, sha512_of_file(&file, size, &path)?))
        })
        .await
    }

    /// Checks the bytes against `expected` and, when they match, commits them as that blob
    /// (a no-op when the store holds it already). On a mismatch the file is removed.
    pub async fn finish(
        mut self,
        expected: &Digest,
        media_type: Option<&str>,
    ) -> Result<u64, StoreError> {
        let Some(actual) = self.digest() else {
            return Err(StoreError::IncompleteWrite { path: self.path.clone() });
        };
        if actual != *expected {
            return Err(DigestMismatch { expected: *expected, actual, len: self.written }.into());
        }
        // From here the commit owns the file, and removes it if it fails.
        self.remove_on_drop = false;
        let path = std::mem::take(&mut self.path);
        let file = Arc::clone(&self.file);
        let media_type = media_type.map(str::to_owned);
        commit_verified(&self.inner, actual, path, file, self.written, media_type).await?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use shoal_protocol::Digest;

    use crate::store::StoreError;
    use crate::store::test_util::{content, files_under, fresh};

    fn chunks(bytes: &[u8]) -> Arc<[Bytes]> {
        bytes.chunks(1000).map(Bytes::copy_from_slice).collect::<Vec<_>>().into()
    }

    #[tokio::test]
    async fn an_upload_becomes_the_blob_it_hashes_to() {
        let (dir, store) = fresh(None);
        let bytes = content(3, 5000);
        let digest = Digest::of(&bytes);
        let mut upload = store.begin_upload().await.unwrap();
        upload.append(chunks(&bytes[..1200])).await.unwrap();
        upload.append(chunks(&bytes[1200..])).await.unwrap();
        assert_eq!(upload.written(), 5000);
        let both = (digest, shoal_protocol::Sha512Digest::of(&bytes));
        assert_eq!(upload.both_digests().await.unwrap(), both);
        assert_eq!(upload.finish(&digest, None).await.unwrap(), 5000);
        assert!(store.contains(&digest));
        let reader = store.open_blob(&digest).await.unwrap().unwrap();
        assert_eq!(reader.size, 5000);
        assert!(files_under(&dir.path().join("tmp")).is_empty());
    }

    #[tokio::test]
    async fn an_upload_that_lies_about_its_digest_leaves_nothing() {
        let (dir, store) = fresh(None);
        let bytes = content(4, 3000);
        let claimed = Digest::of(b"something else");
        let mut upload = store.begin_upload().await.unwrap();
        upload.append(chunks(&bytes)).await.unwrap();
        let err = upload.finish(&claimed, None).await.unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch(_)), "{err:?}");
        assert!(!store.contains(&claimed));
        tokio::task::yield_now().await;
        // The removal runs on a blocking thread; give it a moment.
        for _ in 0..50 {
            if files_under(&dir.path().join("tmp")).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(files_under(&dir.path().join("tmp")).is_empty());
        assert!(files_under(&dir.path().join("blobs")).is_empty());
    }

    #[tokio::test]
    async fn an_upload_past_the_size_cap_is_refused_and_removed() {
        let (dir, store) = fresh(Some(4000));
        let mut upload = store.begin_upload().await.unwrap();
        upload.append(chunks(&content(5, 3000))).await.unwrap();
        let err = upload.append(chunks(&content(6, 3000))).await.unwrap_err();
        assert!(matches!(err, StoreError::UploadOverCap { size: 6000, max: 4000 }), "{err:?}");
        assert!(!upload.is_intact());
        assert!(files_under(&dir.path().join("tmp")).is_empty());
        let err = upload.finish(&Digest::of(b"x"), None).await.unwrap_err();
        assert!(matches!(err, StoreError::IncompleteWrite { .. }), "{err:?}");
    }
}
