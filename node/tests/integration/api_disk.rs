//! The node and its disk: `/healthz` and `/readyz`; an index that a full disk took out of
//! service, reported by `/readyz` and back in service with the space, without a restart; and
//! blobs that cannot fit, refused before the response starts instead of answered `200` and cut
//! off, with nothing else evicted for them.

use crate::api_support;

use api_support::tmpfs::Tmpfs;
use api_support::{HEALTH_REPO, Node, NodeOptions, fake_with_health, pattern, read_body, setup};
use reqwest::{Method, Response, StatusCode};
use shoal_protocol::Digest;
use shoal_protocol::media_type::OCI_MANIFEST;

const REPO: &str = "library/large";

fn blob_url(digest: &Digest) -> String {
    format!("/v2/{REPO}/blobs/{digest}")
}

async fn json(resp: Response) -> (StatusCode, serde_json::Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("HTTP {status}: body is not JSON ({e}): {text:?}"));
    (status, value)
}

/// The status, `errors[0].code` and `errors[0].message` of an OCI error response.
async fn oci_error(resp: Response) -> (StatusCode, String, String) {
    let (status, body) = json(resp).await;
    let field = |name: &str| body["errors"][0][name].as_str().unwrap_or_default().to_owned();
    (status, field("code"), field("message"))
}

fn sorted(mut files: Vec<std::path::PathBuf>) -> Vec<std::path::PathBuf> {
    files.sort();
    files
}

#[tokio::test]
async fn healthz_and_readyz_answer_on_a_healthy_node() {
    let (_fake, _image, node) = setup().await;
    let (status, body) = json(node.get_ok("/healthz").await).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));

    let (status, body) = json(node.get_ok("/readyz").await).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")), "{body}");
    assert!(body["free_bytes"].as_u64().is_some_and(|free| free > 0), "{body}");

    let head = node.request(Method::HEAD, "/readyz").await;
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn readyz_reports_an_index_out_of_service_until_the_space_comes_back() {
    let Some(tmpfs) = Tmpfs::mount("8m") else { return };
    let (fake, image) = fake_with_health().await;
    let options = NodeOptions { data_dir: Some(tmpfs.path().join("data")), ..Default::default() };
    let node = Node::start(&fake.url(), options).await;
    node.assert_serves(&fake, &image).await;

    let filler = tmpfs.fill();
    // Each new tag of a stored manifest costs one index write and nothing else; the index
    // grows until it needs a page that the full disk cannot give.
    let mut refused = None;
    for n in 0..5_000 {
        let name = format!("t{n:0>100}");
        fake.put_manifest(HEALTH_REPO, Some(&name), &image.manifest_bytes, OCI_MANIFEST);
        let resp = node.get_ok(&format!("/v2/{HEALTH_REPO}/manifests/{name}")).await;
        if !resp.status().is_success() {
            refused = Some(resp);
            break;
        }
    }
    let resp = refused.expect("the index never needed more room than the full disk had");
    let (status, code, message) = oci_error(resp).await;
    assert_eq!((status, code.as_str()), (StatusCode::INSUFFICIENT_STORAGE, "UNAVAILABLE"));
    eprintln!("the write that found the disk full: {message}");

    // The process serves, but it is not ready, and says why.
    let (status, code, message) = oci_error(node.get_ok("/readyz").await).await;
    assert_eq!((status, code.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"));
    assert!(message.contains("index.redb") && message.contains("out of service"), "{message}");
    assert_eq!(node.get_ok("/healthz").await.status(), StatusCode::OK);
    assert_eq!(node.get_ok("/v2/").await.status(), StatusCode::OK);

    // Space comes back: ready again, and tags and blobs are written again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let (status, body) = json(node.get_ok("/readyz").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    fake.put_manifest(HEALTH_REPO, Some("after"), &image.manifest_bytes, OCI_MANIFEST);
    let resp = node.get_ok(&format!("/v2/{HEALTH_REPO}/manifests/after")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let blob = pattern(256 << 10, 3);
    let digest = fake.put_blob(REPO, &blob);
    let (got, err) = read_body(node.get_ok(&blob_url(&digest)).await).await;
    assert!(err.is_none() && got == blob, "the blob was not served whole");
    node.assert_stored(&digest).await;
}

#[tokio::test]
async fn a_layer_larger_than_the_disk_is_refused_before_the_response_starts() {
    let Some(tmpfs) = Tmpfs::mount("4m") else { return };
    let (fake, image) = fake_with_health().await;
    let options = NodeOptions { data_dir: Some(tmpfs.path().join("data")), ..Default::default() };
    let node = Node::start(&fake.url(), options).await;
    node.assert_serves(&fake, &image).await;
    let cached = sorted(node.files_under("blobs"));

    let big = pattern(8 << 20, 11);
    let digest = fake.put_blob(REPO, &big);
    let resp = node.get_ok(&blob_url(&digest)).await;
    let (status, code, message) = oci_error(resp).await;
    assert_eq!((status, code.as_str()), (StatusCode::INSUFFICIENT_STORAGE, "UNAVAILABLE"));
    // Refused when the size was announced; only if the download had filled the disk first
    // (a race the refusal nearly always wins) would the message be the full disk's.
    assert!(
        message.contains("8.0 MiB") || message.contains("no space left"),
        "the message names neither the size nor the full disk: {message}"
    );
    eprintln!("refused: {message}");

    node.assert_nothing_kept(&digest).await;
    assert_eq!(sorted(node.files_under("blobs")), cached, "the cache lost blobs to a refused one");
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn a_layer_larger_than_max_size_is_refused_and_the_cache_kept() {
    let (fake, image) = fake_with_health().await;
    let options = NodeOptions { max_size: Some("1MiB".to_owned()), ..Default::default() };
    let node = Node::start(&fake.url(), options).await;
    node.assert_serves(&fake, &image).await;
    let cached = sorted(node.files_under("blobs"));

    let big = pattern(2 << 20, 12);
    let digest = fake.put_blob(REPO, &big);
    let resp = node.get_ok(&blob_url(&digest)).await;
    let (status, code, message) = oci_error(resp).await;
    assert_eq!((status, code.as_str()), (StatusCode::INSUFFICIENT_STORAGE, "UNAVAILABLE"));
    assert!(message.contains("--max-size"), "{message}");

    node.assert_nothing_kept(&digest).await;
    assert_eq!(
        sorted(node.files_under("blobs")),
        cached,
        "the cache was flushed for a blob that cannot fit"
    );
    node.assert_serves(&fake, &image).await;
}
