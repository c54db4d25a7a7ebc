//! The fleet settings, checked: how the node finds its peers and works with them
//! (control-plane addresses, discovery, key, site, owner and peer timeouts, replicas).

use std::path::PathBuf;
use std::time::Duration;

use super::file::FileConfig;
use super::{
    ConfigError, DEFAULT_OWNER_TIMEOUT, DEFAULT_P2P_LISTEN, DEFAULT_PEER_HEADER_TIMEOUT,
    DEFAULT_PEER_STALL_TIMEOUT, DEFAULT_PEER_UPLOAD_SLOTS, DEFAULT_PLACEMENT_INTERVAL,
    DEFAULT_PROVIDER_BUDGET, DEFAULT_REPLICAS, Overrides, list,
};
use crate::p2p::{Multiaddr, P2pConfig};

/// How the node finds and works with its peers.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub p2p_listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub bootstrap_dns: Vec<String>,
    pub mdns: bool,
    /// The file made by `shoal key generate`.
    pub cluster_key: Option<PathBuf>,
    pub site: Option<String>,
    /// A site's owner of a digest fetches it upstream instead of asking the fleet's owner.
    pub upstream_per_site: bool,
    /// The HTTP URL peers fetch from; derived from `listen` when not given.
    pub advertise_url: Option<String>,
    /// CA certificates (PEM) that members' TLS certificates are checked against, besides the
    /// public roots.
    pub peer_ca: Option<PathBuf>,
    pub upstream_fallback: UpstreamFallback,
    pub provider_ttl: Duration,
    pub republish: Duration,
    /// How long a miss waits for the DHT to name providers.
    pub provider_budget: Duration,
    /// How long a miss waits for the owner to accept a request.
    pub owner_timeout: Duration,
    /// A peer that has not answered a data-plane request's headers after this long is skipped.
    pub peer_header_timeout: Duration,
    /// A peer transfer that delivers no byte for this long is abandoned and resumed elsewhere.
    pub peer_stall_timeout: Duration,
    /// Pieces of one blob this node sends to peers at once; more askers are told "busy".
    pub peer_upload_slots: usize,
    /// Members that keep a pinned image unless its pin says otherwise.
    pub replicas: u32,
    /// How often the images this node keeps are checked on the members they are placed on.
    pub placement_interval: Duration,
}

/// Whether a node that is not a digest's owner may fetch it upstream when the owner fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamFallback {
    #[default]
    Always,
    Never,
}

fn multiaddrs(texts: &[String]) -> Result<Vec<Multiaddr>, ConfigError> {
    texts.iter().map(|t| t.parse().map_err(|_| ConfigError::Multiaddr(t.clone()))).collect()
}

pub(super) fn resolve_fleet(file: &FileConfig, o: &Overrides) -> Result<FleetConfig, ConfigError> {
    let mut p2p_listen = list(&o.p2p_listen, &file.p2p_listen);
    if p2p_listen.is_empty() {
        p2p_listen.push(DEFAULT_P2P_LISTEN.to_owned());
    }
    let fallback = o.upstream_fallback.clone().or_else(|| file.upstream_fallback.clone());
    let upstream_fallback = match fallback.as_deref() {
        None | Some("always") => UpstreamFallback::Always,
        Some("never") => UpstreamFallback::Never,
        Some(other) => return Err(ConfigError::Fallback(other.to_owned())),
    };
    let provider_ttl = file.provider_ttl.map_or(P2pConfig::DEFAULT_PROVIDER_TTL, |d| d.0);
    let republish = file.provider_republish.map_or(P2pConfig::DEFAULT_REPUBLISH, |d| d.0);
    if republish >= provider_ttl {
        return Err(ConfigError::Republish { republish, ttl: provider_ttl });
    }
    let replicas = o.replicas.or(file.replicas).unwrap_or(DEFAULT_REPLICAS);
    if replicas == 0 || replicas > shoal_protocol::peer::MAX_REPLICAS {
        return Err(ConfigError::Replicas(replicas));
    }
    Ok(FleetConfig {
        p2p_listen: multiaddrs(&p2p_listen)?,
        bootstrap: multiaddrs(&list(&o.bootstrap, &file.bootstrap))?,
        bootstrap_dns: list(&o.bootstrap_dns, &file.bootstrap_dns),
        mdns: o.mdns.or(file.mdns).unwrap_or(true),
        cluster_key: o.cluster_key.clone().or_else(|| file.cluster_key.clone()),
        site: o.site.clone().or_else(|| file.site.clone()),
        upstream_per_site: o.upstream_per_site.or(file.upstream_per_site).unwrap_or(false),
        advertise_url: o.advertise_addr.clone().or_else(|| file.advertise_addr.clone()),
        peer_ca: o.peer_ca.clone().or_else(|| file.peer_ca.clone()),
        upstream_fallback,
        provider_ttl,
        republish,
        provider_budget: file.provider_budget.map_or(DEFAULT_PROVIDER_BUDGET, |d| d.0),
        owner_timeout: file.owner_timeout.map_or(DEFAULT_OWNER_TIMEOUT, |d| d.0),
        peer_header_timeout: file.peer_header_timeout.map_or(DEFAULT_PEER_HEADER_TIMEOUT, |d| d.0),
        peer_stall_timeout: file.peer_stall_timeout.map_or(DEFAULT_PEER_STALL_TIMEOUT, |d| d.0),
        peer_upload_slots: file.peer_upload_slots.unwrap_or(DEFAULT_PEER_UPLOAD_SLOTS).max(1),
        replicas,
        placement_interval: o
            .placement_interval
            .or(file.placement_interval)
            .map_or(DEFAULT_PLACEMENT_INTERVAL, |d| d.0)
            .max(Duration::from_secs(1)),
    })
}
