//! The swarm: a missing blob taken in pieces from every peer that has some of it at once.
//!
//! Sources are the providers the DHT names (nodes that hold the blob or are receiving it) and,
//! when there are none yet, the digest's owner, asked to fetch it from the upstream. Each
//! source says what it holds in every answer ([`PieceStatus`]); the [`Scheduler`] decides what
//! to ask of whom; each piece is a `Range` request whose bytes go to the download's writer at
//! their offset as they arrive. New providers are looked up while the download runs, so nodes
//! that start receiving a moment later become sources for the rest; and every source names
//! the nodes it sent pieces to lately, which become sources at once. At most a
//! [`Roster`]'s worth of them are asked at a time, rotating.
//!
//! The swarm never goes upstream itself: when no peer can serve, it reports so and the
//! download falls back to its sequential sources (see `download.rs`).

mod roster;
mod scheduler;
pub mod sim;
mod sites;
mod trace;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_protocol::Digest;
use shoal_protocol::peer::{PieceStatus, piece_count, piece_range};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::fleet::{Fleet, FleetError};
use super::inflight::Progress;
use super::peer_client::{PeerClient, PieceError, Referrals, StatusReply};
use super::{FetchError, Target};
use crate::metrics::Metrics;
use crate::p2p::{PeerId, PeerInfo};
use roster::{Admitted, Candidate, Roster};

pub(crate) use scheduler::{Failure, Limits, Role, Scheduler, SourceId};
use sites::Reach;
pub(crate) use trace::liars;

/// How long after a download's start, or its last lookup, the DHT is asked again for
/// providers: soon at first, when the nodes that started together are getting their first
/// pieces and can serve them, then every second. A node that knew only the owner for a whole
/// second would wait on the owner's two copies of each piece.
pub(crate) fn provider_refresh(lookups_done: u32) -> Duration {
    const FIRST: Duration = Duration::from_millis(200);
    const EVERY: Duration = Duration::from_secs(1);
    FIRST.saturating_mul(1 << lookups_done.saturating_sub(1).min(8)).min(EVERY)
}
/// How often a source with nothing useful yet is asked what it holds now.
const STATUS_REFRESH: Duration = Duration::from_millis(200);

/// How a swarm download ended.
pub(crate) enum Outcome {
    /// Every piece arrived.
    Complete(Contributions),
    /// No peer has the blob and this node is its owner (or the owner failed): go upstream.
    NoSources,
    /// Peers had it but stopped serving; the pieces in hand are kept.
    Stuck { error: FetchError, contributions: Contributions },
}

/// Who sent which piece, to find the culprit when the whole blob fails verification.
#[derive(Debug, Default)]
pub(crate) struct Contributions {
    /// Per piece, the peers asked for it: the one that completed it, and any whose request
    /// was cancelled or failed after writing part of it.
    pub senders: Vec<Vec<PeerId>>,
    /// Every peer the swarm used as a source: candidates for a verified copy.
    pub sources: Vec<PeerInfo>,
    /// The first holder, when it was among them: the digest's owner (which fetched it from
    /// the upstream), or for a member of a site its site's owner (which brought it in). Its
    /// verified copy is the one to compare with.
    pub owner: Option<PeerId>,
}

impl Contributions {
    /// Every peer that sent anything.
    pub(crate) fn peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self.senders.iter().flatten().cloned().collect();
        peers.sort();
        peers.dedup();
        peers
    }
}

pub struct Swarm {
    fleet: Arc<dyn Fleet>,
    client: Arc<PeerClient>,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// A download that receives no piece for this long gives up on its peers.
    stall: Duration,
    /// A site's owner of a digest fetches it from the upstream itself.
    upstream_per_site: bool,
}

enum Event {
    Status {
        source: SourceId,
        status: Result<(StatusReply, Referrals), FleetError>,
    },
    Piece {
        source: SourceId,
        piece: u32,
        status: Option<PieceStatus>,
        referrals: Referrals,
        result: Result<(), PieceError>,
    },
    Providers(Vec<PeerInfo>),
}

impl Swarm {
    pub fn new(
        fleet: Arc<dyn Fleet>,
        client: Arc<PeerClient>,
        metrics: Arc<Metrics>,
        stall: Duration,
        upstream_per_site: bool,
    ) -> Self {
        Self { fleet, client, metrics, limits: Limits::default(), stall, upstream_per_site }
    }

    /// Runs the swarm until the blob is complete or no peer can help. Chunks go to `sink` with
    /// their offsets; `started` is called once, when the first piece is in. With `into_site`,
    /// this node was asked to bring the blob into its site and takes it from anywhere.
    pub(crate) async fn run(
        &self,
        target: &Target,
        digest: Digest,
        into_site: bool,
        sink: &mpsc::Sender<(u64, Bytes)>,
        progress: &watch::Sender<Progress>,
        started: &(dyn Fn() + Send + Sync),
    ) -> Result<Outcome, FetchError> {
        let reach = Reach::new(self.fleet.as_ref(), &digest, into_site, self.upstream_per_site);
        tracing::debug!(%digest, gateway = reach.gateway, escalations = ?reach.escalations.iter().map(|(p, s)| (&p.id, *s)).collect::<Vec<_>>(), "swarm starts");
        let mut run = Run {
            swarm: self,
            reach,
            digest,
            sink,
            sources: Vec::new(),
            roster: Roster::new(roster::DEFAULT_CAP),
            scheduler: None,
            tasks: JoinSet::new(),
            pieces_out: HashMap::new(),
            piece_senders: Vec::new(),
            senders: Vec::new(),
            started: false,
        };
        let providers = self.fleet.providers(&digest).await;
        run.add_peers(providers);
        if run.sources.is_empty() && !run.ask_owner(target).await? {
            return Ok(Outcome::NoSources);
        }
        run.drive(target, progress, started).await
    }
}

struct Source {
    peer: PeerInfo,
    role: Role,
    same_site: bool,
    /// A status request is out.
    probing: bool,
    dropped: bool,
}

struct Run<'a> {
    swarm: &'a Swarm,
    reach: Reach,
    digest: Digest,
    sink: &'a mpsc::Sender<(u64, Bytes)>,
    /// Indexed by [`SourceId`], here and in the scheduler; a retired source's id is given to
    /// the next peer admitted.
    sources: Vec<Source>,
    /// Which peers are sources now; the others wait their turn.
    roster: Roster<PeerInfo>,
    /// Created once the first status tells the blob's size.
    scheduler: Option<Scheduler>,
    tasks: JoinSet<Event>,
    pieces_out: HashMap<(SourceId, u32), AbortHandle>,
    /// Per piece, the peers asked for it (any of them may have written some of it).
    piece_senders: Vec<Vec<PeerId>>,
    /// Every peer asked for a piece, retired or not: where a verified copy may be found.
    senders: Vec<PeerInfo>,
    started: bool,
}

impl Candidate for PeerInfo {
    type Key = PeerId;
    fn key(&self) -> PeerId {
        self.id
    }
}

impl Run<'_> {
    /// Takes peers a lookup or an answer named (those this download may use and trusts for
    /// this digest), and asks what it holds each one the roster admits now.
    fn add_peers(&mut self, found: Vec<PeerInfo>) {
        tracing::debug!(digest = %self.digest, peers = ?found.iter().map(|p| &p.id).collect::<Vec<_>>(), "peers named");
        for peer in found {
            if self.reach.admits(&peer) && self.swarm.client.trusted(&self.digest, &peer.id) {
                self.roster.learn(peer);
            }
        }
        self.admit();
    }

    /// Sources for the free places of the roster.
    fn admit(&mut self) {
        while let Some(admitted) = self.roster.admit() {
            self.place(admitted);
        }
    }

    /// Makes an admitted peer a source, under the id the roster gave it, and asks it what it
    /// holds.
    fn place(&mut self, admitted: Admitted<PeerInfo>) {
        let Admitted { id, peer } = admitted;
        // The first holder is told apart by its id, whether the DHT named it or it was asked
        // to fetch.
        let first = self.reach.first_holder.as_ref() == Some(&peer.id);
        let role = if first { Role::Owner } else { Role::Provider };
        let site = self.swarm.fleet.site();
        let same_site = site.is_none() || peer.site == site;
        let source = Source { peer, role, same_site, probing: false, dropped: false };
        roster::put_at(&mut self.sources, id, source);
        if let Some(scheduler) = &mut self.scheduler {
            scheduler.put_source(id, role, same_site);
        }
        self.probe(id);
    }

    /// Adds the members a source named as having got pieces from it (`x-shoal-peers`): they
    /// are asked what they hold like any provider, before the DHT names them.
    fn add_referred(&mut self, referrals: &[PeerId]) {
        let new: Vec<&PeerId> = referrals.iter().filter(|id| !self.roster.knows(id)).collect();
        if new.is_empty() {
            return;
        }
        let found = self.swarm.fleet.members().into_iter().filter(|m| new.contains(&&m.id));
        self.add_peers(found.collect());
    }

    /// Asks the next peer in line to fetch the blob (the site's owner to bring it into the
    /// site, or the fleet's owner to fetch it upstream); `false` when no one is left to ask
    /// (the download then goes upstream itself, as the owner or as a fallback).
    async fn ask_owner(&mut self, target: &Target) -> Result<bool, FetchError> {
        while !self.reach.escalations.is_empty() {
            let (owner, into_site) = self.reach.escalations.remove(0);
            if !self.swarm.client.trusted(&self.digest, &owner.id) {
                continue;
            }
            match self.swarm.fleet.ask_fetch(&owner, target, &self.digest, into_site).await {
                Ok(url) => {
                    let owner = PeerInfo { http_url: url, ..owner };
                    if self.reach.admits(&owner)
                        && let Some(admitted) = self.roster.admit_kept(owner)
                    {
                        self.place(admitted);
                        return Ok(true);
                    }
                }
                Err(FleetError::NotFound { .. }) => {
                    return Err(FetchError::BlobUnknown(self.digest));
                }
                Err(e) => {
                    tracing::warn!(digest = %self.digest, peer = %owner.id, into_site, error = %e, "peer cannot fetch the blob for us");
                }
            }
        }
        Ok(false)
    }

    fn probe(&mut self, source: SourceId) {
        if self.sources[source].probing {
            return;
        }
        self.sources[source].probing = true;
        let (client, peer, digest) =
            (self.swarm.client.clone(), self.sources[source].peer.clone(), self.digest);
        self.tasks.spawn(async move {
            let status = client.status(&peer, &digest).await;
            Event::Status { source, status }
        });
    }

    fn refresh_providers(&mut self) {
        let (fleet, digest) = (self.swarm.fleet.clone(), self.digest);
        self.tasks.spawn(async move { Event::Providers(fleet.providers(&digest).await) });
    }

    async fn drive(
        &mut self,
        target: &Target,
        progress: &watch::Sender<Progress>,
        started: &(dyn Fn() + Send + Sync),
    ) -> Result<Outcome, FetchError> {
        let mut last_piece = Instant::now();
        let mut lookups = 1;
        let mut next_providers = Instant::now() + provider_refresh(lookups);
        let mut next_status = Instant::now() + STATUS_REFRESH;
        loop {
            let now = Instant::now();
            if let Some(scheduler) = &mut self.scheduler {
                if scheduler.is_complete() {
                    self.tasks.abort_all();
                    return Ok(Outcome::Complete(self.contributions()));
                }
                while let Some(assignment) = scheduler.next(now.into_std()) {
                    let (start, end) = piece_range(scheduler.size(), assignment.piece);
                    let (client, peer, digest, sink) = (
                        self.swarm.client.clone(),
                        self.sources[assignment.source].peer.clone(),
                        self.digest,
                        self.sink.clone(),
                    );
                    let (source, piece) = (assignment.source, assignment.piece);
                    tracing::trace!(digest = %self.digest, peer = %self.sources[source].peer.id, piece, hedge = assignment.hedge, "piece asked");
                    let handle = self.tasks.spawn(async move {
                        let (status, referrals, result) =
                            client.piece(&peer, &digest, start, end, &sink).await;
                        Event::Piece { source, piece, status, referrals, result }
                    });
                    self.pieces_out.insert((source, piece), handle);
                    // Recorded when asked, not when done: a request that fails midway may
                    // have written (and the hash taken in) some bytes of the piece.
                    let peer = &self.sources[source].peer;
                    let senders = &mut self.piece_senders[piece as usize];
                    if !senders.contains(&peer.id) {
                        senders.push(peer.id);
                    }
                    if !self.senders.iter().any(|p| p.id == peer.id) {
                        self.senders.push(peer.clone());
                    }
                }
            }
            let idle = self.scheduler.as_ref().is_none_or(|s| s.outstanding() == 0)
                && !self.sources.iter().any(|s| s.probing);
            let alive = match &self.scheduler {
                Some(scheduler) => scheduler.has_live_source(),
                None => self.sources.iter().any(|s| !s.dropped),
            };
            if idle && !alive {
                // Everyone we knew failed: the owner, if not asked yet, is the last peer to try.
                if self.ask_owner(target).await? {
                    continue;
                }
                return Ok(if self.started {
                    Outcome::Stuck {
                        error: stuck(self.digest, "every peer serving it failed"),
                        contributions: self.contributions(),
                    }
                } else {
                    Outcome::NoSources
                });
            }
            if now.duration_since(last_piece) >= self.swarm.stall {
                self.tasks.abort_all();
                return Ok(Outcome::Stuck {
                    error: stuck(self.digest, "no piece arrived from any peer in time"),
                    contributions: self.contributions(),
                });
            }
            let wakeup = self
                .scheduler
                .as_ref()
                .and_then(|s| s.next_wakeup(now.into_std()))
                .map(Instant::from_std)
                .into_iter()
                .chain([next_providers, next_status, last_piece + self.swarm.stall])
                .min()
                .unwrap_or(next_status);
            let event = tokio::select! {
                joined = self.tasks.join_next(), if !self.tasks.is_empty() => match joined {
                    Some(Ok(event)) => event,
                    // Aborted hedges and cancelled probes: the scheduler already let go of them.
                    _ => continue,
                },
                () = tokio::time::sleep_until(wakeup) => {
                    let now = Instant::now();
                    if now >= next_providers {
                        lookups += 1;
                        next_providers = now + provider_refresh(lookups);
                        if self.roster.wants_peers() {
                            self.refresh_providers();
                        }
                    }
                    if now >= next_status {
                        next_status = now + STATUS_REFRESH;
                        self.refresh_statuses();
                    }
                    continue;
                }
            };
            match event {
                Event::Providers(found) => self.add_peers(found),
                Event::Status { source, status } => {
                    self.sources[source].probing = false;
                    if let Ok((_, referrals)) = &status {
                        self.add_referred(referrals);
                    }
                    match status.map(|(reply, _)| reply) {
                        Ok(StatusReply::Has(status)) => {
                            self.set_status(source, status, progress)?;
                            self.review(source);
                        }
                        // Asked again at the next status round, unless another peer has its
                        // place by then.
                        Ok(StatusReply::NotYet) => self.review(source),
                        Ok(StatusReply::Nothing) => {
                            tracing::debug!(digest = %self.digest, peer = %self.sources[source].peer.id, "source holds nothing");
                            self.drop_source(source);
                        }
                        Err(e) => {
                            tracing::debug!(digest = %self.digest, peer = %self.sources[source].peer.id, error = %e, "status request failed");
                            self.drop_source(source);
                        }
                    }
                }
                Event::Piece { source, piece, status, referrals, result } => {
                    self.pieces_out.remove(&(source, piece));
                    self.add_referred(&referrals);
                    if let Some(status) = status {
                        self.set_status(source, status, progress)?;
                    }
                    let now = Instant::now().into_std();
                    let Some(scheduler) = &mut self.scheduler else { continue };
                    match result {
                        Ok(()) => {
                            tracing::trace!(digest = %self.digest, peer = %self.sources[source].peer.id, piece, "piece in");
                            last_piece = Instant::now();
                            self.roster.delivered(source);
                            if !self.started {
                                self.started = true;
                                self.swarm.metrics.peer_blob_fetches.inc();
                                started();
                            }
                            for other in scheduler.completed(source, piece, now) {
                                if let Some(handle) = self.pieces_out.remove(&(other, piece)) {
                                    handle.abort();
                                }
                            }
                        }
                        Err(e) => {
                            let failure = e.failure();
                            if failure == Failure::Error {
                                tracing::debug!(digest = %self.digest, peer = %self.sources[source].peer.id, piece, error = %e, "piece failed");
                            } else {
                                tracing::trace!(digest = %self.digest, peer = %self.sources[source].peer.id, piece, ?failure, "piece refused");
                            }
                            scheduler.failed(source, piece, failure, now);
                            if scheduler.is_dead(source) {
                                self.drop_source(source);
                            }
                        }
                    }
                }
            }
        }
    }

    fn contributions(&self) -> Contributions {
        let owner = self.sources.iter().find(|s| s.role == Role::Owner).map(|s| s.peer.id);
        let mut sources = self.senders.clone();
        for source in &self.sources {
            if !sources.iter().any(|p| p.id == source.peer.id) {
                sources.push(source.peer.clone());
            }
        }
        Contributions { senders: self.piece_senders.clone(), sources, owner }
    }

    /// After an idle source's status: it keeps its place while it is of use, else it may give
    /// it up to a peer in line (see `roster.rs`).
    fn review(&mut self, source: SourceId) {
        let Some(scheduler) = &mut self.scheduler else { return };
        if self.roster.answered(source, scheduler.in_use(source)) {
            scheduler.drop_source(source);
            self.admit();
        }
    }

    /// Asks again every source that is not done, has nothing out, and is not being asked.
    fn refresh_statuses(&mut self) {
        let stale: Vec<SourceId> = (0..self.sources.len())
            .filter(|&s| {
                let source = &self.sources[s];
                !source.probing
                    && !source.dropped
                    && self.scheduler.as_ref().is_none_or(|sch| sch.wants_status(s))
            })
            .collect();
        for source in stale {
            self.probe(source);
        }
    }

    fn set_status(
        &mut self,
        source: SourceId,
        status: PieceStatus,
        progress: &watch::Sender<Progress>,
    ) -> Result<(), FetchError> {
        if self.scheduler.is_none() {
            let known = progress.borrow().size;
            if known.is_some_and(|known| known != status.size) {
                self.drop_source(source);
                return Ok(());
            }
            progress.send_modify(|p| p.size = Some(status.size));
            let mut scheduler =
                Scheduler::new(status.size, self.swarm.limits.clone(), rand::random());
            // Sources met before the size was known join now, with their ids unchanged.
            for (id, source) in self.sources.iter().enumerate() {
                scheduler.add_source(source.role, source.same_site);
                if source.dropped {
                    scheduler.drop_source(id);
                }
            }
            self.piece_senders = vec![Vec::new(); piece_count(status.size) as usize];
            self.scheduler = Some(scheduler);
        }
        if let Some(scheduler) = &mut self.scheduler {
            scheduler.set_status(source, status);
        }
        Ok(())
    }

    fn drop_source(&mut self, source: SourceId) {
        self.sources[source].dropped = true;
        self.roster.drop_source(source);
        if let Some(scheduler) = &mut self.scheduler {
            scheduler.drop_source(source);
        }
        self.admit();
    }
}

fn stuck(digest: Digest, why: &str) -> FetchError {
    FetchError::Peer(FleetError::Stuck(format!("{digest}: {why}")))
}
