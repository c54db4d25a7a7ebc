//! `shoal-push-bench`: push throughput of a node against distribution's own push into the same
//! disk, and the rate of `shoal export` and `shoal import`.
//!
//! Starts a real `docker-registry` and a `shoal` node (use a release build:
//! `SHOAL_BIN=target/release/shoal`) that may be pushed to, then, with the same HTTP client:
//! - pushes a blob of `--size-mib` in one `PUT` and in `PATCH`es of `--chunk-mib`, into each
//!   (fresh bytes every round, so nothing is skipped; median of `--rounds`);
//! - the node's peak RSS over those pushes;
//! - `shoal export` of an image with one such layer, pulled through a node from the registry,
//!   and `shoal import` of that archive into a fresh node.
//!
//! Prints a Markdown table for docs/benchmarks.md. Usage:
//! `shoal-push-bench [--size-mib 1024] [--chunk-mib 64] [--rounds 3]`

use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use shoal_cluster_tests::bench::{median, peak_rss_mib};
use shoal_cluster_tests::shoal::shoal_binary;
use shoal_cluster_tests::{
    Registry, RegistryClient, RegistryOptions, ShoalNode, ShoalOptions, free_port, image,
    require_tools,
};
use shoal_protocol::Digest;

const MIB: u64 = 1024 * 1024;

struct Args {
    size_mib: u64,
    chunk_mib: u64,
    rounds: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { size_mib: 1024, chunk_mib: 64, rounds: 3 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--size-mib" => args.size_mib = value.parse().context("--size-mib")?,
            "--chunk-mib" => args.chunk_mib = value.parse().context("--chunk-mib")?,
            "--rounds" => args.rounds = value.parse().context("--rounds")?,
            other => bail!("unknown flag {other}; use --size-mib N --chunk-mib N --rounds N"),
        }
    }
    Ok(args)
}

/// Bytes that differ from round to round (xorshift), so no push finds its blob present.
fn content(size: u64, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(size as usize);
    Bytes::from(out)
}

/// MiB/s of one upload of `data` into `repo` through `client`.
async fn push_rate(client: &RegistryClient, repo: &str, data: Bytes, chunk: u64) -> Result<f64> {
    let digest = Digest::of(&data);
    let size = data.len() as f64;
    let started = Instant::now();
    client.upload_blob(repo, data, chunk as usize, digest).await?;
    Ok(size / MIB as f64 / started.elapsed().as_secs_f64())
}

fn lab_config(dir: &std::path::Path) -> Result<String> {
    let path = dir.join("shoal.toml");
    let text = "hosted = [\"local\"]\n\n[[auth.rule]]\nprefix = \"*\"\nanonymous = true\n\
                allow = [\"pull\", \"push\"]\n";
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

fn shoal(args: &[&str]) -> Result<f64> {
    let started = Instant::now();
    let output = std::process::Command::new(shoal_binary()?).args(args).output()?;
    if !output.status.success() {
        bail!("shoal {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    }
    Ok(started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    if !require_tools(&["docker-registry"]) {
        bail!("docker-registry is needed");
    }
    let size = args.size_mib * MIB;
    let dir = tempfile::tempdir()?;
    let config = lab_config(dir.path())?;
    let registry = Registry::start(RegistryOptions::plain()).await?;
    let node = ShoalNode::start(
        ShoalOptions::docker_io(registry.url()).without_cluster_key().arg("--config").arg(&config),
    )
    .await?;
    let to_node = RegistryClient::new(node.url(), None);
    let to_registry = registry.client();

    let mut rows = Vec::new();
    for (mode, chunk) in [("one PUT", 0), ("PATCH chunks", args.chunk_mib * MIB)] {
        let (mut shoal_rates, mut distribution_rates) = (Vec::new(), Vec::new());
        for round in 0..args.rounds {
            let seed = (round as u64 + 1) * 1000 + chunk;
            // Interleaved, each target its own bytes.
            shoal_rates.push(push_rate(&to_node, "local/bench", content(size, seed), chunk).await?);
            distribution_rates
                .push(push_rate(&to_registry, "bench", content(size, seed + 1), chunk).await?);
        }
        rows.push((mode, median(shoal_rates), median(distribution_rates)));
    }
    let rss = node.pid().map(peak_rss_mib).transpose()?;

    // Export through a node from the registry (cold), then import into a fresh node.
    image::push_large_layer_image(&to_registry, "bench/big", "v1", size, 7).await?;
    let archive = dir.path().join("site.tar");
    let archive_arg = archive.display().to_string();
    let export_s =
        shoal(&["export", "docker.io/bench/big:v1", "-o", &archive_arg, "--node", &node.url()])?;
    // An air-gapped site: its upstream is nowhere, so every byte comes from the archive.
    let nowhere = format!("http://127.0.0.1:{}", free_port()?);
    let fresh = ShoalNode::start(
        ShoalOptions::docker_io(nowhere).without_cluster_key().arg("--config").arg(&config),
    )
    .await?;
    let import_s = shoal(&["import", &archive_arg, "--node", &fresh.url()])?;

    println!("| push of {} MiB | shoal | distribution |", args.size_mib);
    println!("|---|---|---|");
    for (mode, shoal_rate, distribution_rate) in rows {
        let mode = if mode == "PATCH chunks" {
            format!("{} MiB PATCH chunks", args.chunk_mib)
        } else {
            mode.to_owned()
        };
        println!("| {mode} | {shoal_rate:.0} MiB/s | {distribution_rate:.0} MiB/s |");
    }
    if let Some(rss) = rss {
        println!("\nshoal peak RSS over the pushes: {rss:.0} MiB");
    }
    let mib = args.size_mib as f64;
    println!(
        "\n| {} MiB image | seconds | MiB/s |\n|---|---|---|\n| `shoal export` (cold, through a node) | {export_s:.1} | {:.0} |\n| `shoal import` (into a fresh node, no upstream) | {import_s:.1} | {:.0} |",
        args.size_mib,
        mib / export_s,
        mib / import_s
    );
    Ok(())
}
