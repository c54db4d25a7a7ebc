//! A real `shoal` node process with its own data directory: on free loopback ports, or on the
//! default ports of a host of a [`crate::lan::Lan`].

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tempfile::TempDir;

use crate::lan::LanHost;
use crate::process::{ChildProcess, http_answers};
use crate::{HarnessError, Result, free_port};

/// Variables cargo sets for a test binary it runs, by prefix.
const TEST_RUN_VARS: &[&str] = &[
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
];
/// `shoal run`'s default ports, used on LAN hosts.
const DEFAULT_PORT: u16 = 5000;
const DEFAULT_P2P_PORT: u16 = 5001;
/// How long a node may take to answer `/v2/` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run a node.
#[derive(Debug, Clone, Default)]
pub struct ShoalOptions {
    /// `--upstream NAME=URL` pairs, e.g. `("docker.io", registry.url())`.
    pub upstreams: Vec<(String, String)>,
    /// Further command-line arguments, after the ones the harness sets.
    pub extra_args: Vec<String>,
    /// Environment variables for the process (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Find peers with mDNS. Off by default: tests run side by side and must not merge.
    pub mdns: bool,
    /// `--bootstrap` addresses (see [`ShoalNode::p2p_addr`]).
    pub bootstrap: Vec<String>,
    /// Run on this LAN host, on the default listen addresses, instead of on loopback.
    pub lan_host: Option<LanHost>,
    /// The cluster key: by default one made for these options and shared by their clones,
    /// so the nodes started from one value (a fleet) share one key.
    pub cluster_key: ClusterKeyChoice,
    /// Serve the registry API over HTTPS with this certificate (`--tls-cert`, `--tls-key`).
    pub tls: Option<crate::pki::TlsIdentity>,
}

/// Which `--cluster-key` a node gets.
#[derive(Debug, Clone)]
pub enum ClusterKeyChoice {
    /// A key made on first use (with `shoal key generate`) and shared by every clone.
    Fleet(Arc<FleetKey>),
    /// This key file.
    File(PathBuf),
    /// No key: the node runs alone.
    None,
}

impl Default for ClusterKeyChoice {
    fn default() -> Self {
        Self::Fleet(Arc::default())
    }
}

/// A fleet's key file, made when the first node starts and removed with the last clone.
#[derive(Debug, Default)]
pub struct FleetKey {
    made: OnceLock<std::result::Result<(TempDir, PathBuf), String>>,
}

impl FleetKey {
    fn path(&self) -> Result<PathBuf> {
        let made = self.made.get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("shoal-key-")
                .tempdir()
                .map_err(|e| format!("creating the key directory: {e}"))?;
            let path = generate_cluster_key(dir.path()).map_err(|e| e.to_string())?;
            Ok((dir, path))
        });
        match made {
            Ok((_, path)) => Ok(path.clone()),
            Err(e) => {
                Err(HarnessError::io("making the fleet's key", std::io::Error::other(e.clone())))
            }
        }
    }
}

impl ShoalOptions {
    /// A node whose `docker.io` is `url`.
    pub fn docker_io(url: impl Into<String>) -> Self {
        Self { upstreams: vec![("docker.io".to_owned(), url.into())], ..Self::default() }
    }

    pub fn upstream(mut self, name: impl Into<String>, url: impl Into<String>) -> Self {
        self.upstreams.push((name.into(), url.into()));
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Runs on `host` as a machine of its own would: in its namespace, with the default
    /// `--listen` and `--p2p-listen`.
    pub fn on(mut self, host: &LanHost) -> Self {
        self.lan_host = Some(host.clone());
        self
    }

    /// Runs with this key file instead of the fleet's own key.
    pub fn cluster_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cluster_key = ClusterKeyChoice::File(path.into());
        self
    }

    /// Runs with a key of its own, made afresh: a node (or fleet) apart from the nodes
    /// started from the options this was cloned from.
    pub fn new_cluster_key(mut self) -> Self {
        self.cluster_key = ClusterKeyChoice::default();
        self
    }

    /// Runs without a cluster key: alone, without a control plane.
    pub fn without_cluster_key(mut self) -> Self {
        self.cluster_key = ClusterKeyChoice::None;
        self
    }

    /// Joins the fleet through `node`.
    /// Serves HTTPS with `tls`'s certificate.
    pub fn tls(mut self, tls: crate::pki::TlsIdentity) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn bootstrap(mut self, node: &ShoalNode) -> Self {
        self.bootstrap.push(node.p2p_addr());
        self
    }
}

/// A running node. Dropping it kills the process and removes its data directory.
#[derive(Debug)]
pub struct ShoalNode {
    // Declared first so that the process is killed before its directory is removed.
    process: Option<ChildProcess>,
    ip: Ipv4Addr,
    port: u16,
    p2p_port: u16,
    options: ShoalOptions,
    binary: PathBuf,
    dir: TempDir,
}

impl ShoalNode {
    /// Starts `shoal run` and waits until `GET /v2/` answers (200, or 401 with client auth).
    pub async fn start(options: ShoalOptions) -> Result<Self> {
        let binary = shoal_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("shoal-node-")
            .tempdir()
            .map_err(|source| HarnessError::io("creating the node directory", source))?;
        let (ip, port, p2p_port) = match &options.lan_host {
            Some(host) => (host.ip, DEFAULT_PORT, DEFAULT_P2P_PORT),
            None => (Ipv4Addr::LOCALHOST, free_port()?, free_port()?),
        };
        let mut node = Self { process: None, ip, port, p2p_port, options, binary, dir };
        node.launch().await?;
        Ok(node)
    }

    /// `IP:PORT`, as a registry host in image references.
    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// `http://IP:PORT`, or `https://` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while the node runs (for reading its memory use from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::id)
    }

    /// A client of the node's registry API.
    pub fn client(&self) -> crate::RegistryClient {
        let http = crate::pki::http_client(self.tls()).expect("the CA was readable at start");
        crate::RegistryClient::new(self.url(), None).with_http(http)
    }

    /// The certificate it serves the registry API with, if it serves HTTPS.
    pub fn tls(&self) -> Option<&crate::pki::TlsIdentity> {
        self.options.tls.as_ref()
    }

    /// The node's libp2p address, `/ip4/IP/tcp/PORT` (the same across restarts).
    pub fn p2p_addr(&self) -> String {
        format!("/ip4/{}/tcp/{}", self.ip, self.p2p_port)
    }

    /// The node's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file the node's stdout and stderr go to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("shoal.log")
    }

    /// Kills the node (SIGKILL); its data directory is kept.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the node again with the same port, data directory and options.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch().await
    }

    async fn launch(&mut self) -> Result<()> {
        let mut command = match &self.options.lan_host {
            Some(host) => host.command(&self.binary),
            None => Command::new(&self.binary),
        };
        command.arg("run").arg("--data-dir").arg(self.data_dir());
        if self.options.lan_host.is_none() {
            command.arg("--listen").arg(self.host()).arg("--p2p-listen").arg(self.p2p_addr());
        }
        for (name, url) in &self.options.upstreams {
            command.arg("--upstream").arg(format!("{name}={url}"));
        }
        if !self.options.mdns {
            command.arg("--no-mdns");
        }
        for addr in &self.options.bootstrap {
            command.arg("--bootstrap").arg(addr);
        }
        match &self.options.cluster_key {
            ClusterKeyChoice::Fleet(key) => {
                command.arg("--cluster-key").arg(key.path()?);
            }
            ClusterKeyChoice::File(path) => {
                command.arg("--cluster-key").arg(path);
            }
            ClusterKeyChoice::None => {}
        }
        if let Some(tls) = &self.options.tls {
            command.arg("--tls-cert").arg(&tls.cert).arg("--tls-key").arg(&tls.key);
        }
        command.args(&self.options.extra_args);
        // Plain log lines, so tests can search the log for messages.
        command.env("NO_COLOR", "1");
        command.envs(self.options.env.iter().map(|(k, v)| (k, v)));
        command.current_dir(self.dir.path());
        let log = self.log_path();
        let mut process = ChildProcess::spawn("shoal", command, &log, &log)?;
        let url = format!("{}/v2/", self.url());
        let http = crate::pki::http_client(self.options.tls.as_ref())?;
        process
            // 401: the node serves, and asks its clients to log in.
            .wait_until(START_TIMEOUT, || {
                http_answers(&http, &url, |s| matches!(s.as_u16(), 200 | 401))
            })
            .await?;
        tracing::debug!(port = self.port, pid = process.id(), "shoal ready");
        self.process = Some(process);
        Ok(())
    }
}

/// Writes a new cluster key to `dir/cluster.key` with `shoal key generate` and returns its path.
pub fn generate_cluster_key(dir: &Path) -> Result<PathBuf> {
    let key = dir.join("cluster.key");
    let output = Command::new(shoal_binary()?)
        .args(["key", "generate", "--out"])
        .arg(&key)
        .output()
        .map_err(|source| HarnessError::Spawn { program: "shoal".to_owned(), source })?;
    if !output.status.success() {
        return Err(HarnessError::ToolFailed {
            tool: "shoal key generate".to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(key)
}

/// Writes a runtime's mirror configuration with `shoal config RUNTIME --node URL --out OUT
/// --registry R...`, as an operator would; returns what it printed (its notes).
pub fn write_client_config(
    runtime: &str,
    node_url: &str,
    registries: &[&str],
    out: &Path,
) -> Result<String> {
    let mut command = Command::new(shoal_binary()?);
    command.args(["config", runtime, "--node", node_url, "--out"]).arg(out);
    for registry in registries {
        command.args(["--registry", registry]);
    }
    let output = command
        .output()
        .map_err(|source| HarnessError::Spawn { program: "shoal".to_owned(), source })?;
    tool_output(&format!("shoal config {runtime}"), output)
}

/// Runs `shoal ARGS...` as an operator would (`shoal pin ...`, `shoal warm ...`); returns
/// what it printed.
pub fn shoal_command(args: &[&str]) -> Result<String> {
    let output = Command::new(shoal_binary()?)
        .args(args)
        .output()
        .map_err(|source| HarnessError::Spawn { program: "shoal".to_owned(), source })?;
    tool_output(&format!("shoal {}", args.join(" ")), output)
}

/// The htpasswd line of `credentials`, made by `shoal auth htpasswd` (the password on stdin).
pub fn htpasswd_line(credentials: &crate::Credentials) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new(shoal_binary()?)
        .args(["auth", "htpasswd", "--cost", "10", &credentials.username])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| HarnessError::Spawn { program: "shoal".to_owned(), source })?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{}", credentials.password)
            .map_err(|source| HarnessError::io("writing the password to shoal", source))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|source| HarnessError::Spawn { program: "shoal".to_owned(), source })?;
    tool_output("shoal auth htpasswd", output)
}

/// Makes a token for `name` with `shoal auth token`, adding its hash to `file`; returns it.
pub fn add_token(file: &Path, name: &str) -> Result<String> {
    let output = Command::new(shoal_binary()?)
        .args(["auth", "token", name, "--file"])
        .arg(file)
        .output()
        .map_err(|source| HarnessError::Spawn { program: "shoal".to_owned(), source })?;
    tool_output("shoal auth token", output)
}

/// A tool's standard output, or `ToolFailed` with its standard error when it failed.
pub(crate) fn tool_output(tool: &str, output: std::process::Output) -> Result<String> {
    if !output.status.success() {
        return Err(HarnessError::ToolFailed {
            tool: tool.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The `shoal` binary: `$SHOAL_BIN`, else the workspace's `target/debug/shoal`, built once
/// per test process with `cargo build` so that tests never run a stale binary.
pub fn shoal_binary() -> Result<PathBuf> {
    static BINARY: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| find_or_build().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| HarnessError::io("finding the shoal binary", std::io::Error::other(e)))
}

fn find_or_build() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SHOAL_BIN") {
        return Ok(PathBuf::from(path));
    }
    Ok(build_shoal(&[], &[])?.join("debug").join("shoal"))
}

/// Runs `cargo build -p shoal --bin shoal ARGS` in the workspace with the variables `envs`;
/// returns the target directory.
pub(crate) fn build_shoal(args: &[&str], envs: &[(&str, &str)]) -> Result<PathBuf> {
    let workspace = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command.args(["build", "-p", "shoal", "--bin", "shoal"]).args(args).current_dir(&workspace);
    command.envs(envs.iter().copied());
    // Cargo sets these for the running test; build scripts (ring's) track some of them, so
    // passing them on would rebuild dependencies that `cargo build` had just built.
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if TEST_RUN_VARS.iter().any(|prefix| key_text.starts_with(prefix)) {
            command.env_remove(&key);
        }
    }
    let status = command
        .status()
        .map_err(|source| HarnessError::Spawn { program: "cargo".to_owned(), source })?;
    if !status.success() {
        return Err(HarnessError::BuildShoal { status });
    }
    Ok(target)
}

pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_owned()
}
