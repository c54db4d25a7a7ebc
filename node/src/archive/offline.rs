//! `shoal import FILE --data-dir DIR`: an import with no node running, for a site whose nodes
//! are seeded before they start (or a data directory prepared on one machine and copied).
//!
//! The import goes through a real node all the same — started in this process on a loopback
//! port, on that data directory, alone, letting only this process push — so the archive is
//! checked, stored, pinned and tagged exactly as an import into a running fleet would be. When
//! the fleet starts, its members place the pinned images on their replicas.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ImportReport, NodeClient};
use crate::auth::Action;
use crate::config::{AuthEntry, Config, FileConfig, Overrides, RuleEntry};

/// How long the in-process node may take to open its store and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Imports `archive` into the store at `data_dir`, read with the configuration at `config` (for
/// its hosted names, size cap and upstreams) and `hosted`.
pub fn import_into(
    archive: &Path,
    data_dir: &Path,
    config: Option<&Path>,
    hosted: &[String],
) -> Result<ImportReport, String> {
    let mut file = match config {
        Some(path) => FileConfig::load(path).map_err(|e| e.to_string())?,
        None => FileConfig::default(),
    };
    // Only this process reaches the loopback port, and it may push everything.
    file.auth = Some(AuthEntry {
        rule: vec![RuleEntry {
            prefix: "*".to_owned(),
            users: Vec::new(),
            anonymous: true,
            allow: vec![Action::Pull, Action::Push],
        }],
        ..AuthEntry::default()
    });
    file.cluster_key = None;
    file.warm = None;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot bind a loopback port for the import: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let overrides = Overrides {
        listen: Some(address.to_string()),
        data_dir: Some(data_dir.to_owned()),
        hosted: hosted.to_vec(),
        mdns: Some(false),
        ..Overrides::default()
    };
    let config = Config::resolve(file, overrides).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        let mut node =
            tokio::spawn(crate::server::run(config, listener, stop.clone().cancelled_owned()));
        let url = format!("http://{address}");
        let client = NodeClient::new(&url, None, None).map_err(|e| e.to_string())?;
        tokio::select! {
            ended = &mut node => {
                let why = match ended {
                    Ok(Ok(())) => "it stopped".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(format!(
                    "cannot open {} for the import: {why} (is a node running on it? then import \
                     through it with --node)",
                    data_dir.display()
                ));
            }
            ready = wait_ready(&url) => ready?,
        }
        let result = super::import(&client, archive).await.map_err(|e| e.to_string());
        stop.cancel();
        match node.await {
            Ok(Ok(())) => result,
            Ok(Err(e)) => result.and(Err(format!("the import's node failed: {e}"))),
            Err(e) => result.and(Err(format!("the import's node failed: {e}"))),
        }
    })
}

async fn wait_ready(url: &str) -> Result<(), String> {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if http.get(format!("{url}/v2/")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the import's node did not answer at {url} in time"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
