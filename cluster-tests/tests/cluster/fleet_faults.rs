//! Faults inside the fleet: the node others are streaming a blob from dies midway, nodes with
//! another cluster key or none try to join and to read from peers, and a peer serves a blob
//! whose file was corrupted on disk.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use futures_util::StreamExt;
use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::fleet::{blob_file, logs, metric, wait_for_peers};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools};
use shoal_protocol::Digest;
use tokio::sync::oneshot;

/// How long any one transfer in these tests may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("http client")
}

/// GETs a blob from `node`, telling `first_bytes` once the body has started to arrive; returns
/// the digest of what was received and its length.
async fn get_blob(
    node_url: String,
    repo: &str,
    digest: Digest,
    first_bytes: oneshot::Sender<()>,
) -> Result<(Digest, u64), String> {
    let url = format!("{node_url}/v2/{repo}/blobs/{digest}");
    let response = http().get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: {}", response.status()));
    }
    let mut first_bytes = Some(first_bytes);
    let mut verifier = digest.verifier();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| format!("GET {url} after {} bytes: {e}", verifier.len()))?;
        verifier.update(&chunk);
        if let Some(tell) = first_bytes.take() {
            let _ = tell.send(());
        }
    }
    let len = verifier.len();
    match verifier.finish() {
        Ok(_) => Ok((digest, len)),
        Err(mismatch) => Err(format!("GET {url}: {len} bytes that do not match: {mismatch}")),
    }
}

#[tokio::test]
async fn readers_of_a_killed_source_complete_their_pulls() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    const LAYER: u64 = 128 << 20;
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed = image::push_large_layer_image(&registry.client(), "library/big", "v1", LAYER, 331)
        .await
        .expect("push");
    let layer = pushed.blobs().iter().find(|b| b.size == LAYER).expect("the large layer").digest;
    let mut options = ShoalOptions::docker_io(registry.url());
    // Which provider a resuming download turns to is logged at debug level.
    options.env.push(("SHOAL_LOG".to_owned(), "info,shoal::fetch=debug".to_owned()));

    // A alone first: it fetches the layer itself and is then its only holder, so B and C, which
    // join afterwards, can only read it from A.
    let a = ShoalNode::start(options.clone()).await.expect("node a");
    let (tell, _) = oneshot::channel();
    let warm = get_blob(a.url(), "library/big", layer, tell).await.expect("a pulls the layer");
    assert_eq!(warm, (layer, LAYER));
    let b = ShoalNode::start(options.clone().bootstrap(&a)).await.expect("node b");
    let c = ShoalNode::start(options.bootstrap(&a)).await.expect("node c");
    let mut nodes = vec![a, b, c];
    wait_for_peers(&nodes, 2).await.expect("the fleet joins");
    // Provider records travel with the DHT; give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut started = Vec::new();
    let mut pulls = Vec::new();
    for node in &nodes[1..] {
        let (tell, told) = oneshot::channel();
        started.push(told);
        pulls.push(tokio::spawn(get_blob(node.url(), "library/big", layer, tell)));
    }
    for told in started {
        tokio::time::timeout(TRANSFER_TIMEOUT, told)
            .await
            .expect("b and c start receiving")
            .expect("b and c start receiving");
    }
    nodes[0].stop();
    tracing::info!("killed node a while b and c read from it");

    let deadline = tokio::time::Instant::now() + TRANSFER_TIMEOUT;
    let mut outcomes = Vec::new();
    for pull in pulls {
        let outcome = tokio::time::timeout_at(deadline, pull).await;
        outcomes.push(
            outcome
                .map_err(|_| "timed out".to_owned())
                .and_then(|joined| joined.map_err(|e| e.to_string()).and_then(|pulled| pulled)),
        );
    }
    let named = [("a", &nodes[0]), ("b", &nodes[1]), ("c", &nodes[2])];
    // Who read from whom after the kill, to tell a stalled resume from a broken one.
    let mut counters = String::new();
    for (name, node) in &named[1..] {
        for counter in ["shoal_peer_blob_fetches_total", "shoal_peer_blob_serves_total"] {
            let value =
                metric(node, counter).await.map_or_else(|e| e.to_string(), |v| v.to_string());
            counters.push_str(&format!("\n{name} {counter} {value}"));
        }
    }
    for (outcome, name) in outcomes.iter().zip(["b", "c"]) {
        assert_eq!(
            outcome.as_ref(),
            Ok(&(layer, LAYER)),
            "{name}'s pull completes with the right bytes{counters}{}",
            logs(&named)
        );
    }
    // The pulls must really have lost their source midway, or this test proved nothing.
    let broken = named[1..].iter().any(|(_, node)| {
        let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
        log.lines().any(|l| {
            l.contains(&layer.to_string())
                && (l.contains("transfer broke")
                    || l.contains("source failed")
                    || l.contains("piece failed"))
        })
    });
    assert!(broken, "b or c lost its source mid-transfer{}", logs(&named));
}

/// GETs a peer blob with `auth` as its `x-shoal-peer-auth` (or none) and returns the status
/// and the first OCI error code.
async fn peer_get(node: &ShoalNode, digest: &Digest, auth: Option<&str>) -> (u16, String) {
    let url = format!("{}/v2/_shoal/peer/blobs/{digest}", node.url());
    let mut request = http().get(&url);
    if let Some(auth) = auth {
        request = request.header("x-shoal-peer-auth", auth);
    }
    let response = request.send().await.expect("peer GET");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["errors"][0]["code"].as_str().unwrap_or_default().to_owned();
    (status, code)
}

/// Whether `node`'s log has a line with every one of `words`.
fn logged(node: &ShoalNode, words: &[&str]) -> bool {
    let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
    log.lines().any(|line| words.iter().all(|w| line.contains(w)))
}

#[tokio::test]
async fn nodes_with_another_key_or_none_are_kept_out() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed = image::push_image(&registry.client(), "library/app", "v1", &ImageSpec::oci(341))
        .await
        .expect("push");
    // The fleet's key is the harness's default; the stranger makes one of its own.
    let keyed = ShoalOptions::docker_io(registry.url());

    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");
    let source = |node: &ShoalNode| format!("{}/library/app:v1", node.host());

    // A pulls alone, so it holds every blob and B, which joins afterwards, holds none.
    let a = ShoalNode::start(keyed.clone()).await.expect("node a");
    skopeo
        .copy(&source(&a), &out.path().join("a"), &CopyOptions::default())
        .await
        .expect("a pulls");
    let b = ShoalNode::start(keyed.clone().bootstrap(&a)).await.expect("node b");
    let stranger =
        ShoalNode::start(keyed.clone().new_cluster_key().bootstrap(&a)).await.expect("stranger");
    let keyless =
        ShoalNode::start(keyed.clone().without_cluster_key().bootstrap(&a)).await.expect("keyless");
    let keyed_nodes = [a, b];
    wait_for_peers(&keyed_nodes, 1).await.expect("the keyed nodes join");
    // Time enough for the stranger's dial to the first node to have succeeded, were it allowed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let [a, b] = &keyed_nodes;
    let named = [("a", a), ("b", b), ("stranger", &stranger), ("keyless", &keyless)];
    for (name, node) in &named[..2] {
        let peers = metric(node, "shoal_fleet_peers").await.expect("metric");
        assert_eq!(peers, 1, "{name} sees only the other keyed node{}", logs(&named));
    }
    for (name, node) in &named[2..] {
        let peers = metric(node, "shoal_fleet_peers").await.expect("metric");
        assert_eq!(peers, 0, "the {name} node sees no peer{}", logs(&named));
    }

    // Both ends of the refused handshake say the keys differ, and count it.
    for (name, node) in [("a", a), ("stranger", &stranger)] {
        assert!(
            logged(node, &["cluster keys differ", "127.0.0.1"]),
            "{name} logs the key mismatch with the remote's address{}",
            logs(&named)
        );
        let counted = metric(node, "shoal_p2p_key_mismatches_total").await.expect("metric");
        assert!(counted >= 1, "{name} counts the key mismatch{}", logs(&named));
    }
    assert!(!logged(b, &["cluster keys differ"]), "b met no other key{}", logs(&named));

    // The node without a key runs alone: it says how to make one, is ready, and pulls
    // through from the upstream by itself.
    assert!(
        logged(&keyless, &["shoal key generate", "--cluster-key"]),
        "the keyless node says how to make a key{}",
        logs(&named)
    );
    let ready = http().get(format!("{}/readyz", keyless.url())).send().await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200, "the keyless node is ready");
    registry.reset_requests().await.expect("reset");
    let copied = skopeo
        .copy(&source(&keyless), &out.path().join("keyless"), &CopyOptions::default())
        .await
        .unwrap_or_else(|e| panic!("the keyless node serves a pull: {e}{}", logs(&named)));
    assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    let from_upstream =
        metric(&keyless, "shoal_upstream_blob_fetches_total").await.expect("metric");
    assert_eq!(from_upstream, pushed.blobs().len() as u64, "from the upstream, alone");

    // Nobody reads a's data plane without a signed request.
    let layer = pushed.root.blobs.last().expect("a layer").digest;
    assert!(blob_file(a, &layer).exists(), "a holds {layer}");
    assert_eq!(peer_get(a, &layer, None).await, (401, "UNAUTHORIZED".to_owned()));
    let forged = "v1; peer=12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN; t=1; \
                  nonce=000102030405060708090a0b0c0d0e0f; \
                  sig=fe3e248313cc0cd4624f64602f1c3c7dd8f3508b94a8658cf663293b0d6cbb29";
    assert_eq!(peer_get(a, &layer, Some(forged)).await, (401, "UNAUTHORIZED".to_owned()));

    // The keyed nodes still share: b's pull takes every blob from a. By digest: by tag, b may
    // own the tag and would then rightly ask the upstream about it.
    registry.reset_requests().await.expect("reset");
    let by_digest = format!("{}/library/app@{}", b.host(), pushed.root.digest);
    let copied = skopeo
        .copy(&by_digest, &out.path().join("b"), &CopyOptions::default())
        .await
        .expect("b pulls");
    assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    let requests = registry.requests().await.expect("log");
    assert!(requests.is_empty(), "b's pull made no upstream request: {requests:?}");
    let from_peers = metric(b, "shoal_peer_blob_fetches_total").await.expect("metric");
    assert_eq!(from_peers, pushed.blobs().len() as u64, "b took every blob from a{}", logs(&named));
}

/// Overwrites a few bytes in the middle of `path`, keeping its length.
fn corrupt(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).expect("read the blob file");
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 16] {
        *byte ^= 0xff;
    }
    // Stored blobs may be read-only; the test's user owns them and may open them up.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .expect("make the blob file writable");
    std::fs::write(path, &bytes).expect("write the corrupted blob file");
}

#[tokio::test]
async fn bytes_corrupted_on_a_peers_disk_are_refused() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let spec = ImageSpec { layer_size: 1 << 20, ..ImageSpec::oci(351) };
    let pushed =
        image::push_image(&registry.client(), "library/app", "v1", &spec).await.expect("push");
    let options = ShoalOptions::docker_io(registry.url());
    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");

    // A pulls alone, so it holds every blob and B, which joins afterwards, holds none.
    let a = ShoalNode::start(options.clone()).await.expect("node a");
    let source = |node: &ShoalNode| format!("{}/library/app:v1", node.host());
    skopeo
        .copy(&source(&a), &out.path().join("a"), &CopyOptions::default())
        .await
        .expect("a pulls");
    let layer = pushed.root.blobs.last().expect("a layer");
    corrupt(&blob_file(&a, &layer.digest));
    let b = ShoalNode::start(options.bootstrap(&a)).await.expect("node b");
    let nodes = [a, b];
    wait_for_peers(&nodes, 1).await.expect("the fleet joins");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let [a, b] = &nodes;
    let named = [("a", a), ("b", b)];

    let dest = out.path().join("b");
    let copied = match skopeo.copy(&source(b), &dest, &CopyOptions::default()).await {
        Ok(copied) => copied,
        // The bytes b had already passed on from a before the digest check cannot be taken
        // back, so that first response fails; b refetches without a, and a retry finds it.
        Err(first) => {
            tracing::info!(error = %first, "first pull through b failed; retrying once");
            skopeo
                .copy(&source(b), &dest, &CopyOptions::default())
                .await
                .unwrap_or_else(|e| panic!("b's retry: {e}{}", logs(&named)))
        }
    };
    assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    let stored = std::fs::read(blob_file(b, &layer.digest)).expect("b stored the layer");
    assert_eq!(Digest::of(&stored), layer.digest, "b's file for the layer matches its digest");
    let corrupt_seen = metric(b, "shoal_peer_corrupt_total").await.expect("metric");
    assert!(corrupt_seen >= 1, "b counted a's corrupt bytes{}", logs(&named));
}
