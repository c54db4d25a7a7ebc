//! Which piece requests a node takes: the node's own rule, or a variant to measure it by.

use std::collections::HashMap;
use std::time::Duration;

use shoal_protocol::Digest;

use super::events::Time;
use super::world::nanos;
use crate::fetch::uploads::{Slot, Uploads};

/// The serving side's rule for a piece request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// The node's `Uploads`: a piece is counted as sent (2 per piece per 2 s) before the slot
    /// check, so a request refused for want of a slot still uses up one of the piece's copies.
    Node,
    /// A variant: the same limits, but a copy is counted only when the piece is sent.
    CountSent,
    /// A variant: upload slots only, no limit on copies of a piece.
    SlotsOnly,
}

/// `uploads.rs`'s `COPIES` and `COPY_WINDOW`, for the variants (they are private there).
const COPIES: u32 = 2;
const COPY_WINDOW: Duration = Duration::from_secs(2);

pub(super) struct Server {
    pub uploads: Uploads,
    /// For [`Serving::CountSent`]: per piece, copies sent since when.
    sent: HashMap<u32, (u32, Time)>,
}

impl Server {
    pub(super) fn new(slots: usize) -> Self {
        Self { uploads: Uploads::new(slots), sent: HashMap::new() }
    }

    /// A slot to send `piece` (which starts at byte `start`) now, or `None` for a `503`.
    pub(super) fn acquire(
        &mut self,
        serving: Serving,
        digest: &Digest,
        (piece, start): (u32, u64),
        now: (Time, std::time::Instant),
    ) -> Option<Slot> {
        match serving {
            Serving::Node => self.uploads.acquire(digest, Some(start), now.1),
            Serving::SlotsOnly => self.uploads.acquire(digest, None, now.1),
            Serving::CountSent => {
                let entry = self.sent.entry(piece).or_insert((0, now.0));
                if now.0 - entry.1 >= nanos(COPY_WINDOW) {
                    *entry = (0, now.0);
                }
                if entry.0 >= COPIES {
                    return None;
                }
                let slot = self.uploads.acquire(digest, None, now.1)?;
                entry.0 += 1;
                Some(slot)
            }
        }
    }
}
