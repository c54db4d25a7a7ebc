//! The live peers this node knows, and the owner rule computed over them.
//!
//! A peer is live while at least one connection to it is open, and usable once its advert
//! (data-plane URL, site) has arrived through identify. The owner of a key is the member —
//! this node included — whose peer id is closest to the key by Kademlia's XOR distance.

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::kad::KBucketKey;
use libp2p::{Multiaddr, PeerId};

/// A live peer whose advert is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: PeerId,
    /// The peer's HTTP data plane, e.g. `http://10.0.0.5:5000`.
    pub http_url: String,
    pub site: Option<String>,
    /// The libp2p addresses the peer listens on, as it reported them.
    pub addrs: Vec<Multiaddr>,
    /// The Shoal version the peer runs, from its advert.
    pub version: String,
}

/// Who should do the work for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Local,
    Remote(PeerInfo),
}

/// What the swarm task publishes for the handles to read without a round trip.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub peers: HashMap<PeerId, PeerInfo>,
    pub listen_addrs: Vec<Multiaddr>,
}

pub(super) type SharedSnapshot = Arc<Snapshot>;

/// The owner of `key` among `local` and `peers`.
pub(super) fn owner_among<'a>(
    local: &PeerId,
    peers: impl IntoIterator<Item = &'a PeerInfo>,
    key: &[u8],
) -> Owner {
    let target = KBucketKey::new(key.to_vec());
    let distance = |id: &PeerId| target.distance(&KBucketKey::from(*id));
    let mut best = (distance(local), None);
    for peer in peers {
        let d = distance(&peer.id);
        if d < best.0 {
            best = (d, Some(peer));
        }
    }
    match best.1 {
        None => Owner::Local,
        Some(peer) => Owner::Remote(peer.clone()),
    }
}

/// The `n` members closest to `key` among `local` and `peers`, closest first: where an image
/// keyed by `key` is placed.
pub(super) fn closest_among<'a>(
    local: &PeerId,
    peers: impl IntoIterator<Item = &'a PeerInfo>,
    key: &[u8],
    n: usize,
) -> Vec<Owner> {
    let target = KBucketKey::new(key.to_vec());
    let distance = |id: &PeerId| target.distance(&KBucketKey::from(*id));
    let mut all: Vec<(_, Owner)> = peers
        .into_iter()
        .map(|p| (distance(&p.id), Owner::Remote(p.clone())))
        .chain(std::iter::once((distance(local), Owner::Local)))
        .collect();
    all.sort_by_key(|a| a.0);
    all.into_iter().take(n).map(|(_, o)| o).collect()
}

#[cfg(test)]
mod tests {
    use shoal_protocol::peer::owner_distance;

    use super::*;

    fn peer() -> PeerInfo {
        PeerInfo {
            id: PeerId::random(),
            http_url: "http://127.0.0.1:1".into(),
            site: None,
            addrs: Vec::new(),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn alone_a_node_owns_everything() {
        assert_eq!(owner_among(&PeerId::random(), &[], b"k"), Owner::Local);
    }

    #[test]
    fn owner_is_the_closest_by_the_protocol_distance() {
        let local = PeerId::random();
        let peers: Vec<PeerInfo> = (0..8).map(|_| peer()).collect();
        let mut saw_local = false;
        let mut saw_remote = false;
        for i in 0..200u32 {
            let key = i.to_be_bytes();
            // The protocol crate's distance is an independent implementation of Kademlia's.
            let closest = std::iter::once(local)
                .chain(peers.iter().map(|p| p.id))
                .min_by_key(|id| owner_distance(&key, &id.to_bytes()))
                .unwrap();
            match owner_among(&local, &peers, &key) {
                Owner::Local => {
                    saw_local = true;
                    assert_eq!(closest, local);
                }
                Owner::Remote(p) => {
                    saw_remote = true;
                    assert_eq!(closest, p.id);
                }
            }
        }
        assert!(saw_local && saw_remote);
    }

    #[test]
    fn closest_members_start_with_the_owner_and_are_distinct() {
        let local = PeerId::random();
        let peers: Vec<PeerInfo> = (0..5).map(|_| peer()).collect();
        for i in 0..50u32 {
            let key = i.to_be_bytes();
            let three = closest_among(&local, &peers, &key, 3);
            assert_eq!(three.len(), 3);
            assert_eq!(three[0], owner_among(&local, &peers, &key));
            let id = |o: &Owner| match o {
                Owner::Local => local,
                Owner::Remote(p) => p.id,
            };
            let ids: std::collections::HashSet<PeerId> = three.iter().map(id).collect();
            assert_eq!(ids.len(), 3);
            assert_eq!(closest_among(&local, &peers, &key, 99).len(), 6);
        }
    }
}
