//! What an operator (and the cluster tests) read from `GET /metrics`: counters, gauges and
//! histograms kept with `prometheus-client`, whose metrics are atomics, so counting never slows
//! the blob path down.
//!
//! Every label is bounded: endpoint kinds and status classes are fixed lists, registries are
//! the configured upstreams plus `other`, repositories are the operator's opt-in list plus
//! `other`. `exposition.rs` writes the Prometheus text format; `store.rs` reads the store's
//! size at each scrape.

mod exposition;
mod labels;
mod store;

use std::collections::HashSet;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use exposition::CONTENT_TYPE;
pub(crate) use labels::{EndpointKind, OTHER, RegistryLabels, RepositoryLabels, RequestLabels};

use crate::fetch::Served;
use crate::store::Store;

/// The label sets a node counts by; everything else is `other`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Repositories, as `registry/repository` (`docker.io/library/alpine`), counted by name.
    pub repositories: Vec<String>,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    repositories: HashSet<String>,
    registries: HashSet<String>,

    /// Blob downloads this node made from an upstream registry.
    pub upstream_blob_fetches: Counter,
    /// Of those, downloads made although this node was not the digest's owner.
    pub upstream_fallbacks: Counter,
    /// Blob downloads that took their bytes from a peer (provider or owner).
    pub peer_blob_fetches: Counter,
    /// Bytes received from peers.
    pub peer_bytes: Counter,
    /// Bytes received from upstream registries.
    pub upstream_bytes: Counter,
    /// Peers dropped from a download because their bytes did not match the digest.
    pub peer_corrupt: Counter,
    /// Requests from peers served by this node as a digest's or a tag's owner.
    pub owner_requests: Counter,
    /// Blob bodies (whole or pieces) served to peers over the data plane.
    pub peer_blob_serves: Counter,
    /// Bytes sent to peers over the data plane.
    pub peer_bytes_served: Counter,
    /// Control-plane handshakes refused because the remote holds another cluster key.
    pub p2p_key_mismatches: Counter,
    /// Live peers with a known data-plane address: the fleet's members besides this node.
    pub fleet_peers: Gauge,
    /// Client connections open now.
    pub http_connections: Gauge,
    /// Bytes held by response bodies' chunks (`fetch/buffers.rs`).
    pub buffer_bytes: Gauge,
    /// Connections that found every slot under the connection cap taken and had to wait.
    pub http_connections_queued: Counter,
    /// Connections closed because their client took no response bytes for the send timeout.
    pub http_send_timeouts: Counter,

    /// Requests answered, by endpoint kind and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to the response head, by endpoint kind and status class.
    pub request_seconds: HistogramFamily<RequestLabels>,
    /// Blob and manifest bytes sent to clients, by where they came from.
    pub served_bytes: Family<labels::SourceLabels, Counter>,
    /// Requests sent to upstream registries, by registry, kind and outcome.
    pub upstream_requests: Family<RegistryLabels, Counter>,
    /// Bytes received from upstream registries, by registry.
    pub upstream_registry_bytes: Family<labels::RegistryOnly, Counter>,
    /// Client blob requests by repository (the opt-in list) and source: hit ratios.
    pub repository_requests: Family<RepositoryLabels, Counter>,
    /// How long a provider lookup in the DHT took.
    pub dht_lookup_seconds: Histogram,
    /// From a client's request for a blob this node lacked to the first byte sent.
    pub miss_first_byte_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&MetricsConfig::default(), std::iter::empty::<&str>())
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s: a cached manifest to a large layer's first byte through a slow link.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    /// Metrics labelled by `config`'s repositories and by the configured `registries`.
    pub fn new<'a>(config: &MetricsConfig, registries: impl IntoIterator<Item = &'a str>) -> Self {
        let mut registry = Registry::default();
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let r = &mut registry;
        let metrics = Self {
            upstream_blob_fetches: counter(
                r,
                "shoal_upstream_blob_fetches",
                "Blob downloads from an upstream registry",
            ),
            upstream_fallbacks: counter(
                r,
                "shoal_upstream_fallbacks",
                "Upstream blob downloads made by a node that is not the digest's owner",
            ),
            peer_blob_fetches: counter(
                r,
                "shoal_peer_blob_fetches",
                "Blob downloads that took their bytes from a peer",
            ),
            peer_bytes: counter(r, "shoal_peer_bytes", "Bytes received from peers"),
            upstream_bytes: counter(
                r,
                "shoal_upstream_bytes",
                "Bytes received from upstream registries",
            ),
            peer_corrupt: counter(
                r,
                "shoal_peer_corrupt",
                "Peers dropped from a download for sending bytes that did not match the digest",
            ),
            owner_requests: counter(r, "shoal_owner_requests", "Owner requests served for peers"),
            peer_blob_serves: counter(
                r,
                "shoal_peer_blob_serves",
                "Blob bodies and pieces served to peers",
            ),
            peer_bytes_served: counter(r, "shoal_peer_bytes_served", "Bytes sent to peers"),
            p2p_key_mismatches: counter(
                r,
                "shoal_p2p_key_mismatches",
                "Control-plane handshakes refused because the remote holds another cluster key",
            ),
            fleet_peers: gauge(
                r,
                "shoal_fleet_peers",
                "Live peers with a known data-plane address (members besides this node)",
            ),
            http_connections: gauge(r, "shoal_http_connections", "Client connections open now"),
            buffer_bytes: gauge(
                r,
                "shoal_buffer_bytes",
                "Bytes of blob chunks held by responses now ([server] buffer_memory bounds them)",
            ),
            http_connections_queued: counter(
                r,
                "shoal_http_connections_queued",
                "Client connections that waited for a slot under the connection cap",
            ),
            http_send_timeouts: counter(
                r,
                "shoal_http_send_timeouts",
                "Client connections closed because the client took no response bytes for [server] send_timeout",
            ),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            served_bytes: Family::default(),
            upstream_requests: Family::default(),
            upstream_registry_bytes: Family::default(),
            repository_requests: Family::default(),
            dht_lookup_seconds: latency_histogram(),
            miss_first_byte_seconds: latency_histogram(),
            registry: Registry::default(),
            repositories: config.repositories.iter().cloned().collect(),
            registries: registries.into_iter().map(str::to_owned).collect(),
        };
        r.register(
            "shoal_http_requests",
            "Requests answered, by endpoint kind (manifest, blob, tags, peer, other) and status class",
            metrics.requests.clone(),
        );
        r.register(
            "shoal_http_request_duration_seconds",
            "Time from a request to its response head, by endpoint kind and status class",
            metrics.request_seconds.clone(),
        );
        r.register(
            "shoal_served_bytes",
            "Blob and manifest bytes sent to clients, by source: local (a store hit), peer, upstream",
            metrics.served_bytes.clone(),
        );
        r.register(
            "shoal_upstream_requests",
            "Requests sent to upstream registries, by registry (configured ones, else other), kind and outcome",
            metrics.upstream_requests.clone(),
        );
        r.register(
            "shoal_upstream_registry_bytes",
            "Bytes received from upstream registries, by registry (configured ones, else other)",
            metrics.upstream_registry_bytes.clone(),
        );
        r.register(
            "shoal_repository_blob_requests",
            "Client blob requests by repository (the configured list, else other) and source",
            metrics.repository_requests.clone(),
        );
        r.register(
            "shoal_dht_provider_lookup_duration_seconds",
            "How long a provider lookup in the DHT took",
            metrics.dht_lookup_seconds.clone(),
        );
        r.register(
            "shoal_miss_first_byte_seconds",
            "From a client's request for a blob this node did not hold to the first byte sent",
            metrics.miss_first_byte_seconds.clone(),
        );
        Self { registry, ..metrics }
    }

    /// Reports the store's size, blob count, cap and evictions at every scrape.
    pub fn watch_store(&mut self, store: Store) {
        self.registry.register_collector(Box::new(store::StoreCollector(store)));
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> String {
        exposition::render(&self.registry)
    }

    /// Counts bytes sent to a client from `source`.
    pub fn served(&self, source: Served, bytes: u64) {
        self.served_bytes.get_or_create(&labels::SourceLabels::of(source)).inc_by(bytes);
    }

    /// The label for a repository: its name when the operator listed it, else `other`.
    pub fn repository_label(&self, registry: &str, repo: &str) -> String {
        let name = format!("{registry}/{repo}");
        if self.repositories.contains(&name) { name } else { OTHER.to_owned() }
    }

    /// The label for an upstream registry: its name when configured, else `other` (names
    /// reached through `allow_any_upstream` are unbounded).
    pub fn registry_label(&self, registry: &str) -> String {
        if self.registries.contains(registry) { registry.to_owned() } else { OTHER.to_owned() }
    }

    /// Counts one request to an upstream registry.
    pub fn upstream_request(&self, registry: &str, kind: &'static str, outcome: &'static str) {
        let labels = RegistryLabels { registry: self.registry_label(registry), kind, outcome };
        self.upstream_requests.get_or_create(&labels).inc();
    }

    /// The counter of bytes from `registry`, to add to per chunk without a lookup.
    pub fn upstream_bytes_from(&self, registry: &str) -> Counter {
        let labels = labels::RegistryOnly { registry: self.registry_label(registry) };
        self.upstream_registry_bytes.get_or_create_owned(&labels)
    }

    /// Bytes sent to clients by source so far: local, peer, upstream.
    pub fn served_totals(&self) -> [u64; 3] {
        [Served::Local, Served::Peer, Served::Upstream].map(|source| {
            self.served_bytes.get(&labels::SourceLabels::of(source)).map_or(0, |c| c.get())
        })
    }
}

#[cfg(test)]
mod tests;
