//! One node between real clients and a real upstream: skopeo (path and prefix-mirror forms),
//! containerd's `ctr` with a `hosts.toml` mirror (`?ns=`), many clients at once, and an
//! upstream that goes away after warm-up.

use std::time::Duration;

use shoal_cluster_tests::clients::containerd::Containerd;
use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::{
    Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools, write_client_config,
};

#[tokio::test]
async fn skopeo_pulls_through_a_node_by_path_and_by_prefix_mirror() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let client = registry.client();
    let oci =
        image::push_image(&client, "library/app", "v1", &ImageSpec::oci(101)).await.expect("oci");
    let docker = image::push_image(&client, "library/app", "v2", &ImageSpec::docker(102))
        .await
        .expect("docker");
    let multi = image::push_multi_arch(&client, "library/multi", "v1", 103).await.expect("index");
    let node = ShoalNode::start(ShoalOptions::docker_io(registry.url())).await.expect("node");
    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");

    // Default upstream with Docker's library/ rule: NODE/app:v1 is docker.io/library/app:v1.
    for (pushed, source) in [
        (&oci, format!("{}/app:v1", node.host())),
        (&docker, format!("{}/library/app:v2", node.host())),
        (&oci, format!("{}/docker.io/library/app:v1", node.host())),
    ] {
        let dest = out.path().join(source.replace(['/', ':'], "_"));
        let copied = skopeo.copy(&source, &dest, &CopyOptions::default()).await.expect("copy");
        assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes, "{source}");
        assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    }

    let all = CopyOptions { all: true, ..CopyOptions::default() };
    let dest = out.path().join("multi");
    let source = format!("{}/library/multi:v1", node.host());
    let copied = skopeo.copy(&source, &dest, &all).await.expect("copy --all");
    assert_eq!(copied.manifest().expect("index"), multi.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), multi.blob_digests());

    // CRI-O and podman: the registries.conf that `shoal config podman` writes (docker.io is
    // out of reach here, so only the mirror can answer).
    let conf = out.path().join("registries.conf");
    write_client_config("podman", &node.url(), &["docker.io"], &conf).expect("shoal config");
    let via_mirror = CopyOptions { registries_conf: Some(conf), ..CopyOptions::default() };
    let dest = out.path().join("mirror");
    let copied = skopeo.copy("docker.io/library/app:v2", &dest, &via_mirror).await.expect("mirror");
    assert_eq!(copied.manifest().expect("manifest"), docker.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), docker.blob_digests());
}

#[tokio::test]
async fn containerd_pulls_through_a_hosts_toml_mirror() {
    if !require_tools(&["docker-registry", "containerd", "ctr"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let multi =
        image::push_multi_arch(&registry.client(), "library/app", "v1", 111).await.expect("index");
    registry.reset_requests().await.expect("reset");
    let node = ShoalNode::start(ShoalOptions::docker_io(registry.url())).await.expect("node");
    let containerd = Containerd::start().await.expect("containerd");
    let hosts = tempfile::tempdir().expect("hosts dir");
    let notes = write_client_config("containerd", &node.url(), &["docker.io"], hosts.path())
        .expect("shoal config containerd");
    assert!(notes.contains("--hosts-dir"), "it says how ctr finds the mirror: {notes}");

    containerd.fetch("docker.io/library/app:v1", hosts.path(), true).await.expect("ctr fetch");
    for manifest in multi.manifests() {
        assert!(containerd.has_blob(&manifest.digest).expect("verify"), "{}", manifest.digest);
    }
    for blob in multi.blobs() {
        assert!(containerd.has_blob(&blob.digest).expect("verify"), "{}", blob.digest);
    }
    // Every byte came through the node: the upstream saw the node's requests, not containerd's.
    let requests = registry.requests().await.expect("log");
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| r.query.is_none()),
        "the node never forwards ?ns=: {requests:?}"
    );
}

#[tokio::test]
async fn an_upstream_with_a_port_is_mirrored_for_podman_through_an_alias() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed = image::push_image(&registry.client(), "team/app", "v1", &ImageSpec::oci(121))
        .await
        .expect("push");
    // A name no client here can reach: only the node, which maps it to the registry, can.
    let upstream = "registry.invalid:5443";
    let dir = tempfile::tempdir().expect("tempdir");
    // What the node must be told comes first: the tool names the alias.
    let conf = dir.path().join("registries.conf");
    let notes = write_client_config("podman", "http://node.invalid:5000", &[upstream], &conf)
        .expect("shoal config podman");
    let aliases = notes.split_once("[aliases]\n").expect("the alias the node needs").1;
    let node_config = dir.path().join("shoal.toml");
    std::fs::write(&node_config, format!("[aliases]\n{}\n", aliases.trim())).expect("write");
    let node = ShoalNode::start(
        ShoalOptions::docker_io(registry.url())
            .upstream(upstream, registry.url())
            .arg("--config")
            .arg(node_config.display().to_string()),
    )
    .await
    .expect("node with the alias");
    write_client_config("podman", &node.url(), &[upstream], &conf).expect("shoal config podman");

    let skopeo = Skopeo::new().expect("skopeo");
    let options = CopyOptions { registries_conf: Some(conf), ..CopyOptions::default() };
    let dest = dir.path().join("copy");
    let copied =
        skopeo.copy(&format!("{upstream}/team/app:v1"), &dest, &options).await.expect("copy");
    assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
}

#[tokio::test]
async fn eight_clients_at_once_cost_one_upstream_get_per_blob_and_manifest() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    // Layers of a few MiB so that the eight pulls overlap while the first download runs.
    let spec = ImageSpec { layer_size: 3 << 20, ..ImageSpec::oci(121) };
    let pushed =
        image::push_image(&registry.client(), "library/app", "v1", &spec).await.expect("push");
    registry.reset_requests().await.expect("reset");
    let node = ShoalNode::start(ShoalOptions::docker_io(registry.url())).await.expect("node");
    let out = tempfile::tempdir().expect("tempdir");

    let mut pulls = Vec::new();
    for i in 0..8 {
        let source = format!("{}/library/app:v1", node.host());
        let dest = out.path().join(format!("client-{i}"));
        pulls.push(tokio::spawn(async move {
            let skopeo = Skopeo::new().expect("skopeo");
            skopeo.copy(&source, &dest, &CopyOptions::default()).await
        }));
    }
    for pull in pulls {
        let copied = pull.await.expect("join").expect("every pull succeeds");
        assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
        assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    }

    let requests = registry.requests().await.expect("log");
    assert_eq!(
        registry.count("GET", "/v2/library/app/manifests/v1").await.expect("count"),
        1,
        "{requests:?}"
    );
    for blob in pushed.blobs() {
        let path = format!("/v2/library/app/blobs/{}", blob.digest);
        assert_eq!(registry.count("GET", &path).await.expect("count"), 1, "{path}: {requests:?}");
    }
}

#[tokio::test]
async fn pulls_survive_the_upstream_going_away() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed =
        image::push_multi_arch(&registry.client(), "library/app", "v1", 131).await.expect("push");
    // A short TTL so that the pull after the outage has to revalidate the tag, and cannot.
    let options = ShoalOptions::docker_io(registry.url()).arg("--tag-ttl").arg("1s");
    let node = ShoalNode::start(options).await.expect("node");
    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");
    let all = CopyOptions { all: true, ..CopyOptions::default() };

    let warm = format!("{}/library/app:v1", node.host());
    skopeo.copy(&warm, &out.path().join("warm"), &all).await.expect("warm-up");
    registry.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let by_tag =
        skopeo.copy(&warm, &out.path().join("tag"), &all).await.expect("by tag, upstream down");
    assert_eq!(by_tag.manifest().expect("manifest"), pushed.root.bytes);
    assert_eq!(by_tag.verified_blobs().expect("blobs"), pushed.blob_digests());

    let by_digest = format!("{}/library/app@{}", node.host(), pushed.root.digest);
    let copied =
        skopeo.copy(&by_digest, &out.path().join("digest"), &all).await.expect("by digest");
    assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);

    let log = std::fs::read_to_string(node.log_path()).expect("node log");
    assert!(log.contains("serving last known digest"), "stale-if-error is logged");
}
