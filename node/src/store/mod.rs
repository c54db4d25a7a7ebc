//! Content store: blob files named by digest, plus a crash-safe index of their metadata.
//!
//! Everything immutable — layers, configs, manifests — is a blob named by its sha256 and
//! written with the durable discipline of `temp.rs`: a blob file is only ever visible complete
//! and verified. Tags live in the same redb index (`tags.rs`), and so do the repositories each
//! digest is known to be in (`seen.rs`), pushed tags and referrers (`tags.rs`,
//! `referrers.rs`), an upstream's last referrers answers (`upstream_referrers.rs`), and pins
//! that keep pushed content from eviction (`pins.rs`). Sizes and access times are
//! mirrored in memory (`state.rs`) so that hits and eviction decisions never wait on a commit.
//! The disk cannot wedge it: a download claims room before it answers (`space.rs`), and an
//! index taken out of service by a failed write is reopened once the disk takes writes again
//! (`index.rs`).

mod aliases;
mod blob;
#[cfg(test)]
mod disk_full_tests;
mod error;
mod evict;
mod image_pins;
mod index;
mod layout;
mod lifecycle;
mod maintenance;
mod open;
mod pieces;
mod pins;
mod read;
mod referrers;
mod seen;
mod space;
mod state;
mod tables;
mod tags;
mod temp;
#[cfg(test)]
mod test_util;
mod upload;
mod upstream_referrers;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, ReadableDatabase};
use shoal_protocol::Digest;
use tracing::warn;

pub(crate) use blob::BlobReader;
pub(crate) use error::StoreError;
pub use error::human_size;
pub(crate) use image_pins::{ImagePin, PinState};
pub(crate) use lifecycle::LifecycleRule;
pub(crate) use read::{read_at, read_into};
pub(crate) use referrers::Referrer;
pub(crate) use space::Writable;
pub(crate) use tags::TagRecord;
pub(crate) use temp::TempBlob;
pub(crate) use upload::UploadFile;
pub(crate) use upstream_referrers::UpstreamReferrers;

use crate::clock::Clock;
use index::Index;
use layout::Paths;
use state::State;
use tables::BLOBS;

/// Where the store keeps its files and how large it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Directory holding `blobs/`, `tmp/` and `index.redb`.
    pub root: PathBuf,
    /// Total blob bytes above which least recently used blobs are evicted; `None` = no cap.
    pub max_size: Option<u64>,
}

/// What the store holds, for the metrics and the status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub bytes: u64,
    pub blobs: u64,
    pub max_size: Option<u64>,
    /// Blobs evicted since the node started (lifecycle removals included).
    pub evictions: u64,
    /// Blobs lifecycle rules removed since the node started, unread too long or over a cap.
    pub lifecycle_expired: u64,
    pub lifecycle_over_cap: u64,
}

/// What the store knows about a committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    pub size: u64,
    /// The media type it was stored with, when the writer knew it (manifests do).
    pub media_type: Option<String>,
}

/// A handle to the content store; cheap to clone, all clones share one store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    paths: Paths,
    index: Index,
    max_size: Option<u64>,
    state: Mutex<State>,
    temp_seq: AtomicU64,
    /// Blobs evicted since the node started, for the metrics.
    evictions: AtomicU64,
    /// Of them, removed by lifecycle rules, by reason.
    lifecycle_expired: AtomicU64,
    lifecycle_over_cap: AtomicU64,
    /// Digests that left the store (evicted or quarantined), for whoever announced them.
    removals: tokio::sync::broadcast::Sender<Digest>,
}

/// How many removals a slow listener may fall behind before it misses some.
const REMOVALS_QUEUE: usize = 4096;

impl Inner {
    fn announce_removed(&self, digests: &[Digest]) {
        for digest in digests {
            // No listener is fine: nobody announced the blob.
            let _ = self.removals.send(*digest);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters, not half-written files; carry on.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An index read; fails at once while the index is out of service.
    fn read_index<T>(
        &self,
        op: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.index.run(op)
    }

    /// An index write. Blocking: an index out of service is reopened first when a try is due.
    fn write_index<T>(
        &self,
        op: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.index.is_out() {
            self.reopen_index();
        }
        self.index.run(op)
    }

    /// Reopens the index if it is out of service and a try is due; true when it is in service.
    fn reopen_index(&self) -> bool {
        self.index.reopen_if_due(&self.paths, || self.state().sizes())
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state();
        f.debug_struct("Store")
            .field("root", &self.inner.paths.root)
            .field("blobs", &state.len())
            .field("total_size", &state.total())
            .field("max_size", &self.inner.max_size)
            .finish()
    }
}

impl Store {
    /// Opens the store at `config.root`, creating it if needed.
    ///
    /// Creates `blobs/sha256/` and `tmp/`, opens (or creates) `index.redb`, removes stale temp
    /// files, and reconciles the index with the blob files; a missing or corrupt index is rebuilt
    /// from the files. Evicts down to `max_size` if the store is over it. Blocking: call it from
    /// `spawn_blocking` or before the runtime serves.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        Self::open_on(config, Clock::system())
    }

    /// [`Store::open`], keeping access times on `clock`.
    pub fn open_on(config: StoreConfig, clock: Clock) -> Result<Store, StoreError> {
        let paths = Paths::new(config.root);
        paths.create_dirs()?;
        // The index is opened first: redb's file lock keeps a second node off this directory
        // before it can delete the first one's temp files.
        let (db, mut state) = open::open_index(&paths)?;
        state.clock = clock;
        layout::remove_stale_temps(&paths)?;
        let inner = Arc::new(Inner {
            index: Index::new(paths.index.clone(), db),
            paths,
            max_size: config.max_size,
            state: Mutex::new(state),
            temp_seq: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            lifecycle_expired: AtomicU64::new(0),
            lifecycle_over_cap: AtomicU64::new(0),
            removals: tokio::sync::broadcast::channel(REMOVALS_QUEUE).0,
        });
        evict::evict_blocking(&inner)?;
        Ok(Store { inner })
    }

    /// True when a committed blob with this digest is stored.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.inner.state().get(digest).is_some()
    }

    /// Size and media type of a committed blob, without recording an access.
    pub fn blob_meta(&self, digest: &Digest) -> Option<BlobMeta> {
        let size = self.inner.state().get(digest)?.size;
        let media_type = match self.read_blob_row(digest) {
            Ok(row) => row.and_then(|r| r.media_type),
            Err(e) => {
                warn!(%digest, error = %e, "could not read blob media type from the index");
                None
            }
        };
        Some(BlobMeta { size, media_type })
    }

    /// Every committed blob, for re-announcing them after a restart.
    pub fn digests(&self) -> Vec<Digest> {
        self.inner.state().digests()
    }

    /// Digests that leave the store from now on (evicted or quarantined as corrupt).
    pub fn subscribe_removals(&self) -> tokio::sync::broadcast::Receiver<Digest> {
        self.inner.removals.subscribe()
    }

    /// Bytes of all committed blobs.
    pub fn total_size(&self) -> u64 {
        self.inner.state().total()
    }

    /// Size, blob count, cap and evictions, in one look at the state.
    pub fn stats(&self) -> StoreStats {
        let state = self.inner.state();
        StoreStats {
            bytes: state.total(),
            blobs: state.len() as u64,
            max_size: self.inner.max_size,
            evictions: self.inner.evictions.load(std::sync::atomic::Ordering::Relaxed),
            lifecycle_expired: self
                .inner
                .lifecycle_expired
                .load(std::sync::atomic::Ordering::Relaxed),
            lifecycle_over_cap: self
                .inner
                .lifecycle_over_cap
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The configured size cap.
    pub fn max_size(&self) -> Option<u64> {
        self.inner.max_size
    }

    fn read_blob_row(&self, digest: &Digest) -> Result<Option<tables::BlobRow>, StoreError> {
        let index = self.inner.index.path();
        self.inner.read_index(|db| {
            let txn = db.begin_read().map_err(|e| StoreError::index("begin read", index, e))?;
            let table = txn
                .open_table(BLOBS)
                .map_err(|e| StoreError::index("open blobs table", index, e))?;
            let value = table
                .get(digest.as_bytes())
                .map_err(|e| StoreError::index("read blob row", index, e))?;
            Ok(value.and_then(|v| tables::decode(v.value())))
        })
    }
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T, F>(op: &'static str, f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|source| StoreError::TaskFailed { op, source })?
}
