//! The swarm on a LAN of capped links: eight hosts, each with a link of its own limited to
//! 200 Mbit/s each way, pull one large layer at the same moment. The fleet must fetch it from
//! the upstream once, and spread it peer to peer: the node that fetched it does not upload a
//! copy to everyone, most nodes upload a share. Asserted by the bytes each node says it sent
//! (`/metrics`) and by its interface counters, never by how long it took.

use std::time::Duration;

use shoal_cluster_tests::fleet::{
    blob_file, eventually, get_verified, metric, pull_on_every_host, start_on_hosts,
    upstream_fetcher,
};
use shoal_cluster_tests::image;
use shoal_cluster_tests::lan::{Lan, require_lan};
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalOptions, require_tools};

const NODES: usize = 8;
const LAYER: u64 = 48 << 20;
const LINK_MBIT: u32 = 200;

#[tokio::test]
async fn eight_capped_hosts_pulling_at_once_share_the_layer_as_a_swarm() {
    if !require_tools(&["docker-registry", "skopeo", "tc"]) || !require_lan() {
        return;
    }
    // Declared first, so that it goes last: the processes on it are stopped before it goes.
    let lan = Lan::create_capped(NODES, Some(LINK_MBIT)).expect("LAN of capped hosts");
    let mut registry =
        Registry::start(RegistryOptions::plain().on(lan.gateway_ip())).await.expect("registry");
    let pushed = image::push_large_layer_image(&registry.client(), "library/big", "v1", LAYER, 401)
        .await
        .expect("push");
    let layer = pushed.blobs().iter().find(|b| b.size == LAYER).expect("the large layer").digest;
    registry.reset_requests().await.expect("reset");

    let options = ShoalOptions::docker_io(registry.url());
    let hosts = lan.hosts();
    let nodes = start_on_hosts(hosts, |_| options.clone()).await.expect("every node joins");
    let sent_before: Vec<u64> =
        hosts.iter().map(|h| lan.link_bytes(h).expect("counters").0).collect();

    // Every host pulls through its own node, as its container runtime would.
    let out = tempfile::tempdir().expect("tempdir");
    let copies =
        pull_on_every_host(&nodes, hosts, "library/big:v1", out.path()).await.expect("pulls");
    for copied in copies {
        assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
        assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    }

    let path = format!("/v2/library/big/blobs/{layer}");
    let gets = registry.count("GET", &path).await.expect("count");
    assert_eq!(gets, 1, "one upstream GET of the layer for the whole fleet");

    let mut report = String::new();
    let mut served = Vec::new();
    let mut fetched_upstream = Vec::new();
    for (i, (node, host)) in nodes.iter().zip(hosts).enumerate() {
        let up = metric(node, "shoal_peer_bytes_served_total").await.expect("metric");
        let upstream = metric(node, "shoal_upstream_bytes_total").await.expect("metric");
        let from_peers = metric(node, "shoal_peer_bytes_total").await.expect("metric");
        let link_sent = lan.link_bytes(host).expect("counters").0 - sent_before[i];
        report.push_str(&format!(
            "\nnode {i}: served to peers {up}, from peers {from_peers}, from upstream {upstream}, link sent {link_sent}"
        ));
        served.push((up, link_sent));
        fetched_upstream.push(upstream >= LAYER);
    }
    let owners: Vec<usize> = (0..NODES).filter(|&i| fetched_upstream[i]).collect();
    assert_eq!(owners.len(), 1, "one node fetched the layer from the upstream:{report}");
    let owner = owners[0];
    // The layer's owner sends at most three copies; the rest travels between the others.
    let (owner_served, owner_link) = served[owner];
    assert!(owner_served <= 3 * LAYER, "the owner uploaded at most 3 copies:{report}");
    assert!(
        owner_link <= 3 * LAYER + LAYER / 4,
        "the owner's link carried at most 3 copies (and protocol overhead):{report}"
    );
    let sharers = (0..NODES).filter(|&i| i != owner && served[i].0 >= 1 << 20).count();
    assert!(sharers >= NODES / 2, "at least half the nodes uploaded a share:{report}");
    let total: u64 = served.iter().map(|&(up, _)| up).sum();
    assert!(total >= (NODES as u64 - 1) * LAYER, "every copy came from some peer:{report}");
    eprintln!("swarm of {NODES} on {LINK_MBIT} Mbit/s links:{report}");
}

/// A provider whose link is a tenth as fast as the owner's loses its pieces to the owner:
/// the harder case, since the owner is asked only for what no provider serves at a fair pace,
/// and a provider that is the only one is as fast as the fastest it has been compared with.
/// The pull completes with most of its bytes from the owner.
#[tokio::test]
async fn a_slow_source_loses_its_pieces_to_a_fast_one() {
    if !require_tools(&["docker-registry", "tc"]) || !require_lan() {
        return;
    }
    const SLOW_LAYER: u64 = 32 << 20;
    let lan = Lan::create_capped(4, Some(LINK_MBIT)).expect("LAN of capped hosts");
    let mut registry =
        Registry::start(RegistryOptions::plain().on(lan.gateway_ip())).await.expect("registry");
    let pushed =
        image::push_large_layer_image(&registry.client(), "library/big", "v1", SLOW_LAYER, 411)
            .await
            .expect("push");
    let layer = pushed.blobs().iter().find(|b| b.size == SLOW_LAYER).expect("layer").digest;
    let hosts = lan.hosts();
    let options = ShoalOptions::docker_io(registry.url());
    let nodes = start_on_hosts(hosts, |_| options.clone()).await.expect("the fleet joins");
    // Node 0 pulls, so the layer's owner fetches it from the upstream. If node 0 is the owner,
    // node 1 pulls too. The holder that is not the owner is slowed to a tenth; a node that
    // holds nothing pulls.
    get_verified(&nodes[0], "library/big", &layer).await.expect("a holder pulls");
    let owner = upstream_fetcher(&nodes, SLOW_LAYER)
        .await
        .expect("metric")
        .expect("a node fetched the layer from the upstream");
    let slow = if owner == 0 { 1 } else { 0 };
    if slow == 1 {
        get_verified(&nodes[1], "library/big", &layer).await.expect("a holder pulls");
    }
    let holders = [owner, slow];
    let held = || holders.iter().all(|&i| blob_file(&nodes[i], &layer).exists());
    assert!(eventually(Duration::from_secs(10), held).await, "both holders committed the layer");
    let puller = (0..nodes.len()).find(|i| !holders.contains(i)).expect("a node without the layer");
    lan.recap(&hosts[slow], LINK_MBIT / 10).expect("slow a provider's host");
    tokio::time::sleep(Duration::from_millis(500)).await;
    registry.reset_requests().await.expect("reset");
    let mut before = Vec::new();
    for node in &nodes {
        before.push(metric(node, "shoal_peer_bytes_served_total").await.expect("metric"));
    }

    let pulled = get_verified(&nodes[puller], "library/big", &layer).await.expect("the pull");
    assert_eq!(pulled, SLOW_LAYER);
    let mut served = Vec::new();
    for (node, before) in nodes.iter().zip(&before) {
        served.push(metric(node, "shoal_peer_bytes_served_total").await.expect("metric") - before);
    }
    let report = format!(
        "holders {holders:?}, owner {owner}, slow {slow}, puller {puller}, served {served:?}"
    );
    assert!(served[slow] <= SLOW_LAYER / 4, "the slow provider kept few pieces: {report}");
    assert!(served[owner] >= SLOW_LAYER * 3 / 4, "the owner served the rest: {report}");
    let gets = registry.count("GET", &format!("/v2/library/big/blobs/{layer}")).await;
    assert_eq!(gets.expect("count"), 0, "nothing went upstream: {report}");
    eprintln!("{report}");
}
