//! The sha256 of each piece of a blob (see `shoal_protocol::peer::piece_range`): what a node
//! that verified a blob tells a peer whose copy failed verification, so that the peer can find
//! which pieces were wrong and who sent them.

use std::fs::File;
use std::io;

use sha2::{Digest as _, Sha256};
use shoal_protocol::Digest;
use shoal_protocol::peer::{piece_count, piece_range};

use super::{Store, StoreError, TempBlob, blocking, read_at};

/// Read size while hashing.
const READ: u64 = 1024 * 1024;

/// Hashes each piece of the first `size` bytes of `file`.
fn hash_pieces(file: &File, size: u64) -> io::Result<Vec<Digest>> {
    (0..piece_count(size))
        .map(|index| {
            let (start, end) = piece_range(size, index);
            let mut hasher = Sha256::new();
            let mut at = start;
            while at < end {
                let chunk = read_at(file, at, (end - at).min(READ) as usize)?;
                if chunk.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob file is short"));
                }
                hasher.update(&chunk);
                at += chunk.len() as u64;
            }
            Ok(Digest::from_raw(hasher.finalize().into()))
        })
        .collect()
}

impl Store {
    /// The piece digests of a stored (verified) blob; `None` when it is not stored.
    pub async fn piece_digests(&self, digest: &Digest) -> Result<Option<Vec<Digest>>, StoreError> {
        let Some(reader) = self.open_blob(digest).await? else { return Ok(None) };
        let path = self.inner.paths.blob(digest);
        blocking("hash blob pieces", move || {
            hash_pieces(&reader.file, reader.size)
                .map(Some)
                .map_err(|e| StoreError::io("hash blob pieces", &path, e))
        })
        .await
    }
}

impl TempBlob {
    /// The piece digests of what is in the temp file, for a blob of `size` bytes.
    pub async fn piece_digests(&self, size: u64) -> Result<Vec<Digest>, StoreError> {
        let (reader, path) = (self.reader(), self.path().to_owned());
        blocking("hash temp blob pieces", move || {
            hash_pieces(&reader, size)
                .map_err(|e| StoreError::io("hash temp blob pieces", &path, e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{content, fresh, put};
    use super::*;

    #[tokio::test]
    async fn a_stored_blob_and_a_temp_copy_agree_piece_by_piece() {
        let (_dir, store) = fresh(None);
        let bytes = content(9, (2 << 20) + 300);
        let digest = put(&store, &bytes).await;
        let stored = store.piece_digests(&digest).await.unwrap().expect("stored");
        let expected: Vec<Digest> =
            [&bytes[..1 << 20], &bytes[1 << 20..2 << 20], &bytes[2 << 20..]]
                .map(Digest::of)
                .to_vec();
        assert_eq!(stored, expected);

        let mut wrong = bytes.clone();
        wrong[(1 << 20) + 5] ^= 1;
        let mut temp = store.create_temp(&Digest::of(b"another")).await.unwrap();
        temp.write(&wrong).await.unwrap();
        let local = temp.piece_digests(bytes.len() as u64).await.unwrap();
        let differ: Vec<usize> = (0..3).filter(|&i| local[i] != stored[i]).collect();
        assert_eq!(differ, vec![1]);
        assert_eq!(store.piece_digests(&Digest::of(b"absent")).await.unwrap(), None);
    }
}
