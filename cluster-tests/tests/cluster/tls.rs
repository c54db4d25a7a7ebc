//! HTTPS end to end, with certificates from a private CA: an upstream registry that serves
//! TLS is reached only with `--upstream-ca`; nodes serve the registry API over HTTPS to skopeo
//! and containerd that verify the certificate, and to each other (`--peer-ca`); a client that
//! speaks plain HTTP to the port is told to use https.

use shoal_cluster_tests::clients::containerd::Containerd;
use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::fleet::{metric, wait_for_peers};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::pki::TestCa;
use shoal_cluster_tests::{
    Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools, shoal_command,
};

#[tokio::test]
async fn a_fleet_serves_https_to_verifying_clients_and_to_its_members() {
    if !require_tools(&["docker-registry", "skopeo", "containerd", "ctr"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path()).expect("CA");
    let tls = ca.issue("registry").expect("registry certificate");
    let mut registry = Registry::start(RegistryOptions::plain().tls(tls)).await.expect("registry");
    let spec = ImageSpec { layer_size: 1 << 20, ..ImageSpec::docker(251) };
    let pushed =
        image::push_image(&registry.client(), "library/app", "v1", &spec).await.expect("push");
    registry.reset_requests().await.expect("reset");

    // Without the CA, the upstream's certificate is refused: an error, not content.
    let untrusting =
        ShoalNode::start(ShoalOptions::docker_io(registry.url()).without_cluster_key())
            .await
            .expect("node without the CA");
    let url = format!("{}/v2/library/app/manifests/v1", untrusting.url());
    let refused = reqwest::get(&url).await.expect("answer");
    assert_eq!(refused.status(), 502, "the upstream is unusable, not the request");
    let log = std::fs::read_to_string(untrusting.log_path()).expect("log");
    assert!(log.contains("certificate"), "the log names the certificate problem:\n{log}");
    drop(untrusting);
    registry.reset_requests().await.expect("reset");

    let ca_file = ca.ca_file().display().to_string();
    let options = ShoalOptions::docker_io(registry.url())
        .arg("--upstream-ca")
        .arg(ca_file.clone())
        .arg("--peer-ca")
        .arg(ca_file);
    let a =
        ShoalNode::start(options.clone().tls(ca.issue("a").expect("cert"))).await.expect("node a");
    let b = ShoalNode::start(options.tls(ca.issue("b").expect("cert")).bootstrap(&a))
        .await
        .expect("node b");
    let nodes = [a, b];
    wait_for_peers(&nodes, 1).await.expect("b joins a");
    let [a, b] = &nodes;

    // skopeo through a, verifying a's certificate against the CA alone (a directory of
    // `*.crt`, as containers/image reads `certs.d`).
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(&certs).expect("certs.d");
    std::fs::copy(ca.ca_file(), certs.join("ca.crt")).expect("copy CA");
    let skopeo = Skopeo::new().expect("skopeo");
    let options = CopyOptions { cert_dir: Some(certs), ..CopyOptions::default() };
    let out = dir.path().join("via-a");
    let copied =
        skopeo.copy(&format!("{}/library/app:v1", a.host()), &out, &options).await.expect("pull");
    assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());

    // containerd through b, with the CA in hosts.toml: b takes the layers from a over HTTPS.
    let containerd = Containerd::start().await.expect("containerd");
    let hosts = dir.path().join("hosts");
    Containerd::write_hosts_toml_with_ca(&hosts, "docker.io", &b.url(), &ca.ca_file())
        .expect("hosts.toml");
    containerd.fetch("docker.io/library/app:v1", &hosts, false).await.expect("ctr pulls via b");
    for blob in pushed.blobs() {
        assert!(containerd.has_blob(&blob.digest).expect("content store"), "{}", blob.digest);
        let path = format!("/v2/library/app/blobs/{}", blob.digest);
        let gets = registry.count("GET", &path).await.expect("count");
        assert_eq!(gets, 1, "one upstream GET of {path} for both nodes");
    }
    let from_peers = metric(b, "shoal_peer_bytes_total").await.expect("metric");
    assert!(from_peers >= spec.layer_size as u64, "b took the layer from a: {from_peers} bytes");

    // `shoal status` over HTTPS with the CA: both members reachable, probed over HTTPS too.
    let status = shoal_command(&[
        "status",
        "--json",
        "--node",
        &a.url(),
        "--node-ca",
        &ca.ca_file().display().to_string(),
    ])
    .expect("shoal status");
    let report: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let members = report["members"].as_array().expect("members");
    assert_eq!(members.len(), 2, "{report:#}");
    for member in members {
        assert_eq!(member["reachable"], true, "{report:#}");
        assert!(member["address"].as_str().is_some_and(|a| a.starts_with("https://")));
    }

    // Plain HTTP to the HTTPS port: told what to change.
    let plain = format!("http://{}/v2/", a.host());
    let answer = reqwest::get(&plain).await.expect("an answer in plain HTTP");
    assert_eq!(answer.status(), 400);
    assert!(answer.text().await.expect("body").contains("https://"));
}
