//! The node's integration tests, in one binary: each module is one area (the registry API
//! against a fake upstream, the CLI, the upstream client, peer timeouts, tag owners), and
//! `support`/`api_support` are the helpers they share. One binary links the node once, not
//! once per area.

mod api_support;
mod support;

mod aliases;
mod api_auth;
mod api_cache;
mod api_connections;
mod api_disk;
mod api_errors;
mod api_eviction;
mod api_faults;
mod api_peer;
mod api_ranges;
mod api_referrers;
mod cli;
mod peer_timeouts;
mod tag_owner;
mod upstream_auth;
mod upstream_client;
mod upstream_faults;
