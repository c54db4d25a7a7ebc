//! Shoal node: a pull-through cache for OCI registries.
//!
//! The library does the work; `main.rs` only parses the command line and calls [`server::run`].
//! Layers, from the wire inwards: `registry` (HTTP API, no files, no network of its own) →
//! `fetch` (the miss path: single-flight, tag resolution) → `store` (blob files + index) and
//! `upstream` (the registry client). `server` wires them; `config` and `cli` feed it.

// INTEGRATION: cli, config, fetch, registry and server join once store and upstream build.
pub mod store;
pub mod upstream;
