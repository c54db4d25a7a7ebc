//! The data plane peers use: `/v2/_shoal/peer/blobs/<digest>` serves only what the node holds or
//! is fetching (it never starts a fetch, so peers cannot send each other in circles), and
//! `/metrics` counts where bytes came from.

mod api_support;
mod support;

use api_support::{assert_oci_error, pattern, read_body, setup};
use reqwest::StatusCode;
use support::fake_upstream::FakeUpstream;

#[tokio::test]
async fn peer_endpoint_serves_held_blobs_and_never_fetches() {
    let (fake, _health, node) = setup().await;
    let bytes = pattern(300_000, 7);
    let digest = fake.put_blob("library/app", &bytes);
    let peer_path = format!("/v2/_shoal/peer/blobs/{digest}");

    let missing = node.get_ok(&peer_path).await;
    assert_oci_error(missing, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    assert_eq!(fake.count("GET", &FakeUpstream::blob_path("library/app", &digest)), 0);

    let (got, _) =
        read_body(node.get_ok(&FakeUpstream::blob_path("library/app", &digest)).await).await;
    assert_eq!(got, bytes);
    node.assert_stored(&digest).await;

    let (got, err) = read_body(node.get_ok(&peer_path).await).await;
    assert!(err.is_none());
    assert_eq!(got, bytes);
    let ranged = node
        .client
        .get(format!("{}{peer_path}", node.url))
        .header("range", "bytes=1000-")
        .send()
        .await
        .expect("range");
    assert_eq!(ranged.status(), 206);
    let (got, _) = read_body(ranged).await;
    assert_eq!(got, bytes[1000..]);
    assert_eq!(fake.count("GET", &FakeUpstream::blob_path("library/app", &digest)), 1);

    let bad = node.get_ok("/v2/_shoal/peer/blobs/sha256:nope").await;
    assert_oci_error(bad, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn metrics_count_upstream_fetches_and_peer_serves() {
    let (fake, _health, node) = setup().await;
    let bytes = pattern(100_000, 9);
    let digest = fake.put_blob("library/app", &bytes);
    let _ = read_body(node.get_ok(&FakeUpstream::blob_path("library/app", &digest)).await).await;
    node.assert_stored(&digest).await;
    let _ = read_body(node.get_ok(&format!("/v2/_shoal/peer/blobs/{digest}")).await).await;

    let text = node.get_ok("/metrics").await.text().await.expect("metrics text");
    assert!(text.contains("shoal_upstream_blob_fetches_total 1\n"), "{text}");
    assert!(text.contains("shoal_upstream_bytes_total 100000\n"), "{text}");
    assert!(text.contains("shoal_peer_blob_serves_total 1\n"), "{text}");
    assert!(text.contains("shoal_peer_blob_fetches_total 0\n"), "{text}");
}
