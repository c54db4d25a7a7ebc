//! Three machines on a LAN, each node in a network namespace of its own (the harness's `lan`
//! module), so the multicast never reaches this host's network: started with no bootstrap
//! flags at all, they find each other by mDNS and share a blob; and one of them, cut off from
//! the other two without a word, still pulls in seconds.

use std::time::{Duration, Instant};

use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::fleet::{metric, wait_for_peers};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::lan::{Lan, require_lan};
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools};

#[tokio::test]
async fn three_nodes_with_mdns_find_each_other_and_share_a_blob() {
    if !require_tools(&["docker-registry", "skopeo"]) || !require_lan() {
        return;
    }
    // Declared first, so that it goes last: the processes on it are stopped before it goes.
    let lan = Lan::create(3).expect("LAN of three hosts");
    let mut registry =
        Registry::start(RegistryOptions::plain().on(lan.gateway_ip())).await.expect("registry");
    let pushed = image::push_image(&registry.client(), "library/app", "v1", &ImageSpec::oci(351))
        .await
        .expect("push");
    // One key for the three (the harness's default): mDNS finds them, the key lets them in.
    let options = ShoalOptions { mdns: true, ..ShoalOptions::docker_io(registry.url()) };
    assert!(options.bootstrap.is_empty());

    let mut nodes = Vec::new();
    for host in lan.hosts() {
        nodes.push(ShoalNode::start(options.clone().on(host)).await.expect("node"));
    }
    wait_for_peers(&nodes, 2).await.expect("every node finds the other two by mDNS");
    for node in &nodes {
        let log = std::fs::read_to_string(node.log_path()).expect("log");
        assert!(!log.contains("--bootstrap"), "no node was told where the others are");
    }

    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");
    let source = |node: &ShoalNode| format!("{}/library/app:v1", node.host());
    skopeo
        .copy(&source(&nodes[0]), &out.path().join("first"), &CopyOptions::default())
        .await
        .expect("the first node pulls");
    // Provider records travel with the DHT; give them a moment.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    registry.reset_requests().await.expect("reset");

    for (i, node) in nodes.iter().enumerate().skip(1) {
        let copied = skopeo
            .copy(&source(node), &out.path().join(format!("node-{i}")), &CopyOptions::default())
            .await
            .unwrap_or_else(|e| panic!("node {i} pulls: {e}"));
        assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
        assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    }
    let requests = registry.requests().await.expect("log");
    let blob_gets: Vec<_> =
        requests.iter().filter(|r| r.method == "GET" && r.path.contains("/blobs/")).collect();
    assert!(blob_gets.is_empty(), "the other nodes took every blob from the fleet: {blob_gets:?}");
    let mut from_peers = 0;
    for node in &nodes[1..] {
        from_peers += metric(node, "shoal_peer_blob_fetches_total").await.expect("metric");
    }
    assert!(from_peers > 0, "blobs travelled between the nodes over the LAN");
}

#[tokio::test]
async fn a_node_cut_off_from_its_peers_without_a_word_still_pulls_within_seconds() {
    if !require_tools(&["docker-registry", "skopeo", "iptables"]) || !require_lan() {
        return;
    }
    let lan = Lan::create(3).expect("LAN of three hosts");
    let registry =
        Registry::start(RegistryOptions::plain().on(lan.gateway_ip())).await.expect("registry");
    // Six layers and a config: owners spread over the three members, so the cut-off node
    // needs bytes whose owner it cannot reach.
    let spec = ImageSpec { layers: 6, ..ImageSpec::oci(352) };
    let pushed =
        image::push_image(&registry.client(), "library/app", "v1", &spec).await.expect("push");
    let options = ShoalOptions { mdns: true, ..ShoalOptions::docker_io(registry.url()) };
    let mut nodes = Vec::new();
    for host in lan.hosts() {
        nodes.push(ShoalNode::start(options.clone().on(host)).await.expect("node"));
    }
    wait_for_peers(&nodes, 2).await.expect("every node finds the other two");

    let hosts = lan.hosts();
    lan.partition(&hosts[2], &[&hosts[0], &hosts[1]]).expect("partition");
    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let copied = skopeo
        .copy(
            &format!("{}/library/app:v1", nodes[2].host()),
            &out.path().join("cut-off"),
            &CopyOptions::default(),
        )
        .await
        .expect("the cut-off node pulls");
    let took = started.elapsed();
    eprintln!("a pull through a silently partitioned node took {took:?}");
    assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    // The first request to each silent member fails once it has missed two pings (about 2 s),
    // later ones at once: 4.4 s here for the manifest and seven blobs, against 37 s when each
    // request waited out its own timeout. The bound leaves room for a slow machine.
    assert!(took < Duration::from_secs(15), "the partition held the pull for {took:?}");
    // No member could serve it, so the node fetched every blob itself, owner or not.
    let requests = registry.requests().await.expect("log");
    let mut blob_gets: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/"))
        .map(|r| r.path.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    blob_gets.sort();
    let mut expected: Vec<_> = pushed.blob_digests().iter().map(|d| d.to_string()).collect();
    expected.sort();
    assert_eq!(blob_gets, expected, "one upstream GET per blob, all by the cut-off node");
}
