//! Writing a blob: a temp file that is hashed as it grows and becomes a blob only if verified.
//!
//! The discipline: write to `tmp/`, hash every byte, check the digest, fsync the file, rename it
//! into `blobs/`, fsync the directory, then record it in the index. Until the rename nobody can
//! open it by digest; after it, it is complete. A guard removes the temp file when the write is
//! abandoned — dropped, cancelled, panicked, or failed.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use shoal_protocol::{Digest, DigestVerifier};
use tracing::{debug, warn};

use super::blocking;
use super::layout::fsync_dir;
use super::state::Entry;
use super::tables::{self, BLOBS, BlobRow};
use super::{Inner, Store, StoreError, evict};

/// Read-back size when hashing pieces that were written out of order.
const HASH_READ: u64 = 1024 * 1024;

/// A blob being written. Dropped without [`TempBlob::commit`], its temp file is removed.
pub struct TempBlob {
    guard: TempGuard,
    file: Arc<File>,
    reader: Arc<File>,
    verifier: Option<DigestVerifier>,
    written: u64,
}

/// Owns the temp file's name, the blob's "being written" mark and its claim on disk room.
struct TempGuard {
    inner: Arc<Inner>,
    /// Names its claim in `State::claims`.
    id: u64,
    digest: Digest,
    path: PathBuf,
    remove_file: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.remove_file {
            remove_temp_off_thread(std::mem::take(&mut self.path));
        }
        let mut state = self.inner.state();
        state.release_writer(&self.digest);
        state.claims.remove(self.id);
    }
}

/// Writes `chunks` one after the other from `offset`. A failed write removes the temp file at
/// once: on a full disk that frees the space, and the blob cannot be committed anyway.
pub(super) fn write_chunks_at(
    file: &File,
    path: &Path,
    offset: u64,
    chunks: &[Bytes],
) -> Result<(), StoreError> {
    let mut at = offset;
    for chunk in chunks {
        file.write_all_at(chunk, at).map_err(|e| {
            remove_temp(path);
            StoreError::io("write temp blob", path, e)
        })?;
        at += chunk.len() as u64;
    }
    Ok(())
}

/// Removes an abandoned temp file from a `Drop`: unlinking a large file can take a while, so
/// off the async threads when there are some.
pub(super) fn remove_temp_off_thread(path: PathBuf) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || remove_temp(&path));
        }
        Err(_) => remove_temp(&path),
    }
}

pub(super) fn remove_temp(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => debug!(path = %path.display(), "removed abandoned temp blob"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warn!(path = %path.display(), error = %e, "could not remove temp blob"),
    }
}

impl Store {
    /// Starts writing the blob `digest` to a uniquely named temp file in `tmp/`.
    pub async fn create_temp(&self, digest: &Digest) -> Result<TempBlob, StoreError> {
        let inner = Arc::clone(&self.inner);
        let seq = inner.temp_seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}.{seq}.{:016x}.partial", digest.hex(), rand::random::<u64>());
        let path = inner.paths.tmp.join(name);
        let (file, reader, path) = blocking("create temp blob", move || {
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| StoreError::io("create temp blob", &path, e))?;
            let reader =
                File::open(&path).map_err(|e| StoreError::io("open temp blob", &path, e))?;
            Ok((file, reader, path))
        })
        .await?;
        {
            let mut state = inner.state();
            state.acquire_writer(*digest);
            state.claims.add(seq, *digest);
        }
        Ok(TempBlob {
            guard: TempGuard { inner, id: seq, digest: *digest, path, remove_file: true },
            file: Arc::new(file),
            reader: Arc::new(reader),
            verifier: Some(digest.verifier()),
            written: 0,
        })
    }
}

impl TempBlob {
    pub fn path(&self) -> &Path {
        &self.guard.path
    }

    pub fn digest(&self) -> Digest {
        self.guard.digest
    }

    /// A read-only handle to the same file, for readers following the growing blob with
    /// positional reads (`FileExt::read_at`). It stays valid after commit renames the file
    /// (same inode); bytes below [`TempBlob::written`] are on the file when it is read.
    pub fn reader(&self) -> Arc<File> {
        Arc::clone(&self.reader)
    }

    /// Bytes written and hashed so far, from the first: the prefix readers may follow.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends a chunk (copied; see [`TempBlob::write_chunks`] to avoid the copy).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.write_chunks(Arc::from([Bytes::copy_from_slice(chunk)])).await
    }

    /// Appends chunks, in order. When this returns `Ok`, the bytes are in the file for every
    /// reader. On error the temp file is removed at once (freeing the space on a full disk) and
    /// the blob can no longer be committed. Refused without writing once the blob was refused
    /// room ([`Store::reserve`]) or grows past the size cap.
    ///
    /// The chunks are written as they came from the network, never copied into one buffer.
    /// Hashing and writing happen off the async threads, on two threads at once: they cost
    /// about the same per byte, and one after the other they made every byte wait for both.
    pub async fn write_chunks(&mut self, chunks: Arc<[Bytes]>) -> Result<(), StoreError> {
        // Taken for the duration of the write: if this future is dropped midway, the verifier
        // stays gone and commit refuses a blob whose file may be missing bytes.
        let Some(mut verifier) = self.verifier.take() else {
            return Err(StoreError::IncompleteWrite { path: self.guard.path.clone() });
        };
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        let inner = &self.guard.inner;
        let accounted = inner.state().claims.write(self.guard.id, len, inner.max_size);
        if let Err(refusal) = accounted {
            let path = self.guard.path.clone();
            blocking("remove refused temp blob", move || {
                remove_temp(&path);
                Ok(())
            })
            .await?;
            return Err(refusal.error(self.guard.digest, &inner.paths.root));
        }
        let file = Arc::clone(&self.file);
        let path = self.guard.path.clone();
        let offset = self.written;
        let to_hash = Arc::clone(&chunks);
        let hashed = blocking("hash temp blob", move || {
            for chunk in to_hash.iter() {
                verifier.update(chunk);
            }
            Ok(verifier)
        });
        let written =
            blocking("write temp blob", move || write_chunks_at(&file, &path, offset, &chunks));
        let (verifier, written) = tokio::join!(hashed, written);
        let verifier = verifier?;
        written?;
        self.written = verifier.len();
        self.verifier = Some(verifier);
        Ok(())
    }

    /// Writes chunks at `offset`, beyond the hashed prefix, without hashing them: pieces that
    /// arrive out of order. [`TempBlob::hash_through`] hashes them once the bytes before them
    /// are in. The caller keeps track of which bytes are written.
    pub async fn write_at(&self, offset: u64, chunks: Arc<[Bytes]>) -> Result<(), StoreError> {
        let file = Arc::clone(&self.file);
        let path = self.guard.path.clone();
        blocking("write temp blob", move || write_chunks_at(&file, &path, offset, &chunks)).await
    }

    /// Hashes the bytes from the end of the hashed prefix up to `end`, reading them back from
    /// the file: they were written by [`TempBlob::write_at`] and every byte below `end` must be.
    pub async fn hash_through(&mut self, end: u64) -> Result<(), StoreError> {
        let Some(mut verifier) = self.verifier.take() else {
            return Err(StoreError::IncompleteWrite { path: self.guard.path.clone() });
        };
        let reader = Arc::clone(&self.reader);
        let path = self.guard.path.clone();
        let verifier = blocking("hash temp blob", move || {
            while verifier.len() < end {
                let len = (end - verifier.len()).min(HASH_READ) as usize;
                let chunk = super::read_at(&reader, verifier.len(), len)
                    .map_err(|e| StoreError::io("read back temp blob", &path, e))?;
                if chunk.is_empty() {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "piece missing from file");
                    return Err(StoreError::io("read back temp blob", &path, e));
                }
                verifier.update(&chunk);
            }
            Ok(verifier)
        })
        .await?;
        self.written = verifier.len();
        self.verifier = Some(verifier);
        Ok(())
    }

    /// Whether the bytes hashed so far match the digest, without committing: a copy that does
    /// not match stays on disk, so that its pieces can be compared with a good copy's.
    pub fn check(&self) -> Result<u64, StoreError> {
        let Some(verifier) = &self.verifier else {
            return Err(StoreError::IncompleteWrite { path: self.guard.path.clone() });
        };
        Ok(verifier.clone().finish()?)
    }

    /// Verifies the digest and makes the blob durable and visible; returns its size.
    ///
    /// On a mismatch the temp file is removed and [`StoreError::DigestMismatch`] returned. If
    /// the blob was committed meanwhile by another writer, this copy is discarded. May evict
    /// other blobs when the store is over its size cap.
    pub async fn commit(mut self, media_type: Option<&str>) -> Result<u64, StoreError> {
        let Some(verifier) = self.verifier.take() else {
            return Err(StoreError::IncompleteWrite { path: self.guard.path.clone() });
        };
        // On mismatch the guard, dropped with `self`, removes the temp file.
        let size = verifier.finish()?;
        let TempBlob { guard, file, .. } = self;
        commit_guarded(guard, file, size, media_type.map(str::to_owned)).await?;
        Ok(size)
    }
}

/// Commits a verified file written elsewhere in `tmp/` (an upload) as the blob `digest`: the
/// same durable rename, index row and eviction as a temp blob's commit. On failure the file is
/// removed.
pub(super) async fn commit_verified(
    inner: &Arc<Inner>,
    digest: Digest,
    path: PathBuf,
    file: Arc<File>,
    size: u64,
    media_type: Option<String>,
) -> Result<(), StoreError> {
    let id = inner.temp_seq.fetch_add(1, Ordering::Relaxed);
    {
        let mut state = inner.state();
        state.acquire_writer(digest);
        state.claims.add(id, digest);
    }
    let guard = TempGuard { inner: Arc::clone(inner), id, digest, path, remove_file: true };
    commit_guarded(guard, file, size, media_type).await
}

async fn commit_guarded(
    guard: TempGuard,
    file: Arc<File>,
    size: u64,
    media_type: Option<String>,
) -> Result<(), StoreError> {
    let inner = Arc::clone(&guard.inner);
    blocking("commit blob", move || finish_commit(guard, &file, size, media_type)).await?;
    if inner.max_size.is_some_and(|max| inner.state().total() > max)
        && let Err(e) = evict::evict(&inner).await
    {
        warn!(error = %e, "eviction after commit failed");
    }
    Ok(())
}

fn finish_commit(
    mut guard: TempGuard,
    file: &File,
    size: u64,
    media_type: Option<String>,
) -> Result<(), StoreError> {
    let inner = Arc::clone(&guard.inner);
    let digest = guard.digest;
    file.sync_all().map_err(|e| StoreError::io("sync temp blob", &guard.path, e))?;
    let shard = inner.paths.shard_dir(&digest);
    if !shard.exists() {
        fs::create_dir_all(&shard)
            .map_err(|e| StoreError::io("create blob directory", &shard, e))?;
        fsync_dir(&inner.paths.blobs)?;
    }
    let final_path = inner.paths.blob(&digest);
    let stamp = {
        // Rename and state change under one lock, so eviction and open_blob see them together.
        let mut state = inner.state();
        if state.get(&digest).is_some() {
            debug!(%digest, "blob already committed by another writer; discarding this copy");
            return Ok(());
        }
        fs::rename(&guard.path, &final_path)
            .map_err(|e| StoreError::io("rename blob into place", &final_path, e))?;
        guard.remove_file = false;
        let stamp = state.stamp();
        state.insert(digest, Entry { size, last_access_ms: stamp });
        stamp
    };
    fsync_dir(&shard)?;
    // The file is the truth from here on: if the row cannot be written, open() re-adds it.
    let row = BlobRow { size, media_type, last_access_ms: stamp };
    if let Err(e) = write_row(&inner, &digest, &row) {
        warn!(%digest, error = %e, "blob stored but its index row was not written");
    }
    debug!(%digest, size, "committed blob");
    Ok(())
}

fn write_row(inner: &Inner, digest: &Digest, row: &BlobRow) -> Result<(), StoreError> {
    let index = inner.index.path();
    inner.write_index(|db| {
        let txn = db.begin_write().map_err(|e| StoreError::index("begin write", index, e))?;
        {
            let mut table = txn
                .open_table(BLOBS)
                .map_err(|e| StoreError::index("open blobs table", index, e))?;
            table
                .insert(digest.as_bytes(), tables::encode(row).as_slice())
                .map_err(|e| StoreError::index("write blob row", index, e))?;
        }
        txn.commit().map_err(|e| StoreError::index("commit blob row", index, e))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::time::Duration;

    use futures_util::FutureExt;
    use shoal_protocol::Digest;

    use super::super::StoreError;
    use super::super::test_util::{content, files_under, fresh, put};

    /// Temp removal after a drop runs on a blocking thread; give it a moment.
    async fn wait_until_empty(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        for _ in 0..200 {
            if files_under(dir).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        files_under(dir)
    }

    #[tokio::test]
    async fn write_commit_read_round_trip() {
        let (dir, store) = fresh(None);
        let bytes = content(1, 200_000);
        let digest = put(&store, &bytes).await;

        let hex = digest.hex();
        let path = dir.path().join("blobs/sha256").join(&hex[..2]).join(&hex);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(files_under(&dir.path().join("tmp")).is_empty());
        assert!(store.contains(&digest));
        assert_eq!(store.blob_meta(&digest).unwrap().size, bytes.len() as u64);
        assert_eq!(store.total_size(), bytes.len() as u64);

        let reader = store.open_blob(&digest).await.unwrap().expect("stored");
        assert_eq!(reader.size, bytes.len() as u64);
        let mut back = vec![0; bytes.len()];
        reader.file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, bytes);
    }

    #[tokio::test]
    async fn digest_mismatch_leaves_nothing() {
        let (dir, store) = fresh(None);
        let digest = Digest::of(b"what was promised");
        let mut temp = store.create_temp(&digest).await.unwrap();
        temp.write(b"what arrived instead").await.unwrap();
        let err = temp.commit(None).await.unwrap_err();
        match err {
            StoreError::DigestMismatch(m) => {
                assert_eq!(m.expected, digest);
                assert_eq!(m.actual, Digest::of(b"what arrived instead"));
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
        assert!(!store.contains(&digest));
        assert_eq!(store.total_size(), 0);
        assert!(wait_until_empty(&dir.path().join("tmp")).await.is_empty());
        assert!(files_under(&dir.path().join("blobs")).is_empty());
    }

    #[tokio::test]
    async fn dropped_without_commit_leaves_nothing() {
        let (dir, store) = fresh(None);
        let bytes = content(2, 10_000);
        let digest = Digest::of(&bytes);
        let mut temp = store.create_temp(&digest).await.unwrap();
        temp.write(&bytes).await.unwrap();
        assert!(temp.path().exists());
        assert_eq!(temp.written(), bytes.len() as u64);
        drop(temp);
        assert!(wait_until_empty(&dir.path().join("tmp")).await.is_empty());
        assert!(!store.contains(&digest));
    }

    #[tokio::test]
    async fn a_cancelled_write_cannot_be_committed() {
        let (dir, store) = fresh(None);
        let bytes = content(3, 1 << 20);
        let digest = Digest::of(&bytes);
        // Polling once starts the write and dropping the future abandons it; retry in the
        // unlikely case the blocking thread finished within that single poll.
        let temp = loop {
            let mut temp = store.create_temp(&digest).await.unwrap();
            if temp.write(&bytes).now_or_never().is_none() {
                break temp;
            }
        };
        let err = temp.commit(None).await.unwrap_err();
        assert!(matches!(err, StoreError::IncompleteWrite { .. }), "{err:?}");
        assert!(!store.contains(&digest));
        assert!(wait_until_empty(&dir.path().join("tmp")).await.is_empty());
    }

    #[tokio::test]
    async fn temp_reader_keeps_working_after_commit_renames_the_file() {
        let (dir, store) = fresh(None);
        let bytes = content(4, 100_000);
        let digest = Digest::of(&bytes);
        let mut temp = store.create_temp(&digest).await.unwrap();
        let reader = temp.reader();
        let temp_path = temp.path().to_owned();
        temp.write(&bytes[..40_000]).await.unwrap();
        let mut head = vec![0; 40_000];
        reader.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(head, bytes[..40_000]);

        temp.write(&bytes[40_000..]).await.unwrap();
        temp.commit(None).await.unwrap();
        assert!(!temp_path.exists());
        let hex = digest.hex();
        let committed = dir.path().join("blobs/sha256").join(&hex[..2]).join(&hex);
        assert_eq!(reader.metadata().unwrap().ino(), std::fs::metadata(&committed).unwrap().ino());
        let mut tail = vec![0; 60_000];
        reader.read_exact_at(&mut tail, 40_000).unwrap();
        assert_eq!(tail, bytes[40_000..]);
    }

    #[tokio::test]
    async fn pieces_written_out_of_order_are_hashed_once_the_gap_fills() {
        let (_dir, store) = fresh(None);
        let bytes = content(6, 300_000);
        let digest = Digest::of(&bytes);
        let mut temp = store.create_temp(&digest).await.unwrap();
        let piece = |range: std::ops::Range<usize>| -> std::sync::Arc<[bytes::Bytes]> {
            std::sync::Arc::from([bytes::Bytes::copy_from_slice(&bytes[range])])
        };
        temp.write_at(200_000, piece(200_000..300_000)).await.unwrap();
        temp.write_at(100_000, piece(100_000..200_000)).await.unwrap();
        assert_eq!(temp.written(), 0, "nothing is hashed before the first bytes are in");
        temp.write_chunks(piece(0..100_000)).await.unwrap();
        assert_eq!(temp.written(), 100_000);
        temp.hash_through(300_000).await.unwrap();
        assert_eq!(temp.written(), 300_000);
        assert_eq!(temp.commit(None).await.unwrap(), 300_000);
        let reader = store.open_blob(&digest).await.unwrap().expect("stored");
        let mut back = vec![0; bytes.len()];
        reader.file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, bytes);
    }

    #[tokio::test]
    async fn a_wrong_piece_written_ahead_fails_verification() {
        let (_dir, store) = fresh(None);
        let bytes = content(7, 200_000);
        let digest = Digest::of(&bytes);
        let mut temp = store.create_temp(&digest).await.unwrap();
        temp.write_at(100_000, std::sync::Arc::from([bytes::Bytes::from(vec![0u8; 100_000])]))
            .await
            .unwrap();
        temp.write(&bytes[..100_000]).await.unwrap();
        temp.hash_through(200_000).await.unwrap();
        let err = temp.commit(None).await.unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch(_)), "{err:?}");
        assert!(!store.contains(&digest));
    }

    #[tokio::test]
    async fn two_writers_of_one_digest_store_it_once() {
        let (dir, store) = fresh(None);
        let bytes = content(5, 5_000);
        let digest = Digest::of(&bytes);
        let mut first = store.create_temp(&digest).await.unwrap();
        let mut second = store.create_temp(&digest).await.unwrap();
        assert_ne!(first.path(), second.path());
        first.write(&bytes).await.unwrap();
        second.write(&bytes).await.unwrap();
        assert_eq!(first.commit(None).await.unwrap(), bytes.len() as u64);
        assert_eq!(second.commit(None).await.unwrap(), bytes.len() as u64);
        assert_eq!(store.total_size(), bytes.len() as u64);
        assert_eq!(files_under(&dir.path().join("blobs")).len(), 1);
        assert!(wait_until_empty(&dir.path().join("tmp")).await.is_empty());
    }
}
