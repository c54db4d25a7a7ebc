//! The status report's shape: what `GET /_shoal/status` answers and what `shoal status` reads,
//! defined once for both. Fields are only ever added, so an older CLI reads a newer node.

use serde::{Deserialize, Serialize};

use crate::fetch::Served;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// When the report was made, in seconds since the Unix epoch (error times are relative
    /// to it).
    pub generated_at: u64,
    /// The node that answered.
    pub node: NodeInfo,
    /// Every member the node knows, itself first. Empty for a node without a cluster key.
    pub members: Vec<Member>,
    pub store: StoreReport,
    pub served: ServedReport,
    pub downloads: Vec<Download>,
    /// The last failures of client requests, oldest first.
    pub errors: Vec<RecentError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub version: String,
    /// Its libp2p peer id; `None` without a cluster key (no control plane).
    pub peer_id: Option<String>,
    pub site: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub peer_id: String,
    pub site: Option<String>,
    /// The member's data plane (its registry API).
    pub address: String,
    /// Whether its data plane answered `/healthz` just now (the answering node: always).
    pub reachable: bool,
    pub version: String,
    /// This is the node that answered.
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreReport {
    pub bytes: u64,
    /// `--max-size`; `None` when the store has no cap.
    pub max_bytes: Option<u64>,
    pub blobs: u64,
    pub evictions: u64,
}

/// Blob and manifest bytes sent to clients since the node started, by source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedReport {
    pub local_bytes: u64,
    pub peer_bytes: u64,
    pub upstream_bytes: u64,
    /// Local bytes over all bytes served; `None` before anything was served.
    pub hit_ratio: Option<f64>,
    /// Bytes this node served without going upstream itself (local and peer): what the
    /// upstream would otherwise have sent.
    pub upstream_bytes_saved: u64,
}

impl ServedReport {
    pub fn new(local_bytes: u64, peer_bytes: u64, upstream_bytes: u64) -> Self {
        let total = local_bytes + peer_bytes + upstream_bytes;
        Self {
            local_bytes,
            peer_bytes,
            upstream_bytes,
            hit_ratio: (total > 0).then(|| local_bytes as f64 / total as f64),
            upstream_bytes_saved: local_bytes + peer_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Download {
    pub digest: String,
    /// Bytes verified in order from the first.
    pub bytes: u64,
    /// `None` until a source announced the size.
    pub size: Option<u64>,
    pub source: Served,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentError {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// What failed, e.g. `GET blob docker.io/library/alpine@sha256:…`.
    pub what: String,
    pub status: u16,
    /// The message the client got (never a path or a credential).
    pub message: String,
}
