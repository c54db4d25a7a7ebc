//! The cluster key: only nodes with the same key connect, and a node that meets another key
//! says so, on both ends. (mDNS discovery, which the key keeps from merging with other
//! clusters on one network, is tested on a LAN of network namespaces in cluster-tests:
//! `fleet_lan.rs`; the log lines, with real processes, in `fleet_faults.rs`.)

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_cluster_key_connect_and_a_mismatch_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = |name, key: ClusterKey, bootstrap: Vec<Multiaddr>| {
        let mut c = config(dir.path(), name);
        c.cluster_key = key;
        c.bootstrap = bootstrap;
        c
    };
    let a_config = keyed("a", key(1), vec![]);
    let a_metrics = a_config.metrics.clone();
    let a = start(a_config).await;
    let a_addr = first_addr(&a);
    let member = start(keyed("member", key(1), vec![a_addr.clone()])).await;
    let stranger_config = keyed("stranger", key(2), vec![a_addr.clone()]);
    let stranger_metrics = stranger_config.metrics.clone();
    let stranger = start(stranger_config).await;
    // And the other way round: the keyed node dials a node with a third key.
    let other_config = keyed("other", key(3), vec![]);
    let other_metrics = other_config.metrics.clone();
    let other = start(other_config).await;
    a.p2p.dial(first_addr(&other)).unwrap();

    assert!(eventually(Duration::from_secs(15), || member.p2p.peers().len() == 1).await);
    let counted = |metrics: &Arc<crate::metrics::Metrics>, at_least| {
        metrics.p2p_key_mismatches.get() >= at_least
    };
    assert!(
        eventually(Duration::from_secs(10), || counted(&a_metrics, 2)
            && counted(&stranger_metrics, 1)
            && counted(&other_metrics, 1))
        .await,
        "both ends of both refused handshakes saw the mismatch"
    );
    let ids: Vec<_> = a.p2p.peers().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![member.p2p.local_peer_id()]);
    assert!(stranger.p2p.peers().is_empty());
    assert!(other.p2p.peers().is_empty());
}

/// Sockets that connect to the control plane and never finish a handshake (a port scan, a
/// stranger, a flood): past [`MAX_PENDING_INCOMING`] the node closes them at once instead of
/// holding a descriptor for each until the handshake timeout, and members still join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stuck_in_the_handshake_are_held_up_to_a_bound() {
    use crate::p2p::behaviour::MAX_PENDING_INCOMING;
    use tokio::io::AsyncReadExt;

    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path(), "a")).await;
    let addr = first_addr(&node);
    let port = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let extra = 64;
    let mut silent = Vec::new();
    for _ in 0..MAX_PENDING_INCOMING as usize + extra {
        silent.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    // A socket the node closed reads to its end; one it holds is still open after seconds.
    let mut reads = tokio::task::JoinSet::new();
    for mut stream in silent {
        reads.spawn(async move {
            let mut buf = [0u8; 256];
            let to_end = async { while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {} };
            let closed = tokio::time::timeout(Duration::from_secs(3), to_end).await.is_ok();
            (closed, stream)
        });
    }
    let mut closed = 0;
    let mut held = Vec::new();
    while let Some(joined) = reads.join_next().await {
        let (was_closed, stream) = joined.unwrap();
        if was_closed {
            closed += 1;
        } else {
            held.push(stream);
        }
    }
    assert!(held.len() <= MAX_PENDING_INCOMING as usize, "{} held open", held.len());
    assert!(closed >= extra, "only {closed} closed");

    drop(held);
    let mut member_config = config(dir.path(), "member");
    member_config.bootstrap = vec![addr];
    let member = start(member_config).await;
    assert!(
        eventually(Duration::from_secs(15), || member.p2p.peers().len() == 1).await,
        "a member joins once the stuck sockets are gone"
    );
}
