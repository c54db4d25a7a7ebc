//! The DHT's record store, with provider records kept as a changing sample.
//!
//! libp2p's `MemoryStore` keeps at most `max_providers_per_key` (20) provider records per
//! key and ignores every later one. For a blob the whole fleet pulls at once that freezes the
//! answer to every lookup on the first 20 nodes to announce: the rest of the fleet queues on
//! them while hundreds of other holders sit idle (the swarm simulation, with libp2p's rule:
//! 100 nodes take 62 T1 instead of 2.5, 1,000 nodes give up on their peers and go upstream).
//! Here a newcomer to a full key takes the place of a record drawn at random, so each peer
//! closest to the key holds a different, changing sample of the holders, and the union a
//! lookup gathers spreads with the blob. Memory stays bounded as before.
//!
//! The first-come rule is libp2p's defence against a flood of fake records from strangers.
//! Only members holding the cluster key reach this store (the control plane is a private
//! network), and a named provider that lies about holding a blob costs an asker one status
//! probe, so spreading the load wins here.

use std::borrow::Cow;

use libp2p::PeerId;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use rand::RngExt;
use rand::rngs::SmallRng;

pub(crate) struct SampledStore {
    inner: MemoryStore,
    local: PeerId,
    max_per_key: usize,
    rng: SmallRng,
}

impl SampledStore {
    pub(crate) fn new(local: PeerId, config: MemoryStoreConfig) -> Self {
        let max_per_key = config.max_providers_per_key;
        Self {
            inner: MemoryStore::with_config(local, config),
            local,
            max_per_key,
            rng: rand::make_rng(),
        }
    }
}

impl RecordStore for SampledStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.inner.get(k)
    }

    fn put(&mut self, r: Record) -> Result<()> {
        self.inner.put(r)
    }

    fn remove(&mut self, k: &RecordKey) {
        self.inner.remove(k)
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.inner.records()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        let held = self.inner.providers(&record.key);
        if held.len() >= self.max_per_key && !held.iter().any(|p| p.provider == record.provider) {
            // Never this node's own record: it is what the node republishes.
            let others: Vec<&PeerId> =
                held.iter().map(|p| &p.provider).filter(|&p| *p != self.local).collect();
            if !others.is_empty() {
                let victim = *others[self.rng.random_range(0..others.len())];
                self.inner.remove_provider(&record.key, &victim);
            }
        }
        self.inner.add_provider(record)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.inner.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.inner.provided()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        self.inner.remove_provider(k, p)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn record(key: &RecordKey, provider: PeerId) -> ProviderRecord {
        ProviderRecord::new(key.clone(), provider, Vec::new())
    }

    #[test]
    fn a_full_key_takes_newcomers_in_place_of_random_records() {
        let local = PeerId::random();
        let config = MemoryStoreConfig { max_providers_per_key: 20, ..Default::default() };
        let mut store = SampledStore::new(local, config);
        let key = RecordKey::new(&b"blob");
        store.add_provider(record(&key, local)).unwrap();
        let first: Vec<PeerId> = (0..19).map(|_| PeerId::random()).collect();
        for &p in &first {
            store.add_provider(record(&key, p)).unwrap();
        }
        let later: Vec<PeerId> = (0..200).map(|_| PeerId::random()).collect();
        for &p in &later {
            store.add_provider(record(&key, p)).unwrap();
        }
        let held: HashSet<PeerId> = store.providers(&key).iter().map(|r| r.provider).collect();
        assert_eq!(held.len(), 20, "bounded as before");
        assert!(held.contains(&local), "this node's own record stays");
        let newcomers = later.iter().filter(|p| held.contains(p)).count();
        assert!(newcomers >= 15, "the sample follows the newcomers: {newcomers} of 19");
        assert_eq!(store.provided().count(), 1);
    }

    #[test]
    fn a_known_provider_refreshes_its_record_without_evicting_anyone() {
        let local = PeerId::random();
        let config = MemoryStoreConfig { max_providers_per_key: 3, ..Default::default() };
        let mut store = SampledStore::new(local, config);
        let key = RecordKey::new(&b"blob");
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for &p in &peers {
            store.add_provider(record(&key, p)).unwrap();
        }
        store.add_provider(record(&key, peers[1])).unwrap();
        let held: HashSet<PeerId> = store.providers(&key).iter().map(|r| r.provider).collect();
        assert_eq!(held, peers.into_iter().collect());
    }
}
