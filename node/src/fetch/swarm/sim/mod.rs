//! A discrete-event simulation of a fleet that misses one blob at once, driving the node's own
//! scheduler (`swarm/scheduler.rs`) and upload slots (`fetch/uploads.rs`) on a simulated clock:
//! what the swarm does at sizes no test machine can run. `shoal-swarm-sim` prints its reports;
//! `docs/benchmarks.md` has the numbers and the command.
//!
//! The model, and where it is simpler than the node:
//! - N nodes miss the blob at the same instant. Node 0 is the owner: its DHT lookup finds no
//!   provider, so it fetches from the upstream, whose bytes arrive in order at the owner's
//!   link rate; its status carries the `live` edge. Every other node's first lookup finds
//!   nobody either, so it sends `FetchBlob` to the owner and starts with the owner as its one
//!   source.
//! - Links are symmetric (the same rate up and down), optionally with a share of nodes (never
//!   the owner) at a tenth of the rate both ways. A transfer gets an equal share of its
//!   source's uplink and of its requester's downlink, the smaller of the two, or optionally
//!   its max-min fair share ([`Sharing`]). There is no other traffic, no loss, no slow start,
//!   no CPU cost: disk writes and hashing are free.
//! - Every request crosses the network in half a round trip each way; a piece is delivered
//!   half a round trip after its source sent its last byte. A status is as of when the source
//!   answers (for a piece, when the answer starts, as the header does in the node).
//! - A source answers a piece request as `Fetcher::local_blob` does, with the real
//!   `Uploads`: a slot (4 per digest, else `503`, which the scheduler hears as
//!   `Failure::Busy`) and a copy (2 per piece at once or within 2 s of their end, 1 from the
//!   owner while it fetches the blob, else `429`, `Failure::Spread`); then
//!   the piece if it is whole in its file or, on the owner, starts at or below the live edge.
//! - Each node runs its own scheduler with the node's default limits, as the driver does
//!   (`driver.rs`): a status probe per new source, a refresh every 200 ms of sources with
//!   nothing out, provider lookups on the driver's schedule (`provider_refresh`), the
//!   scheduler asked after every event. A
//!   node announces itself once its first piece is in; the record is found by lookups from
//!   the DHT latency on. A node that gets no piece for the stall timeout (10 s) fetches the
//!   rest from the upstream at its own link rate and counts as an upstream fallback.
//! - What a lookup returns is [`Discovery`]: every provider, the first 20 to announce (what
//!   libp2p-kad's provider store does, see `dht.rs`), or 20 drawn at random per lookup.
//! - The driver's loop sleeps until the scheduler's `next_wakeup`. Were that instant ever
//!   already past, the real loop would spin, acting the moment a backoff ends or a piece may
//!   be hedged; the simulation would look again every [`Config::poll`] while one could, and
//!   counts such time as spinning (none since `next_wakeup` looks only ahead).

mod dht;
mod driver;
mod events;
mod net;
mod node;
mod report;
mod serving;
mod world;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use crate::fetch::uploads::CopyLimit;
pub use dht::Discovery;
pub use net::Sharing;
pub use report::Report;
pub use serving::Serving;

use world::World;

/// One scenario.
#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: usize,
    /// The blob's size in bytes.
    pub size: u64,
    /// Every fast link's rate in bytes per second, each way.
    pub link_rate: f64,
    /// The share of nodes (never the owner) whose links are `slow_factor` times slower.
    pub slow_fraction: f64,
    pub slow_factor: f64,
    pub sharing: Sharing,
    /// A request's round trip.
    pub rtt: Duration,
    /// How long a provider lookup or an announcement takes to complete.
    pub dht_latency: Duration,
    pub discovery: Discovery,
    /// `peer_upload_slots`.
    pub upload_slots: usize,
    /// Missing pieces a scheduler considers at once, from the front (`Limits::window`).
    pub window: usize,
    /// How often a node sends one piece (`fetch/uploads.rs`).
    pub copy_limit: CopyLimit,
    /// The node's serving rule, or a variant of it.
    pub serving: Serving,
    /// `peer_stall_timeout`: no piece for this long and a node goes upstream.
    pub stall: Duration,
    /// How many sources a node asks at once, besides the owner (the node's roster,
    /// `roster::DEFAULT_CAP`); `None`, a variant: every source it learns of, as the node did
    /// before the roster.
    pub source_cap: Option<usize>,
    /// Answers name the nodes their source sent pieces to lately (`x-shoal-peers`), and the
    /// asker takes them as sources, as the node does; off, only lookups find sources.
    pub referrals: bool,
    /// How often a spinning driver loop is looked at again.
    pub poll: Duration,
    /// Simulated time after which the run stops, complete or not.
    pub limit: Duration,
    pub seed: u64,
    /// Print how far the run got every 10 simulated seconds, on stderr.
    pub progress: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nodes: 16,
            size: 256 << 20,
            // 1 Gbit/s.
            link_rate: 125e6,
            slow_fraction: 0.0,
            slow_factor: 10.0,
            sharing: Sharing::Equal,
            rtt: Duration::from_micros(500),
            // About four round trips of a lookup that asks the 20 closest peers, 3 at a time.
            dht_latency: Duration::from_millis(4),
            discovery: Discovery::First(20),
            upload_slots: crate::config::DEFAULT_PEER_UPLOAD_SLOTS,
            window: super::Limits::default().window,
            copy_limit: CopyLimit::default(),
            serving: Serving::Node,
            stall: Duration::from_secs(10),
            source_cap: Some(super::roster::DEFAULT_CAP),
            referrals: true,
            // Backoffs end up to this much late; 1 ms gives the same results within the
            // spread between seeds (see docs/benchmarks.md), at twice the run time.
            poll: Duration::from_millis(10),
            limit: Duration::from_secs(3600),
            seed: 1,
            progress: false,
        }
    }
}

/// Runs one scenario to its end.
pub fn run(config: &Config) -> Report {
    assert!(config.nodes >= 2, "a fleet has an owner and at least one other node");
    World::new(config.clone()).run()
}
