//! The cluster key: only nodes with the same key connect. Also mDNS discovery, which the
//! key keeps from merging with other clusters on the same network.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_cluster_key_connect() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = |name, key: Option<ClusterKey>, bootstrap: Vec<Multiaddr>| {
        let mut c = config(dir.path(), name);
        c.cluster_key = key;
        c.bootstrap = bootstrap;
        c
    };
    let a = start(keyed("a", Some(key(1)), vec![])).await;
    let a_addr = first_addr(&a);
    let member = start(keyed("member", Some(key(1)), vec![a_addr.clone()])).await;
    let stranger = start(keyed("stranger", Some(key(2)), vec![a_addr.clone()])).await;
    let keyless = start(keyed("keyless", None, vec![a_addr.clone()])).await;
    // And the other way round: a keyed node dialling a keyless one.
    let open = start(keyed("open", None, vec![])).await;
    a.p2p.dial(first_addr(&open)).unwrap();

    assert!(eventually(Duration::from_secs(15), || member.p2p.peers().len() == 1).await);
    // Give the refused handshakes the same time to (not) succeed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<_> = a.p2p.peers().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![member.p2p.local_peer_id()]);
    assert!(stranger.p2p.peers().is_empty());
    assert!(keyless.p2p.peers().is_empty());
    assert!(open.p2p.peers().is_empty());
}

/// mDNS needs a multicast-capable interface. On a machine with only loopback, discovery has
/// nothing to run on; the test then says so and checks only that mDNS starts. Ignored by
/// default because it multicasts on every interface of the host: run it in a network
/// namespace of its own (`ip netns exec <ns> <test binary> --ignored mdns`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multicasts on the host's interfaces; run inside a network namespace"]
async fn mdns_finds_peers_without_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    // A key of its own, so that other nodes on this network (other tests, other clusters)
    // that mDNS also finds cannot join.
    let cluster = ClusterKey::generate();
    let with_mdns = |name| {
        let mut c = config(dir.path(), name);
        c.mdns = true;
        c.cluster_key = Some(cluster.clone());
        c.listen = vec!["/ip4/0.0.0.0/tcp/0".parse().unwrap()];
        c
    };
    let a = start(with_mdns("a")).await;
    let b = start(with_mdns("b")).await;
    let found = eventually(Duration::from_secs(20), || {
        a.p2p.peers().iter().any(|p| p.id == b.p2p.local_peer_id())
            && b.p2p.peers().iter().any(|p| p.id == a.p2p.local_peer_id())
    })
    .await;
    if !found && !has_multicast_interface() {
        eprintln!(
            "mdns_finds_peers_without_bootstrap: no multicast interface here; discovery not tested"
        );
        return;
    }
    assert!(found, "mDNS did not find the other node");
}

fn has_multicast_interface() -> bool {
    // /sys/class/net/<if>/flags: IFF_UP = 0x1, IFF_LOOPBACK = 0x8, IFF_MULTICAST = 0x1000.
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else { return false };
    entries.flatten().any(|entry| {
        let flags = std::fs::read_to_string(entry.path().join("flags")).unwrap_or_default();
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
        flags & 0x1 != 0 && flags & 0x8 == 0 && flags & 0x1000 != 0
    })
}
