//! Golden signatures (computed with Python's `hmac` module, outside this crate), and every way
//! a signed request can be refused: another path, range, method, peer or key, a timestamp out
//! of the window, and malformed header values.

use super::*;

const PATH: &str =
    "/v2/_shoal/peer/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const PEER: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
const T: u64 = 1_767_225_600;
const RANGE: Option<&str> = Some("bytes=0-1048575");

fn key() -> RequestKey {
    RequestKey::derive(&[7u8; 32])
}

fn nonce() -> [u8; NONCE_LEN] {
    std::array::from_fn(|i| i as u8)
}

fn get<'a>(path: &'a str, range: Option<&'a str>) -> SignedRequest<'a> {
    SignedRequest { method: "GET", path_and_query: path, range }
}

fn signed() -> PeerAuth {
    key().sign(get(PATH, RANGE), PEER, T, nonce())
}

#[test]
fn golden_key_and_header() {
    assert_eq!(
        hex::encode(key().0),
        "64cfff83da0312b0c4ab6478fdabb5dce7e65bb82a62d7dfd71303ae3b404c8a"
    );
    assert_eq!(
        signed().to_header_value(),
        format!(
            "v1; peer={PEER}; t=1767225600; nonce=000102030405060708090a0b0c0d0e0f; \
             sig=fe3e248313cc0cd4624f64602f1c3c7dd8f3508b94a8658cf663293b0d6cbb29"
        )
    );
    let head = SignedRequest { method: "HEAD", path_and_query: PATH, range: None };
    assert_eq!(
        hex::encode(key().sign(head, PEER, T, nonce()).signature),
        "f0b30c18b3435099ea4a6545d3a2e488c53a532e4a34bec5a4ded87ba46508ff"
    );
}

#[test]
fn a_signed_request_verifies_and_round_trips() {
    let auth = signed();
    assert_eq!(PeerAuth::parse(&auth.to_header_value()), Ok(auth.clone()));
    assert_eq!(auth.verify(&key(), get(PATH, RANGE), T), Ok(()));
    assert_eq!(auth.verify(&key(), get(PATH, RANGE), T + MAX_CLOCK_SKEW_SECS), Ok(()));
    assert_eq!(auth.verify(&key(), get(PATH, RANGE), T - MAX_CLOCK_SKEW_SECS), Ok(()));
}

#[test]
fn another_request_is_refused() {
    let auth = signed();
    let other_path = PATH.replace("e3b0", "e3b1");
    assert_eq!(auth.verify(&key(), get(&other_path, RANGE), T), Err(PeerAuthError::Signature));
    let with_query = format!("{PATH}?ns=docker.io");
    assert_eq!(auth.verify(&key(), get(&with_query, RANGE), T), Err(PeerAuthError::Signature));
    for range in [Some("bytes=0-1048576"), Some("bytes=1048576-2097151"), None] {
        assert_eq!(auth.verify(&key(), get(PATH, range), T), Err(PeerAuthError::Signature));
    }
    let head = SignedRequest { method: "HEAD", ..get(PATH, RANGE) };
    assert_eq!(auth.verify(&key(), head, T), Err(PeerAuthError::Signature));
}

#[test]
fn another_peer_or_key_is_refused() {
    let mut auth = signed();
    auth.peer = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTM".to_owned();
    assert_eq!(auth.verify(&key(), get(PATH, RANGE), T), Err(PeerAuthError::Signature));
    let other_key = RequestKey::derive(&[8u8; 32]);
    assert_eq!(signed().verify(&other_key, get(PATH, RANGE), T), Err(PeerAuthError::Signature));
    let mut other_nonce = signed();
    other_nonce.nonce[0] ^= 1;
    assert_eq!(other_nonce.verify(&key(), get(PATH, RANGE), T), Err(PeerAuthError::Signature));
}

#[test]
fn timestamps_outside_the_window_are_refused_before_the_signature() {
    let auth = signed();
    let late = T + MAX_CLOCK_SKEW_SECS + 1;
    assert_eq!(auth.verify(&key(), get(PATH, RANGE), late), Err(PeerAuthError::TooOld(31)));
    let early = T - MAX_CLOCK_SKEW_SECS - 1;
    assert_eq!(auth.verify(&key(), get(PATH, RANGE), early), Err(PeerAuthError::TooNew(31)));
    // A moved timestamp breaks the signature even inside the window.
    let mut moved = signed();
    moved.timestamp += 1;
    assert_eq!(moved.verify(&key(), get(PATH, RANGE), T), Err(PeerAuthError::Signature));
    // Far-off values do not overflow.
    let mut far = signed();
    far.timestamp = u64::MAX - 5;
    assert!(matches!(far.verify(&key(), get(PATH, RANGE), T), Err(PeerAuthError::TooNew(_))));
    assert!(matches!(
        signed().verify(&key(), get(PATH, RANGE), u64::MAX - 5),
        Err(PeerAuthError::TooOld(_))
    ));
}

#[test]
fn malformed_headers_are_refused() {
    let good = signed().to_header_value();
    let nonce = "000102030405060708090a0b0c0d0e0f";
    let sig = "fe3e248313cc0cd4624f64602f1c3c7dd8f3508b94a8658cf663293b0d6cbb29";
    let cases: Vec<(String, PeerAuthError)> = vec![
        (String::new(), PeerAuthError::Version),
        (good.replacen("v1", "v2", 1), PeerAuthError::Version),
        (good.replacen("v1; ", "v1;", 1), PeerAuthError::Version),
        (
            format!("v1; t={T}; peer={PEER}; nonce={nonce}; sig={sig}"),
            PeerAuthError::Malformed("peer"),
        ),
        (format!("v1; peer={PEER}; t={T}; nonce={nonce}"), PeerAuthError::Malformed("sig")),
        (format!("{good}; extra=1"), PeerAuthError::Malformed("trailing field")),
        (format!("{good};"), PeerAuthError::Malformed("sig")),
        (good.replace("; ", ";"), PeerAuthError::Version),
        (good.replace(PEER, ""), PeerAuthError::Malformed("peer")),
        (good.replace(PEER, "12D3/KooW"), PeerAuthError::Malformed("peer")),
        (good.replace(PEER, &"a".repeat(129)), PeerAuthError::Malformed("peer")),
        (good.replace("t=1767225600", "t=01767225600"), PeerAuthError::Malformed("t")),
        (good.replace("t=1767225600", "t=-1"), PeerAuthError::Malformed("t")),
        (good.replace("t=1767225600", "t=+1767225600"), PeerAuthError::Malformed("t")),
        (good.replace("t=1767225600", "t=99999999999999999999"), PeerAuthError::Malformed("t")),
        (good.replace(nonce, &nonce.to_uppercase()), PeerAuthError::Malformed("nonce")),
        (good.replace(nonce, &nonce[2..]), PeerAuthError::Malformed("nonce")),
        (good.replace(nonce, &format!("{nonce}00")), PeerAuthError::Malformed("nonce")),
        (good.replace(sig, &sig[..63]), PeerAuthError::Malformed("sig")),
        (good.replace(sig, &format!("{}g", &sig[..63])), PeerAuthError::Malformed("sig")),
        (format!("{good}{}", " ".repeat(300)), PeerAuthError::Malformed("length")),
    ];
    for (value, error) in cases {
        assert_eq!(PeerAuth::parse(&value), Err(error), "{value:?}");
    }
}

#[test]
fn the_canonical_text_is_one_field_a_line() {
    assert_eq!(
        canonical(get("/p?q=1", None), "peer", 5, &[0xab; NONCE_LEN]),
        "shoal-peer-request-v1\nGET\n/p?q=1\n\n5\npeer\nabababababababababababababababab"
    );
}

#[test]
fn errors_never_show_the_signature() {
    let auth = signed();
    let sig_hex = hex::encode(auth.signature);
    let error = auth.verify(&RequestKey::derive(&[1; 32]), get(PATH, RANGE), T).unwrap_err();
    assert!(!error.to_string().contains(&sig_hex));
    assert_eq!(format!("{:?}", key()), "RequestKey(..)");
}
