//! The demo's nodes: real nodes ([`crate::server`]) in this process, each on a tokio runtime of
//! its own, as a machine of its own would be, on 127.0.0.1 ports the system picked, with its
//! data in the demo's directory and every other node as a bootstrap peer.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::DemoError;
use crate::config::{Config, FileConfig, Overrides};
use crate::pull_feed::{PullEvent, PullFeed};
use crate::server;

/// Worker threads per node: enough for a demo's pulls, few enough for three nodes on a laptop.
const WORKERS: usize = 2;
/// How long a stopped node's blocking tasks (store writes) get to finish.
const RUNTIME_GRACE: Duration = Duration::from_secs(5);

/// A node that ended, and how.
#[derive(Debug)]
pub(super) struct NodeExit {
    pub node: usize,
    pub result: Result<(), String>,
}

/// A running node.
pub(super) struct DemoNode {
    pub name: String,
    pub url: String,
    /// Its finished client pulls, from the moment it started.
    pub pulls: Option<broadcast::Receiver<PullEvent>>,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

/// Where a node will listen, picked before any node starts so that each can name the others.
struct Slot {
    listener: TcpListener,
    p2p: TcpListener,
}

impl Slot {
    fn bind() -> Result<Self, DemoError> {
        let bind = |what: &str| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| DemoError::Io {
                what: format!("binding a free port on 127.0.0.1 for {what}"),
                source,
            })
        };
        Ok(Self { listener: bind("the registry API")?, p2p: bind("libp2p")? })
    }

    fn port(listener: &TcpListener) -> Result<SocketAddr, DemoError> {
        listener
            .local_addr()
            .map_err(|source| DemoError::Io { what: "reading a bound port".to_owned(), source })
    }
}

/// Starts `count` nodes under `dir` with the cluster key at `key`; `base` carries the upstream
/// flags. Each node's end is reported on `exits`.
pub(super) fn start(
    count: usize,
    dir: &Path,
    key: &Path,
    base: &Overrides,
    exits: &mpsc::UnboundedSender<NodeExit>,
) -> Result<Vec<DemoNode>, DemoError> {
    let slots: Vec<Slot> = (0..count).map(|_| Slot::bind()).collect::<Result<_, _>>()?;
    let p2p: Vec<String> = slots
        .iter()
        .map(|s| Ok(format!("/ip4/127.0.0.1/tcp/{}", Slot::port(&s.p2p)?.port())))
        .collect::<Result<_, DemoError>>()?;
    let mut nodes = Vec::with_capacity(count);
    for (i, slot) in slots.into_iter().enumerate() {
        let name = format!("node-{}", i + 1);
        let address = Slot::port(&slot.listener)?;
        let overrides = Overrides {
            listen: Some(address.to_string()),
            data_dir: Some(dir.join(&name)),
            p2p_listen: vec![p2p[i].clone()],
            bootstrap: p2p
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| a.clone())
                .collect(),
            // The nodes know each other; mDNS would only reach out to the LAN.
            mdns: Some(false),
            cluster_key: Some(key.to_owned()),
            ..base.clone()
        };
        let config = Config::resolve(FileConfig::default(), overrides)?;
        // libp2p binds the port itself: give it back just before the node starts.
        drop(slot.p2p);
        nodes.push(DemoNode::spawn(i, name, address, config, slot.listener, exits.clone())?);
    }
    Ok(nodes)
}

impl DemoNode {
    fn spawn(
        index: usize,
        name: String,
        address: SocketAddr,
        config: Config,
        listener: TcpListener,
        exits: mpsc::UnboundedSender<NodeExit>,
    ) -> Result<Self, DemoError> {
        let io = |what: String| move |source| DemoError::Io { what, source };
        listener.set_nonblocking(true).map_err(io(format!("setting up {address}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name(&name)
            .enable_all()
            .build()
            .map_err(io(format!("starting the runtime of {name}")))?;
        let feed = PullFeed::default();
        let pulls = feed.subscribe();
        let stop = CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let result = runtime.block_on(async move {
                    // A listener joins the runtime it is first used on.
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
                    server::run_with_feed(config, listener, stopped, feed)
                        .await
                        .map_err(|e| e.to_string())
                });
                runtime.shutdown_timeout(RUNTIME_GRACE);
                let _ = exits.send(NodeExit { node: index, result });
            })
            .map_err(io(format!("starting the thread of {name}")))?;
        Ok(Self {
            name,
            url: format!("http://{address}"),
            pulls: Some(pulls),
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the node to stop; [`DemoNode::join`] waits for it.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits for the node's thread to end (after [`DemoNode::stop`]).
    pub async fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let name = self.name.clone();
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(())) => {}
                _ => tracing::warn!(node = %name, "the node's thread ended abnormally"),
            }
        }
    }
}

impl Drop for DemoNode {
    /// A node nobody holds any more stops (nodes started before one that failed to start,
    /// say); its thread winds it down on its own.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
