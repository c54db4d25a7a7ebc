//! One simulated node: the pieces it holds and its upload slots (the serving side), and its
//! download in the shape the swarm driver gives it (the asking side).

use std::collections::HashMap;

use shoal_protocol::peer::{Have, PieceSet, PieceStatus, piece_count};

use super::super::{Role, Scheduler, SourceId};
use super::events::Time;
use super::serving::Server;

pub(super) struct Node {
    pub held: Held,
    /// Its upload slots: the real node's, and the copies it sent.
    pub server: Server,
    pub complete_at: Option<Time>,
    pub download: Download,
}

impl Node {
    pub(super) fn new(size: u64, upload_slots: usize) -> Self {
        Self {
            held: Held::new(size),
            server: Server::new(upload_slots),
            complete_at: None,
            download: Download::default(),
        }
    }

    /// What the node says it holds, as its data plane would (not for the owner, whose
    /// status follows the upstream).
    pub(super) fn status(&self, size: u64) -> PieceStatus {
        if self.complete_at.is_some() {
            return PieceStatus::complete(size);
        }
        PieceStatus { size, have: Have::Partial { pieces: self.held.set.clone(), live: None } }
    }
}

/// Pieces of the blob that a node holds.
pub(super) struct Held {
    pub set: PieceSet,
    pub count: u32,
}

impl Held {
    fn new(size: u64) -> Self {
        Self { set: PieceSet::empty(piece_count(size)), count: 0 }
    }

    pub(super) fn insert(&mut self, piece: u32) {
        if !self.set.contains(piece) {
            self.set.insert(piece);
            self.count += 1;
        }
    }

    /// Whole pieces from the first on, without a gap: where an upstream fetch would resume.
    pub(super) fn prefix(&self) -> u32 {
        (0..self.set.len()).find(|&p| !self.set.contains(p)).unwrap_or(self.set.len())
    }
}

/// A source as the driver keeps it next to the scheduler's (same index).
pub(super) struct Source {
    pub node: usize,
    pub role: Role,
    /// A status probe is out.
    pub probing: bool,
}

/// The driver's state for one download (`swarm/mod.rs`, `Run`), with the counters the report
/// needs.
#[derive(Default)]
pub(super) struct Download {
    pub sources: Vec<Source>,
    pub known: HashMap<usize, SourceId>,
    /// Created by the first status, which tells the size.
    pub scheduler: Option<Scheduler>,
    /// Piece requests out, by source and piece: the request's id.
    pub out: HashMap<(SourceId, u32), u64>,
    /// The driver's loop runs (from its first source until it ends).
    pub running: bool,
    /// When the first piece came in (and the node announced itself).
    pub first_piece: Option<Time>,
    pub began: Time,
    pub last_piece: Time,
    /// The one wake-up the loop waits for, if any.
    pub wake_at: Option<Time>,
    /// Since when the loop has had a wake-up time in the past: the real driver spins then.
    pub spinning_since: Option<Time>,
    pub spun: Time,
    /// When a source last answered `503`.
    pub last_busy: Option<Time>,
    pub probes: u64,
    /// Provider lookups made, as the driver counts them for its schedule.
    pub lookups: u32,
    pub requests: u64,
    pub refused: u64,
}

impl Download {
    /// Adds a peer not seen yet; returns its id if it is new.
    pub(super) fn add_source(&mut self, node: usize, role: Role) -> Option<SourceId> {
        if self.known.contains_key(&node) {
            return None;
        }
        let id = self.sources.len();
        if let Some(scheduler) = &mut self.scheduler {
            scheduler.add_source(role, true);
        }
        self.sources.push(Source { node, role, probing: false });
        self.known.insert(node, id);
        Some(id)
    }

    /// Records a source's status, creating the scheduler at the first (the driver's
    /// `set_status`; every simulated source names the right size).
    pub(super) fn set_status(&mut self, source: SourceId, status: PieceStatus, seed: u64) {
        let scheduler = self.scheduler.get_or_insert_with(|| {
            let mut scheduler = Scheduler::new(status.size, Default::default(), seed);
            for source in &self.sources {
                scheduler.add_source(source.role, true);
            }
            scheduler
        });
        scheduler.set_status(source, status);
    }
}
