//! Pushing into a node: skopeo (`copy` and `sync`) and the distribution API (monolithic and
//! chunked uploads, a multi-arch index) into a hosted name and under an upstream's name, pulled
//! back through another member of the fleet with skopeo and containerd, with the upstream
//! stopped; and the spec's rules for bad input, deletes, paging and referrers.

use std::time::Duration;

use reqwest::StatusCode;
use shoal_cluster_tests::clients::containerd::Containerd;
use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::fleet::{start_fleet, wait_for_peers};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::shoal::htpasswd_line;
use shoal_cluster_tests::{
    Credentials, Registry, RegistryClient, RegistryOptions, ShoalNode, ShoalOptions, require_tools,
};
use shoal_protocol::Digest;

/// alice may push to (and pull from) the hosted name `local` and `docker.io/library/seeded`;
/// anyone may pull everything else.
fn push_config(dir: &std::path::Path, alice: &Credentials) -> String {
    let htpasswd = dir.join("htpasswd");
    let line = htpasswd_line(alice).expect("shoal auth htpasswd");
    std::fs::write(&htpasswd, format!("{line}\n")).expect("write htpasswd");
    let text = format!(
        "hosted = [\"local\"]\n\n[auth]\nhtpasswd = \"{}\"\n\n\
         [[auth.rule]]\nprefix = \"local\"\nusers = [\"alice\"]\nallow = [\"pull\", \"push\"]\n\n\
         [[auth.rule]]\nprefix = \"docker.io/library/seeded\"\nusers = [\"alice\"]\nallow = [\"pull\", \"push\"]\n\n\
         [[auth.rule]]\nprefix = \"*\"\nanonymous = true\nallow = [\"pull\"]\n",
        htpasswd.display()
    );
    let path = dir.join("shoal.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

#[tokio::test]
async fn pushed_images_are_pulled_through_every_member_without_the_upstream() {
    if !require_tools(&["docker-registry", "skopeo", "containerd", "ctr"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let team = image::push_image(&registry.client(), "team/app", "v1", &ImageSpec::docker(501))
        .await
        .expect("seed upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = Credentials::new("alice", "alice-password");
    let config = push_config(dir.path(), &alice);
    let nodes = start_fleet(2, ShoalOptions::docker_io(registry.url()).arg("--config").arg(config))
        .await
        .expect("fleet");
    wait_for_peers(&nodes, 1).await.expect("peers");
    let (a, b) = (&nodes[0], &nodes[1]);
    let skopeo = Skopeo::new().expect("skopeo");

    // skopeo pushes (one streamed PATCH per blob) into the hosted name; anonymous may not.
    let source = format!("{}/team/app:v1", registry.host());
    let dest = format!("{}/local/team/app:v1", a.host());
    let refused = skopeo.push(&source, &dest, None, false).await;
    assert!(refused.is_err(), "an anonymous push is refused");
    skopeo.push(&source, &dest, Some(&alice), false).await.expect("skopeo push");
    // skopeo sync mirrors every tag of a repository in one command (a second tag first).
    let team_v2 = image::push_image(&registry.client(), "team/app", "v2", &ImageSpec::oci(504))
        .await
        .expect("seed upstream");
    let repo = format!("{}/team/app", registry.host());
    skopeo.sync(&repo, &format!("{}/local/synced", a.host()), &alice).await.expect("skopeo sync");

    // The harness's client pushes a chunked image and a multi-arch index, under the upstream's
    // name (seeding it) and the hosted one.
    let to_a = RegistryClient::new(a.url(), Some(alice.clone()));
    let seeded = image::push_image(
        &to_a,
        "docker.io/library/seeded",
        "v1",
        &ImageSpec::oci(502).chunked(10_000),
    )
    .await
    .expect("chunked push");
    let multi = image::push_multi_arch(&to_a, "local/multi", "v1", 503).await.expect("index push");

    // The upstream goes away: everything pushed is still served, through the other member.
    registry.stop();
    let out = tempfile::tempdir().expect("tempdir");
    let as_alice = CopyOptions { credentials: Some(alice.clone()), ..CopyOptions::default() };
    let copied = skopeo
        .copy(&format!("{}/local/team/app:v1", b.host()), &out.path().join("team"), &as_alice)
        .await
        .expect("pull the skopeo push through b");
    assert_eq!(copied.verified_blobs().expect("blobs"), team.blob_digests());
    for (tag, pushed) in [("v1", &team), ("v2", &team_v2)] {
        let synced = format!("{}/local/synced/app:{tag}", b.host());
        let copied = skopeo
            .copy(&synced, &out.path().join(format!("synced-{tag}")), &as_alice)
            .await
            .expect("pull a synced tag through b");
        assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    }
    let all = CopyOptions { all: true, ..as_alice.clone() };
    let copied = skopeo
        .copy(&format!("{}/local/multi:v1", b.host()), &out.path().join("multi"), &all)
        .await
        .expect("pull the index through b");
    assert_eq!(copied.manifest().expect("manifest"), multi.root.bytes);

    // containerd, as a Kubernetes node would be set up: a docker.io mirror on b.
    let containerd = Containerd::start().await.expect("containerd");
    let hosts = dir.path().join("hosts");
    Containerd::write_hosts_toml(&hosts, "docker.io", &b.url()).expect("hosts.toml");
    containerd
        .fetch_as("docker.io/library/seeded:v1", &hosts, false, Some(&alice))
        .await
        .expect("ctr pulls the seeded image through b");
    for blob in seeded.blobs() {
        assert!(containerd.has_blob(&blob.digest).expect("content store"), "{}", blob.digest);
    }
    // The pushed tag is the truth for its name; nothing was asked of the (stopped) upstream.
    let from_b = RegistryClient::new(b.url(), Some(alice.clone()));
    let (_, bytes) = from_b.get_manifest("docker.io/library/seeded", "v1").await.expect("tag");
    assert_eq!(bytes.as_ref(), seeded.root.bytes.as_slice());
}

#[tokio::test]
async fn the_push_api_refuses_bad_input_and_cleans_up() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let node = ShoalNode::start(
        ShoalOptions::docker_io(registry.url())
            .without_cluster_key()
            .arg("--hosted")
            .arg("local")
            .arg("--upload-timeout")
            .arg("2s")
            .arg("--config")
            .arg(lab_config()),
    )
    .await
    .expect("node");
    let http = reqwest::Client::new();
    let base = node.url();
    let uploads = format!("{base}/v2/local/app/blobs/uploads/");

    // A chunk that does not continue the upload: 416, and the upload is still usable.
    let location = start(&http, &uploads).await;
    let patch = |range: &str, body: &'static [u8]| {
        http.patch(&location).header("content-range", range).body(body).send()
    };
    assert_eq!(patch("0-4", b"hello").await.unwrap().status(), StatusCode::ACCEPTED);
    let skipped = patch("10-14", b"world").await.unwrap();
    assert_eq!(skipped.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let status = http.get(&location).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(status.headers()["range"], "0-4");
    // So does a closing PUT whose last chunk does not continue it: 416, nothing appended,
    // nothing stored, and the upload is still there to ask about (the spec's rule for a last
    // chunk sent out of order).
    let rest = Digest::of(b"helloworld");
    let closing = http
        .put(with_digest(&location, &rest))
        .header("content-range", "10-14")
        .body(&b"world"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(closing.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let status = http.get(&location).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::NO_CONTENT, "the upload is still open");
    assert_eq!(status.headers()["range"], "0-4", "nothing of the refused chunk was kept");
    let head = http.head(format!("{base}/v2/local/app/blobs/{rest}")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let get = http.get(format!("{base}/v2/local/app/blobs/{rest}")).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::NOT_FOUND);
    assert!(get.text().await.unwrap().contains("BLOB_UNKNOWN"), "a hosted name's miss");
    // An upload id is good only under the name it was started for.
    let elsewhere = location.replace("/local/app/", "/local/other/");
    assert_eq!(http.get(&elsewhere).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // Closing it with a digest the bytes do not have: 400 DIGEST_INVALID, nothing stored.
    let lie = Digest::of(b"hello world");
    let closed = http.put(with_digest(&location, &lie)).send().await.unwrap();
    assert_eq!(closed.status(), StatusCode::BAD_REQUEST);
    assert!(closed.text().await.unwrap().contains("DIGEST_INVALID"));
    let head = http.head(format!("{base}/v2/local/app/blobs/{lie}")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let gone = http.get(&location).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND, "the upload ended");

    // A monolithic push, then a manifest naming it and a blob that was never pushed.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = Digest::of(config);
    let pushed = http
        .post(format!("{uploads}?digest={config_digest}"))
        .body(&config[..])
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), StatusCode::CREATED);
    let missing = Digest::of(b"never pushed");
    let manifest = |layer: &Digest, extra: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":5}}]{extra}}}"#,
            config.len()
        )
    };
    let put = |reference: String, body: String| {
        http.put(format!("{base}/v2/local/app/manifests/{reference}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
            .send()
    };
    let refused = put("v1".into(), manifest(&missing, "")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().await.unwrap().contains("MANIFEST_BLOB_UNKNOWN"));

    // An algorithm this node takes no content under: an upload that asks for it is refused
    // (400). A sha512 no content was pushed by: a mount of it becomes a plain upload (202), and
    // a blob under it is unknown (404). (Content pushed by sha512: `sha512.rs`.)
    let sha512 = format!("sha512:{}", "ab".repeat(64));
    let asked = http.post(format!("{uploads}?digest-algorithm=blake3")).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::BAD_REQUEST);
    assert!(asked.text().await.unwrap().contains("DIGEST_INVALID"));
    let mount = http.post(format!("{uploads}?mount={sha512}&from=local/other")).send();
    assert_eq!(mount.await.unwrap().status(), StatusCode::ACCEPTED);
    let blob = format!("{base}/v2/local/app/blobs/{sha512}");
    assert_eq!(http.get(&blob).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(http.delete(&blob).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // A manifest PUT under a reference that is neither a tag nor a digest: 400, as for any
    // malformed digest (a GET of it is 404 MANIFEST_UNKNOWN: no such manifest).
    let bad = put("sha256:baddigeststring".into(), manifest(&config_digest, "")).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("DIGEST_INVALID"));

    // A 5 MiB manifest is refused before it is read.
    let huge = format!(r#"{{"schemaVersion":2,"annotations":{{"x":"{}"}}}}"#, "a".repeat(5 << 20));
    assert_eq!(put("big".into(), huge).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);

    // The blob pushed in two chunks, then the image by tag; a referrer pointing at it.
    let layer = b"hello";
    let layer_digest = Digest::of(layer);
    let location = start(&http, &uploads).await;
    let first = http.patch(&location).header("content-range", "0-1").body(&layer[..2]).send();
    let location = first.await.unwrap().headers()["location"].to_str().unwrap().to_owned();
    let location = absolute(&base, &location);
    let second = http.patch(&location).header("content-range", "2-4").body(&layer[2..]).send();
    let location = second.await.unwrap().headers()["location"].to_str().unwrap().to_owned();
    let location = absolute(&base, &location);
    let closed = http.put(with_digest(&location, &layer_digest)).send().await.unwrap();
    assert_eq!(closed.status(), StatusCode::CREATED);
    let image = manifest(&layer_digest, "");
    let image_digest = Digest::of(image.as_bytes());
    assert_eq!(put("v1".into(), image.clone()).await.unwrap().status(), StatusCode::CREATED);
    let subject = format!(
        r#","artifactType":"application/x.sig","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{image_digest}","size":{}}}"#,
        image.len()
    );
    let signature = manifest(&layer_digest, &subject);
    let signature_digest = Digest::of(signature.as_bytes());
    let by_digest = put(signature_digest.to_string(), signature).await.unwrap();
    assert_eq!(by_digest.status(), StatusCode::CREATED);
    assert_eq!(by_digest.headers()["oci-subject"], image_digest.to_string().as_str());

    let referrers = format!("{base}/v2/local/app/referrers/{image_digest}");
    let listed: serde_json::Value =
        http.get(&referrers).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["manifests"][0]["digest"], signature_digest.to_string());
    assert_eq!(listed["manifests"][0]["artifactType"], "application/x.sig");
    let filtered = http.get(format!("{referrers}?artifactType=application/x.sbom")).send();
    let filtered = filtered.await.unwrap();
    assert_eq!(filtered.headers()["oci-filters-applied"], "artifactType");
    let filtered: serde_json::Value = filtered.json().await.unwrap();
    assert_eq!(filtered["manifests"].as_array().map(Vec::len), Some(0));

    // Paging and deletes.
    for tag in ["v2", "v3"] {
        assert_eq!(put(tag.into(), image.clone()).await.unwrap().status(), StatusCode::CREATED);
    }
    let page = http.get(format!("{base}/v2/local/app/tags/list?n=2")).send().await.unwrap();
    assert!(page.headers()["link"].to_str().unwrap().contains("last=v2"));
    let page: serde_json::Value = page.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["v1", "v2"]));
    let deleted = http.delete(format!("{base}/v2/local/app/manifests/v3")).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    let gone = http.get(format!("{base}/v2/local/app/manifests/v3")).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let manifest_url = format!("{base}/v2/local/app/manifests/{signature_digest}");
    assert_eq!(http.delete(&manifest_url).send().await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(http.get(&manifest_url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let listed: serde_json::Value =
        http.get(&referrers).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["manifests"].as_array().map(Vec::len), Some(0));

    // An abandoned upload is removed with its bytes after the idle timeout.
    let location = start(&http, &uploads).await;
    let sent = http.patch(&location).body(vec![7u8; 100_000]).send().await.unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    assert!(!upload_files(&node).is_empty(), "the upload's bytes are on disk");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(http.get(&location).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert!(upload_files(&node).is_empty(), "its file is removed: {:?}", upload_files(&node));
}

#[tokio::test]
async fn a_push_by_digest_creates_the_tags_its_parameters_name_fleet_wide() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let options = ShoalOptions::docker_io(registry.url())
        .arg("--hosted")
        .arg("local")
        .arg("--config")
        .arg(lab_config());
    let nodes = start_fleet(2, options).await.expect("fleet");
    wait_for_peers(&nodes, 1).await.expect("peers");
    let (a, b) = (&nodes[0], &nodes[1]);
    let http = reqwest::Client::new();
    let config = br#"{"architecture":"arm64","os":"linux"}"#;
    let config_digest = Digest::of(config);
    let uploads = format!("{}/v2/local/tagged/blobs/uploads/", a.url());
    let pushed = http.post(format!("{uploads}?digest={config_digest}")).body(&config[..]).send();
    assert_eq!(pushed.await.unwrap().status(), StatusCode::CREATED);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let digest = Digest::of(manifest.as_bytes());
    let put = |query: String| {
        http.put(format!("{}/v2/local/tagged/manifests/{digest}?{query}", a.url()))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
    };

    // A tag that is not one, or more tags than a push takes: refused whole, nothing stored.
    let bad = put("tag=1.0&tag=no%20spaces".into()).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("TAG_INVALID"));
    let many: Vec<String> = (0..=100).map(|i| format!("tag=t{i}")).collect();
    let too_many = put(many.join("&")).await.unwrap();
    assert_eq!(too_many.status(), StatusCode::URI_TOO_LONG);
    let by_digest = format!("{}/v2/local/tagged/manifests/{digest}", a.url());
    assert_eq!(http.head(&by_digest).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(
        http.head(format!("{}/v2/local/tagged/manifests/1.0", a.url()))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // Three tags, one of them twice: each created once, and named in `OCI-Tag`.
    let created = put("tag=1.0&tag=1&tag=latest&tag=1".into()).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["oci-tag"], "1.0, 1, latest");
    assert_eq!(created.headers()["docker-content-digest"], digest.to_string().as_str());
    // Every tag resolves on the other member too, and is listed.
    for tag in ["1.0", "1", "latest"] {
        let url = format!("{}/v2/local/tagged/manifests/{tag}", b.url());
        let got = http.get(&url).header("accept", "application/vnd.oci.image.manifest.v1+json");
        let got = got.send().await.unwrap();
        assert_eq!(got.status(), StatusCode::OK, "{tag} through the other member");
        assert_eq!(got.headers()["docker-content-digest"], digest.to_string().as_str());
    }
    let listed: serde_json::Value = http
        .get(format!("{}/v2/local/tagged/tags/list", a.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["tags"], serde_json::json!(["1", "1.0", "latest"]));
    // A push with no tag parameter names none.
    let plain = put(String::new()).await.unwrap();
    assert_eq!(plain.status(), StatusCode::CREATED);
    assert!(plain.headers().get("oci-tag").is_none());
}

/// Anonymous clients may pull and push everything: a lab node.
fn lab_config() -> String {
    let dir = tempfile::Builder::new().prefix("shoal-lab-").tempdir().expect("tempdir");
    let path = dir.keep().join("shoal.toml");
    let text = "[[auth.rule]]\nprefix = \"*\"\nanonymous = true\nallow = [\"pull\", \"push\"]\n";
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

async fn start(http: &reqwest::Client, uploads: &str) -> String {
    let started = http.post(uploads).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()["location"].to_str().unwrap().to_owned();
    absolute(uploads.split("/v2/").next().unwrap(), &location)
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") { location.to_owned() } else { format!("{base}{location}") }
}

fn upload_files(node: &ShoalNode) -> Vec<String> {
    std::fs::read_dir(node.data_dir().join("tmp"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("upload."))
                .collect()
        })
        .unwrap_or_default()
}
