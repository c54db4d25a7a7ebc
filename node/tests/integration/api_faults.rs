//! The node in front of a misbehaving upstream, and on a full disk: wrong bytes, truncated and
//! stalled bodies, hangs, HTML, 429s, oversized manifests. In every case the client sees a
//! failure (never a wrong blob), nothing is kept, and the node goes on serving.

use crate::{api_support, support};

use std::time::{Duration, Instant};

use api_support::tmpfs::Tmpfs;
use api_support::{
    Node, NodeOptions, assert_oci_error, fake_with_health, pattern, read_body, setup, setup_with,
};
use reqwest::{Response, StatusCode};
use shoal_protocol::media_type::{MAX_MANIFEST_SIZE, OCI_MANIFEST};
use support::fake_upstream::{FakeUpstream, Fault};

const REPO: &str = "library/faulty";

fn quick_failures() -> NodeOptions {
    NodeOptions { read_timeout: Some("300ms".into()), retries: Some(0), ..Default::default() }
}

fn blob_url(digest: &shoal_protocol::Digest) -> String {
    format!("/v2/{REPO}/blobs/{digest}")
}

/// The client must not be able to take the response for a good one: either an error status,
/// or a body that breaks off with an error (a short body under `Content-Length` is one).
/// Returns how it failed, for the message.
async fn assert_response_fails(resp: Response, expected: &[u8]) -> String {
    let status = resp.status();
    if !status.is_success() {
        return format!("HTTP {status}");
    }
    let announced = resp.content_length();
    let (body, error) = read_body(resp).await;
    assert!(
        error.is_some(),
        "HTTP {status}: the client got a complete body of {} bytes (Content-Length {announced:?}, \
         the right bytes: {}) and no error",
        body.len(),
        body == expected,
    );
    format!("HTTP {status}, body cut after {} bytes", body.len())
}

/// Drains a response whose bytes do not matter to the test.
async fn drain(resp: Response) {
    let _ = read_body(resp).await;
}

#[tokio::test]
async fn wrong_blob_bytes_are_not_stored() {
    let (fake, image, node) = setup().await;
    let blob = pattern(1 << 20, 5);
    let digest = fake.put_blob(REPO, &blob);
    let path = FakeUpstream::blob_path(REPO, &digest);
    fake.set_fault(&path, Fault::WrongBytes);

    // How the response fails is `wrong_blob_bytes_abort_the_response`'s business.
    drain(node.get_ok(&blob_url(&digest)).await).await;
    node.assert_nothing_kept(&digest).await;
    assert_eq!(fake.count("GET", &path), 1);

    // Nothing was remembered: the next request goes upstream again.
    drain(node.get_ok(&blob_url(&digest)).await).await;
    assert_eq!(fake.count("GET", &path), 2);
    node.assert_nothing_kept(&digest).await;
    node.assert_serves(&fake, &image).await;

    // Once the upstream sends the right bytes, the blob is served and stored.
    fake.clear_fault(&path);
    let resp = node.get_ok(&blob_url(&digest)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap()[..] == blob[..]);
    node.assert_stored(&digest).await;
}

#[tokio::test]
async fn wrong_blob_bytes_abort_the_response() {
    let (fake, image, node) = setup().await;
    let blob = pattern(1 << 20, 5);
    let digest = fake.put_blob(REPO, &blob);
    fake.set_fault(&FakeUpstream::blob_path(REPO, &digest), Fault::WrongBytes);
    let resp = node.get_ok(&blob_url(&digest)).await;
    assert_response_fails(resp, &blob).await;
    node.assert_nothing_kept(&digest).await;
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn html_or_other_bytes_for_a_blob_abort_the_response() {
    let (fake, image, node) = setup().await;
    let blob = pattern(200_000, 6);
    let digest = fake.put_blob(REPO, &blob);
    let path = FakeUpstream::blob_path(REPO, &digest);
    for fault in [Fault::Html, Fault::Replace(bytes::Bytes::from(pattern(200_000, 7)))] {
        fake.set_fault(&path, fault.clone());
        let resp = node.get_ok(&blob_url(&digest)).await;
        let how = assert_response_fails(resp, &blob).await;
        eprintln!("{fault:?}: {how}");
        node.assert_nothing_kept(&digest).await;
    }
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn wrong_manifest_bytes_are_refused_and_not_stored() {
    let (fake, image, node) = setup().await;
    let pulled = fake.put_image(REPO, "v1", &[b"a layer"]);
    let by_tag = FakeUpstream::manifest_path(REPO, "v1");
    let by_digest = FakeUpstream::manifest_path(REPO, &pulled.manifest.to_string());
    fake.set_fault(&by_tag, Fault::WrongBytes);
    fake.set_fault(&by_digest, Fault::WrongBytes);
    for path in [&by_tag, &by_digest] {
        let resp = node.get_ok(path).await;
        assert_oci_error(resp, StatusCode::BAD_GATEWAY, "DIGEST_INVALID").await;
    }
    node.assert_nothing_kept(&pulled.manifest).await;
    node.assert_serves(&fake, &image).await;

    fake.clear_faults();
    let resp = node.get_ok(&by_tag).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), pulled.manifest_bytes);
}

#[tokio::test]
async fn oversized_manifests_are_refused_and_not_stored() {
    let (fake, image, node) = setup().await;
    let padding = "x".repeat(MAX_MANIFEST_SIZE as usize + 1024);
    let big = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","annotations":{{"pad":"{padding}"}}}}"#
    );
    let big_digest = fake.put_manifest(REPO, Some("big"), big.as_bytes(), OCI_MANIFEST);
    let by_tag = format!("/v2/{REPO}/manifests/big");
    let by_digest = format!("/v2/{REPO}/manifests/{big_digest}");

    for round in 1..=2 {
        for path in [&by_tag, &by_digest] {
            let resp = node.get_ok(path).await;
            assert_oci_error(resp, StatusCode::BAD_GATEWAY, "MANIFEST_INVALID").await;
            // Refused, not remembered: every request asks the upstream again.
            assert_eq!(fake.count("GET", path), round, "GET {path}");
        }
    }
    node.assert_nothing_kept(&big_digest).await;
    node.assert_serves(&fake, &image).await;

    // The tag moves to a manifest of a sane size, and the node serves it.
    let small = fake.put_image(REPO, "big", &[b"a small layer"]);
    let resp = node.get_ok(&by_tag).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), small.manifest_bytes);
}

#[tokio::test]
async fn truncated_blobs_fail_the_response_and_are_not_stored() {
    let (fake, image, node) = setup_with(quick_failures()).await;
    let blob = pattern(1 << 20, 8);
    let digest = fake.put_blob(REPO, &blob);
    let path = FakeUpstream::blob_path(REPO, &digest);
    // Every answer, resumed ones included, stops after 100 KiB: the blob never completes.
    fake.set_fault(&path, Fault::Truncate { after: 100 << 10 });

    let resp = node.get_ok(&blob_url(&digest)).await;
    assert_response_fails(resp, &blob).await;
    node.assert_nothing_kept(&digest).await;
    let attempts = fake.count("GET", &path);
    assert!(attempts >= 1, "the upstream was asked");
    node.assert_serves(&fake, &image).await;

    fake.clear_fault(&path);
    let resp = node.get_ok(&blob_url(&digest)).await;
    assert!(resp.bytes().await.unwrap()[..] == blob[..]);
    assert!(fake.count("GET", &path) > attempts, "the failed download was not remembered");
}

#[tokio::test]
async fn stalled_blobs_fail_the_response_and_are_not_stored() {
    let (fake, image, node) = setup_with(quick_failures()).await;
    let blob = pattern(1 << 20, 9);
    let digest = fake.put_blob(REPO, &blob);
    let path = FakeUpstream::blob_path(REPO, &digest);
    fake.set_fault(&path, Fault::Stall { after: 64 << 10 });

    let started = Instant::now();
    let resp = node.get_ok(&blob_url(&digest)).await;
    assert_response_fails(resp, &blob).await;
    assert!(started.elapsed() < Duration::from_secs(15), "the stall was not cut by read_timeout");
    node.assert_nothing_kept(&digest).await;
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn a_hanging_upstream_times_out_while_other_requests_are_served() {
    let (fake, image, node) = setup_with(quick_failures()).await;
    let pulled = fake.put_image(REPO, "v1", &[b"a layer"]);
    let manifest = FakeUpstream::manifest_path(REPO, "v1");
    let blob = FakeUpstream::blob_path(REPO, &pulled.layers[0]);
    fake.set_fault(&manifest, Fault::Hang);
    fake.set_fault(&blob, Fault::Hang);

    let started = Instant::now();
    let hanging = async {
        let m = node.get_ok(&manifest).await;
        let b = node.get_ok(&blob).await;
        (m, b)
    };
    // The node serves others while those two wait on the upstream.
    let ((m, b), ()) = tokio::join!(hanging, node.assert_serves(&fake, &image));
    assert_oci_error(m, StatusCode::GATEWAY_TIMEOUT, "UNAVAILABLE").await;
    assert_oci_error(b, StatusCode::GATEWAY_TIMEOUT, "UNAVAILABLE").await;
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    node.assert_nothing_kept(&pulled.layers[0]).await;

    fake.clear_faults();
    let resp = node.get_ok(&manifest).await;
    assert_eq!(resp.bytes().await.unwrap(), pulled.manifest_bytes);
}

#[tokio::test]
async fn html_for_a_manifest_is_refused_and_not_stored() {
    let (fake, image, node) = setup().await;
    let pulled = fake.put_image(REPO, "v1", &[b"a layer"]);
    let path = FakeUpstream::manifest_path(REPO, "v1");
    fake.set_fault(&path, Fault::Html);
    let resp = node.get_ok(&path).await;
    assert_oci_error(resp, StatusCode::BAD_GATEWAY, "UNAVAILABLE").await;
    node.assert_nothing_kept(&pulled.manifest).await;
    node.assert_serves(&fake, &image).await;

    // No tag record was written from the HTML: the next pull fetches the real manifest.
    fake.clear_fault(&path);
    let resp = node.get_ok(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), pulled.manifest_bytes);
    assert_eq!(fake.count("GET", &path), 2);
}

#[tokio::test]
async fn rate_limits_pass_through_with_retry_after() {
    let (fake, image, node) = setup().await;
    let pulled = fake.put_image(REPO, "v1", &[b"a layer"]);
    let manifest = FakeUpstream::manifest_path(REPO, "v1");
    let blob = FakeUpstream::blob_path(REPO, &pulled.layers[0]);
    fake.set_fault(&manifest, Fault::TooManyRequests { retry_after_secs: 7 });
    fake.set_fault(&blob, Fault::TooManyRequests { retry_after_secs: 11 });

    for (path, secs) in [(&manifest, "7"), (&blob, "11")] {
        let resp = node.get_ok(path).await;
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok());
        assert_eq!(retry_after, Some(secs), "GET {path}");
        assert_oci_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
        // A 4xx is never retried upstream.
        assert_eq!(fake.count("GET", path), 1, "GET {path}");
    }
    node.assert_nothing_kept(&pulled.layers[0]).await;
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn a_full_disk_fails_the_pull_and_leaves_nothing() {
    let Some(tmpfs) = Tmpfs::mount("2m") else { return };
    let (fake, image) = fake_with_health().await;
    let options = NodeOptions { data_dir: Some(tmpfs.path().join("data")), ..Default::default() };
    let node = Node::start(&fake.url(), options).await;

    let blob = pattern(4 << 20, 10);
    let digest = fake.put_blob(REPO, &blob);
    let resp = node.get_ok(&blob_url(&digest)).await;
    let how = assert_response_fails(resp, &blob).await;
    eprintln!("full disk: {how}");
    node.assert_nothing_kept(&digest).await;
    assert_eq!(node.files_under("tmp"), Vec::<std::path::PathBuf>::new(), "tmp/ is not empty");

    // The space came back: small blobs are still pulled and stored.
    node.assert_serves(&fake, &image).await;
    node.assert_stored(&image.layers[0]).await;
    drop(node);
}
