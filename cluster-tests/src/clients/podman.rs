//! `podman pull` into a storage of its own (a temporary root, the `vfs` driver), so that tests
//! neither see nor leave images in the machine's podman storage; and what it pulled.

use tempfile::TempDir;

use super::run;
use crate::{Credentials, HarnessError, Result};

/// podman with its own image storage, removed on drop.
#[derive(Debug)]
pub struct Podman {
    dir: TempDir,
}

impl Podman {
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shoal-podman-")
            .tempdir()
            .map_err(|source| HarnessError::io("creating the podman directory", source))?;
        Ok(Self { dir })
    }

    fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("podman");
        command
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .arg("--storage-driver=vfs");
        command
    }

    /// `podman pull --tls-verify=false [--creds USER:PASSWORD] REFERENCE`; the image id.
    pub async fn pull(&self, reference: &str, credentials: Option<&Credentials>) -> Result<String> {
        let mut command = self.command();
        command.args(["pull", "--quiet", "--tls-verify=false"]);
        if let Some(credentials) = credentials {
            command.arg("--creds").arg(credentials.colon_pair());
        }
        let output = run("podman pull", command.arg(reference)).await?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The manifest digest podman recorded for `reference`.
    pub async fn digest(&self, reference: &str) -> Result<String> {
        let mut command = self.command();
        command.args(["image", "inspect", "--format", "{{.Digest}}", reference]);
        let output = run("podman image inspect", &mut command).await?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // vfs layers are plain directories, but podman may leave its runtime state mounted.
        let _ = std::process::Command::new("podman")
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .arg("--storage-driver=vfs")
            .args(["system", "reset", "--force"])
            .output();
    }
}
