//! Where things live under the store root, and the file-system chores of start-up.
//!
//! `blobs/sha256/<first two hex>/<hex>` holds committed blobs, `tmp/` holds blobs being written
//! (on the same file system, so that commit is a rename), and `index.redb` the metadata.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use shoal_protocol::Digest;
use tracing::{info, warn};

use super::StoreError;

#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub root: PathBuf,
    pub blobs: PathBuf,
    pub tmp: PathBuf,
    pub index: PathBuf,
}

impl Paths {
    pub fn new(root: PathBuf) -> Self {
        Paths {
            blobs: root.join("blobs").join("sha256"),
            tmp: root.join("tmp"),
            index: root.join("index.redb"),
            root,
        }
    }

    pub fn shard_dir(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(&digest.hex()[..2])
    }

    pub fn blob(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs.join(&hex[..2]).join(hex)
    }

    /// Creates the directories the store needs.
    pub fn create_dirs(&self) -> Result<(), StoreError> {
        for dir in [&self.blobs, &self.tmp] {
            fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
        }
        Ok(())
    }
}

/// Makes a rename or unlink in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync directory", dir, e))
}

/// Removes every file left in `tmp/` by an earlier run: nobody can finish those writes now.
pub(crate) fn remove_stale_temps(paths: &Paths) -> Result<usize, StoreError> {
    let mut removed = 0;
    for entry in read_dir(&paths.tmp)? {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                warn!(path = %path.display(), "unexpected directory in store tmp")
            }
            _ => match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove stale temp file", &path, e)),
            },
        }
    }
    if removed > 0 {
        info!(removed, "removed stale temp files from an earlier run");
    }
    Ok(removed)
}

/// Lists committed blob files with their sizes. Files that are not named like a blob are left
/// alone and reported: they are not ours to delete.
pub(crate) fn scan_blob_files(paths: &Paths) -> Result<HashMap<Digest, u64>, StoreError> {
    let mut found = HashMap::new();
    for shard in read_dir(&paths.blobs)? {
        let shard_path = shard.path();
        let shard_name = shard.file_name();
        let is_shard = shard.file_type().is_ok_and(|t| t.is_dir())
            && shard_name.len() == 2
            && shard_name.to_str().is_some_and(|s| s.bytes().all(is_lower_hex));
        if !is_shard {
            warn!(path = %shard_path.display(), "ignoring unexpected entry in blob directory");
            continue;
        }
        for file in read_dir(&shard_path)? {
            let path = file.path();
            let digest = file
                .file_name()
                .to_str()
                .and_then(|name| Digest::parse(&format!("sha256:{name}")).ok())
                .filter(|d| d.hex().as_bytes()[..2] == *shard_name.as_encoded_bytes());
            let meta = file.metadata().map_err(|e| StoreError::io("stat blob", &path, e))?;
            match digest {
                Some(d) if meta.is_file() => {
                    found.insert(d, meta.len());
                }
                _ => warn!(path = %path.display(), "ignoring unexpected entry in blob directory"),
            }
        }
    }
    Ok(found)
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    fs::read_dir(dir)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StoreError::io("list directory", dir, e))
}

fn is_lower_hex(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}
