//! The shoal container image as `deploy/container/build` makes it, and containers of it run
//! with podman: the statically linked binary is built once per test process, and images and
//! containers are removed when their handles are dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::process::ChildProcess;
use crate::shoal::{build_shoal, workspace_root};
use crate::{HarnessError, Result};

/// The target the static binary is built for: `crt-static` applies to it alone, not to the
/// build scripts and proc macros the host runs.
const TARGET: &str = "x86_64-unknown-linux-gnu";
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";

/// Limits every container gets. podman's defaults (a million open files, the engine's own
/// process limit) are refused by the runtime on hosts where the engine cannot raise limits
/// (a machine that is itself a container); these are allowed anywhere and enough for a node.
const ULIMITS: [&str; 4] = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"];

/// The statically linked `shoal`: `$SHOAL_STATIC_BIN`, else built once per test process with
/// the command `.ci/run` builds it with, so that this build is a no-op there.
pub fn static_shoal_binary() -> Result<PathBuf> {
    static BINARY: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("SHOAL_STATIC_BIN") {
                return Ok(PathBuf::from(path));
            }
            build_shoal(&["--target", TARGET], &[("RUSTFLAGS", STATIC_RUSTFLAGS)])
                .map(|target| target.join(TARGET).join("debug").join("shoal"))
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| HarnessError::io("building the static shoal binary", std::io::Error::other(e)))
}

/// An image built from `binary` by `deploy/container/build`. Dropping it removes it.
#[derive(Debug)]
pub struct Image {
    tag: String,
}

impl Image {
    /// Builds the image under a tag of its own.
    pub fn build(binary: &Path) -> Result<Self> {
        let tag = format!("localhost/shoal-test-{:016x}:latest", rand::random::<u64>());
        let script = workspace_root().join("deploy/container/build");
        let output = Command::new(&script)
            .arg("--binary")
            .arg(binary)
            .args(["--tag", &tag])
            .output()
            .map_err(|source| HarnessError::Spawn {
                program: script.display().to_string(),
                source,
            })?;
        let image = Self { tag };
        let printed = crate::shoal::tool_output("deploy/container/build", output)?;
        if printed.trim() != image.tag {
            return Err(HarnessError::io(
                "reading the tag deploy/container/build printed",
                std::io::Error::other(format!("expected {}, got {printed:?}", image.tag)),
            ));
        }
        Ok(image)
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `podman run --rm PODMAN_ARGS... IMAGE ARGS...` to its end; what it printed.
    pub fn run(&self, podman_args: &[&str], args: &[&str]) -> Result<Output> {
        Command::new("podman")
            .args(["run", "--rm"])
            .args(ULIMITS)
            .args(podman_args)
            .arg(&self.tag)
            .args(args)
            .output()
            .map_err(|source| HarnessError::Spawn { program: "podman".to_owned(), source })
    }

    /// `podman image inspect` of one field, e.g. `{{.Config.Entrypoint}}`.
    pub fn inspect(&self, format: &str) -> Result<String> {
        let output = Command::new("podman")
            .args(["image", "inspect", "--format", format, &self.tag])
            .output()
            .map_err(|source| HarnessError::Spawn { program: "podman".to_owned(), source })?;
        crate::shoal::tool_output("podman image inspect", output)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "--force", &self.tag]).output();
    }
}

/// A container of an image, running in the background. Dropping it removes it.
#[derive(Debug)]
pub struct Container {
    name: String,
    process: ChildProcess,
}

impl Container {
    /// `podman run --rm --name NAME PODMAN_ARGS... IMAGE ARGS...`, its output to `log`.
    pub fn start(image: &Image, podman_args: &[&str], args: &[&str], log: &Path) -> Result<Self> {
        let name = format!("shoal-test-{:016x}", rand::random::<u64>());
        let mut command = Command::new("podman");
        command.args(["run", "--rm", "--name", &name]).args(ULIMITS).args(podman_args);
        command.arg(image.tag()).args(args);
        let process = ChildProcess::spawn("podman run", command, log, log)?;
        Ok(Self { name, process })
    }

    /// The `podman run` process, to wait on it.
    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Killing the podman client would leave the container running: remove it by name (the
        // client then ends, and is reaped when the process handle drops).
        let _ = Command::new("podman").args(["rm", "--force", "--time", "2", &self.name]).output();
    }
}
