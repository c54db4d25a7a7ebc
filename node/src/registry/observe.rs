//! What every request leaves behind: its count and time to the response head by endpoint kind
//! and status class; for each client `GET` of a manifest or blob, one `pull done` log line
//! when it ends and its bytes counted by source; for a failure, an entry in the recent errors
//! that `shoal status` shows. Each `pull done` also goes to the node's [`PullFeed`], for a
//! program that watches its nodes in-process (`shoal demo`).
//!
//! Nothing secret is logged: no header, no query string (containerd's `?ns=` is the only one a
//! client sends, and the repository already names the registry).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::route::Endpoint;
use crate::fetch::{BlobBody, FetchError, Origin, Served, Target};
use crate::metrics::{EndpointKind, Metrics, RepositoryLabels, RequestLabels};
use crate::pull_feed::{PullEvent, PullFeed, PullKind};
use crate::status::RecentErrors;

/// A client's `GET` of a manifest or a blob.
#[derive(Debug, Clone)]
pub(super) struct Pull {
    kind: PullKind,
    /// `registry/repository`.
    repository: String,
    registry: String,
    repo: String,
    /// The tag or digest asked for.
    reference: String,
}

impl Pull {
    fn manifest(target: &Target, reference: &impl ToString) -> Self {
        Self::new(PullKind::Manifest, target, reference.to_string())
    }

    fn blob(target: &Target, digest: &impl ToString) -> Self {
        Self::new(PullKind::Blob, target, digest.to_string())
    }

    fn new(kind: PullKind, target: &Target, reference: String) -> Self {
        Self {
            kind,
            repository: format!("{}/{}", target.registry, target.repo),
            registry: target.registry.clone(),
            repo: target.repo.to_string(),
            reference,
        }
    }

    fn describe(&self) -> String {
        let sep = if self.reference.contains(':') { '@' } else { ':' };
        format!("GET {} {}{sep}{}", self.kind.as_str(), self.repository, self.reference)
    }
}

/// One request, from its arrival to its response head.
pub(super) struct Seen {
    started: Instant,
    kind: EndpointKind,
    pull: Option<Pull>,
    /// `registry/repository` of a request that names one.
    repository: Option<String>,
    pulls: PullFeed,
}

impl Seen {
    pub fn new(pulls: &PullFeed) -> Self {
        Self {
            started: Instant::now(),
            kind: EndpointKind::Other,
            pull: None,
            repository: None,
            pulls: pulls.clone(),
        }
    }

    /// Notes what the request asks for, once it is parsed.
    pub fn note(&mut self, endpoint: &Endpoint, method: &Method) {
        self.kind = match endpoint {
            Endpoint::Manifest { .. } => EndpointKind::Manifest,
            Endpoint::Blob { .. } => EndpointKind::Blob,
            Endpoint::Tags { .. } => EndpointKind::Tags,
            Endpoint::UploadStart { .. } | Endpoint::Upload { .. } => EndpointKind::Upload,
            Endpoint::Referrers { .. } => EndpointKind::Referrers,
            Endpoint::PeerBlob { .. }
            | Endpoint::PeerPieces { .. }
            | Endpoint::PeerAlias { .. } => EndpointKind::Peer,
            _ => EndpointKind::Other,
        };
        if let Endpoint::Manifest { target, .. }
        | Endpoint::Blob { target, .. }
        | Endpoint::Tags { target, .. }
        | Endpoint::UploadStart { target, .. }
        | Endpoint::Upload { target, .. }
        | Endpoint::Referrers { target, .. } = endpoint
        {
            self.repository = Some(format!("{}/{}", target.registry, target.repo));
        }
        if method == Method::GET {
            self.pull = match endpoint {
                Endpoint::Manifest { target, reference } => Some(Pull::manifest(target, reference)),
                Endpoint::Blob { target, digest } => Some(Pull::blob(target, digest)),
                _ => None,
            };
        }
    }

    /// The bookkeeping a pull's body does when it ends.
    pub fn tally(&self, metrics: &Arc<Metrics>, errors: &Arc<RecentErrors>) -> Option<Tally> {
        Some(Tally {
            pull: self.pull.clone()?,
            started: self.started,
            metrics: metrics.clone(),
            errors: errors.clone(),
            pulls: self.pulls.clone(),
        })
    }

    /// Counts the request once its head is ready; a failed pull is logged here, with what the
    /// client was told.
    pub fn finish(
        self,
        metrics: &Metrics,
        errors: &RecentErrors,
        status: StatusCode,
        failure: Option<&str>,
    ) {
        let labels = RequestLabels::new(self.kind, status);
        metrics.requests.get_or_create(&labels).inc();
        metrics
            .request_seconds
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
        let Some(message) = failure else { return };
        if let Some(pull) = &self.pull {
            log_pull(&self.pulls, pull, 0, None, self.started, status, Some(message));
        }
        // Clients' pulls only: probes and peers have their own places (the readiness answer,
        // the peer-auth log) and would push the pulls' failures out of the ring.
        let pulling =
            matches!(self.kind, EndpointKind::Manifest | EndpointKind::Blob | EndpointKind::Tags);
        if pulling && (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
            let what = match (&self.pull, &self.repository) {
                (Some(pull), _) => pull.describe(),
                (None, Some(repository)) => format!("{} {repository}", self.kind.as_str()),
                (None, None) => self.kind.as_str().to_owned(),
            };
            errors.record(what, status.as_u16(), message.to_owned());
        }
    }
}

/// Logs and counts one successful pull when its bytes are all sent (or the client left).
pub(super) struct Tally {
    pull: Pull,
    started: Instant,
    metrics: Arc<Metrics>,
    errors: Arc<RecentErrors>,
    pulls: PullFeed,
}

impl Tally {
    /// A manifest: its bytes go out with the head.
    pub fn manifest_sent(self, source: Served, bytes: u64) {
        self.done(source, bytes, StatusCode::OK, None);
    }

    /// A `HEAD`: nothing follows the head.
    pub fn head_answered(self, source: Served) {
        self.done(source, 0, StatusCode::OK, None);
    }

    /// A blob body of `len` bytes that does the bookkeeping as it is sent.
    pub fn follow(self, body: BlobBody, origin: Origin, status: StatusCode, len: u64) -> BlobBody {
        Tallied { body, origin, status, len, bytes: 0, tally: Some(self) }.boxed()
    }

    /// `failure`: what went wrong, and whether it belongs in the recent errors (a client that
    /// leaves does not).
    fn done(self, source: Served, bytes: u64, status: StatusCode, failure: Option<(String, bool)>) {
        let pull = &self.pull;
        self.metrics.served(source, bytes);
        if pull.kind == PullKind::Blob {
            let labels = RepositoryLabels {
                repository: self.metrics.repository_label(&pull.registry, &pull.repo),
                source: source.as_str(),
            };
            self.metrics.repository_requests.get_or_create(&labels).inc();
        }
        let error = failure.as_ref().map(|(error, _)| error.as_str());
        log_pull(&self.pulls, pull, bytes, Some(source), self.started, status, error);
        if let Some((error, true)) = failure {
            self.errors.record(pull.describe(), status.as_u16(), error);
        }
    }
}

/// The one `pull done` line (and feed event) per client pull; `source` is absent when the pull
/// failed before any source answered.
fn log_pull(
    feed: &PullFeed,
    pull: &Pull,
    bytes: u64,
    source: Option<Served>,
    started: Instant,
    status: StatusCode,
    error: Option<&str>,
) {
    let duration = started.elapsed();
    tracing::info!(
        kind = pull.kind.as_str(),
        repository = %pull.repository,
        reference = %pull.reference,
        bytes,
        source = source.map(tracing::field::display),
        duration_ms = duration.as_millis() as u64,
        status = status.as_u16(),
        error = error.map(tracing::field::display),
        "pull done"
    );
    feed.publish(|| PullEvent {
        kind: pull.kind,
        repository: pull.repository.clone(),
        reference: pull.reference.clone(),
        bytes,
        source,
        status: status.as_u16(),
        duration,
        error: error.map(str::to_owned),
    });
}

struct Tallied {
    body: BlobBody,
    origin: Origin,
    status: StatusCode,
    /// The response's `Content-Length`.
    len: u64,
    bytes: u64,
    tally: Option<Tally>,
}

impl Tallied {
    fn end(&mut self, failure: Option<(String, bool)>) {
        if let Some(tally) = self.tally.take() {
            tally.done(self.origin.source(), self.bytes, self.status, failure);
        }
    }
}

impl Stream for Tallied {
    type Item = Result<Bytes, FetchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = ready!(this.body.poll_next_unpin(cx));
        match &item {
            Some(Ok(chunk)) => {
                if this.bytes == 0
                    && this.origin.is_miss()
                    && let Some(tally) = &this.tally
                {
                    let waited = tally.started.elapsed().as_secs_f64();
                    tally.metrics.miss_first_byte_seconds.observe(waited);
                }
                this.bytes += chunk.len() as u64;
            }
            Some(Err(e)) => this.end(Some((format!("cut short: {e}"), true))),
            None => this.end(None),
        }
        Poll::Ready(item)
    }
}

impl Drop for Tallied {
    fn drop(&mut self) {
        if self.tally.is_none() {
            return;
        }
        // hyper stops reading a body once it has sent `Content-Length` bytes, so a complete
        // pull is often dropped before its end is read. Short of that length, the client went
        // away (or the connection broke).
        if self.bytes >= self.len {
            self.end(None);
        } else {
            self.end(Some(("the client closed the connection before the end".to_owned(), false)));
        }
    }
}
