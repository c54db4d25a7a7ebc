//! The simulation's clock: a queue of events ordered by when they happen.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use shoal_protocol::peer::PieceStatus;

use super::super::SourceId;
use super::net::FlowId;

/// Nanoseconds since the simulation began.
pub(super) type Time = u64;

pub(super) enum Event {
    /// A client asks the node for the blob: the miss begins with a DHT lookup.
    Miss(usize),
    /// The answer of a DHT provider lookup reaches the node.
    Providers {
        node: usize,
        first: bool,
    },
    /// The owner accepted the node's `FetchBlob`.
    OwnerAccepted(usize),
    /// The node's provider record reaches the DHT.
    Announced(usize),
    /// A status probe (`HEAD`) answered.
    Status {
        node: usize,
        source: SourceId,
        status: PieceStatus,
        /// The nodes the source named with it.
        referred: Vec<usize>,
    },
    /// A piece request reaches its source.
    Arrive(u64),
    /// The source's refusal (`503`) reaches the requester.
    Refused(u64),
    /// The last byte of a piece reaches the requester.
    Delivered(u64),
    /// A transfer sent its last byte, unless its rate changed since.
    Sent {
        flow: FlowId,
        version: u64,
    },
    /// The driver's periodic status refresh and provider lookup.
    StatusRound(usize),
    ProviderRound(usize),
    /// The driver's loop wakes up with no answer: a backoff ended, a piece may be hedged.
    Wake(usize),
    /// A node that gave up on its peers finished its fetch from the upstream.
    UpstreamDone(usize),
}

struct Entry {
    at: Time,
    seq: u64,
    event: Event,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    // Earliest first in a max-heap; events at the same time in the order they were queued.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
pub(super) struct Queue {
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// Events handled so far.
    pub(super) handled: u64,
}

impl Queue {
    pub(super) fn push(&mut self, at: Time, event: Event) {
        self.seq += 1;
        self.heap.push(Entry { at, seq: self.seq, event });
    }

    pub(super) fn pop(&mut self) -> Option<(Time, Event)> {
        let entry = self.heap.pop()?;
        self.handled += 1;
        Some((entry.at, entry.event))
    }
}
