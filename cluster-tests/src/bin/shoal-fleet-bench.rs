//! `shoal-fleet-bench`: what a fleet costs the upstream, and how fast it fills, against one
//! `docker-registry` pull-through proxy per node.
//!
//! For N nodes (default 4, 8, 16) it pushes one image with a large layer to a real
//! `docker-registry` origin, then has every node GET the layer and the config at the same
//! instant, and reports the origin's GETs per unique blob (from its access log) and the time
//! until every node held the layer. The baseline is N `docker-registry` proxies, each asked
//! once.
//!
//! Then the data plane on its own: node A holds a layer of `--peer-mib` (default 1024); a
//! fresh node B joins and pulls it, so every byte crosses from A to B (B verifies, stores and
//! serves it to the client as it arrives). B's pull is compared with A's own hot GET; best of
//! three fresh Bs against best of three hot GETs.
//!
//! Use a release build: `SHOAL_BIN=target/release/shoal`.
//! Usage: `shoal-fleet-bench [--size-mib 512] [--nodes 4,8,16] [--peer-mib 1024]`
//! (`--nodes 0` or `--peer-mib 0` leaves that part out).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use shoal_cluster_tests::bench::{download, get_discarding};
use shoal_cluster_tests::fleet::{metric, start_fleet, wait_for_peers};
use shoal_cluster_tests::image;
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools};

/// Fresh nodes that pull from the peer, and hot GETs of the holder, in the data-plane part.
const PEER_ROUNDS: usize = 3;

/// GETs every path from every base URL at once; returns the seconds until all finished.
async fn pull_everywhere(bases: &[String], paths: &[String], sizes: &[u64]) -> Result<f64> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for base in bases {
        for (path, size) in paths.iter().zip(sizes) {
            let (http, url, size) = (http.clone(), format!("{base}{path}"), *size);
            tasks.push(tokio::spawn(async move {
                let got = get_discarding(&http, &url).await?;
                if got != size {
                    bail!("{url}: {got} bytes, expected {size}");
                }
                Ok(())
            }));
        }
    }
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn gets_per_blob(origin: &Registry, paths: &[String]) -> Result<f64> {
    let mut total = 0;
    for path in paths {
        total += origin.count("GET", path).await?;
    }
    Ok(total as f64 / paths.len() as f64)
}

/// A's hot GET against B's pull from A, for one layer of `size_mib`; prints a table.
async fn peer_transfer(size_mib: u64) -> Result<()> {
    let size = size_mib << 20;
    let origin = Registry::start(RegistryOptions::plain()).await?;
    let repo = "bench/peer";
    let pushed = image::push_large_layer_image(&origin.client(), repo, "v1", size, 90).await?;
    let layer = pushed.root.blobs.iter().find(|b| b.size == size).context("layer")?.digest;
    let path = format!("/v2/{repo}/blobs/{layer}");
    let http = reqwest::Client::builder().no_proxy().build()?;
    let options = ShoalOptions::docker_io(origin.url());

    // A alone: it owns everything, so it fetches the layer from the origin itself.
    let mut nodes = vec![ShoalNode::start(options.clone()).await?];
    let a_url = format!("{}{path}", nodes[0].url());
    download(&http, &a_url, size).await?;
    let (mut hot, mut from_peer) = (0f64, 0f64);
    for round in 0..PEER_ROUNDS {
        hot = hot.max(download(&http, &a_url, size).await?);
        nodes.push(ShoalNode::start(options.clone().bootstrap(&nodes[0])).await?);
        wait_for_peers(&nodes, 1).await?;
        // A's provider record must be findable before B misses, or B would go to the owner.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = &nodes[1];
        from_peer = from_peer.max(download(&http, &format!("{}{path}", b.url()), size).await?);
        let peer_fetches = metric(b, "shoal_peer_blob_fetches_total").await?;
        let upstream_fetches = metric(b, "shoal_upstream_blob_fetches_total").await?;
        ensure!(
            peer_fetches == 1 && upstream_fetches == 0,
            "round {round}: B fetched {peer_fetches} blobs from peers and {upstream_fetches} upstream; the measurement needs exactly one from A"
        );
        nodes.pop();
    }
    println!("| {size_mib} MiB layer | MiB/s (best of {PEER_ROUNDS}) |");
    println!("|---|---|");
    println!("| node A's own hot GET | {hot:.0} |");
    println!("| node B pulling it from A (peer to peer, cold on B) | {from_peer:.0} |");
    println!();
    println!("peer / hot = {:.2}", from_peer / hot);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut size_mib = 512u64;
    let mut peer_mib = 1024u64;
    let mut counts = vec![4usize, 8, 16];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--size-mib" => size_mib = value.parse().context("--size-mib")?,
            "--peer-mib" => peer_mib = value.parse().context("--peer-mib")?,
            "--nodes" => {
                counts = value.split(',').map(str::parse).collect::<Result<_, _>>()?;
                counts.retain(|&n| n > 0);
            }
            other => bail!("unknown flag {other}; use --size-mib N --nodes 4,8,16 --peer-mib N"),
        }
    }
    if !require_tools(&["docker-registry"]) {
        bail!("docker-registry is needed");
    }
    if !counts.is_empty() {
        fleet_fill(size_mib, &counts).await?;
        println!();
    }
    if peer_mib > 0 {
        peer_transfer(peer_mib).await?;
    }
    Ok(())
}

/// Upstream GETs per blob and fill time for each fleet size, shoal against proxies.
async fn fleet_fill(size_mib: u64, counts: &[usize]) -> Result<()> {
    let size = size_mib << 20;
    println!(
        "| nodes | shoal: upstream GETs per blob | shoal: all nodes hold {size_mib} MiB | proxies: upstream GETs per blob | proxies: all hold it |"
    );
    println!("|---|---|---|---|---|");
    for (round, &n) in counts.iter().enumerate() {
        let mut origin = Registry::start(RegistryOptions::plain()).await?;
        let repo = "bench/fleet";
        let pushed =
            image::push_large_layer_image(&origin.client(), repo, "v1", size, 40 + round as u64)
                .await?;
        let blobs = pushed.root.blobs.clone();
        let paths: Vec<String> =
            blobs.iter().map(|b| format!("/v2/{repo}/blobs/{}", b.digest)).collect();
        let sizes: Vec<u64> = blobs.iter().map(|b| b.size).collect();

        let nodes = start_fleet(n, ShoalOptions::docker_io(origin.url())).await?;
        origin.reset_requests().await?;
        let bases: Vec<String> = nodes.iter().map(|node| node.url()).collect();
        let shoal_seconds = pull_everywhere(&bases, &paths, &sizes).await?;
        let shoal_gets = gets_per_blob(&origin, &paths).await?;
        drop(nodes);

        let mut proxies = Vec::new();
        for _ in 0..n {
            proxies.push(Registry::start(RegistryOptions::proxy(origin.url())).await?);
        }
        origin.reset_requests().await?;
        let bases: Vec<String> = proxies.iter().map(Registry::url).collect();
        let proxy_seconds = pull_everywhere(&bases, &paths, &sizes).await?;
        let proxy_gets = gets_per_blob(&origin, &paths).await?;

        println!(
            "| {n} | {shoal_gets:.1} | {shoal_seconds:.1} s | {proxy_gets:.1} | {proxy_seconds:.1} s |"
        );
    }
    Ok(())
}
