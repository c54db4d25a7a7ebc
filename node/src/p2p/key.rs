//! The cluster key: the shared secret that makes a set of nodes one private cluster.
//!
//! It keys libp2p's private network (pnet), so a node without it cannot even finish a
//! connection handshake, and it derives the key that signs data-plane HTTP requests.
//! The file format is libp2p's PSK file, so the same file works with other libp2p tooling.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use libp2p::pnet::PreSharedKey;
use shoal_protocol::peer::RequestKey;

const HEADER: &str = "/key/swarm/psk/1.0.0/\n/base16/\n";

/// A 32-byte cluster secret. `Debug` shows only its fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

/// Why a cluster key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read cluster key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write cluster key {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "cluster key {path} is not a libp2p PSK file (\"/key/swarm/psk/1.0.0/\", \"/base16/\", 64 hex digits)"
    )]
    Format { path: PathBuf },
}

impl ClusterKey {
    pub fn generate() -> Self {
        Self(rand::random())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).ok_or_else(|| KeyError::Format { path: path.to_owned() })
    }

    /// Writes the key file readable by its owner only. Refuses to replace an existing file:
    /// overwriting a cluster's key by accident would split the cluster.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_private_file(path, self.to_file().as_bytes(), true)
            .map_err(|source| KeyError::Write { path: path.to_owned(), source })
    }

    /// The key that signs data-plane requests, derived from this one (never the pnet key
    /// itself).
    pub fn request_key(&self) -> RequestKey {
        RequestKey::derive(&self.0)
    }

    /// A non-secret fingerprint (go-libp2p's), for logs that show which key a node uses.
    pub fn fingerprint(&self) -> String {
        self.psk().fingerprint().to_string()
    }

    pub(crate) fn psk(&self) -> PreSharedKey {
        PreSharedKey::new(self.0)
    }

    fn to_file(&self) -> String {
        format!("{HEADER}{}\n", hex::encode(self.0))
    }

    fn parse(text: &str) -> Option<Self> {
        let hex_part = text.strip_prefix(HEADER)?.trim_end();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey(fingerprint {})", self.fingerprint())
    }
}

/// Writes a file with mode 0600 through a temporary file and a rename, so a crash never
/// leaves a half-written secret behind. With `create_new`, an existing file is an error.
pub(super) fn write_private_file(
    path: &Path,
    contents: &[u8],
    create_new: bool,
) -> std::io::Result<()> {
    if create_new && path.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "file exists; remove it first to replace it",
        ));
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn the_request_key_is_derived_not_the_key_itself() {
        let key = ClusterKey::from_bytes([7u8; 32]);
        assert_eq!(key.request_key(), RequestKey::derive(&[7u8; 32]));
        assert_ne!(key.request_key(), ClusterKey::from_bytes([8u8; 32]).request_key());
    }

    #[test]
    fn file_round_trip_is_libp2p_format_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let key = ClusterKey::generate();
        key.save(&path).unwrap();
        assert_eq!(ClusterKey::load(&path).unwrap(), key);

        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(PreSharedKey::from_str(&text).unwrap(), key.psk());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(key.save(&path), Err(KeyError::Write { .. })));
        assert_ne!(ClusterKey::generate(), key);
    }

    #[test]
    fn malformed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        for text in
            ["", "/key/swarm/psk/1.0.0/\n/base16/\nabcd\n", "/key/swarm/psk/1.0.0/\n/base64/\n"]
        {
            std::fs::write(&path, text).unwrap();
            assert!(matches!(ClusterKey::load(&path), Err(KeyError::Format { .. })), "{text:?}");
        }
        assert!(matches!(ClusterKey::load(&dir.path().join("absent")), Err(KeyError::Read { .. })));
    }
}
