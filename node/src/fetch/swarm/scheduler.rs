//! Which piece to ask of which source, next: the swarm's decisions, with no I/O and no clock
//! of its own, so the discrete-event simulation drives the very same code as the node.
//!
//! The rules, in the order they apply:
//! - A source is asked only for pieces its last status says it can serve, never for more than
//!   [`Limits::per_source`] at once (one once it has been slow), and a download never has more
//!   than [`Limits::total`] requests out.
//! - The owner is asked only for pieces no other live source holds at a fair pace (one that
//!   refused the piece a moment ago still counts): it is the one node that has every piece
//!   first, and its uplink is the fleet's bottleneck if everyone uses it; but a slow provider
//!   must not leave it idle. Once a provider's pace is known, the owner is asked for one piece
//!   to time it too, so that providers that are all slow show as slow next to it.
//! - A source is slow when its pieces take more than [`SLOW_FACTOR`] times as long as the
//!   fastest source's (each source's piece time is a moving average), or when a piece of its
//!   had to be asked elsewhere; it is judged again with each piece it sends.
//! - Pieces are taken from a window at the front of what is missing, so local clients, which
//!   follow the contiguous prefix, keep streaming; inside the window the piece fewest sources
//!   serve goes first, ties broken at random, so that nodes asking the same source spread over
//!   different pieces and then trade them among themselves.
//! - When nothing new is left to ask, a piece out for longer than a few typical piece times is
//!   asked of a second source (a hedge); the first copy in wins and the other is cancelled. A
//!   piece out to the owner is late by the owner's own pace, which its many askers slow.
//! - A busy source (its upload slots are full) is left alone for a moment; a failing one for
//!   longer; after [`Limits::max_failures`] failures in a row it is dropped. A source that
//!   refuses one piece because it sent it often enough just now is not asked for that piece
//!   for a moment, and is asked for others meanwhile.

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use shoal_protocol::peer::{PieceSet, PieceStatus, piece_count};

use super::roster::put_at;

pub(crate) type SourceId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The digest's owner: it fetches from the upstream for the fleet.
    Owner,
    /// A node that holds the blob or part of it.
    Provider,
}

#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub per_source: usize,
    pub total: usize,
    /// Missing pieces considered at once, from the front.
    pub window: usize,
    pub busy_backoff: Duration,
    pub error_backoff: Duration,
    pub max_failures: u32,
    /// A piece out for less than this is never hedged, however fast pieces usually come.
    pub hedge_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_source: 2,
            total: 8,
            // 16 MiB ahead of the prefix. In the simulation 16 rather than 8 took 100 nodes
            // from 2.5 to 2.25 T1 and 16 nodes from 1.98 to 1.85, and clients still stream.
            window: 16,
            busy_backoff: Duration::from_millis(100),
            error_backoff: Duration::from_millis(500),
            max_failures: 3,
            hedge_after: Duration::from_millis(500),
        }
    }
}

/// Why a piece request ended without the piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The source's upload slots are full.
    Busy,
    /// The source sent this piece often enough just now; the nodes that got it have it.
    Spread,
    /// The source no longer (or not yet) has the piece; its new status says what it has.
    NotHeld,
    /// The connection failed, stalled, or the source answered nonsense.
    Error,
}

/// One request to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub source: SourceId,
    pub piece: u32,
    /// A second request for a piece already out elsewhere.
    pub hedge: bool,
}

struct Source {
    role: Role,
    same_site: bool,
    status: Option<PieceStatus>,
    /// The pieces its status serves, worked out once per status: `next` asks for every
    /// source and missing piece, and [`PieceStatus::serves`] divides on each call.
    served: Bits,
    active: usize,
    not_before: Option<Instant>,
    /// Pieces it refused to send again just now, and until when they are not asked of it.
    /// A few at most: they expire within a backoff.
    refused: Vec<(u32, Instant)>,
    failures: u32,
    dead: bool,
    slow: bool,
    /// Moving average of how long this source takes for a piece.
    piece_time: Option<Duration>,
}

impl Source {
    fn new(role: Role, same_site: bool, pieces: u32) -> Self {
        Self {
            role,
            same_site,
            status: None,
            served: Bits::empty(pieces),
            active: 0,
            not_before: None,
            refused: Vec::new(),
            failures: 0,
            dead: false,
            slow: false,
            piece_time: None,
        }
    }
}

struct Out {
    source: SourceId,
    since: Instant,
}

pub(crate) struct Scheduler {
    size: u64,
    done: PieceSet,
    out: Vec<Vec<Out>>,
    sources: Vec<Source>,
    limits: Limits,
    rng: SmallRng,
}

/// How many times slower than the fastest source a source may be before it counts as slow.
const SLOW_FACTOR: u32 = 4;

impl Scheduler {
    pub(crate) fn new(size: u64, limits: Limits, seed: u64) -> Self {
        let count = piece_count(size);
        Self {
            size,
            done: PieceSet::empty(count),
            out: (0..count).map(|_| Vec::new()).collect(),
            sources: Vec::new(),
            limits,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn add_source(&mut self, role: Role, same_site: bool) -> SourceId {
        self.sources.push(Source::new(role, same_site, self.done.len()));
        self.sources.len() - 1
    }

    /// A source under the id the roster gave it: a retired source's (which was retired idle,
    /// so nothing is out to it) or the next one.
    pub(crate) fn put_source(&mut self, id: SourceId, role: Role, same_site: bool) {
        debug_assert!(
            self.sources.get(id).is_none_or(|s| s.active == 0),
            "a source retired with requests out"
        );
        put_at(&mut self.sources, id, Source::new(role, same_site, self.done.len()));
    }

    /// Whether requests are out to the source.
    pub(crate) fn in_use(&self, id: SourceId) -> bool {
        self.sources[id].active > 0
    }

    /// Whether the source was dropped, by the caller or for failing too often.
    pub(crate) fn is_dead(&self, id: SourceId) -> bool {
        self.sources[id].dead
    }

    /// Records what a source holds. A status for a blob of another size is a lie or a bug on
    /// its side: the source is dropped.
    pub(crate) fn set_status(&mut self, id: SourceId, status: PieceStatus) {
        let source = &mut self.sources[id];
        if status.size != self.size {
            source.dead = true;
        }
        source.served = Bits::of(self.done.len(), |piece| status.serves(piece));
        source.status = Some(status);
    }

    /// Stops asking a source (it sent wrong bytes, or it is gone for good).
    pub(crate) fn drop_source(&mut self, id: SourceId) {
        self.sources[id].dead = true;
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.done.is_full()
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.out.iter().map(Vec::len).sum()
    }

    /// Whether any source that is not dropped remains.
    pub(crate) fn has_live_source(&self) -> bool {
        self.sources.iter().any(|s| !s.dead)
    }

    /// Whether the source's status is worth asking for again: it may have more pieces by now
    /// and no answer of a piece request will say so.
    pub(crate) fn wants_status(&self, id: SourceId) -> bool {
        let src = &self.sources[id];
        !src.dead && src.active == 0 && src.status.as_ref().is_none_or(|s| !s.is_complete())
    }

    /// The next request to make now, if any; call until `None`.
    pub(crate) fn next(&mut self, now: Instant) -> Option<Assignment> {
        if self.outstanding() >= self.limits.total || self.is_complete() {
            return None;
        }
        for src in &mut self.sources {
            src.refused.retain(|&(_, until)| until > now);
        }
        let mut order: Vec<SourceId> =
            (0..self.sources.len()).filter(|&s| self.ready(s, now)).collect();
        // Same site first, then sources with the fewest requests out; the owner last.
        let jitter: Vec<u32> = order.iter().map(|_| self.rng.random()).collect();
        let mut keyed: Vec<_> = order.iter().copied().zip(jitter).collect();
        keyed.sort_by_key(|&(s, j)| {
            let src = &self.sources[s];
            (src.role == Role::Owner, !src.same_site, src.active, j)
        });
        order = keyed.into_iter().map(|(s, _)| s).collect();
        let mut fresh = Fresh::new(self);
        for &source in &order {
            if let Some(piece) = self.pick_fresh(source, &mut fresh) {
                return Some(self.assign(source, piece, false, now));
            }
        }
        let stale = self.stale(now);
        for &source in &order {
            if let Some(piece) = self.pick_hedge(source, &stale) {
                self.sources[self.out[piece as usize][0].source].slow = true;
                return Some(self.assign(source, piece, true, now));
            }
        }
        None
    }

    /// The piece arrived from `source`. Returns the other sources still sending it, whose
    /// requests the caller cancels.
    pub(crate) fn completed(
        &mut self,
        source: SourceId,
        piece: u32,
        now: Instant,
    ) -> Vec<SourceId> {
        let out = std::mem::take(&mut self.out[piece as usize]);
        let mut others = Vec::new();
        for request in out {
            self.sources[request.source].active -= 1;
            if request.source == source {
                let took = now.saturating_duration_since(request.since);
                let src = &mut self.sources[source];
                src.piece_time = Some(match src.piece_time {
                    None => took,
                    Some(average) => (average * 3 + took) / 4,
                });
            } else {
                others.push(request.source);
            }
        }
        self.sources[source].failures = 0;
        // Judged again on every piece: a source slowed by a moment's load, or marked slow
        // because one piece of it was late, is asked at its full pace once its pieces come
        // at a fair pace again.
        if let (Some(own), Some(best)) = (self.sources[source].piece_time, self.best_piece_time()) {
            self.sources[source].slow = own > best * SLOW_FACTOR;
        }
        self.done.insert(piece);
        others
    }

    pub(crate) fn failed(&mut self, source: SourceId, piece: u32, failure: Failure, now: Instant) {
        let out = &mut self.out[piece as usize];
        if let Some(at) = out.iter().position(|r| r.source == source) {
            out.swap_remove(at);
            self.sources[source].active -= 1;
        }
        let src = &mut self.sources[source];
        match failure {
            Failure::Busy => {
                let backoff = self.limits.busy_backoff;
                let jitter = backoff.mul_f64(self.rng.random::<f64>());
                src.not_before = Some(now + backoff + jitter);
            }
            Failure::Spread => {
                let backoff = self.limits.busy_backoff;
                let until = now + backoff + backoff.mul_f64(self.rng.random::<f64>());
                src.refused.retain(|&(p, _)| p != piece);
                src.refused.push((piece, until));
            }
            Failure::NotHeld => {}
            Failure::Error => {
                src.failures += 1;
                src.not_before = Some(now + self.limits.error_backoff);
                if src.failures >= self.limits.max_failures {
                    src.dead = true;
                }
            }
        }
    }

    /// When, after `now`, the next request could become possible without any answer
    /// arriving: a backoff or a refusal ending, or a piece becoming old enough to hedge.
    /// Backoffs that ended already change nothing by themselves: a caller that slept until
    /// one of those would wake at once, again and again.
    pub(crate) fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        let live = self.sources.iter().filter(|s| !s.dead);
        let backoffs = live.clone().filter_map(|s| s.not_before);
        let refusals = live.flat_map(|s| s.refused.iter().map(|&(_, until)| until));
        let after = self.hedge_after_by_source();
        let hedges =
            self.out.iter().filter(|o| o.len() == 1).map(|o| o[0].since + after(o[0].source));
        backoffs.chain(refusals).chain(hedges).filter(|&t| t > now).min()
    }

    fn ready(&self, s: SourceId, now: Instant) -> bool {
        let src = &self.sources[s];
        let limit = if src.slow { 1 } else { self.limits.per_source };
        !src.dead
            && src.status.is_some()
            && src.active < limit
            && src.not_before.is_none_or(|t| now >= t)
    }

    fn serves(&self, s: SourceId, piece: u32) -> bool {
        let src = &self.sources[s];
        !src.dead && src.served.contains(piece) && !src.refused.iter().any(|&(p, _)| p == piece)
    }

    fn pick_fresh(&mut self, source: SourceId, fresh: &mut Fresh) -> Option<u32> {
        let is_owner = self.sources[source].role == Role::Owner;
        let on_trial = is_owner && self.owner_on_trial(source);
        let mut window = Vec::with_capacity(self.limits.window);
        let Fresh { pieces, servers: known } = fresh;
        for piece in pieces.common(&self.sources[source].served) {
            if window.len() == self.limits.window {
                break;
            }
            if !self.serves(source, piece) {
                continue;
            }
            let servers = *known[piece as usize].get_or_insert_with(|| self.servers(piece));
            // The owner waits only for providers that keep a fair pace.
            if is_owner && servers.fair > 0 && !on_trial {
                continue;
            }
            // `servers` counts this source too, unless it is the owner.
            let others = servers.providers - usize::from(!is_owner);
            window.push((piece, others));
        }
        let rarest = window.iter().map(|&(_, n)| n).min()?;
        let candidates: Vec<u32> =
            window.iter().filter(|&&(_, n)| n == rarest).map(|&(p, _)| p).collect();
        Some(candidates[self.rng.random_range(0..candidates.len())])
    }

    /// Whether the owner is asked for one piece whatever the providers serve, to time it:
    /// a provider is slow only next to a faster source, so providers that are all slow, or
    /// one alone, would keep the owner idle for good once their own pace set the bar. Once,
    /// when a provider's pace is known and before the owner's is; a refused trial is asked
    /// again after its backoff, like any request.
    fn owner_on_trial(&self, owner: SourceId) -> bool {
        let src = &self.sources[owner];
        src.piece_time.is_none() && src.active == 0 && self.best_piece_time().is_some()
    }

    /// The pieces out to one source only, for long enough to be asked of a second.
    fn stale(&self, now: Instant) -> Vec<u32> {
        let after = self.hedge_after_by_source();
        (0..self.done.len())
            .filter(|&piece| {
                let out = &self.out[piece as usize];
                out.len() == 1
                    && now.saturating_duration_since(out[0].since) >= after(out[0].source)
            })
            .collect()
    }

    fn pick_hedge(&self, source: SourceId, stale: &[u32]) -> Option<u32> {
        stale.iter().copied().find(|&piece| {
            self.out[piece as usize][0].source != source && self.serves(source, piece)
        })
    }

    /// How many providers serve `piece` now, and how many hold it and keep a fair pace. A
    /// holder that refused the piece a moment ago (it sent it often enough just now) still
    /// counts as fair: it serves it again within a backoff, and the nodes it sent it to are
    /// about to; asking the owner meanwhile would spend the fleet's scarcest uplink on a copy
    /// the swarm already has.
    fn servers(&self, piece: u32) -> Servers {
        let mut servers = Servers { providers: 0, fair: 0 };
        for (id, src) in self.sources.iter().enumerate() {
            if src.role == Role::Owner || src.dead || !src.served.contains(piece) {
                continue;
            }
            servers.providers += usize::from(self.serves(id, piece));
            servers.fair += usize::from(!src.slow);
        }
        servers
    }

    /// The piece time of the fastest live source.
    fn best_piece_time(&self) -> Option<Duration> {
        self.sources.iter().filter(|s| !s.dead).filter_map(|s| s.piece_time).min()
    }

    /// How long a piece out to a given source waits before it is hedged. For the owner, by
    /// its own pace as well as the fastest source's: it shares its uplink among every node it
    /// serves, so its pieces come slower than a provider's without anything being wrong, and a
    /// hedge that wins cancels bytes it already sent on the fleet's scarcest uplink. A stalled
    /// owner is still hedged.
    fn hedge_after_by_source(&self) -> impl Fn(SourceId) -> Duration + '_ {
        let after = self.hedge_after();
        let owner = self.sources.iter().find(|s| s.role == Role::Owner).and_then(|s| s.piece_time);
        let owner_after = owner.map_or(after, |t| (t * SLOW_FACTOR).max(after));
        move |source| match self.sources[source].role {
            Role::Owner => owner_after,
            Role::Provider => after,
        }
    }

    fn hedge_after(&self) -> Duration {
        self.best_piece_time()
            .map_or(self.limits.hedge_after, |t| (t * SLOW_FACTOR).max(self.limits.hedge_after))
    }

    fn assign(&mut self, source: SourceId, piece: u32, hedge: bool, now: Instant) -> Assignment {
        self.out[piece as usize].push(Out { source, since: now });
        self.sources[source].active += 1;
        Assignment { source, piece, hedge }
    }
}

/// What every source's pick of a fresh piece within one [`Scheduler::next`] call shares:
/// nothing changes until a piece is assigned, and a scan of every source per piece, per
/// source asked, is what made a large swarm's `next` slow.
struct Fresh {
    /// Missing pieces not out to any source.
    pieces: Bits,
    /// Per piece, once some source's window reached it.
    servers: Vec<Option<Servers>>,
}

#[derive(Clone, Copy)]
struct Servers {
    providers: usize,
    fair: usize,
}

impl Fresh {
    fn new(scheduler: &Scheduler) -> Self {
        let count = scheduler.done.len();
        let pieces = Bits::of(count, |p| {
            !scheduler.done.contains(p) && scheduler.out[p as usize].is_empty()
        });
        Self { pieces, servers: vec![None; count as usize] }
    }
}

/// A set of pieces as 64-bit words, so a scan of every source in `next` can skip whole words.
struct Bits(Vec<u64>);

impl Bits {
    fn empty(count: u32) -> Self {
        Self(vec![0; count.div_ceil(64) as usize])
    }

    fn of(count: u32, holds: impl Fn(u32) -> bool) -> Self {
        let mut bits = Self::empty(count);
        for piece in (0..count).filter(|&p| holds(p)) {
            bits.0[piece as usize / 64] |= 1 << (piece % 64);
        }
        bits
    }

    fn contains(&self, piece: u32) -> bool {
        self.0.get(piece as usize / 64).is_some_and(|w| w >> (piece % 64) & 1 == 1)
    }

    /// The pieces in both sets, in order.
    fn common<'a>(&'a self, other: &'a Bits) -> impl Iterator<Item = u32> + 'a {
        self.0.iter().zip(&other.0).enumerate().flat_map(|(at, (&a, &b))| {
            let mut both = a & b;
            std::iter::from_fn(move || {
                let bit = (both != 0).then(|| both.trailing_zeros())?;
                both &= both - 1;
                Some(at as u32 * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests;
