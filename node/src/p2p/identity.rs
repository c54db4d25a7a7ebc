//! The node's libp2p identity: an ed25519 keypair kept in the data directory, so a node keeps
//! its peer id — and with it the keys it owns — across restarts.

use std::path::{Path, PathBuf};

use libp2p::identity::{DecodingError, Keypair};

use super::key::write_private_file;

/// Why the identity file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read node identity {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write node identity {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("node identity {path} is not a libp2p protobuf-encoded keypair: {source}")]
    Decode { path: PathBuf, source: DecodingError },
}

/// Loads the keypair at `path`, or creates one there (mode 0600) if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<Keypair, IdentityError> {
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|source| IdentityError::Decode { path: path.to_owned(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|source| IdentityError::Decode { path: path.to_owned(), source })?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|source| IdentityError::Write { path: path.to_owned(), source })?;
            }
            write_private_file(path, &bytes, true)
                .map_err(|source| IdentityError::Write { path: path.to_owned(), source })?;
            tracing::info!(path = %path.display(), peer_id = %keypair.public().to_peer_id(), "created node identity");
            Ok(keypair)
        }
        Err(source) => Err(IdentityError::Read { path: path.to_owned(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("p2p-identity");
        let first = load_or_create(&path).unwrap();
        let second = load_or_create(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2p-identity");
        std::fs::write(&path, b"not a key").unwrap();
        assert!(matches!(load_or_create(&path), Err(IdentityError::Decode { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key");
    }
}
