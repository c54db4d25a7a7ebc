//! `Range` requests for blobs: single ranges on stored blobs and on blobs still arriving from
//! upstream (206, `Content-Range`, the right bytes), suffix ranges, and everything the node
//! refuses with 416: unsatisfiable starts, several ranges, garbage, two `Range` headers.

use crate::{api_support, support};

use api_support::{HEALTH_REPO, Node, assert_oci_error, pattern, setup};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use shoal_protocol::Digest;
use support::fake_upstream::FakeUpstream;

const REPO: &str = "library/ranged";

async fn get_range(node: &Node, digest: &Digest, range: &str) -> reqwest::Response {
    node.client
        .get(format!("{}/v2/{REPO}/blobs/{digest}", node.url))
        .header(RANGE, range)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {digest} with Range {range}: {e}"))
}

/// Asserts a 206 carrying `blob[start..end]` with matching `Content-Range` and length.
async fn assert_partial(
    node: &Node,
    digest: &Digest,
    blob: &[u8],
    range: &str,
    start: usize,
    end: usize,
) {
    let resp = get_range(node, digest, range).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "Range {range}");
    let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let expected_range = format!("bytes {start}-{}/{}", end - 1, blob.len());
    assert_eq!(header(CONTENT_RANGE).as_deref(), Some(expected_range.as_str()), "Range {range}");
    assert_eq!(header(CONTENT_LENGTH), Some((end - start).to_string()), "Range {range}");
    let body = resp.bytes().await.unwrap_or_else(|e| panic!("body of Range {range}: {e}"));
    assert!(body[..] == blob[start..end], "Range {range}: other bytes than {start}..{end}");
}

async fn assert_unsatisfiable(node: &Node, digest: &Digest, range: &str, size: usize) {
    let resp = get_range(node, digest, range).await;
    let content_range = resp.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok());
    assert_eq!(content_range, Some(format!("bytes */{size}").as_str()), "Range {range}");
    assert_oci_error(resp, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
}

#[tokio::test]
async fn single_ranges_of_a_stored_blob() {
    let (fake, image, node) = setup().await;
    let blob = pattern(300_000, 1);
    let digest = fake.put_blob(REPO, &blob);
    let whole = node.get_ok(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert!(whole.bytes().await.unwrap()[..] == blob[..]);
    let len = blob.len();

    assert_partial(&node, &digest, &blob, "bytes=0-0", 0, 1).await;
    assert_partial(&node, &digest, &blob, "bytes=0-99", 0, 100).await;
    assert_partial(&node, &digest, &blob, "bytes=123456-234567", 123_456, 234_568).await;
    assert_partial(&node, &digest, &blob, "bytes=299999-", 299_999, len).await;
    assert_partial(&node, &digest, &blob, "bytes=100000-", 100_000, len).await;
    // An end past the blob is cut to the blob (RFC 9110 §14.1.2).
    assert_partial(&node, &digest, &blob, "bytes=290000-999999999", 290_000, len).await;
    assert_partial(&node, &digest, &blob, "bytes=-500", len - 500, len).await;
    assert_partial(&node, &digest, &blob, "bytes=-1", len - 1, len).await;
    assert_partial(&node, &digest, &blob, &format!("bytes=-{}", len * 2), 0, len).await;

    // All of it was served from the store.
    assert_eq!(fake.count("GET", &FakeUpstream::blob_path(REPO, &digest)), 1);
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn single_ranges_of_a_blob_being_fetched() {
    let (fake, image, node) = setup().await;
    let blob = pattern(8 << 20, 2);
    let digest = fake.put_blob(REPO, &blob);
    let len = blob.len();

    // The first request for the blob is a range near its end: it is answered while the
    // download it started is still arriving, by following the growing file.
    let ranges = [
        ("bytes=8000000-8000999", 8_000_000, 8_001_000),
        ("bytes=-4096", len - 4096, len),
        ("bytes=0-65535", 0, 65_536),
        ("bytes=4194304-", 4 << 20, len),
    ];
    let requests = ranges.map(|(range, start, end)| {
        let (node, blob) = (&node, &blob);
        async move { assert_partial(node, &digest, blob, range, start, end).await }
    });
    futures_util::future::join_all(requests).await;

    // One download of the whole blob served every range, and it was stored complete.
    assert_eq!(fake.count("GET", &FakeUpstream::blob_path(REPO, &digest)), 1);
    let whole = node.get_ok(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert!(whole.bytes().await.unwrap()[..] == blob[..]);
    assert_eq!(std::fs::metadata(node.blob_file(&digest)).map(|m| m.len()).ok(), Some(len as u64));
    assert_eq!(fake.count("GET", &FakeUpstream::blob_path(REPO, &digest)), 1);
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn unsatisfiable_ranges_are_416_with_the_size() {
    let (fake, image, node) = setup().await;
    let blob = pattern(10_000, 3);
    let digest = fake.put_blob(REPO, &blob);
    // Cold: the node learns the size from the download it starts, and refuses.
    assert_unsatisfiable(&node, &digest, "bytes=10000-", blob.len()).await;
    // Hot, once it is stored.
    let whole = node.get_ok(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert!(whole.bytes().await.unwrap()[..] == blob[..]);
    for range in ["bytes=10000-", "bytes=10000-10010", "bytes=20000-30000", "bytes=-0"] {
        assert_unsatisfiable(&node, &digest, range, blob.len()).await;
    }
    // The refusals did not disturb the blob.
    assert_partial(&node, &digest, &blob, "bytes=9990-", 9_990, 10_000).await;
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn several_ranges_garbage_and_two_headers_are_416() {
    let (fake, image, node) = setup().await;
    let blob = pattern(10_000, 4);
    let digest = fake.put_blob(REPO, &blob);
    let refused = [
        "bytes=0-1,5-6",
        "bytes=0-1, 5-6",
        "bytes=-1,-2",
        "bytes=abc",
        "bytes=a-b",
        "bytes=",
        "bytes=-",
        "bytes=5-1",
        "items=0-1",
        "0-1",
        "bytes=0x10-",
        "bytes=99999999999999999999999-",
    ];
    for range in refused {
        let resp = get_range(&node, &digest, range).await;
        assert_oci_error(resp, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    }
    let resp = node
        .client
        .get(format!("{}/v2/{REPO}/blobs/{digest}", node.url))
        .header(RANGE, "bytes=0-1")
        .header(RANGE, "bytes=2-3")
        .send()
        .await
        .unwrap();
    assert_oci_error(resp, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;

    // Refused before any work: the blob was never fetched.
    assert_eq!(fake.count("GET", &FakeUpstream::blob_path(REPO, &digest)), 0);
    assert_partial(&node, &digest, &blob, "bytes=1-2", 1, 3).await;
    let resp = node.get_ok(&format!("/v2/{HEALTH_REPO}/blobs/{}", image.layers[0])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    node.assert_serves(&fake, &image).await;
}
