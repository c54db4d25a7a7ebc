//! What `shoal status` shows: the fleet's members, this node's store, the bytes it served by
//! source, its downloads in flight and its recent errors.
//!
//! A node answers `GET /_shoal/status` with a [`StatusReport`] (`collect.rs` gathers it,
//! `errors.rs` keeps the recent failures); the CLI fetches it (`client.rs`) and prints it as a
//! table (`render.rs`) or as the JSON it received.

mod client;
mod collect;
mod errors;
mod render;
mod report;

pub use client::fetch;
pub(crate) use collect::{FleetView, StatusSource};
pub(crate) use errors::RecentErrors;
pub use render::render;
pub(crate) use render::size as human_size;
pub use report::StatusReport;

/// Where a node serves its report: a client route like `/v2/...`, not the peers' data plane,
/// so that whatever protects clients' requests protects it too.
pub(crate) const STATUS_PATH: &str = "/_shoal/status";
