//! Peer exchange on the data plane: a node names the members it sent pieces of a digest to a
//! moment ago, so that an asker learns of them at once instead of at its next DHT lookup.
//!
//! ```text
//! x-shoal-peers: <peer id>,<peer id>,...
//! ```
//!
//! At most [`MAX_REFERRALS`] libp2p peer ids (base58), most recent first, on any answer that
//! carries a status. A referral is a hint: the asker uses only ids that are members it knows,
//! asks each what it holds before asking it for a piece, and a wrong name costs one status
//! request.

/// Header that carries the referrals.
pub const PEERS_HEADER: &str = "x-shoal-peers";
/// Peers named in one answer at most.
pub const MAX_REFERRALS: usize = 8;
/// A libp2p peer id in base58 is 46–53 characters; anything longer is not one.
const MAX_ID_LEN: usize = 64;

/// The header value naming `peers` (the first [`MAX_REFERRALS`] of them).
pub fn format_referrals<S: AsRef<str>>(peers: &[S]) -> String {
    let named: Vec<&str> = peers.iter().take(MAX_REFERRALS).map(AsRef::as_ref).collect();
    named.join(",")
}

/// The peer ids a header value names: at most [`MAX_REFERRALS`], each made of base58
/// characters and of a plausible length; anything else in the value is skipped, not an
/// error (a hint that cannot be read is no hint).
pub fn parse_referrals(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_ID_LEN
                && id.bytes().all(|b| b.is_ascii_alphanumeric() && !b"0OIl".contains(&b))
        })
        .take(MAX_REFERRALS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
    const B: &str = "12D3KooWGzh6ZkVrz8kC7aGTwYKKU6gXYbYe6H6tgfHmDHpD8xCo";

    #[test]
    fn round_trips_and_bounds_what_it_names() {
        assert_eq!(parse_referrals(&format_referrals(&[A, B])), [A, B]);
        let many = vec![A; 20];
        assert_eq!(format_referrals(&many).split(',').count(), MAX_REFERRALS);
        let header = std::iter::repeat_n(A, 20).collect::<Vec<_>>().join(",");
        assert_eq!(parse_referrals(&header).len(), MAX_REFERRALS);
        assert!(parse_referrals("").is_empty());
    }

    #[test]
    fn what_is_not_a_peer_id_is_skipped() {
        let long = "1".repeat(65);
        let value = format!("{A}, ,not-base58!,{long},O0Il,{B}");
        assert_eq!(parse_referrals(&value), [A, B]);
    }
}
