//! `shoal-swarm-bench`: a rack of hosts whose links are capped (`--mbit`, default 200, each
//! way) all pulling one new layer (`--size-mib`, default 256) at the same moment.
//!
//! For each fleet size (`--nodes`, default 4,8,16) it builds a LAN of that many hosts, one
//! network namespace each, and an origin `docker-registry` on this host behind the LAN's
//! uplink. Every client runs on its own host (`shoal-get` in the host's namespace), so its
//! bytes never cross the host's link. Three set-ups, one after the other:
//!
//! - shoal: a node on every host, each host pulling through its own node;
//! - a distribution pull-through proxy on every host, each host pulling through its own;
//! - one central distribution proxy on the first host, every host pulling through it.
//!
//! It reports T1 (the first host pulling the layer straight from the origin, alone: one
//! transfer over one link), a lone shoal node's cold pull through the same link against T1,
//! each set-up's makespan (until every host holds the layer) over T1,
//! the origin's GETs of the layer, and for shoal how many copies the layer's owner uploaded
//! and the mean upload of the other nodes (from `/metrics`).
//!
//! Needs root (namespaces, `tc`) and a release build: `SHOAL_BIN=target/release/shoal`.
//! Usage: `shoal-swarm-bench [--nodes 4,8,16] [--size-mib 256] [--mbit 200] [--baselines no]
//! [--keep-logs DIR]` (`--baselines no` leaves out the distribution proxies, which take most of
//! the run; `--keep-logs` keeps each node's log of the swarm run, every piece asked and
//! received in it, and prints each host's time).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use shoal_cluster_tests::fleet::{metric, wait_for_peers};
use shoal_cluster_tests::image;
use shoal_cluster_tests::lan::{Lan, LanHost, require_lan};
use shoal_cluster_tests::{Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools};
use shoal_protocol::Digest;

const REPO: &str = "bench/swarm";

struct Row {
    nodes: usize,
    t1: f64,
    /// One node alone pulling the layer through its own capped link.
    lone: f64,
    shoal: f64,
    owner_copies: f64,
    others_copies: f64,
    shoal_gets: usize,
    /// The distribution proxies' runs, unless left out.
    baselines: Option<Baselines>,
}

struct Baselines {
    per_host: f64,
    per_host_gets: usize,
    central: f64,
}

/// `shoal-get`, built beside this binary.
fn getter() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("shoal-get");
    ensure!(path.exists(), "{} is missing: build the cluster-tests binaries", path.display());
    Ok(path)
}

/// Every host GETs its URL at the same moment; returns the seconds until the last is done.
async fn pull_all(hosts: &[LanHost], urls: &[String], digest: Digest) -> Result<f64> {
    let each = pull_each(hosts, urls, digest).await?;
    Ok(each.into_iter().fold(0.0, f64::max))
}

/// Every host GETs its URL at the same moment; returns the seconds each took.
async fn pull_each(hosts: &[LanHost], urls: &[String], digest: Digest) -> Result<Vec<f64>> {
    let getter = getter()?;
    let start = Instant::now();
    let mut pulls = Vec::new();
    for (host, url) in hosts.iter().zip(urls) {
        let mut command = tokio::process::Command::from(host.command(&getter));
        command.arg(url).arg(digest.to_string());
        pulls.push(tokio::spawn(async move {
            let output = command.output().await;
            (output, start.elapsed().as_secs_f64())
        }));
    }
    let mut seconds = Vec::new();
    for (pull, url) in pulls.into_iter().zip(urls) {
        let (output, took) = pull.await?;
        let output = output?;
        if !output.status.success() {
            bail!("{url}: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        seconds.push(took);
    }
    Ok(seconds)
}

/// What to run, besides the fleet size.
struct Plan {
    size_mib: u64,
    mbit: u32,
    baselines: bool,
    /// Where to keep the nodes' logs of the swarm run, with the fetch path's trace on.
    keep_logs: Option<PathBuf>,
}

async fn run(n: usize, plan: &Plan, seed: u64) -> Result<Row> {
    let Plan { size_mib, mbit, baselines, .. } = *plan;
    let size = size_mib << 20;
    // Declared first, so that it goes last: the processes on it are stopped before it goes.
    let lan = Lan::create_capped(n, Some(mbit))?;
    let hosts = lan.hosts().to_vec();
    let mut origin = Registry::start(RegistryOptions::plain().on(lan.gateway_ip())).await?;
    let pushed = image::push_large_layer_image(&origin.client(), REPO, "v1", size, seed).await?;
    let layer = pushed.root.blobs.iter().find(|b| b.size == size).context("layer")?.digest;
    let path = format!("/v2/{REPO}/blobs/{layer}");

    let t1 = pull_all(&hosts[..1], &[format!("{}{path}", origin.url())], layer).await?;
    let lone = {
        let node = ShoalNode::start(ShoalOptions::docker_io(origin.url()).on(&hosts[0])).await?;
        pull_all(&hosts[..1], &[format!("{}{path}", node.url())], layer).await?
    };

    let mut options = ShoalOptions::docker_io(origin.url());
    if plan.keep_logs.is_some() {
        options.env.push(("SHOAL_LOG".into(), "info,shoal::fetch::swarm=trace".into()));
    }
    let first = ShoalNode::start(options.clone().on(&hosts[0])).await?;
    let seed_options = options.bootstrap(&first);
    let mut nodes = vec![first];
    for host in &hosts[1..] {
        nodes.push(ShoalNode::start(seed_options.clone().on(host)).await?);
    }
    wait_for_peers(&nodes, n - 1).await?;
    origin.reset_requests().await?;
    let urls: Vec<String> = nodes.iter().map(|node| format!("{}{path}", node.url())).collect();
    let each = pull_each(&hosts, &urls, layer).await?;
    let shoal = each.iter().copied().fold(0.0, f64::max);
    if let Some(dir) = &plan.keep_logs {
        let dir = dir.join(format!("{n}-hosts"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (i, (node, took)) in nodes.iter().zip(&each).enumerate() {
            let to = dir.join(format!("host{i}.log"));
            std::fs::copy(node.log_path(), &to).with_context(|| format!("{}", to.display()))?;
            eprintln!("host {i}: {took:.1} s, log in {}", to.display());
        }
    }
    let shoal_gets = origin.count("GET", &path).await?;
    let (mut owner_copies, mut others) = (0.0, Vec::new());
    for node in &nodes {
        let served = metric(node, "shoal_peer_bytes_served_total").await? as f64 / size as f64;
        if metric(node, "shoal_upstream_bytes_total").await? >= size {
            owner_copies = served;
        } else {
            others.push(served);
        }
    }
    let others_copies = others.iter().sum::<f64>() / others.len().max(1) as f64;
    drop(nodes);
    let row =
        Row { nodes: n, t1, lone, shoal, owner_copies, others_copies, shoal_gets, baselines: None };
    if !baselines {
        return Ok(row);
    }

    let mut proxies = Vec::new();
    for host in &hosts {
        proxies.push(Registry::start(RegistryOptions::proxy(origin.url()).on_host(host)).await?);
    }
    origin.reset_requests().await?;
    let urls: Vec<String> = proxies.iter().map(|p| format!("{}{path}", p.url())).collect();
    let per_host = pull_all(&hosts, &urls, layer).await?;
    let per_host_gets = origin.count("GET", &path).await?;
    drop(proxies);

    let central = Registry::start(RegistryOptions::proxy(origin.url()).on_host(&hosts[0])).await?;
    let urls = vec![format!("{}{path}", central.url()); n];
    let central_seconds = pull_all(&hosts, &urls, layer).await?;

    Ok(Row {
        baselines: Some(Baselines { per_host, per_host_gets, central: central_seconds }),
        ..row
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut counts = vec![4usize, 8, 16];
    let mut size_mib = 256u64;
    let mut mbit = 200u32;
    let mut baselines = true;
    let mut keep_logs = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--nodes" => counts = value.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--size-mib" => size_mib = value.parse().context("--size-mib")?,
            "--mbit" => mbit = value.parse().context("--mbit")?,
            "--baselines" => baselines = value != "no",
            "--keep-logs" => keep_logs = Some(PathBuf::from(value)),
            other => bail!(
                "unknown flag {other}; use --nodes 4,8,16 --size-mib N --mbit N --baselines no --keep-logs DIR"
            ),
        }
    }
    if !require_tools(&["docker-registry", "tc"]) || !require_lan() {
        bail!("needs docker-registry, tc and root");
    }
    println!(
        "{size_mib} MiB layer, every host's link capped at {mbit} Mbit/s each way; makespan / T1"
    );
    println!();
    println!(
        "| hosts | T1 | lone node: T1 / time | shoal | owner uploads | other nodes upload (mean) | origin GETs | proxy per host | origin GETs | one central proxy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let plan = Plan { size_mib, mbit, baselines, keep_logs };
    for (i, &n) in counts.iter().enumerate() {
        let row = run(n, &plan, 700 + i as u64).await?;
        let (per_host, per_host_gets, central) = match &row.baselines {
            Some(b) => (
                format!("{:.2}", b.per_host / row.t1),
                b.per_host_gets.to_string(),
                format!("{:.2}", b.central / row.t1),
            ),
            None => ("—".to_owned(), "—".to_owned(), "—".to_owned()),
        };
        println!(
            "| {} | {:.1} s | {:.2} | {:.2} ({:.1} s) | {:.2} copies | {:.2} copies | {} | {per_host} | {per_host_gets} | {central} |",
            row.nodes,
            row.t1,
            row.t1 / row.lone,
            row.shoal / row.t1,
            row.shoal,
            row.owner_copies,
            row.others_copies,
            row.shoal_gets,
        );
    }
    Ok(())
}
