//! The connection watchdog and hyper's header timeout, on a paused clock: an in-memory duplex
//! stream stands in for the socket, so virtual time moves only when every task waits.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ServerSettings;
use super::connection::{self, Open};
use crate::metrics::Metrics;

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// `/slow` streams this many chunks, one a second: longer than the idle timeout.
const SLOW_CHUNKS: u8 = 10;

fn router() -> Router {
    let slow = || async {
        let chunks = futures_util::stream::unfold(0u8, |i| async move {
            if i == SLOW_CHUNKS {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 100])), i + 1))
        });
        Body::from_stream(chunks)
    };
    Router::new().route("/slow", get(slow))
}

struct Conn {
    client: DuplexStream,
    task: JoinHandle<()>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
}

fn connect() -> Conn {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let settings = ServerSettings {
        header_read_timeout: HEADER_TIMEOUT,
        idle_timeout: IDLE_TIMEOUT,
        ..Default::default()
    };
    let metrics = Arc::new(Metrics::default());
    let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().expect("a slot");
    let stop = CancellationToken::new();
    let task = tokio::spawn(connection::serve(
        TokioIo::new(server),
        router(),
        Arc::new(super::builder(&settings)),
        settings.idle_timeout,
        stop.clone(),
        Open::new(slot, metrics.clone()),
    ));
    Conn { client, task, stop, metrics }
}

/// Reads a `Connection: close` response to its end and checks that the whole body came.
async fn read_whole_slow_response(client: &mut DuplexStream) {
    let mut raw = Vec::new();
    client.read_to_end(&mut raw).await.expect("read the response");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("0\r\n\r\n"), "the chunked body was cut: {text}");
    assert_eq!(text.matches(&"x".repeat(100)).count(), usize::from(SLOW_CHUNKS));
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let Conn { client: _client, task, metrics, .. } = connect();
    assert_eq!(metrics.http_connections.get(), 1);
    let start = Instant::now();
    task.await.expect("the connection task");
    let lived = start.elapsed();
    assert!(lived >= IDLE_TIMEOUT && lived < IDLE_TIMEOUT + Duration::from_secs(1), "{lived:?}");
    assert_eq!(metrics.http_connections.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_request_head_sent_a_byte_a_second_is_cut_at_the_header_timeout() {
    let Conn { mut client, task, .. } = connect();
    let start = Instant::now();
    let head = b"GET /slow HTTP/1.1\r\nHost: node\r\nX-Slow: a-header-sent-very-slowly\r\n\r\n";
    let send = async {
        for byte in head {
            if client.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!("the whole head was sent");
    };
    tokio::select! {
        () = send => {}
        done = task => done.expect("the connection task"),
    }
    let lived = start.elapsed();
    // Cut by hyper's header clock, well before the idle watchdog would have.
    assert!(lived >= HEADER_TIMEOUT && lived < IDLE_TIMEOUT, "{lived:?}");
}

#[tokio::test(start_paused = true)]
async fn a_response_streaming_longer_than_the_idle_timeout_is_not_cut() {
    let Conn { mut client, task, .. } = connect();
    let start = Instant::now();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_whole_slow_response(&mut client).await;
    assert!(start.elapsed() >= Duration::from_secs(SLOW_CHUNKS.into()));
    task.await.expect("the connection task");
}

#[tokio::test(start_paused = true)]
async fn stopping_closes_idle_connections_at_once_and_busy_ones_after_their_response() {
    let idle = connect();
    let Conn { client: mut busy_client, task: busy_task, stop: busy_stop, .. } = connect();
    busy_client.write_all(b"GET /slow HTTP/1.1\r\nHost: node\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let start = Instant::now();
    idle.stop.cancel();
    busy_stop.cancel();
    idle.task.await.expect("the idle connection's task");
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    // Keep-alive was asked for, but a stopping server closes once the response is sent.
    read_whole_slow_response(&mut busy_client).await;
    busy_task.await.expect("the busy connection's task");
    drop(idle.client);
}
