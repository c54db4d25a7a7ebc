//! Finding who sent a wrong piece, after a swarm download failed verification.
//!
//! The blob's digest only says that some byte is wrong. The digest's owner, which fetched the
//! blob from the upstream and verified it (or two other peers that hold it verified and
//! agree), gives the digest of each piece; the pieces of this copy that differ name their
//! senders; a piece that several peers were asked for is asked of each again and compared.
//! Only the liars are distrusted, so one liar does not cost a node every honest source of a
//! blob. With no reference, every sender is distrusted, as with no tracing at all.

use std::time::Duration;

use shoal_protocol::Digest;
use shoal_protocol::peer::{piece_count, piece_range};

use super::Contributions;
use crate::fetch::PeerClient;
use crate::p2p::PeerId;
use crate::store::TempBlob;

/// A reference that is still committing its own copy is asked again this many times.
const ROUNDS: u32 = 10;
const PAUSE: Duration = Duration::from_millis(300);

/// The peers to distrust for `digest`, whose copy in `temp` failed verification.
pub(crate) async fn liars(
    temp: &TempBlob,
    client: &PeerClient,
    contributions: &Contributions,
    digest: Digest,
) -> Vec<PeerId> {
    let everyone = contributions.peers();
    let size = temp.written();
    let count = piece_count(size);
    if contributions.senders.len() != count as usize {
        return everyone;
    }
    let local = match temp.piece_digests(size).await {
        Ok(local) => local,
        Err(e) => {
            tracing::warn!(%digest, error = %e, "cannot hash the pieces of the failed copy");
            return everyone;
        }
    };
    let Some((reference, good)) = reference(client, contributions, digest, count).await else {
        tracing::warn!(%digest, "no verified copy to compare with; distrusting every sender");
        return everyone;
    };
    let bad: Vec<usize> = (0..count as usize).filter(|&p| local[p] != good[p]).collect();
    let mut liars = Vec::new();
    for &piece in &bad {
        let senders = &contributions.senders[piece];
        if let [only] = senders.as_slice() {
            liars.push(*only);
            continue;
        }
        // Several peers were asked for this piece (a hedge, a request that failed midway) and
        // any of them may have written some of it: ask each again and keep those whose copy
        // is wrong.
        let (start, end) = piece_range(size, piece as u32);
        for sender in senders {
            let Some(peer) = contributions.sources.iter().find(|p| &p.id == sender) else {
                continue;
            };
            let copy = client.piece_digest(peer, &digest, start, end).await;
            if copy.is_ok_and(|d| d != good[piece]) {
                liars.push(*sender);
            }
        }
    }
    liars.sort();
    liars.dedup();
    if liars.is_empty() {
        tracing::warn!(%digest, %reference, "the verified copy names no sender; distrusting every sender");
        return everyone;
    }
    tracing::warn!(%digest, %reference, pieces = ?bad, ?liars, "traced the wrong pieces of a failed copy to their senders");
    liars
}

/// Piece digests to trust: the owner's (it fetched the blob from the upstream and verified
/// it), else those two other peers that hold the blob verified agree on. A single peer other
/// than the owner could be the liar itself, and would then frame the honest senders.
async fn reference(
    client: &PeerClient,
    contributions: &Contributions,
    digest: Digest,
    count: u32,
) -> Option<(PeerId, Vec<Digest>)> {
    let mut seen: Vec<(PeerId, Vec<Digest>)> = Vec::new();
    for _ in 0..ROUNDS {
        for peer in &contributions.sources {
            if seen.iter().any(|(id, _)| id == &peer.id) {
                continue;
            }
            let Ok(Some(list)) = client.piece_digests(peer, &digest, count).await else {
                continue;
            };
            if contributions.owner.as_ref() == Some(&peer.id) {
                return Some((peer.id, list));
            }
            if let Some((other, _)) = seen.iter().find(|(_, l)| *l == list) {
                tracing::debug!(%digest, peer = %peer.id, %other, "two sources agree on the pieces");
                return Some((peer.id, list));
            }
            seen.push((peer.id, list));
        }
        if seen.len() == contributions.sources.len() {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    None
}
