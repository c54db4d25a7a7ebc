//! Membership, the owner rule, provider records, identity persistence and discovery.

use std::collections::HashSet;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use shoal_protocol::Digest;

use super::*;
use crate::p2p::Owner;

const JOIN: Duration = Duration::from_secs(15);

/// Starts A, then B (bootstrap address without a peer id) and C (with one) at the same moment,
/// as a fleet starts: each may ask A for the others before A has met them.
async fn three_nodes(dir: &Path, ttl: Duration, republish: Duration) -> [TestNode; 3] {
    let with_ttl = |name| {
        let mut c = config(dir, name);
        c.provider_ttl = ttl;
        c.republish = republish;
        c
    };
    let a = start(with_ttl("a")).await;
    let a_addr = first_addr(&a);
    let mut b_config = with_ttl("b");
    b_config.bootstrap = vec![a_addr.clone()];
    let mut c_config = with_ttl("c");
    c_config.bootstrap = vec![a_addr.with(Protocol::P2p(a.p2p.local_peer_id()))];
    let (b, c) = tokio::join!(start(b_config), start(c_config));
    let nodes = [a, b, c];
    let all_joined = eventually(JOIN, || nodes.iter().all(|n| n.p2p.peers().len() == 2)).await;
    assert!(all_joined, "peers: {:?}", nodes.iter().map(|n| n.p2p.peers()).collect::<Vec<_>>());
    nodes
}

fn owner_id(node: &TestNode, key: &[u8]) -> libp2p::PeerId {
    match node.p2p.owner(key) {
        Owner::Local => node.p2p.local_peer_id(),
        Owner::Remote(peer) => peer.id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_find_each_other_and_agree_on_owners() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path(), Duration::from_secs(60), Duration::from_secs(20)).await;

    // Adverts arrived intact: B sees A's URL and site.
    let a_seen_by_b = nodes[1]
        .p2p
        .peers()
        .into_iter()
        .find(|p| p.id == nodes[0].p2p.local_peer_id())
        .expect("B knows A");
    assert_eq!(a_seen_by_b.http_url, "http://a.test:5000");
    assert_eq!(a_seen_by_b.site.as_deref(), Some("site-a"));
    assert!(!a_seen_by_b.addrs.is_empty());

    let mut owners = HashSet::new();
    for _ in 0..50 {
        let key: [u8; 32] = rand::random();
        let ids: Vec<_> = nodes.iter().map(|n| owner_id(n, &key)).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "owners disagree for {key:?}: {ids:?}");
        owners.insert(ids[0]);
    }
    // 50 random keys over 3 members: every member owns some (all-in-one is ~3^-49).
    assert_eq!(owners.len(), 3);

    // A member that leaves stops owning keys on the others.
    let c_id = nodes[2].p2p.local_peer_id();
    nodes[2].p2p.shutdown();
    let gone = eventually(JOIN, || nodes[..2].iter().all(|n| n.p2p.peers().len() == 1)).await;
    assert!(gone, "C still listed as a peer");
    for _ in 0..50 {
        let key: [u8; 32] = rand::random();
        assert_ne!(owner_id(&nodes[0], &key), c_id);
        assert_eq!(owner_id(&nodes[0], &key), owner_id(&nodes[1], &key));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_are_found_and_gone_after_unprovide() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(3);
    let nodes = three_nodes(dir.path(), ttl, Duration::from_secs(1)).await;
    let [a, b, c] = &nodes;
    let kept = Digest::of(b"kept layer");
    let dropped = Digest::of(b"evicted layer");
    a.p2p.provide(&kept).unwrap();
    a.p2p.provide(&dropped).unwrap();

    for asker in [b, c] {
        let mut found = Vec::new();
        for _ in 0..40 {
            found = asker.p2p.find_providers(&dropped, Duration::from_millis(500)).await;
            if !found.is_empty() {
                break;
            }
        }
        assert_eq!(found.len(), 1, "providers of a digest held by A");
        assert_eq!(found[0].id, a.p2p.local_peer_id());
        assert_eq!(found[0].http_url, "http://a.test:5000");
    }
    // A provider never finds itself.
    assert!(a.p2p.find_providers(&kept, Duration::from_millis(500)).await.is_empty());
    // Nobody provides a digest nobody announced.
    assert!(
        b.p2p.find_providers(&Digest::of(b"nobody"), Duration::from_millis(500)).await.is_empty()
    );

    a.p2p.unprovide(&dropped).unwrap();
    // Peers keep a record until its TTL; republishing keeps the other one alive past it.
    tokio::time::sleep(ttl + Duration::from_secs(2)).await;
    for asker in [b, c] {
        assert!(asker.p2p.find_providers(&dropped, Duration::from_secs(1)).await.is_empty());
        let still = asker.p2p.find_providers(&kept, Duration::from_secs(1)).await;
        assert_eq!(still.iter().map(|p| p.id).collect::<Vec<_>>(), vec![a.p2p.local_peer_id()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_persists_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(config(dir.path(), "n")).await;
    let id = first.p2p.local_peer_id();
    first.p2p.shutdown();
    first.task.await.unwrap();

    let again = start(config(dir.path(), "n")).await;
    assert_eq!(again.p2p.local_peer_id(), id);
    let other = start(config(dir.path(), "other")).await;
    assert_ne!(other.p2p.local_peer_id(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_bootstrap_names_are_resolved_and_dialled() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(config(dir.path(), "a")).await;
    let port = first_addr(&a)
        .iter()
        .find_map(|p| if let Protocol::Tcp(port) = p { Some(port) } else { None })
        .unwrap();
    let mut b_config = config(dir.path(), "b");
    b_config.bootstrap_dns = vec![format!("localhost:{port}")];
    let b = start(b_config).await;
    let joined =
        eventually(JOIN, || b.p2p.peers().iter().any(|p| p.id == a.p2p.local_peer_id())).await;
    assert!(joined);
}
