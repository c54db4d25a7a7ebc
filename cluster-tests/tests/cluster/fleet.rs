//! Several real nodes as one cache: the fleet fetches each layer from the upstream once, a node
//! that pulls after another takes the bytes from its peer (also after that peer restarted), and
//! the fleet survives the upstream going away.

use std::time::Duration;

use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::fleet::{metric, start_fleet, wait_for_peers};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools};
use shoal_protocol::Digest;

#[tokio::test]
async fn eight_nodes_pulling_at_once_fetch_each_blob_upstream_once() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let spec = ImageSpec { layer_size: 2 << 20, ..ImageSpec::oci(301) };
    let pushed =
        image::push_image(&registry.client(), "library/app", "v1", &spec).await.expect("push");
    registry.reset_requests().await.expect("reset");
    let nodes = start_fleet(8, ShoalOptions::docker_io(registry.url())).await.expect("fleet");

    let out = tempfile::tempdir().expect("tempdir");
    let pulls: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let source = format!("{}/library/app:v1", node.host());
            let dest = out.path().join(format!("node-{i}"));
            tokio::spawn(async move {
                Skopeo::new().expect("skopeo").copy(&source, &dest, &CopyOptions::default()).await
            })
        })
        .collect();
    for pull in pulls {
        let copied = pull.await.expect("join").expect("every pull succeeds");
        assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
        assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    }

    let requests = registry.requests().await.expect("log");
    let manifest_gets = registry.count("GET", "/v2/library/app/manifests/v1").await.expect("count");
    assert_eq!(manifest_gets, 1, "one GET of the manifest by tag: {requests:?}");
    for blob in pushed.blobs() {
        let path = format!("/v2/library/app/blobs/{}", blob.digest);
        let gets = registry.count("GET", &path).await.expect("count");
        assert_eq!(gets, 1, "one GET of {path} for the whole fleet: {requests:?}");
    }
}

#[tokio::test]
async fn a_second_node_takes_the_bytes_from_the_first() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed =
        image::push_image(&registry.client(), "library/app", "v1", &ImageSpec::docker(311))
            .await
            .expect("push");
    let options = ShoalOptions::docker_io(registry.url());
    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");

    // A pulls alone, so it owns every key and fetches every blob itself. (With B already a
    // member, B would fetch the blobs it owns on A's behalf, and which those are depends on the
    // random peer ids.)
    let a = ShoalNode::start(options.clone()).await.expect("node a");
    let by_tag = format!("{}/library/app:v1", a.host());
    skopeo.copy(&by_tag, &out.path().join("a"), &CopyOptions::default()).await.expect("a pulls");
    let b = ShoalNode::start(options.bootstrap(&a)).await.expect("node b");
    let nodes = [a, b];
    wait_for_peers(&nodes, 1).await.expect("b joins a");
    let [a, b] = &nodes;
    registry.reset_requests().await.expect("reset");

    // By digest: by tag, B may own the tag and would then rightly ask the upstream about it.
    let by_digest = format!("{}/library/app@{}", b.host(), pushed.root.digest);
    let copied = skopeo
        .copy(&by_digest, &out.path().join("b"), &CopyOptions::default())
        .await
        .expect("b pulls");
    assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());

    let requests = registry.requests().await.expect("log");
    assert!(requests.is_empty(), "b's pull made no upstream request: {requests:?}");
    assert_eq!(metric(b, "shoal_upstream_blob_fetches_total").await.expect("metric"), 0);
    let blobs = pushed.blobs().len() as u64;
    assert_eq!(metric(b, "shoal_peer_blob_fetches_total").await.expect("metric"), blobs);
    // A served the blobs and the manifest (content-addressed too) over the peer data plane.
    assert_eq!(metric(a, "shoal_peer_blob_serves_total").await.expect("metric"), blobs + 1);
}

#[tokio::test]
async fn every_node_pulls_after_the_upstream_goes_away() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed =
        image::push_multi_arch(&registry.client(), "library/app", "v1", 321).await.expect("push");
    let options = ShoalOptions::docker_io(registry.url()).arg("--tag-ttl").arg("1s");
    let nodes = start_fleet(3, options).await.expect("fleet");
    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");
    let all = CopyOptions { all: true, ..CopyOptions::default() };

    let warm = format!("{}/library/app:v1", nodes[0].host());
    skopeo.copy(&warm, &out.path().join("warm"), &all).await.expect("warm-up");
    registry.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    for (i, node) in nodes.iter().enumerate() {
        let by_tag = format!("{}/library/app:v1", node.host());
        let copied = skopeo
            .copy(&by_tag, &out.path().join(format!("tag-{i}")), &all)
            .await
            .unwrap_or_else(|e| panic!("node {i} by tag with the upstream down: {e}"));
        assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
        assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());

        let by_digest = format!("{}/library/app@{}", node.host(), pushed.root.digest);
        let copied = skopeo
            .copy(&by_digest, &out.path().join(format!("digest-{i}")), &all)
            .await
            .unwrap_or_else(|e| panic!("node {i} by digest with the upstream down: {e}"));
        assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
    }
}

#[tokio::test]
async fn a_restarted_node_announces_what_it_holds() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed = image::push_image(&registry.client(), "library/app", "v1", &ImageSpec::oci(331))
        .await
        .expect("push");
    let options = ShoalOptions::docker_io(registry.url());
    let mut a = ShoalNode::start(options.clone()).await.expect("node a");
    let out = tempfile::tempdir().expect("tempdir");
    let source = format!("{}/library/app:v1", a.host());
    Skopeo::new()
        .expect("skopeo")
        .copy(&source, &out.path().join("a"), &CopyOptions::default())
        .await
        .expect("a pulls");
    // The DHT forgets a node's records when it stops; only a new announcement brings them back.
    a.restart().await.expect("a restarts");
    registry.stop();

    let b = ShoalNode::start(options.bootstrap(&a)).await.expect("node b");
    let nodes = [a, b];
    wait_for_peers(&nodes, 1).await.expect("b joins a");
    let [a, b] = &nodes;
    let http = reqwest::Client::new();
    for blob in pushed.blobs() {
        let url = format!("{}/v2/library/app/blobs/{}", b.url(), blob.digest);
        let response = http.get(&url).send().await.expect("GET");
        assert_eq!(response.status(), 200, "{url}");
        let bytes = response.bytes().await.expect("body");
        assert_eq!(Digest::of(&bytes), blob.digest);
    }
    // Every blob came from a as a provider: none through a as the owner (which a restart that
    // forgot its records would need for the blobs a owns), none upstream (which is down).
    let blobs = pushed.blobs().len() as u64;
    assert_eq!(metric(b, "shoal_peer_blob_fetches_total").await.expect("metric"), blobs);
    assert_eq!(metric(a, "shoal_owner_requests_total").await.expect("metric"), 0);
}
