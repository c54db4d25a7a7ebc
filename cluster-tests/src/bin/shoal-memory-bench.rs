//! `shoal-memory-bench`: a node's memory when many clients pull at once.
//!
//! Seeds LAYERS layers of SIZE MiB into a real `docker-registry`, starts a fresh `shoal` node
//! (use a release build: `SHOAL_BIN=target/release/shoal`), and has CLIENTS clients GET the
//! layers at the same moment, spread evenly over them: every layer is a miss, so the clients of
//! one layer follow its download. Then the same again with the layers cached (hot). Reports
//! the node's peak RSS for each round (the kernel's high-water mark, reset between rounds),
//! its RSS at rest, and how long each round took; then the same for distribution's proxy mode
//! (a `docker-registry` pull-through cache) as the baseline. Every client checks the length it
//! received.
//!
//! Usage: `shoal-memory-bench [--clients 256] [--layers 4] [--size-mib 256] [-- NODE ARGS...]`

use std::time::Instant;

use anyhow::{Context, Result, bail};
use shoal_cluster_tests::bench::{download, peak_rss_mib, reset_peak_rss};
use shoal_cluster_tests::image;
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools};

struct Args {
    clients: usize,
    layers: usize,
    size_mib: u64,
    node_args: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { clients: 256, layers: 4, size_mib: 256, node_args: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--" {
            args.node_args = it.by_ref().collect();
            break;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--clients" => args.clients = value.parse().context("--clients")?,
            "--layers" => args.layers = value.parse().context("--layers")?,
            "--size-mib" => args.size_mib = value.parse().context("--size-mib")?,
            other => bail!("unknown flag {other}; use --clients N --layers N --size-mib N"),
        }
    }
    if args.layers == 0 || args.clients == 0 {
        bail!("--clients and --layers must be at least 1");
    }
    Ok(args)
}

/// Every client GETs its layer at once; returns the seconds until the last one finished.
async fn round(http: &reqwest::Client, urls: &[String], clients: usize, size: u64) -> Result<f64> {
    let start = Instant::now();
    let pulls: Vec<_> = (0..clients)
        .map(|i| {
            let (http, url) = (http.clone(), urls[i % urls.len()].clone());
            tokio::spawn(async move { download(&http, &url, size).await })
        })
        .collect();
    for pull in pulls {
        pull.await??;
    }
    Ok(start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    if !require_tools(&["docker-registry"]) {
        bail!("docker-registry is needed");
    }
    let size = args.size_mib << 20;
    eprintln!("seeding {} layers of {} MiB into the origin registry", args.layers, args.size_mib);
    let origin = Registry::start(RegistryOptions::plain()).await?;
    let mut paths = Vec::new();
    for i in 0..args.layers {
        let repo = format!("bench/layer{i}");
        let seed = 100 + i as u64;
        let pushed =
            image::push_large_layer_image(&origin.client(), &repo, "v1", size, seed).await?;
        let layer = pushed.root.blobs.iter().find(|b| b.size == size).context("layer")?.digest;
        paths.push(format!("/v2/{repo}/blobs/{layer}"));
    }

    let mut options = ShoalOptions::docker_io(origin.url()).without_cluster_key();
    for arg in &args.node_args {
        options = options.arg(arg.clone());
    }
    // Many connections at once: one client per pull, as separate machines would be.
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build()?;
    let node = ShoalNode::start(options).await?;
    eprintln!("shoal: {} clients over {} layers, cold then hot", args.clients, args.layers);
    let shoal = rounds(&http, &node.url(), node.pid().context("pid")?, &paths, &args).await?;
    drop(node);
    let proxy = Registry::start(RegistryOptions::proxy(origin.url())).await?;
    eprintln!("distribution's proxy: the same");
    let baseline = rounds(&http, &proxy.url(), proxy.pid().context("pid")?, &paths, &args).await?;

    println!(
        "| {} clients, {} layers of {} MiB ({:.0} GiB sent per round) | shoal | distribution proxy |",
        args.clients,
        args.layers,
        args.size_mib,
        (args.clients as u64 * size) as f64 / (1u64 << 30) as f64
    );
    println!("|---|---|---|");
    let row = |what: &str, a: String, b: String| println!("| {what} | {a} | {b} |");
    row("RSS at rest", mib(shoal.idle), mib(baseline.idle));
    row("peak RSS, cold (every layer a miss)", mib(shoal.cold_peak), mib(baseline.cold_peak));
    row("peak RSS, hot (every layer cached)", mib(shoal.hot_peak), mib(baseline.hot_peak));
    row("time, cold", secs(shoal.cold_s), secs(baseline.cold_s));
    row("time, hot", secs(shoal.hot_s), secs(baseline.hot_s));
    Ok(())
}

fn mib(v: f64) -> String {
    format!("{v:.1} MiB")
}

fn secs(v: f64) -> String {
    format!("{v:.1} s")
}

struct Rounds {
    idle: f64,
    cold_peak: f64,
    cold_s: f64,
    hot_peak: f64,
    hot_s: f64,
}

/// A cold round and a hot one through the cache at `base`, whose process is `pid`.
async fn rounds(
    http: &reqwest::Client,
    base: &str,
    pid: u32,
    paths: &[String],
    args: &Args,
) -> Result<Rounds> {
    let size = args.size_mib << 20;
    let urls: Vec<String> = paths.iter().map(|p| format!("{base}{p}")).collect();
    let idle = peak_rss_mib(pid)?;
    let cold_s = round(http, &urls, args.clients, size).await?;
    let cold_peak = peak_rss_mib(pid)?;
    reset_peak_rss(pid)?;
    let hot_s = round(http, &urls, args.clients, size).await?;
    let hot_peak = peak_rss_mib(pid)?;
    Ok(Rounds { idle, cold_peak, cold_s, hot_peak, hot_s })
}
