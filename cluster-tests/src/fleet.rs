//! A fleet of real `shoal` nodes joined through the first one, and the metrics that show where
//! each node's bytes came from.

use std::time::Duration;

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
    let http = reqwest::Client::builder()
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
