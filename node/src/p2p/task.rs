//! The task that owns the swarm: it runs commands from the [`super::P2p`] handles, reacts to
//! swarm events (see `events.rs`), and publishes the live-peer snapshot the handles read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::futures::StreamExt as _;
use libp2p::kad::{QueryId, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm};
use shoal_protocol::peer::{OwnerRequest, OwnerResponse};
use tokio::sync::{mpsc, oneshot, watch};

use super::OwnerService;
use super::behaviour::Behaviour;
use super::error::P2pError;
use super::liveness::{self, Liveness};
use super::peers::{PeerInfo, SharedSnapshot, Snapshot};

/// How often static bootstrap peers that are not connected are dialled again.
const REDIAL_INTERVAL: Duration = Duration::from_secs(60);
/// Membership refresh: a Kademlia bootstrap after 1 s, then 2, 4, … up to once a minute.
///
/// Nodes that start together race: each asks the first peer it meets for the others before
/// that peer has met them, and Kademlia only looks again when its routing table grows (or
/// after five minutes). Members that disagree on who is live disagree on owners, so a joiner
/// asks again soon and often until the fleet has settled; a node that joins a settled fleet
/// learns everyone from its first answer.
const REFRESH_FIRST: Duration = Duration::from_secs(1);
const REFRESH_MAX: Duration = Duration::from_secs(60);

pub(super) enum Command {
    Ask {
        peer: PeerId,
        request: OwnerRequest,
        reply: oneshot::Sender<Result<OwnerResponse, P2pError>>,
    },
    Respond {
        channel: ResponseChannel<OwnerResponse>,
        response: OwnerResponse,
    },
    Provide {
        key: Vec<u8>,
    },
    Unprovide {
        key: Vec<u8>,
    },
    /// Each provider found is sent on `found`; the sender is dropped when the query ends.
    FindProviders {
        key: Vec<u8>,
        found: mpsc::UnboundedSender<PeerId>,
    },
    Dial(Multiaddr),
    Shutdown,
}

pub(super) struct Task {
    pub swarm: Swarm<Behaviour>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    /// For handler tasks to send their answers back; weak, so the loop ends when every
    /// handle is dropped.
    pub self_commands: mpsc::WeakUnboundedSender<Command>,
    pub service: Arc<dyn OwnerService>,
    pub snapshot: watch::Sender<SharedSnapshot>,
    pub advertise_url: String,
    pub bootstrap: Vec<Multiaddr>,
    pub infos: HashMap<PeerId, PeerInfo>,
    pub listen_addrs: Vec<Multiaddr>,
    /// Addresses this node dialled and is connected through, to avoid dialling them again.
    pub dialled: HashMap<ConnectionId, Multiaddr>,
    pub asks:
        HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<OwnerResponse, P2pError>>)>,
    pub provider_queries: HashMap<QueryId, mpsc::UnboundedSender<PeerId>>,
    pub bootstrapped_once: HashSet<PeerId>,
    pub liveness: Liveness,
}

impl Task {
    pub async fn run(mut self) {
        let mut redial = tokio::time::interval(REDIAL_INTERVAL);
        let mut sweep = tokio::time::interval(liveness::SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh_delay = REFRESH_FIRST;
        let refresh = tokio::time::sleep(refresh_delay);
        tokio::pin!(refresh);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => self.on_command(command),
                },
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = redial.tick() => self.dial_bootstrap(),
                _ = sweep.tick() => self.fail_asks_to_silent_peers(),
                () = &mut refresh => {
                    // No known peer yet is not an error: mDNS or a redial may bring one.
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    refresh_delay = (refresh_delay * 2).min(REFRESH_MAX);
                    refresh.as_mut().reset(tokio::time::Instant::now() + refresh_delay);
                }
            }
        }
        tracing::info!("control plane stopped");
    }

    fn on_command(&mut self, command: Command) {
        let behaviour = self.swarm.behaviour_mut();
        match command {
            Command::Ask { peer, request, reply } => {
                if let Some(quiet) = self.liveness.silence(&peer, Instant::now()) {
                    let _ = reply.send(Err(P2pError::Silent { peer, quiet }));
                    return;
                }
                let id = behaviour.owner.send_request(&peer, request);
                self.asks.insert(id, (peer, reply));
            }
            Command::Respond { channel, response } => {
                if behaviour.owner.send_response(channel, response).is_err() {
                    tracing::debug!("asker gone before the owner answered");
                }
            }
            Command::Provide { key } => {
                if let Err(error) = behaviour.kad.start_providing(RecordKey::new(&key)) {
                    tracing::warn!(key = %hex::encode(&key), %error, "cannot announce a provider record");
                }
            }
            Command::Unprovide { key } => behaviour.kad.stop_providing(&RecordKey::new(&key)),
            Command::FindProviders { key, found } => {
                let id = behaviour.kad.get_providers(RecordKey::new(&key));
                self.provider_queries.insert(id, found);
            }
            Command::Dial(addr) => self.dial_addr(addr),
            Command::Shutdown => {}
        }
    }

    /// Answers the requests waiting on a peer that has gone silent, so that their callers can
    /// go elsewhere now; a late answer is dropped.
    fn fail_asks_to_silent_peers(&mut self) {
        let now = Instant::now();
        let silent: Vec<(OutboundRequestId, PeerId, Duration)> = self
            .asks
            .iter()
            .filter_map(|(id, (peer, _))| {
                self.liveness.silence(peer, now).map(|quiet| (*id, *peer, quiet))
            })
            .collect();
        for (id, peer, quiet) in silent {
            if let Some((_, reply)) = self.asks.remove(&id) {
                let _ = reply.send(Err(P2pError::Silent { peer, quiet }));
            }
        }
    }

    pub fn publish(&self) {
        self.snapshot.send_replace(Arc::new(Snapshot {
            peers: self.infos.clone(),
            listen_addrs: self.listen_addrs.clone(),
        }));
    }

    fn dial_bootstrap(&mut self) {
        for addr in self.bootstrap.clone() {
            self.dial_addr(addr);
        }
    }

    /// Dials an address unless this node is already connected to it (or to the peer it names).
    pub fn dial_addr(&mut self, addr: Multiaddr) {
        let (bare, peer) = split_peer_id(addr.clone());
        let connected = match peer {
            Some(peer) => self.swarm.is_connected(&peer),
            None => {
                self.dialled.values().any(|a| split_peer_id(a.clone()).0 == bare)
                    || self.infos.values().any(|info| info.addrs.contains(&bare))
            }
        };
        if connected {
            return;
        }
        let opts = match peer {
            Some(peer) => {
                self.swarm.behaviour_mut().kad.add_address(&peer, bare.clone());
                DialOpts::peer_id(peer)
                    .addresses(vec![bare])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build()
            }
            None => DialOpts::unknown_peer_id().address(bare).build(),
        };
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%addr, error = %e, "cannot dial");
        }
    }
}

/// Splits a trailing `/p2p/<id>` off an address.
pub(super) fn split_peer_id(mut addr: Multiaddr) -> (Multiaddr, Option<PeerId>) {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => {
            addr.pop();
            (addr, Some(peer))
        }
        _ => (addr, None),
    }
}
