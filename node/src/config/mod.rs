//! One configuration tree: built-in defaults, then the TOML file, then `SHOAL_*` variables and
//! flags (clap merges those two), each later source winning. Every subsystem receives only its
//! own part of the resolved [`Config`]. `file` is the TOML shape, `units` its sizes and
//! durations, `auth` the client rules, `fleet` peers and discovery, `keep` lifecycle and warm
//! lists.

mod auth;
mod file;
mod fleet;
mod keep;
mod units;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) use auth::{AuthConfig, AuthConfigError};
pub use file::FileConfig;
pub(crate) use file::{AuthEntry, RuleEntry, ServerEntry};
use fleet::resolve_fleet;
pub use fleet::{FleetConfig, UpstreamFallback};
pub(crate) use keep::{LifecycleConfig, WarmConfig};
use keep::{resolve_lifecycle, resolve_warm};
pub(crate) use units::{ByteSize, HumanDuration};

use crate::clock::Clock;
use crate::http_server::ServerSettings;
use crate::metrics::MetricsConfig;
use crate::store::StoreConfig;
use crate::upstream::{ClientSettings, Credentials, UpstreamConfig};

/// Registries a fresh node knows without configuration, as clients spell them → where to fetch.
pub(crate) const BUILTIN_UPSTREAMS: &[(&str, &str)] = &[
    ("docker.io", "https://registry-1.docker.io"),
    ("ghcr.io", "https://ghcr.io"),
    ("quay.io", "https://quay.io"),
    ("registry.k8s.io", "https://registry.k8s.io"),
    ("public.ecr.aws", "https://public.ecr.aws"),
    ("gcr.io", "https://gcr.io"),
    ("mcr.microsoft.com", "https://mcr.microsoft.com"),
];

/// Token services of built-in upstreams on another host than the registry: credentials for
/// the registry may go there (see `upstream/realm.rs`).
pub(crate) const BUILTIN_TOKEN_REALMS: &[(&str, &str)] = &[("docker.io", "auth.docker.io")];

pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:5000";
pub(crate) const DEFAULT_DATA_DIR: &str = "./shoal-data";
pub(crate) const DEFAULT_UPSTREAM: &str = "docker.io";
pub(crate) const DEFAULT_TAG_TTL: Duration = Duration::from_secs(5 * 60);
/// An upload untouched this long is abandoned: its session and bytes are removed.
pub(crate) const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

pub(crate) const DEFAULT_P2P_LISTEN: &str = "/ip4/0.0.0.0/tcp/5001";
pub(crate) const DEFAULT_PROVIDER_BUDGET: Duration = Duration::from_millis(300);
pub(crate) const DEFAULT_OWNER_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_PEER_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that accepted the connection and sent no answer head in this long is given up on:
/// a silent peer costs a miss a moment, not a download.
pub const DEFAULT_PEER_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Pieces of one blob sent to peers at once. In the swarm simulation 4 rather than 3 took 16
/// nodes from 1.57 to 1.46 T1 on 200 Mbit/s links (seeds 1–4) and from 1.85 to 1.70 on 1 Gbit/s,
/// 100 nodes unchanged, for the owner sending about 0.15 copies more; 2 and 6 were worse.
pub(crate) const DEFAULT_PEER_UPLOAD_SLOTS: usize = 4;
/// Members that keep each pinned (pushed, imported) image: any one node may be lost.
pub(crate) const DEFAULT_REPLICAS: u32 = 2;
/// How often a node checks the copies of the images it keeps.
pub(crate) const DEFAULT_PLACEMENT_INTERVAL: Duration = Duration::from_secs(60);

/// The fully resolved configuration of a node.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: StoreConfig,
    pub routing: RoutingConfig,
    pub client: ClientSettings,
    pub server: ServerSettings,
    pub tag_ttl: Duration,
    /// How long an upload may sit untouched before it is removed with its bytes.
    pub upload_timeout: Duration,
    pub fleet: FleetConfig,
    /// Who the node's clients are and what they may pull.
    pub auth: AuthConfig,
    pub metrics: MetricsConfig,
    /// Images kept warm on the fleet (`[warm]`).
    pub warm: WarmConfig,
    /// Rules that expire or cap what a prefix holds (`[lifecycle]`).
    pub lifecycle: LifecycleConfig,
    /// What TTLs and token lifetimes are counted on: the system's clock, unless a test that
    /// runs the node in-process hands it one it moves forward.
    pub clock: Clock,
}

/// Which upstream a request's repository name belongs to.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Registry name (as clients spell it) → how to reach it.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Used when the name carries no registry host and no `?ns=`.
    pub default_upstream: String,
    /// Path-prefix aliases such as `docker-hub` → `docker.io`, as ECR pull-through rules have.
    pub aliases: BTreeMap<String, String>,
    /// Registry names that are no upstream: the node (the fleet) is the registry for them,
    /// serving only what was pushed or imported.
    pub hosted: BTreeSet<String>,
    /// Fetch from registries that are not configured, over HTTPS at their own name.
    pub allow_any_upstream: bool,
    /// Such registries may be at private, loopback or link-local addresses too.
    pub allow_private_upstreams: bool,
    /// Credentials for registries reached through `allow_any_upstream`, from a Docker config.
    pub extra_credentials: BTreeMap<String, Credentials>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is invalid: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid listen address {0:?}: expected HOST:PORT such as 0.0.0.0:5000")]
    Listen(String),
    #[error("invalid --upstream {0:?}: expected NAME=URL such as ghcr.io=https://ghcr.io")]
    UpstreamFlag(String),
    #[error("upstream {name:?} has URL {url:?}, which is not http:// or https://")]
    UpstreamUrl { name: String, url: String },
    #[error("upstream {name:?} sets both a password and a token; keep one")]
    AmbiguousCredentials { name: String },
    #[error("upstream {name:?}: token_realms entry {realm:?} is not a host name")]
    TokenRealm { name: String, realm: String },
    #[error("replicas = {0}: give a number of members from 1 to 64")]
    Replicas(u32),
    #[error(
        "[[lifecycle.rule]] prefix {0:?}: give a registry/repository prefix such as \
         docker.io/library, or \"*\", with expire_unused, max_size or max_share"
    )]
    BadLifecycleRule(String),
    #[error(
        "[[lifecycle.rule]] for {prefix:?}: max_share = {given:?} is not a share; write a \
         percentage from \"0.01%\" to \"100%\""
    )]
    BadShare { prefix: String, given: String },
    #[error("[warm] images: {0}")]
    BadWarmImage(String),
    #[error("[warm] platform {0:?} is not os/arch[/variant], e.g. linux/amd64")]
    BadWarmPlatform(String),
    #[error("default upstream {0:?} is not a configured upstream")]
    UnknownDefault(String),
    #[error(
        "hosted registry name {0:?} must be a registry name (letters, digits, . - and a port) \
         that is neither an upstream nor an alias"
    )]
    BadHosted(String),
    #[error("alias {alias:?} points at {target:?}, which is not a configured upstream")]
    UnknownAliasTarget { alias: String, target: String },
    #[error("invalid multiaddr {0:?} (expected e.g. /ip4/10.0.0.2/tcp/5001)")]
    Multiaddr(String),
    #[error("invalid upstream fallback {0:?}: expected \"always\" or \"never\"")]
    Fallback(String),
    #[error(
        "the provider republish interval ({republish:?}) must be shorter than the provider TTL ({ttl:?})"
    )]
    Republish { republish: Duration, ttl: Duration },
    #[error("[server] {0} must be more than zero")]
    ZeroLimit(&'static str),
    #[error(
        "--tls-cert and --tls-key (tls_cert and tls_key under [server]) are given together or not at all"
    )]
    TlsPair,
    #[error("cannot load Docker credentials from {path}: {detail}")]
    DockerConfig { path: PathBuf, detail: String },
    #[error(transparent)]
    Auth(AuthConfigError),
}

/// Values given on the command line or in the environment; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub upstreams: Vec<String>,
    pub default_upstream: Option<String>,
    pub allow_any_upstream: bool,
    pub allow_private_upstreams: bool,
    pub max_size: Option<ByteSize>,
    pub tag_ttl: Option<HumanDuration>,
    pub upload_timeout: Option<HumanDuration>,
    pub hosted: Vec<String>,
    pub docker_config: Option<PathBuf>,
    pub p2p_listen: Vec<String>,
    pub bootstrap: Vec<String>,
    pub bootstrap_dns: Vec<String>,
    /// `Some(false)` for `--no-mdns`.
    pub mdns: Option<bool>,
    pub cluster_key: Option<PathBuf>,
    pub site: Option<String>,
    pub upstream_per_site: Option<bool>,
    pub replicas: Option<u32>,
    pub placement_interval: Option<HumanDuration>,
    pub advertise_addr: Option<String>,
    pub upstream_fallback: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub upstream_ca: Option<PathBuf>,
    pub peer_ca: Option<PathBuf>,
    pub auth: AuthOverrides,
}

/// The client authentication flags.
#[derive(Debug, Clone, Default)]
pub struct AuthOverrides {
    pub htpasswd: Option<PathBuf>,
    pub tokens: Option<PathBuf>,
    /// `--anonymous-pull`: clients without credentials may pull.
    pub anonymous_pull: bool,
}

fn resolve_server(
    entry: Option<ServerEntry>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
) -> Result<ServerSettings, ConfigError> {
    let entry = entry.unwrap_or_default();
    let tls = match (tls_cert.or(entry.tls_cert), tls_key.or(entry.tls_key)) {
        (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
        (None, None) => None,
        _ => return Err(ConfigError::TlsPair),
    };
    let defaults = ServerSettings::default();
    let duration = |key, given: Option<HumanDuration>, default| match given {
        Some(HumanDuration(d)) if d.is_zero() => Err(ConfigError::ZeroLimit(key)),
        given => Ok(given.map_or(default, |d| d.0)),
    };
    Ok(ServerSettings {
        header_read_timeout: duration(
            "header_read_timeout",
            entry.header_read_timeout,
            defaults.header_read_timeout,
        )?,
        idle_timeout: duration("idle_timeout", entry.idle_timeout, defaults.idle_timeout)?,
        shutdown_timeout: duration(
            "shutdown_timeout",
            entry.shutdown_timeout,
            defaults.shutdown_timeout,
        )?,
        send_timeout: duration("send_timeout", entry.send_timeout, defaults.send_timeout)?,
        max_connections: match entry.max_connections {
            Some(0) => return Err(ConfigError::ZeroLimit("max_connections")),
            given => given.unwrap_or(defaults.max_connections),
        },
        tls,
        buffer_memory: match entry.buffer_memory {
            Some(ByteSize(0)) => return Err(ConfigError::ZeroLimit("buffer_memory")),
            given => given.map_or(defaults.buffer_memory, |b| b.0),
        },
    })
}

/// `token_realms` are host names: a URL there would never match a realm's host.
fn checked_realms(name: &str, realms: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for realm in &realms {
        let host = realm.trim();
        if host.is_empty() || host.contains("://") || host.contains('/') || host.contains(' ') {
            let (name, realm) = (name.to_owned(), realm.clone());
            return Err(ConfigError::TokenRealm { name, realm });
        }
    }
    Ok(realms)
}

/// A list given on the command line replaces the file's list; it does not extend it.
pub(super) fn list(given: &[String], file: &Option<Vec<String>>) -> Vec<String> {
    if given.is_empty() { file.clone().unwrap_or_default() } else { given.to_vec() }
}

impl Config {
    /// Resolves defaults ← file ← overrides into a checked configuration.
    pub fn resolve(file: FileConfig, overrides: Overrides) -> Result<Self, ConfigError> {
        let fleet = resolve_fleet(&file, &overrides)?;
        let listen_text =
            overrides.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|_| ConfigError::Listen(listen_text.clone()))?;

        let mut upstreams: BTreeMap<String, UpstreamConfig> = BUILTIN_UPSTREAMS
            .iter()
            .map(|(name, url)| {
                let token_realms = BUILTIN_TOKEN_REALMS
                    .iter()
                    .filter(|(registry, _)| registry == name)
                    .map(|(_, realm)| (*realm).to_owned())
                    .collect();
                let config = UpstreamConfig {
                    name: (*name).to_owned(),
                    url: (*url).to_owned(),
                    credentials: None,
                    token_realms,
                    public_only: false,
                };
                ((*name).to_owned(), config)
            })
            .collect();
        for (name, entry) in file.upstreams {
            let credentials = entry.credentials(&name)?;
            let builtin = upstreams.get(&name);
            let token_realms = match (entry.token_realms, builtin) {
                (Some(realms), _) => checked_realms(&name, realms)?,
                (None, Some(builtin)) => builtin.token_realms.clone(),
                (None, None) => Vec::new(),
            };
            let url = match (entry.url, builtin) {
                (Some(url), _) => url,
                (None, Some(builtin)) => builtin.url.clone(),
                (None, None) => format!("https://{name}"),
            };
            let config = UpstreamConfig {
                name: name.clone(),
                url,
                credentials,
                token_realms,
                public_only: false,
            };
            upstreams.insert(name, config);
        }
        let docker_credentials = match overrides.docker_config.or(file.docker_config) {
            Some(path) => crate::upstream::load_docker_config(&path)
                .map_err(|e| ConfigError::DockerConfig { path, detail: e.to_string() })?,
            None => Default::default(),
        };
        for flag in &overrides.upstreams {
            let (name, url) =
                flag.split_once('=').ok_or_else(|| ConfigError::UpstreamFlag(flag.clone()))?;
            if name.is_empty() || url.is_empty() {
                return Err(ConfigError::UpstreamFlag(flag.clone()));
            }
            let entry = upstreams
                .entry(name.to_owned())
                .or_insert_with(|| UpstreamConfig { name: name.to_owned(), ..Default::default() });
            entry.url = url.to_owned();
        }
        let mut extra_credentials = BTreeMap::new();
        for (host, credentials) in docker_credentials {
            match upstreams.get_mut(&host) {
                // Credentials written in Shoal's own config win over the Docker config's.
                Some(upstream) if upstream.credentials.is_none() => {
                    upstream.credentials = Some(credentials)
                }
                Some(_) => {}
                None => {
                    extra_credentials.insert(host, credentials);
                }
            }
        }
        for upstream in upstreams.values() {
            if !(upstream.url.starts_with("http://") || upstream.url.starts_with("https://")) {
                return Err(ConfigError::UpstreamUrl {
                    name: upstream.name.clone(),
                    url: upstream.url.clone(),
                });
            }
        }

        let allow_any_upstream =
            overrides.allow_any_upstream || file.allow_any_upstream.unwrap_or(false);
        let allow_private_upstreams =
            overrides.allow_private_upstreams || file.allow_private_upstreams.unwrap_or(false);
        let default_upstream = overrides
            .default_upstream
            .or(file.default_upstream)
            .unwrap_or_else(|| DEFAULT_UPSTREAM.to_owned());
        if !upstreams.contains_key(&default_upstream) {
            return Err(ConfigError::UnknownDefault(default_upstream));
        }
        let mut hosted = BTreeSet::new();
        for name in overrides.hosted.iter().chain(file.hosted.iter()) {
            if !shoal_protocol::is_registry_host(name)
                || upstreams.contains_key(name)
                || file.aliases.contains_key(name)
            {
                return Err(ConfigError::BadHosted(name.clone()));
            }
            hosted.insert(name.clone());
        }
        for (alias, target) in &file.aliases {
            if !upstreams.contains_key(target) {
                return Err(ConfigError::UnknownAliasTarget {
                    alias: alias.clone(),
                    target: target.clone(),
                });
            }
        }

        let mut credentialed: Vec<String> = upstreams
            .values()
            .filter(|u| u.credentials.is_some())
            .map(|u| u.name.clone())
            .chain(extra_credentials.keys().cloned())
            .collect();
        credentialed.sort();
        let hosted_names: Vec<String> = hosted.iter().cloned().collect();
        let upstream_names: Vec<String> = upstreams.keys().cloned().collect();
        let auth = auth::resolve_auth(
            file.auth,
            overrides.auth,
            &credentialed,
            &hosted_names,
            &upstream_names,
        )?;

        let client_file = file.upstream_client.unwrap_or_default();
        let defaults = ClientSettings::default();
        let client = ClientSettings {
            connect_timeout: client_file.connect_timeout.map_or(defaults.connect_timeout, |d| d.0),
            read_timeout: client_file.read_timeout.map_or(defaults.read_timeout, |d| d.0),
            retries: client_file.retries.unwrap_or(defaults.retries),
            ca_file: overrides.upstream_ca.or(client_file.ca),
        };

        let fleet_replicas = fleet.replicas;
        Ok(Config {
            listen,
            fleet,
            metrics: MetricsConfig {
                repositories: file.metrics.map(|m| m.repositories).unwrap_or_default(),
            },
            server: resolve_server(file.server, overrides.tls_cert, overrides.tls_key)?,
            store: StoreConfig {
                root: overrides
                    .data_dir
                    .or(file.data_dir)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
                max_size: overrides.max_size.or(file.max_size).map(|s| s.0),
            },
            routing: RoutingConfig {
                upstreams,
                default_upstream,
                aliases: file.aliases,
                hosted,
                allow_any_upstream,
                allow_private_upstreams,
                extra_credentials,
            },
            client,
            tag_ttl: overrides.tag_ttl.or(file.tag_ttl).map_or(DEFAULT_TAG_TTL, |d| d.0),
            upload_timeout: overrides
                .upload_timeout
                .or(file.upload_timeout)
                .map_or(DEFAULT_UPLOAD_TIMEOUT, |d| d.0),
            auth,
            warm: resolve_warm(file.warm, fleet_replicas)?,
            lifecycle: resolve_lifecycle(file.lifecycle)?,
            clock: Clock::system(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::auth::Action;

    /// The example of docs/configuration.md, with its htpasswd and tokens files made in `dir`
    /// (holding the users its rules name).
    fn documented_example_in(dir: &Path) -> String {
        let doc = include_str!("../../../docs/configuration.md");
        let section =
            doc.find("\n## Example").expect("docs/configuration.md has an Example section");
        let start = section
            + doc[section..].find("```toml\n").expect("the Example section has a toml example")
            + 8;
        let end = start + doc[start..].find("```").expect("the example is closed");
        let line = format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap());
        std::fs::write(dir.join("htpasswd"), line).unwrap();
        std::fs::write(dir.join("tokens"), crate::auth::token_file_line("ci", "t")).unwrap();
        doc[start..end]
            .replace("/etc/shoal/htpasswd", &dir.join("htpasswd").display().to_string())
            .replace("/etc/shoal/tokens", &dir.join("tokens").display().to_string())
    }

    fn documented_example() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let text = documented_example_in(dir.path());
        (dir, text)
    }

    #[test]
    fn documented_example_parses() {
        let (_dir, example) = documented_example();
        let file = FileConfig::parse(&example, Path::new("configuration.md")).unwrap();
        let config = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(config.store.max_size, Some(200 << 30));
        assert_eq!(config.routing.aliases["docker-hub"], "docker.io");
        assert_eq!(config.metrics.repositories, ["docker.io/library/alpine"]);
        assert!(matches!(
            config.routing.upstreams["docker.io"].credentials,
            Some(Credentials::Basic { .. })
        ));
        let example = &config.routing.upstreams["registry.example.com:5443"];
        assert_eq!(example.url, "https://registry.example.com:5443");
        assert_eq!(example.token_realms, ["auth.example.com"]);
        // Docker Hub's token service is built in, and stays when the file names docker.io.
        assert_eq!(config.routing.upstreams["docker.io"].token_realms, ["auth.docker.io"]);
        assert_eq!(config.server, crate::http_server::ServerSettings::default());
        assert_eq!(config.fleet.peer_header_timeout, DEFAULT_PEER_HEADER_TIMEOUT);
        let auth = &config.auth.settings;
        assert!(auth.requires_login() && !config.auth.open_by_default);
        let pull = |who, registry, repo| auth.policy.allows(who, registry, repo, Action::Pull);
        assert!(pull(None, "docker.io", "library/alpine"));
        assert!(!pull(None, "ghcr.io", "org/app"));
        assert!(pull(Some("alice"), "ghcr.io", "org/app"));
        assert!(pull(Some("ci"), "registry.example.com:5443", "team/app"));
        assert!(!pull(Some("bob"), "registry.example.com:5443", "team/app"));
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.tag_ttl, DEFAULT_TAG_TTL);
        assert_eq!(config.routing.upstreams.len(), BUILTIN_UPSTREAMS.len());
        assert_eq!(config.store.max_size, None);
    }

    #[test]
    fn refuses_bad_values_with_their_name() {
        let bad =
            |text: &str| FileConfig::parse(text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(bad("max_size = \"lots\"").contains("size"));
        assert!(bad("tag_ttl = \"soon\"").contains("duration"));
        assert!(bad("listn = \"x\"").contains("listn"));

        let resolve = |file: &str, o: Overrides| {
            Config::resolve(FileConfig::parse(file, Path::new("x.toml")).unwrap(), o)
        };
        let o = Overrides { upstreams: vec!["no-equals".into()], ..Default::default() };
        assert!(matches!(resolve("", o), Err(ConfigError::UpstreamFlag(_))));
        let o = Overrides { upstreams: vec!["x.io=ftp://x".into()], ..Default::default() };
        assert!(matches!(resolve("", o), Err(ConfigError::UpstreamUrl { .. })));
        let o = Overrides { default_upstream: Some("nowhere.io".into()), ..Default::default() };
        assert!(matches!(resolve("", o), Err(ConfigError::UnknownDefault(_))));
        assert!(matches!(
            resolve("[aliases]\nhub = \"nowhere.io\"", Overrides::default()),
            Err(ConfigError::UnknownAliasTarget { .. })
        ));
        for zero in ["max_connections = 0", "idle_timeout = \"0s\""] {
            let file = format!("[server]\n{zero}");
            assert!(matches!(resolve(&file, Overrides::default()), Err(ConfigError::ZeroLimit(_))));
        }
        assert!(matches!(
            resolve(
                "[upstreams.\"a.io\"]\ntoken_realms = [\"https://auth.a.io/token\"]",
                Overrides::default()
            ),
            Err(ConfigError::TokenRealm { .. })
        ));
        assert!(matches!(
            resolve("[upstreams.\"a.io\"]\npassword = \"p\"\ntoken = \"t\"", Overrides::default()),
            Err(ConfigError::AmbiguousCredentials { .. })
        ));
        assert!(matches!(
            resolve("replicas = 0", Overrides::default()),
            Err(ConfigError::Replicas(0))
        ));
        assert!(matches!(
            resolve("[warm]\nimages = [\"UPPER/case\"]", Overrides::default()),
            Err(ConfigError::BadWarmImage(_))
        ));
        assert!(matches!(
            resolve("[warm]\nimages = [\"alpine\"]\nplatform = \"linux\"", Overrides::default()),
            Err(ConfigError::BadWarmPlatform(_))
        ));
        let warm =
            resolve("[warm]\nimages = [\"alpine:3.20\"]\nall_nodes = true", Overrides::default())
                .unwrap()
                .warm;
        assert_eq!(warm.images[0].to_string(), "docker.io/library/alpine:3.20");
        assert_eq!(warm.replicas, None);

        // A certificate needs its key, wherever each is given.
        let o = Overrides { tls_cert: Some("c.pem".into()), ..Default::default() };
        assert!(matches!(resolve("", o), Err(ConfigError::TlsPair)));
        let o = Overrides { tls_key: Some("k.pem".into()), ..Default::default() };
        let config = resolve("[server]\ntls_cert = \"c.pem\"", o).unwrap();
        let files = config.server.tls.unwrap();
        assert_eq!((files.cert, files.key), ("c.pem".into(), "k.pem".into()));
    }

    #[test]
    fn credentials_are_not_in_debug_output() {
        let (_dir, example) = documented_example();
        let file = FileConfig::parse(&example, Path::new("c.md")).unwrap();
        let text = format!("{file:?}");
        assert!(!text.contains("dckr_pat_example"), "{text}");
        let config = Config::resolve(file, Overrides::default()).unwrap();
        let text = format!("{config:?}");
        assert!(!text.contains("dckr_pat_example") && !text.contains("refresh-token-example"));
    }
}
