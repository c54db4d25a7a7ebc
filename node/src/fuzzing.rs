//! Entry points for the fuzz targets in `fuzz/`, and for nothing else.
//!
//! Some parsers that face untrusted input are private to their module. These thin wrappers let
//! the fuzzer reach them without making the modules public; they return plain types so that no
//! crate-private type leaks out through them.

use std::io;

use libp2p::StreamProtocol;
use libp2p::futures::executor::block_on;
use libp2p::futures::io::Cursor;
use libp2p::request_response::Codec as _;
use reqwest::Url;
use shoal_protocol::peer::{OWNER_PROTOCOL, OwnerRequest, OwnerResponse};

use crate::fetch::RangeSpec;
use crate::registry::ApiError;
use crate::store::Referrer;

/// The `Range` header of a client or peer request, as the registry API reads it.
pub fn range(headers: &http::HeaderMap) -> Result<Option<RangeSpec>, ApiError> {
    crate::registry::parse_range(headers)
}

/// A `WWW-Authenticate` value as the upstream client reads it: each challenge's lowercased
/// scheme and its parameters in order.
pub fn www_authenticate(header: &str) -> Vec<(String, Vec<(String, String)>)> {
    crate::upstream::parse_challenges(header).into_iter().map(|c| (c.scheme, c.params)).collect()
}

/// What the upstream client decides about a bearer challenge's `realm` for the registry at
/// the URL `registry` with these `token_realms`: `None` when the realm is not an http(s) URL
/// (the client refuses the challenge), else the realm's scheme and host and whether
/// credentials may go there.
pub fn realm_check(
    registry: &str,
    allowed: &[String],
    realm: &str,
) -> Option<(String, String, Result<(), String>)> {
    let registry = Url::parse(registry).expect("the registry URL is the caller's own");
    let realm = Url::parse(realm).ok().filter(|u| matches!(u.scheme(), "http" | "https"))?;
    let verdict = crate::upstream::RealmPolicy::new(&registry, allowed).check(&realm);
    let host = realm.host_str().unwrap_or_default().to_ascii_lowercase();
    Some((realm.scheme().to_owned(), host, verdict))
}

/// An owner request as it arrives from a peer: a length-prefixed frame, read by the codec.
pub fn owner_request_frame(bytes: &[u8]) -> io::Result<OwnerRequest> {
    let protocol = StreamProtocol::new(OWNER_PROTOCOL);
    block_on(crate::p2p::OwnerCodec.read_request(&protocol, &mut Cursor::new(bytes)))
}

/// An owner response as it arrives from a peer: a length-prefixed frame, read by the codec.
pub fn owner_response_frame(bytes: &[u8]) -> io::Result<OwnerResponse> {
    let protocol = StreamProtocol::new(OWNER_PROTOCOL);
    block_on(crate::p2p::OwnerCodec.read_response(&protocol, &mut Cursor::new(bytes)))
}

/// A referrers index from an upstream's referrers API (or its fallback tag).
pub fn referrers_index(body: &[u8]) -> Result<Vec<Referrer>, String> {
    crate::fetch::parse_referrers_index(body)
}
