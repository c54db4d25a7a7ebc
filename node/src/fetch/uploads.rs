//! Upload slots: how many pieces of one blob this node sends to peers at once, and how often
//! it sends the same piece.
//!
//! A node's uplink is shared by everything it sends; a source that takes every request serves
//! each asker slower and becomes every node's only source (the owner, first of all). Past its
//! slots a node answers "busy" with what it holds, and the asker takes the piece from another
//! node that has it. A piece is also sent at most twice at once or within a window after
//! those copies ended ([`CopyLimit`]): the nodes that got it pass it on, so a piece spreads
//! through the fleet like a broadcast tree instead of leaving every node's first holder (the
//! owner) once per node. That refusal names the piece, not the node ([`Refusal::Spread`], `429`
//! on the wire): the asker takes other pieces from it meanwhile. The window ends the refusal
//! in case those nodes went away.
//!
//! It also remembers who it sent pieces of each digest to lately, and names them to the next
//! askers (`x-shoal-peers`): the askers learn of the nodes that can pass the pieces on at
//! once, not at their next DHT lookup, and stop coming back to the owner for want of them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shoal_protocol::Digest;
use shoal_protocol::peer::MAX_REFERRALS;

use super::BlobBody;

/// How often one piece may be sent: at most `copies` at once or ended within the last
/// `window` (`first_hand` of a blob this node fetches from the upstream). The window runs
/// from the end of a copy, not its start: only then can its recipient pass the piece on, and
/// on a slow link a piece takes longer than the window to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyLimit {
    pub copies: u32,
    /// For a blob whose every piece this node has first (it fetches it from the upstream for
    /// the fleet): its uplink is what every other node waits on, so each piece leaves it
    /// once, and the nodes that get it spread it. In the simulation, one copy rather than
    /// two took 16 nodes at 200 Mbit/s from 1.43–1.47 to 1.39–1.41 T1 and 100 nodes at
    /// 1 Gbit/s from 2.15 to 2.02, the owner sending about 1.0 copies instead of 1.25 and 1.74.
    pub first_hand: u32,
    pub window: Duration,
}

impl Default for CopyLimit {
    fn default() -> Self {
        Self { copies: 2, first_hand: 1, window: Duration::from_secs(2) }
    }
}

/// A blob stays first-hand this long after its download from the upstream was last seen, so
/// that the pieces still spreading when it completes are not sent twice at once.
const FIRST_HAND_FRESH: Duration = Duration::from_secs(30);

/// Pieces remembered at most; those with no copy running or recent are forgotten first.
const MAX_REMEMBERED: usize = 16_384;
/// Recipients remembered per digest, and for how long one is worth naming.
const RECIPIENTS: usize = 16;
const RECIPIENT_FRESH: Duration = Duration::from_secs(30);
/// Digests whose recipients are remembered at once.
const MAX_DIGESTS: usize = 1024;

pub(crate) struct Uploads {
    slots: usize,
    copy_limit: CopyLimit,
    sending: Arc<Mutex<Sending>>,
    /// Per digest, the peers pieces went to lately, most recent last.
    recipients: Mutex<HashMap<Digest, VecDeque<(String, Instant)>>>,
}

/// What is being sent, and which pieces were sent lately.
#[derive(Default)]
struct Sending {
    /// Uploads running, per digest.
    running: HashMap<Digest, usize>,
    /// Per piece (by where it starts).
    copies: HashMap<(Digest, u64), Copies>,
    /// Blobs fetched from the upstream here, and when that was last seen.
    first_hand: HashMap<Digest, Instant>,
}

#[derive(Default)]
struct Copies {
    running: u32,
    /// When its last copies ended, within the window.
    ended: Vec<Instant>,
}

impl Copies {
    /// The copies that count against the limit at `now`.
    fn counted(&mut self, now: Instant, window: Duration) -> u32 {
        self.ended.retain(|&at| now.saturating_duration_since(at) < window);
        self.running + self.ended.len() as u32
    }
}

/// One upload slot, given back when dropped (with the response body that holds it), or by
/// [`Slot::end`].
pub(crate) struct Slot {
    digest: Digest,
    piece: Option<u64>,
    sending: Arc<Mutex<Sending>>,
    ended_at: Option<Instant>,
}

impl Slot {
    /// Gives the slot back as of `now`, for a caller on a clock of its own (the simulation);
    /// a dropped slot ends when it is dropped.
    pub(crate) fn end(mut self, now: Instant) {
        self.ended_at = Some(now);
    }
}

impl Uploads {
    pub(crate) fn new(slots: usize) -> Self {
        Self::with_copy_limit(slots, CopyLimit::default())
    }

    pub(crate) fn with_copy_limit(slots: usize, copy_limit: CopyLimit) -> Self {
        Self {
            slots: slots.max(1),
            copy_limit,
            sending: Arc::default(),
            recipients: Mutex::default(),
        }
    }

    /// A slot for an upload of `digest` (of the piece that starts at `start`, for a range), or
    /// why not. A copy of the piece counts only once it has a slot: a request refused for want
    /// of a slot sends nothing, and must not keep the next asker from the piece.
    pub(crate) fn acquire(
        &self,
        digest: &Digest,
        start: Option<u64>,
        now: Instant,
    ) -> Result<Slot, Refusal> {
        let mut sending = self.sending.lock().unwrap_or_else(|e| e.into_inner());
        let Sending { running, copies, first_hand } = &mut *sending;
        if running.get(digest).is_some_and(|&count| count >= self.slots) {
            return Err(Refusal::Busy);
        }
        if let Some(piece) = start {
            let CopyLimit { copies: limit, window, .. } = self.copy_limit;
            let limit = match first_hand.get(digest) {
                Some(&seen) if now.saturating_duration_since(seen) < FIRST_HAND_FRESH => {
                    self.copy_limit.first_hand
                }
                _ => limit,
            };
            if copies.len() >= MAX_REMEMBERED {
                copies.retain(|_, c| c.counted(now, window) > 0);
                if copies.len() >= MAX_REMEMBERED {
                    copies.retain(|_, c| c.running > 0);
                }
            }
            let entry = copies.entry((*digest, piece)).or_default();
            if entry.counted(now, window) >= limit {
                return Err(Refusal::Spread);
            }
            entry.running += 1;
        }
        *running.entry(*digest).or_default() += 1;
        Ok(Slot { digest: *digest, piece: start, sending: self.sending.clone(), ended_at: None })
    }

    /// Notes that this node is fetching `digest` from the upstream: it has each piece first,
    /// and sends it once (see [`CopyLimit::first_hand`]).
    pub(crate) fn first_hand(&self, digest: &Digest, now: Instant) {
        let mut sending = self.sending.lock().unwrap_or_else(|e| e.into_inner());
        let first_hand = &mut sending.first_hand;
        if first_hand.len() >= MAX_DIGESTS && !first_hand.contains_key(digest) {
            first_hand.retain(|_, seen| now.saturating_duration_since(*seen) < FIRST_HAND_FRESH);
            if first_hand.len() >= MAX_DIGESTS {
                first_hand.clear();
            }
        }
        first_hand.insert(*digest, now);
    }

    /// Notes that a piece of `digest` is being sent to `peer`.
    pub(crate) fn sent_to(&self, digest: &Digest, peer: &str, now: Instant) {
        let mut recipients = self.recipients.lock().unwrap_or_else(|e| e.into_inner());
        if recipients.len() >= MAX_DIGESTS && !recipients.contains_key(digest) {
            recipients.retain(|_, list| {
                list.back().is_some_and(|(_, at)| now.duration_since(*at) < RECIPIENT_FRESH)
            });
            if recipients.len() >= MAX_DIGESTS {
                recipients.clear();
            }
        }
        let list = recipients.entry(*digest).or_default();
        list.retain(|(p, _)| p != peer);
        if list.len() >= RECIPIENTS {
            list.pop_front();
        }
        list.push_back((peer.to_owned(), now));
    }

    /// The peers that got pieces of `digest` from here lately, most recent first, `asker`
    /// left out: the ones to name to it.
    pub(crate) fn recipients(&self, digest: &Digest, asker: &str, now: Instant) -> Vec<String> {
        let recipients = self.recipients.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = recipients.get(digest) else { return Vec::new() };
        list.iter()
            .rev()
            .filter(|(p, at)| p != asker && now.duration_since(*at) < RECIPIENT_FRESH)
            .take(MAX_REFERRALS)
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// Why an upload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot for the digest is taken: ask another node, or this one in a moment.
    Busy,
    /// This piece was sent often enough just now: the nodes that got it pass it on. Other
    /// pieces may still be asked of this node.
    Spread,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = self.ended_at.unwrap_or_else(Instant::now);
        let mut sending = self.sending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = sending.running.get_mut(&self.digest) {
            *count -= 1;
            if *count == 0 {
                sending.running.remove(&self.digest);
            }
        }
        if let Some(piece) = self.piece
            && let Some(copies) = sending.copies.get_mut(&(self.digest, piece))
        {
            copies.running = copies.running.saturating_sub(1);
            copies.ended.push(now);
        }
    }
}

/// The body, holding the slot until it is sent or dropped.
pub(crate) fn hold(body: BlobBody, slot: Option<Slot>) -> BlobBody {
    match slot {
        None => body,
        Some(slot) => body
            .map(move |chunk| {
                let _held = &slot;
                chunk
            })
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_digest_and_given_back() {
        let uploads = Uploads::new(2);
        let now = Instant::now();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let first = uploads.acquire(&a, None, now).expect("first");
        let second = uploads.acquire(&a, None, now).expect("second");
        assert_eq!(uploads.acquire(&a, None, now).err(), Some(Refusal::Busy), "two per digest");
        assert!(uploads.acquire(&b, None, now).is_ok(), "another digest has its own");
        drop(first);
        assert!(uploads.acquire(&a, None, now).is_ok());
        drop(second);
        assert!(uploads.sending.lock().unwrap().running.get(&a).is_none_or(|&n| n <= 1));
    }

    #[test]
    fn a_piece_is_sent_twice_per_window_from_the_end_of_its_copies() {
        let uploads = Uploads::new(8);
        let window = CopyLimit::default().window;
        let now = Instant::now();
        let a = Digest::of(b"a");
        let first = uploads.acquire(&a, Some(3), now).expect("first copy");
        let second = uploads.acquire(&a, Some(3), now).expect("second copy");
        assert_eq!(uploads.acquire(&a, Some(3), now).err(), Some(Refusal::Spread), "a third waits");
        assert!(uploads.acquire(&a, Some(4), now).is_ok(), "other pieces are not held up");
        let later = now + window * 3;
        assert_eq!(
            uploads.acquire(&a, Some(3), later).err(),
            Some(Refusal::Spread),
            "copies still being sent count, however long they take"
        );
        first.end(later);
        second.end(later);
        let within = later + window / 2;
        assert_eq!(uploads.acquire(&a, Some(3), within).err(), Some(Refusal::Spread));
        assert!(uploads.acquire(&a, Some(3), later + window).is_ok(), "the window ends");
    }

    #[test]
    fn a_first_hand_piece_is_sent_once_per_window_while_the_upstream_fetch_is_recent() {
        let uploads = Uploads::new(8);
        let window = CopyLimit::default().window;
        let now = Instant::now();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        uploads.first_hand(&a, now);
        let first = uploads.acquire(&a, Some(0), now).expect("its one copy");
        assert_eq!(uploads.acquire(&a, Some(0), now).err(), Some(Refusal::Spread));
        assert!(uploads.acquire(&b, Some(0), now).is_ok(), "another blob");
        assert!(uploads.acquire(&b, Some(0), now).is_ok(), "is sent twice");
        first.end(now);
        assert!(uploads.acquire(&a, Some(0), now + window).is_ok(), "the window ends");
        let stale = now + FIRST_HAND_FRESH;
        let one = uploads.acquire(&a, Some(1), stale).expect("long after the fetch");
        assert!(uploads.acquire(&a, Some(1), stale).is_ok(), "two copies again");
        drop(one);
    }

    #[test]
    fn recipients_are_named_most_recent_first_without_the_asker_and_forgotten() {
        let uploads = Uploads::new(3);
        let now = Instant::now();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        uploads.sent_to(&a, "p1", now);
        uploads.sent_to(&a, "p2", now);
        uploads.sent_to(&a, "p1", now + Duration::from_secs(1));
        assert_eq!(uploads.recipients(&a, "p9", now), ["p1", "p2"], "once each, latest first");
        assert_eq!(uploads.recipients(&a, "p1", now), ["p2"], "not the asker itself");
        assert!(uploads.recipients(&b, "p9", now).is_empty(), "per digest");
        for i in 0..40 {
            uploads.sent_to(&a, &format!("q{i}"), now);
        }
        let named = uploads.recipients(&a, "p9", now);
        assert_eq!(named.len(), MAX_REFERRALS);
        assert_eq!(named[0], "q39");
        let later = now + RECIPIENT_FRESH + Duration::from_secs(2);
        assert!(uploads.recipients(&a, "p9", later).is_empty(), "stale names are not given");
    }

    #[test]
    fn a_request_refused_for_want_of_a_slot_spends_no_copy() {
        let uploads = Uploads::new(1);
        let now = Instant::now();
        let a = Digest::of(b"a");
        let held = uploads.acquire(&a, Some(0), now).expect("the one slot");
        for _ in 0..5 {
            assert_eq!(uploads.acquire(&a, Some(7), now).err(), Some(Refusal::Busy));
        }
        drop(held);
        let first = uploads.acquire(&a, Some(7), now).expect("piece 7 was never sent");
        drop(first);
        assert!(uploads.acquire(&a, Some(7), now).is_ok(), "and may be sent a second time");
    }
}
