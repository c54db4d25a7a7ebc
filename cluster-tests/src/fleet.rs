//! A fleet of real `shoal` nodes joined through the first one, the metrics that show where
//! each node's bytes came from, and what a fault test reads: a node's blob files, its log, a
//! blob pulled and checked against its digest.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use shoal_protocol::Digest;

use crate::{HarnessError, Result, ShoalNode, ShoalOptions};

/// How long a fleet may take to see itself whole.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `n` nodes with `options`, every node after the first bootstrapping to the first,
/// and waits until each sees all the others.
pub async fn start_fleet(n: usize, options: ShoalOptions) -> Result<Vec<ShoalNode>> {
    let first = ShoalNode::start(options.clone()).await?;
    let seed = options.bootstrap(&first);
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(ShoalNode::start(seed.clone()).await?);
    }
    wait_for_peers(&nodes, n - 1).await?;
    Ok(nodes)
}

/// Waits until every node reports `peers` live peers.
pub async fn wait_for_peers(nodes: &[ShoalNode], peers: usize) -> Result<()> {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    for node in nodes {
        loop {
            if metric(node, "shoal_fleet_peers").await? >= peers as u64 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(HarnessError::Timeout {
                    what: format!("node {} to see {peers} peers", node.url()),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// One value from a node's `/metrics`.
pub async fn metric(node: &ShoalNode, name: &str) -> Result<u64> {
    let url = format!("{}/metrics", node.url());
    let http = crate::pki::client_builder(node.tls())?
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|source| HarnessError::http(&url, source))?;
    let text = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|source| HarnessError::http(&url, source))?
        .text()
        .await
        .map_err(|source| HarnessError::http(&url, source))?;
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok());
    value.ok_or_else(|| HarnessError::NoMetric { url, name: name.to_owned() })
}

/// The node that fetched a blob of `size` bytes from the upstream (its owner), by its
/// `shoal_upstream_bytes_total`; the last such node if several did.
pub async fn upstream_fetcher(nodes: &[ShoalNode], size: u64) -> Result<Option<usize>> {
    let mut fetcher = None;
    for (i, node) in nodes.iter().enumerate() {
        if metric(node, "shoal_upstream_bytes_total").await? >= size {
            fetcher = Some(i);
        }
    }
    Ok(fetcher)
}

/// Where `node` stores the blob `digest` once it holds it.
pub fn blob_file(node: &ShoalNode, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    node.data_dir().join("blobs/sha256").join(&hex[..2]).join(&hex)
}

/// Waits until `check` holds, up to `timeout`.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check()
}

/// Every node's log, to print when an assertion fails.
pub fn logs(nodes: &[(&str, &ShoalNode)]) -> String {
    let mut out = String::new();
    for (name, node) in nodes {
        let log = std::fs::read_to_string(node.log_path()).unwrap_or_else(|e| e.to_string());
        out.push_str(&format!("\n===== node {name} ({}) =====\n{log}", node.url()));
    }
    out
}

/// GETs `digest` of `repo` through `node` and checks every byte against the digest; the error
/// says how far the body got.
pub async fn get_verified(
    node: &ShoalNode,
    repo: &str,
    digest: &Digest,
) -> std::result::Result<u64, String> {
    let url = format!("{}/v2/{repo}/blobs/{digest}", node.url());
    let http = reqwest::Client::builder().no_proxy().build().map_err(|e| e.to_string())?;
    let response = http.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: {}", response.status()));
    }
    let mut verifier = digest.verifier();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| format!("GET {url} after {} bytes: {e}", verifier.len()))?;
        verifier.update(&chunk);
    }
    verifier.finish().map_err(|mismatch| format!("GET {url}: {mismatch}"))
}

/// Starts a node on every LAN host, each after the first joining through the first, with the
/// options `for_host` gives; waits until each sees all the others.
pub async fn start_on_hosts(
    hosts: &[crate::lan::LanHost],
    for_host: impl Fn(&crate::lan::LanHost) -> ShoalOptions,
) -> Result<Vec<ShoalNode>> {
    let mut nodes: Vec<ShoalNode> = Vec::new();
    for host in hosts {
        let mut options = for_host(host).on(host);
        if let Some(first) = nodes.first() {
            options = options.bootstrap(first);
        }
        nodes.push(ShoalNode::start(options).await?);
    }
    wait_for_peers(&nodes, hosts.len() - 1).await?;
    Ok(nodes)
}

/// Every host pulls `reference` (`REPO:TAG`) through its own node with skopeo, run on the
/// host itself, all at the same moment; the copies, in the hosts' order.
pub async fn pull_on_every_host(
    nodes: &[ShoalNode],
    hosts: &[crate::lan::LanHost],
    reference: &str,
    out: &std::path::Path,
) -> Result<Vec<crate::clients::skopeo::DirImage>> {
    use crate::clients::skopeo::{CopyOptions, Skopeo};
    let pulls: Vec<_> = nodes
        .iter()
        .zip(hosts)
        .enumerate()
        .map(|(i, (node, host))| {
            let source = format!("{}/{reference}", node.host());
            let dest = out.join(format!("node-{i}"));
            let options = CopyOptions { on: Some(host.clone()), ..CopyOptions::default() };
            tokio::spawn(async move { Skopeo::new()?.copy(&source, &dest, &options).await })
        })
        .collect();
    let mut copies = Vec::new();
    for pull in pulls {
        let joined =
            pull.await.map_err(|e| HarnessError::io("a pull task", std::io::Error::other(e)))?;
        copies.push(joined?);
    }
    Ok(copies)
}
