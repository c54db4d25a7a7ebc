//! Content store: blob files named by digest, plus a crash-safe index of their metadata.

use std::path::PathBuf;

/// Where the store keeps its files and how large it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Directory holding `blobs/`, `tmp/` and `index.redb`.
    pub root: PathBuf,
    /// Total blob bytes above which least recently used blobs are evicted; `None` = no cap.
    pub max_size: Option<u64>,
}
