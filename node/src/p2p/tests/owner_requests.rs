//! Owner requests over `/shoal/owner/1` between two swarms, answered by a fake owner service.

use std::time::Duration;

use shoal_protocol::media_type::MAX_MANIFEST_SIZE;
use shoal_protocol::peer::{MAX_RESPONSE_SIZE, MessageError};
use shoal_protocol::{Digest, RepositoryName, Tag};

use super::*;
use crate::p2p::{OwnerRequest, OwnerResponse, P2pError};

const ASK: Duration = Duration::from_secs(5);

/// Starts an owner `a` with the given service and an asker `b` connected to it.
async fn pair(dir: &Path, owner: FakeOwner) -> (TestNode, TestNode) {
    let a = start_with(config(dir, "a"), owner).await;
    let mut b_config = config(dir, "b");
    b_config.bootstrap = vec![first_addr(&a)];
    let b = start(b_config).await;
    assert!(eventually(Duration::from_secs(15), || b.p2p.peers().len() == 1).await);
    (a, b)
}

fn resolve() -> OwnerRequest {
    OwnerRequest::ResolveTag {
        registry: "ghcr.io".into(),
        repo: RepositoryName::parse("org/app").unwrap(),
        tag: Tag::parse("v1").unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_and_resolve_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), FakeOwner::default()).await;
    let a_id = a.p2p.local_peer_id();

    let answer = b.p2p.ask(a_id, fetch("library/alpine"), ASK).await.unwrap();
    assert_eq!(answer, OwnerResponse::FetchAccepted { http_url: "http://a.test:5000".into() });
    assert_eq!(
        *a.owner.blobs_asked.lock().unwrap(),
        vec![(
            "docker.io".to_owned(),
            RepositoryName::parse("library/alpine").unwrap(),
            Digest::of(b"layer")
        )]
    );

    let answer = b.p2p.ask(a_id, fetch("missing"), ASK).await.unwrap();
    assert_eq!(answer, OwnerResponse::Error(ErrorCode::NotFound));

    let manifest = a.owner.manifest();
    let answer = b.p2p.ask(a_id, resolve(), ASK).await.unwrap();
    assert_eq!(
        answer,
        OwnerResponse::TagResolved {
            digest: Digest::of(&manifest),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            manifest,
        }
    );

    // Requests go both ways on the same connection.
    let back = a.p2p.ask(b.p2p.local_peer_id(), fetch("x"), ASK).await.unwrap();
    assert_eq!(back, OwnerResponse::FetchAccepted { http_url: "http://b.test:5000".into() });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_owner_times_out_without_stalling_the_swarm() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), FakeOwner::default()).await;
    let a_id = a.p2p.local_peer_id();
    let started = tokio::time::Instant::now();
    let slow = b.p2p.ask(a_id, fetch("slow"), Duration::from_millis(500)).await;
    assert!(matches!(slow, Err(P2pError::Timeout { peer }) if peer == a_id), "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The owner is still answering others while the slow request is pending.
    let quick = b.p2p.ask(a_id, fetch("quick"), ASK).await.unwrap();
    assert!(matches!(quick, OwnerResponse::FetchAccepted { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Over the manifest cap but within the frame cap: refused after decoding, by field check.
    let big = FakeOwner { manifest_size: MAX_MANIFEST_SIZE as usize + 1, ..Default::default() };
    let (a, b) = pair(dir.path(), big).await;
    let answer = b.p2p.ask(a.p2p.local_peer_id(), resolve(), ASK).await;
    assert!(
        matches!(&answer, Err(P2pError::BadResponse { source, .. })
            if matches!(**source, MessageError::ManifestTooLarge(_))),
        "{answer:?}"
    );

    // Over the frame cap: refused from the length prefix, before the body is read.
    let dir = tempfile::tempdir().unwrap();
    let huge = FakeOwner { manifest_size: MAX_RESPONSE_SIZE + 1, ..Default::default() };
    let (a, b) = pair(dir.path(), huge).await;
    let answer = b.p2p.ask(a.p2p.local_peer_id(), resolve(), ASK).await;
    assert!(
        matches!(&answer, Err(P2pError::BadResponse { source, .. })
            if matches!(**source, MessageError::TooLarge { .. })),
        "{answer:?}"
    );
    // The connection survives a refused answer.
    let ok = b.p2p.ask(a.p2p.local_peer_id(), fetch("after"), ASK).await.unwrap();
    assert!(matches!(ok, OwnerResponse::FetchAccepted { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_a_stopped_node_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), FakeOwner::default()).await;
    let a_id = a.p2p.local_peer_id();
    a.p2p.shutdown();
    a.task.await.unwrap();
    let answer = b.p2p.ask(a_id, fetch("x"), ASK).await;
    assert!(
        matches!(answer, Err(P2pError::Request { .. } | P2pError::Timeout { .. })),
        "{answer:?}"
    );
    // A handle of a stopped node reports it.
    assert!(matches!(a.p2p.provide(&Digest::of(b"x")), Err(P2pError::Stopped)));
}
