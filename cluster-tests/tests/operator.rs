//! What an operator sees of real nodes: a `pull done` line per pull that says where its bytes
//! came from, a `/metrics` exposition that `promtool` accepts, and `shoal status` listing a
//! fleet's members.

use std::process::Command;

use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::fleet::start_fleet;
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::shoal::shoal_binary;
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools};

/// The node's `pull done` lines that name `reference`.
fn pull_lines(node: &ShoalNode, reference: &str) -> Vec<String> {
    let log = std::fs::read_to_string(node.log_path()).expect("node log");
    log.lines()
        .filter(|l| l.contains("pull done") && l.contains(&format!("reference={reference}")))
        .map(str::to_owned)
        .collect()
}

/// Waits for `count` lines: a line is written when the body's last byte has gone out, which
/// the client may see first.
async fn wait_for_pull_lines(node: &ShoalNode, reference: &str, count: usize) -> Vec<String> {
    for _ in 0..100 {
        let lines = pull_lines(node, reference);
        if lines.len() >= count {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
    panic!("fewer than {count} pull lines for {reference}:\n{log}");
}

#[tokio::test]
async fn each_pull_is_logged_with_its_source_and_promtool_accepts_the_metrics() {
    if !require_tools(&["docker-registry", "skopeo", "promtool"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed = image::push_image(&registry.client(), "library/app", "v1", &ImageSpec::oci(901))
        .await
        .expect("push");
    let node = ShoalNode::start(ShoalOptions::docker_io(registry.url()).without_cluster_key())
        .await
        .expect("node");
    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");
    let source = format!("{}/library/app:v1", node.host());
    for pull in ["first", "second"] {
        let copied = skopeo
            .copy(&source, &out.path().join(pull), &CopyOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{pull} pull: {e}"));
        assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    }

    for blob in pushed.blobs() {
        let digest = blob.digest.to_string();
        let lines = wait_for_pull_lines(&node, &digest, 2).await;
        assert!(lines[0].contains("source=upstream"), "a miss comes from upstream: {lines:?}");
        assert!(lines[1].contains("source=local"), "a second pull is a hit: {lines:?}");
        for line in &lines {
            assert!(line.contains("repository=docker.io/library/app"), "{line}");
            assert!(line.contains(&format!("bytes={}", blob.size)), "{line}");
            assert!(line.contains("status=200") && line.contains("duration_ms="), "{line}");
            // skopeo read the whole body: not a client that left.
            assert!(!line.contains("error="), "{line}");
        }
    }
    let manifest = wait_for_pull_lines(&node, "v1", 2).await;
    assert!(manifest[0].contains("source=upstream"), "{manifest:?}");
    assert!(manifest[1].contains("source=local"), "{manifest:?}");

    let metrics = reqwest::get(format!("{}/metrics", node.url()))
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write as _;
    promtool.stdin.take().expect("stdin").write_all(metrics.as_bytes()).expect("write metrics");
    let checked = promtool.wait_with_output().expect("promtool output");
    assert!(
        checked.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the exposition:\n{metrics}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[tokio::test]
async fn shoal_status_lists_every_member_of_a_fleet() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let nodes = start_fleet(3, ShoalOptions::docker_io(registry.url())).await.expect("fleet");
    let binary = shoal_binary().expect("shoal binary");

    let output = Command::new(&binary)
        .args(["status", "--json", "--node", &nodes[1].url()])
        .output()
        .expect("run shoal status");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let members = report["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{report:#}");
    let mut ids: Vec<&str> = members.iter().map(|m| m["peer_id"].as_str().expect("id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct members: {report:#}");
    assert!(members.iter().all(|m| m["reachable"] == true), "{report:#}");
    let local: Vec<_> = members.iter().filter(|m| m["local"] == true).collect();
    assert_eq!(local.len(), 1, "{report:#}");
    assert_eq!(local[0]["address"].as_str(), Some(nodes[1].url().as_str()), "{report:#}");
    let addresses: Vec<&str> = members.iter().filter_map(|m| m["address"].as_str()).collect();
    for node in &nodes {
        assert!(addresses.contains(&node.url().as_str()), "{} missing: {report:#}", node.url());
    }

    let table = Command::new(&binary)
        .args(["status", "--node", &nodes[0].url()])
        .output()
        .expect("run shoal status");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    assert!(text.contains("Members    3 (3 reachable)"), "{text}");
}
