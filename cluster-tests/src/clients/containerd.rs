//! A private `containerd` (own root, state and socket) and `ctr content fetch` through a
//! `hosts.toml` mirror, as a Kubernetes node configures it, with or without credentials.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shoal_protocol::Digest;
use tempfile::TempDir;

use super::{run, verify_file};
use crate::process::ChildProcess;
use crate::{Credentials, HarnessError, Result};

/// How long containerd may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The containerd namespace the harness works in.
const NAMESPACE: &str = "shoal-test";

/// A running containerd. Dropping it kills the process and removes its directories.
#[derive(Debug)]
pub struct Containerd {
    // Declared first so that the process is killed before its directory is removed.
    process: ChildProcess,
    socket: PathBuf,
    dir: TempDir,
}

impl Containerd {
    /// Starts containerd with a minimal configuration and waits until `ctr version` answers.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shoal-ctrd-")
            .tempdir()
            .map_err(|source| HarnessError::io("creating the containerd directory", source))?;
        let d = dir.path().display();
        let socket = dir.path().join("c.sock");
        // The CRI plugin is off: the tests need the content store only, and CRI would want
        // CNI and the host's runtime setup.
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n\
             [grpc]\n  address = \"{d}/c.sock\"\n\n[ttrpc]\n  address = \"{d}/c.ttrpc.sock\"\n\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config)
            .map_err(|source| HarnessError::io("writing the containerd config", source))?;
        let mut command = Command::new("containerd");
        command.arg("--config").arg(&config_path);
        let log = dir.path().join("containerd.log");
        let mut process =
            ChildProcess::spawn("containerd", command, &log, &log)?.terminate_on_drop();
        let probe_socket = socket.clone();
        process
            .wait_until(START_TIMEOUT, || {
                let socket = probe_socket.clone();
                async move {
                    let mut version = ctr_command(&socket);
                    version.arg("version");
                    run("ctr", &mut version).await.is_ok()
                }
            })
            .await?;
        Ok(Self { process, socket, dir })
    }

    /// The directory of containerd's own files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's log.
    pub fn log_path(&self) -> &Path {
        self.process.log()
    }

    /// Writes `HOSTS_DIR/REGISTRY/hosts.toml` naming `mirror_url` (e.g. `http://127.0.0.1:5000`)
    /// as a mirror with pull and resolve; containerd then adds `?ns=REGISTRY` to its requests.
    pub fn write_hosts_toml(hosts_dir: &Path, registry: &str, mirror_url: &str) -> Result<()> {
        let dir = hosts_dir.join(registry);
        std::fs::create_dir_all(&dir)
            .map_err(|source| HarnessError::io(format!("creating {}", dir.display()), source))?;
        let toml = format!("[host.\"{mirror_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
        std::fs::write(dir.join("hosts.toml"), toml)
            .map_err(|source| HarnessError::io("writing hosts.toml", source))
    }

    /// [`Containerd::write_hosts_toml`] for an `https://` mirror whose certificate `ca` (a PEM
    /// file) signed.
    pub fn write_hosts_toml_with_ca(
        hosts_dir: &Path,
        registry: &str,
        mirror_url: &str,
        ca: &Path,
    ) -> Result<()> {
        let dir = hosts_dir.join(registry);
        std::fs::create_dir_all(&dir)
            .map_err(|source| HarnessError::io(format!("creating {}", dir.display()), source))?;
        let ca = serde_json::Value::from(ca.to_string_lossy()).to_string();
        let toml = format!(
            "[host.\"{mirror_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = {ca}\n"
        );
        std::fs::write(dir.join("hosts.toml"), toml)
            .map_err(|source| HarnessError::io("writing hosts.toml", source))
    }

    /// `ctr content fetch --hosts-dir HOSTS_DIR REFERENCE` (e.g. `docker.io/library/app:v1`);
    /// `all_platforms` fetches every image of an index.
    pub async fn fetch(
        &self,
        reference: &str,
        hosts_dir: &Path,
        all_platforms: bool,
    ) -> Result<()> {
        self.fetch_as(reference, hosts_dir, all_platforms, None).await
    }

    /// [`Containerd::fetch`] with `--user USER:PASSWORD`, which ctr answers a registry's (or
    /// mirror's) Basic challenge with.
    pub async fn fetch_as(
        &self,
        reference: &str,
        hosts_dir: &Path,
        all_platforms: bool,
        user: Option<&Credentials>,
    ) -> Result<()> {
        let mut command = ctr_command(&self.socket);
        command.args(["content", "fetch", "--hosts-dir"]).arg(hosts_dir);
        if let Some(user) = user {
            command.arg("--user").arg(user.colon_pair());
        }
        if all_platforms {
            command.arg("--all-platforms");
        }
        command.arg(reference);
        run("ctr", &mut command).await.map(drop)
    }

    /// `ctr images import` of an OCI archive, unpacking nothing; returns the names of the
    /// images containerd then has, sorted.
    pub async fn import(&self, archive: &Path) -> Result<Vec<String>> {
        let mut command = ctr_command(&self.socket);
        command.args(["images", "import", "--no-unpack"]).arg(archive);
        run("ctr", &mut command).await?;
        let mut list = ctr_command(&self.socket);
        list.args(["images", "list", "--quiet"]);
        let output = run("ctr", &mut list).await?;
        let mut names: Vec<String> =
            String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
        names.sort();
        Ok(names)
    }

    /// Where containerd stores the blob `digest`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .path()
            .join("root/io.containerd.content.v1.content/blobs/sha256")
            .join(digest.hex())
    }

    /// True if containerd holds `digest` with the right content; an error if it holds it with
    /// the wrong content.
    pub fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        if !path.exists() {
            return Ok(false);
        }
        verify_file(&path, digest)?;
        Ok(true)
    }
}

fn ctr_command(socket: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("ctr");
    command.arg("--address").arg(socket).arg("--namespace").arg(NAMESPACE);
    command
}
