//! `shoal config`: the mirror configuration each container runtime needs to pull through a
//! node, written where the runtime reads it (or printed).
//!
//! Every runtime spells a mirror its own way, and each has a trap a new user falls into:
//! containerd reads `hosts.toml` only from the directory its CRI plugin names (and `ctr`
//! only with `--hosts-dir`); Docker mirrors Docker Hub alone and merges nothing for you;
//! `registries.conf` takes a mirror as a reference, where an upstream with a port
//! (`host:5443`) cannot be a path component, so such an upstream gets an alias on the node.
//! The renderers here are pure; `write` puts their files in place.

mod containerd;
mod docker;
mod registries_conf;

use std::path::{Path, PathBuf};

use crate::config::BUILTIN_UPSTREAMS;

/// A runtime to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    Containerd,
    Docker,
    Crio,
    Podman,
}

/// One file to write: where, and all of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: PathBuf,
    pub text: String,
}

/// What a runtime needs: files, and what the operator must still do by hand.
#[derive(Debug, Default)]
pub struct Plan {
    pub files: Vec<File>,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error(
        "--node {0:?} is not an http:// or https:// URL with a host (e.g. http://10.0.0.5:5000)"
    )]
    NodeUrl(String),
    #[error("{0:?} is not a registry host name (e.g. ghcr.io or registry.local:5443)")]
    Registry(String),
    #[error("{path} is not a JSON object; fix or move it, then run this again")]
    DaemonJson { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}; run as a user who may write there, or use --dry-run")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The node the runtime pulls through.
#[derive(Debug, Clone)]
pub struct Node {
    /// `http://10.0.0.5:5000`, without a trailing slash.
    pub url: String,
    /// `10.0.0.5:5000`: how references and Docker spell it.
    pub authority: String,
    pub plain_http: bool,
}

impl Node {
    pub fn parse(url: &str) -> Result<Self, ClientConfigError> {
        let bad = || ClientConfigError::NodeUrl(url.to_owned());
        let parsed = reqwest::Url::parse(url).map_err(|_| bad())?;
        let plain_http = match parsed.scheme() {
            "http" => true,
            "https" => false,
            _ => return Err(bad()),
        };
        let host = parsed.host_str().ok_or_else(bad)?;
        if parsed.path() != "/" || parsed.query().is_some() || !parsed.username().is_empty() {
            return Err(bad());
        }
        let authority = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let url = format!("{}://{authority}", parsed.scheme());
        Ok(Self { url, authority, plain_http })
    }
}

/// The registries to mirror: those named, else every built-in upstream.
pub fn registries(named: &[String]) -> Result<Vec<String>, ClientConfigError> {
    if named.is_empty() {
        return Ok(BUILTIN_UPSTREAMS.iter().map(|(name, _)| (*name).to_owned()).collect());
    }
    named
        .iter()
        .map(|name| {
            let name = name.trim().to_ascii_lowercase();
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
                && !name.starts_with(['.', '-', ':']);
            if valid { Ok(name) } else { Err(ClientConfigError::Registry(name)) }
        })
        .collect()
}

/// Where the runtime reaches the registry itself when the node cannot answer.
fn upstream_url(registry: &str) -> String {
    BUILTIN_UPSTREAMS
        .iter()
        .find(|(name, _)| *name == registry)
        .map_or_else(|| format!("https://{registry}"), |(_, url)| (*url).to_owned())
}

/// The name a node knows an upstream with a port by, for clients that cannot put `:` in a
/// path (`registry.local:5443` → `registry.local-5443`); the node needs it in `[aliases]`.
pub fn alias(registry: &str) -> Option<String> {
    registry.contains(':').then(|| registry.replace(':', "-"))
}

/// Everything `runtime` needs to pull `registries` through `node`. `existing` is the current
/// text of the one file a runtime merges into (Docker's `daemon.json`), if any.
pub fn plan(
    runtime: Runtime,
    node: &Node,
    registries: &[String],
    target: &Path,
    existing: Option<&str>,
) -> Result<Plan, ClientConfigError> {
    match runtime {
        Runtime::Containerd => Ok(containerd::plan(node, registries, target)),
        Runtime::Docker => docker::plan(node, registries, target, existing),
        Runtime::Crio | Runtime::Podman => {
            Ok(registries_conf::plan(runtime, node, registries, target))
        }
    }
}

/// The default file or directory each runtime reads.
pub fn default_target(runtime: Runtime) -> PathBuf {
    PathBuf::from(match runtime {
        Runtime::Containerd => "/etc/containerd/certs.d",
        Runtime::Docker => "/etc/docker/daemon.json",
        Runtime::Crio | Runtime::Podman => "/etc/containers/registries.conf.d/50-shoal.conf",
    })
}

/// Writes every file of the plan, creating directories as needed.
pub fn write(plan: &Plan) -> Result<(), ClientConfigError> {
    for file in &plan.files {
        let failed = |source| ClientConfigError::Write { path: file.path.clone(), source };
        if let Some(dir) = file.path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        std::fs::write(&file.path, &file.text).map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
