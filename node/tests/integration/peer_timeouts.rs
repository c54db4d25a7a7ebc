//! A provider that accepts the connection and then never answers: a blob miss takes its pieces
//! from the other provider meanwhile, and a manifest miss gives up on it after the peer header
//! timeout and asks the next provider, instead of waiting for the operating system to give up
//! on the connection.
//!
//! The fleet is a fixed list of providers (the `Fleet` seam), the first a TCP listener that
//! never writes, the second a real node serving its data plane; the fetcher is the real one.

use crate::{api_support, support};

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use shoal::config::{Config, DEFAULT_PEER_HEADER_TIMEOUT, FileConfig, Overrides, UpstreamFallback};
use shoal::fetch::{
    BlobSource, Fetcher, Fleet, FleetError, ManifestData, PeerClient, PeerTimeouts, Sources, Swarm,
    Target, UpstreamSource, Upstreams,
};
use shoal::metrics::Metrics;
use shoal::p2p::{Owner, PeerId, PeerInfo};
use shoal::store::{Store, StoreConfig};
use shoal_protocol::{Digest, Reference, RepositoryName, Tag};
use tokio::net::TcpListener;

use api_support::{HEALTH_REPO, TestKey, fake_with_health, pattern, read_body};
use support::fake_upstream::FakeUpstream;

/// The fleet as the miss path sees it: these providers for every digest, and this node owns
/// everything (so nothing is asked of an owner).
pub(crate) struct FixedProviders(Vec<PeerInfo>);

impl Fleet for FixedProviders {
    fn providers<'a>(&'a self, _digest: &'a Digest) -> BoxFuture<'a, Vec<PeerInfo>> {
        Box::pin(async move { self.0.clone() })
    }

    fn owner(&self, _key: &[u8]) -> Owner {
        Owner::Local
    }

    fn site_owner(&self, _key: &[u8]) -> Owner {
        Owner::Local
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
        Box::pin(async move { Err(FleetError::Refused { peer: owner.id }) })
    }

    fn provide(&self, _digest: &Digest) {}

    fn unprovide(&self, _digest: &Digest) {}

    fn site(&self) -> Option<String> {
        None
    }
}

/// Accepts every connection and keeps it open without ever writing a byte.
async fn silent_peer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the silent peer");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    url
}

pub(crate) struct Asker {
    pub(crate) fetcher: Fetcher,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

/// A fetcher whose providers are `providers`, in that order, then the upstream at `fake`; it
/// signs its peer requests with `key`.
pub(crate) fn asker(fake: &FakeUpstream, providers: Vec<PeerInfo>, key: &TestKey) -> Asker {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        Store::open(StoreConfig { root: dir.path().to_owned(), max_size: None }).expect("store");
    let overrides =
        Overrides { upstreams: vec![format!("docker.io={}", fake.url())], ..Default::default() };
    let config = Config::resolve(FileConfig::default(), overrides).expect("config");
    let upstreams = Arc::new(
        Upstreams::new(&config.routing, &config.client, &config.clock).expect("upstreams"),
    );
    let metrics = Arc::new(Metrics::default());
    let timeouts = PeerTimeouts {
        connect: Duration::from_secs(1),
        headers: DEFAULT_PEER_HEADER_TIMEOUT,
        stall: Duration::from_secs(10),
    };
    let peers = Arc::new(PeerClient::new(key.signer(), timeouts, Vec::new(), metrics.clone()));
    let fleet: Arc<dyn Fleet> = Arc::new(FixedProviders(providers));
    let upstream: Arc<dyn BlobSource> = Arc::new(UpstreamSource::new(
        upstreams.clone(),
        Some(fleet.clone()),
        UpstreamFallback::Always,
        false,
        metrics.clone(),
    ));
    let swarm = Swarm::new(fleet.clone(), peers.clone(), metrics.clone(), timeouts.stall, false);
    let sources = Sources {
        swarm: Some(Arc::new(swarm)),
        miss: vec![upstream],
        owner: Vec::new(),
        peers: Some(peers),
        upload_slots: 3,
    };
    let fetcher = Fetcher::new(store, upstreams, sources, Some(fleet), Duration::from_secs(300));
    Asker { fetcher, metrics, _dir: dir }
}

pub(crate) fn peer(http_url: String) -> PeerInfo {
    PeerInfo {
        id: PeerId::random(),
        http_url,
        site: None,
        addrs: Vec::new(),
        version: String::new(),
    }
}

/// The old cost of one silent provider: the connection's own timeouts, about half a minute.
const OLD_COST: Duration = Duration::from_secs(31);

#[tokio::test]
async fn a_silent_provider_costs_the_header_timeout_then_the_next_one_serves() {
    let (fake, image) = fake_with_health().await;
    let bytes = pattern(700_000, 3);
    let digest = fake.put_blob(HEALTH_REPO, &bytes);
    let blob_path = FakeUpstream::blob_path(HEALTH_REPO, &digest);
    let manifest_path = FakeUpstream::manifest_path(HEALTH_REPO, &image.manifest.to_string());

    // The good provider: a real node of the same fleet that holds the blob and the manifest.
    let key = TestKey::new();
    let holder = api_support::Node::start(&fake.url(), key.options()).await;
    let (got, _) = read_body(holder.get_ok(&blob_path).await).await;
    assert_eq!(got, bytes);
    holder.assert_stored(&digest).await;
    holder.get_ok(&manifest_path).await.bytes().await.expect("manifest");
    assert_eq!(fake.count("GET", &blob_path), 1);

    let providers = vec![peer(silent_peer().await), peer(holder.url.clone())];
    let asker = asker(&fake, providers, &key);
    let target = Target {
        registry: "docker.io".to_owned(),
        repo: RepositoryName::parse(HEALTH_REPO).expect("name"),
    };

    let started = Instant::now();
    let response = asker.fetcher.blob(&target, &digest, None).await.expect("the miss completes");
    let mut body = response.body;
    let mut got = Vec::new();
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.expect("a chunk"));
    }
    let elapsed = started.elapsed();
    eprintln!("blob miss past a silent provider took {elapsed:?}");
    assert_eq!(Digest::of(&got), digest);
    // The swarm asks both providers at once: the silent one holds nothing up.
    assert!(elapsed < DEFAULT_PEER_HEADER_TIMEOUT, "one silent provider cost {elapsed:?}");
    assert_eq!(asker.metrics.peer_blob_fetches.get(), 1, "from the holder");
    assert_eq!(fake.count("GET", &blob_path), 1, "not from the upstream");

    // A manifest by digest is asked of the providers the same way.
    let started = Instant::now();
    let manifest = asker
        .fetcher
        .manifest(&target, &Reference::Digest(image.manifest))
        .await
        .expect("the manifest miss completes");
    let elapsed = started.elapsed();
    eprintln!("manifest miss past a silent provider took {elapsed:?}");
    assert_eq!(manifest.manifest.bytes, image.manifest_bytes);
    assert!(elapsed >= DEFAULT_PEER_HEADER_TIMEOUT, "the silent provider was asked first");
    assert!(elapsed < OLD_COST / 3, "one silent provider cost {elapsed:?}");
    assert_eq!(fake.count("GET", &manifest_path), 1, "only the holder's own fetch");
}
