//! A silent partition: the connection stays open but nothing crosses it, as when a switch port
//! or a firewall drops packets. A relay between two swarms that stops forwarding without
//! closing anything stands in for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libp2p::Multiaddr;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::p2p::P2pError;

/// Forwards every connection it accepts to `target` until frozen; then it reads on and drops
/// what it reads, holding every socket open.
struct Relay {
    addr: Multiaddr,
    frozen: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: Multiaddr) -> Relay {
        let target = tcp_addr(&target);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let relay_frozen = frozen.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let outbound = TcpStream::connect(&target).await.unwrap();
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::spawn(pump(in_read, out_write, relay_frozen.clone()));
                tokio::spawn(pump(out_read, in_write, relay_frozen.clone()));
            }
        });
        Relay { addr: format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap(), frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            return;
        }
        if !frozen.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn tcp_addr(addr: &Multiaddr) -> String {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for part in addr.iter() {
        match part {
            Protocol::Ip4(a) => ip = Some(a),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    format!("{}:{}", ip.unwrap(), port.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_owner_costs_a_request_two_seconds_and_the_next_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(config(dir.path(), "a")).await;
    let relay = Relay::start(first_addr(&a)).await;
    let mut b_config = config(dir.path(), "b");
    b_config.bootstrap = vec![relay.addr.clone()];
    let b = start(b_config).await;
    assert!(eventually(Duration::from_secs(15), || b.p2p.peers().len() == 1).await);
    let a_id = a.p2p.local_peer_id();

    // Busy is not silent: an owner that takes longer than the silence to answer still answers
    // pings, so the request runs to its own timeout.
    let started = tokio::time::Instant::now();
    let busy = b.p2p.ask(a_id, fetch("slow"), Duration::from_secs(4)).await;
    assert!(matches!(busy, Err(P2pError::Timeout { .. })), "{busy:?}");
    assert!(started.elapsed() >= Duration::from_secs(4));

    // Silent: the request waiting on it fails once two pings are missed, long before its
    // 30 s timeout, and the next one at once.
    relay.freeze();
    let started = tokio::time::Instant::now();
    let first = b.p2p.ask(a_id, fetch("library/app"), Duration::from_secs(30)).await;
    let first_took = started.elapsed();
    assert!(matches!(first, Err(P2pError::Silent { peer, .. }) if peer == a_id), "{first:?}");
    assert!(first_took < Duration::from_secs(3), "a silent peer held a request {first_took:?}");
    let started = tokio::time::Instant::now();
    let next = b.p2p.ask(a_id, fetch("library/app"), Duration::from_secs(30)).await;
    assert!(matches!(next, Err(P2pError::Silent { .. })), "{next:?}");
    assert!(started.elapsed() < Duration::from_millis(100), "took {:?}", started.elapsed());
}
