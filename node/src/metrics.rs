//! Counters an operator (and the cluster tests) read from `GET /metrics`, in Prometheus' text
//! format. Plain atomics: counting must never slow the blob path down.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Blob downloads this node made from an upstream registry.
    pub upstream_blob_fetches: AtomicU64,
    /// Of those, downloads made although this node was not the digest's owner.
    pub upstream_fallbacks: AtomicU64,
    /// Blob downloads that took their bytes from a peer (provider or owner).
    pub peer_blob_fetches: AtomicU64,
    /// Bytes received from peers.
    pub peer_bytes: AtomicU64,
    /// Bytes received from upstream registries.
    pub upstream_bytes: AtomicU64,
    /// Peers dropped from a download because their bytes did not match the digest.
    pub peer_corrupt: AtomicU64,
    /// Requests from peers served by this node as a digest's or a tag's owner.
    pub owner_requests: AtomicU64,
    /// Blob bodies (whole or pieces) served to peers over the data plane.
    pub peer_blob_serves: AtomicU64,
    /// Bytes sent to peers over the data plane.
    pub peer_bytes_served: AtomicU64,
    /// Control-plane handshakes refused because the remote holds another cluster key.
    pub p2p_key_mismatches: AtomicU64,
    /// Live peers with a known data-plane address (a gauge).
    pub fleet_peers: AtomicU64,
    /// Client connections open now (a gauge).
    pub http_connections: AtomicU64,
    /// Connections that found every slot under the connection cap taken and had to wait.
    pub http_connections_queued: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let counters: [(&str, &str, &AtomicU64); 11] = [
            (
                "shoal_upstream_blob_fetches_total",
                "Blob downloads from an upstream registry.",
                &self.upstream_blob_fetches,
            ),
            (
                "shoal_upstream_fallbacks_total",
                "Upstream blob downloads made by a node that is not the digest's owner.",
                &self.upstream_fallbacks,
            ),
            (
                "shoal_peer_blob_fetches_total",
                "Blob downloads that took their bytes from a peer.",
                &self.peer_blob_fetches,
            ),
            ("shoal_peer_bytes_total", "Bytes received from peers.", &self.peer_bytes),
            (
                "shoal_upstream_bytes_total",
                "Bytes received from upstream registries.",
                &self.upstream_bytes,
            ),
            (
                "shoal_peer_corrupt_total",
                "Peers dropped from a download for sending bytes that did not match the digest.",
                &self.peer_corrupt,
            ),
            (
                "shoal_owner_requests_total",
                "Owner requests served for peers.",
                &self.owner_requests,
            ),
            (
                "shoal_peer_blob_serves_total",
                "Blob bodies and pieces served to peers.",
                &self.peer_blob_serves,
            ),
            ("shoal_peer_bytes_served_total", "Bytes sent to peers.", &self.peer_bytes_served),
            (
                "shoal_p2p_key_mismatches_total",
                "Control-plane handshakes refused because the remote holds another cluster key.",
                &self.p2p_key_mismatches,
            ),
            (
                "shoal_http_connections_queued_total",
                "Client connections that waited for a slot under the connection cap.",
                &self.http_connections_queued,
            ),
        ];
        let gauges: [(&str, &str, &AtomicU64); 2] = [
            ("shoal_fleet_peers", "Live peers with a known data-plane address.", &self.fleet_peers),
            ("shoal_http_connections", "Client connections open now.", &self.http_connections),
        ];
        let mut out = String::new();
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter() {
        let m = Metrics::default();
        Metrics::inc(&m.upstream_blob_fetches);
        Metrics::add(&m.peer_bytes, 42);
        let text = m.render();
        assert!(text.contains("shoal_upstream_blob_fetches_total 1\n"));
        assert!(text.contains("shoal_peer_bytes_total 42\n"));
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 13);
    }
}
