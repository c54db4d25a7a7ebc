//! Which of the peers a download knows it asks at once: a bounded set of sources that
//! rotates, the other peers waiting their turn.
//!
//! With peer exchange a node soon knows nearly every node pulling the same blob. Asking all of
//! them costs what grows with the fleet: a status probe to each idle source every round, and a
//! scan of each at every scheduling decision (a 1,000-node swarm spent its time there). Keeping
//! only the first sources found is no answer either: every node keeps the same first holders
//! and the swarm starves, as it does when lookups name the same 20 providers. So the set
//! rotates, as BitTorrent's peers stop being "interested" in a peer that gives them nothing: a
//! source this node has not used for [`RETIRE_AFTER`] status rounds in a row (no piece from
//! it, no request out to it: it has nothing this node lacks, or is busy, or others were
//! chosen over it) makes room for the next peer in line and joins the back of the line
//! itself, since it may be of use again later. Nobody in line, and it stays. The owner always
//! stays.
//!
//! Slots are reused: a retired source's [`SourceId`] goes to the next peer admitted, so a
//! download's sources take room bounded by the cap, however long it runs. A source dropped for
//! failing keeps its slot (its requests may still be answering) and is never asked again.

use std::collections::VecDeque;

use super::SourceId;

/// Sources asked at once, besides the owner. Eight requests out at most, two per source: 32
/// leaves choice among sources that are busy or slow, and enough statuses to know who has
/// the next pieces. In the simulation at 100 nodes (`docs/benchmarks.md`): 2.25 T1 with half
/// the status probes of asking every source (1.97 T1); 48 and 64 give 2.15 with 1.4 and 2
/// times the probes of 32.
pub(crate) const DEFAULT_CAP: usize = 32;

/// Status rounds in a row that a source goes unused before it gives up its slot to a peer in
/// line: with a round every 200 ms, about half a second. Fewer churns sources for little gain
/// (2 measured the same makespan with a third more probes), more keeps unused ones longer.
pub(crate) const RETIRE_AFTER: u32 = 3;

/// Peers kept in line, besides the sources: the newest learnt first. Enough to replace every
/// source several times over before the next lookup or answer names more.
const WAITING_MAX: usize = 8 * DEFAULT_CAP;

/// A peer a roster can hold: it is told apart by its key.
pub(crate) trait Candidate: Clone {
    type Key: PartialEq;
    fn key(&self) -> Self::Key;
}

enum State {
    Active {
        idle_rounds: u32,
        keep: bool,
    },
    /// Retired: the slot is free for the next peer admitted.
    Free,
    Dropped,
}

struct Slot<P> {
    peer: P,
    state: State,
}

/// A slot handed out by [`Roster::admit`]: a retired source's id, or the next one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Admitted<P> {
    pub id: SourceId,
    pub peer: P,
}

/// Puts what a caller keeps per source under the id the roster gave: in place of the retired
/// source's, or at the end for a new id.
pub(crate) fn put_at<T>(items: &mut Vec<T>, id: SourceId, item: T) {
    if id < items.len() {
        items[id] = item;
    } else {
        debug_assert_eq!(id, items.len(), "ids are handed out in order");
        items.push(item);
    }
}

pub(crate) struct Roster<P> {
    cap: usize,
    slots: Vec<Slot<P>>,
    waiting: VecDeque<P>,
}

impl<P: Candidate> Roster<P> {
    pub(crate) fn new(cap: usize) -> Self {
        Self { cap, slots: Vec::new(), waiting: VecDeque::new() }
    }

    /// A peer a lookup or a source's answer named. Peers already sources, in line, or dropped
    /// are ignored; a new one goes to the front of the line, since the newest names are the
    /// likeliest to be receiving now.
    pub(crate) fn learn(&mut self, peer: P) {
        let key = peer.key();
        let sourced =
            self.slots.iter().any(|s| !matches!(s.state, State::Free) && s.peer.key() == key);
        if sourced || self.waiting.iter().any(|p| p.key() == key) {
            return;
        }
        self.waiting.push_front(peer);
        self.waiting.truncate(WAITING_MAX);
    }

    /// Whether the peer is a source, in line, or dropped.
    pub(crate) fn knows(&self, key: &P::Key) -> bool {
        self.slots.iter().any(|s| !matches!(s.state, State::Free) && &s.peer.key() == key)
            || self.waiting.iter().any(|p| &p.key() == key)
    }

    /// The next peer in line to ask, while fewer than the cap are being asked.
    pub(crate) fn admit(&mut self) -> Option<Admitted<P>> {
        if self.active() >= self.cap {
            return None;
        }
        let peer = self.waiting.pop_front()?;
        Some(self.place(peer, false))
    }

    /// A peer asked to fetch the blob for this node (the owner): a source at once, whatever
    /// the cap, and never retired. `None` if it is a source already, or was dropped.
    pub(crate) fn admit_kept(&mut self, peer: P) -> Option<Admitted<P>> {
        let key = peer.key();
        if self.slots.iter().any(|s| !matches!(s.state, State::Free) && s.peer.key() == key) {
            return None;
        }
        self.waiting.retain(|p| p.key() != key);
        Some(self.place(peer, true))
    }

    fn place(&mut self, peer: P, keep: bool) -> Admitted<P> {
        let state = State::Active { idle_rounds: 0, keep };
        let free = self.slots.iter().position(|s| matches!(s.state, State::Free));
        let id = free.unwrap_or(self.slots.len());
        put_at(&mut self.slots, id, Slot { peer: peer.clone(), state });
        Admitted { id, peer }
    }

    /// An idle source's status came back (sources with requests out are not asked for one);
    /// `in_use` when requests went out to it since it was asked. Returns `true` when the
    /// source is retired now; the caller stops asking it (its slot is reused by the next
    /// [`admit`](Self::admit)).
    pub(crate) fn answered(&mut self, id: SourceId, in_use: bool) -> bool {
        let someone_waits = !self.waiting.is_empty();
        let slot = &mut self.slots[id];
        let State::Active { idle_rounds, keep } = &mut slot.state else { return false };
        *idle_rounds = if in_use { 0 } else { *idle_rounds + 1 };
        if *keep || *idle_rounds < RETIRE_AFTER || !someone_waits {
            return false;
        }
        slot.state = State::Free;
        self.waiting.push_back(slot.peer.clone());
        true
    }

    /// A piece came in from the source: it earns its place again.
    pub(crate) fn delivered(&mut self, id: SourceId) {
        if let State::Active { idle_rounds, .. } = &mut self.slots[id].state {
            *idle_rounds = 0;
        }
    }

    /// The source failed or lied: it is never asked again.
    pub(crate) fn drop_source(&mut self, id: SourceId) {
        self.slots[id].state = State::Dropped;
    }

    /// Sources being asked, besides the owner.
    pub(crate) fn active(&self) -> usize {
        let counted = |s: &&Slot<P>| matches!(s.state, State::Active { keep: false, .. });
        self.slots.iter().filter(counted).count()
    }

    /// Whether more peers would be of use: a provider lookup is worth making.
    pub(crate) fn wants_peers(&self) -> bool {
        self.active() < self.cap || self.waiting.len() < self.cap
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

impl Candidate for usize {
    type Key = usize;
    fn key(&self) -> usize {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit_all(r: &mut Roster<usize>) -> Vec<(SourceId, usize)> {
        std::iter::from_fn(|| r.admit()).map(|a| (a.id, a.peer)).collect()
    }

    #[test]
    fn admits_up_to_the_cap_newest_first_and_ignores_known_peers() {
        let mut r = Roster::new(2);
        for peer in [10, 11, 12, 11] {
            r.learn(peer);
        }
        assert_eq!(admit_all(&mut r), vec![(0, 12), (1, 11)]);
        r.learn(12);
        r.learn(11);
        assert_eq!(r.waiting(), 1, "sources are not put in line again");
        let owner = r.admit_kept(1).expect("the owner joins whatever the cap");
        assert_eq!(owner.id, 2, "a new slot");
        assert_eq!(r.active(), 2, "the owner is not counted against the cap");
        assert!(r.admit_kept(1).is_none(), "the owner is a source already");
    }

    #[test]
    fn a_source_left_unused_gives_its_slot_to_the_next_in_line() {
        let mut r = Roster::new(1);
        r.learn(10);
        assert_eq!(admit_all(&mut r), vec![(0, 10)]);
        // Nobody in line: an unused source stays (it is better than none).
        for _ in 0..RETIRE_AFTER + 2 {
            assert!(!r.answered(0, false));
        }
        r.learn(20);
        // A source in use, or one that delivered a piece, starts the count again.
        assert!(!r.answered(0, true));
        r.answered(0, false);
        r.delivered(0);
        for _ in 1..RETIRE_AFTER {
            assert!(!r.answered(0, false));
        }
        assert!(r.answered(0, false), "retired after {RETIRE_AFTER} unused statuses in a row");
        let next = r.admit().expect("its slot is free");
        assert_eq!(next, Admitted { id: 0, peer: 20 }, "the retired source's slot");
        // The retired peer waits at the back of the line, and may come back.
        assert_eq!(r.waiting(), 1);
        for _ in 0..RETIRE_AFTER {
            r.answered(0, false);
        }
        assert_eq!(r.admit().map(|a| a.peer), Some(10));
    }

    #[test]
    fn the_owner_and_dropped_sources_are_never_retired_or_readmitted() {
        let mut r = Roster::new(4);
        let owner = r.admit_kept(1).unwrap().id;
        r.learn(10);
        let bad = r.admit().unwrap().id;
        r.learn(20);
        for _ in 0..RETIRE_AFTER * 2 {
            assert!(!r.answered(owner, false));
        }
        r.drop_source(bad);
        r.learn(10);
        assert_eq!(admit_all(&mut r), vec![(2, 20)], "a dropped peer is not learnt again");
        assert!(!r.answered(bad, false));
    }

    #[test]
    fn the_line_is_bounded() {
        let mut r = Roster::new(1);
        for peer in 0..WAITING_MAX * 2 {
            r.learn(peer);
        }
        assert_eq!(r.waiting(), WAITING_MAX);
        assert!(r.wants_peers(), "no source yet");
        r.admit();
        assert!(!r.wants_peers(), "a full roster and a long line: no lookup needed");
    }
}
