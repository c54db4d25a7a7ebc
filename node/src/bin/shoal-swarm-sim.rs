//! Runs the swarm simulation (`shoal::fetch::swarm_sim`) for every combination asked and
//! prints two Markdown tables: what the fleet achieved, and what it cost on the wire and in
//! the scheduler.

use std::time::Duration;

use clap::Parser;
use shoal::fetch::swarm_sim::{self, Config, CopyLimit, Discovery, Report, Serving, Sharing};

#[derive(Parser)]
#[command(about = "Simulates a fleet pulling one blob at once through the node's piece scheduler.")]
struct Args {
    /// Fleet sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,100")]
    nodes: Vec<usize>,
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Every fast link's rate, each way.
    #[arg(long, default_value_t = 1.0)]
    link_gbit: f64,
    /// Slow-node shares to run, comma-separated (a slow node has a tenth of the rate).
    #[arg(long, value_delimiter = ',', default_value = "0,0.1")]
    slow: Vec<f64>,
    /// What a provider lookup returns: `all`, `first20` (libp2p-kad's store) or `sample20`.
    #[arg(long, value_delimiter = ',', default_value = "sample20")]
    discovery: Vec<String>,
    /// The serving rule: `node` (the node's), or the variants `spread-as-busy` and `slots-only`.
    #[arg(long, value_delimiter = ',', default_value = "node")]
    serving: Vec<String>,
    /// How flows share a link: `equal` shares at both ends, or `max-min` (slow past ~100 nodes).
    #[arg(long, default_value = "equal")]
    sharing: String,
    /// Whether answers name the nodes their source sent pieces to (`on`, as the node does, or
    /// `off`: only lookups find sources), comma-separated to run both.
    #[arg(long, value_delimiter = ',', default_value = "on")]
    referrals: Vec<String>,
    /// How many sources a node asks at once: `node` (the node's roster), a number, or `all`
    /// (every source it learns of, as the node did before the roster), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "node")]
    sources: Vec<String>,
    /// Missing pieces a scheduler considers at once, from the front (the node's: 16).
    #[arg(long)]
    window: Option<usize>,
    /// Upload slots per node and digest (the node's `peer_upload_slots`: 4).
    #[arg(long)]
    slots: Option<usize>,
    /// Times a node sends one piece within `--copy-window-ms` (the node's: 2).
    #[arg(long)]
    copies: Option<u32>,
    /// Times the owner sends one piece of the blob it fetches from the upstream (the node's: 1).
    #[arg(long)]
    first_hand_copies: Option<u32>,
    /// The window of `--copies`, in milliseconds (the node's: 2000).
    #[arg(long)]
    copy_window_ms: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How often a spinning driver loop is looked at again, in milliseconds.
    #[arg(long, default_value_t = 10.0)]
    poll_ms: f64,
    /// Print how far each run got every 10 simulated seconds, on stderr.
    #[arg(long)]
    progress: bool,
}

fn discovery(name: &str) -> Result<Discovery, String> {
    let number = |rest: &str| rest.parse::<usize>().map_err(|e| format!("{name}: {e}"));
    match name {
        "all" => Ok(Discovery::All),
        _ if name.starts_with("first") => number(&name[5..]).map(Discovery::First),
        _ if name.starts_with("sample") => number(&name[6..]).map(Discovery::Sample),
        _ => Err(format!("unknown discovery {name:?}")),
    }
}

fn serving(name: &str) -> Result<Serving, String> {
    match name {
        "node" => Ok(Serving::Node),
        "spread-as-busy" => Ok(Serving::SpreadAsBusy),
        "slots-only" => Ok(Serving::SlotsOnly),
        _ => Err(format!("unknown serving rule {name:?}")),
    }
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let sharing = match args.sharing.as_str() {
        "equal" => Sharing::Equal,
        "max-min" => Sharing::MaxMin,
        other => return Err(format!("unknown sharing {other:?}")),
    };
    let mut runs = Vec::new();
    for sources in &args.sources {
        let source_cap = match sources.as_str() {
            "node" => Config::default().source_cap,
            "all" => None,
            n => Some(
                n.parse()
                    .map_err(|_| format!("--sources takes node, all or a number, not {n:?}"))?,
            ),
        };
        for referrals in &args.referrals {
            let referrals = match referrals.as_str() {
                "on" => true,
                "off" => false,
                other => return Err(format!("--referrals takes on or off, not {other:?}")),
            };
            for serving_name in &args.serving {
                // The variants are told apart by this label in the tables.
                let mut label = serving_name.clone();
                if !referrals {
                    label.push_str(", no referrals");
                }
                if sources != "node" {
                    label.push_str(&format!(", {sources} sources"));
                }
                if let Some(window) = args.window {
                    label.push_str(&format!(", window {window}"));
                }
                if let Some(slots) = args.slots {
                    label.push_str(&format!(", {slots} slots"));
                }
                let mut copy_limit = CopyLimit::default();
                if let Some(copies) = args.copies {
                    copy_limit.copies = copies;
                    label.push_str(&format!(", {copies} copies"));
                }
                if let Some(copies) = args.first_hand_copies {
                    copy_limit.first_hand = copies;
                    label.push_str(&format!(", owner {copies} copies"));
                }
                if let Some(ms) = args.copy_window_ms {
                    copy_limit.window = Duration::from_millis(ms);
                    label.push_str(&format!(" per {ms} ms"));
                }
                for discovery_name in &args.discovery {
                    for &slow in &args.slow {
                        for &nodes in &args.nodes {
                            let config = Config {
                                nodes,
                                size: args.size_mib << 20,
                                link_rate: args.link_gbit * 125e6,
                                slow_fraction: slow,
                                sharing,
                                discovery: discovery(discovery_name)?,
                                serving: serving(serving_name)?,
                                poll: Duration::from_secs_f64(args.poll_ms / 1e3),
                                source_cap,
                                referrals,
                                seed: args.seed,
                                progress: args.progress,
                                window: args.window.unwrap_or(Config::default().window),
                                upload_slots: args.slots.unwrap_or(Config::default().upload_slots),
                                copy_limit,
                                ..Config::default()
                            };
                            let report = swarm_sim::run(&config);
                            eprintln!(
                                "done: {nodes} nodes, {}",
                                labels(&report, discovery_name, &label)
                            );
                            runs.push((report, discovery_name.clone(), label.clone()));
                        }
                    }
                }
            }
        }
    }
    results(&runs);
    println!();
    costs(&runs);
    Ok(())
}

type Run = (Report, String, String);

fn labels(r: &Report, discovery: &str, serving: &str) -> String {
    format!(
        "{} | {:.0} % | {discovery} | {serving}",
        r.config.nodes,
        r.config.slow_fraction * 100.0
    )
}

fn results(runs: &[Run]) {
    println!(
        "| nodes | slow | lookups | serving | makespan / T1 | fast nodes' makespan / T1 \
         | mean completion / T1 | first piece, mean | owner sent | mean sent | most sent by \
         a peer | upstream fetches |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (r, discovery, serving) in runs {
        let t1 = r.t1.as_secs_f64();
        let incomplete = r.config.nodes - r.complete;
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} s | {:.2} | {:.2} | {:.2} | {}{} |",
            labels(r, discovery, serving),
            r.ratio(),
            r.fast_makespan.as_secs_f64() / t1,
            r.mean_completion.as_secs_f64() / t1,
            r.first_piece.as_secs_f64(),
            r.owner_upload,
            r.mean_upload,
            r.max_upload,
            r.upstream_fetches,
            if incomplete > 0 { format!(" ({incomplete} never completed)") } else { String::new() },
        );
    }
}

fn costs(runs: &[Run]) {
    println!(
        "| nodes | slow | lookups | serving | 503s / node | 503s with a slot free | status \
         probes / node | lookups / node | driver loop spinning | sources, most | `next()`, mean \
         | events | run time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (r, discovery, serving) in runs {
        println!(
            "| {} | {:.0} | {:.0} % | {:.0} | {:.1} | {:.0} % | {} | {:.1} µs | {:.1} M | {:.0} s |",
            labels(r, discovery, serving),
            r.refused,
            r.copy_refusals * 100.0,
            r.probes,
            r.lookups,
            r.spinning * 100.0,
            r.max_sources,
            r.next_cost.as_secs_f64() * 1e6,
            r.events as f64 / 1e6,
            r.wall.as_secs_f64(),
        );
    }
}
