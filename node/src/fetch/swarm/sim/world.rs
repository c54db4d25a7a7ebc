//! The simulated fleet and its event loop; the serving side of every node (upload slots, the
//! owner's live edge) and the transfers between them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::index;
use rand::{RngExt, SeedableRng};
use shoal_protocol::Digest;
use shoal_protocol::peer::{Have, PieceSet, PieceStatus, piece_count, piece_range};

use super::super::{Failure, SourceId};
use super::dht::Dht;
use super::events::{Event, Queue, Time};
use super::net::{Completion, FlowId, Net};
use super::node::Node;
use super::{Config, Report};

/// The owner: the one node that fetches from the upstream.
pub(super) const OWNER: usize = 0;

/// A piece request, from the moment it is sent until its answer is handled.
pub(super) struct Request {
    pub from: usize,
    pub to: usize,
    pub source: SourceId,
    pub piece: u32,
    pub sent: Time,
    pub flow: Option<FlowId>,
    /// The status the source sent with its answer (a response header: as of the answer's
    /// start).
    pub status: Option<PieceStatus>,
    /// Why it was refused, if it was.
    pub refused: Option<Failure>,
    /// The nodes the source named in its answer.
    pub referred: Vec<usize>,
}

pub(super) struct World {
    pub cfg: Config,
    pub nodes: Vec<Node>,
    pub net: Net,
    pub dht: Dht,
    pub queue: Queue,
    pub requests: HashMap<u64, Request>,
    pub next_request: u64,
    pub rng: SmallRng,
    base: Instant,
    digest: Digest,
    /// When the owner's upstream fetch began, and its rate (bytes per nanosecond).
    pub owner_start: Option<Time>,
    owner_rate: f64,
    pub fallbacks: u32,
    /// Which nodes have slow links.
    pub slow: Vec<bool>,
    /// Refusals answered with a slot free: the piece had been sent as often as the copy limit
    /// allows.
    pub copy_refusals: u64,
    /// Time spent in the scheduler's `next`, and how often it was called.
    pub next_time: Duration,
    pub next_calls: u64,
}

impl World {
    pub(super) fn new(cfg: Config) -> Self {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let fast = cfg.link_rate / 1e9;
        let n = cfg.nodes;
        // The slow nodes are drawn among all but the owner: see the module notes.
        let slow_count = ((n as f64) * cfg.slow_fraction).round() as usize;
        let mut rates = vec![fast; n];
        let mut slow = vec![false; n];
        for i in index::sample(&mut rng, n - 1, slow_count.min(n - 1)) {
            rates[i + 1] = fast / cfg.slow_factor;
            slow[i + 1] = true;
        }
        let nodes = (0..n)
            .map(|_| {
                Node::new(
                    cfg.size,
                    cfg.upload_slots,
                    cfg.copy_limit,
                    cfg.source_cap.unwrap_or(usize::MAX),
                )
            })
            .collect();
        let dht = Dht::new(cfg.discovery, rng.random());
        Self {
            nodes,
            net: Net::new(cfg.sharing, rates.clone(), rates),
            dht,
            queue: Queue::default(),
            requests: HashMap::new(),
            next_request: 0,
            rng,
            base: Instant::now(),
            digest: Digest::of(b"the simulated blob"),
            owner_start: None,
            owner_rate: fast,
            fallbacks: 0,
            slow,
            copy_refusals: 0,
            next_time: Duration::ZERO,
            next_calls: 0,
            cfg,
        }
    }

    pub(super) fn run(mut self) -> Report {
        let wall = Instant::now();
        for node in 0..self.cfg.nodes {
            self.queue.push(0, Event::Miss(node));
        }
        let limit = nanos(self.cfg.limit);
        let mut report_at = 0;
        while let Some((now, event)) = self.queue.pop() {
            if now > limit {
                break;
            }
            if self.cfg.progress && now >= report_at {
                let done = self.nodes.iter().filter(|n| n.complete_at.is_some_and(|t| t <= now));
                eprintln!(
                    "simulated {:.0} s: {} of {} nodes hold the blob; {} events in {:.0} s",
                    now as f64 / 1e9,
                    done.count(),
                    self.cfg.nodes,
                    self.queue.handled,
                    wall.elapsed().as_secs_f64()
                );
                report_at = now + nanos(Duration::from_secs(10));
            }
            self.handle(now, event);
        }
        Report::new(&self, wall.elapsed())
    }

    fn handle(&mut self, now: Time, event: Event) {
        match event {
            Event::Miss(node) => {
                let at = now + nanos(self.cfg.dht_latency);
                self.queue.push(at, Event::Providers { node, first: true });
            }
            Event::Providers { node, first } => self.on_providers(now, node, first),
            Event::OwnerAccepted(node) => self.on_owner_accepted(now, node),
            Event::Announced(node) => self.dht.announce(node),
            Event::Status { node, source, status, referred } => {
                self.on_status(now, node, source, status, referred)
            }
            Event::Arrive(id) => self.on_arrive(now, id),
            Event::Refused(id) => self.on_refused(now, id),
            Event::Delivered(id) => self.on_delivered(now, id),
            Event::Sent { flow, version } => {
                if self.net.is_current(flow, version) {
                    let (id, slot, changed) = self.net.end(now, flow);
                    slot.end(self.instant(now));
                    self.completions(changed);
                    if let Some(request) = self.requests.get_mut(&id) {
                        request.flow = None;
                        self.queue.push(now + self.half_rtt(), Event::Delivered(id));
                    }
                }
            }
            Event::StatusRound(node) => self.on_status_round(now, node),
            Event::ProviderRound(node) => self.on_provider_round(now, node),
            Event::Wake(node) => {
                if self.nodes[node].download.wake_at == Some(now) {
                    self.nodes[node].download.wake_at = None;
                    self.drain(now, node);
                }
            }
            Event::UpstreamDone(node) => {
                let held = &mut self.nodes[node].held;
                for piece in 0..piece_count(self.cfg.size) {
                    held.insert(piece);
                }
                self.nodes[node].complete_at = Some(now);
            }
        }
    }

    /// The owner starts its upstream fetch (its own miss, or the first `FetchBlob`), and
    /// announces itself once bytes flow.
    pub(super) fn start_owner(&mut self, now: Time) -> Time {
        if let Some(start) = self.owner_start {
            return start;
        }
        self.owner_start = Some(now);
        let done = now + (self.cfg.size as f64 / self.owner_rate).ceil() as Time;
        self.nodes[OWNER].complete_at = Some(done);
        self.queue.push(now + nanos(self.cfg.dht_latency), Event::Announced(OWNER));
        now
    }

    /// When the owner holds bytes up to `offset`.
    fn owner_has(&self, offset: u64) -> Time {
        let start = self.owner_start.expect("asked only once it fetches");
        start + (offset as f64 / self.owner_rate).ceil() as Time
    }

    /// What `node` says it holds at `now`.
    pub(super) fn status(&self, node: usize, now: Time) -> PieceStatus {
        let size = self.cfg.size;
        if node != OWNER {
            return self.nodes[node].status(size);
        }
        let start = self.owner_start.expect("asked only once it fetches");
        let written = ((now.saturating_sub(start)) as f64 * self.owner_rate) as u64;
        if written >= size {
            return PieceStatus::complete(size);
        }
        let mut pieces = PieceSet::empty(piece_count(size));
        for piece in (0..piece_count(size)).take_while(|&p| piece_range(size, p).1 <= written) {
            pieces.insert(piece);
        }
        PieceStatus { size, have: Have::Partial { pieces, live: Some(written) } }
    }

    /// A piece request reaches its source, which answers as `Fetcher::local_blob` does: an
    /// upload slot first (or `503`), then the piece if it holds it or it is at its live edge.
    fn on_arrive(&mut self, now: Time, id: u64) {
        let Some(request) = self.requests.get(&id) else { return };
        let (from, to, piece) = (request.from, request.to, request.piece);
        let (start, end) = piece_range(self.cfg.size, piece);
        let status = self.status(to, now);
        let serves = status.serves(piece);
        let clock = self.instant(now);
        // As the node does: while its upstream fetch runs, the owner marks the blob first-hand.
        if to == OWNER && now < self.owner_has(self.cfg.size) {
            self.nodes[to].server.uploads.first_hand(&self.digest, clock);
        }
        let slot = self.nodes[to].server.acquire(self.cfg.serving, &self.digest, start, clock);
        let (flow, refused) = match slot {
            Ok(slot) if serves => {
                if self.cfg.referrals {
                    self.nodes[to].server.uploads.sent_to(&self.digest, &from.to_string(), clock);
                }
                let ready = if to == OWNER { self.owner_has(end) } else { now };
                let (flow, changed) = self.net.start(now, (to, from), id, end - start, ready, slot);
                self.completions(changed);
                (Some(flow), None)
            }
            Ok(_) => (None, Some(Failure::NotHeld)),
            Err(failure) => {
                if self.net.uploads(to) < self.cfg.upload_slots {
                    self.copy_refusals += 1;
                }
                (None, Some(failure))
            }
        };
        if refused.is_some() {
            self.queue.push(now + self.half_rtt(), Event::Refused(id));
        }
        let referred = self.referred(to, from, clock);
        let request = self.requests.get_mut(&id).expect("looked up above");
        request.referred = referred;
        request.status = Some(status);
        request.flow = flow;
        request.refused = refused;
    }

    /// The nodes `source` names to `asker` in an answer: those it sent pieces to lately, as the
    /// node's `Uploads` remembers them.
    pub(super) fn referred(&self, source: usize, asker: usize, at: Instant) -> Vec<usize> {
        if !self.cfg.referrals {
            return Vec::new();
        }
        let uploads = &self.nodes[source].server.uploads;
        let named = uploads.recipients(&self.digest, &asker.to_string(), at);
        named.iter().filter_map(|n| n.parse().ok()).collect()
    }

    /// Forgets a request the asker no longer waits for; its transfer, if any, stops.
    pub(super) fn cancel(&mut self, now: Time, id: u64) {
        if let Some(request) = self.requests.remove(&id)
            && let Some(flow) = request.flow
        {
            let (_, slot, changed) = self.net.end(now, flow);
            slot.end(self.instant(now));
            self.completions(changed);
        }
    }

    fn completions(&mut self, changed: Vec<Completion>) {
        for c in changed {
            self.queue.push(c.at, Event::Sent { flow: c.flow, version: c.version });
        }
    }

    pub(super) fn instant(&self, at: Time) -> Instant {
        self.base + Duration::from_nanos(at)
    }

    pub(super) fn time(&self, at: Instant) -> Time {
        nanos(at.saturating_duration_since(self.base))
    }

    pub(super) fn half_rtt(&self) -> Time {
        nanos(self.cfg.rtt) / 2
    }
}

pub(super) fn nanos(d: Duration) -> Time {
    d.as_nanos().try_into().unwrap_or(Time::MAX)
}
