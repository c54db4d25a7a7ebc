//! When each connected peer was last heard from, so that a peer gone silent costs an owner
//! request a second or two rather than its whole timeout.
//!
//! An owner request may rightly take many seconds: the owner answers once its own upstream
//! request has begun, and Docker Hub's token dance alone can take that long. So the request's
//! timeout cannot tell a busy owner from a dead one. Pings can: every member pings every
//! connection each [`PING_INTERVAL`], and a busy owner still answers them. A peer that has sent
//! nothing — no pong, no message — for [`SILENCE`] is treated as unreachable by the requests
//! waiting on it, and by new ones at once, until it is heard again. Membership is left to the
//! slower ping failure (libp2p's timeout), so a short stall on a congested link fails a request
//! or two over to the upstream, never moves the owners of every key.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How often each connection is pinged. A ping is 32 bytes each way.
pub(super) const PING_INTERVAL: Duration = Duration::from_secs(1);
/// A peer that has sent nothing for this long is silent: two pings missed.
pub(super) const SILENCE: Duration = Duration::from_secs(2);
/// How often waiting requests are checked against [`SILENCE`].
pub(super) const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
pub(super) struct Liveness {
    last_heard: HashMap<PeerId, Instant>,
    /// Peers found silent and not heard since, so each silence is logged once.
    silent: HashMap<PeerId, Instant>,
}

impl Liveness {
    /// Anything at all from `peer`: a connection, a pong, a request or an answer.
    pub fn heard(&mut self, peer: PeerId, now: Instant) {
        self.last_heard.insert(peer, now);
        if self.silent.remove(&peer).is_some() {
            tracing::info!(%peer, "peer heard again after a silence");
        }
    }

    /// The peer's last connection closed: nothing more to track.
    pub fn forget(&mut self, peer: &PeerId) {
        self.last_heard.remove(peer);
        self.silent.remove(peer);
    }

    /// How long `peer` has been silent past [`SILENCE`], if it has; a peer never heard from
    /// (no connection yet) is not silent, its request fails on its own.
    pub fn silence(&mut self, peer: &PeerId, now: Instant) -> Option<Duration> {
        let quiet = now.saturating_duration_since(*self.last_heard.get(peer)?);
        if quiet < SILENCE {
            return None;
        }
        if self.silent.insert(*peer, now).is_none() {
            tracing::warn!(%peer, quiet_ms = quiet.as_millis() as u64, "peer silent; requests to it fail at once until it is heard again");
        }
        Some(quiet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_silent_after_two_missed_pings_and_not_before() {
        let mut liveness = Liveness::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        liveness.heard(peer, t0);
        assert_eq!(liveness.silence(&peer, t0 + PING_INTERVAL), None);
        assert_eq!(liveness.silence(&peer, t0 + SILENCE), Some(SILENCE));
        // Heard again: it speaks for itself once more.
        liveness.heard(peer, t0 + SILENCE * 2);
        assert_eq!(liveness.silence(&peer, t0 + SILENCE * 2 + PING_INTERVAL), None);
    }

    #[test]
    fn a_peer_never_heard_or_forgotten_is_not_judged() {
        let mut liveness = Liveness::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert_eq!(liveness.silence(&peer, t0 + SILENCE * 10), None);
        liveness.heard(peer, t0);
        liveness.forget(&peer);
        assert_eq!(liveness.silence(&peer, t0 + SILENCE * 10), None);
    }
}
