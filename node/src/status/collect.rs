//! Gathers the status report from the parts that know each piece: the fetcher (store and
//! downloads), the metrics (bytes served), the control plane (members), the error ring. The
//! HTTP layer only asks for the finished report.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;

use super::errors::RecentErrors;
use super::report::{Download, Member, NodeInfo, ServedReport, StatusReport, StoreReport};
use crate::fetch::Fetcher;
use crate::metrics::Metrics;
use crate::p2p::P2p;

/// How long a member's data plane may take to answer the reachability probe: a report is
/// for a person waiting at a terminal.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// This node's place in the fleet, when it has a control plane.
pub struct FleetView {
    pub p2p: P2p,
    pub site: Option<String>,
    /// The URL peers reach this node's data plane at.
    pub advertise_url: String,
}

pub struct StatusSource {
    fetcher: Arc<Fetcher>,
    metrics: Arc<Metrics>,
    errors: Arc<RecentErrors>,
    fleet: Option<FleetView>,
    http: reqwest::Client,
}

impl StatusSource {
    pub fn new(
        fetcher: Arc<Fetcher>,
        metrics: Arc<Metrics>,
        errors: Arc<RecentErrors>,
        fleet: Option<FleetView>,
        peer_roots: Vec<reqwest::Certificate>,
    ) -> Self {
        let mut builder =
            reqwest::Client::builder().timeout(PROBE_TIMEOUT).connect_timeout(PROBE_TIMEOUT);
        // Members serving HTTPS are probed with the roots the data plane trusts.
        for root in peer_roots {
            builder = builder.add_root_certificate(root);
        }
        let http = builder.build().unwrap_or_default();
        Self { fetcher, metrics, errors, fleet, http }
    }

    pub async fn report(&self) -> StatusReport {
        let generated_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let stats = self.fetcher.store_stats();
        let [local, peer, upstream] = self.metrics.served_totals();
        let downloads = (self.fetcher.downloads().await.into_iter())
            .map(|d| Download {
                digest: d.digest.to_string(),
                bytes: d.written,
                size: d.size,
                source: d.source,
            })
            .collect();
        StatusReport {
            generated_at,
            node: NodeInfo {
                version: crate::cli::VERSION.to_owned(),
                peer_id: self.fleet.as_ref().map(|f| f.p2p.local_peer_id().to_string()),
                site: self.fleet.as_ref().and_then(|f| f.site.clone()),
            },
            members: self.members().await,
            store: StoreReport {
                bytes: stats.bytes,
                max_bytes: stats.max_size,
                blobs: stats.blobs,
                evictions: stats.evictions,
            },
            served: ServedReport::new(local, peer, upstream),
            downloads,
            errors: self.errors.list(),
        }
    }

    /// This node, then every live peer, each probed on its data plane at once.
    async fn members(&self) -> Vec<Member> {
        let Some(fleet) = &self.fleet else { return Vec::new() };
        let mut peers = fleet.p2p.peers();
        peers.sort_by_key(|p| p.id.to_string());
        let probes = peers.iter().map(|p| self.reachable(&p.http_url));
        let reachable = join_all(probes).await;
        let local = Member {
            peer_id: fleet.p2p.local_peer_id().to_string(),
            site: fleet.site.clone(),
            address: fleet.advertise_url.clone(),
            reachable: true,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            local: true,
        };
        let others = peers.into_iter().zip(reachable).map(|(p, reachable)| Member {
            peer_id: p.id.to_string(),
            site: p.site,
            address: p.http_url,
            reachable,
            version: p.version,
            local: false,
        });
        std::iter::once(local).chain(others).collect()
    }

    async fn reachable(&self, http_url: &str) -> bool {
        let url = format!("{}/healthz", http_url.trim_end_matches('/'));
        self.http.get(url).send().await.is_ok_and(|r| r.status().is_success())
    }
}
