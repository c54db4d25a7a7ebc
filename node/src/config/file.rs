//! The TOML configuration file, as written by an operator. Every key is optional.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ByteSize, ConfigError, HumanDuration};
use crate::auth::Action;
use crate::upstream::Credentials;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub default_upstream: Option<String>,
    pub allow_any_upstream: Option<bool>,
    pub allow_private_upstreams: Option<bool>,
    pub max_size: Option<ByteSize>,
    pub tag_ttl: Option<HumanDuration>,
    pub upload_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub hosted: Vec<String>,
    pub docker_config: Option<PathBuf>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamEntry>,
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    pub upstream_client: Option<ClientEntry>,
    pub server: Option<ServerEntry>,
    pub metrics: Option<MetricsEntry>,
    pub warm: Option<WarmEntry>,
    pub lifecycle: Option<LifecycleEntry>,
    pub p2p_listen: Option<Vec<String>>,
    pub bootstrap: Option<Vec<String>>,
    pub bootstrap_dns: Option<Vec<String>>,
    pub mdns: Option<bool>,
    pub cluster_key: Option<PathBuf>,
    pub site: Option<String>,
    pub upstream_per_site: Option<bool>,
    pub replicas: Option<u32>,
    pub placement_interval: Option<HumanDuration>,
    pub advertise_addr: Option<String>,
    pub peer_ca: Option<PathBuf>,
    pub upstream_fallback: Option<String>,
    pub provider_ttl: Option<HumanDuration>,
    pub provider_republish: Option<HumanDuration>,
    pub provider_budget: Option<HumanDuration>,
    pub owner_timeout: Option<HumanDuration>,
    pub peer_header_timeout: Option<HumanDuration>,
    pub peer_stall_timeout: Option<HumanDuration>,
    pub peer_upload_slots: Option<usize>,
    pub auth: Option<AuthEntry>,
}

/// `[warm]`: images the fleet keeps fetched ahead of rollouts, resolved again every tag TTL.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmEntry {
    pub images: Vec<String>,
    /// Every member gets a copy (else the `replicas` closest to each image).
    #[serde(default)]
    pub all_nodes: bool,
    pub replicas: Option<u32>,
    pub platform: Option<String>,
    /// Their signatures and SBOMs too.
    #[serde(default)]
    pub with_referrers: bool,
}

/// `[lifecycle]`: rules that expire or cap what a prefix holds, checked every `interval`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleEntry {
    pub interval: Option<HumanDuration>,
    #[serde(default)]
    pub rule: Vec<LifecycleRuleEntry>,
}

/// `[[lifecycle.rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRuleEntry {
    pub prefix: String,
    pub expire_unused: Option<HumanDuration>,
    pub max_size: Option<ByteSize>,
    /// `"25%"`: of `--max-size`, else of the data directory's file system.
    pub max_share: Option<String>,
}

/// `[auth]`: who the node's clients are and what they may pull.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthEntry {
    pub htpasswd: Option<PathBuf>,
    pub tokens: Option<PathBuf>,
    /// `"pull"`: clients without credentials may pull every name no rule says otherwise of.
    pub anonymous: Option<String>,
    #[serde(default)]
    pub rule: Vec<RuleEntry>,
    /// Upstreams whose pulls clients' own credentials decide, asked of the upstream.
    #[serde(default)]
    pub pass_through: Vec<String>,
    pub pass_through_ttl: Option<HumanDuration>,
}

/// `[[auth.rule]]`: who may do what under one registry and repository prefix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    pub prefix: String,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub anonymous: bool,
    pub allow: Vec<Action>,
}

/// `[upstreams."ghcr.io"]`: where to fetch, and how to log in.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamEntry {
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// Other hosts whose token service may receive the credentials (https only).
    pub token_realms: Option<Vec<String>>,
}

// Hand-written so that a password or token never reaches a log line through `{:?}`.
impl std::fmt::Debug for UpstreamEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamEntry")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_realms", &self.token_realms)
            .finish()
    }
}

impl UpstreamEntry {
    pub fn credentials(&self, name: &str) -> Result<Option<Credentials>, ConfigError> {
        match (&self.username, &self.password, &self.token) {
            (_, Some(_), Some(_)) => {
                Err(ConfigError::AmbiguousCredentials { name: name.to_owned() })
            }
            (Some(username), Some(password), None) => Ok(Some(Credentials::Basic {
                username: username.clone(),
                password: password.clone(),
            })),
            (_, None, Some(token)) => Ok(Some(Credentials::Token(token.clone()))),
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    pub connect_timeout: Option<HumanDuration>,
    pub read_timeout: Option<HumanDuration>,
    pub retries: Option<u32>,
    /// CA certificates (PEM) trusted for upstream registries besides the public roots.
    pub ca: Option<PathBuf>,
}

/// `[server]`: limits of the HTTP server clients and peers connect to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    pub header_read_timeout: Option<HumanDuration>,
    pub idle_timeout: Option<HumanDuration>,
    pub max_connections: Option<usize>,
    pub shutdown_timeout: Option<HumanDuration>,
    pub send_timeout: Option<HumanDuration>,
    /// PEM certificate chain and key: the registry API is then served over HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub buffer_memory: Option<ByteSize>,
}

/// `[metrics]`: what the metrics count by name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsEntry {
    /// Repositories counted by name, as `registry/repository`; every other one is `other`.
    #[serde(default)]
    pub repositories: Vec<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }
}
