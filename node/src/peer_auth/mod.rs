//! Signing and checking the data-plane requests members send each other.
//!
//! The format and the signature are `shoal_protocol::peer::PeerAuth`; this module adds what a
//! running node needs around them: its own peer id and clock on the sending side, and on the
//! receiving side the replay cache and a log line that names the check a request failed
//! (never the signature).

mod replay;

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use shoal_protocol::peer::{PeerAuth, PeerAuthError, RequestKey, SignedRequest};

pub(crate) use replay::CAPACITY as REPLAY_CAPACITY;
use replay::{Refusal, ReplayCache};

use crate::throttle::LogThrottle;

pub use shoal_protocol::peer::PEER_AUTH_HEADER;

/// Refusals of one kind are logged at most this often; the rest at debug level.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Signs this node's requests to peers.
#[derive(Debug, Clone)]
pub struct RequestSigner {
    key: RequestKey,
    peer: String,
}

impl RequestSigner {
    /// `peer` is this node's libp2p peer id.
    pub fn new(key: RequestKey, peer: String) -> Self {
        Self { key, peer }
    }

    /// The `x-shoal-peer-auth` value for one request, signed now with a fresh nonce.
    pub fn header_value(&self, method: &str, path_and_query: &str, range: Option<&str>) -> String {
        let request = SignedRequest { method, path_and_query, range };
        self.key.sign(request, &self.peer, unix_now(), rand::random()).to_header_value()
    }
}

/// Why a peer request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PeerAuthFailure {
    #[error("no {PEER_AUTH_HEADER} header")]
    Missing,
    #[error(transparent)]
    Invalid(#[from] PeerAuthError),
    #[error("a replay: peer {peer} sent this nonce already")]
    Replayed { peer: String },
    #[error("too many signed peer requests in the last minute to remember them all")]
    Busy,
    /// This node has no cluster key: it serves no peers.
    #[error("this node runs alone (no cluster key) and serves no peers")]
    NoFleet,
}

impl PeerAuthFailure {
    /// The check that failed, as a short fixed label for logs.
    fn check(&self) -> &'static str {
        match self {
            PeerAuthFailure::Missing => "missing",
            PeerAuthFailure::Invalid(PeerAuthError::Malformed(_) | PeerAuthError::Version) => {
                "malformed"
            }
            PeerAuthFailure::Invalid(PeerAuthError::TooOld(_) | PeerAuthError::TooNew(_)) => {
                "time window"
            }
            PeerAuthFailure::Invalid(PeerAuthError::Signature) => "signature",
            PeerAuthFailure::Replayed { .. } => "replay",
            PeerAuthFailure::Busy => "replay cache full",
            PeerAuthFailure::NoFleet => "no cluster key",
        }
    }
}

/// Checks the requests peers send this node.
#[derive(Debug)]
pub struct RequestVerifier {
    key: RequestKey,
    replay: Mutex<ReplayCache>,
    throttle: LogThrottle<&'static str>,
}

impl RequestVerifier {
    pub fn new(key: RequestKey) -> Self {
        Self::with_capacity(key, REPLAY_CAPACITY)
    }

    fn with_capacity(key: RequestKey, capacity: usize) -> Self {
        Self {
            key,
            replay: Mutex::new(ReplayCache::new(capacity)),
            throttle: LogThrottle::new(LOG_INTERVAL),
        }
    }

    /// Checks one request: its header parses, its time is inside the window, its signature
    /// matches, and its nonce is new. Returns the sender's peer id. Failures are logged.
    pub fn check(
        &self,
        request: SignedRequest<'_>,
        header: Option<&[u8]>,
    ) -> Result<String, PeerAuthFailure> {
        let result = self.check_at(request, header, unix_now());
        if let Err(failure) = &result {
            let check = failure.check();
            if self.throttle.allow(check) {
                tracing::warn!(check, error = %failure, path = request.path_and_query, "refused a peer request");
            } else {
                tracing::debug!(check, error = %failure, path = request.path_and_query, "refused a peer request");
            }
        }
        result
    }

    fn check_at(
        &self,
        request: SignedRequest<'_>,
        header: Option<&[u8]>,
        now: u64,
    ) -> Result<String, PeerAuthFailure> {
        let header = header.ok_or(PeerAuthFailure::Missing)?;
        let text = std::str::from_utf8(header).map_err(|_| PeerAuthError::Malformed("encoding"))?;
        let auth = PeerAuth::parse(text)?;
        auth.verify(&self.key, request, now)?;
        // Only after the signature: a stranger cannot fill the cache with made-up nonces.
        let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        match replay.insert(&auth.peer, &auth.nonce, auth.timestamp, now) {
            Ok(()) => Ok(auth.peer),
            Err(Refusal::Seen) => Err(PeerAuthFailure::Replayed { peer: auth.peer }),
            Err(Refusal::Full) => Err(PeerAuthFailure::Busy),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/v2/_shoal/peer/pieces/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn head() -> SignedRequest<'static> {
        SignedRequest { method: "HEAD", path_and_query: PATH, range: None }
    }

    #[test]
    fn a_signed_request_passes_once() {
        let key = RequestKey::derive(&[3; 32]);
        let signer = RequestSigner::new(key.clone(), "peerA".to_owned());
        let verifier = RequestVerifier::new(key);
        let header = signer.header_value("HEAD", PATH, None);
        assert_eq!(verifier.check(head(), Some(header.as_bytes())).unwrap(), "peerA");
        assert!(matches!(
            verifier.check(head(), Some(header.as_bytes())),
            Err(PeerAuthFailure::Replayed { peer }) if peer == "peerA"
        ));
        let again = signer.header_value("HEAD", PATH, None);
        assert!(verifier.check(head(), Some(again.as_bytes())).is_ok(), "a fresh nonce passes");
    }

    #[test]
    fn refusals_name_their_check() {
        let key = RequestKey::derive(&[3; 32]);
        let verifier = RequestVerifier::with_capacity(key.clone(), 1);
        assert!(matches!(verifier.check(head(), None), Err(PeerAuthFailure::Missing)));
        let bad = verifier.check(head(), Some(b"v1; peer=\xff"));
        assert!(matches!(bad, Err(PeerAuthFailure::Invalid(PeerAuthError::Malformed(_)))));
        let stranger = RequestSigner::new(RequestKey::derive(&[4; 32]), "x".to_owned());
        let header = stranger.header_value("HEAD", PATH, None);
        let wrong_key = verifier.check(head(), Some(header.as_bytes()));
        assert!(matches!(wrong_key, Err(PeerAuthFailure::Invalid(PeerAuthError::Signature))));
        // A stranger's refused requests took no room: the one slot is still free.
        let signer = RequestSigner::new(key, "peerA".to_owned());
        let first = signer.header_value("HEAD", PATH, None);
        assert!(verifier.check(head(), Some(first.as_bytes())).is_ok());
        let second = signer.header_value("HEAD", PATH, None);
        assert!(matches!(
            verifier.check(head(), Some(second.as_bytes())),
            Err(PeerAuthFailure::Busy)
        ));
    }
}
