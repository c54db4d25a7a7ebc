//! `shoal-fleet-bench`: what a fleet costs the upstream, and how fast it fills, against one
//! `docker-registry` pull-through proxy per node.
//!
//! For N nodes (default 4, 8, 16) it pushes one image with a large layer to a real
//! `docker-registry` origin, then has every node GET the layer and the config at the same
//! instant, and reports the origin's GETs per unique blob (from its access log) and the time
//! until every node held the layer. The baseline is N `docker-registry` proxies, each asked
//! once. Use a release build: `SHOAL_BIN=target/release/shoal`.
//! Usage: `shoal-fleet-bench [--size-mib 512] [--nodes 4,8,16]`

use std::time::Instant;

use anyhow::{Context, Result, bail};
use shoal_cluster_tests::bench::get_discarding;
use shoal_cluster_tests::fleet::start_fleet;
use shoal_cluster_tests::image;
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalOptions, require_tools};

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

#[tokio::main]
async fn main() -> Result<()> {
    let mut size_mib = 512u64;
    let mut counts = vec![4usize, 8, 16];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--size-mib" => size_mib = value.parse().context("--size-mib")?,
            "--nodes" => {
                counts = value.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            other => bail!("unknown flag {other}; use --size-mib N --nodes 4,8,16"),
        }
    }
    if !require_tools(&["docker-registry"]) {
        bail!("docker-registry is needed");
    }
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
