//! Signed data-plane requests: the `x-shoal-peer-auth` header a member puts on every HTTP
//! request it sends to a peer, and its check on the receiving side.
//!
//! The signature is HMAC-SHA256 under a sub-key derived from the cluster secret, over the
//! request's method, path, `Range`, a timestamp, the sender's peer id and a random nonce. A
//! captured header is worth nothing for another path or range, nothing after the validity
//! window, and, inside the window, nothing a second time: the receiver keeps the nonces it has
//! seen (the replay cache lives in the node; this module is pure and takes the time as an
//! argument). The exact format is specified in the project's `docs/protocol.md`.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The request header that carries the signature.
pub const PEER_AUTH_HEADER: &str = "x-shoal-peer-auth";
/// How far a request's timestamp may be from the receiver's clock, either way, in seconds.
/// Members' clocks must agree to within this (NTP does far better).
pub const MAX_CLOCK_SKEW_SECS: u64 = 30;
/// Random bytes per request; with 128 bits, two members never pick the same nonce.
pub const NONCE_LEN: usize = 16;

const VERSION: &str = "v1";
/// Domain separation: the request key is never the pnet key, and a later scheme gets its own.
const KEY_CONTEXT: &[u8] = b"shoal peer request v1";
/// The first line of the signed text, so a signature can never be mistaken for another one.
const CANONICAL_PREFIX: &str = "shoal-peer-request-v1";
/// libp2p peer ids are base58 text of about 52 characters; anything far longer is not one.
const MAX_PEER_ID_LEN: usize = 128;
/// Longest header value accepted: the fixed parts, the longest peer id, a 20-digit timestamp.
const MAX_HEADER_LEN: usize = 280;

type HmacSha256 = Hmac<Sha256>;

/// The sub-key that signs data-plane requests: HMAC-SHA256(cluster secret, context).
#[derive(Clone, PartialEq, Eq)]
pub struct RequestKey([u8; 32]);

impl fmt::Debug for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestKey(..)")
    }
}

/// What a signature covers of the HTTP request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedRequest<'a> {
    /// `GET` or `HEAD`, as sent.
    pub method: &'a str,
    /// The request target as sent: path and query, e.g. `/v2/_shoal/peer/blobs/sha256:…`.
    pub path_and_query: &'a str,
    /// The `Range` header's value, if the request has one.
    pub range: Option<&'a str>,
}

/// A parsed `x-shoal-peer-auth` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuth {
    /// The sender's libp2p peer id, as text.
    pub peer: String,
    /// Unix time in seconds at which the sender signed.
    pub timestamp: u64,
    pub nonce: [u8; NONCE_LEN],
    signature: [u8; 32],
}

/// Why a request's signature was refused. Each variant names the check that failed; none
/// carries the signature itself, so logging one never leaks it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAuthError {
    #[error("malformed {PEER_AUTH_HEADER} header: bad {0}")]
    Malformed(&'static str),
    #[error("unsupported {PEER_AUTH_HEADER} version (this node speaks {VERSION})")]
    Version,
    #[error(
        "signed {0} s ago, more than the {MAX_CLOCK_SKEW_SECS} s allowed (or the clocks differ)"
    )]
    TooOld(u64),
    #[error(
        "signed {0} s in the future, more than the {MAX_CLOCK_SKEW_SECS} s allowed (or the clocks differ)"
    )]
    TooNew(u64),
    #[error("the signature does not match the request (another cluster key, or a changed request)")]
    Signature,
}

impl RequestKey {
    pub fn derive(cluster_secret: &[u8; 32]) -> Self {
        Self(hmac(cluster_secret, KEY_CONTEXT))
    }

    /// Signs `request` as `peer` at `timestamp` with `nonce`.
    pub fn sign(
        &self,
        request: SignedRequest<'_>,
        peer: &str,
        timestamp: u64,
        nonce: [u8; NONCE_LEN],
    ) -> PeerAuth {
        let signature = hmac(&self.0, canonical(request, peer, timestamp, &nonce).as_bytes());
        PeerAuth { peer: peer.to_owned(), timestamp, nonce, signature }
    }
}

impl PeerAuth {
    /// Parses a header value strictly: the fields in their order, separated by `"; "`,
    /// lowercase hex of the exact lengths, a timestamp without leading zeros.
    pub fn parse(value: &str) -> Result<Self, PeerAuthError> {
        if value.len() > MAX_HEADER_LEN {
            return Err(PeerAuthError::Malformed("length"));
        }
        let mut parts = value.split("; ");
        if parts.next() != Some(VERSION) {
            return Err(PeerAuthError::Version);
        }
        let mut field = |key: &'static str| {
            parts
                .next()
                .and_then(|p| p.strip_prefix(key))
                .and_then(|p| p.strip_prefix('='))
                .ok_or(PeerAuthError::Malformed(key))
        };
        let peer = field("peer")?;
        let timestamp = field("t")?;
        let nonce = field("nonce")?;
        let signature = field("sig")?;
        if parts.next().is_some() {
            return Err(PeerAuthError::Malformed("trailing field"));
        }
        if peer.is_empty()
            || peer.len() > MAX_PEER_ID_LEN
            || !peer.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(PeerAuthError::Malformed("peer"));
        }
        let timestamp = timestamp
            .parse::<u64>()
            .ok()
            .filter(|t| t.to_string() == timestamp)
            .ok_or(PeerAuthError::Malformed("t"))?;
        Ok(Self {
            peer: peer.to_owned(),
            timestamp,
            nonce: lower_hex(nonce).ok_or(PeerAuthError::Malformed("nonce"))?,
            signature: lower_hex(signature).ok_or(PeerAuthError::Malformed("sig"))?,
        })
    }

    /// The header value.
    pub fn to_header_value(&self) -> String {
        format!(
            "{VERSION}; peer={}; t={}; nonce={}; sig={}",
            self.peer,
            self.timestamp,
            hex::encode(self.nonce),
            hex::encode(self.signature)
        )
    }

    /// Checks the timestamp against `now` (unix seconds), then the signature, in constant
    /// time. The caller checks the nonce against the ones it has seen, after this succeeds,
    /// so that only signed requests take room in its replay cache.
    pub fn verify(
        &self,
        key: &RequestKey,
        request: SignedRequest<'_>,
        now: u64,
    ) -> Result<(), PeerAuthError> {
        if now > self.timestamp.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(PeerAuthError::TooOld(now - self.timestamp));
        }
        if self.timestamp > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(PeerAuthError::TooNew(self.timestamp - now));
        }
        let expected = key.sign(request, &self.peer, self.timestamp, self.nonce);
        if bool::from(expected.signature.ct_eq(&self.signature)) {
            Ok(())
        } else {
            Err(PeerAuthError::Signature)
        }
    }
}

/// The signed text: one field a line. No field can hold a newline (HTTP forbids them in
/// methods, targets and header values; peer ids are alphanumeric), so fields cannot be shifted
/// from one line to the next.
pub fn canonical(
    request: SignedRequest<'_>,
    peer: &str,
    timestamp: u64,
    nonce: &[u8; NONCE_LEN],
) -> String {
    format!(
        "{CANONICAL_PREFIX}\n{}\n{}\n{}\n{timestamp}\n{peer}\n{}",
        request.method,
        request.path_and_query,
        request.range.unwrap_or(""),
        hex::encode(nonce)
    )
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
