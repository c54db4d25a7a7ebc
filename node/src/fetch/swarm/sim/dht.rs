//! Who a DHT provider lookup names: the three answers the simulation can give.
//!
//! What libp2p-kad (0.49, the version the node uses) does: a provider record is stored on the
//! k = 20 peers closest to the key, and each keeps at most `max_providers_per_key` records per
//! key (its `MemoryStore` default is k = 20; the node raises only `max_records` and
//! `max_provided_keys`). A record that arrives when the list is full is ignored, not swapped
//! in ("can mitigate Sybil attacks", says its source). A lookup asks the closest peers and
//! returns the union of their lists. So every lookup of a key names the same first 20
//! providers to announce, for as long as their records live: [`Discovery::First`].

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::index;

/// Which providers a lookup returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Every node that provides the blob: an unbounded provider store.
    All,
    /// The first `k` nodes to announce themselves, to every asker: libp2p-kad as the node
    /// configures it, with k = 20.
    First(usize),
    /// `k` providers drawn at random for each lookup: a store that keeps a changing sample.
    Sample(usize),
}

pub(super) struct Dht {
    discovery: Discovery,
    /// Providers in the order their records arrived, those kept only.
    providers: Vec<usize>,
    rng: SmallRng,
    pub(super) lookups: u64,
}

impl Dht {
    pub(super) fn new(discovery: Discovery, seed: u64) -> Self {
        Self { discovery, providers: Vec::new(), rng: SmallRng::seed_from_u64(seed), lookups: 0 }
    }

    pub(super) fn announce(&mut self, node: usize) {
        if let Discovery::First(k) = self.discovery
            && self.providers.len() >= k
        {
            return;
        }
        self.providers.push(node);
    }

    /// The providers named to `asker` (never itself).
    pub(super) fn lookup(&mut self, asker: usize) -> Vec<usize> {
        self.lookups += 1;
        let others = self.providers.iter().copied().filter(|&p| p != asker);
        match self.discovery {
            Discovery::All | Discovery::First(_) => others.collect(),
            Discovery::Sample(k) => {
                let others: Vec<usize> = others.collect();
                index::sample(&mut self.rng, others.len(), k.min(others.len()))
                    .into_iter()
                    .map(|i| others[i])
                    .collect()
            }
        }
    }
}
