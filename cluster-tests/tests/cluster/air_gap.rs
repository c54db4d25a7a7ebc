//! The air-gapped site: `shoal export` on a connected node writes an OCI archive (which skopeo
//! reads), `shoal import` loads it into a fleet of three whose upstream is never reachable,
//! every image (a multi-arch index among them) is pulled through every member, and still
//! through the other two once the importing node is killed, which holds its pins again when it
//! restarts; a second import uploads nothing; an offline import seeds a node's data directory
//! before it starts; a damaged archive is refused naming the corrupt blob.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use shoal_cluster_tests::clients::containerd::Containerd;
use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::fleet::{blob_file, eventually, logs, start_fleet, wait_for_peers};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::shoal::{shoal_binary, shoal_command};
use shoal_cluster_tests::{
    Registry, RegistryOptions, ShoalNode, ShoalOptions, free_port, require_tools,
};
use shoal_protocol::Digest;

/// Anyone may pull and push: a lab site.
fn lab_config(dir: &Path) -> String {
    let path = dir.join("shoal.toml");
    let text = "[[auth.rule]]\nprefix = \"*\"\nanonymous = true\nallow = [\"pull\", \"push\"]\n";
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

async fn shoal(args: &[&str]) -> Output {
    let binary = shoal_binary().expect("shoal binary");
    tokio::process::Command::new(binary)
        .args(args)
        .env("SHOAL_LOG", "info")
        .output()
        .await
        .expect("run shoal")
}

fn ok(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed: {stdout}\n{stderr}");
    stdout
}

#[tokio::test]
async fn an_exported_archive_seeds_a_site_without_upstream() {
    if !require_tools(&["docker-registry", "skopeo", "containerd", "ctr"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let client = registry.client();
    let app = image::push_image(&client, "library/app", "v1", &ImageSpec::oci(601))
        .await
        .expect("push app");
    let multi = image::push_multi_arch(&client, "team/multi", "v2", 602).await.expect("push");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("site.tar");
    let archive_arg = archive.display().to_string();

    // The connected side: one node in front of the registry.
    let connected = ShoalNode::start(ShoalOptions::docker_io(registry.url()).without_cluster_key())
        .await
        .expect("connected node");
    let out = shoal(&[
        "export",
        "docker.io/library/app:v1",
        "docker.io/team/multi:v2",
        "-o",
        &archive_arg,
        "--node",
        &connected.url(),
    ])
    .await;
    let said = ok(&out, "shoal export");
    assert!(said.contains("2 images"), "{said}");
    let skopeo = Skopeo::new().expect("skopeo");
    let check = skopeo
        .copy_from(
            &format!("oci-archive:{archive_arg}:docker.io/library/app:v1"),
            &dir.path().join("check"),
        )
        .await
        .expect("skopeo reads the archive");
    assert_eq!(check.manifest().expect("manifest"), app.root.bytes);
    assert_eq!(check.verified_blobs().expect("blobs"), app.blob_digests());

    // The air-gapped site: its docker.io is an address where nothing listens.
    let nowhere = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let options = ShoalOptions::docker_io(nowhere).arg("--config").arg(lab_config(dir.path()));
    let options = options.arg("--placement-interval").arg("1s");
    let mut site = start_fleet(3, options).await.expect("site fleet");
    wait_for_peers(&site, 2).await.expect("the site's members meet");
    let out = shoal(&["import", &archive_arg, "--node", &site[0].url()]).await;
    let said = ok(&out, "shoal import");
    assert!(said.contains("imported 2 images"), "{said}");
    // Imported means pinned: every manifest and blob lands on two members (the default
    // replicas), whichever node the archive went through.
    let mut wanted: Vec<Digest> =
        app.manifests().chain(multi.manifests()).map(|m| m.digest).collect();
    wanted.extend(app.blob_digests().into_iter().chain(multi.blob_digests()));
    let placed = eventually(Duration::from_secs(60), || {
        wanted.iter().all(|d| site.iter().filter(|n| blob_file(n, d).exists()).count() >= 2)
    })
    .await;
    assert!(placed, "not every digest is on two members{}", logs(&named(&site)));

    // Every image through every member: skopeo (all platforms of the index) and containerd.
    let containerd = Containerd::start().await.expect("containerd");
    for (i, node) in site.iter().enumerate() {
        let dest = dir.path().join(format!("multi-{i}"));
        let all = CopyOptions { all: true, ..CopyOptions::default() };
        let copied = skopeo
            .copy(&format!("{}/team/multi:v2", node.host()), &dest, &all)
            .await
            .expect("the index through a member");
        assert_eq!(copied.manifest().expect("manifest"), multi.root.bytes);
        assert_eq!(copied.verified_blobs().expect("blobs"), multi.blob_digests());
        let hosts = dir.path().join(format!("hosts-{i}"));
        Containerd::write_hosts_toml(&hosts, "docker.io", &node.url()).expect("hosts.toml");
        containerd.fetch("docker.io/library/app:v1", &hosts, false).await.expect("ctr pull");
    }
    for blob in app.blobs() {
        assert!(containerd.has_blob(&blob.digest).expect("content"), "{}", blob.digest);
    }

    // The importing node dies: every image is still pulled through both other members.
    site[0].stop();
    for (i, node) in site.iter().enumerate().skip(1) {
        let dest = dir.path().join(format!("after-kill-{i}"));
        let all = CopyOptions { all: true, ..CopyOptions::default() };
        let copied = skopeo
            .copy(&format!("{}/team/multi:v2", node.host()), &dest, &all)
            .await
            .unwrap_or_else(|e| panic!("the index through member {i}: {e}{}", logs(&named(&site))));
        assert_eq!(copied.verified_blobs().expect("blobs"), multi.blob_digests());
        let fresh = Containerd::start().await.expect("containerd");
        let hosts = dir.path().join(format!("hosts-after-{i}"));
        Containerd::write_hosts_toml(&hosts, "docker.io", &node.url()).expect("hosts.toml");
        fresh.fetch("docker.io/library/app:v1", &hosts, false).await.expect("ctr pull");
        for blob in app.blobs() {
            assert!(fresh.has_blob(&blob.digest).expect("content"), "{}", blob.digest);
        }
    }
    // Restarted, it holds its pins again: both images are listed as pinned through it.
    site[0].restart().await.expect("restart the importing node");
    let pins = shoal_command(&["pins", "--json", "--node", &site[0].url()]).expect("shoal pins");
    for name in ["docker.io/library/app", "docker.io/team/multi"] {
        assert!(pins.contains(name), "{name} is not pinned after the restart: {pins}");
    }

    // Importing again uploads nothing: an interrupted import resumes where it stopped.
    let said = ok(&shoal(&["import", &archive_arg, "--node", &site[1].url()]).await, "re-import");
    assert!(said.contains("0 blobs uploaded"), "{said}");

    // Offline, into the data directory of a node before it starts: refused while a node runs
    // on it, then done, and the node serves every image when it starts.
    let mut offline = ShoalNode::start(
        ShoalOptions::docker_io(format!("http://127.0.0.1:{}", free_port().expect("port")))
            .without_cluster_key(),
    )
    .await
    .expect("offline node");
    let data_dir = offline.data_dir().display().to_string();
    let busy = shoal(&["import", &archive_arg, "--data-dir", &data_dir]).await;
    assert!(!busy.status.success(), "an import into a running node's directory is refused");
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(stderr.contains("is a node running on it"), "{stderr}");
    offline.stop();
    let said =
        ok(&shoal(&["import", &archive_arg, "--data-dir", &data_dir]).await, "offline import");
    assert!(said.contains("imported 2 images") && said.contains(&data_dir), "{said}");
    offline.restart().await.expect("start the seeded node");
    let all = CopyOptions { all: true, ..CopyOptions::default() };
    let copied = skopeo
        .copy(&format!("{}/team/multi:v2", offline.host()), &dir.path().join("offline"), &all)
        .await
        .expect("the index through the seeded node");
    assert_eq!(copied.manifest().expect("manifest"), multi.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), multi.blob_digests());

    // A damaged archive: one byte of a layer flipped. The import names that blob.
    let layer = &app.root.blobs[1];
    let bytes = client.get_blob("library/app", &layer.digest).await.expect("layer bytes");
    let mut tar = std::fs::read(&archive).expect("read archive");
    let at = find(&tar, &bytes[..64]).expect("the layer is in the archive") + bytes.len() / 2;
    tar[at] ^= 0x55;
    let damaged = dir.path().join("damaged.tar");
    std::fs::write(&damaged, &tar).expect("write");
    let fresh = ShoalNode::start(
        ShoalOptions::docker_io(format!("http://127.0.0.1:{}", free_port().expect("port")))
            .without_cluster_key()
            .arg("--config")
            .arg(lab_config(dir.path())),
    )
    .await
    .expect("fresh node");
    let out = shoal(&["import", &damaged.display().to_string(), "--node", &fresh.url()]).await;
    assert!(!out.status.success(), "a damaged archive is refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&layer.digest.to_string()) && stderr.contains("corrupt"), "{stderr}");
}

/// The members, named for their logs.
fn named(site: &[ShoalNode]) -> Vec<(&'static str, &ShoalNode)> {
    ["a", "b", "c"].into_iter().zip(site.iter()).collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
