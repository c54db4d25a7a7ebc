//! The one place that wires the node together: store, upstreams, control plane (only with a
//! cluster key; without one the node runs alone), miss path, HTTP API.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::ClientAuth;
use crate::bridge::{FetcherService, P2pFleet};
use crate::config::{Config, FleetConfig, UpstreamFallback};
use crate::fetch::{
    BlobSource, BufferBudget, Fetcher, Fleet, PassThrough, PeerClient, PeerTimeouts, Sources,
    Swarm, UpstreamSource, Upstreams,
};
use crate::http_server;
use crate::metrics::Metrics;
use crate::p2p::{ClusterKey, KeyError, P2p, P2pConfig, P2pError};
use crate::peer_auth::{RequestSigner, RequestVerifier};
use crate::placement::Placement;
use crate::pull_feed::PullFeed;
use crate::push::Pusher;
use crate::registry::{self, AppState, Routing};
use crate::status::{FleetView, RecentErrors, StatusSource};
use crate::store::{Store, StoreError};
use crate::tls::{ServerTls, TlsError};
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
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] TlsError),
}

/// Loads everything the configuration names (upstream credentials, the cluster key) the way
/// [`run`] does, without opening the store or the network, and says what the node would run
/// as: `shoal run --check-config` for deployment pipelines and init containers.
pub fn check(config: &Config) -> Result<String, ServerError> {
    Upstreams::new(&config.routing, &config.client, &config.clock)?;
    let tls = config.server.tls.as_ref().map(ServerTls::load).transpose()?;
    config.fleet.peer_ca.as_deref().map(crate::tls::client_roots).transpose()?;
    let key = config.fleet.cluster_key.as_deref().map(ClusterKey::load).transpose()?;
    let fleet = match (&key, &config.fleet.site) {
        (None, _) => "alone (no cluster key)".to_owned(),
        (Some(_), None) => "a fleet member (cluster key loaded)".to_owned(),
        (Some(_), Some(site)) => format!("a fleet member of site {site} (cluster key loaded)"),
    };
    Ok(format!(
        "configuration is valid: registry API on {}{}, data in {}, upstreams {}, {fleet}",
        config.listen,
        if tls.is_some() { " (HTTPS)" } else { "" },
        config.store.root.display(),
        config.routing.upstreams.keys().cloned().collect::<Vec<_>>().join(", "),
    ))
}

/// Runs a node on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    run_with_feed(config, listener, shutdown, PullFeed::default()).await
}

/// [`run`], publishing every finished client pull to `pulls`: for a program that runs nodes
/// in its own process and shows what they do (`shoal demo`).
pub(crate) async fn run_with_feed(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    pulls: PullFeed,
) -> Result<(), ServerError> {
    // Before anything else: a certificate that cannot be used is the operator's to fix now.
    let tls = config.server.tls.as_ref().map(ServerTls::load).transpose()?;
    let peer_roots = config.fleet.peer_ca.as_deref().map(crate::tls::client_roots).transpose()?;
    let store_config = config.store.clone();
    let store_clock = config.clock.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_on(store_config, store_clock))
        .await
        .map_err(ServerError::Setup)??;
    let address = listener.local_addr().map_err(ServerError::Address)?;
    let mut metrics =
        Metrics::new(&config.metrics, config.routing.upstreams.keys().map(String::as_str));
    metrics.watch_store(store.clone());
    let metrics = Arc::new(metrics);
    let upstreams = Arc::new(
        Upstreams::new(&config.routing, &config.client, &config.clock)?
            .with_metrics(metrics.clone()),
    );

    let fleet_config = &config.fleet;
    let advertised = advertise_url(fleet_config, address, tls.is_some());
    let cluster_key = fleet_config.cluster_key.as_deref().map(ClusterKey::load).transpose()?;
    let service = Arc::new(FetcherService::new(metrics.clone()));
    let control = match &cluster_key {
        Some(key) => Some(
            start_control_plane(
                fleet_config,
                &config.store.root,
                key,
                advertised.clone(),
                &service,
                &metrics,
            )
            .await?,
        ),
        None => {
            log_running_alone(fleet_config);
            None
        }
    };
    let fleet: Option<Arc<dyn Fleet>> = control.as_ref().map(|(p2p, _)| {
        let fleet = P2pFleet::new(
            p2p.clone(),
            fleet_config.site.clone(),
            fleet_config.provider_budget,
            fleet_config.owner_timeout,
            metrics.clone(),
        );
        Arc::new(fleet) as Arc<dyn Fleet>
    });

    let peer_timeouts = PeerTimeouts {
        connect: config.client.connect_timeout,
        headers: fleet_config.peer_header_timeout,
        stall: fleet_config.peer_stall_timeout,
    };
    let peers = control.as_ref().zip(cluster_key.as_ref()).map(|((p2p, _), key)| {
        let signer = RequestSigner::new(key.request_key(), p2p.local_peer_id().to_string());
        let roots = peer_roots.clone().unwrap_or_default();
        Arc::new(PeerClient::new(signer, peer_timeouts, roots, metrics.clone()))
    });
    let swarm = fleet.clone().zip(peers.clone()).map(|(fleet, peers)| {
        Arc::new(Swarm::new(
            fleet,
            peers,
            metrics.clone(),
            fleet_config.peer_stall_timeout,
            fleet_config.upstream_per_site,
        ))
    });
    let upstream_for_misses: Arc<dyn BlobSource> = Arc::new(UpstreamSource::new(
        upstreams.clone(),
        fleet.clone(),
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
        swarm,
        miss: vec![upstream_for_misses],
        owner: vec![upstream_as_owner],
        peers,
        upload_slots: fleet_config.peer_upload_slots,
    };
    let auth = Arc::new(ClientAuth::new(config.auth.settings.clone()));
    warn_if_open(&config, address);
    let fetcher = Arc::new(
        Fetcher::new(store.clone(), upstreams, sources, fleet.clone(), config.tag_ttl)
            .with_clock(config.clock.clone())
            .with_repo_check(auth.restricts_names())
            .with_pass_through(PassThrough::new(
                config.auth.pass_through.clone(),
                config.auth.pass_through_ttl,
                config.clock.clone(),
            ))
            .with_buffer_budget(BufferBudget::new(
                config.server.buffer_memory,
                metrics.buffer_bytes.clone(),
            )),
    );
    service.set_fetcher(fetcher.clone());
    let placement =
        Placement::new(store.clone(), fetcher.clone(), fleet.clone(), fleet_config.replicas);
    placement.spawn_checks(fleet_config.placement_interval);
    placement.spawn_warm_list(config.warm.clone(), fleet_config.placement_interval, config.tag_ttl);
    service.set_placement(placement.clone());
    let pusher = Arc::new(Pusher::new(
        store.clone(),
        fetcher.clone(),
        placement.clone(),
        config.upload_timeout,
        auth.restricts_names() || !config.auth.pass_through.is_empty(),
    ));

    let stop = CancellationToken::new();
    let maintenance = tokio::spawn(store.clone().run_maintenance(stop.clone()));
    if !config.lifecycle.rules.is_empty() {
        tokio::spawn(apply_lifecycle(store.clone(), config.lifecycle.clone(), stop.clone()));
    }
    if let (Some((p2p, _)), Some(fleet)) = (&control, fleet) {
        tokio::spawn(count_peers(p2p.clone(), metrics.clone()));
        tokio::spawn(announce_store(store.clone(), fleet, stop.clone()));
    }

    let errors = Arc::new(RecentErrors::default());
    let view = control.as_ref().map(|(p2p, _)| FleetView {
        p2p: p2p.clone(),
        site: fleet_config.site.clone(),
        advertise_url: advertised,
    });
    let status = Arc::new(StatusSource::new(
        fetcher.clone(),
        metrics.clone(),
        errors.clone(),
        view,
        peer_roots.unwrap_or_default(),
    ));
    let server_metrics = metrics.clone();
    let state = AppState {
        fetcher,
        pusher,
        placement,
        metrics,
        status,
        errors,
        peer_auth: cluster_key.map(|key| Arc::new(RequestVerifier::new(key.request_key()))),
        auth,
        pulls,
        routing: Arc::new(Routing {
            default_upstream: config.routing.default_upstream.clone(),
            aliases: config.routing.aliases.clone(),
            hosted: config.routing.hosted.clone(),
        }),
    };
    tracing::info!(%address, data_dir = %config.store.root.display(), "shoal is serving the registry API");
    let router = registry::router(state);
    if let Some(tls) = &tls {
        tls.spawn_reloads(stop.clone());
    }
    http_server::serve(listener, router, &config.server, tls, server_metrics, shutdown).await;
    stop.cancel();
    if let Some((p2p, _)) = &control {
        p2p.shutdown();
    }
    if let Err(e) = maintenance.await {
        tracing::warn!(error = %e, "store maintenance task ended abnormally");
    }
    if let Some((_, task)) = control {
        let _ = task.await;
    }
    tracing::info!("shoal stopped");
    Ok(())
}

/// Starts the control plane under the cluster key; the service answers owner requests once
/// the fetcher is set.
async fn start_control_plane(
    fleet: &FleetConfig,
    data_dir: &Path,
    key: &ClusterKey,
    advertise_url: String,
    service: &Arc<FetcherService>,
    metrics: &Arc<Metrics>,
) -> Result<(P2p, JoinHandle<()>), ServerError> {
    let p2p_config = P2pConfig {
        listen: fleet.p2p_listen.clone(),
        bootstrap: fleet.bootstrap.clone(),
        bootstrap_dns: fleet.bootstrap_dns.clone(),
        mdns: fleet.mdns,
        cluster_key: key.clone(),
        site: fleet.site.clone(),
        advertise_url: advertise_url.clone(),
        provider_ttl: fleet.provider_ttl,
        republish: fleet.republish,
        identity_path: data_dir.join("p2p-identity"),
        metrics: metrics.clone(),
    };
    let (p2p, task) = P2p::start(p2p_config, service.clone()).await?;
    tracing::info!(peer_id = %p2p.local_peer_id(), listen = ?p2p.listen_addrs(), %advertise_url, "control plane up");
    Ok((p2p, task))
}

/// A node without a cluster key serves clients from its own store and the upstreams, and
/// nothing else: no libp2p, no peers. Joining a fleet is one file away; say how.
fn log_running_alone(fleet: &FleetConfig) {
    tracing::warn!(
        "no cluster key: running alone (no peers, no control plane). To form a fleet, run \
         `shoal key generate --out /etc/shoal/cluster.key` once, copy the file to every node, \
         and start each with `--cluster-key /etc/shoal/cluster.key`"
    );
    let ignored: Vec<&str> = [
        ("--bootstrap", !fleet.bootstrap.is_empty()),
        ("--bootstrap-dns", !fleet.bootstrap_dns.is_empty()),
        ("--site", fleet.site.is_some()),
        ("--advertise-addr", fleet.advertise_url.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect();
    if !ignored.is_empty() {
        tracing::warn!(?ignored, "fleet settings given without --cluster-key are ignored");
    }
}

/// Keeps the live-peer gauge up to date until the control plane stops.
async fn count_peers(mut p2p: P2p, metrics: Arc<Metrics>) {
    loop {
        metrics.fleet_peers.set(p2p.peers().len() as i64);
        if p2p.peers_changed().await.is_err() {
            return;
        }
    }
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
    // Pushed tags are found through their keys (see `fetch/manifests.rs`).
    match store.all_pushed_tags() {
        Ok(tags) => {
            for (registry, repo, tag) in tags {
                let target = crate::fetch::Target { registry, repo };
                fleet.provide(&shoal_protocol::Digest::from_raw(crate::fetch::tag_key(
                    &target, &tag,
                )));
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list pushed tags to announce them"),
    }
    // So are the sha512 aliases of held content (`fetch/aliases.rs`).
    match store.held_aliases() {
        Ok(aliases) => {
            for alias in aliases {
                fleet.provide(&shoal_protocol::Digest::from_raw(alias.dht_key()));
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list sha512 aliases to announce them"),
    }
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

/// The URL peers reach this node at: `--advertise-addr`, else the listen address, with a
/// wildcard replaced by this machine's first non-loopback address, over https when the node
/// serves TLS.
fn advertise_url(fleet: &FleetConfig, listen: SocketAddr, tls: bool) -> String {
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
    let scheme = if tls { "https" } else { "http" };
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{}", listen.port()),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{}", listen.port()),
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

/// Applies the lifecycle rules every interval until the node stops.
async fn apply_lifecycle(
    store: Store,
    lifecycle: crate::config::LifecycleConfig,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(lifecycle.interval) => {}
        }
        match store.apply_lifecycle(lifecycle.rules.clone()).await {
            Ok(removed) if !removed.is_empty() => {
                let bytes: u64 = removed.iter().map(|r| r.size).sum();
                tracing::info!(blobs = removed.len(), bytes, "lifecycle rules applied");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not apply the lifecycle rules; retried at the next interval")
            }
        }
    }
}
