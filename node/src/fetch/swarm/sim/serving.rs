//! Which piece requests a node takes: the node's own rule, or a variant to measure it by.

use shoal_protocol::Digest;

use super::super::Failure;
use crate::fetch::uploads::{CopyLimit, Refusal, Slot, Uploads};

/// The serving side's rule for a piece request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// The node's `Uploads`: its slots per digest (else `503`, the source is busy) and its copy
    /// limit (else `429`, that piece only): 2 copies of a piece at once or within 2 s of their
    /// end, 1 from the owner while it fetches the blob.
    Node,
    /// A variant: the same limits, but a refused piece is answered `503`, as if the whole
    /// source were busy (the node's rule before `429`).
    SpreadAsBusy,
    /// A variant: upload slots only, no limit on copies of a piece.
    SlotsOnly,
}

pub(super) struct Server {
    pub uploads: Uploads,
}

impl Server {
    pub(super) fn new(slots: usize, copy_limit: CopyLimit) -> Self {
        Self { uploads: Uploads::with_copy_limit(slots, copy_limit) }
    }

    /// A slot to send the piece that starts at byte `start` now, or the failure the asker's
    /// scheduler hears.
    pub(super) fn acquire(
        &mut self,
        serving: Serving,
        digest: &Digest,
        start: u64,
        now: std::time::Instant,
    ) -> Result<Slot, Failure> {
        let start = (serving != Serving::SlotsOnly).then_some(start);
        self.uploads.acquire(digest, start, now).map_err(|refusal| match (refusal, serving) {
            (Refusal::Spread, Serving::Node) => Failure::Spread,
            _ => Failure::Busy,
        })
    }
}
