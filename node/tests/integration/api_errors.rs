//! The node's answers to requests it must refuse: malformed names, tags and digests, path
//! traversal, push, unknown registries, manifests and blobs, oversized requests, an upstream
//! that refuses the node, a failing store. Each asserts the status and the OCI error code,
//! then that the node still serves a good pull.

use crate::{api_support, support};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use api_support::{
    HEALTH_REPO, Node, NodeOptions, assert_oci_error, fake_with_health, raw_get, raw_request,
    raw_request_with, setup,
};
use reqwest::{Method, StatusCode};
use shoal_protocol::Digest;
use support::fake_upstream::Fault;

const EMPTY_SHA256: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[tokio::test]
async fn base_answers_with_the_api_version() {
    let (fake, image, node) = setup().await;
    for method in [Method::GET, Method::HEAD] {
        let resp = node.request(method.clone(), "/v2/").await;
        assert_eq!(resp.status(), StatusCode::OK, "{method} /v2/");
        let version = resp.headers().get("docker-distribution-api-version");
        assert_eq!(version.and_then(|v| v.to_str().ok()), Some("registry/2.0"), "{method}");
    }
    // Error responses say it too: Docker checks the header on whatever it gets.
    let resp = node.get_ok("/v2/library/nothing/manifests/v1").await;
    assert!(resp.headers().contains_key("docker-distribution-api-version"));
    node.assert_serves(&fake, &image).await;
}

/// Every file under `dir` except those under `skip`.
fn files_outside(dir: &Path, skip: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.starts_with(skip) {
            continue;
        }
        if path.is_dir() {
            files_outside(&path, skip, out);
        }
        out.insert(path);
    }
}

#[tokio::test]
async fn malformed_names_and_traversal_are_name_invalid() {
    let outer = tempfile::tempdir().unwrap();
    let data_dir = outer.path().join("data");
    std::fs::write(outer.path().join("neighbour"), b"outside the data dir").unwrap();
    let (fake, image) = fake_with_health().await;
    let options = NodeOptions { data_dir: Some(data_dir.clone()), ..Default::default() };
    let node = Node::start(&fake.url(), options).await;
    let mut before = BTreeSet::new();
    files_outside(outer.path(), &data_dir, &mut before);

    let blob = format!("blobs/{EMPTY_SHA256}");
    let paths = [
        "/v2/a/../../escape/manifests/v1".to_owned(),
        "/v2/%2e%2e/escape/manifests/v1".to_owned(),
        "/v2/%2E%2E/%2e%2e/escape/manifests/v1".to_owned(),
        "/v2/a%2f..%2f..%2fescape/manifests/v1".to_owned(),
        "/v2/..%2f..%2fescape/tags/list".to_owned(),
        format!("/v2/../../escape/{blob}"),
        format!("/v2/%2e%2e/%2e%2e/escape/{blob}"),
        format!("/v2/localhost/../escape/{blob}"),
        "/v2/UPPER/manifests/v1".to_owned(),
        "/v2/-lead/manifests/v1".to_owned(),
        "/v2/trail-/manifests/v1".to_owned(),
        "/v2/a//b/manifests/v1".to_owned(),
        "/v2//manifests/v1".to_owned(),
        "/v2/sp%20ace/manifests/v1".to_owned(),
        "/v2/a..b/manifests/v1".to_owned(),
        format!("/v2/{}/manifests/v1", "a".repeat(300)),
    ];
    for path in &paths {
        let resp = raw_get(&node, path).await;
        assert_eq!((resp.status, resp.oci_code().as_str()), (400, "NAME_INVALID"), "GET {path}");
    }

    let mut after = BTreeSet::new();
    files_outside(outer.path(), &data_dir, &mut after);
    assert_eq!(before, after, "requests created or removed files outside the data dir");
    assert!(!outer.path().join("escape").exists());
    node.assert_serves(&fake, &image).await;
}

/// `..` and `.` as the first component hold a dot, so Docker's rule alone would take them for
/// a registry host; they must be refused as names, not looked up as unknown registries.
#[tokio::test]
async fn dot_components_in_the_registry_position_are_name_invalid() {
    let (fake, image, node) = setup().await;
    for path in [
        "/v2/../escape/manifests/v1".to_owned(),
        "/v2/./escape/manifests/v1".to_owned(),
        "/v2/.../escape/tags/list".to_owned(),
        format!("/v2/../escape/blobs/{EMPTY_SHA256}"),
        "/v2/../escape/manifests/v1?ns=docker.io".to_owned(),
    ] {
        let resp = raw_get(&node, &path).await;
        assert_eq!((resp.status, resp.oci_code().as_str()), (400, "NAME_INVALID"), "GET {path}");
    }
    node.assert_serves(&fake, &image).await;
}

/// A reference that is neither a tag nor a digest names no manifest: 404, as distribution
/// answers, and nothing is asked of the upstream.
#[tokio::test]
async fn malformed_tags_are_manifest_unknown() {
    let (fake, image, node) = setup().await;
    let long = "t".repeat(129);
    for tag in ["..", "%2e%2e", ".hidden", "-lead", "a%2fb", "bad$tag", "sp%20ace", &long] {
        let path = format!("/v2/{HEALTH_REPO}/manifests/{tag}");
        let resp = raw_get(&node, &path).await;
        let got = (resp.status, resp.oci_code());
        assert_eq!((got.0, got.1.as_str()), (404, "MANIFEST_UNKNOWN"), "GET {path}");
        assert_eq!(fake.requests_to(&path), 0, "GET {path} reached the upstream");
    }
    // The longest legal tag is fine: it is refused by the upstream, not by the grammar.
    let resp = node.get_ok(&format!("/v2/{HEALTH_REPO}/manifests/{}", "t".repeat(128))).await;
    assert_oci_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    node.assert_serves(&fake, &image).await;
}

/// Digests a registry must refuse: other algorithms, other lengths, other cases.
fn bad_digests() -> Vec<String> {
    let hex = &EMPTY_SHA256["sha256:".len()..];
    vec![
        format!("md5:{}", &hex[..32]),
        format!("sha512:{hex}"),
        format!("sha256:{}", &hex[..63]),
        format!("sha256:{hex}0"),
        format!("sha256:{}", hex.to_ascii_uppercase()),
        "sha256:".to_owned(),
        format!("sha256:{}g", &hex[..63]),
        format!("SHA256:{hex}"),
        format!("sha256{hex}"),
    ]
}

#[tokio::test]
async fn bad_blob_digests_are_digest_invalid() {
    let (fake, image, node) = setup().await;
    for digest in bad_digests() {
        let path = format!("/v2/{HEALTH_REPO}/blobs/{digest}");
        let resp = raw_get(&node, &path).await;
        assert_eq!((resp.status, resp.oci_code().as_str()), (400, "DIGEST_INVALID"), "GET {path}");
    }
    // A valid sha512 digest that no content here or in the fleet is known by: unknown, not
    // invalid, and no reason to ask the upstream (which is asked by sha256 only).
    let hex = &EMPTY_SHA256["sha256:".len()..];
    let path = format!("/v2/{HEALTH_REPO}/blobs/sha512:{hex}{hex}");
    let resp = raw_get(&node, &path).await;
    assert_eq!((resp.status, resp.oci_code().as_str()), (404, "BLOB_UNKNOWN"), "GET {path}");
    assert_eq!(fake.requests_to(&path), 0, "GET {path} reached the upstream");
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn bad_manifest_digests_are_manifest_unknown() {
    let (fake, image, node) = setup().await;
    // Only the forms that are digests by their `:`; `sha256<hex>` is a (legal) tag.
    for digest in bad_digests().iter().filter(|d| d.contains(':')) {
        let path = format!("/v2/{HEALTH_REPO}/manifests/{digest}");
        let resp = raw_get(&node, &path).await;
        let got = (resp.status, resp.oci_code());
        assert_eq!((got.0, got.1.as_str()), (404, "MANIFEST_UNKNOWN"), "GET {path}");
    }
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn writes_need_a_rule_that_allows_push() {
    let (fake, image, node) = setup().await;
    let manifest = format!("/v2/{HEALTH_REPO}/manifests/v1");
    let blob = format!("/v2/{HEALTH_REPO}/blobs/{}", image.layers[0]);
    let uploads = format!("/v2/{HEALTH_REPO}/blobs/uploads/");
    let upload = format!("/v2/{HEALTH_REPO}/blobs/uploads/3f1c0a9e");
    // The default rules let anyone pull and nobody push: every write is refused before it
    // touches the store, and says so with the registry's own error code.
    let refused = [
        (Method::POST, uploads.clone()),
        (Method::PATCH, upload.clone()),
        (Method::PUT, format!("{upload}?digest={EMPTY_SHA256}")),
        (Method::DELETE, upload),
        (Method::PUT, manifest.clone()),
        (Method::DELETE, manifest.clone()),
        (Method::DELETE, blob.clone()),
        (Method::POST, blob),
        (Method::PATCH, manifest),
    ];
    for (method, path) in refused {
        let resp = node.request(method.clone(), &path).await;
        assert_oci_error(resp, StatusCode::FORBIDDEN, "DENIED").await;
    }
    // A read of no resource is refused as unsupported, whoever asks.
    let resp = node.request(Method::GET, &uploads).await;
    assert_oci_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    // Nothing of that reached the upstream, and reads still work.
    assert_eq!(fake.requests_to(&format!("/v2/{HEALTH_REPO}/blobs/uploads/")), 0);
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn unknown_registry_is_name_unknown() {
    let (fake, image, node) = setup().await;
    for path in [
        "/v2/unknown.example/app/manifests/v1".to_owned(),
        "/v2/unknown.example:5000/app/tags/list".to_owned(),
        format!("/v2/unknown.example/app/blobs/{EMPTY_SHA256}"),
        "/v2/app/manifests/v1?ns=unknown.example".to_owned(),
    ] {
        let resp = node.get_ok(&path).await;
        assert_oci_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    }
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn unknown_manifests_and_blobs() {
    let (fake, image, node) = setup().await;
    let missing = Digest::of(b"never pushed anywhere");
    let cases = [
        (format!("/v2/{HEALTH_REPO}/manifests/v2"), "MANIFEST_UNKNOWN"),
        (format!("/v2/{HEALTH_REPO}/manifests/{missing}"), "MANIFEST_UNKNOWN"),
        ("/v2/library/absent/manifests/v1".to_owned(), "MANIFEST_UNKNOWN"),
        (format!("/v2/{HEALTH_REPO}/blobs/{missing}"), "BLOB_UNKNOWN"),
        (format!("/v2/library/absent/blobs/{missing}"), "BLOB_UNKNOWN"),
    ];
    for (path, code) in &cases {
        let resp = node.get_ok(path).await;
        assert_oci_error(resp, StatusCode::NOT_FOUND, code).await;
        // HEAD has no body to carry the code, but the status must agree.
        let resp = node.request(Method::HEAD, path).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "HEAD {path}");
    }
    // An unknown blob is not remembered as missing: once upstream has it, it is served.
    let appeared = fake.put_blob(HEALTH_REPO, b"never pushed anywhere");
    assert_eq!(appeared, missing);
    let resp = node.get_ok(&format!("/v2/{HEALTH_REPO}/blobs/{missing}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&resp.bytes().await.unwrap()[..], b"never pushed anywhere");
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn other_paths_are_not_found() {
    let (fake, image, node) = setup().await;
    let resp = raw_request(&node, "GET", "/v3/").await;
    assert_eq!((resp.status, resp.oci_code().as_str()), (404, "NOT_FOUND"));
    let resp = raw_request(&node, "GET", &format!("/v2/{HEALTH_REPO}/wat/v1")).await;
    assert_eq!((resp.status, resp.oci_code().as_str()), (404, "NOT_FOUND"));
    node.assert_serves(&fake, &image).await;
}

/// An upstream that refuses the node (401 or 403, with or without a challenge) is the
/// operator's to fix: the client gets 403 `DENIED`, never a 401 without a `WWW-Authenticate`
/// it could answer.
#[tokio::test]
async fn upstream_refusals_are_denied() {
    let (fake, image, node) = setup().await;
    let pulled = fake.put_image("library/private", "v1", &[b"a private layer"]);
    let manifest = "/v2/library/private/manifests/v1".to_owned();
    let blob = format!("/v2/library/private/blobs/{}", pulled.layers[0]);
    for status in [401, 403] {
        for path in [&manifest, &blob] {
            fake.set_fault(path, Fault::Status(status));
            let resp = node.get_ok(path).await;
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "upstream {status} for {path}");
            assert!(!resp.headers().contains_key("www-authenticate"));
            assert_oci_error(resp, StatusCode::FORBIDDEN, "DENIED").await;
        }
    }
    node.assert_serves(&fake, &image).await;
}

/// Requests too large to serve get 414 and 431 with OCI bodies that say so.
#[tokio::test]
async fn oversized_requests_are_answered_with_oci_bodies() {
    let (fake, image, node) = setup().await;
    let long_name = format!("/v2/{}/manifests/v1", "a/".repeat(5000));
    let resp = raw_get(&node, &long_name).await;
    assert_eq!((resp.status, resp.oci_code().as_str()), (414, "NAME_INVALID"));

    let path = format!("/v2/{HEALTH_REPO}/manifests/v1");
    let many: String = (0..80).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "b".repeat(40 * 1024));
    for headers in [many, big] {
        let resp = raw_request_with(&node, "GET", &path, &headers).await;
        assert_eq!((resp.status, resp.oci_code().as_str()), (431, "UNSUPPORTED"));
        let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert!(json["errors"][0]["message"].as_str().is_some_and(|m| m.contains("headers")));
    }
    node.assert_serves(&fake, &image).await;
}

/// A store that fails says so without showing where the node keeps its files.
#[tokio::test]
async fn store_failures_show_no_file_paths() {
    let (fake, image) = fake_with_health().await;
    let node = Node::start(&fake.url(), NodeOptions::default()).await;
    let pulled = fake.put_image("library/app", "v1", &[b"a layer the store cannot take"]);
    // Downloads write to tmp/ first: make it a file, and every miss fails in the store.
    let tmp = node.data_dir.join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();

    let data_dir = node.data_dir.display().to_string();
    for path in [
        format!("/v2/library/app/blobs/{}", pulled.layers[0]),
        format!("/v2/library/app/blobs/{}", pulled.config),
    ] {
        let resp = raw_get(&node, &path).await;
        assert_eq!((resp.status, resp.oci_code().as_str()), (500, "UNKNOWN"), "GET {path}");
        let body = String::from_utf8_lossy(&resp.body);
        assert!(!body.contains(&data_dir) && !body.contains("/tmp"), "GET {path}: {body}");
    }

    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    node.assert_serves(&fake, &image).await;
}

#[tokio::test]
async fn registries_clients_name_must_be_at_public_addresses() {
    let options = NodeOptions { allow_any_upstream: true, ..NodeOptions::default() };
    let (_fake, _image, node) = api_support::setup_with(options).await;
    // A literal address: refused before any connection, whatever the path asks for.
    for path in [
        "/v2/10.0.0.7:8080/app/manifests/v1",
        "/v2/169.254.169.254/latest/manifests/v1",
        "/v2/192.168.1.1:5000/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let resp = node.get(path).await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(body.contains("DENIED") && body.contains("public address"), "{path}: {body}");
    }
    // A name that resolves only to loopback: refused where the connection is made.
    let resp = node.get("/v2/localhost:1/app/manifests/v1").await.unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("resolves only to addresses that are not public (127.0.0.1)"), "{body}");

    // The operator may allow them: then the address is tried (and nothing listens there).
    let open = NodeOptions {
        allow_any_upstream: true,
        allow_private_upstreams: true,
        ..NodeOptions::default()
    };
    let (_fake, _image, node) = api_support::setup_with(open).await;
    let resp = node.get("/v2/127.0.0.1:1/app/manifests/v1").await.unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_ne!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!body.contains("public"), "{body}");
}
