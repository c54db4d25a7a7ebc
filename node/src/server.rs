//! The one place that wires the node together: store, upstreams, miss path, HTTP API.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::fetch::{BlobSource, Fetcher, Sources, UpstreamFallback, UpstreamSource, Upstreams};
use crate::metrics::Metrics;
use crate::registry::{self, AppState, Routing};
use crate::store::{Store, StoreError};
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot set up the upstream clients: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
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
    let upstreams = Arc::new(Upstreams::new(&config.routing, &config.client)?);
    let metrics = Arc::new(Metrics::default());
    let upstream: Arc<dyn BlobSource> = Arc::new(UpstreamSource::new(
        upstreams.clone(),
        None,
        UpstreamFallback::Always,
        metrics.clone(),
    ));
    let sources = Sources { miss: vec![upstream.clone()], owner: vec![upstream] };
    let fetcher = Fetcher::new(store.clone(), upstreams, sources, None, config.tag_ttl);
    let state = AppState {
        fetcher: Arc::new(fetcher),
        metrics,
        peer_token: None,
        routing: Arc::new(Routing {
            default_upstream: config.routing.default_upstream.clone(),
            aliases: config.routing.aliases.clone(),
        }),
    };

    let stop = CancellationToken::new();
    let maintenance = tokio::spawn(store.clone().run_maintenance(stop.clone()));

    let address = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!(%address, data_dir = %config.store.root.display(), "shoal is serving the registry API");
    let served =
        axum::serve(listener, registry::router(state)).with_graceful_shutdown(shutdown).await;
    stop.cancel();
    if let Err(e) = maintenance.await {
        tracing::warn!(error = %e, "store maintenance task ended abnormally");
    }
    tracing::info!("shoal stopped");
    served.map_err(ServerError::Serve)
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
