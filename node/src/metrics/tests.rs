//! The exposition keeps the names the tests and benchmarks read, and every label stays bounded.

use super::*;

fn value(text: &str, series: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
}

#[test]
fn keeps_the_names_readers_know() {
    let m = Metrics::default();
    m.upstream_blob_fetches.inc();
    m.peer_bytes.inc_by(42);
    m.fleet_peers.set(2);
    let text = m.render();
    assert_eq!(value(&text, "shoal_upstream_blob_fetches_total").as_deref(), Some("1"), "{text}");
    assert_eq!(value(&text, "shoal_peer_bytes_total").as_deref(), Some("42"));
    assert_eq!(value(&text, "shoal_fleet_peers").as_deref(), Some("2"));
    assert!(text.contains("# TYPE shoal_upstream_blob_fetches_total counter\n"), "{text}");
    assert!(!text.contains("# EOF"));
    assert!(!text.contains("..\n"), "prometheus-client ends help texts with a period itself");
    for name in [
        "shoal_upstream_fallbacks_total",
        "shoal_peer_blob_fetches_total",
        "shoal_upstream_bytes_total",
        "shoal_peer_corrupt_total",
        "shoal_owner_requests_total",
        "shoal_peer_blob_serves_total",
        "shoal_peer_bytes_served_total",
        "shoal_p2p_key_mismatches_total",
        "shoal_http_connections_queued_total",
        "shoal_http_send_timeouts_total",
        "shoal_http_connections",
    ] {
        assert_eq!(value(&text, name).as_deref(), Some("0"), "{name} in {text}");
    }
}

#[test]
fn labels_are_bounded_by_configuration() {
    let config = MetricsConfig { repositories: vec!["docker.io/library/alpine".into()] };
    let m = Metrics::new(&config, ["docker.io", "ghcr.io"]);
    assert_eq!(m.repository_label("docker.io", "library/alpine"), "docker.io/library/alpine");
    assert_eq!(m.repository_label("docker.io", "library/busybox"), OTHER);
    assert_eq!(m.registry_label("ghcr.io"), "ghcr.io");
    assert_eq!(m.registry_label("registry.example.com"), OTHER);

    m.upstream_request("registry.example.com", "manifest", "ok");
    m.upstream_request("another.example.com", "manifest", "ok");
    m.served(Served::Local, 10);
    m.served(Served::Upstream, 5);
    let text = m.render();
    assert_eq!(
        value(
            &text,
            r#"shoal_upstream_requests_total{registry="other",kind="manifest",outcome="ok"}"#
        )
        .as_deref(),
        Some("2"),
        "{text}"
    );
    assert_eq!(value(&text, r#"shoal_served_bytes_total{source="local"}"#).as_deref(), Some("10"));
    assert_eq!(m.served_totals(), [10, 0, 5]);
}

#[test]
fn requests_are_counted_by_kind_and_status_class() {
    let m = Metrics::default();
    let labels = RequestLabels::new(EndpointKind::Blob, axum::http::StatusCode::PARTIAL_CONTENT);
    m.requests.get_or_create(&labels).inc();
    m.request_seconds.get_or_create(&labels).observe(0.003);
    let text = m.render();
    assert_eq!(
        value(&text, r#"shoal_http_requests_total{endpoint="blob",status="2xx"}"#).as_deref(),
        Some("1"),
        "{text}"
    );
    assert!(text.contains("# TYPE shoal_http_request_duration_seconds histogram\n"), "{text}");
    assert!(
        text.contains(
            r#"shoal_http_request_duration_seconds_count{endpoint="blob",status="2xx"} 1"#
        )
    );
}
