//! Fuzzes what a node reads from a peer: owner requests and responses (length-prefixed
//! protobuf frames, then the checks that turn them into typed messages), the signed request
//! header `x-shoal-peer-auth`, and the advert in identify's agent version.
//!
//! The same bytes go to every reader. Whatever a reader accepts must survive a round trip
//! through what the node itself sends, so that no accepted message has a second meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use shoal_protocol::peer::{
    MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, OwnerRequest, OwnerResponse, PeerAdvert, PeerAuth,
    RequestKey, SignedRequest, check_platform, wire,
};
use shoal_protocol::{Digest, RepositoryName, Tag};

fuzz_target!(|data: &[u8]| {
    request(data);
    response(data);
    frames(data);
    if let Ok(text) = std::str::from_utf8(data) {
        peer_auth(text);
        advert(text);
    }
});

fn request(data: &[u8]) {
    let Ok(request) = OwnerRequest::decode(data) else { return };
    assert!(data.len() <= MAX_REQUEST_SIZE);
    let encoded = request.encode();
    assert!(encoded.len() <= data.len(), "re-encoding grew a request");
    assert_eq!(OwnerRequest::decode(&encoded).as_ref(), Ok(&request));
    // The typed request carries only checked values.
    let (registry, repo) = match &request {
        OwnerRequest::FetchBlob { registry, repo, .. }
        | OwnerRequest::ResolveTag { registry, repo, .. } => (registry, repo),
        OwnerRequest::Hold(hold) => {
            assert!((1..=64).contains(&hold.replicas));
            if let Some(tag) = &hold.tag {
                assert_eq!(Tag::parse(tag.as_str()).as_ref(), Ok(tag));
            }
            if let Some(platform) = &hold.platform {
                assert!(check_platform(platform.clone()).is_ok());
            }
            (&hold.registry, &hold.repo)
        }
        OwnerRequest::Release(release) => (&release.registry, &release.repo),
    };
    assert!(!registry.is_empty() && registry.len() <= 255);
    assert_eq!(RepositoryName::parse(repo.as_str()).as_ref(), Ok(repo));
}

fn response(data: &[u8]) {
    let Ok(response) = OwnerResponse::decode(data) else { return };
    assert!(data.len() <= MAX_RESPONSE_SIZE);
    let encoded = response.encode();
    assert_eq!(OwnerResponse::decode(&encoded).as_ref(), Ok(&response));
    match &response {
        OwnerResponse::TagResolved { digest, manifest, .. } => {
            assert_eq!(Digest::of(manifest), *digest, "a manifest that is not what it claims");
        }
        OwnerResponse::FetchAccepted { http_url } => {
            assert!(http_url.starts_with("http://") || http_url.starts_with("https://"));
        }
        OwnerResponse::Hold(state) => assert_ne!(*state, wire::HoldState::Unknown),
        OwnerResponse::Error(code) => assert_ne!(*code, wire::ErrorCode::Unspecified),
    }
    // What the wire form alone accepts is a superset: the checks only ever refuse.
    assert!(wire::OwnerResponse::decode(data).is_ok());
}

/// The codec reads a 4-byte big-endian length, then that many bytes of message.
fn frames(data: &[u8]) {
    let body = data.get(..4).and_then(|prefix| {
        let len = u32::from_be_bytes(prefix.try_into().unwrap()) as usize;
        data[4..].get(..len)
    });
    let from_frame = shoal::fuzzing::owner_request_frame(data);
    match body {
        Some(body) if body.len() <= MAX_REQUEST_SIZE => {
            assert_eq!(from_frame.ok(), OwnerRequest::decode(body).ok());
        }
        _ => assert!(from_frame.is_err()),
    }
    let from_frame = shoal::fuzzing::owner_response_frame(data);
    match body {
        Some(body) if body.len() <= MAX_RESPONSE_SIZE => {
            assert_eq!(from_frame.ok(), OwnerResponse::decode(body).ok());
        }
        _ => assert!(from_frame.is_err()),
    }
}

fn peer_auth(text: &str) {
    let Ok(auth) = PeerAuth::parse(text) else { return };
    assert_eq!(auth.to_header_value(), text, "a second spelling of the same signature");
    // A header that parses is still refused unless its signature matches.
    let key = RequestKey::derive(&[7; 32]);
    let request = SignedRequest { method: "GET", path_and_query: "/v2/", range: None };
    for now in [0, auth.timestamp, u64::MAX] {
        let verdict = auth.verify(&key, request, now);
        let signed = key.sign(request, &auth.peer, auth.timestamp, auth.nonce);
        if verdict.is_ok() {
            assert_eq!(signed, auth);
        }
        if now == auth.timestamp {
            assert!(signed.verify(&key, request, now).is_ok());
        }
    }
}

fn advert(text: &str) {
    let Ok(advert) = PeerAdvert::parse_agent_version(text) else { return };
    assert!(advert.http_url.starts_with("http://") || advert.http_url.starts_with("https://"));
    assert!(!advert.http_url.contains(' '));
    let text = advert.to_agent_version();
    assert_eq!(PeerAdvert::parse_agent_version(&text).as_ref(), Ok(&advert));
}
