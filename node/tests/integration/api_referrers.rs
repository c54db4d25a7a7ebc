//! Referrers from an upstream that has the OCI 1.1 referrers API (the real registry in the
//! cluster tests has none, so the fake stands in): listed through the node and merged with
//! what was pushed, asked once per TTL, served stale while the upstream fails, and refused
//! clearly when the answer is not an index or is larger than a manifest may be.

use crate::{api_support, support};

use std::time::Duration;

use api_support::{NodeOptions, setup_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_protocol::Digest;
use support::fake_upstream::{FakeUpstream, Fault};

const REPO: &str = "library/signed";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn index(entries: &[(&Digest, &str)]) -> Vec<u8> {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(d, t)| {
            json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": 10, "artifactType": t})
        })
        .collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))
        .unwrap()
}

fn digests(body: &Value) -> Vec<String> {
    let mut found: Vec<String> = (body["manifests"].as_array().into_iter().flatten())
        .filter_map(|m| m["digest"].as_str().map(str::to_owned))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn an_upstreams_referrers_api_is_asked_once_per_ttl_and_served_stale() {
    let options =
        NodeOptions { tag_ttl: Some("1m".into()), retries: Some(0), ..Default::default() };
    let (fake, _, node) = setup_with(options).await;
    let image = fake.put_image(REPO, "v1", &[b"layer"]);
    let (sig, sbom) = (Digest::of(b"sig"), Digest::of(b"sbom"));
    fake.put_referrers(REPO, &image.manifest, &index(&[(&sig, "x/sig"), (&sbom, "x/sbom")]));
    let path = format!("/v2/{REPO}/referrers/{}", image.manifest);
    let upstream_path = FakeUpstream::referrers_path(REPO, &image.manifest);

    for _ in 0..2 {
        let resp = node.get_ok(&path).await;
        assert!(resp.headers().get("oci-filters-applied").is_none());
        let body: Value = resp.json().await.unwrap();
        let mut want = vec![sig.to_string(), sbom.to_string()];
        want.sort();
        assert_eq!(digests(&body), want);
    }
    assert_eq!(fake.count("GET", &upstream_path), 1, "asked once within the TTL");

    // The node applies the filter and says so; the unfiltered answer it holds serves it.
    let resp = node.get_ok(&format!("{path}?artifactType=x/sbom")).await;
    assert_eq!(resp.headers()["oci-filters-applied"], "artifactType");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(digests(&body), [sbom.to_string()]);
    assert_eq!(fake.count("GET", &upstream_path), 1, "a filter costs no request of its own");

    // Past the TTL with the upstream failing: the last answer.
    node.clock.advance(Duration::from_secs(61));
    fake.set_fault(&upstream_path, Fault::Status(503));
    let body: Value = node.get_ok(&path).await.json().await.unwrap();
    assert_eq!(digests(&body).len(), 2, "{body}");
    assert!(fake.count("GET", &upstream_path) >= 2, "asked again after the TTL");
}

#[tokio::test]
async fn a_bad_or_oversized_referrers_answer_is_a_clear_error() {
    let options = NodeOptions { retries: Some(0), ..Default::default() };
    let (fake, _, node) = setup_with(options).await;
    let image = fake.put_image(REPO, "v1", &[b"layer"]);
    let other = fake.put_image(REPO, "v2", &[b"other layer"]);
    let path = |d: &Digest| format!("/v2/{REPO}/referrers/{d}");

    fake.put_referrers(REPO, &image.manifest, br#"{"schemaVersion":2,"manifests":"no"}"#);
    let resp = node.get(&path(&image.manifest)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let text = resp.text().await.unwrap();
    assert!(text.contains("referrers of") && text.contains("not an image index"), "{text}");

    let huge = format!(r#"{{"manifests":[],"annotations":{{"x":"{}"}}}}"#, "a".repeat(5 << 20));
    fake.put_referrers(REPO, &other.manifest, huge.as_bytes());
    let resp = node.get(&path(&other.manifest)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let text = resp.text().await.unwrap();
    assert!(text.contains("exceeds the limit"), "{text}");

    // A subject the upstream has no referrers for (its API answers 404, and there is no
    // referrers tag): an empty index.
    let none = Digest::of(b"nothing refers to this");
    let body: Value = node.get_ok(&path(&none)).await.json().await.unwrap();
    assert_eq!(body["manifests"], json!([]));
}
