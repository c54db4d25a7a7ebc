//! The HTTP server in front of the registry API: accepts connections and serves each with hyper,
//! bounding what a client can hold — how long it may take to send a request's headers, how
//! long a connection may sit with no request, how many connections are open at once — and how
//! long a shutdown waits for requests still running.
//!
//! `axum::serve` exposes none of these. Without them an idle or slow client keeps its file
//! descriptor for as long as it likes, and a thousand of them leave the node unable to accept
//! anyone, with nothing in the log.

mod connection;
#[cfg(test)]
mod connection_tests;
mod fd_limit;
mod handshake;
mod send_timeout;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::tls::{ServerTls, TlsFiles};
use connection::Open;

/// At most one warning per this long about the same condition, with a count of the rest.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (out of descriptors, most likely), so that retrying does not
/// spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Limits of the HTTP server; each has a key under `[server]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// The longest a client may take to send a request's line and headers. hyper starts this
    /// clock whenever an HTTP/1.1 connection waits for a request, so it also closes keep-alive
    /// connections that sit idle this long.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2 ones, and ones
    /// that never send a byte, included).
    pub idle_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog until one closes. Lowered at
    /// start when the open-file limit cannot hold this many.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight before it closes their connections.
    pub shutdown_timeout: Duration,
    /// A connection whose client takes none of a response's bytes for this long is closed
    /// (`send_timeout.rs`).
    pub send_timeout: Duration,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Bytes that response bodies may hold in chunks read from blob files before they take
    /// smaller ones (`fetch/buffers.rs`).
    pub buffer_memory: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            shutdown_timeout: Duration::from_secs(20),
            send_timeout: Duration::from_secs(60),
            tls: None,
            buffer_memory: crate::fetch::BufferBudget::DEFAULT_LIMIT,
        }
    }
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` resolves, then gives
/// the connections still busy `shutdown_timeout` to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &ServerSettings,
    tls: Option<ServerTls>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let open_files = fd_limit::raise();
    let cap = fd_limit::connection_cap(settings.max_connections, open_files);
    if cap < settings.max_connections {
        tracing::warn!(
            max_connections = cap,
            configured = settings.max_connections,
            open_file_limit = open_files,
            "the open-file limit cannot hold the configured connections; fewer are accepted"
        );
    }
    let slots = Arc::new(Semaphore::new(cap));
    let builder = Arc::new(builder(settings));
    let stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    let mut full = Throttle::default();
    let mut accept_failures = Throttle::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot before `accept`: past the cap, clients wait in the kernel's backlog rather
        // than each holding one of this process's descriptors.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics.http_connections_queued.inc();
                if let Some(more) = full.ready(Instant::now()) {
                    tracing::warn!(
                        max_connections = cap,
                        more,
                        "connection limit reached; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                }
            }
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if let Some(more) = accept_failures.ready(Instant::now()) {
                        tracing::warn!(error = %e, more, "cannot accept a connection");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Blob bodies go out in large chunks; small responses should not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let stream = send_timeout::apply(stream, settings.send_timeout);
        let open = Open::new(slot, metrics.clone());
        let (router, builder, stop) = (router.clone(), builder.clone(), stop.clone());
        let idle_timeout = settings.idle_timeout;
        match &tls {
            None => connections.spawn(connection::serve(
                TokioIo::new(stream),
                router,
                builder,
                idle_timeout,
                stop,
                open,
            )),
            Some(tls) => {
                let acceptor = tls.acceptor().clone();
                let handshake_timeout = settings.header_read_timeout;
                connections.spawn(async move {
                    if let Some(stream) =
                        handshake::accept(stream, acceptor, handshake_timeout).await
                    {
                        let io = TokioIo::new(stream);
                        connection::serve(io, router, builder, idle_timeout, stop, open).await;
                    }
                })
            }
        };
        while connections.try_join_next().is_some() {}
    }

    drop(listener);
    stop.cancel();
    if !connections.is_empty() {
        tracing::info!(open = connections.len(), "waiting for open connections to finish");
    }
    let drained = tokio::time::timeout(settings.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), timeout = ?settings.shutdown_timeout, "connections still busy at the shutdown deadline; closing them");
        connections.shutdown().await;
    }
}

/// What hyper buffers per HTTP/1.1 connection, each way (its default is 408 KiB). The write
/// side is what a client that reads slowly keeps queued: with 256 clients pulling at once, the
/// default let the queues hold more than the buffer budget (`fetch/buffers.rs`). Request heads
/// past it are refused by hyper itself; ours are capped well below (32 KiB, `registry/mod.rs`).
const CONNECTION_BUFFER: usize = 128 * 1024;

/// hyper's connection builder: HTTP/1.1 and HTTP/2 (prior knowledge), the header timeout.
fn builder(settings: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(CONNECTION_BUFFER);
    builder
}

/// Lets a repeated warning through at most once per [`WARN_EVERY`]: a flood of connections
/// must not become a flood of log lines.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    /// `Some(n)` when a warning may be logged now, `n` being how many were held back since the
    /// last one.
    fn ready(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.duration_since(last) < WARN_EVERY) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Real time, not a paused clock: the server needs a real listener.
    #[tokio::test]
    async fn shutdown_gives_running_requests_the_deadline_and_no_more() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let forever = || async {
            Body::from_stream(futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")), ()))
            }))
        };
        let router = Router::new().route("/forever", get(forever));
        let deadline = Duration::from_millis(500);
        let settings = ServerSettings { shutdown_timeout: deadline, ..Default::default() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            serve(listener, router, &settings, None, Arc::new(Metrics::default()), shutdown).await;
        });

        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET /forever HTTP/1.1\r\nHost: node\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 4096];
        assert!(client.read(&mut buf).await.unwrap() > 0, "the response started");

        let started = std::time::Instant::now();
        stop.send(()).unwrap();
        server.await.unwrap();
        let took = started.elapsed();
        assert!(took >= deadline && took < deadline * 4, "shutdown took {took:?}");
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while client.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        assert!(drained.await.is_ok(), "the connection was left open");
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }

    /// Real sockets: the send timeout watches a socket the kernel will not take more bytes on.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off_and_one_that_reads_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let endless = || async {
            let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
            Body::from_stream(futures_util::stream::repeat_with(move || {
                Ok::<_, std::io::Error>(chunk.clone())
            }))
        };
        let router = Router::new().route("/endless", get(endless));
        let settings =
            ServerSettings { send_timeout: Duration::from_millis(500), ..Default::default() };
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let metrics = metrics.clone();
            async move {
                let shutdown = async {
                    let _ = stopped.await;
                };
                serve(listener, router, &settings, None, metrics, shutdown).await;
            }
        });
        let request = b"GET /endless HTTP/1.1\r\nHost: node\r\n\r\n";
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled.write_all(request).await.unwrap();
        let mut reader = TcpStream::connect(addr).await.unwrap();
        reader.write_all(request).await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];

        // The reader keeps taking bytes for four send timeouts while the other takes none.
        let started = std::time::Instant::now();
        let mut read = 0usize;
        while started.elapsed() < Duration::from_secs(2) {
            let n = reader.read(&mut buf).await.unwrap();
            assert!(n > 0, "the reading client was cut off after {read} bytes");
            read += n;
        }
        assert_eq!(metrics.http_connections.get(), 1, "the stalled connection is still open");
        assert_eq!(metrics.http_send_timeouts.get(), 1);
        // What the kernel had buffered for the stalled client, then the end of the stream.
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while stalled.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        assert!(drained.await.is_ok(), "the stalled connection was not closed");
        stop.send(()).unwrap();
        drop(reader);
        server.await.unwrap();
    }

    #[test]
    fn the_throttle_lets_one_warning_through_per_period_and_counts_the_rest() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        assert_eq!(throttle.ready(start), Some(0));
        for i in 1..=5 {
            assert_eq!(throttle.ready(start + Duration::from_secs(i)), None);
        }
        assert_eq!(throttle.ready(start + WARN_EVERY), Some(5));
        assert_eq!(throttle.ready(start + WARN_EVERY + Duration::from_secs(1)), None);
        assert_eq!(throttle.ready(start + WARN_EVERY * 3), Some(1));
    }
}
