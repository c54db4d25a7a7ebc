//! In-process tests of the control plane: several swarms on 127.0.0.1 with port 0.

mod cluster;
mod owner_requests;
mod private_network;
mod silence;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use libp2p::Multiaddr;
use shoal_protocol::peer::{HoldState, ImageHold, ImageRelease};
use shoal_protocol::{Digest, Manifest, RepositoryName, Tag};
use tokio::task::JoinHandle;

use super::{ClusterKey, ErrorCode, OwnerRequest, OwnerService, P2p, P2pConfig};

/// An owner service that records what it was asked and answers from fixed rules:
/// repository `missing` is NOT_FOUND, repository `slow` never answers in time.
#[derive(Default)]
pub(super) struct FakeOwner {
    pub blobs_asked: Mutex<Vec<(String, RepositoryName, Digest)>>,
    /// Size of the manifest `resolve_tag` returns.
    pub manifest_size: usize,
}

impl FakeOwner {
    pub fn manifest(&self) -> Vec<u8> {
        let mut manifest = br#"{"schemaVersion":2}"#.to_vec();
        manifest.resize(self.manifest_size.max(manifest.len()), b' ');
        manifest
    }
}

impl OwnerService for FakeOwner {
    fn fetch_blob(
        &self,
        registry: String,
        repo: RepositoryName,
        digest: Digest,
        _into_site: bool,
    ) -> BoxFuture<'static, Result<(), ErrorCode>> {
        let answer = match repo.as_str() {
            "missing" => Err(ErrorCode::NotFound),
            _ => Ok(()),
        };
        let slow = repo.as_str() == "slow";
        self.blobs_asked.lock().unwrap().push((registry, repo, digest));
        Box::pin(async move {
            if slow {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            answer
        })
    }

    fn resolve_tag(
        &self,
        _registry: String,
        _repo: RepositoryName,
        _tag: Tag,
    ) -> BoxFuture<'static, Result<Manifest, ErrorCode>> {
        let manifest = self.manifest();
        Box::pin(async move {
            Ok(Manifest {
                digest: Digest::of(&manifest),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                bytes: manifest.into(),
            })
        })
    }

    fn hold(&self, hold: ImageHold) -> BoxFuture<'static, Result<HoldState, ErrorCode>> {
        let answer = if hold.replicas > 1 { HoldState::Fetching } else { HoldState::Whole };
        Box::pin(async move { Ok(answer) })
    }

    fn release(&self, _release: ImageRelease) -> BoxFuture<'static, Result<HoldState, ErrorCode>> {
        Box::pin(async move { Ok(HoldState::Released) })
    }
}

pub(super) struct TestNode {
    pub p2p: P2p,
    pub task: JoinHandle<()>,
    pub owner: Arc<FakeOwner>,
}

pub(super) fn config(dir: &Path, name: &str) -> P2pConfig {
    let mut config = P2pConfig::new(
        dir.join(name).join("p2p-identity"),
        format!("http://{name}.test:5000"),
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        key(1),
    );
    config.site = Some(format!("site-{name}"));
    config
}

pub(super) async fn start(config: P2pConfig) -> TestNode {
    start_with(config, FakeOwner::default()).await
}

pub(super) async fn start_with(config: P2pConfig, owner: FakeOwner) -> TestNode {
    let owner = Arc::new(owner);
    let (p2p, task) = P2p::start(config, owner.clone()).await.expect("control plane starts");
    TestNode { p2p, task, owner }
}

pub(super) fn first_addr(node: &TestNode) -> Multiaddr {
    node.p2p.listen_addrs().into_iter().next().expect("a listen address")
}

/// A `FetchBlob` owner request for `repo` (the fake owner answers by repository name).
pub(super) fn fetch(repo: &str) -> OwnerRequest {
    OwnerRequest::FetchBlob {
        registry: "docker.io".into(),
        repo: RepositoryName::parse(repo).unwrap(),
        digest: Digest::of(b"layer"),
        into_site: false,
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub(super) async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) fn key(byte: u8) -> ClusterKey {
    ClusterKey::from_bytes([byte; 32])
}
