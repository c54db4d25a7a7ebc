//! Scenario 5 of the fleet: three machines on a LAN, started with no bootstrap flags at all,
//! find each other by mDNS and share a blob. Each node runs in a network namespace of its own
//! (see the harness's `lan` module), so the multicast never reaches this host's network.

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
