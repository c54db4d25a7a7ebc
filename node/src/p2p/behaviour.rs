//! The swarm's parts: the transport (TCP, pnet with a key check, noise, yamux) and the
//! behaviours (connection limits, Kademlia, identify, ping, owner requests, optional mDNS),
//! configured from [`P2pConfig`].

use std::sync::Arc;
use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::kad::store::MemoryStoreConfig;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, StreamProtocol, Swarm, Transport as _, connection_limits, dns, identify, kad, mdns,
    noise, ping, tcp, yamux,
};
use shoal_protocol::peer::{IDENTIFY_PROTOCOL, KAD_PROTOCOL, OWNER_PROTOCOL, PeerAdvert};

use super::codec::OwnerCodec;
use super::key_check::{self, MismatchReport};
use super::liveness;
use super::provider_store::SampledStore;
use super::{ClusterKey, P2pConfig, P2pError};

/// Provider records this node may hold for itself and for others. libp2p's default of 1024 is
/// far below the number of layers one cache holds.
const MAX_RECORDS: usize = 1_000_000;
/// Connections stay open while the process lives: the owner rule needs every member connected,
/// and ping (not idleness) decides when a peer is gone.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// The longest any owner request may take, whatever timeout the asker chose.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(30);
/// A connection that has not finished pnet, the key check, noise and yamux by then is
/// dropped, so sockets that connect and say nothing do not pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Incoming connections still in their handshake at once. Anyone who can reach the port can
/// open them, and each holds a descriptor until [`HANDSHAKE_TIMEOUT`]; past the bound new ones
/// are closed at once.
pub(super) const MAX_PENDING_INCOMING: u32 = 256;
/// Connections to members at once: every member connected, for fleets of thousands.
const MAX_ESTABLISHED: u32 = 10_000;
/// Two members dialling each other at the same moment make two connections; more than a few
/// is a peer misbehaving.
const MAX_ESTABLISHED_PER_PEER: u32 = 4;

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    /// First, so that a connection past a bound is refused before any other behaviour sees it.
    pub limits: connection_limits::Behaviour,
    pub kad: kad::Behaviour<SampledStore>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub owner: request_response::Behaviour<OwnerCodec>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Builds the swarm; nothing listens or dials yet.
pub(super) fn build_swarm(
    keypair: Keypair,
    config: &P2pConfig,
    advert: &PeerAdvert,
) -> Result<Swarm<Behaviour>, P2pError> {
    let peer_id = keypair.public().to_peer_id();
    let report = Arc::new(MismatchReport::new(config.metrics.clone()));
    let transport = transport(&keypair, &config.cluster_key, report)?;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
        .with_max_established(Some(MAX_ESTABLISHED))
        .with_max_established_per_peer(Some(MAX_ESTABLISHED_PER_PEER));
    let behaviour = Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        kad: kademlia(peer_id, config),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), keypair.public())
                .with_agent_version(advert.to_agent_version())
                .with_push_listen_addr_updates(true),
        ),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(liveness::PING_INTERVAL)),
        owner: request_response::Behaviour::with_codec(
            OwnerCodec,
            [(StreamProtocol::new(OWNER_PROTOCOL), ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(MAX_REQUEST_TIMEOUT),
        ),
        mdns: Toggle::from(if config.mdns {
            let mdns_config =
                mdns::Config { query_interval: MDNS_QUERY_INTERVAL, ..Default::default() };
            Some(mdns::tokio::Behaviour::new(mdns_config, peer_id).map_err(P2pError::Mdns)?)
        } else {
            None
        }),
    };
    let swarm_config = libp2p::swarm::Config::with_tokio_executor()
        .with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT);
    Ok(Swarm::new(transport, behaviour, peer_id, swarm_config))
}

fn kademlia(peer_id: PeerId, config: &P2pConfig) -> kad::Behaviour<SampledStore> {
    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config
        .set_provider_record_ttl(Some(config.provider_ttl))
        .set_provider_publication_interval(Some(config.republish))
        .set_query_timeout(KAD_QUERY_TIMEOUT)
        // The swarm task refreshes membership on its own, sooner (see `task.rs`).
        .set_periodic_bootstrap_interval(None);
    let store_config = MemoryStoreConfig {
        max_records: MAX_RECORDS,
        max_provided_keys: MAX_RECORDS,
        ..Default::default()
    };
    let store = SampledStore::new(peer_id, store_config);
    let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
    // Every node serves the DHT: a cache fleet has no light clients, and waiting for a
    // confirmed external address (the automatic switch) would never happen on a LAN.
    kad.set_mode(Some(kad::Mode::Server));
    kad
}

type BoxedTransport = Boxed<(PeerId, StreamMuxerBox)>;

fn transport(
    keypair: &Keypair,
    key: &ClusterKey,
    report: Arc<MismatchReport>,
) -> Result<BoxedTransport, P2pError> {
    let tcp_config = tcp::Config::default().nodelay(true);
    let base = match dns::tokio::Transport::system(tcp::tokio::Transport::new(tcp_config.clone())) {
        Ok(with_dns) => with_dns.boxed(),
        Err(e) => {
            // A host without resolver configuration can still use IP bootstrap addresses.
            tracing::warn!(error = %e, "no system DNS configuration; /dns addresses will not resolve");
            tcp::tokio::Transport::new(tcp_config).boxed()
        }
    };
    let noise = noise::Config::new(keypair).map_err(P2pError::Noise)?;
    let yamux = yamux::Config::default();
    let psk = key.psk();
    // pnet wraps the raw socket before anything else is said, so a stranger without the key
    // fails on garbage and learns nothing; the key check right after names the mismatch.
    Ok(base
        .and_then(move |socket, endpoint| key_check::handshake(socket, psk, endpoint, report))
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux)
        .timeout(HANDSHAKE_TIMEOUT)
        .boxed())
}
