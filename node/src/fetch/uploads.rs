//! Upload slots: how many pieces of one blob this node sends to peers at once, and how often
//! it sends the same piece.
//!
//! A node's uplink is shared by everything it sends; a source that takes every request serves
//! each asker slower and becomes every node's only source (the owner, first of all). Past its
//! slots a node answers "busy" with what it holds, and the asker takes the piece from another
//! node that has it. A piece is also sent at most [`CopyLimit::copies`] times in [`CopyLimit::window`]: the
//! nodes that got it pass it on, so a piece spreads through the fleet like a broadcast tree
//! instead of leaving every node's first holder (the owner) once per node. That refusal names
//! the piece, not the node ([`Refusal::Spread`], `429` on the wire): the asker takes other
//! pieces from it meanwhile. The window ends the refusal in case those nodes went away.
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

/// How often one piece may be sent: at most `copies` times within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyLimit {
    pub copies: u32,
    pub window: Duration,
}

impl Default for CopyLimit {
    fn default() -> Self {
        Self { copies: 2, window: Duration::from_secs(2) }
    }
}
/// Pieces remembered at most; older ones are forgotten first.
const MAX_REMEMBERED: usize = 16_384;
/// Recipients remembered per digest, and for how long one is worth naming.
const RECIPIENTS: usize = 16;
const RECIPIENT_FRESH: Duration = Duration::from_secs(30);
/// Digests whose recipients are remembered at once.
const MAX_DIGESTS: usize = 1024;

pub(crate) struct Uploads {
    slots: usize,
    copy_limit: CopyLimit,
    running: Arc<Mutex<HashMap<Digest, usize>>>,
    /// Per piece (by where it starts): how often it was sent since when.
    sent: Mutex<HashMap<(Digest, u64), (u32, Instant)>>,
    /// Per digest, the peers pieces went to lately, most recent last.
    recipients: Mutex<HashMap<Digest, VecDeque<(String, Instant)>>>,
}

/// One upload slot, given back when dropped (with the response body that holds it).
pub(crate) struct Slot {
    digest: Digest,
    running: Arc<Mutex<HashMap<Digest, usize>>>,
}

impl Uploads {
    pub(crate) fn new(slots: usize) -> Self {
        Self::with_copy_limit(slots, CopyLimit::default())
    }

    pub(crate) fn with_copy_limit(slots: usize, copy_limit: CopyLimit) -> Self {
        Self {
            slots: slots.max(1),
            copy_limit,
            running: Arc::default(),
            sent: Mutex::default(),
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
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.get(digest).is_some_and(|&count| count >= self.slots) {
            return Err(Refusal::Busy);
        }
        if let Some(piece) = start {
            let CopyLimit { copies, window } = self.copy_limit;
            let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            if sent.len() >= MAX_REMEMBERED {
                sent.retain(|_, (_, since)| now.duration_since(*since) < window);
                if sent.len() >= MAX_REMEMBERED {
                    sent.clear();
                }
            }
            let entry = sent.entry((*digest, piece)).or_insert((0, now));
            if now.duration_since(entry.1) >= window {
                *entry = (0, now);
            }
            if entry.0 >= copies {
                return Err(Refusal::Spread);
            }
            entry.0 += 1;
        }
        *running.entry(*digest).or_default() += 1;
        Ok(Slot { digest: *digest, running: self.running.clone() })
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
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = running.get_mut(&self.digest) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.digest);
            }
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
        assert!(uploads.running.lock().unwrap().get(&a).is_none_or(|&n| n <= 1));
    }

    #[test]
    fn a_piece_is_sent_twice_per_window() {
        let uploads = Uploads::new(8);
        let now = Instant::now();
        let a = Digest::of(b"a");
        assert!(uploads.acquire(&a, Some(3), now).is_ok());
        assert!(uploads.acquire(&a, Some(3), now).is_ok());
        assert_eq!(uploads.acquire(&a, Some(3), now).err(), Some(Refusal::Spread), "a third waits");
        assert!(uploads.acquire(&a, Some(4), now).is_ok(), "other pieces are not held up");
        assert!(
            uploads.acquire(&a, Some(3), now + CopyLimit::default().window).is_ok(),
            "the window ends"
        );
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
