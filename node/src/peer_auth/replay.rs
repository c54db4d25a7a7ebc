//! The nonces of signed peer requests seen inside the validity window, so that a captured
//! request is refused the second time it arrives.
//!
//! Bounded: past [`CAPACITY`] live entries, new requests are refused ("busy", a `503` the
//! asking peer takes as "ask someone else") rather than the oldest entries evicted. Evicting
//! would quietly reopen the window for exactly the requests evicted, and whoever can fill the
//! cache (it takes valid signatures, so a member) could choose which ones; refusing costs
//! only this node's service to peers for at most the window, and is logged.

use std::collections::{HashSet, VecDeque};

use sha2::{Digest as _, Sha256};
use shoal_protocol::peer::{MAX_CLOCK_SKEW_SECS, NONCE_LEN};

/// Live entries at most, about 50 bytes each: some 13 MiB when full. A request lives in the
/// cache for the window (up to twice the skew), so this allows some 4,000 signed requests a
/// second, sustained, across every peer.
pub const CAPACITY: usize = 1 << 18;

/// Why a nonce was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This peer used this nonce already, inside the window.
    Seen,
    /// The cache holds [`CAPACITY`] live entries.
    Full,
}

#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    seen: HashSet<u128>,
    /// In arrival order, with the time after which the entry's request is too old anyway.
    order: VecDeque<(u64, u128)>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, seen: HashSet::new(), order: VecDeque::new() }
    }

    /// Records `(peer, nonce)` of a request signed at `timestamp`, at `now` (unix seconds);
    /// refuses it if seen before or if the cache is full.
    pub fn insert(
        &mut self,
        peer: &str,
        nonce: &[u8; NONCE_LEN],
        timestamp: u64,
        now: u64,
    ) -> Result<(), Refusal> {
        // Entries leave in arrival order. One signed a little in the future may hold back
        // later ones that expire sooner: they stay at most another window, never too short.
        while self.order.front().is_some_and(|(expires, _)| *expires < now) {
            if let Some((_, id)) = self.order.pop_front() {
                self.seen.remove(&id);
            }
        }
        let id = fingerprint(peer, nonce);
        if self.seen.contains(&id) {
            return Err(Refusal::Seen);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::Full);
        }
        self.seen.insert(id);
        self.order.push_back((timestamp.saturating_add(MAX_CLOCK_SKEW_SECS), id));
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

/// 128 bits of sha256(peer, nonce): the pair in a fixed small size, whatever the peer id.
fn fingerprint(peer: &str, nonce: &[u8; NONCE_LEN]) -> u128 {
    let hash = Sha256::new().chain_update(peer).chain_update([0]).chain_update(nonce).finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_000_000;

    #[test]
    fn a_nonce_is_accepted_once_per_peer() {
        let mut cache = ReplayCache::new(16);
        assert_eq!(cache.insert("a", &[1; 16], T, T), Ok(()));
        assert_eq!(cache.insert("a", &[1; 16], T, T + 1), Err(Refusal::Seen));
        assert_eq!(cache.insert("b", &[1; 16], T, T + 1), Ok(()), "another peer's nonce");
        assert_eq!(cache.insert("a", &[2; 16], T, T + 1), Ok(()));
    }

    #[test]
    fn entries_leave_once_their_request_is_too_old_anyway() {
        let mut cache = ReplayCache::new(16);
        cache.insert("a", &[1; 16], T, T).unwrap();
        // Still inside the window: still refused.
        let last_valid = T + MAX_CLOCK_SKEW_SECS;
        assert_eq!(cache.insert("a", &[1; 16], T, last_valid), Err(Refusal::Seen));
        cache.insert("a", &[9; 16], last_valid + 1, last_valid + 1).unwrap();
        assert_eq!(cache.len(), 1, "the first entry left");
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let mut cache = ReplayCache::new(2);
        cache.insert("a", &[1; 16], T, T).unwrap();
        cache.insert("a", &[2; 16], T, T).unwrap();
        assert_eq!(cache.insert("a", &[3; 16], T, T), Err(Refusal::Full));
        assert_eq!(cache.insert("a", &[1; 16], T, T), Err(Refusal::Seen), "still remembered");
        let later = T + MAX_CLOCK_SKEW_SECS + 1;
        assert_eq!(cache.insert("a", &[3; 16], later, later), Ok(()), "room once they expire");
    }
}
