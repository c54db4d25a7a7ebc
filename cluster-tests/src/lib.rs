//! Harness for running real shoal processes beside real registries and clients.
//!
//! Every process the harness starts listens on a free loopback port (or on a private LAN of
//! network namespaces, see [`lan`]), keeps its files in its own
//! temporary directory, writes its output to a log file there, and is killed when its handle is
//! dropped, so tests can run side by side and leave nothing behind.

pub mod bench;
pub mod clients;
pub mod container;
pub mod dashboard;
pub mod demo;
pub mod error;
pub mod fleet;
pub mod image;
pub mod lan;
pub mod nginx;
pub mod pki;
pub mod ports;
pub mod process;
pub mod push;
pub mod registry;
pub mod require;
pub mod shoal;
pub mod token_server;
pub mod token_service;

mod access_log;
mod jwt;
mod registry_config;

pub use access_log::LoggedRequest;
pub use error::HarnessError;
pub use image::{BlobInfo, ImageSpec, ManifestInfo, PushedImage};
pub use ports::free_port;
pub use push::{Credentials, RegistryClient};
pub use registry::{ProxyUpstream, Registry, RegistryAuth, RegistryOptions};
pub use require::{require_tool, require_tools};
pub use shoal::{
    ClusterKeyChoice, ShoalNode, ShoalOptions, generate_cluster_key, shoal_command,
    write_client_config,
};
pub use token_server::TokenServer;
pub use token_service::{Tenant, TokenServerOptions, TokenService};

/// Result type of the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
