//! `shoal demo`: a fleet of real nodes on this machine, in this process, and a live view of
//! where each node got each manifest and layer it served (upstream, a peer, its own store).
//!
//! Everything lives in a temporary directory (the cluster key, each node's data, the nodes'
//! log) that Ctrl-C removes. The nodes are [`crate::server`] nodes, each on its own runtime
//! (`nodes.rs`); the view reads their [`crate::pull_feed`]s (`live.rs`), not their logs, which
//! go to a file (`logging.rs`); `banner.rs` says how to use them.

mod banner;
mod live;
mod logging;
mod nodes;

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::cli::DemoArgs;
use crate::config::{Config, ConfigError, FileConfig, RoutingConfig};
use crate::p2p::{ClusterKey, KeyError};
use banner::{NodeLine, UpstreamLine};
use nodes::{DemoNode, NodeExit};

/// How long the nodes may take to see each other, all of them reachable.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
const JOIN_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("cannot write the nodes' log: {0}")]
    Logging(String),
    #[error("the upstream flags are invalid: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot make the demo's cluster key: {0}")]
    Key(#[from] KeyError),
    #[error("{node} stopped: {detail}; its log is in {log}")]
    NodeStopped { node: String, detail: String, log: PathBuf },
    #[error(
        "the nodes did not all see each other within {waited:?} ({detail}); their log is in {log}"
    )]
    NotJoined { waited: Duration, detail: String, log: PathBuf },
}

impl DemoError {
    /// Whether the nodes' log explains this failure, so that it must outlive the demo.
    fn needs_log(&self) -> bool {
        matches!(self, Self::NodeStopped { .. } | Self::NotJoined { .. })
    }
}

/// Runs the demo until `shutdown` resolves (Ctrl-C) or a node fails.
pub async fn run(
    args: DemoArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DemoError> {
    let base = args.upstream.into_overrides();
    // The nodes differ only in ports and directories: resolving the flags once checks them
    // before anything is made, and says which upstreams every node has.
    let routing = Config::resolve(FileConfig::default(), base.clone())?.routing;
    let dir = tempfile::Builder::new().prefix("shoal-demo-").tempdir().map_err(|source| {
        DemoError::Io { what: "creating the demo's temporary directory".to_owned(), source }
    })?;
    let log = dir.path().join("nodes.log");
    logging::to_file(&log)?;
    let key = dir.path().join("cluster.key");
    ClusterKey::generate().save(&key)?;

    let (exits_tx, mut exits) = mpsc::unbounded_channel();
    let mut nodes = nodes::start(usize::from(args.nodes), dir.path(), &key, &base, &exits_tx)?;
    let outcome = tokio::select! {
        outcome = watch(&mut nodes, &routing, dir.path(), &log, &mut exits) => outcome,
        () = shutdown => Ok(()),
    };
    say("\nstopping the nodes…");
    for node in &nodes {
        node.stop();
    }
    for node in &mut nodes {
        node.join().await;
    }
    match &outcome {
        Err(e) if e.needs_log() => {
            let kept = dir.keep();
            say(&format!("kept {} for its log", kept.display()));
        }
        _ => {
            let path = dir.path().to_owned();
            dir.close().map_err(|source| DemoError::Io {
                what: format!("removing {}", path.display()),
                source,
            })?;
            say(&format!("stopped; removed {}", path.display()));
        }
    }
    outcome
}

/// Waits for the fleet, prints the banner, then a line per finished pull until a node stops.
async fn watch(
    nodes: &mut [DemoNode],
    routing: &RoutingConfig,
    dir: &Path,
    log: &Path,
    exits: &mut mpsc::UnboundedReceiver<NodeExit>,
) -> Result<(), DemoError> {
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let stopped = |exit: Option<NodeExit>| match exit {
        Some(NodeExit { node, result }) => DemoError::NodeStopped {
            node: names[node].clone(),
            detail: result.err().unwrap_or_else(|| "it ended without an error".to_owned()),
            log: log.to_owned(),
        },
        None => DemoError::NodeStopped {
            node: "every node".to_owned(),
            detail: "no node is left".to_owned(),
            log: log.to_owned(),
        },
    };
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let peer_ids = tokio::select! {
        joined = joined(&urls, log) => joined?,
        exit = exits.recv() => return Err(stopped(exit)),
    };
    let node_lines: Vec<NodeLine> = names
        .iter()
        .zip(&urls)
        .zip(peer_ids)
        .map(|((name, url), peer_id)| NodeLine { name: name.clone(), url: url.clone(), peer_id })
        .collect();
    let upstreams: Vec<UpstreamLine> = routing
        .upstreams
        .values()
        .map(|u| UpstreamLine {
            name: u.name.clone(),
            url: u.url.clone(),
            default: u.name == routing.default_upstream,
        })
        .collect();
    say(&banner::render(&node_lines, &upstreams, dir, log));

    let (view_tx, mut view) = mpsc::unbounded_channel();
    for (i, node) in nodes.iter_mut().enumerate() {
        if let Some(pulls) = node.pulls.take() {
            tokio::spawn(live::forward(i, pulls, view_tx.clone()));
        }
    }
    drop(view_tx);
    say(&live::header());
    loop {
        tokio::select! {
            Some(seen) = view.recv() => match seen {
                live::Seen::Pull { node, event } => say(&live::line(&names[node], &event)),
                live::Seen::Missed { node, count } => say(&live::missed(&names[node], count)),
            },
            exit = exits.recv() => return Err(stopped(exit)),
        }
    }
}

/// Waits until every node lists every node as a reachable member; their peer ids, in order.
async fn joined(urls: &[String], log: &Path) -> Result<Vec<String>, DemoError> {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut detail = "no node answered yet".to_owned();
    while tokio::time::Instant::now() < deadline {
        match fleet_view(urls).await {
            Ok(ids) => return Ok(ids),
            Err(why) => detail = why,
        }
        tokio::time::sleep(JOIN_POLL).await;
    }
    Err(DemoError::NotJoined { waited: JOIN_TIMEOUT, detail, log: log.to_owned() })
}

/// Each node's peer id if every node sees all of them reachable, else what is missing.
async fn fleet_view(urls: &[String]) -> Result<Vec<String>, String> {
    let mut ids = Vec::with_capacity(urls.len());
    for url in urls {
        let report = crate::status::fetch(url, None, None).await.map_err(|e| e.to_string())?;
        let reachable = report.members.iter().filter(|m| m.reachable).count();
        if reachable < urls.len() {
            return Err(format!("{url} sees {reachable} of {} members", urls.len()));
        }
        ids.push(report.node.peer_id.ok_or_else(|| format!("{url} has no peer id"))?);
    }
    Ok(ids)
}

/// Writes a line to the terminal. A reader that went away is no reason to stop the nodes.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
