//! Pinned images on a fleet: a pushed image lives on `--replicas` members, survives the loss
//! of any one of them, is re-placed when a member leaves, and a delete reaches every member —
//! including one that was away when it happened. `shoal warm` puts an image on every member
//! with one upstream fetch per blob; `shoal pin`, `shoal pins` and `shoal unpin` work across
//! the fleet.

use std::path::Path;
use std::time::Duration;

use shoal_cluster_tests::fleet::{blob_file, eventually, logs, start_fleet, wait_for_peers};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::{
    PushedImage, Registry, RegistryClient, RegistryOptions, ShoalNode, ShoalOptions, require_tools,
    shoal_command,
};
use shoal_protocol::Digest;

/// Anyone may pull and push (a lab); `local` is a hosted name.
fn lab_config(dir: &Path) -> String {
    let path = dir.join("shoal.toml");
    let text = "hosted = [\"local\"]\n\n[[auth.rule]]\nprefix = \"*\"\nanonymous = true\n\
                allow = [\"pull\", \"push\"]\n";
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

fn options(registry: &Registry, config: &str, replicas: u32) -> ShoalOptions {
    ShoalOptions::docker_io(registry.url())
        .arg("--config")
        .arg(config)
        .arg("--replicas")
        .arg(replicas.to_string())
        .arg("--placement-interval")
        .arg("1s")
}

/// Every manifest and blob digest of an image.
fn digests(image: &PushedImage) -> Vec<Digest> {
    let mut all: Vec<Digest> = image.manifests().map(|m| m.digest).collect();
    all.extend(image.blob_digests());
    all
}

fn holds(node: &ShoalNode, digests: &[Digest]) -> bool {
    digests.iter().all(|d| blob_file(node, d).exists())
}

/// Whether `shoal pins` on `node` lists `name` as kept whole there: only placement does that
/// (a pull caches a copy, it does not pin it).
fn keeps(node: &ShoalNode, name: &str) -> bool {
    shoal_command(&["pins", "--json", "--node", &node.url()])
        .is_ok_and(|list| list.contains(name) && list.contains("\"whole_here\": true"))
}

/// Pulls every manifest and blob of `image` through `node`, checking the bytes.
async fn pull_all(node: &ShoalNode, image: &PushedImage) -> Result<(), String> {
    let client = RegistryClient::new(node.url(), None);
    let (_, root) =
        client.get_manifest(&image.repo, &image.tag).await.map_err(|e| format!("tag: {e}"))?;
    if root.as_ref() != image.root.bytes.as_slice() {
        return Err("the tag names another manifest".to_owned());
    }
    for m in &image.children {
        let (_, bytes) = client
            .get_manifest(&image.repo, &m.digest.to_string())
            .await
            .map_err(|e| format!("manifest {}: {e}", m.digest))?;
        if Digest::of(&bytes) != m.digest {
            return Err(format!("manifest {} does not match", m.digest));
        }
    }
    for digest in image.blob_digests() {
        let bytes =
            client.get_blob(&image.repo, &digest).await.map_err(|e| format!("{digest}: {e}"))?;
        if Digest::of(&bytes) != digest {
            return Err(format!("blob {digest} does not match"));
        }
    }
    Ok(())
}

async fn tag_status(node: &ShoalNode, repo: &str, tag: &str) -> u16 {
    let url = format!("{}/v2/{repo}/manifests/{tag}", node.url());
    let accept = shoal_protocol::media_type::MANIFEST_ACCEPT.join(", ");
    let client = reqwest::Client::new();
    match client.get(&url).header("accept", accept).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn a_pushed_image_survives_any_member_and_its_delete_reaches_every_member() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = lab_config(dir.path());
    let mut nodes = start_fleet(3, options(&registry, &config, 2)).await.expect("fleet");
    let names = ["a", "b", "c"];
    let all_logs =
        |nodes: &[ShoalNode]| logs(&names.iter().copied().zip(nodes.iter()).collect::<Vec<_>>());

    // A multi-arch image pushed into a: within a few checks, on at least two members.
    let to_a = RegistryClient::new(nodes[0].url(), None);
    let image = image::push_multi_arch(&to_a, "local/app", "v1", 601).await.expect("push");
    let wanted = digests(&image);
    let placed = eventually(Duration::from_secs(30), || {
        nodes.iter().filter(|n| holds(n, &wanted) && keeps(n, "local/app")).count() >= 2
    })
    .await;
    assert!(placed, "the image is not whole on two members{}", all_logs(&nodes));

    // Any one member may go: the image is still pulled whole through each of the others.
    for down in 0..nodes.len() {
        nodes[down].stop();
        for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != down) {
            pull_all(node, &image).await.unwrap_or_else(|e| {
                panic!("{} down, pull through {}: {e}{}", names[down], names[i], all_logs(&nodes))
            });
        }
        nodes[down].restart().await.expect("restart");
        wait_for_peers(&nodes, 2).await.expect("peers again");
    }

    // The pushing member leaves for good: the two left are now the image's members, and the
    // one that lacked it fetches it from the other.
    nodes[0].stop();
    let replaced = eventually(Duration::from_secs(30), || {
        keeps(&nodes[1], "local/app") && keeps(&nodes[2], "local/app")
    })
    .await;
    assert!(replaced, "the image was not re-placed on b and c{}", all_logs(&nodes));

    // Deleted through b: gone from c too, and from a when it comes back (it missed the delete
    // and still carries the pin and the tag).
    let deleted = reqwest::Client::new()
        .delete(format!("{}/v2/local/app/manifests/v1", nodes[1].url()))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status().as_u16(), 202, "{}", all_logs(&nodes));
    let mut gone = false;
    for _ in 0..50 {
        if tag_status(&nodes[2], "local/app", "v1").await == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gone, "c still serves the deleted tag{}", all_logs(&nodes));
    nodes[0].restart().await.expect("restart a");
    wait_for_peers(&nodes, 2).await.expect("peers again");
    let mut forgotten = false;
    for _ in 0..75 {
        let statuses = [
            tag_status(&nodes[0], "local/app", "v1").await,
            tag_status(&nodes[1], "local/app", "v1").await,
        ];
        if statuses == [404, 404] {
            forgotten = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(forgotten, "a brought the deleted tag back{}", all_logs(&nodes));
    let pins = shoal_command(&["pins", "--json", "--node", &nodes[0].url()]).expect("pins");
    assert!(!pins.contains("local/app"), "a still pins the deleted image: {pins}");
}

#[tokio::test]
async fn warm_reaches_every_member_and_pins_are_kept_fleet_wide() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let tool = image::push_image(&registry.client(), "team/tool", "v1", &ImageSpec::oci(611))
        .await
        .expect("seed upstream");
    // Its signature, as cosign leaves it in a registry without a referrers API.
    let signature = image::push_referrer(
        &registry.client(),
        "team/tool",
        &tool.root,
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        b"signed by ci",
    )
    .await
    .expect("signature");
    image::push_referrers_tag(
        &registry.client(),
        "team/tool",
        &tool.root.digest,
        std::slice::from_ref(&signature),
    )
    .await
    .expect("referrers tag");
    let signature_digest: Digest = signature["digest"].as_str().unwrap().parse().unwrap();
    let base = image::push_image(&registry.client(), "team/base", "v1", &ImageSpec::oci(612))
        .await
        .expect("seed upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = lab_config(dir.path());
    let nodes = start_fleet(3, options(&registry, &config, 2)).await.expect("fleet");
    let names = ["a", "b", "c"];
    let all_logs = || logs(&names.iter().copied().zip(nodes.iter()).collect::<Vec<_>>());

    // Warm on every member, its signature along: each holds every blob, and the upstream
    // served each blob once.
    let out = shoal_command(&[
        "warm",
        "docker.io/team/tool:v1",
        "--all-nodes",
        "--with-referrers",
        "--node",
        &nodes[0].url(),
    ])
    .expect("shoal warm");
    assert!(out.contains("warmed docker.io/team/tool:v1"), "{out}");
    let mut wanted = digests(&tool);
    wanted.extend([signature_digest, Digest::of(b"signed by ci"), Digest::of(b"{}")]);
    let warmed =
        eventually(Duration::from_secs(30), || nodes.iter().all(|n| holds(n, &wanted))).await;
    assert!(warmed, "not every member holds the warmed image{}", all_logs());
    for blob in tool.blob_digests() {
        let gets = registry.count("GET", &format!("/v2/team/tool/blobs/{blob}")).await.unwrap();
        assert_eq!(gets, 1, "{blob} was fetched {gets} times from the upstream");
    }

    // Pinned through b on all three members; listed on c; unpinned through c everywhere.
    let out = shoal_command(&[
        "pin",
        "docker.io/team/base:v1",
        "--replicas",
        "3",
        "--node",
        &nodes[1].url(),
    ])
    .expect("shoal pin");
    assert!(out.contains("pinned docker.io/team/base:v1"), "{out}");
    let wanted = digests(&base);
    let kept =
        eventually(Duration::from_secs(30), || nodes.iter().all(|n| holds(n, &wanted))).await;
    assert!(kept, "the pin is not on every member{}", all_logs());
    let listed = eventually(Duration::from_secs(10), || {
        shoal_command(&["pins", "--json", "--node", &nodes[2].url()])
            .is_ok_and(|l| l.contains("docker.io/team/base") && l.contains("\"whole_here\": true"))
    })
    .await;
    assert!(listed, "c does not list the pin{}", all_logs());
    let table = shoal_command(&["pins", "--node", &nodes[2].url()]).expect("pins table");
    assert!(table.contains("docker.io/team/base") && table.contains("yes"), "{table}");

    // Bad input: an image nobody has, a platform that is no platform.
    let missing = shoal_command(&["pin", "docker.io/team/none:v1", "--node", &nodes[0].url()]);
    assert!(missing.is_err_and(|e| e.to_string().contains("MANIFEST_UNKNOWN")));
    let bad = shoal_command(&[
        "pin",
        "docker.io/team/base:v1",
        "--platform",
        "linux",
        "--node",
        &nodes[0].url(),
    ]);
    assert!(bad.is_err_and(|e| e.to_string().contains("platform")));

    shoal_command(&["unpin", "docker.io/team/base:v1", "--node", &nodes[2].url()]).expect("unpin");
    for node in &nodes {
        let list = shoal_command(&["pins", "--json", "--node", &node.url()]).expect("pins");
        assert!(!list.contains("team/base"), "{} still pins it: {list}", node.url());
    }
}

#[tokio::test]
async fn the_warm_list_in_the_configuration_reaches_every_member() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let listed = image::push_image(&registry.client(), "team/listed", "v1", &ImageSpec::oci(621))
        .await
        .expect("seed upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shoal.toml");
    let text = "[warm]\nimages = [\"docker.io/team/listed:v1\"]\nall_nodes = true\n";
    std::fs::write(&config, text).expect("write config");
    let config = config.display().to_string();
    let nodes = start_fleet(3, options(&registry, &config, 2)).await.expect("fleet");
    let names = ["a", "b", "c"];

    // Nobody pulls: the list alone brings the image onto every member, each blob fetched from
    // the upstream once.
    let wanted = digests(&listed);
    let warmed =
        eventually(Duration::from_secs(30), || nodes.iter().all(|n| holds(n, &wanted))).await;
    assert!(
        warmed,
        "not every member holds the listed image{}",
        logs(&names.iter().copied().zip(nodes.iter()).collect::<Vec<_>>())
    );
    for blob in listed.blob_digests() {
        let gets = registry.count("GET", &format!("/v2/team/listed/blobs/{blob}")).await.unwrap();
        assert_eq!(gets, 1, "{blob} was fetched {gets} times from the upstream");
    }
}

#[tokio::test]
async fn warmed_on_two_members_an_image_is_served_by_every_member_with_the_upstream_down() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let two = image::push_image(&registry.client(), "team/two", "v1", &ImageSpec::oci(631))
        .await
        .expect("seed upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = lab_config(dir.path());
    let nodes = start_fleet(3, options(&registry, &config, 2)).await.expect("fleet");
    let names = ["a", "b", "c"];
    let all_logs = || logs(&names.iter().copied().zip(nodes.iter()).collect::<Vec<_>>());

    let out = shoal_command(&[
        "warm",
        "docker.io/team/two:v1",
        "--replicas",
        "2",
        "--node",
        &nodes[0].url(),
    ])
    .expect("shoal warm");
    assert!(out.contains("warmed docker.io/team/two:v1"), "{out}");
    let wanted = digests(&two);
    let placed = eventually(Duration::from_secs(30), || {
        nodes.iter().filter(|n| holds(n, &wanted)).count() >= 2
    })
    .await;
    assert!(placed, "the image is not on two members{}", all_logs());

    // The upstream goes away before the rollout: every member serves the image, those without
    // a copy from those with one.
    registry.stop();
    for (i, node) in nodes.iter().enumerate() {
        pull_all(node, &two)
            .await
            .unwrap_or_else(|e| panic!("pull through {}: {e}{}", names[i], all_logs()));
    }
}
