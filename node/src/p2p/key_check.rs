//! Makes a cluster-key mismatch visible. libp2p's pnet handshake only swaps nonces: with two
//! different keys it "succeeds", and the connection then fails somewhere later on bytes that
//! decrypt to garbage, which libp2p reports as an ordinary protocol error, if at all. Right
//! after pnet each side sends a fixed line through the encrypted stream and reads the other's;
//! a line that does not read back means the keys differ. Both ends then log it, naming the
//! remote address, and count it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use libp2p::core::ConnectedPoint;
use libp2p::futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::multiaddr::Protocol;
use libp2p::pnet;
use libp2p::pnet::PnetError;

use crate::metrics::Metrics;
use crate::throttle::LogThrottle;

/// Sent first through every pnet stream. Its length and content are part of the wire format.
const CHECK_LINE: &[u8; 20] = b"/shoal/pnet-check/1\n";
/// A remote that keeps trying with another key is logged once per address and interval.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Why the first step of a control-plane connection failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error("pnet handshake failed: {0}")]
    Pnet(#[from] PnetError),
    #[error("key check failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the remote holds another cluster key")]
    Mismatch,
}

/// Logs and counts handshakes with nodes that hold another key.
#[derive(Debug)]
pub struct MismatchReport {
    metrics: Arc<Metrics>,
    throttle: LogThrottle<String>,
}

impl MismatchReport {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics, throttle: LogThrottle::new(LOG_INTERVAL) }
    }

    fn report(&self, endpoint: &ConnectedPoint) {
        self.metrics.p2p_key_mismatches.inc();
        let remote = endpoint.get_remote_address();
        // By host, not by socket: a node that dials again comes from a new port each time.
        let host = remote
            .iter()
            .find_map(|p| match p {
                Protocol::Ip4(ip) => Some(IpAddr::from(ip).to_string()),
                Protocol::Ip6(ip) => Some(IpAddr::from(ip).to_string()),
                _ => None,
            })
            .unwrap_or_else(|| remote.to_string());
        if self.throttle.allow(host) {
            let direction = if endpoint.is_dialer() { "dialed" } else { "incoming" };
            tracing::warn!(
                %remote,
                direction,
                "control-plane handshake failed: the cluster keys differ; this remote is not a member (every node of a fleet needs the same --cluster-key file)"
            );
        }
    }
}

/// The pnet handshake followed by the key check, as a transport upgrade step.
pub async fn handshake<S>(
    socket: S,
    psk: pnet::PreSharedKey,
    endpoint: ConnectedPoint,
    report: Arc<MismatchReport>,
) -> Result<pnet::PnetOutput<S>, KeyCheckError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut stream = pnet::PnetConfig::new(psk).handshake(socket).await?;
    // Both ends write before they read: the line fits any socket buffer, so neither waits.
    stream.write_all(CHECK_LINE).await?;
    stream.flush().await?;
    let mut line = [0u8; CHECK_LINE.len()];
    stream.read_exact(&mut line).await?;
    if &line != CHECK_LINE {
        report.report(&endpoint);
        return Err(KeyCheckError::Mismatch);
    }
    Ok(stream)
}
