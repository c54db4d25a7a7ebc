//! What a run measured.

use std::time::Duration;

use super::Config;
use super::world::{OWNER, World};

#[derive(Debug, Clone)]
pub struct Report {
    pub config: Config,
    /// One transfer of the blob over one fast link.
    pub t1: Duration,
    /// Until the last node held the whole blob (the run's limit if some never did).
    pub makespan: Duration,
    pub mean_completion: Duration,
    /// Until the last node with a fast link held the blob.
    pub fast_makespan: Duration,
    /// Until a node's first piece came in, on average: how long its client waited for a
    /// first byte, give or take a piece.
    pub first_piece: Duration,
    /// Nodes that hold the whole blob at the end.
    pub complete: usize,
    /// What the owner sent, in copies of the blob.
    pub owner_upload: f64,
    /// What every node sent on average, and the most any node but the owner sent, in copies.
    pub mean_upload: f64,
    pub max_upload: f64,
    /// The owner's fetch and the nodes that gave up on their peers.
    pub upstream_fetches: u32,
    /// Per node that downloaded: piece requests, `503` answers, status probes, DHT lookups.
    pub requests: f64,
    pub refused: f64,
    pub probes: f64,
    pub lookups: f64,
    /// The share of `503`s sent with an upload slot free (the piece's copies were used up).
    pub copy_refusals: f64,
    /// The most sources any node knew, and the mean CPU time of one call of the scheduler's
    /// `next` here.
    pub max_sources: usize,
    pub next_cost: Duration,
    /// The share of download time during which the real driver loop would spin.
    pub spinning: f64,
    /// Events handled and the wall-clock time the run took.
    pub events: u64,
    pub wall: Duration,
}

impl Report {
    pub(super) fn new(world: &World, wall: Duration) -> Self {
        let cfg = &world.cfg;
        let n = cfg.nodes as f64;
        let size = cfg.size as f64;
        let t1 = Duration::from_secs_f64(size / cfg.link_rate);
        let limit = super::world::nanos(cfg.limit);
        let done: Vec<u64> = world.nodes.iter().map(|n| n.complete_at.unwrap_or(limit)).collect();
        let complete = world.nodes.iter().filter(|n| n.complete_at.is_some_and(|t| t <= limit));
        let peers = world.nodes.iter().enumerate().filter(|&(i, _)| i != OWNER);
        let per_peer = |f: &dyn Fn(&super::node::Download) -> f64| {
            peers.clone().map(|(_, node)| f(&node.download)).sum::<f64>() / (n - 1.0)
        };
        let downloading: u64 = peers
            .clone()
            .map(|(_, node)| node.complete_at.unwrap_or(limit).saturating_sub(node.download.began))
            .sum();
        let uploaded = &world.net.uploaded;
        Self {
            config: cfg.clone(),
            t1,
            makespan: Duration::from_nanos(done.iter().copied().max().unwrap_or(0)),
            fast_makespan: Duration::from_nanos(
                done.iter()
                    .zip(&world.slow)
                    .filter(|&(_, &s)| !s)
                    .map(|(&t, _)| t)
                    .max()
                    .unwrap_or(0),
            ),
            mean_completion: Duration::from_nanos(done.iter().sum::<u64>() / done.len() as u64),
            first_piece: Duration::from_secs_f64(
                per_peer(&|d| d.first_piece.unwrap_or(limit) as f64) / 1e9,
            ),
            complete: complete.count(),
            owner_upload: uploaded[OWNER] / size,
            mean_upload: uploaded.iter().sum::<f64>() / n / size,
            max_upload: peers.clone().map(|(i, _)| uploaded[i]).fold(0.0, f64::max) / size,
            upstream_fetches: u32::from(world.owner_start.is_some()) + world.fallbacks,
            requests: per_peer(&|d| d.requests as f64),
            refused: per_peer(&|d| d.refused as f64),
            probes: per_peer(&|d| d.probes as f64),
            // The owner's one lookup aside.
            lookups: world.dht.lookups.saturating_sub(1) as f64 / (n - 1.0),
            copy_refusals: world.copy_refusals as f64
                / (per_peer(&|d| d.refused as f64) * (n - 1.0)).max(1.0),
            max_sources: world.nodes.iter().map(|n| n.download.sources.len()).max().unwrap_or(0),
            next_cost: world.next_time.div_f64(world.next_calls.max(1) as f64),
            spinning: per_peer(&|d| d.spun as f64) * (n - 1.0) / downloading.max(1) as f64,
            events: world.queue.handled,
            wall,
        }
    }

    /// Makespan over T1.
    pub fn ratio(&self) -> f64 {
        self.makespan.as_secs_f64() / self.t1.as_secs_f64()
    }
}
