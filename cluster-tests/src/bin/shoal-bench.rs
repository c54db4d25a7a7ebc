//! `shoal-bench`: cache throughput and memory of one node against the baselines, on one layer.
//!
//! Starts a real `docker-registry` as the origin with one large layer, a second
//! `docker-registry` in proxy mode (distribution's pull-through cache), `nginx` serving the same
//! file, and a `shoal` node (use a release build: `SHOAL_BIN=target/release/shoal`). Then it
//! measures, with the same HTTP client for all:
//! - cold pull-through MiB/s: the first GET of the layer through a fresh shoal node and a fresh
//!   proxy (median of three);
//! - hot GET MiB/s: later GETs from shoal, the proxy and nginx (interleaved, median of five),
//!   and the CPU time each server spends per GiB it sends;
//! - peak RSS of a fresh node while N clients pull the cold layer at once.
//!
//! Prints a Markdown table for docs/benchmarks.md. Usage:
//! `shoal-bench [--size-mib 1024] [--clients 8]`

use std::time::Instant;

use anyhow::{Context, Result, bail};
use shoal_cluster_tests::bench::{cpu_seconds, download, median, peak_rss_mib, sha256_mib_per_s};
use shoal_cluster_tests::image;
use shoal_cluster_tests::nginx::Nginx;
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools};
use shoal_protocol::Digest;

/// Rounds of each measurement; medians are reported, since one round on a shared machine can
/// be far off either way.
const COLD_ROUNDS: usize = 3;
const HOT_ROUNDS: usize = 5;

struct Args {
    size_mib: u64,
    clients: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { size_mib: 1024, clients: 8 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--size-mib" => args.size_mib = value.parse().context("--size-mib")?,
            "--clients" => args.clients = value.parse().context("--clients")?,
            other => bail!("unknown flag {other}; use --size-mib N --clients N"),
        }
    }
    Ok(args)
}

/// Finds the blob's data file in the origin's filesystem storage, for nginx to serve.
fn origin_blob_file(origin: &Registry, digest: &Digest) -> Result<std::path::PathBuf> {
    let hex = digest.hex();
    let relative = format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]);
    for candidate in [origin.dir().join(&relative), origin.dir().join("storage").join(&relative)] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!("blob {digest} not found under {}", origin.dir().display())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    if !require_tools(&["docker-registry", "nginx"]) {
        bail!("docker-registry and nginx are needed");
    }
    let size = args.size_mib << 20;
    eprintln!("seeding a {} MiB layer into the origin registry", args.size_mib);
    let origin = Registry::start(RegistryOptions::plain()).await?;
    let pushed =
        image::push_large_layer_image(&origin.client(), "bench/big", "v1", size, 7).await?;
    let layer = pushed.root.blobs.iter().find(|b| b.size == size).context("layer")?.digest;
    let path = format!("/v2/bench/big/blobs/{layer}");
    let http = reqwest::Client::builder().no_proxy().build()?;

    let file = origin_blob_file(&origin, &layer)?;
    let nginx_root = tempfile::tempdir()?;
    std::fs::hard_link(&file, nginx_root.path().join("layer"))
        .or_else(|_| std::fs::copy(&file, nginx_root.path().join("layer")).map(|_| ()))?;
    let nginx = Nginx::start(nginx_root.path()).await?;
    eprintln!("origin direct");
    let origin_speed = download(&http, &format!("{}{path}", origin.url()), size).await?;

    // Cold: a fresh shoal node and a fresh proxy each round, so that every round misses.
    eprintln!("cold: shoal, then distribution's proxy, {COLD_ROUNDS} rounds with fresh caches");
    let (mut shoal_cold, mut proxy_cold) = (Vec::new(), Vec::new());
    for _ in 0..COLD_ROUNDS {
        let node = ShoalNode::start(ShoalOptions::docker_io(origin.url())).await?;
        shoal_cold.push(download(&http, &format!("{}{path}", node.url()), size).await?);
        drop(node);
        let proxy = Registry::start(RegistryOptions::proxy(origin.url())).await?;
        proxy_cold.push(download(&http, &format!("{}{path}", proxy.url()), size).await?);
    }

    let proxy = Registry::start(RegistryOptions::proxy(origin.url())).await?;
    let node = ShoalNode::start(ShoalOptions::docker_io(origin.url())).await?;
    download(&http, &format!("{}{path}", node.url()), size).await?;
    download(&http, &format!("{}{path}", proxy.url()), size).await?;
    eprintln!("hot: shoal, distribution's proxy, nginx, interleaved, {HOT_ROUNDS} rounds");
    let servers = [
        (format!("{}{path}", node.url()), node.pid().context("node pid")?),
        (format!("{}{path}", proxy.url()), proxy.pid().context("proxy pid")?),
        (format!("{}/layer", nginx.url()), nginx.pid()),
    ];
    let mut hot: [Vec<f64>; 3] = Default::default();
    let mut cpu = [0f64; 3];
    // Interleaved rounds, so that a noisy moment on the machine hits every server alike.
    for _ in 0..HOT_ROUNDS {
        for (i, (url, pid)) in servers.iter().enumerate() {
            let before = cpu_seconds(*pid)?;
            hot[i].push(download(&http, url, size).await?);
            cpu[i] += cpu_seconds(*pid)? - before;
        }
    }
    let gib_served = (HOT_ROUNDS as u64 * size) as f64 / (1u64 << 30) as f64;
    let cpu_per_gib = cpu.map(|seconds| seconds / gib_served);
    let [shoal_hot, proxy_hot, nginx_hot] = hot.map(median);
    let (shoal_cold, proxy_cold) = (median(shoal_cold), median(proxy_cold));
    drop(node);

    eprintln!("peak RSS: {} clients pulling the cold layer through a fresh node", args.clients);
    let fresh = ShoalNode::start(ShoalOptions::docker_io(origin.url())).await?;
    let pid = fresh.pid().context("node pid")?;
    let idle_rss = peak_rss_mib(pid)?;
    let url = format!("{}{path}", fresh.url());
    let start = Instant::now();
    let pulls: Vec<_> = (0..args.clients)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move { download(&http, &url, size).await })
        })
        .collect();
    for pull in pulls {
        pull.await??;
    }
    let fleet_elapsed = start.elapsed();
    let peak_rss = peak_rss_mib(pid)?;

    let sha256 = sha256_mib_per_s(1024);
    println!(
        "| measurement ({} MiB layer) | shoal | distribution proxy | nginx | origin direct |",
        args.size_mib
    );
    println!("|---|---|---|---|---|");
    println!(
        "| cold pull-through, MiB/s (median of {COLD_ROUNDS}) | {shoal_cold:.0} | {proxy_cold:.0} | — | {origin_speed:.0} |"
    );
    println!(
        "| hot GET, MiB/s (median of {HOT_ROUNDS}, interleaved) | {shoal_hot:.0} | {proxy_hot:.0} | {nginx_hot:.0} | — |"
    );
    println!(
        "| server CPU per GiB served hot, s | {:.2} | {:.2} | {:.2} | — |",
        cpu_per_gib[0], cpu_per_gib[1], cpu_per_gib[2]
    );
    println!(
        "| peak RSS, {} clients on the cold layer | {peak_rss:.1} MiB (idle {idle_rss:.1} MiB; all done in {:.1} s) | — | — | — |",
        args.clients,
        fleet_elapsed.as_secs_f64()
    );
    println!();
    println!(
        "hot shoal / nginx = {:.2}; cold shoal / proxy = {:.2}; sha256 on one core: {sha256:.0} MiB/s",
        shoal_hot / nginx_hot,
        shoal_cold / proxy_cold
    );
    Ok(())
}
