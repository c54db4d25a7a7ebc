//! Where the bytes sent to a client came from: the store, a peer, or the upstream. The
//! metrics, the status report and the `pull done` log line all count by it.

use tokio::sync::watch;

use super::inflight::Progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Served {
    /// A store hit.
    Local,
    /// Fetched from other members (providers or the owner).
    Peer,
    /// Fetched from the upstream registry by this node.
    Upstream,
}

impl Served {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Peer => "peer",
            Self::Upstream => "upstream",
        }
    }
}

impl std::fmt::Display for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The source of a blob response. A response that follows a download learns its source only
/// as the download goes: it starts with the peers and may end at the upstream.
#[derive(Debug, Clone)]
pub enum Origin {
    Stored,
    Download(watch::Receiver<Progress>),
}

impl Origin {
    /// The source as far as it is known now; ask again when the body is sent.
    pub fn source(&self) -> Served {
        match self {
            Self::Stored => Served::Local,
            Self::Download(progress) => progress.borrow().source,
        }
    }

    /// Whether this node lacked the blob when the request came.
    pub fn is_miss(&self) -> bool {
        matches!(self, Self::Download(_))
    }
}
