//! The scheduler's rules, one test each, on a clock the test moves by hand.

use std::time::{Duration, Instant};

use shoal_protocol::peer::{Have, PieceSet, PieceStatus};

use super::*;

const MIB: u64 = 1 << 20;

fn partial(size: u64, pieces: &[u32]) -> PieceStatus {
    let mut set = PieceSet::empty(piece_count(size));
    for &p in pieces {
        set.insert(p);
    }
    PieceStatus { size, have: Have::Partial { pieces: set, live: None } }
}

fn drain(s: &mut Scheduler, now: Instant) -> Vec<Assignment> {
    std::iter::from_fn(|| s.next(now)).collect()
}

/// A scheduler with the owner and one provider, both holding every piece.
fn owner_and_provider(size: u64, seed: u64) -> (Scheduler, SourceId, SourceId) {
    let mut s = Scheduler::new(size, Limits::default(), seed);
    let owner = s.add_source(Role::Owner, true);
    let provider = s.add_source(Role::Provider, true);
    s.set_status(owner, PieceStatus::complete(size));
    s.set_status(provider, PieceStatus::complete(size));
    (s, owner, provider)
}

#[test]
fn asks_a_source_only_for_what_it_has_and_within_its_limits() {
    let now = Instant::now();
    let mut s = Scheduler::new(16 * MIB, Limits::default(), 1);
    let a = s.add_source(Role::Provider, true);
    assert_eq!(s.next(now), None, "no status yet: nothing to ask");
    s.set_status(a, partial(16 * MIB, &[3, 5, 7, 9]));
    let asked = drain(&mut s, now);
    assert_eq!(asked.len(), 2, "two requests per source: {asked:?}");
    for request in &asked {
        assert!([3, 5, 7, 9].contains(&request.piece) && !request.hedge);
    }
    // Eight sources that have everything: the download's total limit holds.
    for _ in 0..8 {
        let id = s.add_source(Role::Provider, true);
        s.set_status(id, PieceStatus::complete(16 * MIB));
    }
    assert_eq!(drain(&mut s, now).len(), 6);
    assert_eq!(s.outstanding(), Limits::default().total);
}

#[test]
fn the_owner_is_asked_only_for_pieces_nobody_else_serves() {
    let now = Instant::now();
    let size = 8 * MIB;
    let mut s = Scheduler::new(size, Limits::default(), 2);
    let owner = s.add_source(Role::Owner, true);
    let peer = s.add_source(Role::Provider, true);
    s.set_status(owner, PieceStatus::complete(size));
    s.set_status(peer, partial(size, &[0, 1, 2, 3, 4, 5]));
    let asked = drain(&mut s, now);
    for request in &asked {
        if request.source == owner {
            assert!(request.piece >= 6, "the owner was asked for a piece a peer has: {asked:?}");
        }
    }
    assert_eq!(asked.iter().filter(|r| r.source == owner).count(), 2);
    assert_eq!(asked.iter().filter(|r| r.source == peer).count(), 2);
}

#[test]
fn pieces_come_from_the_front_so_clients_keep_streaming() {
    let now = Instant::now();
    let size = 64 * MIB;
    let limits = Limits { per_source: 64, total: 64, ..Limits::default() };
    let mut s = Scheduler::new(size, limits, 3);
    let a = s.add_source(Role::Provider, true);
    s.set_status(a, PieceStatus::complete(size));
    let window = Limits::default().window as u32;
    let first: Vec<u32> = std::iter::from_fn(|| s.next(now)).take(32).map(|r| r.piece).collect();
    // The window slides by one piece per request: the i-th request is among the first
    // window + i pieces.
    for (i, &piece) in first.iter().enumerate() {
        assert!(piece < window + i as u32, "request {i} left the window: {first:?}");
    }
}

#[test]
fn a_busy_source_waits_and_a_failing_one_is_dropped() {
    let now = Instant::now();
    let size = 4 * MIB;
    let mut s = Scheduler::new(size, Limits::default(), 4);
    let a = s.add_source(Role::Provider, true);
    s.set_status(a, PieceStatus::complete(size));
    let first = s.next(now).unwrap();
    s.failed(a, first.piece, Failure::Busy, now);
    assert_eq!(s.next(now), None, "a busy source is left alone for a moment");
    let later = now + Duration::from_millis(250);
    assert!(s.next_wakeup(now).is_some_and(|t| t <= later));
    assert_eq!(s.next_wakeup(later), None, "a backoff that ended wakes nobody");
    let mut at = later;
    for _ in 0..3 {
        let request = s.next(at).expect("asked again after the backoff");
        s.failed(a, request.piece, Failure::Error, at);
        at += Duration::from_secs(1);
    }
    assert!(!s.has_live_source());
    assert_eq!(s.next(at), None);
}

#[test]
fn a_slow_piece_is_hedged_and_the_loser_cancelled() {
    let start = Instant::now();
    let size = 2 * MIB;
    let mut s = Scheduler::new(size, Limits::default(), 5);
    let slow = s.add_source(Role::Provider, true);
    s.set_status(slow, PieceStatus::complete(size));
    let asked = drain(&mut s, start);
    assert_eq!(asked.len(), 2, "both pieces out at the one source");
    let fast = s.add_source(Role::Provider, true);
    s.set_status(fast, PieceStatus::complete(size));
    assert_eq!(s.next(start), None, "nothing is hedged before it is late");
    let late = start + Duration::from_secs(1);
    let hedge = s.next(late).expect("a late piece goes to the second source");
    assert!(hedge.hedge && hedge.source == fast);
    assert_eq!(s.completed(fast, hedge.piece, late), vec![slow]);
    // The slow source now gets one request at a time.
    let other = 1 - hedge.piece;
    assert_eq!(s.completed(slow, other, late), Vec::<SourceId>::new());
    assert!(s.is_complete());
}

#[test]
fn a_status_for_another_size_drops_the_source() {
    let mut s = Scheduler::new(4 * MIB, Limits::default(), 6);
    let liar = s.add_source(Role::Provider, true);
    s.set_status(liar, PieceStatus::complete(5 * MIB));
    assert!(!s.has_live_source());
    assert_eq!(s.next(Instant::now()), None);
}

#[test]
fn a_slow_provider_does_not_leave_the_owner_idle() {
    let start = Instant::now();
    let size = 16 * MIB;
    let (mut s, owner, slow) = owner_and_provider(size, 7);
    let first = drain(&mut s, start);
    assert!(first.iter().all(|r| r.source == slow), "the provider goes first: {first:?}");
    // One of its pieces is late: the owner takes it, quickly.
    let late = start + Duration::from_millis(600);
    let hedge = s.next(late).expect("a hedge");
    assert!(hedge.hedge && hedge.source == owner);
    s.completed(owner, hedge.piece, late + Duration::from_millis(50));
    // The provider's other piece took a second: twenty times the owner's pace.
    let other = first.iter().find(|r| r.piece != hedge.piece).expect("second piece").piece;
    let done = start + Duration::from_secs(1);
    s.completed(slow, other, done);
    let next = drain(&mut s, done);
    assert!(
        next.iter().any(|r| r.source == owner && !r.hedge),
        "the owner serves fresh pieces once the provider is slow: {next:?}"
    );
    assert!(next.iter().filter(|r| r.source == slow).count() <= 1, "one at a time: {next:?}");
}

#[test]
fn the_owner_is_timed_once_so_a_provider_alone_and_slow_shows_as_slow() {
    // A provider on a slow link whose pieces never come late by its own pace: without a
    // trial the owner would not be asked for anything it serves, however fast it is.
    let start = Instant::now();
    let size = 16 * MIB;
    let (mut s, owner, slow) = owner_and_provider(size, 9);
    let first = drain(&mut s, start);
    assert!(first.iter().all(|r| r.source == slow), "the provider goes first: {first:?}");
    let mut at = start + Duration::from_millis(400);
    s.completed(slow, first[0].piece, at);
    let trial = drain(&mut s, at);
    let asked: Vec<_> = trial.iter().filter(|r| r.source == owner).collect();
    assert_eq!(asked.len(), 1, "one trial piece of the owner: {trial:?}");
    assert!(!asked[0].hedge);
    assert_eq!(drain(&mut s, at), vec![], "one trial at a time");
    // The owner is ten times as fast; the provider's next piece marks it slow.
    s.completed(owner, asked[0].piece, at + Duration::from_millis(40));
    at += Duration::from_millis(800);
    s.completed(slow, first[1].piece, at);
    let next = drain(&mut s, at);
    assert_eq!(next.iter().filter(|r| r.source == owner).count(), 2, "{next:?}");
    assert!(next.iter().filter(|r| r.source == slow).count() <= 1, "{next:?}");
}

#[test]
fn an_owner_as_fast_as_its_providers_is_asked_for_nothing_more_after_its_trial() {
    let start = Instant::now();
    let size = 16 * MIB;
    let (mut s, owner, peer) = owner_and_provider(size, 10);
    let first = drain(&mut s, start);
    let at = start + Duration::from_millis(100);
    s.completed(peer, first[0].piece, at);
    let trial = drain(&mut s, at);
    let asked = trial.iter().find(|r| r.source == owner).expect("a trial piece");
    s.completed(owner, asked.piece, at + Duration::from_millis(100));
    let later = at + Duration::from_millis(150);
    s.completed(peer, first[1].piece, later);
    let next = drain(&mut s, later);
    assert!(next.iter().all(|r| r.source == peer), "timed, the owner waits: {next:?}");
}

#[test]
fn a_piece_refused_to_spread_is_asked_elsewhere_and_the_source_keeps_serving() {
    let now = Instant::now();
    let size = 4 * MIB;
    let mut s = Scheduler::new(size, Limits { per_source: 1, ..Limits::default() }, 5);
    let a = s.add_source(Role::Provider, true);
    s.set_status(a, PieceStatus::complete(size));
    let first = s.next(now).unwrap();
    s.failed(a, first.piece, Failure::Spread, now);
    let next = s.next(now).expect("the source is not busy: it is asked for another piece");
    assert_eq!(next.source, a);
    assert_ne!(next.piece, first.piece, "not the piece it refused, for a moment");
    s.failed(a, next.piece, Failure::NotHeld, now);
    let wake = s.next_wakeup(now).expect("the refusal ends");
    assert!(wake <= now + Limits::default().busy_backoff * 2);
    let b = s.add_source(Role::Provider, true);
    s.set_status(b, PieceStatus::complete(size));
    let mut asked_of_b = false;
    while let Some(request) = s.next(now) {
        assert!(request.source != a || request.piece != first.piece);
        asked_of_b |= request.source == b && request.piece == first.piece;
    }
    assert!(asked_of_b, "another source is asked for the refused piece");
}

#[test]
fn a_refused_piece_is_asked_again_of_its_only_holder_once_the_refusal_ends() {
    let now = Instant::now();
    let size = 4 * MIB;
    let mut s = Scheduler::new(size, Limits::default(), 6);
    let a = s.add_source(Role::Provider, true);
    s.set_status(a, partial(size, &[2]));
    let first = s.next(now).unwrap();
    assert_eq!(first.piece, 2);
    s.failed(a, 2, Failure::Spread, now);
    assert_eq!(s.next(now), None, "its only holder refused it just now");
    let wake = s.next_wakeup(now).expect("the refusal ends");
    assert_eq!(s.next(wake).map(|r| (r.source, r.piece)), Some((a, 2)));
}

#[test]
fn providers_are_looked_up_soon_at_first_then_every_second() {
    use super::super::provider_refresh;
    let waits: Vec<u64> = (1..8).map(|n| provider_refresh(n).as_millis() as u64).collect();
    assert_eq!(waits, [200, 400, 800, 1000, 1000, 1000, 1000]);
    assert_eq!(provider_refresh(0).as_millis(), 200);
    assert_eq!(provider_refresh(u32::MAX).as_millis(), 1000);
}

#[test]
fn a_holder_that_refused_a_piece_just_now_still_keeps_the_owner_from_being_asked_for_it() {
    let now = Instant::now();
    let size = 16 * MIB;
    let (mut s, owner, peer) = owner_and_provider(size, 12);
    let first = drain(&mut s, now);
    assert!(first.iter().all(|r| r.source == peer), "{first:?}");
    // The provider sent the piece twice just now: it and its recipients serve it in a moment.
    s.failed(peer, first[0].piece, Failure::Spread, now);
    let next = drain(&mut s, now);
    assert!(next.iter().all(|r| r.source != owner), "the owner was asked: {next:?}");
    assert!(next.iter().all(|r| r.piece != first[0].piece), "{next:?}");
}

#[test]
fn a_slow_source_is_asked_at_its_full_pace_again_once_its_pieces_come_fast() {
    let start = Instant::now();
    let size = 64 * MIB;
    let mut s = Scheduler::new(size, Limits::default(), 13);
    let fast = s.add_source(Role::Provider, true);
    let other = s.add_source(Role::Provider, true);
    s.set_status(fast, PieceStatus::complete(size));
    s.set_status(other, PieceStatus::complete(size));
    let first = drain(&mut s, start);
    let step = Duration::from_millis(100);
    for r in first.iter().filter(|r| r.source == fast) {
        s.completed(fast, r.piece, start + step);
    }
    // A moment's load: its first pieces take ten times as long.
    let mut at = start + Duration::from_secs(1);
    for r in first.iter().filter(|r| r.source == other) {
        s.completed(other, r.piece, at);
    }
    let asked_of = |asked: &[Assignment], id| asked.iter().filter(|r| r.source == id).count();
    let mut asked = drain(&mut s, at);
    assert_eq!(asked_of(&asked, other), 1, "slow: one at a time: {asked:?}");
    // Then its pieces come as fast as the other's again.
    for _ in 0..8 {
        at += step;
        for r in &asked {
            s.completed(r.source, r.piece, at);
        }
        asked = drain(&mut s, at);
    }
    assert_eq!(asked_of(&asked, other), 2, "at its full pace again: {asked:?}");
}

#[test]
fn a_piece_out_to_the_owner_is_hedged_only_when_late_by_the_owners_own_pace() {
    let t0 = Instant::now();
    let size = 6 * MIB;
    let (mut s, owner, peer) = owner_and_provider(size, 14);
    s.set_status(peer, partial(size, &[0, 1]));
    let first = drain(&mut s, t0);
    let owners: Vec<u32> = first.iter().filter(|r| r.source == owner).map(|r| r.piece).collect();
    assert_eq!(owners.len(), 2, "{first:?}");
    for r in first.iter().filter(|r| r.source == peer) {
        s.completed(peer, r.piece, t0 + Duration::from_millis(100));
    }
    // The owner shares its uplink with every asker: a second a piece.
    let at = t0 + Duration::from_secs(1);
    s.completed(owner, owners[0], at);
    s.set_status(peer, PieceStatus::complete(size));
    let next = drain(&mut s, at);
    assert!(next.iter().all(|r| r.source == peer && !r.hedge), "{next:?}");
    let idle = at + Duration::from_millis(100);
    for r in &next {
        s.completed(peer, r.piece, idle);
    }
    let idle_asks = drain(&mut s, idle);
    assert_eq!(idle_asks, vec![], "hedged at eleven times the provider's pace");
    let stalled = t0 + Duration::from_millis(4500);
    let hedges = drain(&mut s, stalled);
    assert!(
        hedges.iter().any(|r| r.hedge && r.piece == owners[1] && r.source == peer),
        "a piece four times the owner's pace late is hedged: {hedges:?}"
    );
}
