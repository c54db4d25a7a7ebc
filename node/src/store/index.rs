//! The redb index behind a handle that outlives redb's "previous I/O error" state.
//!
//! redb latches the first failed I/O of a `Database`: every later read and write of it fails
//! with `PreviousIo` until it is closed and opened again. One `ENOSPC` during a commit would
//! otherwise keep the index out of service until the node restarts, even after space is freed.
//! So every index operation runs through [`Index::run`]: a failure that redb latches takes the
//! index out of service, later operations fail at once with [`StoreError::IndexUnavailable`],
//! and the next write or health check once the disk looks able to take writes again closes the
//! database and opens it again ([`Index::reopen_if_due`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::Database;
use shoal_protocol::Digest;
use tracing::{debug, info, warn};

use super::layout::Paths;
use super::{StoreError, open, space};

/// An index out of service is tried again after this pause even if the disk gained no room:
/// the failure may not have been a full disk, or room may have come back another way (quota).
const REOPEN_PAUSE: Duration = Duration::from_secs(5);

pub(crate) struct Index {
    path: PathBuf,
    /// `None` between closing a failed database and opening it again. An operation holds the
    /// read lock for its whole transaction (they are short and never await); reopening takes the
    /// write lock, so it waits for them and none sees the database change under it.
    db: RwLock<Option<Database>>,
    /// Set while out of service: the check every operation makes before it starts.
    out: AtomicBool,
    /// Counts reopenings, so that a failure on the old database cannot take the new one out.
    generation: AtomicU64,
    outage: Mutex<Option<Outage>>,
}

struct Outage {
    disk_full: bool,
    since: Instant,
    last_try: Instant,
    /// Free bytes on the index's file system at the failure or the last try to reopen.
    free_then: Option<u64>,
}

impl Index {
    pub fn new(path: PathBuf, db: Database) -> Self {
        Index {
            path,
            db: RwLock::new(Some(db)),
            out: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            outage: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one index operation. While the index is out of service it fails at once; a failure
    /// that redb latches takes the index out of service.
    pub fn run<T>(
        &self,
        op: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.is_out() {
            return Err(self.unavailable());
        }
        let ran = {
            let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
            db.as_ref().map(|db| (op(db), self.generation.load(Ordering::Acquire)))
        };
        // Only now, with the read lock released, is the outage lock taken: a reopen holds the
        // outage lock while it waits for the write lock.
        let Some((result, generation)) = ran else { return Err(self.unavailable()) };
        if let Err(e) = &result
            && e.latches_index()
        {
            self.take_out_of_service(generation, e);
        }
        result
    }

    pub fn is_out(&self) -> bool {
        self.out.load(Ordering::Acquire)
    }

    /// The error every operation gets while the index is out of service.
    pub fn unavailable(&self) -> StoreError {
        let disk_full = self.outage().as_ref().is_some_and(|o| o.disk_full);
        StoreError::IndexUnavailable { path: self.path.clone(), disk_full }
    }

    fn take_out_of_service(&self, generation: u64, cause: &StoreError) {
        let mut outage = self.outage();
        if outage.is_some() || self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let now = Instant::now();
        *outage = Some(Outage {
            disk_full: cause.is_disk_full(),
            since: now,
            last_try: now,
            free_then: space::disk(&self.path).ok().map(|d| d.free),
        });
        self.out.store(true, Ordering::Release);
        warn!(index = %self.path.display(), error = %cause,
            "store index out of service after a failed write; it is reopened once the disk takes writes again");
    }

    /// Closes and reopens an index that is out of service, if a try is due: the disk gained room
    /// since the last try, or [`REOPEN_PAUSE`] has passed. `files` gives the blobs the store
    /// holds, which the reopened index is reconciled with (rows written or dropped while it was
    /// out are put right). Returns whether the index is in service. Blocking.
    pub fn reopen_if_due(
        &self,
        paths: &Paths,
        files: impl FnOnce() -> HashMap<Digest, u64>,
    ) -> bool {
        let mut outage = self.outage();
        let Some(o) = outage.as_mut() else { return true };
        let free = space::disk(&self.path).ok().map(|d| d.free);
        let gained_room = match (free, o.free_then) {
            (Some(now), Some(then)) => now >= then.saturating_add(space::INDEX_HEADROOM),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !gained_room && o.last_try.elapsed() < REOPEN_PAUSE {
            return false;
        }
        o.last_try = Instant::now();
        o.free_then = free;

        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(failed) = db.take() {
            // A failed database cannot write its clean-shutdown mark; the next open repairs it.
            if let Err(e) = failed.close() {
                debug!(error = %e, "closing the failed store index");
            }
        }
        match open::open_index_with(paths, &files()) {
            Ok((reopened, _)) => {
                *db = Some(reopened);
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.out.store(false, Ordering::Release);
                info!(index = %self.path.display(), out_of_service = ?o.since.elapsed(),
                    "store index reopened; it takes writes again");
                *outage = None;
                true
            }
            Err(e) => {
                warn!(index = %self.path.display(), error = %e, "store index cannot be reopened yet");
                false
            }
        }
    }

    fn outage(&self) -> MutexGuard<'_, Option<Outage>> {
        self.outage.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
