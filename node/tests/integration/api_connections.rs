//! Nothing a client does with its connections wedges the node: thousands of idle connections
//! and slowloris senders are closed after the server's timeouts while a normal client pulls,
//! and connections past the cap wait for a free slot instead of taking the node's last file
//! descriptors.

use crate::api_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::{Node, NodeOptions, pattern, raw_get, read_body, setup_with};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(8);
const IDLE_CONNECTIONS: usize = 2000;
const SLOWLORIS: usize = 5;
/// Slack for a machine busy with 2,000 sockets and other builds.
const MARGIN: Duration = Duration::from_secs(10);

fn options(more: &str) -> NodeOptions {
    let server = format!(
        "header_read_timeout = \"{}s\"\nidle_timeout = \"{}s\"\n{more}",
        HEADER_READ_TIMEOUT.as_secs(),
        IDLE_TIMEOUT.as_secs()
    );
    NodeOptions { server: Some(server), ..Default::default() }
}

/// The usual soft limit of 1,024 open files, under which 1,100 idle connections once left a
/// node answering no one. `None` (and a printed reason) when the hard limit is too low for
/// this test.
fn usual_fd_limit() -> Option<u64> {
    let Rlimit { maximum, .. } = getrlimit(Resource::Nofile);
    let hard = maximum.unwrap_or(u64::MAX);
    if hard < 8192 {
        let reason = format!("the hard open-file limit is {hard}; 2,000 connections need more");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but {reason}");
        eprintln!("skipping: {reason}");
        return None;
    }
    setrlimit(Resource::Nofile, Rlimit { current: Some(1024), maximum }).expect("lower");
    Some(hard)
}

/// The value of a metric as `/metrics` shows it.
async fn metric(node: &Node, name: &str) -> u64 {
    let text = raw_get(node, "/metrics").await.body;
    let text = String::from_utf8_lossy(&text);
    let line = text.lines().find(|l| l.starts_with(&format!("{name} ")));
    line.and_then(|l| l.split(' ').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Sends a request head one byte a second; returns how long the node kept the connection.
async fn slowloris(addr: String) -> Duration {
    let started = Instant::now();
    let stream = TcpStream::connect(&addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}\r\n\r\n", "s".repeat(100));
    let mut bytes = head.bytes();
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            },
            _ = tick.tick() => {
                let byte = bytes.next().expect("the node read a whole slowloris head");
                if writer.write_all(&[byte]).await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_connections_are_closed_while_a_pull_succeeds() {
    let Some(hard) = usual_fd_limit() else { return };
    let (fake, image, node) = setup_with(options("")).await;
    assert_eq!(getrlimit(Resource::Nofile).current, Some(hard), "the node raised the limit");
    let addr = node.url.trim_start_matches("http://").to_owned();

    let mut slow = JoinSet::new();
    for _ in 0..SLOWLORIS {
        slow.spawn(slowloris(addr.clone()));
    }
    let connecting = Instant::now();
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        let opened = Instant::now();
        idle.push((opened, TcpStream::connect(&addr).await.expect("connect an idle client")));
    }
    eprintln!("{IDLE_CONNECTIONS} idle connections opened in {:?}", connecting.elapsed());
    let open = metric(&node, "shoal_http_connections").await;
    assert!(open >= IDLE_CONNECTIONS as u64, "only {open} connections open at the node");

    // A normal client, meanwhile: a whole image and a 4 MiB layer.
    let pulling = Instant::now();
    node.assert_serves(&fake, &image).await;
    let layer = pattern(4 << 20, 1);
    let digest = fake.put_blob(api_support::HEALTH_REPO, &layer);
    let path = format!("/v2/{}/blobs/{digest}", api_support::HEALTH_REPO);
    let (got, err) = read_body(node.get_ok(&path).await).await;
    assert!(err.is_none() && got == layer, "the pull failed: {err:?}");
    eprintln!("pull during the attack took {:?}", pulling.elapsed());

    let mut closing = JoinSet::new();
    for (opened, mut stream) in idle {
        closing.spawn(async move {
            let read =
                tokio::time::timeout(IDLE_TIMEOUT + MARGIN, stream.read(&mut [0u8; 1])).await;
            assert!(matches!(read, Ok(Ok(0) | Err(_))), "an idle connection stayed: {read:?}");
            opened.elapsed()
        });
    }
    let lifetimes: Vec<Duration> = closing.join_all().await;
    let (min, max) = (lifetimes.iter().min().unwrap(), lifetimes.iter().max().unwrap());
    eprintln!("idle connections closed after {min:?} to {max:?}");
    assert!(*min >= IDLE_TIMEOUT, "an idle connection closed after {min:?}");
    assert!(*max < IDLE_TIMEOUT + MARGIN, "an idle connection stayed {max:?}");

    let slow: Vec<Duration> = slow.join_all().await;
    eprintln!("slowloris connections closed after {slow:?}");
    for lived in slow {
        assert!(
            lived >= HEADER_READ_TIMEOUT && lived < IDLE_TIMEOUT,
            "a slowloris lived {lived:?}"
        );
    }

    // The node's side is closed too, not only the clients'.
    let mut open = u64::MAX;
    for _ in 0..50 {
        open = metric(&node, "shoal_http_connections").await;
        if open <= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(open <= 3, "{open} connections still open at the node");
    node.assert_serves(&fake, &image).await;
}

/// Collects everything logged on this thread while it is the default subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// On a current-thread runtime, so that the node's tasks log to this thread's subscriber.
#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot_and_say_so() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber =
        tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let options = NodeOptions {
        server: Some(
            "header_read_timeout = \"1s\"\nidle_timeout = \"2s\"\nmax_connections = 8".into(),
        ),
        ..Default::default()
    };
    let (fake, image, node) = setup_with(options).await;
    let addr = node.url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Every slot is taken: the request waits in the backlog, unanswered.
    let waited = tokio::time::timeout(Duration::from_millis(500), raw_get(&node, "/v2/")).await;
    assert!(waited.is_err(), "answered past the cap");
    // Once the idle connections are closed, a slot frees and the request is served.
    let started = Instant::now();
    let answered = tokio::time::timeout(MARGIN, raw_get(&node, "/v2/")).await;
    assert_eq!(answered.expect("served once a slot freed").status, 200);
    eprintln!("a request past the cap was served after {:?}", started.elapsed());

    assert!(metric(&node, "shoal_http_connections_queued_total").await >= 1);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings = logs.lines().filter(|l| l.contains("connection limit reached")).count();
    assert!(warnings >= 1 && logs.contains("WARN"), "{logs}");
    node.assert_serves(&fake, &image).await;
    drop(held);
}

/// Opens a GET of `path` and reads only its head: the response stays in flight, holding what
/// the node has read for it, for as long as the stream lives.
async fn stalled_reader(addr: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut first = [0u8; 512];
    let n = stream.read(&mut first).await.expect("the response starts");
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..n]));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_do_not_stall_the_others_past_the_buffer_budget() {
    // A budget of two large chunks: the first stalled reader spends it.
    let (fake, _image, node) = setup_with(options("buffer_memory = \"2MiB\"")).await;
    let addr = node.url.trim_start_matches("http://").to_owned();
    let layer = pattern(24 << 20, 3);
    let digest = fake.put_blob(api_support::HEALTH_REPO, &layer);
    let path = format!("/v2/{}/blobs/{digest}", api_support::HEALTH_REPO);
    let (got, err) = read_body(node.get_ok(&path).await).await;
    assert!(err.is_none() && got == layer, "the first pull failed: {err:?}");
    assert_eq!(metric(&node, "shoal_buffer_bytes").await, 0, "nothing held between pulls");

    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(stalled_reader(&addr, &path).await);
    }
    // Their sockets' buffers fill, and then each holds what it read last.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = metric(&node, "shoal_buffer_bytes").await;
    assert!(held > 0, "stalled readers hold chunks");
    // Past the budget, small chunks: what hyper queues for a socket that takes nothing (up to
    // its 408 KiB write buffer) and one read ahead.
    assert!(held <= (2 << 20) + 8 * (408 << 10) + 8 * (64 << 10), "past the budget: {held}");

    // Meanwhile every other client gets whole blobs, at once.
    let pulling = Instant::now();
    for _ in 0..3 {
        let (got, err) = read_body(node.get_ok(&path).await).await;
        assert!(err.is_none() && got == layer, "a pull failed while others stalled: {err:?}");
    }
    assert!(pulling.elapsed() < Duration::from_secs(20), "pulls waited: {:?}", pulling.elapsed());

    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&node, "shoal_buffer_bytes").await > 0 {
        assert!(Instant::now() < deadline, "chunks still held after the clients left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
