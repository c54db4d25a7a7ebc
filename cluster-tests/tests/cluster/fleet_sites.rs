//! Sites: two sites of four hosts, each host on a capped link, the sites joined by one capped
//! link. All eight pull one layer at once; the layer crosses between the sites about once, and
//! the upstream sees one GET. Counted on the link between the sites.
//!
//! The kernel here has no netem, so the link between the sites has a rate and no added delay:
//! the test asserts bytes, which a delay would not change.

use shoal_cluster_tests::fleet::{logs, metric, pull_on_every_host, start_on_hosts};
use shoal_cluster_tests::image;
use shoal_cluster_tests::lan::{Lan, require_lan};
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools};

const PER_SITE: usize = 4;
const LAYER: u64 = 32 << 20;

#[tokio::test]
async fn a_layer_crosses_between_two_sites_once() {
    if !require_tools(&["docker-registry", "skopeo", "tc"]) || !require_lan() {
        return;
    }
    // Declared first, so that it goes last: the processes on it are stopped before it goes.
    let lan = Lan::create_sites(&[PER_SITE, PER_SITE], Some(200), Some(100)).expect("two sites");
    let mut registry =
        Registry::start(RegistryOptions::plain().on(lan.gateway_ip())).await.expect("registry");
    let pushed = image::push_large_layer_image(&registry.client(), "library/big", "v1", LAYER, 601)
        .await
        .expect("push");
    let layer = pushed.blobs().iter().find(|b| b.size == LAYER).expect("the layer").digest;
    registry.reset_requests().await.expect("reset");

    let mut options = ShoalOptions::docker_io(registry.url());
    // How each download reached the blob is logged at debug level.
    options.env.push(("SHOAL_LOG".to_owned(), "info,shoal::fetch=debug".to_owned()));
    let hosts = lan.hosts();
    let site_of = |site: usize| options.clone().arg("--site").arg(["a", "b"][site]);
    let nodes = start_on_hosts(hosts, |host| site_of(host.site)).await.expect("two sites");
    let crossed_before = lan.between_sites_bytes(1).expect("counter");

    let out = tempfile::tempdir().expect("tempdir");
    let copies =
        pull_on_every_host(&nodes, hosts, "library/big:v1", out.path()).await.expect("pulls");
    for copied in copies {
        assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    }

    let names: Vec<String> = (0..nodes.len()).map(|i| format!("n{i}")).collect();
    let named: Vec<(&str, &ShoalNode)> = names.iter().map(String::as_str).zip(&nodes).collect();
    let gets = registry.count("GET", &format!("/v2/library/big/blobs/{layer}")).await;
    assert_eq!(
        gets.expect("count"),
        1,
        "one upstream GET of the layer for both sites{}",
        logs(&named)
    );
    // The upstream is on site a's side: what site b's nodes fetched from it crossed too, and
    // is not a copy sent between peers.
    let mut report = String::new();
    let mut upstream_into_b = 0;
    for (i, (node, host)) in nodes.iter().zip(hosts).enumerate() {
        let upstream = metric(node, "shoal_upstream_bytes_total").await.expect("metric");
        let from_peers = metric(node, "shoal_peer_bytes_total").await.expect("metric");
        let served = metric(node, "shoal_peer_bytes_served_total").await.expect("metric");
        if host.site == 1 {
            upstream_into_b += upstream;
        }
        report.push_str(&format!(
            "\nnode {i} (site {}): from upstream {upstream}, from peers {from_peers}, served {served}",
            host.site
        ));
    }
    let crossed = lan.between_sites_bytes(1).expect("counter") - crossed_before;
    let between_peers = crossed.saturating_sub(upstream_into_b);
    let copies = between_peers as f64 / LAYER as f64;
    report.push_str(&format!("\ncrossed {crossed} bytes, {copies:.2} copies between peers"));
    // One copy, plus packet headers and acknowledgements both ways, manifests and the control
    // plane; without sites each of site b's nodes would read its own copy across.
    assert!(
        copies <= 1.25,
        "the layer crossed between the sites about once:{report}{}",
        logs(&named)
    );
    eprintln!("two sites:{report}");
}
