//! [`P2p`]: the cloneable handle through which the node uses the control plane.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, futures::StreamExt as _};
use shoal_protocol::Digest;
use shoal_protocol::peer::{OwnerRequest, OwnerResponse, PeerAdvert, blob_key};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::behaviour::build_swarm;
use super::peers::{Owner, PeerInfo, SharedSnapshot, Snapshot, closest_among, owner_among};
use super::task::{Command, Task};
use super::{OwnerService, P2pConfig, P2pError, identity};

const DNS_REFRESH: Duration = Duration::from_secs(60);
/// How long start waits for the listeners to report their addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle to the running control plane. Cheap to clone; every clone talks to the same task.
#[derive(Clone)]
pub struct P2p {
    local_peer_id: PeerId,
    // Unbounded: commands are small, and provide/unprovide must neither block the miss path
    // nor be dropped when many blobs are announced at once (re-announcing after a restart).
    commands: mpsc::UnboundedSender<Command>,
    snapshot: watch::Receiver<SharedSnapshot>,
}

impl std::fmt::Debug for P2p {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2p").field("local_peer_id", &self.local_peer_id).finish()
    }
}

impl P2p {
    /// Loads (or creates) the identity, binds the listeners, starts the swarm task and the
    /// bootstrap dialling. Returns once every listener has its address.
    pub async fn start(
        config: P2pConfig,
        service: Arc<dyn OwnerService>,
    ) -> Result<(P2p, JoinHandle<()>), P2pError> {
        if config.republish >= config.provider_ttl {
            return Err(P2pError::RepublishNotBeforeTtl {
                republish: config.republish,
                ttl: config.provider_ttl,
            });
        }
        let advert = PeerAdvert::new(config.advertise_url.clone(), config.site.clone())?;
        let keypair = identity::load_or_create(&config.identity_path)?;
        let local_peer_id = keypair.public().to_peer_id();
        let mut swarm = build_swarm(keypair, &config, &advert)?;
        let mut listeners = HashSet::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|source| P2pError::Listen { addr: addr.clone(), source })?;
            listeners.insert(id);
        }
        tracing::info!(peer_id = %local_peer_id, key = %config.cluster_key.fingerprint(), "control plane starting in a private network");

        let (commands, receiver) = mpsc::unbounded_channel();
        let (snapshot_tx, snapshot) = watch::channel(Arc::new(Snapshot::default()));
        let mut task = Task {
            swarm,
            commands: receiver,
            self_commands: commands.downgrade(),
            service,
            snapshot: snapshot_tx,
            advertise_url: config.advertise_url.clone(),
            bootstrap: config.bootstrap.clone(),
            infos: HashMap::new(),
            listen_addrs: Vec::new(),
            dialled: HashMap::new(),
            asks: HashMap::new(),
            liveness: Default::default(),
            provider_queries: HashMap::new(),
            bootstrapped_once: HashSet::new(),
        };
        wait_for_listeners(&mut task, listeners).await?;
        let handle = tokio::spawn(task.run());
        if !config.bootstrap_dns.is_empty() {
            tokio::spawn(resolve_bootstrap_dns(config.bootstrap_dns, commands.downgrade()));
        }
        Ok((P2p { local_peer_id, commands, snapshot }, handle))
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The addresses the listeners actually bound (port 0 resolved).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.snapshot.borrow().listen_addrs.clone()
    }

    /// Live peers whose advert is known.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.snapshot.borrow().peers.values().cloned().collect()
    }

    /// The member that should do the work for `key`: this node or a live peer.
    pub fn owner(&self, key: &[u8]) -> Owner {
        owner_among(&self.local_peer_id, self.snapshot.borrow().peers.values(), key)
    }

    /// The `n` members (this node included) closest to `key`, closest first.
    pub fn closest(&self, key: &[u8], n: usize) -> Vec<Owner> {
        closest_among(&self.local_peer_id, self.snapshot.borrow().peers.values(), key, n)
    }

    /// The member of `site` that should bring `key` into it: the same rule as
    /// [`P2p::owner`] among this node and the live peers that carry the same site label.
    pub fn site_owner(&self, key: &[u8], site: &Option<String>) -> Owner {
        let snapshot = self.snapshot.borrow();
        let same_site = snapshot.peers.values().filter(|p| &p.site == site);
        owner_among(&self.local_peer_id, same_site, key)
    }

    /// Starts announcing that this node holds (or is fetching) `digest`. Does not wait for
    /// the announcement to reach peers; commands run in order, so a later `unprovide` wins.
    pub fn provide(&self, digest: &Digest) -> Result<(), P2pError> {
        self.send(Command::Provide { key: blob_key(digest) })
    }

    /// Stops announcing `digest`. Records already held by peers expire after the provider TTL.
    pub fn unprovide(&self, digest: &Digest) -> Result<(), P2pError> {
        self.send(Command::Unprovide { key: blob_key(digest) })
    }

    /// Peers that provide `digest`, found within `budget`. Only live peers with a known
    /// advert, never this node; empty if the control plane has stopped.
    pub async fn find_providers(&self, digest: &Digest, budget: Duration) -> Vec<PeerInfo> {
        let (found, mut receiver) = mpsc::unbounded_channel();
        if self.send(Command::FindProviders { key: blob_key(digest), found }).is_err() {
            return Vec::new();
        }
        let mut ids = Vec::new();
        let deadline = tokio::time::Instant::now() + budget;
        while let Ok(Some(id)) = tokio::time::timeout_at(deadline, receiver.recv()).await {
            if id != self.local_peer_id && !ids.contains(&id) {
                ids.push(id);
            }
        }
        let snapshot = self.snapshot.borrow();
        ids.iter().filter_map(|id| snapshot.peers.get(id).cloned()).collect()
    }

    /// Sends an owner request to `peer` and waits at most `timeout` for its answer.
    pub async fn ask(
        &self,
        peer: PeerId,
        request: OwnerRequest,
        timeout: Duration,
    ) -> Result<OwnerResponse, P2pError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Ask { peer, request, reply })?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(P2pError::Stopped),
            Err(_) => Err(P2pError::Timeout { peer }),
        }
    }

    /// Dials an address now (with or without `/p2p/<id>`), unless already connected to it.
    pub fn dial(&self, addr: Multiaddr) -> Result<(), P2pError> {
        self.send(Command::Dial(addr))
    }

    /// Waits until the live-peer table changes. Errors once the control plane has stopped.
    pub async fn peers_changed(&mut self) -> Result<(), P2pError> {
        self.snapshot.changed().await.map_err(|_| P2pError::Stopped)
    }

    /// Stops the swarm task; connections close and peers see this node leave.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }

    fn send(&self, command: Command) -> Result<(), P2pError> {
        self.commands.send(command).map_err(|_| P2pError::Stopped)
    }
}

async fn wait_for_listeners(
    task: &mut Task,
    mut pending: HashSet<libp2p::core::transport::ListenerId>,
) -> Result<(), P2pError> {
    let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
    while !pending.is_empty() {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, task.swarm.next()).await else {
            return Err(P2pError::ListenTimeout);
        };
        match &event {
            SwarmEvent::NewListenAddr { listener_id, .. } => {
                pending.remove(listener_id);
            }
            SwarmEvent::ListenerClosed { listener_id, .. }
            | SwarmEvent::ListenerError { listener_id, .. }
                if pending.contains(listener_id) =>
            {
                return Err(P2pError::ListenerClosed);
            }
            _ => {}
        }
        task.on_event(event);
    }
    Ok(())
}

/// Re-resolves the DNS bootstrap names every minute and dials every address found (a
/// Kubernetes headless service lists one address per pod).
async fn resolve_bootstrap_dns(names: Vec<String>, commands: mpsc::WeakUnboundedSender<Command>) {
    let mut tick = tokio::time::interval(DNS_REFRESH);
    loop {
        tick.tick().await;
        for name in &names {
            let addrs = match tokio::net::lookup_host(name.as_str()).await {
                Ok(addrs) => addrs,
                Err(error) => {
                    tracing::warn!(%name, %error, "cannot resolve bootstrap name");
                    continue;
                }
            };
            let Some(commands) = commands.upgrade() else { return };
            for addr in addrs {
                let addr =
                    Multiaddr::from(addr.ip()).with(libp2p::multiaddr::Protocol::Tcp(addr.port()));
                if commands.send(Command::Dial(addr)).is_err() {
                    return;
                }
            }
        }
    }
}
