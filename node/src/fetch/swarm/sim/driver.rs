//! The asking side of every node, step for step as the swarm driver (`swarm/mod.rs`) runs a
//! download: the first provider lookup, else the owner; a status probe per new source; the
//! scheduler asked for requests after every event; statuses refreshed every 200 ms and
//! providers on the driver's schedule; no piece for the stall timeout and the node goes
//! upstream.

use std::time::{Duration, Instant};

use rand::RngExt;
use shoal_protocol::peer::{PieceStatus, piece_range};

use super::super::{Failure, Limits, SourceId, provider_refresh};
use super::events::{Event, Time};
use super::world::{OWNER, Request, World, nanos};

/// The driver's `STATUS_REFRESH`.
const STATUS_REFRESH: Duration = Duration::from_millis(200);

impl World {
    pub(super) fn on_providers(&mut self, now: Time, node: usize, first: bool) {
        if !first && !self.nodes[node].download.running {
            return;
        }
        let found = self.dht.lookup(node);
        if !first {
            self.add_peers(now, node, found);
            self.drain(now, node);
            return;
        }
        if node == OWNER {
            // Nobody provides it yet and this node is the owner: it goes upstream.
            self.start_owner(now);
            return;
        }
        self.add_peers(now, node, found);
        if self.nodes[node].download.sources.is_empty() {
            // `FetchBlob`: the owner answers once its upstream fetch knows the size.
            let arrives = now + self.half_rtt();
            let started = self.start_owner(arrives);
            self.queue.push(arrives.max(started) + self.half_rtt(), Event::OwnerAccepted(node));
        } else {
            self.start_drive(now, node);
        }
    }

    pub(super) fn on_owner_accepted(&mut self, now: Time, node: usize) {
        if let Some(source) = self.nodes[node].download.admit_owner() {
            self.probe(now, node, source);
        }
        self.start_drive(now, node);
    }

    fn add_peers(&mut self, now: Time, node: usize, found: Vec<usize>) {
        for source in self.nodes[node].download.learn(found) {
            self.probe(now, node, source);
        }
    }

    /// A `HEAD` for the source's status. It is taken when sent: half a round trip early, a
    /// small fraction of a piece's time.
    fn probe(&mut self, now: Time, node: usize, source: SourceId) {
        let download = &mut self.nodes[node].download;
        if download.sources[source].probing {
            return;
        }
        download.sources[source].probing = true;
        download.probes += 1;
        let peer = download.sources[source].node;
        let status = self.status(peer, now + self.half_rtt());
        let referred = self.referred(peer, node, self.instant(now + self.half_rtt()));
        let event = Event::Status { node, source, status, referred };
        self.queue.push(now + nanos(self.cfg.rtt), event);
    }

    fn start_drive(&mut self, now: Time, node: usize) {
        let download = &mut self.nodes[node].download;
        download.running = true;
        download.began = now;
        download.last_piece = now;
        self.queue.push(now + nanos(STATUS_REFRESH), Event::StatusRound(node));
        download.lookups = 1;
        self.queue.push(now + nanos(provider_refresh(1)), Event::ProviderRound(node));
        self.drain(now, node);
    }

    pub(super) fn on_status(
        &mut self,
        now: Time,
        node: usize,
        source: SourceId,
        status: PieceStatus,
        referred: Vec<usize>,
    ) {
        let seed = self.rng.random();
        let download = &mut self.nodes[node].download;
        download.sources[source].probing = false;
        if download.running {
            download.set_status(source, status, seed, self.cfg.window);
            download.review(source);
            self.add_peers(now, node, referred);
            self.drain(now, node);
        }
    }

    pub(super) fn on_status_round(&mut self, now: Time, node: usize) {
        let download = &self.nodes[node].download;
        if !download.running {
            return;
        }
        let stale: Vec<SourceId> = (0..download.sources.len())
            .filter(|&s| {
                !download.sources[s].probing
                    && download.scheduler.as_ref().is_none_or(|sch| sch.wants_status(s))
            })
            .collect();
        for source in stale {
            self.probe(now, node, source);
        }
        self.queue.push(now + nanos(STATUS_REFRESH), Event::StatusRound(node));
    }

    pub(super) fn on_provider_round(&mut self, now: Time, node: usize) {
        let download = &mut self.nodes[node].download;
        if download.running {
            download.lookups += 1;
            let next = now + nanos(provider_refresh(download.lookups));
            if download.roster.wants_peers() {
                let at = now + nanos(self.cfg.dht_latency);
                self.queue.push(at, Event::Providers { node, first: false });
            }
            self.queue.push(next, Event::ProviderRound(node));
        }
    }

    /// The answer of a request that did not bring the piece: its status, then the failure.
    pub(super) fn on_refused(&mut self, now: Time, id: u64) {
        let Some(request) = self.requests.remove(&id) else { return };
        let Some(failure) = request.refused else { return };
        let seed = self.rng.random();
        let at = self.instant(now);
        self.add_peers(now, request.from, request.referred);
        let download = &mut self.nodes[request.from].download;
        download.out.remove(&(request.source, request.piece));
        if matches!(failure, Failure::Busy | Failure::Spread) {
            download.refused += 1;
            download.last_busy = Some(now);
        }
        if let Some(status) = request.status {
            download.set_status(request.source, status, seed, self.cfg.window);
        }
        if let Some(scheduler) = &mut download.scheduler {
            scheduler.failed(request.source, request.piece, failure, at);
        }
        download.forget_if_dead(request.source);
        self.add_peers(now, request.from, Vec::new());
        self.drain(now, request.from);
    }

    pub(super) fn on_delivered(&mut self, now: Time, id: u64) {
        let Some(request) = self.requests.remove(&id) else { return };
        let (node, piece, source) = (request.from, request.piece, request.source);
        // Named in the answer's head; taken here, when its body is in: a little late.
        self.add_peers(now, node, request.referred);
        let seed = self.rng.random();
        let at = self.instant(now);
        let download = &mut self.nodes[node].download;
        download.out.remove(&(source, piece));
        if let Some(status) = request.status {
            download.set_status(source, status, seed, self.cfg.window);
        }
        let Some(scheduler) = &mut download.scheduler else { return };
        let losers: Vec<u64> = scheduler
            .completed(source, piece, at)
            .into_iter()
            .filter_map(|other| download.out.remove(&(other, piece)))
            .collect();
        download.last_piece = now;
        download.roster.delivered(source);
        let first = download.first_piece.is_none();
        download.first_piece.get_or_insert(now);
        self.nodes[node].held.insert(piece);
        for loser in losers {
            self.cancel(now, loser);
        }
        if first {
            self.queue.push(now + nanos(self.cfg.dht_latency), Event::Announced(node));
        }
        self.drain(now, node);
    }

    /// One turn of the driver's loop: done? stalled? then every request the scheduler wants
    /// now, and when to look again.
    pub(super) fn drain(&mut self, now: Time, node: usize) {
        let at = self.instant(now);
        let download = &mut self.nodes[node].download;
        if !download.running {
            return;
        }
        if let Some(since) = download.spinning_since.take() {
            download.spun += now - since;
        }
        if download.scheduler.as_ref().is_some_and(|s| s.is_complete()) {
            return self.finish(now, node);
        }
        let stall = download.last_piece + nanos(self.cfg.stall);
        if now >= stall {
            return self.give_up(now, node);
        }
        let mut sent = Vec::new();
        if let Some(scheduler) = &mut download.scheduler {
            let clock = Instant::now();
            while let Some(assignment) = scheduler.next(at) {
                sent.push(assignment);
            }
            self.next_time += clock.elapsed();
            self.next_calls += sent.len() as u64 + 1;
        }
        for assignment in sent {
            let id = self.next_request;
            self.next_request += 1;
            let download = &mut self.nodes[node].download;
            download.requests += 1;
            download.out.insert((assignment.source, assignment.piece), id);
            let to = download.sources[assignment.source].node;
            self.requests.insert(
                id,
                Request {
                    from: node,
                    to,
                    source: assignment.source,
                    piece: assignment.piece,
                    sent: now,
                    flow: None,
                    status: None,
                    refused: None,
                    referred: Vec::new(),
                },
            );
            self.queue.push(now + self.half_rtt(), Event::Arrive(id));
        }
        let wakeup = self.nodes[node]
            .download
            .scheduler
            .as_ref()
            .and_then(|s| s.next_wakeup(self.instant(now)));
        let mut wake = stall;
        if let Some(wakeup) = wakeup.map(|w| self.time(w)) {
            if wakeup > now {
                wake = wake.min(wakeup);
            } else {
                // A wake-up time already past: the real loop spins until its next event.
                self.nodes[node].download.spinning_since = Some(now);
                wake = wake.min(self.spin_until(now, node));
            }
        }
        let download = &mut self.nodes[node].download;
        if download.wake_at.is_none_or(|w| w <= now || wake < w) {
            download.wake_at = Some(wake);
            self.queue.push(wake, Event::Wake(node));
        }
    }

    /// When a spinning loop could first act without an answer arriving. Looking again every
    /// [`poll`](super::Config::poll) stands in for the spin, but only while something can
    /// change: a busy source's backoff (at most twice `busy_backoff`) ending, or a piece out
    /// for `hedge_after` becoming worth a second source.
    fn spin_until(&self, now: Time, node: usize) -> Time {
        let limits = Limits::default();
        let download = &self.nodes[node].download;
        let backoffs_end = download.last_busy.map_or(0, |t| t + nanos(limits.busy_backoff * 2));
        let oldest = download.out.values().filter_map(|id| self.requests.get(id)).map(|r| r.sent);
        let hedges_from = oldest.min().map_or(Time::MAX, |t| t + nanos(limits.hedge_after));
        if now < backoffs_end || now >= hedges_from {
            now + nanos(self.cfg.poll)
        } else {
            hedges_from
        }
    }

    /// Every piece is in: the driver stops, and the node holds the blob.
    fn finish(&mut self, now: Time, node: usize) {
        let download = &mut self.nodes[node].download;
        download.running = false;
        let out: Vec<u64> = download.out.drain().map(|(_, id)| id).collect();
        for id in out {
            self.cancel(now, id);
        }
        self.nodes[node].complete_at = Some(now);
    }

    /// No piece for the stall timeout: the node fetches the rest from the upstream, from the
    /// end of its contiguous prefix, at the rate of its downlink.
    fn give_up(&mut self, now: Time, node: usize) {
        let download = &mut self.nodes[node].download;
        download.running = false;
        let announce = download.first_piece.is_none();
        download.first_piece.get_or_insert(now);
        let out: Vec<u64> = download.out.drain().map(|(_, id)| id).collect();
        for id in out {
            self.cancel(now, id);
        }
        self.fallbacks += 1;
        let prefix = self.nodes[node].held.prefix();
        let from = piece_range(self.cfg.size, prefix).0;
        let took = ((self.cfg.size - from) as f64 / self.net.down_rate(node)).ceil() as Time;
        self.queue.push(now + took, Event::UpstreamDone(node));
        if announce {
            self.queue.push(now + nanos(self.cfg.dht_latency), Event::Announced(node));
        }
    }
}
