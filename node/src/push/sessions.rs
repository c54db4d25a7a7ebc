//! Open blob uploads: one session per `POST .../blobs/uploads/`, until its closing `PUT`, its
//! `DELETE`, or its expiry.
//!
//! A session lives in memory only: after a restart the client is told the upload is unknown
//! and starts again, as the spec allows, and the store removes its file at start. Requests on
//! one session are served one at a time (its lock), so two `PATCH`es cannot interleave their
//! bytes. A session nobody touched for the idle timeout is dropped with its file, so an
//! abandoned push does not hold disk space for ever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;

use super::PushError;
use crate::fetch::Target;
use crate::store::UploadFile;

/// Uploads open at once; more are refused until some finish or expire.
pub const MAX_SESSIONS: usize = 1024;

/// One upload in progress.
pub struct Session {
    /// `None` once a closing `PUT` took it; a request that waited on the lock meanwhile finds
    /// the upload gone.
    file: Option<UploadFile>,
    touched: Instant,
}

impl Session {
    pub fn touch(&mut self) {
        self.touched = Instant::now();
    }

    pub fn file(&mut self, id: &str) -> Result<&mut UploadFile, PushError> {
        self.file.as_mut().ok_or_else(|| unknown(id))
    }

    pub fn take(&mut self, id: &str) -> Result<UploadFile, PushError> {
        self.file.take().ok_or_else(|| unknown(id))
    }
}

fn unknown(id: &str) -> PushError {
    PushError::UploadUnknown(id.chars().take(64).collect())
}

/// The open uploads by id, each with the name it was started for, kept outside its lock so
/// that the check needs no wait.
type Open = HashMap<String, (Target, Arc<AsyncMutex<Session>>)>;

#[derive(Default)]
pub struct Sessions {
    open: Mutex<Open>,
}

impl Sessions {
    /// Opens a session for `file` under a fresh unguessable id.
    pub fn open(&self, target: Target, file: UploadFile) -> Result<String, PushError> {
        let mut open = self.lock();
        if open.len() >= MAX_SESSIONS {
            return Err(PushError::TooManyUploads(open.len()));
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let session = Session { file: Some(file), touched: Instant::now() };
        open.insert(id.clone(), (target, Arc::new(AsyncMutex::new(session))));
        Ok(id)
    }

    /// The session `id`, if it is open and belongs to `target` (an upload id is only good
    /// under the name it was started for).
    pub fn get(&self, id: &str, target: &Target) -> Result<Arc<AsyncMutex<Session>>, PushError> {
        match self.lock().get(id) {
            Some((started_for, session)) if started_for == target => Ok(Arc::clone(session)),
            _ => Err(unknown(id)),
        }
    }

    /// Ends the session `id`; its file goes when the last holder lets go.
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Drops the sessions idle for longer than `idle`; returns how many. A session busy with a
    /// request is not idle.
    pub fn expire(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut open = self.lock();
        let before = open.len();
        open.retain(|_, (_, session)| match session.try_lock() {
            Ok(s) => now.duration_since(s.touched) < idle,
            Err(_) => true,
        });
        before - open.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Expires idle sessions every `idle / 4` (at least each second) while `sessions` lives.
pub fn spawn_expiry(sessions: Weak<Sessions>, idle: Duration) {
    let every = (idle / 4).max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(sessions) = sessions.upgrade() else { return };
            let expired = sessions.expire(idle);
            if expired > 0 {
                tracing::info!(
                    expired,
                    idle_secs = idle.as_secs(),
                    "removed abandoned uploads and their files"
                );
            }
        }
    });
}
