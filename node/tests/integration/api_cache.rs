//! What the node caches and how: exact manifest bytes and headers (GET and HEAD), one upstream
//! fetch however many clients ask at once, tags/list passed through (or served from what the
//! node has seen when the upstream is down), tag revalidation once per TTL, and what the node
//! reports about it all on `/_shoal/status` and `/metrics`.

use crate::{api_support, support};

use std::time::Duration;

use api_support::{Node, NodeOptions, pattern, setup, setup_with};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LINK};
use reqwest::{Method, StatusCode};
use shoal_protocol::Digest;
use support::fake_upstream::{FakeUpstream, Fault};

const REPO: &str = "library/cached";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn header(resp: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Asserts GET and HEAD of `path` give the manifest's exact bytes and headers.
async fn assert_manifest(node: &Node, path: &str, bytes: &[u8], digest: &Digest, media_type: &str) {
    for method in [Method::HEAD, Method::GET] {
        let resp = node.request(method.clone(), path).await;
        let what = format!("{method} {path}");
        assert_eq!(resp.status(), StatusCode::OK, "{what}");
        assert_eq!(header(&resp, CONTENT_TYPE).as_deref(), Some(media_type), "{what}");
        assert_eq!(header(&resp, "docker-content-digest"), Some(digest.to_string()), "{what}");
        assert_eq!(header(&resp, CONTENT_LENGTH), Some(bytes.len().to_string()), "{what}");
        let body = resp.bytes().await.unwrap();
        if method == Method::HEAD {
            assert!(body.is_empty(), "{what} has a body");
        } else {
            assert_eq!(&body[..], bytes, "{what}: other bytes than upstream's");
        }
    }
}

#[tokio::test]
async fn manifests_keep_their_exact_bytes_and_headers() {
    let (fake, _image, node) = setup().await;
    let config = fake.put_blob(REPO, b"{}");
    // Odd spacing and key order: a node that re-serialised the JSON would change the digest.
    let bytes = format!(
        "{{\n   \"schemaVersion\" : 2,\n\t\"mediaType\": \"{DOCKER_MANIFEST}\",\
         \"config\": {{\"size\": 2, \"digest\": \"{config}\", \"mediaType\": \
         \"application/vnd.docker.container.image.v1+json\"}}, \"layers\": [] }}  \n"
    );
    let digest = fake.put_manifest(REPO, Some("v1"), bytes.as_bytes(), DOCKER_MANIFEST);
    let by_tag = format!("/v2/{REPO}/manifests/v1");
    let by_digest = format!("/v2/{REPO}/manifests/{digest}");

    // Cold (HEAD first, so a HEAD miss is covered), then hot from the store.
    for _ in 0..2 {
        assert_manifest(&node, &by_tag, bytes.as_bytes(), &digest, DOCKER_MANIFEST).await;
        assert_manifest(&node, &by_digest, bytes.as_bytes(), &digest, DOCKER_MANIFEST).await;
    }
    // The short name and the `?ns=` form reach the same manifest.
    let short = "/v2/cached/manifests/v1";
    assert_manifest(&node, short, bytes.as_bytes(), &digest, DOCKER_MANIFEST).await;
    let ns = "/v2/library/cached/manifests/v1?ns=docker.io";
    assert_manifest(&node, ns, bytes.as_bytes(), &digest, DOCKER_MANIFEST).await;
    // The tag's fetch stored the manifest under its digest; nothing else went upstream.
    assert_eq!(fake.requests_to(&by_digest), 0);
    assert_eq!(fake.requests_to(&by_tag), 1);
}

#[tokio::test]
async fn sixteen_clients_one_upstream_fetch_of_a_blob() {
    let (fake, image, node) = setup().await;
    let blob = pattern(8 << 20, 11);
    let digest = fake.put_blob(REPO, &blob);
    let url = format!("/v2/{REPO}/blobs/{digest}");
    let pulls = (0..16).map(|_| async {
        let resp = node.get_ok(&url).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, CONTENT_LENGTH), Some(blob.len().to_string()));
        let body = resp.bytes().await.expect("blob body");
        assert!(body[..] == blob[..], "a client got other bytes");
    });
    futures_util::future::join_all(pulls).await;
    assert_eq!(fake.count("GET", &FakeUpstream::blob_path(REPO, &digest)), 1);
    node.assert_stored(&digest).await;
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn sixteen_clients_one_upstream_fetch_of_a_manifest() {
    let (fake, _image, node) = setup().await;
    let pulled = fake.put_image(REPO, "v1", &[b"one layer"]);
    let by_tag = format!("/v2/{REPO}/manifests/v1");
    let by_digest = format!("/v2/{REPO}/manifests/{}", pulled.manifest);
    for path in [&by_tag, &by_digest] {
        let pulls = (0..16).map(|_| async {
            let resp = node.get_ok(path).await;
            assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
            assert_eq!(resp.bytes().await.unwrap(), pulled.manifest_bytes, "GET {path}");
        });
        futures_util::future::join_all(pulls).await;
    }
    assert_eq!(fake.count("GET", &by_tag), 1);
    assert_eq!(fake.count("HEAD", &by_tag), 0, "a tag never seen needs no HEAD");
    // The tag's GET stored the manifest under its digest.
    assert_eq!(fake.requests_to(&by_digest), 0);
}

/// The tags of a `tags/list` body.
fn tags_of(body: &[u8]) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_slice(body).expect("tags/list JSON");
    serde_json::from_value(json["tags"].clone()).expect("a list of tags")
}

#[tokio::test]
async fn tags_list_pages_pass_through_with_links_on_the_node() {
    let (fake, image, node) = setup().await;
    for tag in ["a", "b", "c", "d", "e"] {
        fake.put_image(REPO, tag, &[tag.as_bytes()]);
    }
    // Whole list: the upstream's body as it sent it.
    let resp = node.get_ok(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get(LINK).is_none());
    let body = resp.bytes().await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["name"], REPO);
    assert_eq!(tags_of(&body), ["a", "b", "c", "d", "e"]);

    // Paged, under each spelling of the name: the link stays on the node, in that spelling.
    for (first, rest) in [
        (format!("/v2/{REPO}/tags/list?n=2"), String::new()),
        ("/v2/cached/tags/list?n=2".to_owned(), String::new()),
        (format!("/v2/{REPO}/tags/list?n=2&ns=docker.io"), "&ns=docker.io".to_owned()),
    ] {
        let mut path = first.clone();
        let mut seen = Vec::new();
        for _ in 0..5 {
            let resp = node.get_ok(&path).await;
            assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
            let link = header(&resp, LINK);
            seen.extend(tags_of(&resp.bytes().await.unwrap()));
            let Some(link) = link else { break };
            let target = link.trim_start_matches('<').split('>').next().unwrap_or_default();
            let client_name = first.split("/tags/list").next().unwrap_or_default();
            assert!(target.starts_with(&format!("{client_name}/tags/list?")), "{link}");
            assert!(target.ends_with(&rest), "{link} lost the ns parameter");
            assert!(link.ends_with("rel=\"next\""), "{link}");
            path = target.to_owned();
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e"], "paging from {first}");
    }
    // `last` alone is passed through too.
    let resp = node.get_ok(&format!("/v2/{REPO}/tags/list?last=c")).await;
    assert_eq!(tags_of(&resp.bytes().await.unwrap()), ["d", "e"]);
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn tags_list_falls_back_to_seen_tags_when_the_upstream_is_down() {
    let options = NodeOptions { retries: Some(0), ..Default::default() };
    let (fake, image, node) = setup_with(options).await;
    for tag in ["v1", "v2", "v3"] {
        fake.put_image(REPO, tag, &[tag.as_bytes()]);
    }
    for tag in ["v1", "v3"] {
        let resp = node.get_ok(&format!("/v2/{REPO}/manifests/{tag}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let tags = FakeUpstream::tags_path(REPO);
    fake.set_fault(&tags, Fault::Status(503));

    let resp = node.get_ok(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.bytes().await.unwrap();
    assert_eq!(tags_of(&body), ["v1", "v3"], "the node lists the tags it has seen");
    let resp = node.get_ok(&format!("/v2/{REPO}/tags/list?n=1")).await;
    let link = header(&resp, LINK).expect("a next link while paging cached tags");
    assert!(link.starts_with(&format!("</v2/{REPO}/tags/list?")), "{link}");
    assert_eq!(tags_of(&resp.bytes().await.unwrap()), ["v1"]);
    assert!(fake.count("GET", &tags) >= 2, "the node asked the upstream first");

    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn tags_are_revalidated_with_one_head_per_ttl() {
    // A TTL no slow machine outlives by accident; the test moves the node's clock past it.
    let options =
        NodeOptions { tag_ttl: Some("1m".into()), retries: Some(0), ..Default::default() };
    let (fake, _image, node) = setup_with(options).await;
    let past_ttl = || node.clock.advance(Duration::from_secs(61));
    let first = fake.put_image(REPO, "v1", &[b"first"]);
    let tag = FakeUpstream::manifest_path(REPO, "v1");
    let by_digest = |d: &Digest| FakeUpstream::manifest_path(REPO, &d.to_string());
    let pull = || async {
        let resp = node.get_ok(&tag).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.bytes().await.unwrap()
    };
    let counts = || (fake.count("GET", &tag), fake.count("HEAD", &tag));

    assert_eq!(pull().await, first.manifest_bytes);
    assert_eq!(counts(), (1, 0));
    // Within the TTL: no upstream request at all.
    assert_eq!(pull().await, first.manifest_bytes);
    assert_eq!(counts(), (1, 0));

    // After it, unchanged: one HEAD, no GET.
    past_ttl();
    assert_eq!(pull().await, first.manifest_bytes);
    assert_eq!(counts(), (1, 1));
    assert_eq!(fake.count("GET", &by_digest(&first.manifest)), 0);
    // And the HEAD restarted the TTL.
    assert_eq!(pull().await, first.manifest_bytes);
    assert_eq!(counts(), (1, 1));

    // The tag moves upstream: after the TTL the node serves the new manifest.
    let second = fake.put_image(REPO, "v1", &[b"second"]);
    assert_ne!(second.manifest, first.manifest);
    assert_eq!(pull().await, first.manifest_bytes, "within the TTL the old digest stands");
    past_ttl();
    assert_eq!(pull().await, second.manifest_bytes);
    assert_eq!(counts().1, 2);
    assert_eq!(fake.count("GET", &by_digest(&second.manifest)), 1);

    // Upstream down after the TTL: the last known digest is served (stale-if-error).
    fake.set_fault(&tag, Fault::Status(503));
    past_ttl();
    assert_eq!(pull().await, second.manifest_bytes);
    assert_eq!(counts().1, 3);
}

/// The status report of `node`, once `check` holds for it (a body's bookkeeping ends just
/// after its client has read the last byte).
async fn status_when(
    node: &Node,
    check: impl Fn(&shoal::status::StatusReport) -> bool,
) -> shoal::status::StatusReport {
    let mut last = None;
    for _ in 0..100 {
        let resp = node.get_ok("/_shoal/status").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let report: shoal::status::StatusReport = resp.json().await.expect("a status report");
        if check(&report) {
            return report;
        }
        last = Some(report);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the status report never got there: {last:#?}");
}

#[tokio::test]
async fn status_counts_bytes_by_source_and_the_hit_ratio() {
    let key = api_support::TestKey::new();
    let (fake, _image, node) = setup_with(key.options()).await;
    let report = status_when(&node, |_| true).await;
    assert_eq!(report.served.hit_ratio, None);
    assert_eq!((report.store.bytes, report.store.blobs), (0, 0));
    assert_eq!(report.members.len(), 1, "a node alone is its only member: {report:?}");
    assert!(report.members[0].local && report.members[0].reachable);
    assert_eq!(report.node.peer_id.as_deref(), Some(report.members[0].peer_id.as_str()));

    let blob = pattern(300_000, 4);
    let digest = fake.put_blob(REPO, &blob);
    let url = format!("/v2/{REPO}/blobs/{digest}");
    let size = blob.len() as u64;
    assert_eq!(node.get_ok(&url).await.bytes().await.expect("first pull").len() as u64, size);
    node.assert_stored(&digest).await;
    let report = status_when(&node, |r| r.served.upstream_bytes == size).await;
    assert_eq!((report.served.local_bytes, report.served.peer_bytes), (0, 0));
    assert_eq!(report.served.hit_ratio, Some(0.0));
    assert_eq!(report.served.upstream_bytes_saved, 0);
    assert_eq!((report.store.bytes, report.store.blobs), (size, 1));
    assert!(report.downloads.is_empty(), "{:?}", report.downloads);

    assert_eq!(node.get_ok(&url).await.bytes().await.expect("second pull").len() as u64, size);
    let report = status_when(&node, |r| r.served.local_bytes == size).await;
    assert_eq!(report.served.upstream_bytes, size);
    assert_eq!(report.served.hit_ratio, Some(0.5));
    assert_eq!(report.served.upstream_bytes_saved, size);
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let metrics = node.get_ok("/metrics").await.text().await.expect("metrics");
    for (series, want) in [
        (r#"shoal_served_bytes_total{source="upstream"}"#, size),
        (r#"shoal_served_bytes_total{source="local"}"#, size),
        (r#"shoal_upstream_requests_total{registry="docker.io",kind="blob",outcome="ok"}"#, 1),
        (r#"shoal_repository_blob_requests_total{repository="other",source="local"}"#, 1),
        (r#"shoal_http_requests_total{endpoint="blob",status="2xx"}"#, 2),
        ("shoal_store_bytes", size),
        ("shoal_store_blobs", 1),
        ("shoal_miss_first_byte_seconds_count", 1),
    ] {
        let got = metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
        assert_eq!(got, Some(want.to_string().as_str()), "{series} in\n{metrics}");
    }
}

#[tokio::test]
async fn status_lists_failed_requests() {
    let (fake, _image, node) = setup().await;
    let blob = pattern(10_000, 2);
    let digest = fake.put_blob(REPO, &blob);
    fake.set_fault(&FakeUpstream::blob_path(REPO, &digest), Fault::Status(503));
    let resp = node.get_ok(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    let report = status_when(&node, |r| !r.errors.is_empty()).await;
    let error = &report.errors[0];
    assert!(error.status >= 500, "{error:?}");
    assert_eq!(error.what, format!("GET blob docker.io/{REPO}@{digest}"));
}

#[tokio::test]
async fn head_of_an_uncached_blob_asks_the_upstream_and_downloads_nothing() {
    let (fake, _image, node) = api_support::setup().await;
    let bytes = pattern(300_000, 9);
    let digest = fake.put_blob(REPO, &bytes);
    let path = format!("/v2/{REPO}/blobs/{digest}");
    let upstream_path = FakeUpstream::blob_path(REPO, &digest);

    let resp = node.request(Method::HEAD, &path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_LENGTH), Some(bytes.len().to_string()));
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.to_string()));
    assert_eq!(fake.count("HEAD", &upstream_path), 1, "asked with a HEAD");
    assert_eq!(fake.count("GET", &upstream_path), 0, "and not downloaded");

    // A range is answered as a GET would answer it.
    let resp = node
        .client
        .head(format!("{}{path}", node.url))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, CONTENT_LENGTH).as_deref(), Some("10"));

    // One the upstream does not have is unknown, and nothing is fetched for it either.
    let absent = Digest::of(b"not pushed anywhere");
    let resp = node.request(Method::HEAD, &format!("/v2/{REPO}/blobs/{absent}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(fake.count("GET", &FakeUpstream::blob_path(REPO, &absent)), 0);

    // Once the blob is held, a HEAD is answered from the store.
    let resp = node.request(Method::GET, &path).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let heads = fake.count("HEAD", &upstream_path);
    assert_eq!(node.request(Method::HEAD, &path).await.status(), StatusCode::OK);
    assert_eq!(fake.count("HEAD", &upstream_path), heads, "no upstream request for a hit");
}
