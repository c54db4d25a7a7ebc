//! The cluster key: only nodes with the same key connect. (mDNS discovery, which the key keeps
//! from merging with other clusters on one network, is tested on a LAN of network namespaces
//! in cluster-tests: `fleet_lan.rs`.)

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
