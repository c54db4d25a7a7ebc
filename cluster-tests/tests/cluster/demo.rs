//! `shoal demo` against a local registry, as its banner tells a person to use it: pull an
//! image through one of its nodes with skopeo, then through another. The upstream sends each
//! blob once, and the live view says where each node got each layer: the node that owns a
//! digest fetched it from the upstream, every other node from a peer.

use std::time::Duration;

use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::demo::{Demo, DemoNode};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::{Registry, RegistryOptions, require_tools};
use shoal_protocol::Digest;
use shoal_protocol::peer::{blob_key, owner_distance};

/// How long after skopeo is done the view may take to show a pull (its line is written when
/// the body's last byte has gone out, which the client may see first).
const VIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// The node that owns `digest`: the one whose peer id is closest to it, as the nodes compute it.
fn owner<'a>(nodes: &'a [DemoNode], digest: &Digest) -> &'a DemoNode {
    let key = blob_key(digest);
    nodes
        .iter()
        .min_by_key(|node| {
            let id = bs58::decode(&node.peer_id).into_vec().expect("a base58 peer id");
            owner_distance(&key, &id)
        })
        .expect("nodes")
}

/// How the view names a blob of `repository`.
fn what(repository: &str, digest: &Digest) -> String {
    format!("docker.io/{repository}@sha256:{}…", &digest.hex()[..12])
}

#[tokio::test]
async fn a_demo_fleet_fetches_each_layer_once_and_shows_where_each_came_from() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed = image::push_image(&registry.client(), "library/app", "v1", &ImageSpec::oci(1001))
        .await
        .expect("push");
    registry.reset_requests().await.expect("reset");
    let upstream = format!("docker.io={}", registry.url());
    let mut demo = Demo::start(&["--upstream", &upstream]).await.expect("shoal demo");
    assert_eq!(demo.nodes.len(), 3, "{}", demo.output());
    assert!(demo.dir.is_dir(), "the demo's directory {} exists", demo.dir.display());

    // The first pull goes through node-1; the second through whichever other node owns fewer
    // of the blobs, so that some of its layers must come from a peer whatever the peer ids.
    let first = demo.nodes[0].clone();
    let blobs = pushed.blobs();
    let owned_by =
        |node: &DemoNode| blobs.iter().filter(|b| owner(&demo.nodes, &b.digest) == node).count();
    let second = demo.nodes[1..].iter().min_by_key(|n| owned_by(n)).expect("nodes").clone();
    assert!(blobs.iter().any(|b| owner(&demo.nodes, &b.digest) != &second));

    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");
    for node in [&first, &second] {
        let source = format!("{}/library/app:v1", node.host);
        let copied = skopeo
            .copy(&source, &out.path().join(&node.name), &CopyOptions::default())
            .await
            .unwrap_or_else(|e| panic!("pull through {}: {e}", node.name));
        assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
        assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    }

    for blob in &blobs {
        let owner = owner(&demo.nodes, &blob.digest);
        let what = what("library/app", &blob.digest);
        for (node, expected) in [
            (&first, if owner == &first { "upstream" } else { "peer" }),
            (&second, if owner == &second { "local" } else { "peer" }),
        ] {
            let pull = demo
                .wait_for_pull(VIEW_TIMEOUT, |p| p.node == node.name && p.what == what)
                .await
                .expect("the view shows the pull");
            assert_eq!(pull.kind, "blob", "{}", pull.line);
            assert_eq!(
                pull.source.as_deref(),
                Some(expected),
                "{} pulled {what}, owned by {}: {}\n{}",
                node.name,
                owner.name,
                pull.line,
                demo.output()
            );
        }
    }

    let requests = registry.requests().await.expect("access log");
    for blob in &blobs {
        let path = format!("/v2/library/app/blobs/{}", blob.digest);
        let gets = registry.count("GET", &path).await.expect("count");
        assert_eq!(gets, 1, "one GET of {path} for the demo's fleet: {requests:?}");
    }

    // Ctrl-C stops the nodes and removes everything the demo made.
    let status = demo.interrupt(Duration::from_secs(30)).expect("the demo stops on Ctrl-C");
    assert!(status.success(), "{status}: {}", demo.output());
    assert!(!demo.dir.exists(), "{} is removed: {}", demo.dir.display(), demo.output());
}
