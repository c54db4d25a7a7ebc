//! The command line: `shoal run` and its flags, each also a `SHOAL_*` variable, and the other
//! subcommands. `shoal demo` takes `run`'s upstream flags ([`UpstreamArgs`]) and resolves them
//! the same way.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    AuthOverrides, ByteSize, Config, ConfigError, FileConfig, HumanDuration, Overrides,
};

/// What is logged when `SHOAL_LOG` does not say. libp2p's Kademlia warns on every bootstrap
/// attempt of a node that is alone; that is the normal state of a first node, not something an
/// operator should act on.
pub const DEFAULT_LOG_FILTER: &str = "info,libp2p_kad=error";

/// The version and the commit the binary was built from: `0.1.0 (3f2a9c1d0b7e)`.
pub(crate) const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("SHOAL_COMMIT"), ")");

/// A peer-to-peer pull-through cache for OCI container registries.
///
/// Point containerd, Docker, CRI-O or podman at a node as a registry mirror; it fetches each
/// image from the upstream registry once and serves it from its local store afterwards.
#[derive(Debug, Parser)]
#[command(name = "shoal", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a cache node: serve the registry API and fetch misses from peers or upstream.
    Run(Box<RunArgs>),
    /// Manage the cluster key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Write a container runtime's mirror configuration for a node (or print it).
    Config(ClientConfigArgs),
    /// Make credentials for the node's clients.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Show a node's view of the fleet: members, store, bytes served by source, downloads in
    /// flight, recent errors.
    Status(StatusArgs),
    /// Pull images through a node and write them to an OCI image layout archive (for an
    /// air-gapped site: carry the file, then `shoal import` it there).
    Export(ExportArgs),
    /// Push every image of an OCI image layout archive into a node (and so its fleet), under
    /// the names the archive gives them; pushed content is pinned.
    Import(ImportArgs),
    /// Keep an image on the fleet: never evicted, whole on --replicas members, re-placed when
    /// a member leaves or joins.
    Pin(PinArgs),
    /// Stop keeping a pinned image (on every member); the cache may evict it again.
    Unpin(NodeImageArgs),
    /// List the images a node keeps.
    Pins(PinsArgs),
    /// Fetch images onto members ahead of a rollout (one upstream fetch per blob), without
    /// pinning them.
    Warm(WarmArgs),
    /// Run a fleet of nodes on this machine (on 127.0.0.1, in a temporary directory) and show,
    /// live, where each node got each layer it served: upstream, a peer, or its own store.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Images to export, e.g. docker.io/library/alpine:3.20 or ghcr.io/org/app@sha256:...
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// The archive to write.
    #[arg(short, long, value_name = "FILE")]
    pub out: PathBuf,
    /// Only the image for this platform (os/arch[/variant]) of a multi-arch image [default:
    /// every platform].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Also export the referrers of every exported manifest (signatures, SBOMs, attestations:
    /// what the node's referrers API lists, from pushes and from the upstream), and theirs;
    /// `shoal import` pushes them with their subject.
    #[arg(long)]
    pub with_referrers: bool,
    /// The node to pull through.
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The archive to read (what `shoal export` or `skopeo copy ... oci-archive:` wrote, with
    /// full image names in its index).
    #[arg(value_name = "FILE")]
    pub archive: PathBuf,
    /// The node to push into; its user must be allowed to push those names.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Import into this data directory instead, with no node running on it (seed a node
    /// before it starts).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["node", "user", "node_ca"])]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: the configuration the node will run with (its hosted names, size cap).
    #[arg(long, value_name = "FILE", requires = "data_dir")]
    pub config: Option<PathBuf>,
    /// With --data-dir: a registry name the node will host (as `shoal run --hosted`).
    #[arg(long = "hosted", value_name = "NAME", requires = "data_dir")]
    pub hosted: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many nodes to run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=9))]
    pub nodes: u8,

    #[command(flatten)]
    pub upstream: UpstreamArgs,
}

/// Which registries a node fetches from: shared by `shoal run` and `shoal demo`.
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Map a registry name, as clients spell it, to the URL to fetch from. Repeatable;
    /// overrides the built-in entry of the same name (docker.io, ghcr.io, quay.io,
    /// registry.k8s.io, public.ecr.aws, gcr.io, mcr.microsoft.com).
    #[arg(
        long = "upstream",
        env = "SHOAL_UPSTREAM",
        value_name = "NAME=URL",
        value_delimiter = ','
    )]
    pub upstreams: Vec<String>,

    /// Registry for names with no registry host and no ?ns= [default: docker.io]
    #[arg(long, env = "SHOAL_DEFAULT_UPSTREAM", value_name = "NAME")]
    pub default_upstream: Option<String>,

    /// Fetch from registries that are not configured (over HTTPS at their own name) instead
    /// of refusing them.
    #[arg(long, env = "SHOAL_ALLOW_ANY_UPSTREAM")]
    pub allow_any_upstream: bool,

    /// With --allow-any-upstream, let clients name registries at private, loopback or
    /// link-local addresses too (by default only public ones, so that the node is no way into
    /// the network it sits in).
    #[arg(long, env = "SHOAL_ALLOW_PRIVATE_UPSTREAMS")]
    pub allow_private_upstreams: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the report as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// The node a command talks to, and how to log in to it.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node to ask (its registry API).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:5000")]
    pub node: String,
    /// Log in as USER:PASSWORD (or NAME:TOKEN) when the node has client authentication.
    #[arg(long, env = "SHOAL_USER", value_name = "USER:PASSWORD")]
    pub user: Option<String>,
    /// PEM bundle of CAs the node's HTTPS certificate is checked against besides the public
    /// roots (a node whose --tls-cert comes from a private CA).
    #[arg(long, env = "SHOAL_NODE_CA", value_name = "FILE")]
    pub node_ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NodeImageArgs {
    /// The image, e.g. docker.io/library/alpine:3.20 or local/app@sha256:...
    #[arg(value_name = "IMAGE")]
    pub image: String,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// The image, e.g. docker.io/library/alpine:3.20 (a tag is pinned as the manifest it
    /// points at now).
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Only the image for this platform (os/arch[/variant]) of a multi-arch image [default:
    /// every platform].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Members that keep it [default: the node's --replicas].
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,
    /// Keep its signatures and SBOMs (OCI referrers) with it.
    #[arg(long)]
    pub with_referrers: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct PinsArgs {
    /// Print the list as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct WarmArgs {
    /// Images to warm.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Only the image for this platform (os/arch[/variant]) [default: every platform].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Members that get a copy [default: the node's --replicas].
    #[arg(long, value_name = "N", conflicts_with = "all_nodes")]
    pub replicas: Option<u32>,
    /// Every member gets a copy.
    #[arg(long)]
    pub all_nodes: bool,
    /// Their signatures and SBOMs (OCI referrers) too.
    #[arg(long)]
    pub with_referrers: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct ClientConfigArgs {
    /// The runtime to configure.
    #[arg(value_enum)]
    pub runtime: crate::client_config::Runtime,
    /// The node to pull through.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:5000")]
    pub node: String,
    /// A registry to mirror; repeatable [default: every built-in upstream].
    #[arg(long = "registry", value_name = "HOST")]
    pub registries: Vec<String>,
    /// Where to write: containerd's hosts directory [/etc/containerd/certs.d], Docker's
    /// daemon.json [/etc/docker/daemon.json], or the registries.conf drop-in
    /// [/etc/containers/registries.conf.d/50-shoal.conf].
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Print the files instead of writing them.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Print an htpasswd line (bcrypt) for USER; the password is read from standard input.
    Htpasswd {
        user: String,
        /// bcrypt cost: each step doubles the time a check takes.
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(10..=16))]
        cost: u32,
    },
    /// Make a random token for NAME, append its hash to the tokens file, and print the token.
    Token {
        name: String,
        /// The tokens file (created with mode 0600 if missing).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new random cluster key; give the same file to every node of the cluster.
    Generate {
        /// Where to write the key (mode 0600); refuses to overwrite an existing file.
        #[arg(long, short, value_name = "FILE", default_value = "shoal-cluster.key")]
        out: PathBuf,
    },
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Check the whole configuration (files, upstreams, the cluster key) and exit: 0 when a
    /// node would start with it.
    #[arg(long)]
    pub check_config: bool,

    /// How log lines are written: `text`, or `json` for log shippers.
    #[arg(long, env = "SHOAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// TOML configuration file; flags and SHOAL_* variables override its keys.
    #[arg(long, env = "SHOAL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to serve the registry API on [default: 0.0.0.0:5000]
    #[arg(long, env = "SHOAL_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Directory for blobs and the index [default: ./shoal-data]
    #[arg(long, env = "SHOAL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(flatten)]
    pub upstream: UpstreamArgs,

    /// Cap on the store's size, e.g. 50GiB; least recently used blobs are evicted [default: no cap]
    #[arg(long, env = "SHOAL_MAX_SIZE", value_name = "SIZE")]
    pub max_size: Option<ByteSize>,

    /// How long a tag's digest (and an upstream's referrers list) is trusted before the
    /// upstream is asked again [default: 5m]
    #[arg(long, env = "SHOAL_TAG_TTL", value_name = "DURATION")]
    pub tag_ttl: Option<HumanDuration>,

    /// How long an unfinished push may sit untouched before it is removed [default: 1h]
    #[arg(long, env = "SHOAL_UPLOAD_TIMEOUT", value_name = "DURATION")]
    pub upload_timeout: Option<HumanDuration>,

    /// A registry name that is no upstream, for which the node is a plain registry of what
    /// is pushed to it (e.g. `local`); repeatable.
    #[arg(long = "hosted", env = "SHOAL_HOSTED", value_name = "NAME", value_delimiter = ',')]
    pub hosted: Vec<String>,

    /// Docker config.json whose `auths` supply upstream credentials.
    #[arg(long, env = "SHOAL_DOCKER_CONFIG", value_name = "FILE")]
    pub docker_config: Option<PathBuf>,

    /// libp2p address to listen on for peers; repeatable [default: /ip4/0.0.0.0/tcp/5001]
    #[arg(long, env = "SHOAL_P2P_LISTEN", value_name = "MULTIADDR", value_delimiter = ',')]
    pub p2p_listen: Vec<String>,

    /// A peer to join, with or without /p2p/<peer id>; repeatable.
    #[arg(long, env = "SHOAL_BOOTSTRAP", value_name = "MULTIADDR", value_delimiter = ',')]
    pub bootstrap: Vec<String>,

    /// A DNS name whose addresses are all peers (e.g. a Kubernetes headless service),
    /// re-resolved every minute; repeatable.
    #[arg(long, env = "SHOAL_BOOTSTRAP_DNS", value_name = "HOST:PORT", value_delimiter = ',')]
    pub bootstrap_dns: Vec<String>,

    /// Find peers on the local network with mDNS (the default).
    #[arg(long, overrides_with = "no_mdns")]
    pub mdns: bool,

    /// Do not use mDNS.
    #[arg(long, env = "SHOAL_NO_MDNS")]
    pub no_mdns: bool,

    /// Secret shared by the fleet, made by `shoal key generate`: only nodes holding it can
    /// join, and every peer HTTP request is signed with it. Without it the node runs alone.
    #[arg(long, env = "SHOAL_CLUSTER_KEY", value_name = "FILE")]
    pub cluster_key: Option<PathBuf>,

    /// Locality label (e.g. a datacenter): a blob crosses into a site once, and the site's
    /// nodes take it from each other.
    #[arg(long, env = "SHOAL_SITE", value_name = "NAME")]
    pub site: Option<String>,

    /// Each site fetches from the upstream itself instead of from the fleet's owner: for sites
    /// whose own internet link is cheaper than the link between sites.
    #[arg(long, env = "SHOAL_UPSTREAM_PER_SITE")]
    pub upstream_per_site: bool,

    /// Members that keep each pinned image (pushed, imported, `shoal pin`) [default: 2]
    #[arg(long, env = "SHOAL_REPLICAS", value_name = "N")]
    pub replicas: Option<u32>,

    /// How often this node checks that the images it keeps have their copies on the members
    /// they are placed on [default: 1m]
    #[arg(long, env = "SHOAL_PLACEMENT_INTERVAL", value_name = "DURATION")]
    pub placement_interval: Option<HumanDuration>,

    /// URL peers use to fetch from this node [default: derived from --listen, https:// with
    /// --tls-cert]
    #[arg(long, env = "SHOAL_ADVERTISE_ADDR", value_name = "URL")]
    pub advertise_addr: Option<String>,

    /// PEM certificate chain (leaf first) for the registry API, which is then served over
    /// HTTPS only; read again when the file changes or on SIGHUP. Needs --tls-key.
    #[arg(long, env = "SHOAL_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "SHOAL_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// PEM bundle of CA certificates trusted for upstream registries besides the public
    /// roots (a registry with a private CA).
    #[arg(long, env = "SHOAL_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// PEM bundle of CA certificates that members' TLS certificates are checked against
    /// besides the public roots (a fleet whose nodes serve HTTPS with a private CA).
    #[arg(long, env = "SHOAL_PEER_CA", value_name = "FILE")]
    pub peer_ca: Option<PathBuf>,

    /// Whether a node may go upstream itself when a blob's owner cannot serve it:
    /// always (the default) or never.
    #[arg(long, env = "SHOAL_UPSTREAM_FALLBACK", value_name = "always|never")]
    pub upstream_fallback: Option<String>,

    /// htpasswd file of the clients' users (bcrypt entries only); clients must then log in.
    #[arg(long, env = "SHOAL_HTPASSWD", value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,

    /// File of the clients' bearer tokens, as `name:sha256:<hex>` lines (`shoal auth token`).
    #[arg(long, env = "SHOAL_AUTH_TOKENS", value_name = "FILE")]
    pub auth_tokens: Option<PathBuf>,

    /// Clients without credentials may pull (every name no [[auth.rule]] says otherwise of).
    /// Needed to serve anonymously a node that holds upstream credentials.
    #[arg(long, env = "SHOAL_ANONYMOUS_PULL")]
    pub anonymous_pull: bool,
}

impl UpstreamArgs {
    /// The overrides these flags make; every other setting is left as not given.
    pub fn into_overrides(self) -> Overrides {
        Overrides {
            upstreams: self.upstreams,
            default_upstream: self.default_upstream,
            allow_any_upstream: self.allow_any_upstream,
            allow_private_upstreams: self.allow_private_upstreams,
            ..Overrides::default()
        }
    }
}

impl RunArgs {
    /// Loads the config file, if any, and applies the flags on top of it.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir,
            max_size: self.max_size,
            tag_ttl: self.tag_ttl,
            upload_timeout: self.upload_timeout,
            hosted: self.hosted,
            docker_config: self.docker_config,
            p2p_listen: self.p2p_listen,
            bootstrap: self.bootstrap,
            bootstrap_dns: self.bootstrap_dns,
            mdns: if self.no_mdns {
                Some(false)
            } else if self.mdns {
                Some(true)
            } else {
                None
            },
            cluster_key: self.cluster_key,
            site: self.site,
            upstream_per_site: self.upstream_per_site.then_some(true),
            replicas: self.replicas,
            placement_interval: self.placement_interval,
            advertise_addr: self.advertise_addr,
            upstream_fallback: self.upstream_fallback,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            upstream_ca: self.upstream_ca,
            peer_ca: self.peer_ca,
            auth: AuthOverrides {
                htpasswd: self.htpasswd,
                tokens: self.auth_tokens,
                anonymous_pull: self.anonymous_pull,
            },
            ..self.upstream.into_overrides()
        };
        Config::resolve(file, overrides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\ntag_ttl = \"1m\"\nmax_size = \"1GiB\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "shoal",
            "run",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:7001",
            "--upstream",
            "docker.io=http://127.0.0.1:9",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else { panic!("expected run") };
        let config = args.resolve().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7001");
        assert_eq!(config.tag_ttl.as_secs(), 60);
        assert_eq!(config.store.max_size, Some(1 << 30));
        assert_eq!(config.routing.upstreams["docker.io"].url, "http://127.0.0.1:9");
        assert_eq!(config.routing.upstreams["ghcr.io"].url, "https://ghcr.io");
    }

    /// The flags of `shoal run` and the flag table of `docs/configuration.md` name the same
    /// flags: none undocumented, none documented that does not exist.
    #[test]
    fn every_run_flag_is_documented_and_every_documented_flag_exists() {
        let docs = include_str!("../../docs/configuration.md");
        // The first table: rows from the header to the first blank line after it.
        let table: Vec<&str> = docs
            .lines()
            .skip_while(|l| !l.starts_with("| flag |"))
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert!(table.len() > 10, "no flag table in docs/configuration.md");
        let mut documented = std::collections::BTreeSet::new();
        for row in &table {
            let first = row.split('|').nth(1).unwrap_or("");
            for part in first.split('`').skip(1).step_by(2) {
                if let Some(flag) = part.strip_prefix("--") {
                    documented.insert(flag.split([' ', '=']).next().unwrap_or("").to_owned());
                }
            }
        }
        let command = Cli::command();
        let run = command.find_subcommand("run").expect("a run subcommand");
        let actual: std::collections::BTreeSet<String> = run
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .filter(|l| l != "help" && l != "version")
            .collect();
        assert!(documented.contains("replicas") && actual.contains("replicas"), "{documented:?}");
        let undocumented: Vec<_> = actual.difference(&documented).collect();
        let phantom: Vec<_> = documented.difference(&actual).collect();
        assert!(
            undocumented.is_empty(),
            "flags of shoal run missing from the docs: {undocumented:?}"
        );
        assert!(phantom.is_empty(), "flags in the docs that shoal run lacks: {phantom:?}");
    }
}
