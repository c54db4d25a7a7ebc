//! One simulated node: the pieces it holds and its upload slots (the serving side), and its
//! download in the shape the swarm driver gives it (the asking side).

use std::collections::HashMap;

use shoal_protocol::peer::{Have, PieceSet, PieceStatus, piece_count};

use super::super::roster::{Admitted, Roster, put_at};
use super::super::{Limits, Role, Scheduler, SourceId};
use super::events::Time;
use super::serving::Server;
use super::world::OWNER;
use crate::fetch::uploads::CopyLimit;

pub(super) struct Node {
    pub held: Held,
    /// Its upload slots: the real node's, and the copies it sent.
    pub server: Server,
    pub complete_at: Option<Time>,
    pub download: Download,
}

impl Node {
    pub(super) fn new(
        size: u64,
        upload_slots: usize,
        copy_limit: CopyLimit,
        source_cap: usize,
    ) -> Self {
        Self {
            held: Held::new(size),
            server: Server::new(upload_slots, copy_limit),
            complete_at: None,
            download: Download::new(source_cap),
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
pub(super) struct Download {
    pub sources: Vec<Source>,
    /// Which peers are sources now; the others wait their turn.
    pub roster: Roster<usize>,
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
    fn new(source_cap: usize) -> Self {
        Self {
            sources: Vec::new(),
            roster: Roster::new(source_cap),
            scheduler: None,
            out: HashMap::new(),
            running: false,
            first_piece: None,
            began: 0,
            last_piece: 0,
            wake_at: None,
            spinning_since: None,
            spun: 0,
            last_busy: None,
            probes: 0,
            lookups: 0,
            requests: 0,
            refused: 0,
        }
    }

    /// Takes the peers a lookup or an answer named, and returns the sources the roster
    /// admits now, to probe (the driver's `add_peers`).
    pub(super) fn learn(&mut self, peers: Vec<usize>) -> Vec<SourceId> {
        for peer in peers {
            self.roster.learn(peer);
        }
        self.admit()
    }

    /// Sources for the free places of the roster.
    pub(super) fn admit(&mut self) -> Vec<SourceId> {
        let mut admitted = Vec::new();
        while let Some(a) = self.roster.admit() {
            admitted.push(self.place(a));
        }
        admitted
    }

    /// The owner, once it accepted to fetch the blob for this node.
    pub(super) fn admit_owner(&mut self) -> Option<SourceId> {
        self.roster.admit_kept(OWNER).map(|a| self.place(a))
    }

    fn place(&mut self, admitted: Admitted<usize>) -> SourceId {
        let Admitted { id, peer } = admitted;
        let role = if peer == OWNER { Role::Owner } else { Role::Provider };
        put_at(&mut self.sources, id, Source { node: peer, role, probing: false });
        if let Some(scheduler) = &mut self.scheduler {
            scheduler.put_source(id, role, true);
        }
        id
    }

    /// After an idle source's status: it keeps its place if it has anything this node lacks,
    /// else it may give it up to a peer in line.
    pub(super) fn review(&mut self, source: SourceId) {
        let Some(scheduler) = &mut self.scheduler else { return };
        if self.roster.answered(source, scheduler.in_use(source)) {
            scheduler.drop_source(source);
        }
    }

    /// A source the scheduler gave up on (it failed too often) leaves the roster too.
    pub(super) fn forget_if_dead(&mut self, source: SourceId) {
        if self.scheduler.as_ref().is_some_and(|s| s.is_dead(source)) {
            self.roster.drop_source(source);
        }
    }

    /// Records a source's status, creating the scheduler at the first (the driver's
    /// `set_status`; every simulated source names the right size).
    pub(super) fn set_status(
        &mut self,
        source: SourceId,
        status: PieceStatus,
        seed: u64,
        window: usize,
    ) {
        let scheduler = self.scheduler.get_or_insert_with(|| {
            let limits = Limits { window, ..Limits::default() };
            let mut scheduler = Scheduler::new(status.size, limits, seed);
            for source in &self.sources {
                scheduler.add_source(source.role, true);
            }
            scheduler
        });
        scheduler.set_status(source, status);
    }
}
