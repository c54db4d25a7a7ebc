//! Upload slots: how many pieces of one blob this node sends to peers at once.
//!
//! A node's uplink is shared by everything it sends; a source that takes every request serves
//! each asker slower and becomes every node's only source (the owner, first of all). Past its
//! slots a node answers "busy" with what it holds, and the asker takes the piece from another
//! node that has it — usually one that got it from here a moment ago.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use shoal_protocol::Digest;

use super::BlobBody;

pub(crate) struct Uploads {
    slots: usize,
    running: Arc<Mutex<HashMap<Digest, usize>>>,
}

/// One upload slot, given back when dropped (with the response body that holds it).
pub(crate) struct Slot {
    digest: Digest,
    running: Arc<Mutex<HashMap<Digest, usize>>>,
}

impl Uploads {
    pub(crate) fn new(slots: usize) -> Self {
        Self { slots: slots.max(1), running: Arc::default() }
    }

    /// A slot for an upload of `digest`, or `None` when all are taken.
    pub(crate) fn acquire(&self, digest: &Digest) -> Option<Slot> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let count = running.entry(*digest).or_default();
        if *count >= self.slots {
            return None;
        }
        *count += 1;
        Some(Slot { digest: *digest, running: self.running.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = running.get_mut(&self.digest) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.digest);
            }
        }
    }
}

/// The body, holding the slot until it is sent or dropped.
pub(crate) fn hold(body: BlobBody, slot: Option<Slot>) -> BlobBody {
    match slot {
        None => body,
        Some(slot) => body
            .map(move |chunk| {
                let _held = &slot;
                chunk
            })
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_digest_and_given_back() {
        let uploads = Uploads::new(2);
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let first = uploads.acquire(&a).expect("first");
        let second = uploads.acquire(&a).expect("second");
        assert!(uploads.acquire(&a).is_none(), "two slots per digest");
        assert!(uploads.acquire(&b).is_some(), "another digest has its own");
        drop(first);
        assert!(uploads.acquire(&a).is_some());
        drop(second);
        assert!(uploads.running.lock().unwrap().get(&a).is_none_or(|&n| n <= 1));
    }
}
