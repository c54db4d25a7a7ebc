//! Real registry clients: skopeo (containers/image, as CRI-O pulls), podman, Docker (a private
//! dockerd), and containerd with `ctr` and a `hosts.toml` mirror (as Kubernetes nodes pull).

pub mod containerd;
pub mod docker;
pub mod podman;
pub mod skopeo;

use std::path::Path;
use std::process::Output;

use sha2::{Digest as _, Sha256};
use shoal_protocol::Digest;

use crate::{HarnessError, Result};

/// Runs a prepared command to completion; fails with its stderr if it exits non-zero.
pub(crate) async fn run(tool: &str, command: &mut tokio::process::Command) -> Result<Output> {
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| HarnessError::Spawn { program: tool.to_owned(), source })?;
    if !output.status.success() {
        return Err(HarnessError::ToolFailed {
            tool: tool.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(output)
}

/// Hashes the file at `path` and checks that it is `digest`.
pub(crate) fn verify_file(path: &Path, digest: &Digest) -> Result<()> {
    let actual = sha256_file(path)?;
    if &actual != digest {
        return Err(HarnessError::CorruptFile { path: path.to_owned(), actual: actual.hex() });
    }
    Ok(())
}

pub(crate) fn sha256_file(path: &Path) -> Result<Digest> {
    let mut file = std::fs::File::open(path)
        .map_err(|source| HarnessError::io(format!("opening {}", path.display()), source))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|source| HarnessError::io(format!("reading {}", path.display()), source))?;
    Ok(Digest::from_raw(hasher.finalize().into()))
}
