//! `skopeo copy` from a registry into a `dir:` directory, directly or through a
//! `registries.conf` prefix mirror, and a check of what it wrote; and pushes between registries.

use std::path::{Path, PathBuf};

use shoal_protocol::Digest;
use tempfile::TempDir;

use super::{run, sha256_file};
use crate::{Credentials, HarnessError, Result};

/// Accepts every image: the tests check digests themselves.
const POLICY: &str = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;

/// Options of one `skopeo copy`.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// `--src-creds USER:PASSWORD`.
    pub credentials: Option<Credentials>,
    /// `--registries-conf FILE`, e.g. from [`Skopeo::prefix_mirror_conf`].
    pub registries_conf: Option<PathBuf>,
    /// `--all`: copy every image of an index, not only this machine's platform.
    pub all: bool,
    /// Run skopeo on this LAN host (in its network namespace), as a client on that machine.
    pub on: Option<crate::lan::LanHost>,
    /// `--src-cert-dir DIR` (its `*.crt` files are the CAs trusted) with TLS verification on;
    /// without it, TLS is not verified and plain HTTP is allowed.
    pub cert_dir: Option<PathBuf>,
}

/// skopeo with its own policy file and configuration directory.
#[derive(Debug)]
pub struct Skopeo {
    dir: TempDir,
}

impl Skopeo {
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shoal-skopeo-")
            .tempdir()
            .map_err(|source| HarnessError::io("creating the skopeo directory", source))?;
        write(&dir.path().join("policy.json"), POLICY)?;
        Ok(Self { dir })
    }

    /// Writes a `registries.conf` that sends pulls of `registry` (e.g. `docker.io`) to the
    /// prefix mirror `mirror` (e.g. `127.0.0.1:PORT/docker.io`) over plain HTTP.
    pub fn prefix_mirror_conf(&self, registry: &str, mirror: &str) -> Result<PathBuf> {
        let conf = format!(
            "[[registry]]\nlocation = \"{registry}\"\n\n[[registry.mirror]]\nlocation = \"{mirror}\"\ninsecure = true\n"
        );
        let path = self.dir.path().join(format!("registries-{}.conf", registry.replace('/', "_")));
        write(&path, &conf)?;
        Ok(path)
    }

    /// `skopeo copy docker://SOURCE dir:DEST`, over plain HTTP unless `options.cert_dir`.
    /// `source` is `HOST/REPO:TAG` or `HOST/REPO@DIGEST`.
    pub async fn copy(&self, source: &str, dest: &Path, options: &CopyOptions) -> Result<DirImage> {
        let mut command = match &options.on {
            Some(host) => tokio::process::Command::from(host.command("skopeo")),
            None => tokio::process::Command::new("skopeo"),
        };
        if let Some(conf) = &options.registries_conf {
            command.arg("--registries-conf").arg(conf);
        }
        command
            .arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .arg("copy")
            .arg("--retry-times=0");
        match &options.cert_dir {
            Some(dir) => command.arg("--src-tls-verify=true").arg("--src-cert-dir").arg(dir),
            None => command.arg("--src-tls-verify=false"),
        };
        match &options.credentials {
            Some(credentials) => command.arg("--src-creds").arg(credentials.colon_pair()),
            None => command.arg("--src-no-creds"),
        };
        if options.all {
            command.arg("--all");
        }
        command.arg(format!("docker://{source}")).arg(format!("dir:{}", dest.display()));
        // skopeo keeps no state here, but may look for auth files under HOME.
        command.env("HOME", self.dir.path());
        run("skopeo", &mut command).await?;
        Ok(DirImage { path: dest.to_owned() })
    }

    /// `skopeo copy SOURCE dir:DEST` from any transport (`oci-archive:FILE:NAME`, say).
    pub async fn copy_from(&self, source: &str, dest: &Path) -> Result<DirImage> {
        let mut command = tokio::process::Command::new("skopeo");
        command
            .arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .arg("copy")
            .arg(source)
            .arg(format!("dir:{}", dest.display()))
            .env("HOME", self.dir.path());
        run("skopeo", &mut command).await?;
        Ok(DirImage { path: dest.to_owned() })
    }

    /// `skopeo copy docker://SOURCE docker://DEST` over plain HTTP: pushes an image into a
    /// registry (or a node), logging in to the destination with `dest_credentials`.
    pub async fn push(
        &self,
        source: &str,
        dest: &str,
        dest_credentials: Option<&Credentials>,
        all: bool,
    ) -> Result<()> {
        let mut command = tokio::process::Command::new("skopeo");
        command
            .arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .arg("copy")
            .args(["--src-tls-verify=false", "--dest-tls-verify=false", "--retry-times=0"])
            .arg("--src-no-creds");
        match dest_credentials {
            Some(credentials) => command.arg("--dest-creds").arg(credentials.colon_pair()),
            None => command.arg("--dest-no-creds"),
        };
        if all {
            command.arg("--all");
        }
        command.arg(format!("docker://{source}")).arg(format!("docker://{dest}"));
        command.env("HOME", self.dir.path());
        run("skopeo", &mut command).await.map(drop)
    }

    /// `skopeo sync --src docker --dest docker SOURCE_REPO DEST_PREFIX` over plain HTTP: every
    /// tag of `source_repo` (`HOST/REPO`), every platform, pushed to
    /// `DEST_PREFIX/<last component of REPO>:<tag>`, as a site is mirrored in one command.
    pub async fn sync(
        &self,
        source_repo: &str,
        dest_prefix: &str,
        dest_credentials: &Credentials,
    ) -> Result<()> {
        let mut command = tokio::process::Command::new("skopeo");
        command
            .arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .args(["sync", "--src", "docker", "--dest", "docker", "--all"])
            .args(["--src-tls-verify=false", "--dest-tls-verify=false", "--retry-times=0"])
            .arg("--src-no-creds")
            .arg("--dest-creds")
            .arg(dest_credentials.colon_pair())
            .arg(source_repo)
            .arg(dest_prefix)
            .env("HOME", self.dir.path());
        run("skopeo sync", &mut command).await.map(drop)
    }
}

/// An image that skopeo wrote with the `dir:` transport.
#[derive(Debug, Clone)]
pub struct DirImage {
    pub path: PathBuf,
}

impl DirImage {
    /// The bytes of the copied (top-level) manifest.
    pub fn manifest(&self) -> Result<Vec<u8>> {
        let path = self.path.join("manifest.json");
        std::fs::read(&path)
            .map_err(|source| HarnessError::io(format!("reading {}", path.display()), source))
    }

    /// The digests of the blobs in the directory, each checked against its file's content.
    pub fn verified_blobs(&self) -> Result<Vec<Digest>> {
        let entries = std::fs::read_dir(&self.path).map_err(|source| {
            HarnessError::io(format!("listing {}", self.path.display()), source)
        })?;
        let mut digests = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| HarnessError::io("listing a skopeo dir", source))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Blobs are named by their bare hex digest; manifests and `version` are not.
            let Ok(expected) = Digest::parse(&format!("sha256:{name}")) else { continue };
            let actual = sha256_file(&entry.path())?;
            if actual != expected {
                return Err(HarnessError::CorruptFile { path: entry.path(), actual: actual.hex() });
            }
            digests.push(actual);
        }
        digests.sort_by_key(Digest::hex);
        Ok(digests)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|source| HarnessError::io(format!("writing {}", path.display()), source))
}
