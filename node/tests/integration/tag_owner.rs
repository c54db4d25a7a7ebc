//! How far a tag owner's answer is believed. The fleet is a fake (the `Fleet` seam) whose owner
//! of every key is another member answering what the test says; the fetcher and the upstream
//! client are the real ones, against a fake upstream that counts requests.
//!
//! An answer that agrees with this node's record, or one for a tag it has never seen, costs no
//! upstream request; one that moves the tag is checked with one `HEAD`, and the upstream wins.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use shoal::config::{Config, FileConfig, Overrides, UpstreamFallback};
use shoal::fetch::{
    BlobSource, FetchError, Fetcher, Fleet, FleetError, ManifestData, Sources, Target,
    UpstreamSource, Upstreams,
};
use shoal::metrics::Metrics;
use shoal::p2p::{Owner, PeerId, PeerInfo};
use shoal::store::{Store, StoreConfig};
use shoal_protocol::media_type::OCI_MANIFEST;
use shoal_protocol::{Digest, Reference, RepositoryName, Tag};

use support::fake_upstream::{FakeUpstream, Fault};

const REPO: &str = "library/app";

/// A fleet in which another member owns every key and answers tags with `answer`.
#[derive(Default)]
struct TagOwner {
    answer: Mutex<Option<ManifestData>>,
    asked: Mutex<usize>,
}

impl TagOwner {
    fn answers(&self, manifest: &[u8]) {
        let manifest = shoal_protocol::Manifest {
            digest: Digest::of(manifest),
            media_type: OCI_MANIFEST.to_owned(),
            bytes: bytes::Bytes::copy_from_slice(manifest),
        };
        let answer = ManifestData::new(manifest, shoal::fetch::Served::Peer);
        *self.answer.lock().unwrap() = Some(answer);
    }

    fn peer() -> PeerInfo {
        PeerInfo {
            id: PeerId::random(),
            http_url: "http://127.0.0.1:1".to_owned(),
            site: None,
            addrs: Vec::new(),
            version: String::new(),
        }
    }
}

impl Fleet for TagOwner {
    fn providers<'a>(&'a self, _digest: &'a Digest) -> BoxFuture<'a, Vec<PeerInfo>> {
        Box::pin(async { Vec::new() })
    }

    fn owner(&self, _key: &[u8]) -> Owner {
        Owner::Remote(Self::peer())
    }

    fn site_owner(&self, _key: &[u8]) -> Owner {
        Owner::Remote(Self::peer())
    }

    fn ask_fetch<'a>(
        &'a self,
        owner: &'a PeerInfo,
        _target: &'a Target,
        _digest: &'a Digest,
        _into_site: bool,
    ) -> BoxFuture<'a, Result<String, FleetError>> {
        Box::pin(async move { Err(FleetError::Refused { peer: owner.id }) })
    }

    fn ask_tag<'a>(
        &'a self,
        owner: &'a PeerInfo,
        _target: &'a Target,
        _tag: &'a Tag,
    ) -> BoxFuture<'a, Result<ManifestData, FleetError>> {
        *self.asked.lock().unwrap() += 1;
        let answer = self.answer.lock().unwrap().clone();
        Box::pin(async move { answer.ok_or(FleetError::Refused { peer: owner.id }) })
    }

    fn provide(&self, _digest: &Digest) {}

    fn unprovide(&self, _digest: &Digest) {}

    fn site(&self) -> Option<String> {
        None
    }
}

/// A fetcher whose tags are always past their TTL, so every request asks the owner.
fn fetcher(fake: &FakeUpstream, fleet: Arc<TagOwner>) -> (Fetcher, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        Store::open(StoreConfig { root: dir.path().to_owned(), max_size: None }).expect("store");
    let file = FileConfig::parse("[upstream_client]\nretries = 0\n", "test.toml".as_ref())
        .expect("config file");
    let overrides =
        Overrides { upstreams: vec![format!("docker.io={}", fake.url())], ..Default::default() };
    let config = Config::resolve(file, overrides).expect("config");
    let upstreams = Arc::new(
        Upstreams::new(&config.routing, &config.client, &config.clock).expect("upstreams"),
    );
    let fleet: Arc<dyn Fleet> = fleet;
    let upstream: Arc<dyn BlobSource> = Arc::new(UpstreamSource::new(
        upstreams.clone(),
        Some(fleet.clone()),
        UpstreamFallback::Always,
        false,
        Arc::new(Metrics::default()),
    ));
    let sources = Sources {
        swarm: None,
        miss: vec![upstream],
        owner: Vec::new(),
        peers: None,
        upload_slots: 3,
    };
    (Fetcher::new(store, upstreams, sources, Some(fleet), Duration::ZERO), dir)
}

fn manifest(name: &str) -> Vec<u8> {
    format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","annotations":{{"n":"{name}"}}}}"#)
        .into_bytes()
}

#[tokio::test]
async fn an_owner_can_move_a_tag_only_where_the_upstream_moved_it() {
    let fake = FakeUpstream::builder().start().await;
    let v1 = manifest("v1");
    fake.put_manifest(REPO, Some("latest"), &v1, OCI_MANIFEST);
    let owner = Arc::new(TagOwner::default());
    let (fetcher, _dir) = fetcher(&fake, owner.clone());
    let target =
        Target { registry: "docker.io".into(), repo: RepositoryName::parse(REPO).unwrap() };
    let latest = Reference::Tag(Tag::parse("latest").unwrap());
    let tag_path = FakeUpstream::manifest_path(REPO, "latest");
    let resolve = || fetcher.manifest(&target, &latest);

    // Never seen here: the owner's word, and no upstream request.
    owner.answers(&v1);
    assert_eq!(resolve().await.expect("first answer").manifest.digest, Digest::of(&v1));
    // The owner agrees with the record: still none.
    assert_eq!(resolve().await.expect("same answer").manifest.digest, Digest::of(&v1));
    assert_eq!(fake.requests_to(&tag_path), 0, "agreeing answers cost the upstream nothing");
    assert_eq!(*owner.asked.lock().unwrap(), 2);

    // The owner moves the tag to content the upstream does not name: one HEAD, upstream wins.
    let forged = manifest("forged");
    owner.answers(&forged);
    let served = resolve().await.expect("checked answer");
    assert_eq!(served.manifest.digest, Digest::of(&v1), "the upstream's digest, not the owner's");
    assert_eq!(served.manifest.bytes, v1);
    assert_eq!(fake.count("HEAD", &tag_path), 1);
    // The record still names v1: an owner back to the truth costs nothing again.
    owner.answers(&v1);
    assert_eq!(resolve().await.expect("honest again").manifest.digest, Digest::of(&v1));
    assert_eq!(fake.requests_to(&tag_path), 1);

    // The tag really moves upstream: the owner's new answer is confirmed and taken.
    let v2 = manifest("v2");
    fake.put_manifest(REPO, Some("latest"), &v2, OCI_MANIFEST);
    owner.answers(&v2);
    assert_eq!(resolve().await.expect("moved").manifest.digest, Digest::of(&v2));
    assert_eq!(fake.count("HEAD", &tag_path), 2);
    assert_eq!(fake.count("GET", &tag_path), 0, "the owner's bytes, not the upstream's");

    // The upstream cannot be asked: the owner's word (its bytes match its digest) is taken.
    fake.set_fault(&tag_path, Fault::ServerError { times: 100 });
    let v3 = manifest("v3");
    owner.answers(&v3);
    assert_eq!(resolve().await.expect("unchecked").manifest.digest, Digest::of(&v3));
    fake.clear_faults();

    // A digest for a tag the upstream does not have: not believed.
    fake.put_manifest("library/other", Some("x"), &v1, OCI_MANIFEST);
    let other = Target { repo: RepositoryName::parse("library/gone").unwrap(), ..target.clone() };
    let gone = Reference::Tag(Tag::parse("latest").unwrap());
    owner.answers(&v1);
    fetcher.manifest(&other, &gone).await.expect("first answer for an unseen tag is taken");
    owner.answers(&forged);
    let refused = fetcher.manifest(&other, &gone).await;
    assert!(matches!(refused, Err(FetchError::ManifestUnknown { .. })), "{refused:?}");
}
