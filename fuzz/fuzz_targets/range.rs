//! Fuzzes the headers a node reads about a blob's bytes: a client's or peer's `Range` (each
//! input line is one header), and a peer's `x-shoal-pieces` status and `x-shoal-peers`
//! referrals (the whole input).
//!
//! A range that parses must select bytes inside the blob for every size, or nothing; a pieces
//! status that parses must be the one spelling the node itself writes, and must never claim a
//! piece past the end of the blob; referrals are a bounded list of plausible peer ids taken
//! from the input, which the node's own spelling gives back unchanged.
#![no_main]

use http::header::RANGE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use shoal::fetch::RangeSpec;
use shoal_protocol::peer::{
    Have, MAX_REFERRALS, PieceStatus, format_referrals, parse_referrals, piece_count, piece_range,
};

/// Blob sizes around the edges: empty, one byte, one piece, and the largest.
const SIZES: &[u64] = &[0, 1, 2, 99, 100, 1 << 20, (1 << 20) + 1, u64::MAX - 1, u64::MAX];

fuzz_target!(|data: &[u8]| {
    range(data);
    if let Ok(text) = std::str::from_utf8(data) {
        pieces(text);
        referrals(text);
    }
});

fn referrals(text: &str) {
    let named = parse_referrals(text);
    assert!(named.len() <= MAX_REFERRALS);
    for id in &named {
        assert!(!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(text.contains(id), "{id:?} is not in the header");
    }
    assert_eq!(parse_referrals(&format_referrals(&named)), named, "the node's spelling");
}

fn range(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        // What hyper would hand over: a value it accepts as a header value.
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(RANGE, value);
        }
    }
    let Ok(Some(spec)) = shoal::fuzzing::range(&headers) else { return };
    assert_eq!(headers.get_all(RANGE).iter().count(), 1, "several Range headers accepted");
    if let RangeSpec::FromTo(a, b) = spec {
        assert!(a <= b);
    }
    for &size in SIZES.iter().chain(spec.start().as_slice()) {
        let Some((start, end)) = spec.resolve(size) else { continue };
        assert!(start < end && end <= size, "{spec:?} of {size} bytes gave {start}..{end}");
        match spec {
            RangeSpec::FromTo(a, b) => assert!(start == a && end - 1 <= b),
            RangeSpec::From(a) => assert!(start == a && end == size),
            RangeSpec::Suffix(n) => assert!(end == size && end - start <= n),
        }
    }
}

fn pieces(text: &str) {
    let Ok(status) = PieceStatus::parse(text) else { return };
    assert_eq!(status.to_string(), text, "a second spelling of the same status");
    let count = piece_count(status.size);
    if let Have::Partial { pieces, live } = &status.have {
        assert_eq!(pieces.len(), count);
        assert!(pieces.iter().all(|i| i < count));
        assert!(live.is_none_or(|live| live <= status.size));
    }
    // Every piece the status offers lies inside the blob; none past the last is offered.
    for index in (0..count.min(4100)).chain([count, count.saturating_add(1), u32::MAX]) {
        if status.serves(index) {
            assert!(index < count, "piece {index} of {count} served");
            let (start, end) = piece_range(status.size, index);
            assert!(start < end && end <= status.size);
        }
    }
}
