//! Faults inside a swarm: a peer that serves wrong pieces among honest ones is found out piece
//! by piece and alone distrusted, and the pull completes from the honest peers without going
//! upstream again.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use shoal_cluster_tests::fleet::{
    blob_file, get_verified, logs, metric, start_fleet, upstream_fetcher,
};
use shoal_cluster_tests::image;
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools};
use shoal_protocol::Digest;

const LAYER: u64 = 8 << 20;
const PIECE: usize = 1 << 20;

/// Flips one byte in every piece of a stored blob, keeping its length: a node that serves
/// every piece of it wrong while claiming to hold it verified.
fn corrupt_every_piece(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).expect("read the blob file");
    for piece in bytes.chunks_mut(PIECE) {
        let middle = piece.len() / 2;
        piece[middle] ^= 0xff;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .expect("make the blob file writable");
    std::fs::write(path, &bytes).expect("write the corrupted blob file");
}

#[tokio::test]
async fn a_peer_that_sends_wrong_pieces_is_traced_and_alone_distrusted() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed = image::push_large_layer_image(&registry.client(), "library/big", "v1", LAYER, 501)
        .await
        .expect("push");
    let layer = pushed.blobs().iter().find(|b| b.size == LAYER).expect("the layer").digest;
    let nodes = start_fleet(4, ShoalOptions::docker_io(registry.url())).await.expect("fleet");
    let named: Vec<(String, &ShoalNode)> =
        nodes.iter().enumerate().map(|(i, n)| (format!("n{i}"), n)).collect();
    let named: Vec<(&str, &ShoalNode)> = named.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    registry.reset_requests().await.expect("reset");

    // The first pull makes the layer's owner fetch it from the upstream.
    get_verified(&nodes[0], "library/big", &layer).await.expect("first pull");
    let owner = upstream_fetcher(&nodes, LAYER)
        .await
        .expect("metric")
        .expect("one node fetched the layer upstream");
    // Two more holders that are not the owner: the honest one and the liar; the last pulls.
    let others: Vec<usize> = (0..nodes.len()).filter(|&i| i != owner).collect();
    for &i in &others[..2] {
        if !blob_file(&nodes[i], &layer).exists() {
            get_verified(&nodes[i], "library/big", &layer).await.expect("a holder pulls");
        }
    }
    let (liar, puller) = (others[1], others[2]);
    assert!(!blob_file(&nodes[puller], &layer).exists(), "the puller holds nothing yet");
    corrupt_every_piece(&blob_file(&nodes[liar], &layer));
    // Provider records travel with the DHT; give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The bytes already passed on before the digest check cannot be taken back, so the first
    // response may fail; the node fetches the blob again without the liar, and a retry finds it.
    let puller_node = &nodes[puller];
    let pulled = match get_verified(puller_node, "library/big", &layer).await {
        Ok(len) => len,
        Err(first) => {
            tracing::info!(error = %first, "first pull through the puller failed; retrying once");
            tokio::time::sleep(Duration::from_millis(500)).await;
            get_verified(puller_node, "library/big", &layer)
                .await
                .unwrap_or_else(|e| panic!("the retry: {e}{}", logs(&named)))
        }
    };
    assert_eq!(pulled, LAYER);
    let stored = std::fs::read(blob_file(puller_node, &layer)).expect("the puller stored it");
    assert_eq!(Digest::of(&stored), layer);

    let corrupt = metric(puller_node, "shoal_peer_corrupt_total").await.expect("metric");
    let log = std::fs::read_to_string(puller_node.log_path()).expect("log");
    assert!(
        log.contains("traced the wrong pieces"),
        "the puller traced the wrong pieces to their sender{}",
        logs(&named)
    );
    assert_eq!(corrupt, 1, "only the liar was distrusted, not the honest peers{}", logs(&named));
    let gets =
        registry.count("GET", &format!("/v2/library/big/blobs/{layer}")).await.expect("count");
    assert_eq!(gets, 1, "the fleet fetched the layer from the upstream once{}", logs(&named));
}
