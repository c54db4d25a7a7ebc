//! Deterministic pseudo-random bytes from a seed, in memory or as a stream that hashes what it
//! yields, so a 1 GiB layer is never held in memory.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::Stream;
use rand::{Rng, SeedableRng, rngs::StdRng};
use sha2::{Digest as _, Sha256};
use shoal_protocol::Digest;

/// Size of each piece of a streamed random blob.
const PIECE: usize = 1 << 20;

/// `len` bytes determined by `seed`.
pub(crate) fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// The running hash of a [`stream`], read once the stream has ended.
#[derive(Debug, Clone)]
pub struct StreamDigest(Arc<Mutex<Option<Sha256>>>);

impl StreamDigest {
    /// The digest of everything the stream yielded.
    pub fn finish(&self) -> Digest {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let hasher = guard.take().unwrap_or_default();
        Digest::from_raw(hasher.finalize().into())
    }
}

/// `len` bytes determined by `seed`, yielded in pieces; the same seed and length always give
/// the same bytes as [`bytes`] would.
pub fn stream(
    seed: u64,
    len: u64,
) -> (impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, StreamDigest) {
    let digest = StreamDigest(Arc::new(Mutex::new(Some(Sha256::new()))));
    let hasher = digest.clone();
    let state = (StdRng::seed_from_u64(seed), len);
    let stream = futures_util::stream::unfold(state, move |(mut rng, remaining)| {
        let hasher = hasher.clone();
        async move {
            if remaining == 0 {
                return None;
            }
            let n = remaining.min(PIECE as u64) as usize;
            let mut piece = vec![0; n];
            rng.fill_bytes(&mut piece);
            if let Some(h) = hasher.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                h.update(&piece);
            }
            Some((Ok(Bytes::from(piece)), (rng, remaining - n as u64)))
        }
    });
    (stream, digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn stream_matches_bytes_and_its_digest() {
        let len = PIECE * 2 + 17;
        let (stream, digest) = stream(7, len as u64);
        let pieces: Vec<Bytes> = stream.map(|p| p.expect("piece")).collect().await;
        let joined: Vec<u8> = pieces.concat();
        assert_eq!(joined, bytes(7, len));
        assert_eq!(digest.finish(), Digest::of(&joined));
        assert_ne!(bytes(7, 64), bytes(8, 64));
    }
}
