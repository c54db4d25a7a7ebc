//! What an operator sees of real nodes: a `pull done` line per pull that says where its bytes
//! came from, a `/metrics` exposition that `promtool` accepts and that has every metric and
//! label the Grafana dashboard queries, and `shoal status` listing a fleet's members.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::dashboard;
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
async fn each_pull_is_logged_with_its_source_and_the_metrics_are_what_promtool_and_grafana_read() {
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
    check_dashboard(&metrics);
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

/// Every query of `deploy/grafana/shoal.json` is PromQL that `promtool` parses, and reads only
/// metrics and labels that `exposition` (a real node's, after pulls) has.
fn check_dashboard(exposition: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/shoal.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    let board: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let queries = dashboard::queries(&board);
    assert!(queries.len() >= 20, "a query per question: {queries:?}");
    let exposed = dashboard::exposed(exposition);

    let mut used = BTreeSet::new();
    for metric in dashboard::variable_metrics(&board) {
        assert!(exposed.contains_key(&metric), "a variable reads {metric}, which is not exposed");
        used.insert(metric);
    }
    for query in &queries {
        let uses = dashboard::uses(query);
        assert!(!uses.metrics.is_empty(), "{query} reads no shoal metric");
        let mut labels = BTreeSet::new();
        for (metric, matched) in &uses.metrics {
            let Some(exposed_labels) = exposed.get(metric) else {
                panic!("{query} reads {metric}, which the node does not expose:\n{exposition}")
            };
            for label in matched {
                assert!(exposed_labels.contains(label), "{query}: {metric} has no label {label}");
            }
            labels.extend(exposed_labels.iter().cloned());
            used.insert(metric.clone());
        }
        for label in &uses.grouped_by {
            assert!(labels.contains(label), "{query} groups by {label}, which its metrics lack");
        }
    }
    // What the dashboard must answer: requests and latency, bytes by source, upstreams, peers,
    // the store, members, DHT lookups, a miss's first byte.
    for metric in [
        "shoal_http_requests_total",
        "shoal_http_request_duration_seconds_bucket",
        "shoal_served_bytes_total",
        "shoal_upstream_requests_total",
        "shoal_upstream_registry_bytes_total",
        "shoal_peer_bytes_total",
        "shoal_peer_bytes_served_total",
        "shoal_store_bytes",
        "shoal_store_evictions_total",
        "shoal_fleet_peers",
        "shoal_dht_provider_lookup_duration_seconds_bucket",
        "shoal_miss_first_byte_seconds_bucket",
    ] {
        assert!(used.contains(metric), "the dashboard shows nothing of {metric}");
    }

    // promtool parses each query as a recording rule's expression.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        let expr = serde_json::to_string(&dashboard::as_promql(query)).expect("quoted");
        rules.push_str(&format!("      - record: dashboard:query_{i}\n        expr: {expr}\n"));
    }
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(&file, &rules).expect("write rules");
    let checked =
        Command::new("promtool").args(["check", "rules"]).arg(&file).output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check rules:\n{}{}\n--- the rules:\n{rules}",
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
