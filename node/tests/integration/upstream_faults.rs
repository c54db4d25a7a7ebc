//! The upstream client against a misbehaving registry: retries, 429, timeouts, truncated and
//! stalled bodies, wrong bytes, HTML, oversized manifests, an unreachable host.

use crate::support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use shoal::upstream::{BlobStream, ClientSettings, Upstream, UpstreamConfig, UpstreamError};
use shoal_protocol::media_type::{MAX_MANIFEST_SIZE, OCI_MANIFEST};
use shoal_protocol::{Digest, Reference, RepositoryName};
use support::fake_upstream::{FakeUpstream, Fault};

const READ_TIMEOUT: Duration = Duration::from_millis(300);

fn client_for(url: String, retries: u32) -> Upstream {
    let config = UpstreamConfig { name: "fake.io".into(), url, ..Default::default() };
    let settings = ClientSettings {
        connect_timeout: Duration::from_secs(1),
        read_timeout: READ_TIMEOUT,
        retries,
        ..ClientSettings::default()
    };
    Upstream::new(config, &settings).unwrap()
}

fn client(fake: &FakeUpstream, retries: u32) -> Upstream {
    client_for(fake.url(), retries)
}

fn repo() -> RepositoryName {
    RepositoryName::parse("library/app").unwrap()
}

fn tag(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn manifest_path() -> String {
    FakeUpstream::manifest_path("library/app", "v1")
}

/// The chunks until the first error; the error, or `None` when the stream ended cleanly.
async fn drain(blob: BlobStream) -> (Vec<u8>, Option<UpstreamError>) {
    let mut got = Vec::new();
    let mut stream = blob.stream;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => got.extend_from_slice(&bytes),
            Err(e) => {
                assert!(stream.next().await.is_none(), "the stream ends after an error");
                return (got, Some(e));
            }
        }
    }
    (got, None)
}

async fn fake_with_image() -> FakeUpstream {
    let fake = FakeUpstream::builder().start().await;
    fake.put_image("library/app", "v1", &[b"layer"]);
    fake
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let fake = fake_with_image().await;
    fake.set_fault(&manifest_path(), Fault::ServerError { times: 2 });
    client(&fake, 3).get_manifest(&repo(), &tag("v1")).await.unwrap();
    assert_eq!(fake.count("GET", &manifest_path()), 3);
}

#[tokio::test]
async fn persistent_server_errors_give_up_as_unavailable() {
    let fake = fake_with_image().await;
    fake.set_fault(&manifest_path(), Fault::ServerError { times: 100 });
    let err = client(&fake, 2).head_manifest(&repo(), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unavailable { .. }), "{err:?}");
    assert!(err.is_unavailable());
    assert_eq!(fake.count("HEAD", &manifest_path()), 3, "the first try and two retries");
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    let fake = fake_with_image().await;
    let up = client(&fake, 3);
    fake.set_fault(&manifest_path(), Fault::Status(400));
    let err = up.get_manifest(&repo(), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::BadResponse { .. }), "{err:?}");
    fake.set_fault(&manifest_path(), Fault::Status(403));
    let err = up.get_manifest(&repo(), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unauthorized { .. }), "{err:?}");
    assert_eq!(fake.count("GET", &manifest_path()), 2);
}

#[tokio::test]
async fn rate_limits_surface_with_retry_after() {
    let fake = fake_with_image().await;
    fake.set_fault(&manifest_path(), Fault::TooManyRequests { retry_after_secs: 30 });
    let err = client(&fake, 3).get_manifest(&repo(), &tag("v1")).await.unwrap_err();
    match err {
        UpstreamError::TooManyRequests { registry, retry_after } => {
            assert_eq!(registry, "fake.io");
            assert_eq!(retry_after, Some(Duration::from_secs(30)));
        }
        other => panic!("expected TooManyRequests, got {other:?}"),
    }
    assert_eq!(fake.count("GET", &manifest_path()), 1);
}

#[tokio::test]
async fn an_absurd_retry_after_is_bounded() {
    let fake = fake_with_image().await;
    fake.set_fault(&manifest_path(), Fault::TooManyRequests { retry_after_secs: u64::MAX });
    let err = client(&fake, 3).get_manifest(&repo(), &tag("v1")).await.unwrap_err();
    let UpstreamError::TooManyRequests { retry_after, .. } = err else {
        panic!("expected TooManyRequests, got {err:?}");
    };
    assert_eq!(retry_after, Some(Duration::from_secs(3600)));
}

#[tokio::test]
async fn unreachable_upstream_is_unavailable_after_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = client_for(format!("http://{addr}"), 1)
        .head_manifest(&repo(), &tag("v1"))
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn a_hanging_upstream_times_out() {
    let fake = fake_with_image().await;
    fake.set_fault(&manifest_path(), Fault::Hang);
    let started = Instant::now();
    let err = client(&fake, 3).head_manifest(&repo(), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err:?}");
    assert!(err.is_unavailable());
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(fake.count("HEAD", &manifest_path()), 1, "a timeout is not retried");
}

#[tokio::test]
async fn truncated_blob_fails_with_the_resume_position() {
    let fake = FakeUpstream::builder().start().await;
    let data = vec![7u8; 10_000];
    let digest = fake.put_blob("library/app", &data);
    let path = FakeUpstream::blob_path("library/app", &digest);
    fake.set_fault(&path, Fault::Truncate { after: 4_000 });
    let up = client(&fake, 1);

    let (got, err) = drain(up.get_blob(&repo(), &digest, 0).await.unwrap()).await;
    assert_eq!(got.len(), 4_000);
    assert!(
        matches!(err, Some(UpstreamError::Truncated { expected: 10_000, got: 4_000 })),
        "{err:?}"
    );

    // Resuming from an offset reports blob positions, not body positions.
    let (got, err) = drain(up.get_blob(&repo(), &digest, 5_000).await.unwrap()).await;
    assert_eq!(got.len(), 4_000);
    assert!(
        matches!(err, Some(UpstreamError::Truncated { expected: 10_000, got: 9_000 })),
        "{err:?}"
    );
}

#[tokio::test]
async fn stalled_blob_times_out() {
    let fake = FakeUpstream::builder().start().await;
    let digest = fake.put_blob("library/app", &[1u8; 5_000]);
    fake.set_fault(&FakeUpstream::blob_path("library/app", &digest), Fault::Stall { after: 1_000 });
    let started = Instant::now();
    let (got, err) = drain(client(&fake, 1).get_blob(&repo(), &digest, 0).await.unwrap()).await;
    assert_eq!(got.len(), 1_000);
    assert!(matches!(err, Some(UpstreamError::Timeout { .. })), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn wrong_blob_bytes_pass_through_for_the_caller_to_catch() {
    let fake = FakeUpstream::builder().start().await;
    let data = b"the real layer bytes".to_vec();
    let digest = fake.put_blob("library/app", &data);
    fake.set_fault(&FakeUpstream::blob_path("library/app", &digest), Fault::WrongBytes);
    let (got, err) = drain(client(&fake, 1).get_blob(&repo(), &digest, 0).await.unwrap()).await;
    assert!(err.is_none());
    assert_eq!(got.len(), data.len());
    let mut verifier = digest.verifier();
    verifier.update(&got);
    assert!(verifier.finish().is_err());
}

#[tokio::test]
async fn manifest_bytes_must_match_the_digests() {
    let fake = fake_with_image().await;
    let real = client(&fake, 1).get_manifest(&repo(), &tag("v1")).await.unwrap();
    let other = Bytes::from_static(br#"{"schemaVersion":2,"layers":[]}"#);
    let up = client(&fake, 1);

    // By digest: the bytes must hash to it.
    let by_digest = FakeUpstream::manifest_path("library/app", &real.digest.to_string());
    fake.set_fault(&by_digest, Fault::Replace(other.clone()));
    let err = up.get_manifest(&repo(), &Reference::Digest(real.digest)).await.unwrap_err();
    assert!(
        matches!(&err, UpstreamError::DigestMismatch(m) if m.expected == real.digest && m.actual == Digest::of(&other)),
        "{err:?}"
    );

    // By tag: the upstream's Docker-Content-Digest must match too.
    fake.set_fault(&manifest_path(), Fault::Replace(other.clone()));
    let err = up.get_manifest(&repo(), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::DigestMismatch(_)), "{err:?}");

    // Without the header, the bytes are what the tag points at.
    fake.set_fault(&manifest_path(), Fault::OmitDigestHeader);
    let ok = up.get_manifest(&repo(), &tag("v1")).await.unwrap();
    assert_eq!(ok.digest, real.digest);
}

#[tokio::test]
async fn html_and_garbage_are_bad_responses() {
    let fake = fake_with_image().await;
    let up = client(&fake, 1);
    fake.set_fault(&manifest_path(), Fault::Html);
    let err = up.get_manifest(&repo(), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::BadResponse { .. }), "{err:?}");
    let err = up.head_manifest(&repo(), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::BadResponse { .. }), "{err:?}");
    fake.set_fault(&FakeUpstream::tags_path("library/app"), Fault::Html);
    let err = up.list_tags(&repo(), None, None).await.unwrap_err();
    assert!(matches!(err, UpstreamError::BadResponse { .. }), "{err:?}");

    fake.set_fault(&manifest_path(), Fault::Replace(Bytes::from_static(b"\x00garbage")));
    let err = up.get_manifest(&repo(), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::BadResponse { .. }), "{err:?}");
    assert!(!err.is_unavailable());
}

#[tokio::test]
async fn oversized_manifests_are_refused_with_or_without_content_length() {
    let fake = FakeUpstream::builder().start().await;
    let padding = "x".repeat(MAX_MANIFEST_SIZE as usize);
    let big = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","pad":"{padding}"}}"#);
    fake.put_manifest("library/app", Some("big"), big.as_bytes(), OCI_MANIFEST);
    let up = client(&fake, 1);
    let err = up.get_manifest(&repo(), &tag("big")).await.unwrap_err();
    assert!(
        matches!(err, UpstreamError::ManifestTooLarge { size } if size == big.len() as u64),
        "{err:?}"
    );

    let path = FakeUpstream::manifest_path("library/app", "big");
    fake.set_fault(&path, Fault::NoContentLength);
    let err = up.get_manifest(&repo(), &tag("big")).await.unwrap_err();
    assert!(
        matches!(err, UpstreamError::ManifestTooLarge { size } if size > MAX_MANIFEST_SIZE),
        "{err:?}"
    );
}
