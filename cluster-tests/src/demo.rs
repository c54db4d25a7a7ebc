//! `shoal demo` run as a person runs it: a process whose terminal output (written to a file
//! here) names its nodes and then shows a line per finished pull, which this module reads back.

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::ChildProcess;
use crate::shoal::shoal_binary;
use crate::{HarnessError, Result};

/// How long the demo may take to start its nodes and see them joined.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The live view's header: the demo prints it once its banner is out.
const VIEW_HEADER: &str = "NODE    KIND";
/// The banner's line that names the demo's directory.
const DIR_LINE: &str = "Their data, key and log are in ";

/// A node as the demo's banner names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoNode {
    /// `node-1`, as the live view names it.
    pub name: String,
    /// `IP:PORT`, as a registry host in image references.
    pub host: String,
    /// The node's libp2p peer id (base58).
    pub peer_id: String,
}

/// One line of the live view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoPull {
    pub node: String,
    /// `manifest` or `blob`.
    pub kind: String,
    /// `registry/repository@sha256:<12 hex>…` or `registry/repository:tag`.
    pub what: String,
    /// `upstream`, `peer` or `local`; `None` for a failed pull.
    pub source: Option<String>,
    pub line: String,
}

/// A running `shoal demo`. Dropping it kills the process.
#[derive(Debug)]
pub struct Demo {
    process: ChildProcess,
    output: PathBuf,
    pub nodes: Vec<DemoNode>,
    /// The demo's own temporary directory, as its banner names it.
    pub dir: PathBuf,
    _logs: TempDir,
}

impl Demo {
    /// Starts `shoal demo ARGS...` and waits for its live view to begin.
    pub async fn start(args: &[&str]) -> Result<Self> {
        let logs = tempfile::Builder::new()
            .prefix("shoal-demo-test-")
            .tempdir()
            .map_err(|source| HarnessError::io("creating the demo's log directory", source))?;
        let output = logs.path().join("stdout");
        let mut command = Command::new(shoal_binary()?);
        command.arg("demo").args(args).current_dir(logs.path());
        // Stopped as a person stops it, so that it removes its directory even when a test fails.
        let mut process =
            ChildProcess::spawn("shoal demo", command, &output, &logs.path().join("stderr"))?
                .terminate_on_drop();
        let read = || std::fs::read_to_string(&output).unwrap_or_default();
        process.wait_until(START_TIMEOUT, || async { read().contains(VIEW_HEADER) }).await?;
        let banner = read();
        let nodes: Vec<DemoNode> = banner.lines().filter_map(node_line).collect();
        let dir = banner
            .lines()
            .find_map(|l| l.strip_prefix(DIR_LINE).map(|dir| PathBuf::from(dir.trim())))
            .ok_or_else(|| HarnessError::Timeout {
                what: format!("a data directory in {banner}"),
            })?;
        Ok(Self { process, output, nodes, dir, _logs: logs })
    }

    /// Everything the demo printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// The live view's lines so far.
    pub fn pulls(&self) -> Vec<DemoPull> {
        let output = self.output();
        let Some((_, view)) = output.split_once(VIEW_HEADER) else { return Vec::new() };
        view.lines().filter_map(pull_line).collect()
    }

    /// Waits until the view has a line that `wanted` takes, and returns it.
    pub async fn wait_for_pull(
        &self,
        timeout: Duration,
        wanted: impl Fn(&DemoPull) -> bool,
    ) -> Result<DemoPull> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pull) = self.pulls().into_iter().find(|p| wanted(p)) {
                return Ok(pull);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(HarnessError::Timeout {
                    what: format!("a pull line in the demo's output:\n{}", self.output()),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ctrl-C: SIGINT, then how the demo exited, if it did within `timeout`.
    pub fn interrupt(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.signal("INT", timeout)
    }
}

/// `  node-1  http://127.0.0.1:PORT  peer ID`.
fn node_line(line: &str) -> Option<DemoNode> {
    let mut words = line.split_whitespace();
    let name = words.next().filter(|w| w.starts_with("node-"))?;
    let host = words.next()?.strip_prefix("http://")?;
    let peer_id = match (words.next(), words.next()) {
        (Some("peer"), Some(id)) => id,
        _ => return None,
    };
    Some(DemoNode { name: name.to_owned(), host: host.to_owned(), peer_id: peer_id.to_owned() })
}

/// `node-2  blob  docker.io/library/app@sha256:4f1c…  3.3 MiB  from peer  184 ms`.
fn pull_line(line: &str) -> Option<DemoPull> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [node, kind, what, _size, _unit, outcome, rest @ ..] = words.as_slice() else {
        return None;
    };
    if !node.starts_with("node-") {
        return None;
    }
    let source = match (*outcome, rest.first()) {
        ("from", Some(source)) => Some((*source).to_owned()),
        ("FAILED", _) => None,
        _ => return None,
    };
    Some(DemoPull {
        node: (*node).to_owned(),
        kind: (*kind).to_owned(),
        what: (*what).to_owned(),
        source,
        line: line.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_banner_and_the_view() {
        let node = node_line("  node-2  http://127.0.0.1:4001  peer 12D3KooWabc").unwrap();
        assert_eq!(node.host, "127.0.0.1:4001");
        assert_eq!(node.peer_id, "12D3KooWabc");
        assert!(node_line("  docker.io  http://127.0.0.1:9").is_none());
        let pull = pull_line(
            "node-2  blob     docker.io/library/app@sha256:4f1c1d0e9a3b…    3.3 MiB  from peer    184 ms",
        )
        .unwrap();
        assert_eq!(pull.source.as_deref(), Some("peer"));
        assert_eq!(pull.what, "docker.io/library/app@sha256:4f1c1d0e9a3b…");
        let failed =
            pull_line("node-1  manifest docker.io/library/app:v1  0 B  FAILED 502: unavailable")
                .unwrap();
        assert_eq!(failed.source, None);
    }
}
