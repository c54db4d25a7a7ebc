//! Referrers of an upstream's image: a signature and an SBOM put into the upstream registry
//! (which has no referrers API, so with the referrers tag `sha256-<hex>` beside them, as cosign
//! and oras write it) are listed by a node, filtered by `artifactType`, served from its cache
//! while the upstream is down, pulled by digest, exported with `--with-referrers` (an archive
//! skopeo and `ctr import` still read) and imported into a site with no upstream, which lists
//! them too. A referrers tag that is not an index is a clear error.

use std::path::Path;
use std::process::Output;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_cluster_tests::clients::containerd::Containerd;
use shoal_cluster_tests::clients::skopeo::Skopeo;
use shoal_cluster_tests::image::{self, ImageSpec, ManifestInfo};
use shoal_cluster_tests::shoal::shoal_binary;
use shoal_cluster_tests::{
    Registry, RegistryClient, RegistryOptions, ShoalNode, ShoalOptions, free_port, require_tools,
};
use shoal_protocol::Digest;
use shoal_protocol::media_type::{OCI_INDEX, OCI_MANIFEST};

const SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SBOM: &str = "application/spdx+json";

async fn push_referrer(
    client: &RegistryClient,
    repo: &str,
    subject: &ManifestInfo,
    artifact_type: &str,
    payload: &[u8],
) -> Value {
    image::push_referrer(client, repo, subject, artifact_type, payload).await.expect("referrer")
}

/// `GET .../referrers/<subject>[?artifactType=]` on a node: the status, the filter header,
/// and the digests listed, sorted.
async fn referrers(
    node: &ShoalNode,
    subject: &Digest,
    filter: Option<&str>,
) -> (StatusCode, bool, Vec<String>, Value) {
    let mut url = format!("{}/v2/library/app/referrers/{subject}", node.url());
    if let Some(f) = filter {
        // `+` in a query is a space unless encoded, as clients do.
        url.push_str(&format!("?artifactType={}", f.replace('+', "%2B")));
    }
    let response = reqwest::get(&url).await.expect("referrers request");
    let status = response.status();
    let filtered = response.headers().get("oci-filters-applied").is_some();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let mut digests: Vec<String> = (body["manifests"].as_array().into_iter().flatten())
        .filter_map(|m| m["digest"].as_str().map(str::to_owned))
        .collect();
    digests.sort();
    (status, filtered, digests, body)
}

async fn shoal(args: &[&str]) -> Output {
    let binary = shoal_binary().expect("shoal binary");
    tokio::process::Command::new(binary).args(args).output().await.expect("run shoal")
}

fn ok(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed: {stdout}\n{stderr}");
    stdout
}

/// Anyone may pull and push: a lab site.
fn lab_config(dir: &Path) -> String {
    let path = dir.join("shoal.toml");
    let text = "[[auth.rule]]\nprefix = \"*\"\nanonymous = true\nallow = [\"pull\", \"push\"]\n";
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

#[tokio::test]
async fn an_upstreams_referrers_are_listed_cached_exported_and_imported() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let client = registry.client();
    let app = image::push_image(&client, "library/app", "v1", &ImageSpec::oci(701))
        .await
        .expect("push app");
    let sig = push_referrer(&client, "library/app", &app.root, SIGNATURE, b"signed").await;
    let sbom = push_referrer(&client, "library/app", &app.root, SBOM, br#"{"spdx":1}"#).await;
    let fallback = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [sig, sbom]});
    let tag = format!("sha256-{}", app.root.digest.hex());
    let fallback = serde_json::to_vec(&fallback).expect("json");
    client.put_manifest("library/app", &tag, OCI_INDEX, fallback).await.expect("fallback tag");
    let (sig_digest, sbom_digest) =
        (sig["digest"].as_str().unwrap().to_owned(), sbom["digest"].as_str().unwrap().to_owned());
    let mut both = vec![sig_digest.clone(), sbom_digest.clone()];
    both.sort();

    // A referrers tag that is not an index: a clear error, not a panic or an empty list.
    let other = image::push_image(&client, "library/app", "v2", &ImageSpec::oci(702))
        .await
        .expect("push another image");
    let wrong_tag = format!("sha256-{}", other.root.digest.hex());
    let plain = app.root.bytes.clone();
    client.put_manifest("library/app", &wrong_tag, OCI_MANIFEST, plain).await.expect("wrong tag");

    let node = ShoalNode::start(
        ShoalOptions::docker_io(registry.url()).without_cluster_key().arg("--tag-ttl").arg("3s"),
    )
    .await
    .expect("node");

    let (status, filtered, listed, body) = referrers(&node, &app.root.digest, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!filtered);
    assert_eq!(listed, both, "{body}");
    let entry = body["manifests"].as_array().unwrap().iter().find(|m| m["digest"] == sig_digest);
    assert_eq!(entry.unwrap()["artifactType"], SIGNATURE);
    assert_eq!(body["mediaType"], OCI_INDEX);

    // Within the TTL the node does not ask the upstream again.
    registry.reset_requests().await.expect("reset log");
    let (_, _, again, _) = referrers(&node, &app.root.digest, None).await;
    assert_eq!(again, both);
    let asked = registry.requests().await.expect("log");
    assert!(asked.is_empty(), "asked the upstream within the TTL: {asked:?}");

    // The filter, applied by the node (this upstream has no API to apply it).
    let (status, filtered, listed, _) = referrers(&node, &app.root.digest, Some(SBOM)).await;
    assert_eq!((status, filtered, listed), (StatusCode::OK, true, vec![sbom_digest.clone()]));

    // The referrers themselves, by digest through the node.
    let through = RegistryClient::new(node.url(), None);
    let (media_type, bytes) =
        through.get_manifest("library/app", &sig_digest).await.expect("signature by digest");
    assert_eq!(media_type, OCI_MANIFEST);
    assert_eq!(Digest::of(&bytes).to_string(), sig_digest);

    let (status, _, _, body) = referrers(&node, &other.root.digest, None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("not a referrers index"), "{message}");

    // Export with the referrers while the upstream is up; skopeo still reads the image.
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("signed.tar");
    let archive_arg = archive.display().to_string();
    let out = shoal(&[
        "export",
        "docker.io/library/app:v1",
        "-o",
        &archive_arg,
        "--with-referrers",
        "--node",
        &node.url(),
    ])
    .await;
    let said = ok(&out, "shoal export");
    assert!(said.contains("2 referrers"), "{said}");
    let skopeo = Skopeo::new().expect("skopeo");
    let check = skopeo
        .copy_from(
            &format!("oci-archive:{archive_arg}:docker.io/library/app:v1"),
            &dir.path().join("check"),
        )
        .await
        .expect("skopeo reads the archive");
    assert_eq!(check.manifest().expect("manifest"), app.root.bytes);
    if require_tools(&["containerd", "ctr"]) {
        let containerd = Containerd::start().await.expect("containerd");
        let names = containerd.import(&archive).await.expect("ctr import reads the archive");
        assert_eq!(names, ["docker.io/library/app:v1"], "the referrers are no images");
    }

    // The upstream goes away and the TTL passes: the last answer is served.
    registry.stop();
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let (status, _, listed, body) = referrers(&node, &app.root.digest, None).await;
    assert_eq!((status, listed), (StatusCode::OK, both.clone()), "{body}");
    let log = std::fs::read_to_string(node.log_path()).expect("node log");
    assert!(log.contains("serving the last known referrers"), "the stale answer is logged");

    // A site with no upstream: after the import its node lists the referrers it was given.
    let nowhere = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let site = ShoalNode::start(
        ShoalOptions::docker_io(nowhere)
            .without_cluster_key()
            .arg("--config")
            .arg(lab_config(dir.path())),
    )
    .await
    .expect("site node");
    let said = ok(&shoal(&["import", &archive_arg, "--node", &site.url()]).await, "import");
    assert!(said.contains("imported 1 images and 2 referrers"), "{said}");
    let (status, _, listed, body) = referrers(&site, &app.root.digest, None).await;
    assert_eq!((status, listed), (StatusCode::OK, both), "{body}");
    let (_, filtered, listed, _) = referrers(&site, &app.root.digest, Some(SIGNATURE)).await;
    assert_eq!((filtered, listed), (true, vec![sig_digest.clone()]));
    let from_site = RegistryClient::new(site.url(), None);
    let (_, bytes) =
        from_site.get_manifest("library/app", &sig_digest).await.expect("signature on the site");
    assert_eq!(Digest::of(&bytes).to_string(), sig_digest);
}
