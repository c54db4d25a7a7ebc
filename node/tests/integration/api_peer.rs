//! The data plane peers use: `/v2/_shoal/peer/blobs/<digest>` serves only what the node holds or
//! is fetching (it never starts a fetch, so peers cannot send each other in circles), only to
//! requests signed with the cluster key, each signature once; `/metrics` counts where bytes
//! came from.

use crate::{api_support, support};

use api_support::{TEST_PEER_ID, TestKey, assert_oci_error, pattern, read_body, setup, setup_with};
use reqwest::{Method, StatusCode};
use shoal::peer_auth::{PEER_AUTH_HEADER, RequestSigner};
use shoal_protocol::peer::{PEERS_HEADER, SignedRequest};

/// Two more well-formed peer ids, for requests from other members.
const OTHER_PEER_ID: &str = "12D3KooWGzh6ZkVrz8kC7aGTwYKKU6gXYbYe6H6tgfHmDHpD8xCo";
const THIRD_PEER_ID: &str = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE";
use support::fake_upstream::FakeUpstream;

#[tokio::test]
async fn peer_endpoint_serves_held_blobs_and_never_fetches() {
    let key = TestKey::new();
    let signer = key.signer();
    let (fake, _health, node) = setup_with(key.options()).await;
    let bytes = pattern(300_000, 7);
    let digest = fake.put_blob("library/app", &bytes);
    let peer_path = format!("/v2/_shoal/peer/blobs/{digest}");
    let get = |range| node.peer_request(Method::GET, &peer_path, range, Some(&signer)).send();

    let missing = get(None).await.expect("peer GET");
    assert_oci_error(missing, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    assert_eq!(fake.count("GET", &FakeUpstream::blob_path("library/app", &digest)), 0);

    let (got, _) =
        read_body(node.get_ok(&FakeUpstream::blob_path("library/app", &digest)).await).await;
    assert_eq!(got, bytes);
    node.assert_stored(&digest).await;

    let (got, err) = read_body(get(None).await.expect("peer GET")).await;
    assert!(err.is_none());
    assert_eq!(got, bytes);
    let ranged = get(Some("bytes=1000-")).await.expect("range");
    assert_eq!(ranged.status(), 206);
    let (got, _) = read_body(ranged).await;
    assert_eq!(got, bytes[1000..]);
    assert_eq!(fake.count("GET", &FakeUpstream::blob_path("library/app", &digest)), 1);

    let bad = node.get_ok("/v2/_shoal/peer/blobs/sha256:nope").await;
    assert_oci_error(bad, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn answers_name_the_peers_that_got_pieces_lately_but_never_the_asker() {
    let key = TestKey::new();
    let (fake, _health, node) = setup_with(key.options()).await;
    let bytes = pattern(3 << 20, 9);
    let digest = fake.put_blob("library/app", &bytes);
    let (got, _) =
        read_body(node.get_ok(&FakeUpstream::blob_path("library/app", &digest)).await).await;
    assert_eq!(got, bytes);
    node.assert_stored(&digest).await;

    // Three members, told apart by the peer id each signs with.
    let ids = [TEST_PEER_ID, OTHER_PEER_ID, THIRD_PEER_ID];
    let signers: Vec<RequestSigner> =
        ids.iter().map(|id| RequestSigner::new(key.key.request_key(), (*id).to_owned())).collect();
    let path = format!("/v2/_shoal/peer/blobs/{digest}");
    let named = |response: &reqwest::Response| -> Vec<String> {
        response
            .headers()
            .get(PEERS_HEADER)
            .map_or_else(Vec::new, |v| v.to_str().unwrap().split(',').map(str::to_owned).collect())
    };
    let status = |who: usize| node.peer_request(Method::HEAD, &path, None, Some(&signers[who]));
    let piece_of =
        |who: usize, range| node.peer_request(Method::GET, &path, range, Some(&signers[who]));
    let piece = |who: usize| piece_of(who, Some("bytes=0-1048575"));

    let first = status(0).send().await.expect("status");
    assert_eq!(first.status(), StatusCode::OK);
    assert!(named(&first).is_empty(), "no piece went anywhere yet");

    // The first member takes a piece: the others are told of it, it is not told of itself.
    let sent = piece(0).send().await.expect("piece");
    assert_eq!(sent.status(), StatusCode::PARTIAL_CONTENT);
    let (got, _) = read_body(sent).await;
    assert_eq!(got, bytes[..1 << 20]);
    assert_eq!(named(&status(1).send().await.expect("status")), [TEST_PEER_ID]);
    assert!(named(&status(0).send().await.expect("status")).is_empty());

    // The second takes it too, and is named first from then on; a status request names no one
    // new.
    let (got, _) = read_body(piece(1).send().await.expect("piece")).await;
    assert_eq!(got.len(), 1 << 20);
    assert_eq!(named(&status(2).send().await.expect("status")), [OTHER_PEER_ID, TEST_PEER_ID]);
    // Sent twice just now, the piece is refused to the third, which is told who has it.
    let refused = piece(2).send().await.expect("piece");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(named(&refused), [OTHER_PEER_ID, TEST_PEER_ID]);
    let other = piece_of(2, Some("bytes=1048576-2097151")).send().await.expect("piece");
    assert_eq!(other.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(read_body(other).await.0, bytes[1 << 20..2 << 20]);
    assert_eq!(named(&status(0).send().await.expect("status")), [THIRD_PEER_ID, OTHER_PEER_ID]);
}

#[tokio::test]
async fn metrics_count_upstream_fetches_and_peer_serves() {
    let key = TestKey::new();
    let (fake, _health, node) = setup_with(key.options()).await;
    let bytes = pattern(100_000, 9);
    let digest = fake.put_blob("library/app", &bytes);
    let _ = read_body(node.get_ok(&FakeUpstream::blob_path("library/app", &digest)).await).await;
    node.assert_stored(&digest).await;
    let path = format!("/v2/_shoal/peer/blobs/{digest}");
    let signer = key.signer();
    let response = node.peer_request(Method::GET, &path, None, Some(&signer)).send().await;
    let _ = read_body(response.expect("peer GET")).await;

    let text = node.get_ok("/metrics").await.text().await.expect("metrics text");
    assert!(text.contains("shoal_upstream_blob_fetches_total 1\n"), "{text}");
    assert!(text.contains("shoal_upstream_bytes_total 100000\n"), "{text}");
    assert!(text.contains("shoal_peer_blob_serves_total 1\n"), "{text}");
    assert!(text.contains("shoal_peer_blob_fetches_total 0\n"), "{text}");
}

/// A request captured on the wire is refused when sent again, and for any other path or
/// range; the same request signed afresh is served.
#[tokio::test]
async fn a_captured_peer_request_cannot_be_replayed() {
    let key = TestKey::new();
    let signer = key.signer();
    let (fake, _health, node) = setup_with(key.options()).await;
    let bytes = pattern(200_000, 5);
    let digest = fake.put_blob("library/app", &bytes);
    let _ = read_body(node.get_ok(&FakeUpstream::blob_path("library/app", &digest)).await).await;
    node.assert_stored(&digest).await;
    let path = format!("/v2/_shoal/peer/blobs/{digest}");
    let range = "bytes=0-999";

    // The original, as a member sent it; the eavesdropper keeps its header.
    let captured = signer.header_value("GET", &path, Some(range));
    let send = |path: &str, range: &str, auth: &str| {
        node.client
            .get(format!("{}{path}", node.url))
            .header("range", range)
            .header(PEER_AUTH_HEADER, auth)
            .send()
    };
    let first = send(&path, range, &captured).await.expect("original");
    assert_eq!(first.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(read_body(first).await.0, bytes[..1000]);

    let replayed = send(&path, range, &captured).await.expect("replay");
    assert_oci_error(replayed, StatusCode::FORBIDDEN, "DENIED").await;
    let other_range = send(&path, "bytes=1000-199999", &captured).await.expect("other range");
    assert_oci_error(other_range, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let pieces = format!("/v2/_shoal/peer/pieces/{digest}");
    let other_path = send(&pieces, range, &captured).await.expect("other path");
    assert_oci_error(other_path, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // The member signs the same request again: a fresh nonce, served.
    let again = send(&path, range, &signer.header_value("GET", &path, Some(range))).await;
    let again = again.expect("re-signed");
    assert_eq!(again.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(read_body(again).await.0, bytes[..1000]);
}

#[tokio::test]
async fn unsigned_stale_and_foreign_peer_requests_are_refused() {
    let key = TestKey::new();
    let (fake, _health, node) = setup_with(key.options()).await;
    let digest = fake.put_blob("library/app", &pattern(10_000, 1));
    let path = format!("/v2/_shoal/peer/blobs/{digest}");
    let send = |auth: Option<String>| {
        let request = node.client.head(format!("{}{path}", node.url));
        match auth {
            Some(auth) => request.header(PEER_AUTH_HEADER, auth).send(),
            None => request.send(),
        }
    };
    let unauthorized = |response: reqwest::Response| async move {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    };
    unauthorized(send(None).await.expect("unsigned")).await;
    unauthorized(send(Some("v1; peer=x".to_owned())).await.expect("malformed")).await;
    let stranger = TestKey::new().signer();
    unauthorized(send(Some(stranger.header_value("HEAD", &path, None))).await.expect("foreign"))
        .await;
    // Signed by the right key, a minute ago.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let request = SignedRequest { method: "HEAD", path_and_query: &path, range: None };
    let old =
        key.key.request_key().sign(request, api_support::TEST_PEER_ID, now.as_secs() - 60, [1; 16]);
    unauthorized(send(Some(old.to_header_value())).await.expect("stale")).await;
    let good = send(Some(key.signer().header_value("HEAD", &path, None))).await.expect("signed");
    assert_eq!(good.status(), StatusCode::NOT_FOUND, "signed: the node answers, it holds nothing");
}

/// A node without a cluster key serves clients, and no peer at all.
#[tokio::test]
async fn a_node_without_a_cluster_key_serves_no_peer() {
    let (fake, image, node) = setup().await;
    node.assert_serves(&fake, &image).await;
    let key = TestKey::new();
    let path = format!("/v2/_shoal/peer/blobs/{}", image.layers[0]);
    let signed = node.peer_request(Method::GET, &path, None, Some(&key.signer())).send().await;
    assert_oci_error(signed.expect("peer GET"), StatusCode::FORBIDDEN, "DENIED").await;
    let text = node.get_ok("/metrics").await.text().await.expect("metrics text");
    assert!(text.contains("shoal_fleet_peers 0\n"), "{text}");
    assert_eq!(node.get_ok("/readyz").await.status(), StatusCode::OK);
}
