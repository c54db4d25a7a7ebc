//! The one place that wires the node together: store, upstreams, control plane, miss path,
//! HTTP API.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::ClientAuth;
use crate::config::{Config, FleetConfig};
use crate::fetch::{
    BlobSource, Fetcher, Fleet, PeerClient, PeerTimeouts, Sources, Swarm, UpstreamFallback,
    UpstreamSource, Upstreams,
};
use crate::fleet::{FetcherService, P2pFleet};
use crate::http_server;
use crate::metrics::Metrics;
use crate::p2p::{ClusterKey, KeyError, P2p, P2pConfig, P2pError};
use crate::registry::{self, AppState, Routing};
use crate::store::{Store, StoreError};
use crate::upstream::UpstreamError;

/// Stored blobs announced at start per batch, and the pause between batches: about 250 new
/// DHT queries a second.
const ANNOUNCE_BATCH: usize = 50;
const ANNOUNCE_PAUSE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot set up the upstream clients: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("cannot read the cluster key: {0}")]
    ClusterKey(#[from] KeyError),
    #[error("cannot start the control plane: {0}")]
    P2p(#[from] P2pError),
    #[error("cannot read the listening address: {0}")]
    Address(std::io::Error),
    #[error("store setup did not finish: {0}")]
    Setup(tokio::task::JoinError),
}

/// Runs a node on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let store_config = config.store.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(store_config))
        .await
        .map_err(ServerError::Setup)??;
    let address = listener.local_addr().map_err(ServerError::Address)?;
    let metrics = Arc::new(Metrics::default());
    let upstreams = Arc::new(Upstreams::new(&config.routing, &config.client)?);

    let fleet_config = &config.fleet;
    let cluster_key = fleet_config.cluster_key.as_deref().map(ClusterKey::load).transpose()?;
    let advertise_url = advertise_url(fleet_config, address);
    let service = Arc::new(FetcherService::new(metrics.clone()));
    let p2p_config = P2pConfig {
        listen: fleet_config.p2p_listen.clone(),
        bootstrap: fleet_config.bootstrap.clone(),
        bootstrap_dns: fleet_config.bootstrap_dns.clone(),
        mdns: fleet_config.mdns,
        cluster_key: cluster_key.clone(),
        site: fleet_config.site.clone(),
        advertise_url: advertise_url.clone(),
        provider_ttl: fleet_config.provider_ttl,
        republish: fleet_config.republish,
        identity_path: config.store.root.join("p2p-identity"),
    };
    let (p2p, p2p_task) = P2p::start(p2p_config, service.clone()).await?;
    tracing::info!(peer_id = %p2p.local_peer_id(), listen = ?p2p.listen_addrs(), %advertise_url, "control plane up");
    let fleet: Arc<dyn Fleet> = Arc::new(P2pFleet::new(
        p2p.clone(),
        fleet_config.site.clone(),
        fleet_config.provider_budget,
        fleet_config.owner_timeout,
    ));

    let peer_token = cluster_key.as_ref().map(ClusterKey::peer_token);
    let peer_timeouts = PeerTimeouts {
        connect: config.client.connect_timeout,
        headers: fleet_config.peer_header_timeout,
        stall: fleet_config.peer_stall_timeout,
    };
    let peers = Arc::new(PeerClient::new(peer_token.clone(), peer_timeouts, metrics.clone()));
    let swarm = Arc::new(Swarm::new(
        fleet.clone(),
        peers.clone(),
        metrics.clone(),
        fleet_config.peer_stall_timeout,
        fleet_config.upstream_per_site,
    ));
    let upstream_for_misses: Arc<dyn BlobSource> = Arc::new(UpstreamSource::new(
        upstreams.clone(),
        Some(fleet.clone()),
        fleet_config.upstream_fallback,
        fleet_config.upstream_per_site,
        metrics.clone(),
    ));
    // Serving an owner request, this node is the owner: going upstream is its job.
    let upstream_as_owner: Arc<dyn BlobSource> = Arc::new(UpstreamSource::new(
        upstreams.clone(),
        None,
        UpstreamFallback::Always,
        false,
        metrics.clone(),
    ));
    let sources = Sources {
        swarm: Some(swarm),
        miss: vec![upstream_for_misses],
        owner: vec![upstream_as_owner],
        peers: Some(peers),
        upload_slots: fleet_config.peer_upload_slots,
    };
    let auth = Arc::new(ClientAuth::new(config.auth.settings.clone()));
    warn_if_open(&config, address);
    let fetcher = Arc::new(
        Fetcher::new(store.clone(), upstreams, sources, Some(fleet.clone()), config.tag_ttl)
            .with_repo_check(auth.restricts_names()),
    );
    service.set_fetcher(fetcher.clone());

    let mut watcher = p2p.clone();
    let gauge = metrics.clone();
    tokio::spawn(async move {
        loop {
            gauge
                .fleet_peers
                .store(watcher.peers().len() as u64, std::sync::atomic::Ordering::Relaxed);
            if watcher.peers_changed().await.is_err() {
                return;
            }
        }
    });

    let stop = CancellationToken::new();
    let maintenance = tokio::spawn(store.clone().run_maintenance(stop.clone()));
    tokio::spawn(announce_store(store.clone(), fleet, stop.clone()));

    let server_metrics = metrics.clone();
    let state = AppState {
        fetcher,
        metrics,
        peer_token: peer_token.map(Into::into),
        auth,
        routing: Arc::new(Routing {
            default_upstream: config.routing.default_upstream.clone(),
            aliases: config.routing.aliases.clone(),
        }),
    };
    tracing::info!(%address, data_dir = %config.store.root.display(), "shoal is serving the registry API");
    let router = registry::router(state);
    http_server::serve(listener, router, &config.server, server_metrics, shutdown).await;
    stop.cancel();
    p2p.shutdown();
    if let Err(e) = maintenance.await {
        tracing::warn!(error = %e, "store maintenance task ended abnormally");
    }
    let _ = p2p_task.await;
    tracing::info!("shoal stopped");
    Ok(())
}

/// The default of a node with no client authentication is to let anyone pull; say so once,
/// unless only this machine can reach it.
fn warn_if_open(config: &Config, address: SocketAddr) {
    if config.auth.open_by_default && !address.ip().is_loopback() {
        tracing::warn!(%address, "no client authentication is configured: anyone who reaches this address may pull through this node; configure [auth] or pass --anonymous-pull to say this is intended (see docs/configuration.md)");
    }
}

/// Announces every stored blob (after a restart the DHT has forgotten this node's records),
/// then withdraws each blob that leaves the store.
///
/// Each announcement is a DHT query of its own; a large store is announced in paced batches
/// so that a restart does not start tens of thousands of queries at once (libp2p paces its own
/// republishing the same way).
async fn announce_store(store: Store, fleet: Arc<dyn Fleet>, stop: CancellationToken) {
    let mut removals = store.subscribe_removals();
    let held = store.digests();
    if !held.is_empty() {
        tracing::info!(blobs = held.len(), "announcing stored blobs to the fleet");
        let started = std::time::Instant::now();
        for (i, batch) in held.chunks(ANNOUNCE_BATCH).enumerate() {
            for digest in batch {
                fleet.provide(digest);
            }
            let done = i * ANNOUNCE_BATCH + batch.len();
            if done < held.len() {
                if i % 50 == 49 {
                    tracing::info!(done, of = held.len(), "announcing stored blobs");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ANNOUNCE_PAUSE) => {}
                }
            }
        }
        tracing::info!(blobs = held.len(), elapsed = ?started.elapsed(), "stored blobs announced");
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            removed = removals.recv() => match removed {
                Ok(digest) => fleet.unprovide(&digest),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "missed eviction notices; their provider records expire with their TTL");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The HTTP URL peers reach this node at: `--advertise-addr`, else the listen address, with a
/// wildcard replaced by this machine's first non-loopback address.
fn advertise_url(fleet: &FleetConfig, listen: SocketAddr) -> String {
    if let Some(url) = &fleet.advertise_url {
        return url.trim_end_matches('/').to_owned();
    }
    let ip = if listen.ip().is_unspecified() {
        let found = if_addrs::get_if_addrs().ok().and_then(|addrs| {
            addrs.into_iter().map(|a| a.ip()).find(|ip| ip.is_ipv4() && !ip.is_loopback())
        });
        found.unwrap_or(IpAddr::from([127, 0, 0, 1]))
    } else {
        listen.ip()
    };
    match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{}", listen.port()),
        IpAddr::V6(v6) => format!("http://[{v6}]:{}", listen.port()),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
