//! One client connection: hyper serves it, and a watchdog closes it once it has had no request
//! in flight for the idle timeout, or at once when the server stops.
//!
//! "In flight" lasts until the response body is sent or dropped, not until the handler
//! returns: a blob streams for minutes after its handler is done, and closing its connection
//! as idle would cut the pull.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// After the watchdog asks a connection to close: time for an HTTP/2 client to read the
/// GOAWAY, or for a request already on its way to arrive, before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// While requests run, how often a stopping server looks again whether they are done.
const BUSY_RECHECK: Duration = Duration::from_millis(100);

/// A slot under the connection cap, and the open-connections gauge, for as long as it lives.
pub(super) struct Open {
    _slot: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Open {
    pub fn new(slot: OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Self {
        metrics.http_connections.inc();
        Self { _slot: slot, metrics }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.http_connections.dec();
    }
}

/// Serves one connection until the client closes it, it has been idle for `idle_timeout`, or
/// `stop` is cancelled and its requests are done.
pub(super) async fn serve<I>(
    io: I,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    idle_timeout: Duration,
    stop: CancellationToken,
    open: Open,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let inner = TowerToHyperService::new(router);
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let in_flight = tracker.begin();
        let response = inner.call(request);
        async move {
            let response = response.await?;
            Ok::<_, Infallible>(response.map(|body| Tracked { body, _in_flight: in_flight }))
        }
    });
    let mut conn = std::pin::pin!(builder.serve_connection(io, service));
    let mut stopping = false;
    loop {
        // Stopping, a connection is closed as soon as nothing runs on it.
        let threshold = if stopping { Duration::ZERO } else { idle_timeout };
        tokio::select! {
            result = conn.as_mut() => {
                match result {
                    Ok(()) => {}
                    Err(e) if super::send_timeout::is_send_timeout(e.as_ref()) => {
                        // Counted, not logged at info: a client can make these at will.
                        open.metrics.http_send_timeouts.inc();
                        tracing::debug!("a client took no response bytes for the send timeout; its connection is closed");
                    }
                    Err(e) => tracing::debug!(error = %e, "connection ended with an error"),
                }
                return;
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(activity.next_check(threshold)) => {
                if activity.idle_for(threshold) {
                    if !stopping {
                        conn.as_mut().graceful_shutdown();
                    }
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
                    return;
                }
            }
        }
    }
}

/// Requests in flight on one connection, and since when none has been.
struct Activity {
    state: Mutex<(usize, Instant)>,
}

impl Activity {
    fn new() -> Self {
        Self { state: Mutex::new((0, Instant::now())) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, Instant)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.lock().0 += 1;
        InFlight(self.clone())
    }

    /// When the connection may next have been idle for `threshold`.
    fn next_check(&self, threshold: Duration) -> Instant {
        let (running, since) = *self.lock();
        if running == 0 { since + threshold } else { Instant::now() + threshold.max(BUSY_RECHECK) }
    }

    fn idle_for(&self, threshold: Duration) -> bool {
        let (running, since) = *self.lock();
        running == 0 && since.elapsed() >= threshold
    }
}

/// One request, from the moment hyper hands it over until its response body is finished.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.0 -= 1;
        state.1 = Instant::now();
    }
}

/// A response body that keeps its request in flight while hyper sends it.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
