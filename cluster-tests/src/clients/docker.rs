//! A private Docker daemon (`dockerd` with its own data root, runtime directory and socket,
//! no bridge and no iptables rules) and the `docker` CLI against it: `docker login` and
//! `docker pull`, as a developer's machine or a CI runner pulls through a node.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::run;
use crate::process::ChildProcess;
use crate::{Credentials, HarnessError, Result};

/// How long dockerd may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dockerd gets to unmount its layers when the test is done.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running dockerd. Dropping it stops the daemon, then removes its directories.
#[derive(Debug)]
pub struct Docker {
    // Declared first so that the daemon stops before its directory is removed.
    process: ChildProcess,
    socket: PathBuf,
    dir: TempDir,
}

impl Docker {
    /// Starts dockerd and waits until `docker version` answers. Registries on loopback are
    /// reached over plain HTTP, as Docker does for `localhost` and `127.0.0.0/8`.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shoal-docker-")
            .tempdir()
            .map_err(|source| HarnessError::io("creating the dockerd directory", source))?;
        let socket = dir.path().join("docker.sock");
        let mut command =
            Command::new(crate::require::find_tool("dockerd").unwrap_or_else(|| "dockerd".into()));
        command
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            // Pulls only: no container networking, and nothing changed on this host's.
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args(["--insecure-registry", "127.0.0.0/8"]);
        let log = dir.path().join("dockerd.log");
        let mut process = ChildProcess::spawn("dockerd", command, &log, &log)?;
        let (probe_socket, config) = (socket.clone(), dir.path().join("config"));
        process
            .wait_until(START_TIMEOUT, || {
                let mut version = cli(&probe_socket, &config);
                async move { run("docker version", version.arg("version")).await.is_ok() }
            })
            .await?;
        Ok(Self { process, socket, dir })
    }

    fn cli(&self) -> tokio::process::Command {
        cli(&self.socket, &self.dir.path().join("config"))
    }

    /// `docker login HOST --username U --password-stdin`, as `docker login` does it.
    pub async fn login(&self, host: &str, credentials: &Credentials) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut command = self.cli();
        command
            .args(["login", host, "--username", &credentials.username, "--password-stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|source| HarnessError::Spawn { program: "docker".to_owned(), source })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(credentials.password.as_bytes()).await;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|source| HarnessError::Spawn { program: "docker".to_owned(), source })?;
        if !output.status.success() {
            return Err(HarnessError::ToolFailed {
                tool: "docker login".to_owned(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(())
    }

    /// `docker pull REFERENCE`.
    pub async fn pull(&self, reference: &str) -> Result<()> {
        run("docker pull", self.cli().args(["pull", "--quiet", reference])).await.map(drop)
    }

    /// The manifest digest Docker recorded for `reference` (`sha256:…`).
    pub async fn digest(&self, reference: &str) -> Result<String> {
        let mut command = self.cli();
        command.args(["image", "inspect", "--format", "{{index .RepoDigests 0}}", reference]);
        let output = run("docker image inspect", &mut command).await?;
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(text.trim().rsplit_once('@').map(|(_, d)| d.to_owned()).unwrap_or_default())
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        // SIGTERM: dockerd unmounts its layers before it exits.
        self.process.terminate(STOP_TIMEOUT);
    }
}

/// The `docker` CLI for the daemon on `socket`, with its own config directory (logins).
fn cli(socket: &std::path::Path, config: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("docker");
    command.env("DOCKER_HOST", format!("unix://{}", socket.display())).env("DOCKER_CONFIG", config);
    command
}
