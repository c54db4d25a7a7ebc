//! Finished client pulls as typed events, for a program that runs nodes in its own process and
//! wants to watch them (`shoal demo`): the facts of the `pull done` log line, without parsing
//! a log.
//!
//! A node always has a feed; with nobody subscribed, publishing costs one atomic read and
//! builds no event.

use std::time::Duration;

use tokio::sync::broadcast;

use crate::fetch::Served;

/// Events a slow subscriber may fall behind by before it misses some (it is told how many).
const CAPACITY: usize = 1024;

/// What a client pulled: a manifest or a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullKind {
    Manifest,
    Blob,
}

impl PullKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Blob => "blob",
        }
    }
}

/// One client `GET` of a manifest or blob that ended, as the `pull done` line reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullEvent {
    pub kind: PullKind,
    /// `registry/repository`, e.g. `docker.io/library/alpine`.
    pub repository: String,
    /// The tag or digest asked for.
    pub reference: String,
    /// Bytes sent to the client.
    pub bytes: u64,
    /// Where the node got the bytes; `None` when the pull failed before any source answered.
    pub source: Option<Served>,
    /// The status the client was sent.
    pub status: u16,
    pub duration: Duration,
    /// What went wrong, as the client was told.
    pub error: Option<String>,
}

/// The sending side, shared by every request of one node.
#[derive(Debug, Clone)]
pub struct PullFeed {
    sender: broadcast::Sender<PullEvent>,
}

impl Default for PullFeed {
    fn default() -> Self {
        Self { sender: broadcast::channel(CAPACITY).0 }
    }
}

impl PullFeed {
    /// Every pull that ends from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PullEvent> {
        self.sender.subscribe()
    }

    /// Sends the event `make` builds, if anyone listens.
    pub(crate) fn publish(&self, make: impl FnOnce() -> PullEvent) {
        if self.sender.receiver_count() > 0 {
            // Only fails when the last subscriber left in between: nobody to tell.
            let _ = self.sender.send(make());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reference: &str) -> PullEvent {
        PullEvent {
            kind: PullKind::Blob,
            repository: "docker.io/library/alpine".to_owned(),
            reference: reference.to_owned(),
            bytes: 3,
            source: Some(Served::Peer),
            status: 200,
            duration: Duration::from_millis(5),
            error: None,
        }
    }

    #[test]
    fn nothing_is_built_without_a_subscriber() {
        let feed = PullFeed::default();
        feed.publish(|| panic!("built an event nobody reads"));
    }

    #[test]
    fn subscribers_see_the_pulls_that_end_after_they_subscribe() {
        let feed = PullFeed::default();
        let mut first = feed.subscribe();
        feed.publish(|| event("a"));
        let mut second = feed.subscribe();
        feed.publish(|| event("b"));
        assert_eq!(first.try_recv().unwrap(), event("a"));
        assert_eq!(first.try_recv().unwrap(), event("b"));
        assert_eq!(second.try_recv().unwrap(), event("b"));
        assert!(second.try_recv().is_err());
    }
}
