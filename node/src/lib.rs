//! Shoal node: a pull-through cache for OCI registries.
//!
//! The library does the work; `main.rs` only parses the command line and calls [`server::run`].
//! Layers, from the wire inwards: `registry` (HTTP API, no files, no network of its own) →
//! `fetch` (the miss path: single-flight, tag resolution) → `store` (blob files + index) and
//! `upstream` (the registry client). `push` is the write side of the API (uploads, manifest
//! pushes, deletes, referrers); `placement` keeps pinned images on their members (pins,
//! releases, warm-ups); `archive` moves images in and out as OCI layout archives. `auth` says
//! who a client is and what it may pull or push.
//! `http_server` accepts connections and bounds what each may hold; `p2p` is the control plane,
//! `bridge` joins it to the miss path both ways, and `peer_auth` signs and checks the data
//! plane's peer requests; `metrics` and `status` are what an operator reads, and `pull_feed`
//! hands each finished pull to a program that runs nodes in-process; `server` wires them all;
//! `config` and `cli` feed it, and `clock` is what its TTLs and lifetimes are counted on.
//! `demo` runs a small fleet of such nodes on one machine and shows where each pull came
//! from; `tls` serves HTTPS and trusts private CAs; `client_config` writes the runtimes'
//! mirror files; `fuzzing` opens the parsers to the fuzz targets.

pub mod archive;
pub mod auth;
pub(crate) mod bridge;
pub mod cli;
pub mod client_config;
pub mod clock;
pub mod config;
pub mod demo;
pub mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http_server;
pub mod metrics;
pub mod p2p;
pub mod peer_auth;
pub mod placement;
pub(crate) mod pull_feed;
pub(crate) mod push;
pub mod registry;
pub mod server;
pub mod status;
pub mod store;
mod throttle;
pub(crate) mod tls;
pub mod upstream;
