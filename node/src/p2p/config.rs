//! The control plane's part of the node configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;

use super::ClusterKey;
use crate::metrics::Metrics;

/// Everything the swarm needs; the node's config layer fills it in.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/5001` (port 0 picks a free port).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and whenever they are not connected; `/p2p/<id>` is optional.
    pub bootstrap: Vec<Multiaddr>,
    /// `host:port` names re-resolved every minute; every address found is dialled.
    pub bootstrap_dns: Vec<String>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// The swarm is a libp2p private network under this key: nodes without it cannot
    /// connect. There is no control plane without one.
    pub cluster_key: ClusterKey,
    /// Locality label sent to peers, preferred when choosing a provider.
    pub site: Option<String>,
    /// The HTTP data-plane URL peers use to fetch from this node, e.g. `http://10.0.0.5:5000`.
    pub advertise_url: String,
    /// How long peers keep this node's provider records.
    pub provider_ttl: Duration,
    /// How often this node re-announces what it provides; must be shorter than the TTL.
    pub republish: Duration,
    /// Where the node's keypair lives (`<data-dir>/p2p-identity`).
    pub identity_path: PathBuf,
    /// Where handshakes refused for another cluster key are counted.
    pub metrics: Arc<Metrics>,
}

impl P2pConfig {
    pub const DEFAULT_PROVIDER_TTL: Duration = Duration::from_secs(30 * 60);
    pub const DEFAULT_REPUBLISH: Duration = Duration::from_secs(10 * 60);

    /// A configuration with the defaults and no peers: listen on the given addresses only.
    pub fn new(
        identity_path: PathBuf,
        advertise_url: String,
        listen: Vec<Multiaddr>,
        cluster_key: ClusterKey,
    ) -> Self {
        Self {
            listen,
            bootstrap: Vec::new(),
            bootstrap_dns: Vec::new(),
            mdns: false,
            cluster_key,
            site: None,
            advertise_url,
            provider_ttl: Self::DEFAULT_PROVIDER_TTL,
            republish: Self::DEFAULT_REPUBLISH,
            identity_path,
            metrics: Arc::default(),
        }
    }
}
