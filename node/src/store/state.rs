//! The store's in-memory view: which blobs exist, their sizes and last accesses, and which are
//! in use by readers or writers.
//!
//! Reads of hot blobs update only this map; access times reach the index in batches (see
//! `maintenance.rs`), so a cache hit never waits for a database commit. Every decision that must
//! be atomic against eviction — "is it there, and mark it in use" — is taken under this one lock.

use std::collections::{HashMap, HashSet};

use shoal_protocol::Digest;

use super::space::Claims;
use super::tables::to_millis;
use crate::clock::Clock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub size: u64,
    pub last_access_ms: u64,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    entries: HashMap<Digest, Entry>,
    total: u64,
    readers: HashMap<Digest, usize>,
    writers: HashMap<Digest, usize>,
    /// Blobs whose in-memory access time is newer than the index's.
    dirty: HashSet<Digest>,
    clock_ms: u64,
    /// Room claimed for the blobs being written (see `space.rs`).
    pub claims: Claims,
    /// Blobs that eviction must never choose (see `pins.rs`); may name blobs not held yet.
    pinned: HashSet<Digest>,
    /// What access times are read from; lifecycle rules' "unused for" is counted on it.
    pub clock: Clock,
}

impl State {
    /// A wall-clock stamp in milliseconds, strictly greater than every earlier one, so that LRU
    /// order is exact even for accesses within the same millisecond.
    pub fn stamp(&mut self) -> u64 {
        self.clock_ms = self.now_ms().max(self.clock_ms + 1);
        self.clock_ms
    }

    /// Now on the store's clock, in the milliseconds access times are kept in.
    pub fn now_ms(&self) -> u64 {
        to_millis(self.clock.now())
    }

    /// Makes the clock at least `ms`, so stamps loaded from the index never compare newer.
    pub fn observe(&mut self, ms: u64) {
        self.clock_ms = self.clock_ms.max(ms);
    }

    pub fn get(&self, digest: &Digest) -> Option<Entry> {
        self.entries.get(digest).copied()
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn digests(&self) -> Vec<Digest> {
        self.entries.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds a blob; returns false (and changes nothing) when it is already present.
    pub fn insert(&mut self, digest: Digest, entry: Entry) -> bool {
        if self.entries.contains_key(&digest) {
            return false;
        }
        self.observe(entry.last_access_ms);
        self.total += entry.size;
        self.entries.insert(digest, entry);
        true
    }

    pub fn remove(&mut self, digest: &Digest) -> Option<Entry> {
        let entry = self.entries.remove(digest)?;
        self.total -= entry.size;
        self.dirty.remove(digest);
        Some(entry)
    }

    /// Records an access now; false when the blob is not present.
    pub fn touch(&mut self, digest: &Digest) -> bool {
        let stamp = self.stamp();
        match self.entries.get_mut(digest) {
            Some(entry) => {
                entry.last_access_ms = stamp;
                self.dirty.insert(*digest);
                true
            }
            None => false,
        }
    }

    /// Takes the access times that changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<(Digest, u64)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|d| self.entries.get(&d).map(|e| (d, e.last_access_ms)))
            .collect()
    }

    /// Puts back access times whose flush failed, unless a newer access already did.
    pub fn restore_dirty(&mut self, digests: impl IntoIterator<Item = Digest>) {
        for d in digests {
            if self.entries.contains_key(&d) {
                self.dirty.insert(d);
            }
        }
    }

    pub fn acquire_reader(&mut self, digest: Digest) {
        *self.readers.entry(digest).or_default() += 1;
    }

    pub fn release_reader(&mut self, digest: &Digest) {
        release(&mut self.readers, digest);
    }

    pub fn acquire_writer(&mut self, digest: Digest) {
        *self.writers.entry(digest).or_default() += 1;
    }

    pub fn release_writer(&mut self, digest: &Digest) {
        release(&mut self.writers, digest);
    }

    pub fn in_use(&self, digest: &Digest) -> bool {
        self.readers.contains_key(digest) || self.writers.contains_key(digest)
    }

    pub fn set_pinned(&mut self, digest: Digest, pinned: bool) {
        if pinned {
            self.pinned.insert(digest);
        } else {
            self.pinned.remove(&digest);
        }
    }

    pub fn is_pinned(&self, digest: &Digest) -> bool {
        self.pinned.contains(digest)
    }

    /// Bytes of the held blobs that are pinned.
    pub fn pinned_bytes(&self) -> (u64, u64) {
        self.pinned
            .iter()
            .filter_map(|d| self.entries.get(d))
            .fold((0, 0), |(n, bytes), e| (n + 1, bytes + e.size))
    }

    /// Neither in use nor pinned: eviction may take it.
    pub fn removable(&self, digest: &Digest) -> bool {
        !self.in_use(digest) && !self.pinned.contains(digest)
    }

    /// The least recently used blobs neither in use nor pinned, oldest first, just enough of them to
    /// bring the total to `max` or below (fewer if the rest are in use).
    pub fn pick_victims(&self, max: u64) -> Vec<(Digest, Entry)> {
        if self.total <= max {
            return Vec::new();
        }
        let mut excess = self.total - max;
        let mut victims = Vec::new();
        for (digest, entry) in self.unused_oldest_first() {
            if excess == 0 {
                break;
            }
            excess = excess.saturating_sub(entry.size);
            victims.push((digest, entry));
        }
        victims
    }

    /// The least recently used blobs neither in use nor pinned, oldest first, just enough of them to
    /// free `bytes`; `None` when all of them together would not.
    pub fn pick_to_free(&self, bytes: u64) -> Option<Vec<(Digest, Entry)>> {
        let mut freed = 0u64;
        let mut victims = Vec::new();
        for (digest, entry) in self.unused_oldest_first() {
            if freed >= bytes {
                break;
            }
            freed += entry.size;
            victims.push((digest, entry));
        }
        (freed >= bytes).then_some(victims)
    }

    /// Bytes of the blobs eviction could remove now: those neither in use nor pinned.
    pub fn evictable(&self) -> u64 {
        self.entries.iter().filter(|(d, _)| self.removable(d)).map(|(_, e)| e.size).sum()
    }

    /// Every blob with its size.
    pub fn sizes(&self) -> HashMap<Digest, u64> {
        self.entries.iter().map(|(d, e)| (*d, e.size)).collect()
    }

    /// Every blob with its entry, and whether eviction may take it now.
    pub fn all_entries(&self) -> Vec<(Digest, Entry, bool)> {
        self.entries.iter().map(|(d, e)| (*d, *e, self.removable(d))).collect()
    }

    pub fn unused_oldest_first(&self) -> Vec<(Digest, Entry)> {
        let mut unused: Vec<(Digest, Entry)> =
            self.entries.iter().filter(|(d, _)| self.removable(d)).map(|(d, e)| (*d, *e)).collect();
        unused.sort_by_key(|(d, e)| (e.last_access_ms, *d));
        unused
    }
}

fn release(counts: &mut HashMap<Digest, usize>, digest: &Digest) {
    if let Some(n) = counts.get_mut(digest) {
        *n -= 1;
        if *n == 0 {
            counts.remove(digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::from_raw([n; 32])
    }

    #[test]
    fn victims_are_oldest_first_and_skip_blobs_in_use() {
        let mut s = State::default();
        for n in 1..=4 {
            let stamp = s.stamp();
            s.insert(d(n), Entry { size: 10, last_access_ms: stamp });
        }
        assert_eq!(s.total(), 40);
        assert!(s.touch(&d(1)));
        s.acquire_reader(d(2));
        let victims: Vec<Digest> = s.pick_victims(20).into_iter().map(|(d, _)| d).collect();
        assert_eq!(victims, vec![d(3), d(4)]);
        s.release_reader(&d(2));
        let victims: Vec<Digest> = s.pick_victims(20).into_iter().map(|(d, _)| d).collect();
        assert_eq!(victims, vec![d(2), d(3)]);
        assert!(s.pick_victims(40).is_empty());
    }

    #[test]
    fn room_is_freed_from_unused_blobs_oldest_first_or_not_at_all() {
        let mut s = State::default();
        for n in 1..=3 {
            let stamp = s.stamp();
            s.insert(d(n), Entry { size: 10, last_access_ms: stamp });
        }
        s.acquire_writer(d(1));
        assert_eq!(s.evictable(), 20);
        let victims: Vec<Digest> =
            s.pick_to_free(15).unwrap().into_iter().map(|(d, _)| d).collect();
        assert_eq!(victims, vec![d(2), d(3)]);
        assert!(s.pick_to_free(21).is_none(), "the blob being written cannot be counted");
        assert_eq!(s.pick_to_free(0).unwrap(), Vec::new());
    }

    #[test]
    fn stamps_strictly_increase_and_dirty_is_taken_once() {
        let mut s = State::default();
        let a = s.stamp();
        let b = s.stamp();
        assert!(b > a);
        s.insert(d(1), Entry { size: 1, last_access_ms: a });
        assert!(s.touch(&d(1)));
        assert!(!s.touch(&d(2)));
        let dirty = s.take_dirty();
        assert_eq!(dirty.len(), 1);
        assert_eq!(dirty[0].0, d(1));
        assert!(dirty[0].1 > b);
        assert!(s.take_dirty().is_empty());
    }
}
