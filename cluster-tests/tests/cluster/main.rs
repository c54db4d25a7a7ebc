//! The fleet's tests with real parts, in one binary: real nodes (the `shoal` binary), a real
//! upstream (`docker-registry`), real clients (skopeo, podman, containerd's `ctr`), network
//! namespaces for LANs and sites. Each module is one scenario; the harness is the
//! `shoal_cluster_tests` library. One binary links it once, not once per scenario.

mod air_gap;
mod client_auth;
mod demo;
mod deploy;
mod fleet;
mod fleet_faults;
mod fleet_lan;
mod fleet_sites;
mod fleet_swarm;
mod harness;
mod operator;
mod pull_through;
mod push;
mod referrers;
mod replicas;
mod sha512;
mod swarm_faults;
mod tls;
mod upstream_auth;
