//! The upstream client against a well-behaved fake registry: manifests, blobs, ranges, tags.

use crate::support;

use std::time::Duration;

use futures_util::StreamExt;
use shoal::upstream::{
    BlobStream, ClientSettings, Credentials, Upstream, UpstreamConfig, UpstreamError,
};
use shoal_protocol::media_type::{OCI_INDEX, OCI_MANIFEST};
use shoal_protocol::{Digest, Reference, RepositoryName};
use support::fake_upstream::{FakeUpstream, Fault};

fn client(fake: &FakeUpstream) -> Upstream {
    let config = UpstreamConfig { name: "fake.io".into(), url: fake.url(), ..Default::default() };
    let settings = ClientSettings {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        retries: 1,
        ..ClientSettings::default()
    };
    Upstream::new(config, &settings).unwrap()
}

fn repo(s: &str) -> RepositoryName {
    RepositoryName::parse(s).unwrap()
}

fn tag(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

async fn collect(blob: BlobStream) -> Result<Vec<u8>, UpstreamError> {
    let mut out = Vec::new();
    let mut stream = blob.stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test]
async fn manifests_by_tag_and_digest() {
    let fake = FakeUpstream::builder().start().await;
    let image = fake.put_image("library/app", "v1", &[b"layer"]);
    let up = client(&fake);
    assert_eq!(up.name(), "fake.io");

    let head = up.head_manifest(&repo("library/app"), &tag("v1")).await.unwrap();
    assert_eq!(head.digest, image.manifest);
    assert_eq!(head.media_type, OCI_MANIFEST);
    assert_eq!(head.size, Some(image.manifest_bytes.len() as u64));

    let by_tag = up.get_manifest(&repo("library/app"), &tag("v1")).await.unwrap();
    assert_eq!(by_tag.bytes, image.manifest_bytes);
    assert_eq!(by_tag.digest, image.manifest);
    assert_eq!(by_tag.media_type, OCI_MANIFEST);

    let by_digest = Reference::Digest(image.manifest);
    let again = up.get_manifest(&repo("library/app"), &by_digest).await.unwrap();
    assert_eq!(again, by_tag);
    let accept = fake.count("GET", &FakeUpstream::manifest_path("library/app", "v1"));
    assert_eq!(accept, 1);
}

#[tokio::test]
async fn media_type_is_sniffed_when_the_content_type_says_nothing() {
    let fake = FakeUpstream::builder().start().await;
    let body = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
    fake.put_manifest("org/app", Some("multi"), body.as_bytes(), "application/json");
    let m = client(&fake).get_manifest(&repo("org/app"), &tag("multi")).await.unwrap();
    assert_eq!(m.media_type, OCI_INDEX);
    assert_eq!(m.digest, Digest::of(body.as_bytes()));
}

#[tokio::test]
async fn head_without_digest_header_is_a_bad_response() {
    let fake = FakeUpstream::builder().start().await;
    fake.put_image("library/app", "v1", &[b"layer"]);
    fake.set_fault(&FakeUpstream::manifest_path("library/app", "v1"), Fault::OmitDigestHeader);
    let err = client(&fake).head_manifest(&repo("library/app"), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::BadResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn blobs_whole_and_from_an_offset() {
    let fake = FakeUpstream::builder().start().await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let digest = fake.put_blob("library/app", &data);
    let up = client(&fake);
    let r = repo("library/app");

    let whole = up.get_blob(&r, &digest, 0).await.unwrap();
    assert_eq!(whole.size, Some(data.len() as u64));
    assert_eq!(collect(whole).await.unwrap(), data);

    let tail = up.get_blob(&r, &digest, 150_001).await.unwrap();
    assert_eq!(tail.size, Some(data.len() as u64));
    assert_eq!(collect(tail).await.unwrap(), &data[150_001..]);

    // An upstream that ignores `Range` sends everything; the client drops what came before.
    fake.set_fault(&FakeUpstream::blob_path("library/app", &digest), Fault::IgnoreRange);
    let ignored = up.get_blob(&r, &digest, 70_000).await.unwrap();
    assert_eq!(ignored.size, Some(data.len() as u64));
    assert_eq!(collect(ignored).await.unwrap(), &data[70_000..]);

    fake.set_fault(&FakeUpstream::blob_path("library/app", &digest), Fault::NoContentLength);
    let unsized_blob = up.get_blob(&r, &digest, 0).await.unwrap();
    assert_eq!(unsized_blob.size, None);
    assert_eq!(collect(unsized_blob).await.unwrap(), data);
}

#[tokio::test]
async fn missing_things_are_not_found() {
    let fake = FakeUpstream::builder().start().await;
    fake.put_image("library/app", "v1", &[b"layer"]);
    let up = client(&fake);
    let err = up.get_manifest(&repo("library/app"), &tag("v2")).await.unwrap_err();
    assert!(matches!(&err, UpstreamError::NotFound { what } if what.contains("v2")), "{err:?}");
    let err = up.head_manifest(&repo("library/other"), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::NotFound { .. }), "{err:?}");
    let err = up.get_blob(&repo("library/app"), &Digest::of(b"nope"), 0).await.unwrap_err();
    assert!(matches!(err, UpstreamError::NotFound { .. }), "{err:?}");
    assert!(!err.is_unavailable());
}

#[tokio::test]
async fn tag_lists_page_with_link() {
    let fake = FakeUpstream::builder().start().await;
    for t in ["a", "b", "c"] {
        fake.put_image("org/app", t, &[t.as_bytes()]);
    }
    let up = client(&fake);
    let first = up.list_tags(&repo("org/app"), Some(2), None).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(json["tags"], serde_json::json!(["a", "b"]));
    let link = first.link.expect("a Link to the next page");
    assert!(link.contains("last=b") && link.contains("rel=\"next\""), "{link}");

    let rest = up.list_tags(&repo("org/app"), Some(2), Some("b")).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&rest.body).unwrap();
    assert_eq!(json["tags"], serde_json::json!(["c"]));
    assert_eq!(rest.link, None);
}

#[tokio::test]
async fn bad_urls_are_config_errors_and_debug_hides_credentials() {
    let settings = ClientSettings::default();
    for url in ["not a url", "ftp://x.io", "http://"] {
        let config = UpstreamConfig { name: "x".into(), url: url.into(), ..Default::default() };
        let err = Upstream::new(config, &settings).unwrap_err();
        assert!(matches!(err, UpstreamError::Config { .. }), "{url}: {err:?}");
    }
    let credentials = Credentials::Basic { username: "alice".into(), password: "hunter2".into() };
    let config = UpstreamConfig {
        name: "x.io".into(),
        url: "https://x.io/prefix".into(),
        credentials: Some(credentials),
        ..Default::default()
    };
    let up = Upstream::new(config, &settings).unwrap();
    let shown = format!("{up:?}");
    assert!(shown.contains("x.io") && !shown.contains("hunter2") && !shown.contains("alice"));
}
