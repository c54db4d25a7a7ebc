//! Content named by sha512: pushed into one member (monolithic and chunked uploads, a manifest
//! whose descriptors are sha512, pushed by its sha512), served by that name through every
//! other member — which learn the alias from the fleet and check it against the bytes — and
//! still after the member it was pushed to is gone. Lies and gaps are refused: an upload whose
//! bytes do not hash to the sha512 it names, a manifest naming a sha512 no one holds.

use reqwest::{Client, Response, StatusCode};
use shoal_cluster_tests::fleet::{logs, start_fleet, wait_for_peers};
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools};
use shoal_protocol::Sha512Digest;
use shoal_protocol::media_type::OCI_MANIFEST;

const REPO: &str = "local/sha/app";

/// Anyone may pull and push (a lab); `local` is a hosted name.
fn lab_config(dir: &std::path::Path) -> String {
    let path = dir.join("shoal.toml");
    let text = "hosted = [\"local\"]\n\n[[auth.rule]]\nprefix = \"*\"\nanonymous = true\n\
                allow = [\"pull\", \"push\"]\n";
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

fn bytes_of(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 7) as u8)
        .collect()
}

fn header(response: &Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// `POST` then `PATCH` of the first part, then the closing `PUT` with the rest and `digest`.
async fn chunked(http: &Client, node: &ShoalNode, data: &[u8], digest: &str) -> Response {
    let started = http
        .post(format!("{}/v2/{REPO}/blobs/uploads/", node.url()))
        .send()
        .await
        .expect("start upload");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = format!("{}{}", node.url(), header(&started, "location"));
    let half = data.len() / 2;
    let patched = http
        .patch(&location)
        .header("content-range", format!("0-{}", half - 1))
        .body(data[..half].to_vec())
        .send()
        .await
        .expect("patch");
    assert_eq!(patched.status(), StatusCode::ACCEPTED);
    let location = format!("{}{}", node.url(), header(&patched, "location"));
    let sep = if location.contains('?') { '&' } else { '?' };
    http.put(format!("{location}{sep}digest={digest}"))
        .body(data[half..].to_vec())
        .send()
        .await
        .expect("closing put")
}

async fn oci_code(response: Response) -> (StatusCode, String) {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (status, body["errors"][0]["code"].as_str().unwrap_or_default().to_owned())
}

/// `GET`s `path` on `node`; the bytes and the digest header.
async fn get(http: &Client, node: &ShoalNode, path: &str) -> (StatusCode, String, Vec<u8>) {
    let response = http
        .get(format!("{}/v2/{REPO}/{path}", node.url()))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .expect("get");
    let (status, digest) = (response.status(), header(&response, "docker-content-digest"));
    (status, digest, response.bytes().await.expect("body").to_vec())
}

/// [`get`], asked again for up to ten seconds while it answers `pending`: what spreads through
/// the fleet (a pushed tag's and an alias's announcements, a delete's release) takes a moment.
async fn get_while(
    http: &Client,
    node: &ShoalNode,
    path: &str,
    pending: StatusCode,
) -> (StatusCode, String, Vec<u8>) {
    let mut answer = get(http, node, path).await;
    for _ in 0..50 {
        if answer.0 != pending {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        answer = get(http, node, path).await;
    }
    answer
}

#[tokio::test]
async fn content_pushed_by_sha512_is_served_by_that_name_on_every_member() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = lab_config(dir.path());
    let options = ShoalOptions::docker_io(registry.url()).arg("--config").arg(config);
    let mut nodes = start_fleet(3, options).await.expect("fleet");
    wait_for_peers(&nodes, 2).await.expect("peers");
    let http = Client::new();

    // A config pushed whole, a layer in chunks, both named by sha512.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config512 = Sha512Digest::of(config);
    let stored = http
        .post(format!("{}/v2/{REPO}/blobs/uploads/?digest={config512}", nodes[0].url()))
        .body(config.to_vec())
        .send()
        .await
        .expect("monolithic push");
    assert_eq!(stored.status(), StatusCode::CREATED);
    assert_eq!(header(&stored, "docker-content-digest"), config512.to_string());
    assert!(header(&stored, "location").ends_with(&format!("/blobs/{config512}")));
    let layer = bytes_of(7, 700_000);
    let layer512 = Sha512Digest::of(&layer);
    let stored = chunked(&http, &nodes[0], &layer, &layer512.to_string()).await;
    assert_eq!(stored.status(), StatusCode::CREATED);
    assert_eq!(header(&stored, "docker-content-digest"), layer512.to_string());

    // An upload whose bytes are not what its sha512 says is refused and leaves nothing.
    let other = bytes_of(8, 50_000);
    let lie = Sha512Digest::of(b"something else");
    let refused = chunked(&http, &nodes[0], &other, &lie.to_string()).await;
    assert_eq!(oci_code(refused).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".to_owned()));
    let (status, _, _) = get(&http, &nodes[0], &format!("blobs/{lie}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) =
        get(&http, &nodes[0], &format!("blobs/{}", Sha512Digest::of(&other))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the refused upload's bytes are not served");

    // A manifest naming a sha512 that no member holds is refused.
    let manifest_with = |layer: &Sha512Digest, size: usize| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config512}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{size}}}]}}"#,
            config.len()
        )
    };
    let missing = manifest_with(&Sha512Digest::of(b"never pushed"), 12);
    let refused = http
        .put(format!("{}/v2/{REPO}/manifests/broken", nodes[0].url()))
        .header("content-type", OCI_MANIFEST)
        .body(missing)
        .send()
        .await
        .expect("put manifest");
    assert_eq!(
        oci_code(refused).await,
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".to_owned())
    );

    // The manifest, by its sha512 and by a tag.
    let manifest = manifest_with(&layer512, layer.len());
    let manifest512 = Sha512Digest::of(manifest.as_bytes());
    for reference in [manifest512.to_string(), "v1".to_owned()] {
        let pushed = http
            .put(format!("{}/v2/{REPO}/manifests/{reference}", nodes[0].url()))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .expect("put manifest");
        assert_eq!(pushed.status(), StatusCode::CREATED, "PUT manifests/{reference}");
        if reference.starts_with("sha512:") {
            assert_eq!(header(&pushed, "docker-content-digest"), reference);
            assert!(header(&pushed, "location").ends_with(&format!("/manifests/{reference}")));
        }
    }

    // Every other member serves all of it by sha512, learned from the fleet.
    for node in &nodes[1..] {
        let (status, _, bytes) =
            get_while(&http, node, "manifests/v1", StatusCode::NOT_FOUND).await;
        assert_eq!((status, bytes.as_slice()), (StatusCode::OK, manifest.as_bytes()));
        let (status, digest, bytes) =
            get_while(&http, node, &format!("manifests/{manifest512}"), StatusCode::NOT_FOUND)
                .await;
        assert_eq!((status, bytes.as_slice()), (StatusCode::OK, manifest.as_bytes()));
        assert_eq!(digest, manifest512.to_string());
        let (status, digest, bytes) = get(&http, node, &format!("blobs/{layer512}")).await;
        assert_eq!((status, digest, bytes == layer), (StatusCode::OK, layer512.to_string(), true));
        let (status, _, bytes) = get(&http, node, &format!("blobs/{config512}")).await;
        assert_eq!((status, bytes.as_slice()), (StatusCode::OK, config.as_slice()));
    }
    // A mount by sha512. (On the member the image was pushed to: elsewhere the blob is known
    // to be in the repository only once its replica is kept, and until then a mount is
    // answered with a plain upload, as the spec allows.)
    let mounted = http
        .post(format!(
            "{}/v2/local/sha/copy/blobs/uploads/?mount={layer512}&from={REPO}",
            nodes[0].url()
        ))
        .send()
        .await
        .expect("mount");
    assert_eq!(mounted.status(), StatusCode::CREATED);
    assert_eq!(header(&mounted, "docker-content-digest"), layer512.to_string());

    // The member it was pushed to goes away: the others still serve it by sha512.
    nodes[0].stop();
    let survivors = &nodes[1..];
    let c = &survivors[1];
    let (status, digest, bytes) = get(&http, c, &format!("blobs/{layer512}")).await;
    assert_eq!((status, digest, bytes == layer), (StatusCode::OK, layer512.to_string(), true));

    // Deleted by sha512: gone by that name.
    let deleted = http
        .delete(format!("{}/v2/{REPO}/manifests/{manifest512}", c.url()))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    // The release reaches the member that keeps a replica in a moment.
    let (status, _, _) =
        get_while(&http, c, &format!("manifests/{manifest512}"), StatusCode::OK).await;
    let logs = logs(&[("b", &survivors[0]), ("c", c)]);
    assert_eq!(status, StatusCode::NOT_FOUND, "a deleted manifest is unknown by its sha512{logs}");
}
